"""topology/block's segment size (``--segment``, Slurm 24.05+), checked the same way by every
backend (CLI, slurmrestd, pyslurm); the rules were read in Slurm 25.11.7's source."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.contract import SlurmError

#: slurmctld's refusal of a job its topology cannot ever place (ESLURM_REQUESTED_TOPO_CONFIG_UNAVAILABLE);
#: under topology/block a --segment that does not divide the node count or fit a block gets it at submission
TOPO_REFUSAL = "Requested topology configuration is not available"
#: sbatch's own refusal of such a segment, before slurmctld sees the job (Slurm 26.05: src/common/slurm_opt.c,
#: _validate_segment_size: "sbatch: fatal: --segment=4 does not fit the job size (6): node count must be ...")
SBATCH_REFUSAL = "does not fit the job size"
SEGMENT_RULE = ("under topology/block Slurm needs the node count (-N) to be a multiple of --segment and each "
                "segment to fit in one block (BlockSizes in topology.conf); "
                "fabric_hpc.topology.export.segment_args gives a fitting --segment")
#: scontrol update keys (any case) that would change a job's segment size
SEGMENT_KEYS = frozenset({"segmentsize", "segment_size", "segment"})


def segment_size(value: str) -> int:
    """``--segment``'s value: hosts per segment, a whole number Slurm keeps in 16 bits."""
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 65533:
        raise ConfigError(f"--segment={value}: expected a whole number of hosts from 1 to 65533",
                          hint="e.g. --segment=18 (fabric_hpc.topology.export.segment_args gives it)")
    return int(value)


def _option(args: Sequence[str], short: str | None, long: str) -> str | None:
    """The last value of an sbatch option in ``args`` (``-N8``, ``-N 8``, ``--nodes=8``, ``--nodes 8``)."""
    found, items = None, [str(a) for a in args]
    for i, arg in enumerate(items):
        nxt = items[i + 1] if i + 1 < len(items) else None
        if arg == long or (short is not None and arg == short):
            found = nxt
        elif arg.startswith(long + "="):
            found = arg[len(long) + 1:]
        elif short is not None and arg.startswith(short) and len(arg) > len(short):
            found = arg[len(short):].removeprefix("=")
    return found


def check_segment(args: Sequence[str]) -> int | None:
    """``--segment``'s size in sbatch ``args`` (None without one), checked before Slurm sees it.

    Slurm 25.11's topology/block refuses a segment size that does not divide the job's node count
    (``src/plugins/topology/block/eval_nodes_block.c:315``). At submission it says so only for a job it
    can test at once; a held or deferred job is accepted and later stays pending with
    ``Reason=BadConstraints`` for ever. So a fixed ``-N`` that is no multiple of the segment is a
    ConfigError here, on every backend (a node range is left to Slurm).
    """
    value = _option(args, None, "--segment")
    if value is None:
        return None
    size = segment_size(value)
    nodes = _option(args, "-N", "--nodes")
    if nodes is not None and nodes.isascii() and nodes.isdigit() and int(nodes) % size:
        raise ConfigError(f"--segment={size} with -N {nodes}: Slurm's topology/block needs the node count "
                          "to be a multiple of the segment size (a held or deferred job would stay pending "
                          "with Reason=BadConstraints)",
                          hint=f"-N a multiple of {size}, or a --segment that divides {nodes}")
    return size


def refusal_hint(message: str, args: Sequence[str]) -> str | None:
    """The fix for slurmctld (or 26.05's sbatch) refusing a submission with a segment size its topology
    cannot place."""
    refused = TOPO_REFUSAL in message or SBATCH_REFUSAL in message
    if refused and _option(args, None, "--segment") is not None:
        return SEGMENT_RULE
    return None


def refuse_update(job_id: int, fields: Mapping[str, object]) -> None:
    """ConfigError for an update that would change a job's segment size: Slurm 25.11 sets it only at
    submission. ``scontrol update`` has no such key (``Update of this parameter is not supported``);
    slurmrestd's and pyslurm's job update accept ``segment_size`` and slurmctld ignores it without a
    word (``_update_job`` in ``src/slurmctld/job_mgr.c`` never reads it): an update never carries it."""
    for key, value in fields.items():
        if key.lower() in SEGMENT_KEYS:
            raise ConfigError(f"{key}={value}: Slurm sets a job's segment size only when the job is "
                              f"submitted; it cannot change job {job_id} (scontrol update has no "
                              "SegmentSize; slurmrestd and pyslurm updates ignore segment_size without "
                              "a warning)",
                              hint="cancel the job and submit it again with --segment=N")


@contextmanager
def submission(args: Sequence[str]) -> Iterator[None]:
    """Around a backend's submit call: :func:`check_segment` first, and slurmctld's refusal of an
    unplaceable segment re-raised with the rule that fixes it (:func:`refusal_hint`)."""
    check_segment(args)
    try:
        yield
    except SlurmError as exc:
        hint = refusal_hint(exc.message, args)
        if hint is None:
            raise
        raise SlurmError(exc.message, hint=hint) from None
