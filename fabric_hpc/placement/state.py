"""Cluster state: which GPU is free, down, or allocated to which job (numpy over ``fab.gpus``).

The JSON state file (shared with ``fabric report``)::

    {"version": 1,
     "jobs": {"job-17": {"gpus": ["su01-h01/gpu0"], "tier": "normal"}, "job-18": {"hosts": "su01-h[02-05]"}},
     "down": ["su02-h07", "su03-h01/gpu3"]}

Allocation and release are O(GPUs of the job); the free mask is a view the solvers read directly.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import stat
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.hostlist import expand
from fabric_hpc.topology import Fabric

FREE = -1
DOWN = -2
STATE_VERSION = 1


def _not_plain(meta: dict[str, Any]) -> list[str]:
    """The keys of ``meta`` whose values a state file cannot hold and read back: anything but a string,
    a bool or a finite number (JSON has no NaN or infinity)."""
    return sorted(k for k, v in meta.items() if not isinstance(v, (str, int, float, bool))
                  or (isinstance(v, float) and not math.isfinite(v)))


class ClusterState:
    """Owner of every GPU of a fabric: ``FREE`` (-1), ``DOWN`` (-2) or a job number (≥ 0)."""

    #: hosts without GPUs marked down (they own no entry of ``owner``; kept for the state file)
    _down_hosts: frozenset[str] = frozenset()
    #: whether ``_job_ids`` / ``_job_num`` may be shared with a copy (copied before the first change)
    _shared: bool = False
    #: what reading the state file noticed that is allowed but changes nothing (``from_dict``)
    notes: tuple[str, ...] = ()

    def __init__(self, fab: Fabric) -> None:
        """Every GPU of ``fab`` free (``load`` / ``from_dict`` read a state file)."""
        check_fabric(fab, "ClusterState(fab)")
        self.fab = fab
        self.owner = np.full(len(fab.gpus), FREE, dtype=np.int32)
        self._job_ids: list[str] = []
        self._job_num: dict[str, int] = {}
        self.job_meta: dict[str, dict[str, Any]] = {}

    @classmethod
    def from_free_mask(cls, fab: Fabric, free: np.ndarray) -> ClusterState:
        """A probe state: the GPUs in bool mask ``free`` free, every other GPU down (no jobs)."""
        out = cls.__new__(cls)
        out.fab, out.owner = fab, np.where(free, FREE, DOWN).astype(np.int32)
        out._job_ids, out._job_num, out.job_meta = [], {}, {}
        return out

    def compacted(self) -> ClusterState:
        """The same owners with job numbers renumbered densely: drops the ids of released jobs
        (a long replay sees every job once). Jobs keep their order; metadata is not carried."""
        out = ClusterState(self.fab)
        out.owner[self.owner == DOWN] = DOWN
        for job_id, num in sorted(self._job_num.items(), key=lambda kv: kv[1]):
            out.allocate(job_id, np.flatnonzero(self.owner == num).tolist())
        return out

    @property
    def known_jobs(self) -> int:
        """Job ids this state has numbered so far (released ones included)."""
        return len(self._job_ids)

    def holds(self, job: str) -> bool:
        """Whether ``job`` holds GPUs in this state."""
        return job in self._job_num

    def holding(self, jobs: Iterable[str]) -> np.ndarray:
        """:meth:`holds` of each of ``jobs``, as a bool array."""
        return np.fromiter(map(self._job_num.__contains__, jobs), bool)

    def job_numbers(self) -> dict[str, int]:
        """Job id → its number in ``owner``, for every job holding GPUs now (any id, even "free")."""
        return dict(self._job_num)

    @property
    def held_jobs(self) -> int:
        """Jobs holding GPUs now."""
        return len(self._job_num)

    # -- queries ---------------------------------------------------------------------------
    @property
    def free(self) -> np.ndarray:
        """Bool mask over ``fab.gpus``: True where the GPU is free."""
        return self.owner == FREE

    @property
    def jobs(self) -> dict[str, list[str]]:
        """Job id → its GPU ids, for every job holding GPUs now."""
        return {j: self.job_gpus(j) for j in self._job_num}

    def parallel_shape(self, job: str) -> tuple[int, int]:
        """(``tp``, ``pp``) of a running job from its metadata (docs/placement.md, "Cluster state
        file"): whole numbers ≥ 1 whose product divides the GPUs it holds, else (1, 1): one ring."""
        meta = self.job_meta.get(job)
        if not meta or ("tp" not in meta and "pp" not in meta):
            return 1, 1
        tp, pp = meta.get("tp", 1), meta.get("pp", 1)
        if _shape_problem(tp, pp, int((self.owner == self._num(job)).sum())):
            return 1, 1
        return int(tp), int(pp)

    def job_gpus(self, job: str) -> list[str]:
        """The GPU ids ``job`` holds, in fabric order (a NotFoundError when it holds none)."""
        num = self._num(job)
        return [self.fab.gpus[i] for i in np.flatnonzero(self.owner == num)]

    def occupancy(self) -> dict[str, str]:
        """gpu id -> "free" | "down" | job id."""
        names = np.array(["free", "down", *self._job_ids], dtype=object)
        return dict(zip(self.fab.gpus, names[np.where(self.owner < 0, -self.owner - 1, self.owner + 2)].tolist(),
                        strict=True))

    def utilisation(self) -> float:
        """Allocated GPUs / GPUs that are up."""
        up = int((self.owner != DOWN).sum())
        return float((self.owner >= 0).sum() / up) if up else 0.0

    def copy(self) -> ClusterState:
        """An independent copy (owners, job ids, metadata): changing one never changes the other."""
        other = ClusterState.__new__(ClusterState)
        other.fab, other.owner = self.fab, self.owner.copy()
        other._job_ids, other._job_num = self._job_ids, self._job_num  # copied on first change
        other._shared = self._shared = True
        other._down_hosts = self._down_hosts
        other.job_meta = {k: dict(v) for k, v in self.job_meta.items()}
        return other

    # -- updates ---------------------------------------------------------------------------
    def allocate(self, job: str, gpus: Iterable[str | int], **meta: Any) -> None:
        """Give GPUs (ids or indices) to ``job``; every GPU must be free (all or nothing)."""
        if not isinstance(job, str) or not job:
            raise ConfigError(f"a job id must be a non-empty string, got {job!r}",
                              hint='name the job, e.g. "job-42"')
        idx = self._indices(gpus)
        if not idx.size:
            raise ConfigError(f"job {job!r}: no GPUs to allocate", hint="give the GPU ids (or indices) the job holds")
        ordered = idx if (idx[1:] > idx[:-1]).all() else np.sort(idx)  # (already in order: as a rule)
        again = ordered[1:][ordered[1:] == ordered[:-1]]
        if again.size:  # a state file with the same list is refused too (from_dict)
            twice = self.fab.gpus[int(again[0])]
            raise ConfigError(f"job {job!r}: lists GPU {twice!r} twice",
                              hint="list each GPU of a running job once")
        busy = idx[self.owner[idx] != FREE]
        if busy.size:
            taken = ", ".join(f"{self.fab.gpus[i]} ({self._owner_name(i)})" for i in busy[:5])
            raise ConfigError(f"job {job!r}: {busy.size} GPU(s) are not free: {taken}",
                              hint="release the other job or choose free GPUs")
        if meta:  # what a state file may hold (save() must write what load() reads)
            self._check_meta(job, meta)
        if job not in self._job_num:
            self._own_jobs()
            self._job_num[job] = len(self._job_ids)
            self._job_ids.append(job)
        self.owner[idx] = self._job_num[job]
        if meta:
            self.job_meta.setdefault(job, {}).update(meta)

    def _check_meta(self, job: str, meta: dict[str, Any]) -> None:
        """A ConfigError when ``meta`` is not what a state file may hold: plain values, ``tp``/``pp``
        whole numbers ≥ 1 (whether their product divides the job's GPUs is read at use: else one ring,
        :meth:`parallel_shape`, and :meth:`to_dict` leaves them out)."""
        odd = _not_plain(meta)
        if odd:
            raise ConfigError(f"job {job!r}: metadata {odd} must be plain values (string, finite number, "
                              "true/false)", hint='e.g. tier="normal"')
        bad = _shape_problem(meta.get("tp", 1), meta.get("pp", 1), 0)  # 0 GPUs: the types only
        if bad:
            raise ConfigError(f"job {job!r}: {bad}", hint="give the job's tensor-parallel group size "
                              "as tp and its pipeline stages as pp (or leave them out)")

    def release(self, job: str) -> int:
        """Free every GPU of ``job``; returns how many were freed."""
        num = self._num(job)
        mask = self.owner == num
        self.owner[mask] = FREE
        self._own_jobs()
        del self._job_num[job]
        self.job_meta.pop(job, None)
        return int(mask.sum())

    def set_down(self, names: Iterable[str], down: bool = True) -> None:
        """Mark hosts or GPU ids down (or back up: free); one name may be given as a string."""
        names = [names] if isinstance(names, str) else list(names)
        bare = {n for n in names if n in self.fab.host_pos and not self.fab.host_gpus(n)}
        if bare:
            self._down_hosts = self._down_hosts | bare if down else self._down_hosts - bare
        idx = self._indices(g for n in names for g in self._gpus_of(n))
        if down:
            held = idx[self.owner[idx] >= 0]
            if held.size:  # a job keeps what it holds until it is released: down is for free GPUs
                jobs = sorted({self._owner_name(i) for i in held})
                raise ConfigError(f"cannot mark {held.size} GPU(s) down: held by job(s) {', '.join(jobs[:5])}",
                                  hint="release those jobs first (their GPUs are theirs until they end)")
            self.owner[idx] = DOWN
        else:
            self.owner[idx[self.owner[idx] == DOWN]] = FREE

    # -- file format -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The state file's document (docs/placement.md, "Cluster state file"): each job's hosts as
        one host list where it holds every GPU of each, else its GPU ids, and its metadata; down hosts
        as one host list, other down GPUs by id. ``from_dict`` reads it back."""
        from fabric_hpc.hostlist import compress

        jobs: dict[str, Any] = {}
        for job in self._job_num:
            gpus = self.job_gpus(job)
            hosts = sorted({self.fab.gpu(self.fab.gpu_pos[g]).host for g in gpus}, key=self.fab.host_pos.get)
            whole = sum(len(self.fab.host_gpus(h)) for h in hosts) == len(gpus)
            where = {"hosts": compress(hosts)} if whole and hosts else {"gpus": gpus}
            meta = self.job_meta.get(job, {})
            shape = (meta.get("tp", 1), meta.get("pp", 1))
            if ("tp" in meta or "pp" in meta) and _shape_problem(*shape, len(gpus)):
                meta = {k: v for k, v in meta.items() if k not in ("tp", "pp")}  # one ring (parallel_shape)
            jobs[job] = {**where, **meta}
        down_idx = np.flatnonzero(self.owner == DOWN)
        hosts_down = [h for h in self.fab.hosts if self.fab.host_gpus(h)
                      and all(self.owner[self.fab.gpu_pos[g]] == DOWN for g in self.fab.host_gpus(h))]
        whole = set(hosts_down)
        hosts_down += sorted(self._down_hosts)
        down = ([compress(hosts_down)] if hosts_down else []) + [
            self.fab.gpus[i] for i in down_idx if self.fab.gpu(int(i)).host not in whole]
        return {"version": STATE_VERSION, "jobs": jobs, "down": down}

    @classmethod
    def from_dict(cls, fab: Fabric, data: Any, *, source: str = "<state>") -> ClusterState:
        """The state a parsed state file describes (docs/placement.md, "Cluster state file"); a bad
        entry is a ConfigError naming ``source``, the entry and the fix."""
        if not isinstance(data, dict) or type(data.get("version")) is not int or data["version"] != STATE_VERSION:
            raise ConfigError(f"{source}: not a version-{STATE_VERSION} cluster state file",
                              hint='expected {"version": 1, "jobs": {...}, "down": [...]}')
        unknown = set(data) - {"version", "jobs", "down"}
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {sorted(unknown)} (valid keys: down, jobs, version)",
                              hint="remove them (docs/placement.md, Cluster state file)")
        state = cls(fab)
        try:
            state.set_down(_down_names(data.get("down", [])))
        except ConfigError as exc:  # NotFoundError too: say which file holds the bad name
            raise type(exc)(f"{source}: down: {exc.message}", hint=exc.hint) from None
        if state._down_hosts:  # allowed (Slurm may drain a login node) and kept, but it changes no placement
            from fabric_hpc.hostlist import compress

            bare = sorted(state._down_hosts, key=fab.host_pos.get)
            one = len(bare) == 1
            state.notes = (f"{source}: down: {compress(bare)} {'has' if one else 'have'} no GPUs, so "
                           f"marking {'it' if one else 'them'} down changes no placement (kept in the file "
                           "as listed)",)
        jobs = data.get("jobs", {})
        if not isinstance(jobs, dict):
            raise ConfigError(f"{source}: 'jobs' must map job ids to {{\"gpus\": [...]}} or "
                              f"{{\"hosts\": \"...\"}}, not a {type(jobs).__name__}",
                              hint=f'e.g. "jobs": {{"job-17": {_EXAMPLE_JOB}}}')
        for job, spec in jobs.items():
            gpus, meta = state._job_entry(job, spec, source)
            try:
                state.allocate(job, gpus, **meta)
            except ConfigError as exc:
                raise type(exc)(f"{source}: jobs.{job}: {exc.message}",
                                hint=state._claimed_fix(job, gpus) or exc.hint) from None
        return state

    def _job_entry(self, job: str, spec: Any, source: str) -> tuple[list[str], dict[str, Any]]:
        """(GPU ids, metadata) of one ``jobs`` entry of a state file, or a ConfigError with the fix."""
        where = f"{source}: jobs.{job}"
        if not isinstance(spec, dict) or ("gpus" in spec) == ("hosts" in spec):
            raise ConfigError(f"{where}: give exactly one of 'gpus' (GPU ids) or 'hosts'",
                              hint=f'e.g. "{job or "job-17"}": {_EXAMPLE_JOB} '
                                   '(or {"hosts": "su01-h[02-05]"})')
        listed = spec.get("gpus")
        if "gpus" in spec and not (isinstance(listed, list) and all(isinstance(g, str) for g in listed)):
            raise ConfigError(f"{where}.gpus must be a list of GPU ids", hint=f'e.g. {_EXAMPLE_JOB[1:-1]}')
        if "hosts" in spec and not isinstance(spec["hosts"], str):
            raise ConfigError(f"{where}.hosts must be a host-list string, got {type(spec['hosts']).__name__}",
                              hint='e.g. "hosts": "su01-h[02-05]" (or list GPU ids in "gpus")')
        meta = {k: v for k, v in spec.items() if k not in ("gpus", "hosts")}
        odd = _not_plain(meta)
        if odd:
            raise ConfigError(f"{where}: metadata {odd} must be plain values (string, finite number, "
                              "true/false)", hint='e.g. "tier": "normal"')
        try:
            gpus = listed if "gpus" in spec else [g for h in expand(spec["hosts"]) for g in self._gpus_of(h)]
        except ConfigError as exc:
            raise type(exc)(f"{where}.hosts: {exc.message}", hint=exc.hint) from None
        if not gpus or len(set(gpus)) != len(gpus):
            raise ConfigError(f"{where}: " + ("holds no GPUs" if not gpus else
                              f"lists GPU {Counter(gpus).most_common(1)[0][0]!r} twice"),
                              hint="list each GPU of a running job once; leave out jobs that hold none")
        bad = ("tp" in meta or "pp" in meta) and _shape_problem(meta.get("tp", 1), meta.get("pp", 1),
                                                                 len(gpus))
        if bad:
            raise ConfigError(f"{where}: {bad}", hint="give the job's tensor-parallel group size as \"tp\" "
                                                     "and its pipeline stages as \"pp\" (or leave them out: "
                                                     "one ring)")
        return gpus, meta

    def _claimed_fix(self, job: str, gpus: list[str]) -> str | None:
        """The fix when a state file gives ``job`` a GPU that is down or another job's (else None)."""
        for g in gpus:
            i = self.fab.gpu_pos.get(g)
            if i is None or self.owner[i] == FREE:
                continue
            other = self._owner_name(i)
            if other == "down":
                return f"a down GPU holds no job: remove {g} from jobs.{job} or from 'down'"
            return f"a GPU belongs to one job: remove {g} from jobs.{job} or from jobs.{other}"
        return None

    @classmethod
    def load(cls, fab: Fabric, path: str | os.PathLike[str]) -> ClusterState:
        """Read a state file of ``fab`` (:meth:`from_dict`); a missing file is a NotFoundError, a bad
        one a ConfigError naming the file and the entry."""
        from fabric_hpc.inputs import read_json

        if not os.fspath(path):
            raise ConfigError("the cluster state file name is empty", hint="give a file (see docs/placement.md) or omit --state")
        p = Path(path)
        if not p.exists():
            mkdir = "" if p.parent.is_dir() else f"mkdir -p {shlex.quote(str(p.parent))} && "
            raise NotFoundError(f"no cluster state file {p}",
                                hint=f"start an all-free one: {mkdir}echo '{{\"version\": 1}}' > "
                                     f"{shlex.quote(str(p))} (docs/placement.md, \"Cluster state file\"), "
                                     "or omit --state")
        return cls.from_dict(fab, read_json(p, what="cluster state file"), source=str(p))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically (temp file + rename); a symlink's target is written, the link kept, and
        an existing file's mode is kept (the file is the writer's afterwards: a directory others may
        write lets them replace it in turn)."""
        from fabric_hpc.atomic import write_atomic
        from fabric_hpc.inputs import os_error, output_path

        p = output_path(os.path.realpath(path), what="cluster state file")
        try:  # a file several users share (0666, 0664) keeps its mode, not this user's umask's
            mode = stat.S_IMODE(os.stat(p).st_mode) if p.exists() else None
            write_atomic(p, json.dumps(self.to_dict(), indent=1), mode=mode)
        except OSError as exc:
            raise os_error(exc, "cluster state file", p) from None

    # -- helpers ---------------------------------------------------------------------------
    def _own_jobs(self) -> None:
        """Before changing the job numbers: this state's own copy of them (see :meth:`copy`)."""
        if self._shared:
            self._job_ids, self._job_num, self._shared = list(self._job_ids), dict(self._job_num), False

    def _num(self, job: str) -> int:
        if job not in self._job_num:
            raise NotFoundError(f"no job {job!r} in the cluster state")
        return self._job_num[job]

    def _owner_name(self, i: int) -> str:
        o = int(self.owner[i])
        return "down" if o == DOWN else "free" if o == FREE else self._job_ids[o]

    def _gpus_of(self, name: str) -> list[str]:
        if name in self.fab.host_pos:
            return self.fab.host_gpus(name)
        if name in self.fab.gpu_pos:
            return [name]
        raise NotFoundError(f"{name!r} is neither a host nor a GPU of fabric {self.fab.name!r}",
                            hint=f"hosts look like {self.fab.hosts[0]}, GPUs like {self.fab.gpus[0]}"
                            if self.fab.gpus else "this fabric has no GPUs")

    def _indices(self, gpus: Iterable[str | int]) -> np.ndarray:
        if isinstance(gpus, np.ndarray) and gpus.dtype.kind in "iu":  # already indices
            idx = gpus.astype(np.int64).ravel()
        else:
            if isinstance(gpus, (str, int, np.integer)):  # one GPU, not its characters
                gpus = [gpus]
            elif not isinstance(gpus, Iterable):
                raise ConfigError(f"GPUs must be GPU ids or indices (a list), got {type(gpus).__name__}",
                                  hint=f"e.g. [{self.fab.gpus[0]!r}] or [0, 1]" if self.fab.gpus else None)
            idx = np.fromiter((g if isinstance(g, (int, np.integer)) else self._gpu_index(g) for g in gpus),
                              dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self.fab.gpus)):
            bad = int(idx[(idx < 0) | (idx >= len(self.fab.gpus))][0])
            raise NotFoundError(f"no GPU index {bad} in fabric {self.fab.name!r} (it has {len(self.fab.gpus)} GPUs: "
                                f"0..{len(self.fab.gpus) - 1})")
        return idx

    def _gpu_index(self, gpu: str) -> int:
        if gpu not in self.fab.gpu_pos:
            fab = self.fab
            hint = (f"GPU ids are <host>/gpu<i>, e.g. {fab.gpus[0]}; hosts here: {fab.hosts[0]} .. "
                    f"{fab.hosts[-1]} ({len(fab.hosts)})" if fab.gpus else "this fabric has no GPUs")
            raise NotFoundError(f"no GPU {gpu!r} in fabric {fab.name!r}", hint=hint)
        return self.fab.gpu_pos[gpu]


_JSON_TYPES = {"str": "string", "int": "number", "float": "number", "dict": "mapping", "bool": "true/false",
               "NoneType": "null"}


def _kind(value: Any) -> str:
    """"a string ('su01-h01')", "a list holding number 3", ... for error messages."""
    def name(v: Any) -> str:
        return _JSON_TYPES.get(type(v).__name__, type(v).__name__)
    if isinstance(value, list):
        odd = next((v for v in value if not isinstance(v, str)), None)
        return f"a list holding {name(odd)} {odd!r:.40}" if odd is not None else "a list"
    return f"a {name(value)} ({value!r:.40})"


_EXAMPLE_JOB = '{"gpus": ["su01-h01/gpu0", "su01-h01/gpu1"]}'


def check_fabric(fab: Any, what: str) -> None:
    """A ConfigError naming ``what`` unless ``fab`` is a :class:`~fabric_hpc.topology.Fabric`."""
    if not isinstance(fab, Fabric):
        raise ConfigError(f"{what}: fab must be a Fabric, not {type(fab).__name__}",
                          hint="open one: fabric_hpc.topology.open_fabric('dgx-h100-superpod-4su') "
                               "or open_fabric('superpod:sus=4')")


def check_state(state: Any, fab: Fabric, what: str) -> None:
    """A ConfigError naming ``what`` unless ``state`` is a :class:`ClusterState` of ``fab`` (the
    same fabric object, or one with the same GPUs)."""
    if not isinstance(state, ClusterState):
        raise ConfigError(f"{what}: state must be a ClusterState, not {type(state).__name__}",
                          hint="ClusterState(fab) (every GPU free) or ClusterState.load(fab, path)")
    if state.fab is not fab and list(state.fab.gpus) != list(fab.gpus):
        raise ConfigError(f"the cluster state is of fabric {state.fab.name!r}, not {fab.name!r}",
                          hint="build it from the same fabric: ClusterState(fab) or ClusterState.load(fab, path)")


def _down_names(down: Any) -> list[str]:
    if not isinstance(down, list) or not all(isinstance(d, str) for d in down):
        raise ConfigError(f"'down' must be a list of host names, host lists or GPU ids, not {_kind(down)}",
                          hint='e.g. "down": ["su02-h07", "su03-h[01-02]", "su04-h01/gpu3"]')
    out: list[str] = []
    for d in down:
        out.extend([d] if "/" in d else expand(d))
    return out


def _shape_problem(tp: Any, pp: Any, gpus: int) -> str | None:
    """What is wrong with a running job's ``tp``/``pp`` metadata on ``gpus`` GPUs, or None."""
    for name, v in (("tp", tp), ("pp", pp)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            return f"{name} must be a whole number ≥ 1, not {v!r}"
    if gpus % (tp * pp):
        return f"{gpus} GPU(s) do not split into pp={pp} stages of tp={tp} groups (tp·pp must divide them)"
    return None
