"""Slurm-style multifactor priority and fairshare with usage decaying by a half-life.

Follows Slurm's ``priority/multifactor`` plugin (https://slurm.schedmd.com/priority_multifactor.html)::

    priority = W_age * age_factor + W_fairshare * fairshare_factor + W_jobsize * size_factor
             + W_partition * tier_factor                        (each factor in [0, 1])

* age factor: time queued / ``PriorityMaxAge`` (default 7 days), capped at 1;
* job size factor: the gang's share of the cluster's GPUs (``PriorityFavorSmall=NO``, Slurm's default,
  favours large jobs; ``favor_small=True`` inverts it);
* walltime factor (fabric's addition, off by default): short requests first (see the field doc);
* tier factor: the partition/QOS factor of the job's :class:`~fabric_hpc.scheduler.contract.Tier`;
* fairshare factor: Slurm's classic formula ``F = 2 ** (-U / S)`` with ``U`` the account's decayed
  usage over the total decayed usage and ``S`` its normalised share ("Fair-share factor" section of
  the page above). Usage decays with ``PriorityDecayHalfLife`` (default 7 days).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from operator import attrgetter

import numpy as np

from fabric_hpc.errors import ConfigError
from fabric_hpc.scheduler.caches import Tally, _diff_into, offers
from fabric_hpc.scheduler.contract import (DEFAULT_TIERS, AccountFairshare, Job, PendingJob, SchedulerInput,
                                           Tier, UnsetTiers)
from fabric_hpc.scheduler.placer import gang_gpus

DAY = 86_400.0
#: Decayed usage (GPU-seconds) below which :class:`UsageLedger` forgets an account that holds no GPUs: a
#: millisecond of one GPU, a fairshare factor of 1 within float precision against any real usage. Accounts
#: seen once (short-lived projects) leave the ledger, and ``usage.json``, ~22 half-lives after a GPU-hour.
PRUNE_BELOW_GPU_S = 1e-3
_JOB, _ACCOUNT = attrgetter("job"), attrgetter("job.account")


class UsageLedger:
    """Decayed GPU-seconds per account: ``U(t) = Σ usage · 2^(-(t - t_use) / half_life)``.

    Drivers call :meth:`advance` with the GPUs each account holds; the charge over an interval at a
    constant rate is integrated exactly, so the result does not depend on how often it is called.
    An account whose usage has decayed below :data:`PRUNE_BELOW_GPU_S` and that holds no GPUs is
    dropped at that :meth:`advance` (bounded size: the agent's ``usage.json``, the simulator's ledger);
    to the fairshare it is then an account never seen.
    """

    def __init__(self, half_life_s: float = 7 * DAY) -> None:
        if not _nonneg(half_life_s) or half_life_s <= 0:
            raise ConfigError(f"fairshare half-life must be a finite number > 0 s (got {half_life_s!r})")
        self.half_life_s = half_life_s
        self._lam = math.log(2) / half_life_s
        self._usage: dict[str, float] = {}
        self._t: float | None = None

    def advance(self, now: float, gpus_by_account: Mapping[str, int]) -> None:
        """Decay to ``now`` and charge each account ``gpus`` GPU-seconds per second since the last call."""
        if not _nonneg(now) or not all(isinstance(a, str) and _nonneg(g) for a, g in gpus_by_account.items()):
            raise ConfigError(f"usage ledger: advance needs a finite time >= 0 and GPU counts >= 0 per account "
                              f"(got {now!r}, {dict(list(gpus_by_account.items())[:3])!r})")
        if self._t is None:
            self._t = now
            return
        dt = now - self._t
        if dt < 0:
            raise ConfigError(f"usage ledger: time ran backwards ({now} < {self._t})")
        if dt == 0:
            return
        decay = math.exp(-self._lam * dt)
        gain = (1.0 - decay) / self._lam
        for acct, used in list(self._usage.items()):
            if used * decay < PRUNE_BELOW_GPU_S and not gpus_by_account.get(acct):
                del self._usage[acct]  # decayed to nothing: forgotten (bounded ledger)
            else:
                self._usage[acct] = used * decay
        for acct, gpus in gpus_by_account.items():
            if gpus:
                self._usage[acct] = self._usage.get(acct, 0.0) + gpus * gain
        self._t = now

    def charge(self, account: str, gpu_seconds: float) -> None:
        if not isinstance(account, str) or not _nonneg(gpu_seconds):
            raise ConfigError(f"usage ledger: charge needs an account name and GPU-seconds >= 0 (got {account!r}, "
                              f"{gpu_seconds!r})")
        self._usage[account] = self._usage.get(account, 0.0) + gpu_seconds

    def usage(self) -> dict[str, float]:
        return dict(self._usage)

    @property
    def time(self) -> float | None:
        """The time of the last :meth:`advance` (None before the first)."""
        return self._t

    def restart_at(self, now: float) -> None:
        """Take ``now`` as the time of the last :meth:`advance`, charging and decaying nothing: a clock
        that went back behind the ledger's time (the next :meth:`advance` charges from ``now``)."""
        if not _nonneg(now):
            raise ConfigError(f"usage ledger: restart_at needs a finite time >= 0 (got {now!r})")
        self._t = now

    def to_dict(self) -> dict[str, object]:
        """The ledger as JSON-ready data (:meth:`from_dict` rebuilds it exactly)."""
        return {"half_life_s": self.half_life_s, "t": self._t, "usage": dict(sorted(self._usage.items()))}

    @classmethod
    def from_dict(cls, data: Mapping[str, object], *, source: str = "usage ledger") -> UsageLedger:
        """A ledger from :meth:`to_dict`'s data; ConfigError naming ``source`` when it is malformed."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: not a usage ledger (a JSON object with half_life_s, t, usage)",
                              hint="remove the file to start the usage from zero")
        usage, t, half = data.get("usage"), data.get("t"), data.get("half_life_s")
        ok = isinstance(usage, Mapping) and all(isinstance(k, str) and _nonneg(v) for k, v in usage.items()) \
            and (t is None or _nonneg(t)) and _nonneg(half) and set(data) == {"half_life_s", "t", "usage"}
        if not ok:
            raise ConfigError(f"{source}: not a usage ledger (keys half_life_s, t, usage with numbers >= 0)",
                              hint="remove the file to start the usage from zero")
        ledger = cls(float(half))  # type: ignore[arg-type]
        ledger._t = None if t is None else float(t)  # type: ignore[arg-type]
        ledger._usage = {k: float(v) for k, v in usage.items()}  # type: ignore[union-attr]
        return ledger


def _check_amounts(what: str, table: Mapping[str, float], total: float) -> None:
    """ConfigError naming the first account whose ``what`` in ``table`` is not a finite number >= 0
    (``total``: their sum, finite when all are, unless huge values overflow it)."""
    if math.isfinite(total) and min(table.values(), default=0.0) >= 0:
        return
    bad = next((a for a, v in table.items() if not _nonneg(float(v))), None)
    if bad is not None:
        raise ConfigError(f"fair share: the {what} of account {bad!r} is {table[bad]!r}, not a finite "
                          f"number >= 0",
                          hint=f"give each account's {what} as a finite number >= 0 (e.g. from sshare or the "
                               f"usage ledger)")


def _nonneg(value: object) -> bool:
    """A finite number >= 0 (an int too large for a float, such as 10**400, is not: it would overflow)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value) and value >= 0
    except OverflowError:
        return False


@dataclass
class ClassicFairshare:
    """Slurm's classic fair-share factor ``2^(-U/S)`` over flat accounts.

    ``shares``: raw shares per account (missing accounts get ``default_share``); a step whose input
    carries :attr:`~fabric_hpc.scheduler.SchedulerInput.shares` (the Slurm agent's, from ``sshare``) uses
    those instead for that step.
    """

    shares: Mapping[str, float] = field(default_factory=dict)
    default_share: float = 1.0

    def factors(self, view: SchedulerInput) -> dict[str, float]:
        found = set(map(_ACCOUNT, view.pending))
        found.update(map(_ACCOUNT, view.running), view.usage)
        return self.factors_for(found, view.usage, view.shares)

    def factors_for(self, found: set[str], usage: Mapping[str, float],
                    shares: Mapping[str, float] | None = None) -> dict[str, float]:
        """:meth:`factors` given the accounts of the pending and running jobs and of ``usage``, and the
        step's shares (None: the configured :attr:`shares`)."""
        accounts = sorted(found)  # a fixed order: the float sums below do not depend on hashing
        table = self.shares if shares is None else shares
        raw = {a: float(table.get(a, self.default_share)) for a in accounts}
        total_shares = sum(raw.values()) or 1.0
        total_usage = sum(usage.values())
        _check_amounts("usage", usage, total_usage)  # NaN or inf would make every priority NaN
        _check_amounts("share", raw, total_shares)
        out = {}
        for a in accounts:
            s = raw[a] / total_shares
            u = usage.get(a, 0.0) / total_usage if total_usage > 0 else 0.0
            out[a] = 2.0 ** (-u / s) if s > 0 else 0.0
        return out


@dataclass
class MultifactorPriority:
    """Weighted sum of age, fairshare, job size and tier factors (Slurm's priority/multifactor).

    Defaults: weights as a site that lets fairshare and tier dominate would set them; ties are
    broken by submit time, then job id, by the scheduler.
    """

    weight_age: float = 1000.0
    weight_fairshare: float = 10_000.0
    weight_size: float = 1000.0
    weight_tier: float = 100_000.0
    #: Not in Slurm: favour short walltime requests (shortest-job-first on the user's estimate):
    #: factor = 1 - log(1 + walltime/60) / log(1 + max_walltime/60), in [0, 1].
    weight_walltime: float = 0.0
    #: The short factor ranks the GPU-time requested (gang GPUs × walltime, Smith's smallest-area-first
    #: for the summed completion time of rigid gangs) instead of the walltime alone:
    #: factor = 1 - log(1 + gpus·walltime/60) / log(1 + cluster GPUs·max_walltime/60).
    short_by_area: bool = False
    max_age_s: float = 7 * DAY
    max_walltime_s: float = 7 * DAY
    favor_small: bool = False
    fairshare: ClassicFairshare = field(default_factory=ClassicFairshare)
    #: Left out: ``DEFAULT_TIERS``, replaced by the tiers of the
    #: :class:`~fabric_hpc.scheduler.core.Scheduler` it serves (which hands over a copy holding them).
    tiers: Mapping[str, Tier] = field(default_factory=lambda: UnsetTiers(DEFAULT_TIERS))

    _table: _StaticTable = field(default_factory=lambda: _StaticTable(), init=False, repr=False,
                                 compare=False)
    #: the running jobs' accounts, kept from step to step (the running set changes by a few jobs)
    _running: Tally = field(default_factory=lambda: Tally(_ACCOUNT), init=False, repr=False, compare=False)

    def other_terms_max(self) -> float:
        """The largest sum the terms other than the tier reach together: each factor (age, fairshare,
        size, walltime) is in [0, 1], so the sum of their weights. Tiers dominate (every job of a
        tier outranks every job of a lower one) when the gap between adjacent tiers' factors times
        ``weight_tier`` exceeds it (see :func:`tier_weight_to_dominate`)."""
        return self.weight_age + self.weight_fairshare + self.weight_size + self.weight_walltime

    def priorities(self, view: SchedulerInput) -> dict[str, float]:
        ids, prio, _ = self.ranked(view)
        return dict(zip(ids, prio.tolist()))

    def ranked(self, view: SchedulerInput) -> tuple[Sequence[str], np.ndarray, np.ndarray]:
        """(job ids, priorities, submit times) of ``view.pending`` in its order, as arrays (the ids
        a sequence of str, gathered from the table when first read): what :meth:`priorities`
        returns, for a scheduler that sorts them without a dict round trip. The per-job columns
        come from a table kept between calls, so a step costs a few numpy passes over the queue,
        not Python work per pending job."""
        if not view.pending:
            return np.empty(0, object), np.empty(0), np.empty(0)
        total = max(int(view.state.fab.index.gpu_host.size), 1)
        t = self._table
        if t.fab is not view.state.fab:  # the size term of a whole-hosts job depends on the fabric
            t.clear(total)
            t.fab = view.state.fab
        q = t.queue(view.pending, total, partial(self._static_terms, fab=view.state.fab))
        submit, walltime, size, tier = q.num
        fs = self._fairshare(view, q.accounts(t.accounts)) if self.weight_fairshare else {}
        age = np.subtract(view.now, submit)
        np.maximum(age, 0.0, out=age)
        age /= self.max_age_s
        np.minimum(age, 1.0, out=age)
        age *= self.weight_age
        # the same products as per job (factor × weight), made once per account
        fs_term = (np.array([fs.get(a, 1.0) for a in t.accounts], float) * self.weight_fairshare)[q.account]
        # the module doc's sum, term by term in the same order (bit-identical to scalar code),
        # in place: walltime + age + fairshare + size + tier
        prio = np.add(walltime, age, out=age)
        prio += fs_term
        prio += size
        prio += tier
        return q.ids, prio, submit

    def _fairshare(self, view: SchedulerInput, present: set[str]) -> dict[str, float]:
        """The fairshare factors, given the pending jobs' accounts (read from the table)."""
        if not offers(self.fairshare, AccountFairshare):
            return self.fairshare.factors(view)
        found = set(present)
        running = view.running if isinstance(view.running, list) else list(view.running)
        found.update(self._running.update(running), view.usage)
        return self.fairshare.factors_for(found, view.usage, view.shares)

    def _static_terms(self, job: Job, total: int, fab=None) -> tuple[float, float, float]:
        """(walltime, size, tier) terms: fixed while the job waits (weights read at first sight). The
        size is the GPUs the gang takes on ``fab`` (:func:`~fabric_hpc.scheduler.placer.gang_gpus`)."""
        gpus = job.gpus if fab is None else gang_gpus(job, fab)
        size = min(gpus / total, 1.0)
        if self.favor_small:
            size = 1.0 - size
        tiers = self.tiers
        tier = tiers.get(job.tier)
        if tier is None:
            raise ConfigError(f"job {job.id}: unknown tier {job.tier!r}",
                              hint=f"tiers: {', '.join(tiers)} (a site's own tiers: Scheduler(tiers=...))")
        short = 0.0
        if self.weight_walltime and self.short_by_area:
            area = max(gpus, 1) * job.walltime / 60
            short = 1.0 - min(math.log1p(area) / math.log1p(total * self.max_walltime_s / 60), 1.0)
        elif self.weight_walltime:
            short = 1.0 - min(math.log1p(job.walltime / 60) / math.log1p(self.max_walltime_s / 60), 1.0)
        return self.weight_walltime * short, self.weight_size * size, self.weight_tier * tier.factor


def tier_weight_to_dominate(prio: MultifactorPriority, tiers: Mapping[str, Tier]) -> float:
    """A ``weight_tier`` for ``prio`` under which ``tiers`` dominate: twice the other terms' largest
    sum (:meth:`MultifactorPriority.other_terms_max`) over the smallest gap between two distinct tier
    factors, so adjacent tiers lie that sum twice apart (0 when the tiers share one factor)."""
    factors = sorted({t.factor for t in tiers.values()})
    gaps = [b - a for a, b in zip(factors, factors[1:])]
    return 2.0 * prio.other_terms_max() / min(gaps) if gaps else 0.0


_Terms = Callable[[Job, int], tuple[float, float, float]]


class _Ids(Sequence):
    """The pending jobs' ids in queue order: the table's id column at ``rows``, gathered when first
    read (the column's rows below the table's length are never written again, so reading later
    gives what reading now would). A scheduler that reads no id (the simulator's steps without a
    full tie) then pays no copy of an object array per step."""

    __slots__ = ("_column", "_rows", "_ids")

    def __init__(self, column: np.ndarray, rows: np.ndarray) -> None:
        self._column, self._rows, self._ids = column, rows, None

    def _array(self) -> np.ndarray:
        if self._ids is None:
            self._ids = self._column[self._rows]
        return self._ids

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, k):
        return self._array()[k]

    def __iter__(self):
        return iter(self._array())


@dataclass(frozen=True)
class _Queue:
    """The pending jobs' columns in queue order: table rows, ``num`` (rows: submit time, walltime,
    size and tier terms), account indices, pending jobs per account index, and the ids (lazy)."""

    rows: np.ndarray
    num: np.ndarray
    account: np.ndarray
    count: np.ndarray
    ids: _Ids

    def accounts(self, names: list[str]) -> set[str]:
        return {names[a] for a in np.flatnonzero(self.count)}


def _cut(a: np.ndarray, gone: list[int], tail: np.ndarray) -> np.ndarray:
    """``a`` without the positions ``gone`` (sorted) on its last axis, then ``tail``: by slices."""
    pieces, start = [], 0
    for g in gone:
        pieces.append(a[..., start:g])
        start = g + 1
    pieces += [a[..., start:], tail]
    return np.concatenate(pieces, axis=-1)


def _pad(count: np.ndarray, n: int) -> np.ndarray:
    return np.concatenate((count, np.zeros(n - count.size, count.dtype))) if count.size < n else count


class _StaticTable:
    """Per-pending-job columns (id, submit, account, static priority terms) in arrays, one row per
    :class:`PendingJob` object seen (keyed by ``id()``; the row keeps the object alive, so the key
    cannot be reused, and a PendingJob is frozen, so its row never goes stale)."""

    def __init__(self) -> None:
        self.clear(0)

    _COLUMNS = (("ids", object), ("submit", np.float64), ("walltime", np.float64), ("size", np.float64),
                ("tier", np.float64), ("account", np.int64))

    fab: object = None  # the fabric the rows are about (set by the caller)

    def clear(self, total: int) -> None:
        self.total = total
        self.row: dict[int, int] = {}
        self.pending: list[PendingJob] = []
        self.accounts: list[str] = []
        self._acct: dict[str, int] = {}
        #: the last call's pending jobs (a private list) and columns: most steps differ from the one
        #: before by a few jobs that started and a few that arrived (see :func:`~fabric_hpc.scheduler.caches._diff`)
        self._prev: list[PendingJob] = []
        no_rows = np.empty(0, np.int64)
        self._q = _Queue(no_rows, np.empty((4, 0)), no_rows, np.zeros(0, np.int64), _Ids(np.empty(0, object), no_rows))
        for name, dtype in self._COLUMNS:  # columns with spare capacity; rows [0, len(pending)) are set
            setattr(self, name, np.empty(256, dtype))

    def queue(self, pending: Sequence[PendingJob], total: int, terms: _Terms) -> _Queue:
        """The columns of ``pending``, in its order (rows added for jobs not seen yet)."""
        if total != self.total or len(self.pending) > 4 * len(pending) + 4096:
            self.clear(total)
        new = pending if isinstance(pending, list) else list(pending)
        diff = _diff_into(self._prev, new) if self._prev else None
        if diff is None:
            self._prev = list(new)  # a private copy: the next call compares against it
            self._q = self._gather(self._lookup(new, total, terms))
        elif diff[0] or diff[1] < len(new):  # the last queue minus the jobs that left, plus a tail
            gone, tail = diff
            q = self._q
            add = self._gather(self._lookup(new[tail:], total, terms))
            count = np.bincount(q.account[gone], minlength=len(self.accounts)) if gone else 0
            rows = _cut(q.rows, gone, add.rows)
            self._q = _Queue(rows, _cut(q.num, gone, add.num), _cut(q.account, gone, add.account),
                             _pad(q.count, len(self.accounts)) - count + add.count, _Ids(self.ids, rows))
        return self._q

    def _gather(self, rows: np.ndarray) -> _Queue:
        account = self.account[rows]
        num = np.stack((self.submit[rows], self.walltime[rows], self.size[rows], self.tier[rows]))
        return _Queue(rows, num, account, np.bincount(account, minlength=len(self.accounts)), _Ids(self.ids, rows))

    def _lookup(self, pending: Sequence[PendingJob], total: int, terms: _Terms) -> np.ndarray:
        try:
            return np.fromiter(map(self.row.get, map(id, pending)), np.int64, len(pending))
        except TypeError:  # a None: some were never seen
            rows = list(map(self.row.get, map(id, pending)))
            new = [k for k, r in enumerate(rows) if r is None]
            base = self._add([pending[k] for k in new], total, terms)
            for n, k in enumerate(new):
                rows[k] = base + n
            return np.array(rows, np.int64)

    def _add(self, new: list[PendingJob], total: int, terms: _Terms) -> int:
        """Append rows for ``new``; returns the first new row."""
        jobs = list(map(_JOB, new))
        vals = [terms(j, total) for j in jobs]
        for j in jobs:
            if j.account not in self._acct:
                self._acct[j.account] = len(self.accounts)
                self.accounts.append(j.account)
        base, end = len(self.pending), len(self.pending) + len(new)
        if end > self.ids.size:  # grow every column (amortised: at least double)
            for name, _ in self._COLUMNS:
                old = getattr(self, name)
                grown = np.empty(max(end, 2 * old.size), old.dtype)
                grown[:base] = old[:base]
                setattr(self, name, grown)
        self.pending.extend(new)
        self.row.update((id(p), base + k) for k, p in enumerate(new))
        self.ids[base:end] = [j.id for j in jobs]
        self.submit[base:end] = [j.submit for j in jobs]
        self.walltime[base:end] = [v[0] for v in vals]
        self.size[base:end] = [v[1] for v in vals]
        self.tier[base:end] = [v[2] for v in vals]
        self.account[base:end] = [self._acct[j.account] for j in jobs]
        return base
