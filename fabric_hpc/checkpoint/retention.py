"""Retention: which committed checkpoints to keep, and a prune that is safe while others read."""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path

from fabric_hpc.checkpoint import fsio, health, store
from fabric_hpc.checkpoint.errors import CheckpointCorruptError, CheckpointError
from fabric_hpc.errors import require_whole
from fabric_hpc.checkpoint.format import MANIFEST
from fabric_hpc.checkpoint.pins import read_pins
from fabric_hpc.events import emit


@dataclass(frozen=True)
class RetentionPolicy:
    """Keep the last ``keep_last`` readable checkpoints, every step divisible by ``keep_every``,
    and (by default) every tagged checkpoint. The one ``latest`` points to is always kept, and so
    is a damaged one (its manifest unreadable, or a step directory with no manifest): it does not
    count towards ``keep_last``, is listed in :attr:`PruneResult.damaged`, and it is
    left for ``fabric ckpt verify`` and the admin, never deleted unseen. A checkpoint a newer
    fabric-hpc wrote (its format version unknown here) is kept the same way, listed in
    :attr:`PruneResult.newer`: this code cannot tell its tags. A step pinned by an inference
    engine (``ROOT/.pins``, :mod:`.pins`) is kept too (:attr:`PruneResult.pinned`)."""

    keep_last: int = 3
    keep_every: int | None = None
    keep_tagged: bool = True

    def __post_init__(self) -> None:
        require_whole(self.keep_last, "keep_last", error=CheckpointError)
        if self.keep_every is not None:
            require_whole(self.keep_every, "keep_every", error=CheckpointError)
        if self.keep_last < 1:
            raise CheckpointError(f"keep_last must be >= 1, got {self.keep_last}",
                                  hint="the newest checkpoint is always kept")
        if self.keep_every is not None and self.keep_every < 1:
            raise CheckpointError(f"keep_every must be >= 1, got {self.keep_every}")

    def keep(self, refs: list[store.CheckpointRef], tagged: set[int], latest: str | None,
             damaged: frozenset[int] = frozenset()) -> set[int]:
        steps = [r.step for r in refs]
        kept = set([s for s in steps if s not in damaged][-self.keep_last:]) | set(damaged)
        if self.keep_every:
            kept |= {s for s in steps if s % self.keep_every == 0}
        if self.keep_tagged:
            kept |= tagged
        kept |= {r.step for r in refs if r.path.name == latest}
        return kept


@dataclass(frozen=True)
class PruneResult:
    removed: list[int]
    kept: list[int]
    busy: list[int]  # would be removed, but a reader holds them; retried on the next prune
    damaged: list[int] = field(default_factory=list)  # kept: their manifest cannot be read, or is missing
    newer: list[int] = field(default_factory=list)  # kept: written by a newer fabric-hpc (format_version)
    pinned: dict[int, str] = field(default_factory=dict)  # kept: step -> who pinned it (ROOT/.pins, pins.py)
    pin_problems: list[str] = field(default_factory=list)  # unreadable pin files (they protect nothing)
    leftovers: list[str] = field(default_factory=list)  # killed saves' and prunes' leftovers removed
    unreadable: dict[int, str] = field(default_factory=dict)  # kept (in damaged too): permission denied


def prune(root: Path | str, policy: RetentionPolicy, *, dry_run: bool = False,
          upto_step: int | None = None, refuse_broken_latest: bool = False) -> PruneResult:
    """Delete the checkpoints ``policy`` does not keep. A checkpoint being read (shared lock on
    its manifest) is skipped; deletion renames into a trash name first, so a new reader never
    sees a half-deleted checkpoint. ``upto_step`` protects newer checkpoints (e.g. a local tier's
    checkpoints that are not drained yet) while still counting them as the newest. Each step gets
    the metadata check of :func:`health.step_health` first: a damaged one is kept and not counted.
    With ``refuse_broken_latest`` (``fabric ckpt prune`` without --force), a ``latest`` that is
    damaged or names a damaged step refuses the prune (CheckpointCorruptError).
    Leftovers of killed saves (their writer dead, on this host) and of killed prunes are removed."""
    if not isinstance(policy, RetentionPolicy):
        raise CheckpointError(f"policy must be a RetentionPolicy, got {type(policy).__name__}",
                              hint="e.g. prune(root, RetentionPolicy(keep_last=3))")
    root = Path(root)
    refs = store.list_checkpoints(root)
    states = {r.step: health.step_health(r) for r in refs}
    newer = frozenset(step for step, h in states.items() if h.state == health.NEWER)
    unreadable = {step: h.why for step, h in states.items() if h.state == health.UNREADABLE}
    # damaged: a manifest that cannot be read, chunk files that do not match it, or a step
    # directory with none at all (a partial copy)
    bad = (health.DAMAGED, health.UNREADABLE)
    damaged = frozenset(step for step, h in states.items() if h.state in bad) \
        | {r.step for r in store.uncommitted_steps(root)}
    if refuse_broken_latest:
        _refuse_broken_latest(root, damaged)
    tagged = {step for step, h in states.items() if h.manifest is not None and h.manifest.tags}
    kept = policy.keep(refs, tagged, store.read_latest(root), damaged | newer)
    pins, pin_problems = read_pins(root)
    pinned = sorted({p.step for p in pins} & {r.step for r in refs})
    kept |= set(pinned)
    removed, busy = [], []
    with store.root_lock(root):
        for ref in refs:
            if ref.step in kept or (upto_step is not None and ref.step > upto_step):
                continue
            if dry_run:
                removed.append(ref.step)
            elif remove_if_idle(root, ref):
                removed.append(ref.step)
            else:
                busy.append(ref.step)
        left = [lo for lo in health.leftovers(root) if lo.state == "abandoned"] if dry_run \
            else health.remove_abandoned(root)
    if removed and not dry_run:
        fsio.fsync_dir(root)
        emit("checkpoint.pruned", root=str(root), removed=removed, busy=busy)
    if damaged:
        emit("checkpoint.prune_damaged", root=str(root), steps=sorted(damaged))
    holders = {p.step: f"{p.by} {p.target}".strip() or p.path.name for p in pins if p.step in pinned}
    return PruneResult(removed, sorted(kept), busy, sorted(damaged), sorted(newer), holders, pin_problems,
                       leftovers=[str(lo.path) for lo in left], unreadable=unreadable)


def _refuse_broken_latest(root: Path, damaged: frozenset[int]) -> None:
    """CheckpointCorruptError when ``latest`` is damaged or names a damaged step: which step is
    the newest good one is then unknown, and a prune could delete it."""
    problem = latest_problem(root, damaged)
    if problem is not None:
        raise CheckpointCorruptError(
            f"{root}: {problem}; refusing to prune while it is broken",
            hint=f"rewrite it (`echo step-NNNNNNNNNN > {root / store.LATEST}` naming the newest good step, "
                 "after `fabric ckpt verify --all`), or pass --force to prune anyway", problems=[problem])


def latest_problem(root: Path, damaged: frozenset[int] | set[int] = frozenset()) -> str | None:
    """What is wrong with ``ROOT/latest`` (None: missing, or names a good or missing step)."""
    if not os.path.lexists(root / store.LATEST):
        return None
    name = store.read_latest(root)
    if name is None:
        return f"{store.LATEST}: {store.LATEST_DAMAGED}"
    if int(name.split("-")[1]) in damaged:
        return f"{store.LATEST}: names {name}, which is damaged"
    return None


def remove_if_idle(root: Path, ref: store.CheckpointRef) -> bool:
    """Rename ``ref`` into the trash and delete it, unless a reader holds its manifest."""
    try:
        fd = os.open(ref.path / MANIFEST, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:  # gone, or a symlink planted in its place: leave it to the admin
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        trash = root / f"{store.TRASH_PREFIX}{ref.path.name}-{os.urandom(4).hex()}"
        os.rename(ref.path, trash)
    finally:
        os.close(fd)
    fsio.remove_tree(trash)
    return True
