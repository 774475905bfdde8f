"""Gang-aware preemption: evict whole spot gangs, cheapest set that frees a valid placement in one domain.

For a blocked job of a tier that may preempt, :class:`GangPreemption`:

1. lists the *candidates*: running gangs whose tier is preemptible by the job's tier (and that are not
   marked ``preemptible=False``: a Slurm job that cannot be requeued);
2. costs each by the GPU-hours it would lose (GPUs × time since its last checkpoint, plus the
   modelled restore time it will pay when it restarts);
3. picks the lowest domain level (host, NVLink domain, leaf, spine, ... from the placement levels)
   at which some single domain holds enough free + candidate GPUs, and for each such domain (at most
   ``max_domains`` of them, the cheapest lower bound on a victim set's cost first: the cheapest
   candidate there, or the fractional cover of the GPUs it lacks if dearer; ties: most free GPUs,
   then fabric order; none whose bound exceeds the best set found) adds victims
   cheapest-per-GPU-freed first until the placer finds a placement *inside that domain*, then drops
   any victim the placement does not need (most expensive first);
4. returns the set with the smallest (GPU-hours lost, number of victims), or None.

GPUs promised to a reservation (``reserved=``, a bool mask) stay out of every placement, also where
a victim frees them: they count as outside every domain.

Every returned placement was produced by the same placer on the state with exactly those victims
released, so the eviction always frees a valid placement.

With a test that refuses costly sets (the scheduler's ``preempt_benefit_ratio``),
:meth:`GangPreemption.victims_within` skips the search of domains where a lower bound on every set's
cost (GPUs and hosts it must free, cheapest candidates first) is already refused, and answers
:data:`~fabric_hpc.scheduler.contract.TOO_COSTLY` where the plain answer would be None or refused.

Speed (thousands of candidates, a hundred blocked jobs per step): the candidates of a call are
arrays; each running gang's GPU positions and cost are remembered across the calls of a step
(:class:`_GangIndex`), and the arrays of all running gangs are kept from call to call, cut down to
the gangs left after each eviction (tests/scheduler/test_preempt_gang_table.py); victim prefixes
that free too few GPUs skip the placer. The choices are those of the plain implementation
(tests/scheduler/test_preempt_oracle.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from fabric_hpc.placement import ClusterState, Placement
from fabric_hpc.placement.levels import FabricLevels, fabric_levels, free_per_host
from fabric_hpc.placement.state import FREE
from fabric_hpc.scheduler.contract import (DEFAULT_TIERS, TOO_COSTLY, Job, Placer, Preemption, RunningJob,
                                           SchedulerInput, Tier)
from fabric_hpc.scheduler.gangtable import _Candidates, _GangIndex, _host_pairs, _rows, _Running  # noqa: F401
from fabric_hpc.scheduler.placer import BLOCKED, fit_gpus, may_fit, rank_hosts


def gpu_hours_lost(r: RunningJob, now: float, restore_s: float = 0.0) -> float:
    """GPU-hours of work since ``r``'s last checkpoint (everything since start without one) + restore."""
    since = r.last_checkpoint if r.last_checkpoint is not None else r.start
    if r.job.checkpoint_interval:
        since = max(since, r.start + ((now - r.start) // r.job.checkpoint_interval) * r.job.checkpoint_interval)
    return len(r.gpus) * (max(now - since, 0.0) + restore_s) / 3600.0


@dataclass
class GangPreemption:
    """A :class:`~fabric_hpc.scheduler.contract.PreemptionPolicy` (see module doc)."""

    tiers: dict[str, Tier] | None = None
    #: Restore cost a requeued gang pays on restart (s); counted in its loss.
    restore_s: float = 300.0
    #: Domains examined per blocked job at the chosen level.
    max_domains: int = 6

    def __post_init__(self) -> None:
        self._index = _GangIndex()
        self._levels_of: tuple[FabricLevels, list[tuple[np.ndarray, int, int]]] | None = None
        self._rows_of: np.ndarray | None = None  # the table rows of the last call's candidates

    #: Takes ``reserved=`` (see the module doc): the scheduler passes its reservations' GPUs.
    keeps_reserved: ClassVar[bool] = True

    def victims(self, job: Job, view: SchedulerInput, state: ClusterState, placer: Placer,
                reserved: np.ndarray | None = None) -> tuple[list[Preemption], Placement] | None:
        return self._search(job, view, state, placer, None, reserved)  # type: ignore[return-value]

    def victims_within(self, job: Job, view: SchedulerInput, state: ClusterState, placer: Placer,
                       rejects: Callable[[float], bool], reserved: np.ndarray | None = None
                       ) -> tuple[list[Preemption], Placement] | str | None:
        """:meth:`victims`, or :data:`TOO_COSTLY` without the search of domains where every victim
        set costs at least a lower bound that ``rejects`` refuses (see ``CostAwarePreemption``)."""
        return self._search(job, view, state, placer, rejects, reserved)

    def _search(self, job: Job, view: SchedulerInput, state: ClusterState, placer: Placer,
                rejects: Callable[[float], bool] | None,
                reserved: np.ndarray | None) -> tuple[list[Preemption], Placement] | str | None:
        self._rows_of = None
        c = self._candidates(job, view, state)
        if c is None:
            return None
        lv = fabric_levels(state.fab)
        gpu_host = state.fab.index.gpu_host
        usable = None if reserved is None or not reserved.any() else ~reserved
        freeable = state.free.copy()  # free once every candidate is evicted: a superset of any trial's
        freeable[c.gpu] = True
        if usable is not None:
            freeable &= usable
        if not may_fit(job.request, freeable, gpu_host, lv.host_gpus, lv):
            return None  # every trial would fail this necessary check: no victim set can work
        if rejects is not None and _refused(job, state.free, c.gpu, c.of, c.size, c, lv, gpu_host, rejects):
            return TOO_COSTLY  # every set, in any domain, costs at least this (fewer GPUs usable: more)
        at, of = (c.gpu, c.of) if usable is None else (c.gpu[usable[c.gpu]], c.of[usable[c.gpu]])
        best: tuple[tuple[float, int], list[int], np.ndarray] | None = None
        skipped: list[np.ndarray] = []  # too costly domains left unsearched at levels where none was found
        for dom_of_gpu, ndom, largest in self._levels(lv, gpu_host):
            if largest < max(job.gpus, 1):  # no domain of this level has that many GPUs at all
                continue
            here: list[np.ndarray] = []
            for d, bound in self._domains(job, state.free, dom_of_gpu, ndom, at, of, c.cost):
                if best is not None and bound * (1 - 1e-9) > best[0][0]:
                    break  # this domain and the later ones cost more than the set found
                inside = dom_of_gpu == d if usable is None else (dom_of_gpu == d) & usable
                if not may_fit(job.request, freeable & inside, gpu_host, lv.host_gpus, lv):
                    continue  # as above, within the domain: _in_domain would find nothing
                got = self._in_domain(job, state, placer, inside, c, rejects)
                if got is TOO_COSTLY:
                    here.append(inside)
                elif got is not None and (best is None or got[0] < best[0]):
                    best = got
            if best is not None:
                break
            skipped += here
        return self._answer(job, state, placer, c, best, skipped, rejects)

    def _domains(self, job: Job, free: np.ndarray, dom_of_gpu: np.ndarray, ndom: int, at: np.ndarray,
                 of: np.ndarray, cost: np.ndarray) -> list[tuple[int, float]]:
        """The domains of one level worth a search, with a lower bound on the cost of any victim set
        there: those holding enough free + candidate GPUs (``at``, ``of``: the usable candidate GPUs
        and their candidates) and touched by a candidate, the lowest bound first (ties: most free
        GPUs, then fabric order), at most ``max_domains``. The bound: the cheapest candidate there, or
        the least cost of freeing the GPUs it lacks (a fractional cover, cheapest per GPU first)."""
        free_d = np.bincount(dom_of_gpu, weights=free, minlength=ndom)
        pairs, held = _counted(of * ndom + dom_of_gpu[at])  # (candidate, domain) once each, its GPUs there
        who, dom = pairs // ndom, pairs % ndom
        per = cost[who] / held
        order = np.lexsort((who, per, dom))  # by domain, then cost per GPU (ties: candidate order)
        who, dom, held, per = who[order], dom[order], held[order], per[order]
        cum = np.cumsum(held)
        cand_d = np.bincount(dom, weights=held, minlength=ndom)
        cum -= _group_base(cum, dom)  # each pair's GPUs and those of the cheaper pairs of its domain
        short = (job.gpus - free_d.astype(np.int64))[dom]
        below = cum - held
        take = np.where(cum <= short, cost[who], np.where(below < short, per * (short - below), 0.0))
        cover = np.bincount(dom, weights=take, minlength=ndom)  # (added in that order, as the reference)
        least = np.full(ndom, np.inf)
        np.minimum.at(least, dom, cost[who])
        bound = np.maximum(least, cover)
        doms = np.flatnonzero((free_d + cand_d >= max(job.gpus, 1)) & (cand_d > 0))
        doms = doms[np.lexsort((doms, -free_d[doms], bound[doms]))][: self.max_domains]
        return list(zip(doms.tolist(), bound[doms].tolist()))

    def _answer(self, job: Job, state: ClusterState, placer: Placer, c: _Candidates, best, skipped: list,
                rejects: Callable[[float], bool] | None) -> tuple[list[Preemption], Placement] | str | None:
        """The victims and placement of the ``best`` set found (settled first with ``rejects``)."""
        if rejects is not None:
            best = self._settle(job, state, placer, c, best, skipped, rejects)
        if best is None or best is TOO_COSTLY:
            return best
        _, chosen, inside = best
        placement = placer.place(job, _trial(state, inside, c, chosen))
        if placement is None:  # the placer answered differently on the same state: not deterministic
            return None
        if self._rows_of is not None:  # the table's rows of the victims: the next call's gangs if evicted
            self._index.dropped = (self._index.last_ids, self._rows_of[np.array(chosen, np.int64)])
        return ([Preemption(c.runs[i].job.id, job.id, float(c.cost[i])) for i in chosen], placement)

    def _settle(self, job: Job, state: ClusterState, placer: Placer, c: _Candidates, best, skipped: list,
                rejects: Callable[[float], bool]):
        """The plain search's answer, or TOO_COSTLY where it would be None or a refused set, after
        domains were skipped as too costly. A set found that ``rejects`` accepts costs less than the
        bound of any domain skipped at its level, which would not have won there; a domain skipped
        at a lower level (where nothing else was found) would have ended the search there with a
        refused set if it holds any, so those are searched then (rare: an accepted set)."""
        if best is None:  # nothing outside the skipped domains: None, or a refused set
            return TOO_COSTLY if skipped else None
        if rejects(sum(float(c.cost[i]) for i in best[1])):  # the sum the scheduler makes of the victims
            return TOO_COSTLY  # and any set of a skipped domain of a lower level: refused too
        for inside in skipped:
            if self._in_domain(job, state, placer, inside, c) is not None:
                return TOO_COSTLY
        return best

    def _levels(self, lv: FabricLevels, gpu_host: np.ndarray) -> list[tuple[np.ndarray, int, int]]:
        """(domain of each GPU, number of domains, GPUs of the largest domain) per level, lowest
        first, then the whole fabric as one domain; kept for the last fabric asked about."""
        if self._levels_of is None or self._levels_of[0] is not lv:
            out = []
            for level in range(len(lv.chain) + 1):
                dom = lv.host_dom[gpu_host, level] if level < len(lv.chain) else np.zeros(gpu_host.size, np.int64)
                out.append((dom, int(dom.max()) + 1, int(np.bincount(dom).max())))
            self._levels_of = (lv, out)
        return self._levels_of[1]

    def _candidates(self, job: Job, view: SchedulerInput, state: ClusterState) -> _Candidates | None:
        """Running gangs whose tier ``job``'s tier may preempt, not marked unpreemptible, that hold GPUs in
        ``state``."""
        tiers = self.tiers or DEFAULT_TIERS
        ok = {name for name, t in tiers.items() if t is not None and t.preemptible and job.tier in t.preempted_by}
        running, pos, when = view.running, state.fab.gpu_pos, (view.now, self.restore_s)
        try:
            table = self._index.table(running, pos, when)
        except KeyError:  # a gang on GPUs of another fabric: left out unless it is a candidate, as before
            runs = [r for r in running if r.job.tier in ok and r.preemptible and state.holds(r.job.id)]
            if not runs:
                return None
            return _Running.of(runs, self._index.lookup(runs, running, pos), when).c
        if table is None:
            return None
        names = table.tier_names
        pick = np.fromiter((name in ok for name in names), bool, len(names))[table.tier] & table.preemptible
        rows = np.flatnonzero(pick)
        if rows.size:  # (an O(1) test each, only for the gangs left)
            rows = rows[state.holding(map(table.job_ids.__getitem__, rows.tolist()))]
        if not rows.size:
            return None
        if rows.size < len(table.c.runs):  # the pairs made once for every gang, then cut down with them
            _host_pairs(table.c, fabric_levels(state.fab).host_gpus.size, state.fab.index.gpu_host)
        self._rows_of = rows  # (each candidate's row in the table)
        return _rows(table.c, rows)

    def _in_domain(self, job: Job, state: ClusterState, placer: Placer, inside: np.ndarray, c: _Candidates,
                   rejects: Callable[[float], bool] | None = None):
        """(cost, victims, the domain's mask) of the cheapest victim set found inside one domain, or
        None; TOO_COSTLY, without a placer call, when ``rejects`` refuses a bound on every set's cost.

        Candidates touching the domain are added cheapest per GPU freed inside first (ties: larger
        gang first, then candidate order) until the placer fits the job; prefixes with too few GPUs
        for the job are skipped without a placer call."""
        sel = inside[c.gpu]  # the candidates' GPUs inside
        held = np.bincount(c.of[sel], minlength=len(c.runs))  # each candidate's GPUs inside
        touching = np.flatnonzero(held)
        free = state.free & inside
        free_in = int(np.count_nonzero(free))
        short = job.gpus - free_in  # GPUs the victims must free before a placer call can succeed
        if rejects is not None and touching.size:  # (rejects may be dear: asked only before a search)
            if short > 0 and int(held.sum()) < short:
                return None  # as below: no prefix frees enough
            if _refused(job, free, c.gpu[sel], c.of[sel], held, c, fabric_levels(state.fab),
                        state.fab.index.gpu_host, rejects):
                return TOO_COSTLY
        touching = touching[np.lexsort((-c.size[touching], c.cost[touching] / held[touching]))].tolist()

        def fits(chosen: list[int]) -> bool:  # fewer free GPUs than the gang needs: no placer call
            if free_in + int(held[chosen].sum()) < job.gpus:
                return False
            return fit_gpus(placer, job, _trial(state, inside, c, chosen)) is not None

        first = 0
        if short > 0:  # the shortest prefix that frees enough GPUs (every shorter one fails the count)
            enough = np.flatnonzero(np.cumsum(held[touching]) >= short)
            if enough.size == 0:
                return None
            first = int(enough[0]) + 1
        chosen = touching[:first]
        ok = fits(chosen)
        for i in touching[first:]:
            if ok:
                break
            chosen.append(i)
            ok = fits(chosen)
        if not ok or not chosen:
            return None
        for i in sorted(chosen, key=lambda i: -c.cost[i]):  # drop victims the placement does not need
            rest = [k for k in chosen if k != i]
            if rest and fits(rest):
                chosen = rest
        return (float(c.cost[chosen].sum()), len(chosen)), chosen, inside


def _refused(job: Job, free: np.ndarray, at: np.ndarray, of: np.ndarray, held: np.ndarray, c: _Candidates,
             lv: FabricLevels, gpu_host: np.ndarray, rejects: Callable[[float], bool]) -> bool:
    """Whether ``rejects`` refuses a lower bound on the summed cost of any victim set
    :meth:`GangPreemption._in_domain` may find in a domain for ``job`` (inf: none can be found); the
    bounds less a margin far above the float sums' rounding. ``free``: the domain's free GPUs (a
    mask); ``at``, ``of``: the candidates' GPUs inside and their candidates; ``held``: each
    candidate's GPUs inside (the whole fabric: ``c.gpu``, ``c.of``, ``c.size``).
    A set holds at least one candidate touching the domain, frees there the GPUs the job lacks and,
    for a ``nodes`` request, makes enough hosts able to take a rank (the dearer bound, tried last)."""
    touching = np.flatnonzero(held)
    bound = max(float(c.cost[touching].min()),
                _cover(c.cost[touching], held[touching], job.gpus - int(np.count_nonzero(free))))
    if rejects(bound * (1 - 1e-9)):
        return True
    return job.request.nodes is not None and rejects(_hosts_loss(job.request, free, at, of, c, lv, gpu_host)
                                                     * (1 - 1e-9))


def _hosts_loss(r, free: np.ndarray, at: np.ndarray, of: np.ndarray, c: _Candidates, lv: FabricLevels,
                gpu_host: np.ndarray) -> float:
    """A lower bound on the cost of victims that leave ``r.nodes`` hosts able to take a rank of
    ``r`` (``may_fit``'s necessary condition; ``at``, ``of``: the candidates' GPUs in the domain and
    their candidates). Each candidate's cost is split evenly over the hosts it touches that cannot
    take a rank yet; such a host turns only when its victims free the GPUs it lacks — then all of
    its occupants when it lacks all of them (their shares' sum), else at least one (the least share)."""
    per_host = free_per_host(lv, gpu_host, free)
    ok = rank_hosts(r, per_host, lv.host_gpus)
    short = r.nodes - int(np.count_nonzero(ok))
    if short <= 0:
        return 0.0
    nh = ok.size
    if at is c.gpu:  # every candidate GPU: their (candidate, host) pairs, made once per candidate set
        who, where, count = _host_pairs(c, nh, gpu_host)
        on = ~ok[where]  # pairs on hosts that cannot take a rank yet
        who, where = who[on], where[on]
        held = np.bincount(where, weights=count[on], minlength=nh).astype(np.int64)  # candidate GPUs per host
    else:
        hosts = gpu_host[at]
        on = ~ok[hosts]  # candidate GPUs on hosts that cannot take a rank yet
        pairs = _unique(of[on] * nh + hosts[on])  # (candidate, such host), once each
        who, where = pairs // nh, pairs % nh
        held = np.bincount(hosts[on], minlength=nh)  # candidate GPUs per host
    share = c.cost[who] / np.bincount(who, minlength=len(c.runs))[who]
    lacks = (lv.host_gpus if r.whole_hosts else (r.gpus_per_node or 1)) - per_host
    all_of = np.bincount(where, weights=share, minlength=nh)
    least = np.full(nh, np.inf)
    np.minimum.at(least, where, share)
    can = ~ok & (held >= lacks) & (held > 0)  # the hosts victims can turn
    if r.whole_hosts and r.gpus_per_node is not None:
        can &= lv.host_gpus == r.gpus_per_node
    cost = np.where(lacks >= lv.host_gpus - per_host, all_of, least)[can]  # lacks all occupied GPUs: all_of
    if cost.size < short:
        return float("inf")
    return float(np.partition(cost, short - 1)[:short].sum())


def _unique(keys: np.ndarray) -> np.ndarray:
    """``np.unique(keys)`` (see :func:`_counted`)."""
    return _counted(keys)[0]


def _counted(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(keys, return_counts=True)``, without its sort (or hash) where ``keys`` is already in
    order: the candidates' GPUs come gang by gang, each gang's hosts in fabric order, so their keys
    usually are."""
    if keys.size > 1 and not (keys[1:] >= keys[:-1]).all():
        keys = np.sort(keys)
    step = np.empty(keys.size, bool)
    step[:1] = True
    np.not_equal(keys[1:], keys[:-1], out=step[1:])
    first = np.flatnonzero(step)
    return keys[first], np.diff(np.append(first, keys.size))


def _group_base(cum: np.ndarray, group: np.ndarray) -> np.ndarray:
    """For a running sum ``cum`` over items sorted by ``group``: the sum before each item's group."""
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if group.size else group
    base = np.zeros(cum.size, cum.dtype)
    if starts.size > 1:
        base[starts[1:]] = cum[starts[1:] - 1]
    return np.maximum.accumulate(base)


def _cover(cost: np.ndarray, units: np.ndarray, short: int) -> float:
    """The least cost of a fractional cover of ``short`` units by items of ``units`` (> 0) each, the
    cheapest per unit first (0: nothing to cover; inf: they cannot)."""
    if short <= 0:
        return 0.0
    per = cost / units
    order = np.argsort(per, kind="stable")
    covered = np.cumsum(units[order])
    k = int(np.searchsorted(covered, short))  # the first prefix that covers ``short``
    if k == order.size:
        return float("inf")
    below = int(covered[k - 1]) if k else 0
    return float(cost[order[:k]].sum() + per[order[k]] * (short - below))


def _trial(state: ClusterState, inside: np.ndarray, c: _Candidates, chosen: list[int]) -> ClusterState:
    """``state`` with the ``chosen`` candidates released and everything outside the domain taken
    (by :data:`~fabric_hpc.scheduler.placer.BLOCKED`, as :func:`~fabric_hpc.scheduler.placer.masked_state`)."""
    trial = state.copy()
    for i in chosen:
        trial.owner[c.idx[i]] = FREE
    outside = np.flatnonzero(~inside & trial.free)
    if outside.size:
        trial.allocate(BLOCKED, outside)
    return trial
