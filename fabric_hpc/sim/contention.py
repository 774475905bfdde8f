"""The simulator's slowdown: the collective-time model with contention between running jobs.

A trace gives each job's run time at an ideal placement (compact, alone on the fabric). A job's
*communication profile* says what part of that time is collectives (docs/scheduler.md, "Slowdown")::

    comm_fraction  f   share of an ideal step spent in (non-overlapped) collectives  (default 0.30)
    comm_bytes     S   bytes all-reduced per step                                   (default 256 MiB)

Per step, with ``t_ideal`` the modelled all-reduce of ``S`` on the job's GPU count placed compactly
on the empty fabric, and ``t`` the same all-reduce on the job's real GPUs beside every other running
job's traffic (max-min fair share, :func:`fabric_hpc.placement.fairshare.fair_rates`)::

    stretch = (1 - f) + f · t / t_ideal          (≥ 1: clamped; 1 for single-GPU jobs)

and the job's remaining work runs ``stretch`` times slower. ``t`` is the model's time alone
(``collective_time``: ring or tree, whichever is faster) with its bandwidth part divided by the
job's fair-share slow-down on the network (its ring's rate alone / its rate among the others).
A job with tensor-parallel groups (``request.tp`` = K) and pipeline stages (``request.pp`` = P)
all-reduces in K·P data-parallel rings of ``S/(K·P)`` at once
(:func:`~fabric_hpc.placement.parallel.dp_allreduce_and_load`), counted as one job, and its
communication has three parts with shares ``s_tp``, ``s_pp`` and ``1 - s_tp - s_pp`` (profile keys
``comm_tp_share`` / ``comm_pp_share``; defaults from MegaScale's per-dimension overlap ablation,
:data:`EXPOSED_PERCENT`), as measured with TP inside NVLink domains and stage sends across the
network::

    comm(P) = (1 - s_tp - s_pp) · t / t_ideal + s_tp · r_tp + s_pp · e(P) / e_ref
    stretch = ((1 - f) + f · comm(placement)) / ((1 - f) + f · comm(compact))

``r_tp``: the TP groups' all-reduce of one micro-batch's activations (:data:`TP_BYTES`, all groups
at once) on the job's GPUs over the same on the compact placement; ``e``: the stage-to-stage sends
(``TP_BYTES / K`` per pair, Megatron's scatter/gather), ``e_ref`` one such pair between two NVLink
domains through its own NICs. Both alone on the fabric with spread uplinks. With contention on,
the TP groups that leave an NVLink domain and the sends that do are fair-share entities of their
own beside the data-parallel rings (:func:`~fabric_hpc.placement.step.network_parts`): each part's
time is its time alone plus its bandwidth time there × (its rate alone / its shared rate − 1), its
rate alone being the share it gets beside the job's own other parts (so a job alone keeps its
stretch alone). Every part of every job counts as sending all the time, as the rings always did
(docs/collective-model.md, "Contention"; docs/scheduler.md, "Tensor- and pipeline-parallel
jobs"). ``comm``, the shares and the TP / send times are
:mod:`fabric_hpc.placement.step`, which the placement cost uses too (one model).

When a job starts or ends only the jobs that share a network resource (NIC, switch uplink or
downlink of finite capacity) with it can change rate; their rates are recomputed from the fair
share among themselves and *their* neighbours (two hops), so the cost of an event is bounded by
the neighbourhood, not the cluster. A job further away whose rate would shift through a chain of
three or more jobs is updated at the next event that touches it (an approximation, documented).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from itertools import repeat
from dataclasses import dataclass

import numpy as np

from fabric_hpc.placement.collective import CollectiveParams, effective_cap, resources
from fabric_hpc.placement.parallel import dp_allreduce_and_load
from fabric_hpc.placement.step import (EXPOSED_PERCENT, MAX_COMM_RATIO, TP_BYTES,  # noqa: F401 (re-exported)
                                       group_term, group_times, network_parts, reference_times)
from fabric_hpc.placement.step import ratio as _ratio
from fabric_hpc.placement.fairshare import flow_unit, sparse_fair
from fabric_hpc.scheduler.contract import Job
from fabric_hpc.scheduler.slowdown import (DEFAULT_COMM_BYTES,  # noqa: F401 (re-exported)
                                           DEFAULT_COMM_FRACTION, CommProfile, ideal_time, stretch_of)
from fabric_hpc.scheduler.slowdown import groups_and_norm as _groups_and_norm
from fabric_hpc.topology import Fabric

#: DEFAULT_COMM_FRACTION, DEFAULT_COMM_BYTES and CommProfile (a job's communication profile) live in
#: :mod:`fabric_hpc.scheduler.slowdown`, with the stretch of a placement alone the scheduler reads too.
#: EXPOSED_PERCENT (the default shares), TP_BYTES and MAX_COMM_RATIO (a placement whose collective cannot
#: run counts as this much slower) live in :mod:`fabric_hpc.placement.step`, the step model the placement
#: cost shares; imported here.
_NOBODY: frozenset[str] = frozenset()


@dataclass
class _Part:
    """A tp/pp job's TP all-reduces or stage sends on shared network resources (one fair-share
    entity beside its data-parallel rings, :func:`~fabric_hpc.placement.step.network_parts`)."""

    kind: str  # "tp" or "pp"
    res: np.ndarray
    load: np.ndarray
    rate: float  # passes/s alone on the fabric (beside the job's own other parts)
    unit: float
    bw: float  # s: one pass's time on those resources alone (its bandwidth part there)


@dataclass
class _Run:
    profile: CommProfile
    ideal: float  # modelled collective time at the compact placement, alone (s)
    bw: float  # bandwidth part of the collective alone on its placement (s)
    lat: float  # latency part (s)
    res: np.ndarray  # shared network resources the job's ring uses
    load: np.ndarray  # its bytes on each of them
    rate: float  # its ring's rate alone (collectives/s over ``res``)
    unit: float = 1.0  # bytes of one of its network flows per collective (per-flow fair share)
    stretch: float = 1.0
    groups: float = 0.0  # tp_share · TP slow-down + pp_share · sends over the reference send (alone, fixed)
    norm: float = 1.0  # the step at the compact placement over the reference one (``_groups_and_norm``)
    times: tuple = (0.0, 0.0, 0.0, 0.0, 1.0)  # ``Contention._group_times``: TP / send times alone, references
    parts: tuple[_Part, ...] = ()  # its TP / send traffic on shared network resources (contention on)
    users: np.ndarray | None = None  # every shared resource it loads (None: ``res``)

    @property
    def every_res(self) -> np.ndarray:
        return self.res if self.users is None else self.users


class Contention:
    """``start(job_id, job, gpus)`` / ``end(job_id)`` -> ``{job_id: new stretch}`` of every running
    job whose stretch changed (the started job always included). ``contention=False`` gives each
    job its placement's stretch alone (the ablation's "off"). ``ecmp=True``: every flow takes one
    uplink port by a hash of (source, destination, job id, channel), as ECMP does on an Ethernet
    fabric (placement.ecmp), instead of perfectly spread uplinks. ``contended``: ids of the jobs
    whose rate other jobs' traffic lowered at some point of their run."""

    def __init__(self, fab: Fabric, *, contention: bool = True, params: CollectiveParams | None = None,
                 ecmp: bool = False) -> None:
        self.fab, self.contention, self.ecmp = fab, contention, ecmp
        self.params = params or CollectiveParams()
        self.contended: set[str] = set()
        net = self._space = resources(fab, 0 if ecmp else None)
        self._cap = effective_cap(net, self.params)
        self._shared = (net.kind != 0) & np.isfinite(self._cap)  # NVLink ports are never shared
        self._ideal: dict[tuple[int, float, int, int], float] = {}
        #: (TP time, reference send, compact sends over the reference) of the compact placement by shape
        self._group_ideal: dict[tuple[int, int, int], tuple[float, float, float]] = {}
        #: (ideal, bandwidth, latency) seconds and group slow-downs of one-NVLink-domain placements by shape
        self._alone: dict[tuple[int, float, float, int, int], tuple[float, float, float, tuple]] = {}
        self._rings: dict[tuple, tuple] = {}  # see ``_ring`` and ``_group_slowdowns``
        self._runs: dict[str, _Run] = {}
        self._users: dict[int, set[str]] = {}  # resource -> running jobs that load it
        self._demand = np.zeros(net.size)  # GB/s each resource would carry with every job at its rate alone

    def stretch(self, job_id: str) -> float:
        return self._runs[job_id].stretch

    def start(self, job_id: str, job: Job, gpus: Iterable[int | str]) -> dict[str, float]:
        """``gpus``: GPU indices or names."""
        pos = self.fab.gpu_pos
        g = np.array(sorted({x if isinstance(x, (int, np.integer)) else pos[x] for x in gpus}), np.int64)  # = np.unique
        prof, tp, pp = CommProfile.of(job), job.request.tp or 1, job.request.pp or 1
        if len(g) <= 1 or prof.fraction == 0:
            self._runs[job_id] = _Run(prof, 0.0, 0.0, 0.0, np.zeros(0, np.int64), np.zeros(0), math.inf)
            return {job_id: 1.0}
        nvl = self.fab.index.gpu_nvl[g]
        one = bool(nvl[0] >= 0 and (nvl == nvl[0]).all())  # one NVLink domain: no network, no neighbours
        key = (len(g), prof.bytes, float(self.fab.index.nvl_gbps[nvl[0]]), tp, pp) if one else None
        if key is not None and key in self._alone:
            ideal, bw, lat, times = self._alone[key]
            run = self._runs[job_id] = _Run(prof, ideal, bw, lat, np.zeros(0, np.int64), np.zeros(0), math.inf)
            run.times = times
            run.groups, run.norm = _groups_and_norm(prof, times)
            run.stretch = self._stretch(run, run.rate)
            return {job_id: run.stretch}
        salt = zlib.crc32(job_id.encode()) if self.ecmp else None
        run = _Run(prof, self._ideal_time(len(g), prof.bytes, tp, pp), *self._ring(g, prof.bytes, salt, tp, pp))
        self._runs[job_id] = run
        run.times = self._group_times(g, tp, pp)
        run.groups, run.norm = _groups_and_norm(prof, run.times)
        run.stretch = self._stretch(run, run.rate)
        if key is not None and not run.res.size:
            self._alone[key] = (run.ideal, run.bw, run.lat, run.times)
        if self.contention and (tp > 1 or pp > 1) and (prof.tp_share or prof.pp_share):
            self._add_parts(run, g, salt, tp, pp)
        res = run.every_res
        if not self.contention or not res.size:
            return {job_id: run.stretch}
        for r in res.tolist():
            self._users.setdefault(r, set()).add(job_id)
        self._add_demand(run, 1.0)
        changed = self._recompute(self._neighbours([job_id]) | {job_id})
        changed[job_id] = run.stretch
        return changed

    def end(self, job_id: str) -> dict[str, float]:
        if not self.contention or not self._runs[job_id].every_res.size:
            del self._runs[job_id]
            return {}
        near = self._neighbours([job_id]) - {job_id}
        run = self._runs.pop(job_id)
        self._add_demand(run, -1.0)
        for r in run.every_res.tolist():
            users = self._users[r]
            users.discard(job_id)
            if not users:
                del self._users[r]
        return self._recompute(near)

    # -- internals ----------------------------------------------------------------------------------
    def _ring(self, g: np.ndarray, size: float, salt: int | None, tp: int, pp: int) -> tuple:
        """(bandwidth s, latency s, shared resources, their loads, rate alone, flow unit) of the
        data-parallel all-reduce (``tp·pp`` rings with tensor-parallel groups and pipeline stages) on GPU indices ``g``
        (sorted, unique) alone: a pure function of its arguments, remembered (gangs often start
        again on GPUs a finished gang used; the arrays are never written to)."""
        key = (g.tobytes(), size, salt, tp, pp)
        hit = self._rings.get(key)
        if hit is None:
            bw, lat, load = dp_allreduce_and_load(self.fab, g, size, tp, pp, params=self.params, ecmp=salt)
            res = np.flatnonzero((load > 0) & self._shared)
            rate = 1.0 / float((load[res] / 1e9 / self._cap[res]).max()) if res.size else math.inf
            if len(self._rings) >= 4096:
                self._rings.clear()
            hit = self._rings[key] = (bw, lat, res, load[res], rate,
                                      flow_unit(load, self._space))
        return hit

    def _ideal_time(self, n: int, size: float, tp: int, pp: int) -> float:
        """The collective on ``n`` GPUs placed compactly (the first ``n`` in topology order), alone."""
        key = (n, size, tp, pp)
        if key not in self._ideal:
            self._ideal[key] = ideal_time(self.fab, n, size, tp, pp, self.params)
        return self._ideal[key]

    def _group_slowdowns(self, g: np.ndarray, tp: int, pp: int) -> tuple[float, float, float]:
        """(the TP groups' all-reduce on GPU indices ``g`` over the same on the compact placement;
        the stage-to-stage sends on ``g`` over the reference send; the compact placement's sends over
        the reference send), each alone on the fabric (:meth:`_group_times`); 1.0 where the job has none."""
        tp_t, tp_i, pp_t, ref, compact = self._group_times(g, tp, pp)
        return _ratio(tp_t, tp_i), _ratio(pp_t, ref), compact

    def _group_times(self, g: np.ndarray, tp: int, pp: int) -> tuple[float, float, float, float, float]:
        """(seconds of the TP groups' all-reduce on GPU indices ``g``, the same on the compact
        placement, seconds of the stage-to-stage sends on ``g``, the reference send ``e_ref``, the
        compact placement's sends over ``e_ref``), each alone on the fabric
        (:func:`~fabric_hpc.placement.step.group_times`, :func:`~fabric_hpc.placement.step.reference_times`:
        every group or pair at once); zeros and 1.0 where the job has none. Remembered with the rings."""
        if tp <= 1 and pp <= 1:
            return (0.0, 0.0, 0.0, 0.0, 1.0)
        key = ("groups", g.tobytes(), tp, pp)
        hit = self._rings.get(key)
        if hit is None:
            ideal = self._group_ideal.get((len(g), tp, pp))
            if ideal is None:
                ideal = reference_times(self.fab, len(g), tp, pp, self.params)
                self._group_ideal[(len(g), tp, pp)] = ideal
            tp_t, pp_t = group_times(self.fab, g, tp, pp, self.params)
            hit = self._rings[key] = (tp_t, ideal[0], pp_t, ideal[1], ideal[2])
        return hit

    def _add_parts(self, run: _Run, g: np.ndarray, salt: int | None, tp: int, pp: int) -> None:
        """Give a tp/pp job's run its TP / send traffic on shared resources (remembered with the
        rings) and the rates of all its entities alone: where its own parts would together overfill a
        resource, their max-min shares among themselves (the baseline other jobs slow it from)."""
        key = ("parts", g.tobytes(), salt, tp, pp)
        hit = self._rings.get(key)
        if hit is None:
            if len(self._rings) >= 4096:
                self._rings.clear()
            found = network_parts(self.fab, g, tp, pp, self.params, salt)
            hit = self._rings[key] = tuple(self._part(p) for p in found if self._shared[p.res].any())
        if not hit:
            return
        parts = [_Part(*p) for p in hit]
        ents = [(run.res, run.load, run.unit)] if run.res.size else []
        ents += [(p.res, p.load, p.unit) for p in parts]
        res = np.concatenate([e[0] for e in ents])
        rates = np.array(([run.rate] if run.res.size else []) + [p.rate for p in parts])
        demand = np.bincount(res, weights=np.concatenate([e[1] * x / 1e9 for e, x in zip(ents, rates)]),
                             minlength=len(self._cap))
        if (demand[res] > self._cap[res] * (1 + 1e-9)).any():
            job = np.repeat(np.arange(len(ents)), [len(e[0]) for e in ents])
            rates, _ = sparse_fair(job, res, np.concatenate([e[1] for e in ents]), self._cap, len(ents),
                                   np.array([e[2] for e in ents]))
            if run.res.size:
                run.rate = float(rates[0])
            for p, x in zip(parts, rates[-len(parts):], strict=True):
                p.rate = float(x)
        run.parts = tuple(parts)
        run.users = np.unique(res)

    def _part(self, p) -> tuple:
        """The fields of a :class:`_Part` of a :class:`~fabric_hpc.placement.step.NetPart`, kept to
        the shared resources."""
        keep = self._shared[p.res]
        res, load = p.res[keep], p.load[keep]
        bw = float((load / 1e9 / self._cap[res]).max())
        return (p.kind, res, load, 1.0 / bw if bw > 0 else math.inf, p.unit, bw)

    def _add_demand(self, run: _Run, sign: float) -> None:
        self._demand[run.res] += sign * (run.load / 1e9 * run.rate)
        for p in run.parts:
            self._demand[p.res] += sign * (p.load / 1e9 * p.rate)

    def _stretch(self, run: _Run, rate: float, part_rates: list[float] | None = None) -> float:
        """The run's stretch with its data-parallel rings at ``rate`` and its TP / send parts at
        ``part_rates`` (None: each at its rate alone)."""
        groups = run.groups if part_rates is None else self._groups_now(run, part_rates)
        slow = run.rate / rate if math.isfinite(run.rate) and rate > 0 else 1.0
        return stretch_of(run.profile, run.ideal, run.bw * slow + run.lat, groups, run.norm)

    @staticmethod
    def _groups_now(run: _Run, part_rates: list[float]) -> float:
        """:func:`~fabric_hpc.placement.step.group_term` with each part's time alone plus its bandwidth
        part there times (its rate alone / its rate now − 1): the time other jobs' traffic adds."""
        tp_t, tp_i, pp_t, ref, _ = run.times
        extra = {"tp": 0.0, "pp": 0.0}
        for p, x in zip(run.parts, part_rates, strict=True):
            slow = p.rate / x if x > 0 else math.inf
            if slow > 1.0:
                extra[p.kind] += p.bw * (slow - 1.0)
        return group_term(run.profile.tp_share, run.profile.pp_share, _ratio(tp_t + extra["tp"], tp_i),
                          _ratio(pp_t + extra["pp"], ref))

    def _neighbours(self, ids: Iterable[str]) -> set[str]:
        out: set[str] = set()
        get = self._users.get
        for j in ids:
            res = self._runs[j].every_res.tolist()
            out.update(*map(get, res, repeat(_NOBODY, len(res))))
        return out

    def _recompute(self, targets: set[str]) -> dict[str, float]:
        """New stretches of ``targets`` from the fair share among them and their neighbours: one
        entity per job's data-parallel rings and per TP / send part (:meth:`_add_parts`)."""
        changed: dict[str, float] = {}
        hard = set()
        for j in sorted(targets):  # a job whose links all have room for everyone's rate alone runs at its own
            run = self._runs[j]
            res = run.every_res
            if (self._demand[res] <= self._cap[res] * (1 + 1e-9)).all():
                self._set(j, run, run.rate, None, changed)
            else:
                hard.add(j)
        if not hard:
            return changed
        targets = hard
        group = sorted(targets | self._neighbours(targets))
        runs = [self._runs[j] for j in group]
        # entities: (run, part index or -1, resources, loads, rate alone, flow unit); a data-parallel
        # part on no shared resource (rate alone infinite) is left out and keeps its rate
        ents = [(i, -1, r.res, r.load, r.rate, r.unit) for i, r in enumerate(runs) if r.res.size]
        ents += [(i, k, p.res, p.load, p.rate, p.unit)
                 for i, r in enumerate(runs) for k, p in enumerate(r.parts)]
        ents.sort(key=lambda e: (e[0], e[1]))
        res = np.unique(np.concatenate([e[2] for e in ents]))
        # only over-demanded links can bind (every rate is at most the entity's rate alone); each
        # entity's own bottleneck becomes a private link of capacity its rate alone
        sat = res[self._demand[res] > self._cap[res] * (1 + 1e-9)]
        alone = np.array([e[4] for e in ents])
        rates = alone if not sat.size else self._fill(ents, sat, alone)
        got: dict[tuple[int, int], float] = {(e[0], e[1]): float(x) for e, x in zip(ents, rates, strict=True)}
        for i, (j, run) in enumerate(zip(group, runs, strict=True)):
            if j in targets:
                parts = [got[(i, k)] for k in range(len(run.parts))] if run.parts else None
                self._set(j, run, got.get((i, -1), run.rate), parts, changed)
        return changed

    def _fill(self, ents: list[tuple], sat: np.ndarray, alone: np.ndarray) -> np.ndarray:
        """Max-min fair rates of ``ents`` over the saturated resources ``sat`` and a private link
        each at its rate alone (:func:`~fabric_hpc.placement.fairshare.sparse_fair`, sparse)."""
        k, n = len(sat), len(ents)
        job, col, amount = [], [], []
        for i, e in enumerate(ents):
            on = np.isin(e[2], sat)
            m = int(on.sum())
            job.append(np.full(m + 1, i, np.int64))
            col.append(np.r_[np.searchsorted(sat, e[2][on]), k + i])
            amount.append(np.r_[e[3][on], 1e9])  # one pass per second per unit of its rate alone
        cap = np.concatenate([self._cap[sat], alone])
        rates, _ = sparse_fair(np.concatenate(job), np.concatenate(col), np.concatenate(amount), cap, n,
                               np.array([e[5] for e in ents]))
        return rates

    def _set(self, job_id: str, run: _Run, rate: float, part_rates: list[float] | None,
             changed: dict[str, float]) -> None:
        parts = zip(run.parts, part_rates or ())
        if rate < run.rate * (1 - 1e-6) or any(x < p.rate * (1 - 1e-6) for p, x in parts):
            self.contended.add(job_id)
        s = self._stretch(run, rate, part_rates)
        if abs(s - run.stretch) > 1e-12:
            run.stretch = s
            changed[job_id] = s

