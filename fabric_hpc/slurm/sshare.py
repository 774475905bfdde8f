"""Fairshare usage from Slurm's own accounting: ``sshare`` (slurmctld's association usage, kept with slurmdbd).

What is read, per Slurm account, is the sum over the account's *user* associations (rows with a user),
so that a parent account (``root``) is not counted again with its children's usage:

* ``gres/gpu`` of the association's TRES usage: decayed GPU-seconds (``usage_tres_raw``, decayed by
  ``PriorityDecayHalfLife`` every ``PriorityCalcPeriod``). ``sshare -P -o ...,GrpTRESRaw`` prints it in
  whole TRES-*minutes* (truncated: an account below one GPU-minute reads 0), ``sshare --json``
  (23.02+) as ``tres.usage`` (``{name, value}`` records) in TRES-*seconds*; either way it becomes
  GPU-seconds, the scheduler's usage unit
  (:class:`~fabric_hpc.scheduler.UsageLedger`);
* when no row has a ``gres/gpu`` entry (the site does not account GPUs: ``AccountingStorageTRES`` without
  ``gres/gpu``), ``RawUsage`` instead: decayed *billing*-seconds (by default CPU-seconds). The fairshare
  weight only compares accounts with each other, so one unit for every account is what matters;
  :attr:`UsageAnswer.unit` says which one it is.

Each account's *shares* (``sacctmgr modify account X set fairshare=N``) come from the same answer: the
account's own row (no user; ``RawShares`` in ``-P``, ``shares`` in ``--json``). ``root`` (no shares) and an
account whose shares are ``parent`` (``fairshare=parent``) are left out: the fairshare policy gives such an
account its default share. :attr:`UsageAnswer.shares` holds them (whole numbers >= 0).

An answer without a single *user* association (``sshare`` without slurmdbd prints only its header; so
does one whose slurmdbd has no accounts and users) is :class:`NoAccounting`, a ``SlurmError``: such a
Slurm keeps no usage, and taking it would silently weigh every account the same.

The answers are untrusted input, decoded by their shape like :mod:`fabric_hpc.slurm.decode`: a row or
field of an unexpected shape is a :class:`~fabric_hpc.slurm.contract.SlurmError` naming it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fabric_hpc.slurm.contract import SlurmError
from fabric_hpc.slurm.decode import answer, load_answer, number, record, text

FIELDS = ("Account", "User", "RawShares", "RawUsage", "GrpTRESRaw")
PARSABLE_ARGV = ("sshare", "-a", "-P", "-o", ",".join(FIELDS))
JSON_ARGV = ("sshare", "-a", "--json")
GPU_TRES = "gres/gpu"
_MAX_ROWS = 1_000_000
_MAX_SHARES = 2**32 - 1
FS_USE_PARENT = 0x7FFFFFFF  # slurmdb.h SLURMDB_FS_USE_PARENT: --json's number for fairshare=parent


@dataclass(frozen=True)
class UsageAnswer:
    """Usage per account in one unit: ``gpu_seconds`` (from gres/gpu) or ``billing_seconds`` (RawUsage),
    and the raw shares of each account that has its own (not ``root``, not ``parent``)."""

    usage: dict[str, float] = field(default_factory=dict)
    unit: str = "gpu_seconds"
    shares: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Row:
    account: str
    user: str
    raw_usage: float
    gpu_seconds: float | None  # None: no gres/gpu entry in the row's TRES usage
    shares: int | None = None  # an account row's raw shares; None: root, parent or a user row


def _nonneg(value: float | None, what: str, key: str) -> float:
    if value is None or not math.isfinite(value) or value < 0:
        raise SlurmError(f"{what}: field {key!r} is {value!r}, expected a number >= 0",
                         hint="an answer of a Slurm version fabric does not know? report it")
    return float(value)


def _shares(value: Any, what: str, key: str) -> int:
    """Raw shares: a whole number in [0, 2**32)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and value == int(value) and 0 <= value <= _MAX_SHARES
    if not ok:
        raise SlurmError(f"{what}: field {key!r} is {value!r}, expected a whole number of shares >= 0",
                         hint="an answer of a Slurm version fabric does not know? report it")
    return int(value)


def _per_account(rows: Sequence[_Row]) -> UsageAnswer:
    users = [r for r in rows if r.user]
    by_gpu = any(r.gpu_seconds is not None for r in users)
    out: dict[str, float] = {}
    for r in users:
        value = (r.gpu_seconds or 0.0) if by_gpu else r.raw_usage
        out[r.account] = out.get(r.account, 0.0) + value
    shares = {r.account: r.shares for r in rows if not r.user and r.shares is not None and r.account != "root"}
    return UsageAnswer(dict(sorted(out.items())), "gpu_seconds" if by_gpu else "billing_seconds",
                       dict(sorted(shares.items())))


# -- sshare -P (every version; 22.05 has no --json) ----------------------------------------------
def parse_tres(value: str, what: str) -> dict[str, float]:
    """``cpu=0,mem=0,gres/gpu=2`` -> ``{"cpu": 0.0, ..., "gres/gpu": 2.0}``."""
    out: dict[str, float] = {}
    for item in filter(None, value.split(",")):
        name, sep, num = item.partition("=")
        try:
            amount = float(num) if sep and name else math.nan
        except ValueError:
            amount = math.nan
        out[name.strip()] = _nonneg(amount, what, f"GrpTRESRaw {item!r}")
    return out


def decode_parsable(out: str) -> UsageAnswer:
    """``sshare -a -P -o Account,User,RawShares,RawUsage,GrpTRESRaw`` (with its header line)."""
    lines = out.splitlines()
    if not lines or lines[0].split("|") != list(FIELDS):
        raise SlurmError(f"sshare -P: header is {lines[0][:120] if lines else ''!r}, expected {'|'.join(FIELDS)!r}")
    if len(lines) > _MAX_ROWS:
        raise SlurmError(f"sshare -P: {len(lines)} rows, more than {_MAX_ROWS}")
    rows = []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cols = line.split("|")
        what = f"sshare -P line {n}"
        if len(cols) != len(FIELDS):
            raise SlurmError(f"{what}: {len(cols)} fields, expected {len(FIELDS)}: {line[:120]!r}")
        account, user, raw_shares, raw, tres = (c.strip() for c in cols)
        if not account:
            raise SlurmError(f"{what}: field 'Account' is empty")
        try:
            raw_usage = float(raw) if raw else 0.0
        except ValueError:
            raw_usage = math.nan
        gpu_minutes = parse_tres(tres, what).get(GPU_TRES)  # -P prints whole TRES-minutes
        rows.append(_Row(account, user, _nonneg(raw_usage, what, "RawUsage"),
                         None if gpu_minutes is None else gpu_minutes * 60.0,
                         _parsable_shares(raw_shares, what) if not user else None))
    return _per_account(rows)


def _parsable_shares(value: str, what: str) -> int | None:
    """``RawShares`` of an account row: a number, ``parent`` or empty (root: no shares) -> None."""
    if value in ("", "parent"):
        return None
    try:
        return _shares(int(value), what, "RawShares")
    except ValueError:
        return _shares(value, what, "RawShares")


# -- sshare --json (23.02+) ----------------------------------------------------------------------
def _tres_usage(d: Mapping[str, Any], what: str) -> float | None:
    """``tres.usage``: ``[{"name": "gres/gpu", "value": N}, ...]`` -> N GPU-seconds (None: no gres/gpu entry)."""
    tres = d.get("tres")
    usage = None if tres is None else record(tres, f"{what} 'tres'").get("usage")
    if usage is None:
        return None
    if not isinstance(usage, list):
        raise SlurmError(f"{what}: field 'tres.usage' is {type(usage).__name__}, expected a list")
    found = None
    for i, item in enumerate(usage):
        where = f"{what} tres.usage[{i}]"
        item = record(item, where)
        if text(item, "name", where, required=True) == GPU_TRES:
            found = _nonneg(number(item, "value", where, required=True), where, "value")
    return found


def _json_row(d: Any, i: int) -> _Row:
    """A user association (``type`` USER: ``name`` is the user, ``parent`` the account) or an account's."""
    what = f"sshare --json shares[{i}]"
    d = record(d, what)
    kind = d.get("type")
    kinds = [kind] if isinstance(kind, str) else kind
    if not isinstance(kinds, list) or not kinds or not all(isinstance(k, str) for k in kinds):
        raise SlurmError(f"{what}: field 'type' is {kind!r}, expected a list such as ['USER']")
    user_row = "USER" in kinds
    account = text(d, "parent" if user_row else "name", what, required=True)
    user = text(d, "name", what, required=True) if user_row else ""
    if not account or (user_row and not user):
        raise SlurmError(f"{what}: field {'parent' if user_row else 'name'!r} or 'name' is empty")
    raw = _nonneg(number(d, "usage", what, required=True), what, "usage")
    shares = None if user_row else number(d, "shares", what)  # None: unset (root)
    if shares is not None:
        shares = _shares(shares, what, "shares")
    return _Row(account, user, raw, _tres_usage(d, what), None if shares == FS_USE_PARENT else shares)


def decode_json(data: Any) -> UsageAnswer:
    """``sshare -a --json``: ``{"shares": {"shares": [rows]}}``; TRES usage in TRES-seconds there."""
    top = answer(data, "sshare --json")
    shares = record(top.get("shares"), "sshare --json 'shares'")
    rows = shares.get("shares")
    if not isinstance(rows, list) or len(rows) > _MAX_ROWS:
        raise SlurmError(f"sshare --json: field 'shares.shares' is {type(rows).__name__}, expected a list of rows")
    return _per_account([_json_row(d, i) for i, d in enumerate(rows)])


class NoAccounting(SlurmError):
    """``sshare`` answered without a single user association: Slurm keeps no fairshare usage (no
    slurmdbd, or no accounts and users added to it). Every account would weigh the same."""


def _with_associations(found: UsageAnswer, command: str) -> UsageAnswer:
    if not found.usage:  # usage has an entry, 0 or more, for every account with a user association
        raise NoAccounting(
            f"`{command}` lists no user association: Slurm keeps no fairshare usage here "
            "(no slurmdbd, or no accounts and users in it), so every account would weigh the same",
            hint="set AccountingStorageType=accounting_storage/slurmdbd in slurm.conf (with slurmdbd "
                 "running and accounts and users added by sacctmgr), or usage_source = ledger (the agent's "
                 "own usage)")
    return found


# -- reading it ----------------------------------------------------------------------------------
def read_usage(run: Callable[[Sequence[str]], str]) -> UsageAnswer:
    """Ask ``sshare`` through ``run`` (argv -> stdout, SlurmError on failure): ``--json`` where the
    release has it, else ``-P``. An answer without a single user association is :class:`NoAccounting`."""
    try:
        out = run(list(JSON_ARGV))
    except SlurmError as exc:
        if "unrecognized option" not in exc.message and "invalid option" not in exc.message:
            raise
        return _with_associations(decode_parsable(run(list(PARSABLE_ARGV))), "sshare -a -P")
    found = decode_json(load_answer(out, "sshare --json did not answer JSON", nonfinite=True))
    return _with_associations(found, "sshare -a --json")
