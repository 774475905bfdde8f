"""The rest backend's translations of sbatch options and scontrol values into slurmrestd's job
properties (v0.0.38's ``job`` and v0.0.40+'s ``job_desc_msg``); re-exported by
:mod:`fabric_hpc.slurm.rest_backend`, where they were first."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from fabric_hpc.errors import ConfigError, FabricError
from fabric_hpc.slurm.segment import segment_size

__all__ = ["SEGMENT_HINT", "for_version", "minutes", "sbatch_args_to_job", "sbatch_args_to_job_desc",
           "sbatch_options", "start_time"]


def _hosts(value: str) -> list[str]:
    from fabric_hpc.hostlist import expand

    try:
        return expand(str(value))
    except FabricError as exc:
        raise ConfigError(f"unreadable node list {value!r}: {exc.message}") from None


def start_time(value: str) -> int:
    """``now`` / ``now+S`` (seconds) / a UNIX time -> a UNIX time (this machine's clock)."""
    text = str(value).strip()
    if text == "now":
        return int(time.time())
    if text.startswith("now+") and text[4:].isdigit():
        return int(time.time()) + int(text[4:])
    if text.isdigit():
        return int(text)
    raise ConfigError(f"the rest backend reads a start time as now, now+SECONDS or a UNIX time, not {value!r}")


def minutes(value: str) -> int:
    """A Slurm time limit (``30``, ``1:00:00``, ``2-00:00``, ``MM:SS``) in whole minutes."""
    text = str(value).strip()
    days, _, rest = text.rpartition("-") if "-" in text else ("0", "", text)
    parts = rest.split(":")
    if not days.isdigit() or not all(p.isdigit() for p in parts) or len(parts) > 3:
        raise ConfigError(f"unreadable time limit {value!r}", hint="minutes, MM:SS, HH:MM:SS or D-HH[:MM[:SS]]")
    nums = [int(p) for p in parts]
    if "-" in text:  # D-HH, D-HH:MM, D-HH:MM:SS
        h, m, s = (nums + [0, 0])[:3]
    else:  # M, M:S, H:M:S
        h, m, s = ([0, 0] + nums)[-3:] if len(nums) == 3 else (0, nums[0], nums[1] if len(nums) > 1 else 0)
    return int(days) * 1440 + h * 60 + m + (1 if s else 0)


#: the fix for a --segment the server's API cannot carry (v0.0.38, v0.0.40)
SEGMENT_HINT = ("submit through the cli backend (--backend cli), or a slurmrestd of Slurm 24.05+ "
                "(data_parser v0.0.41 or later) started with -s openapi/slurmctld")

#: job_desc_msg's segment_size (topology/block's --segment) first in data_parser v0.0.41 (Slurm 24.05)
SEGMENT_MIN = (0, 0, 41)
#: job_desc_msg numbers of data_parser v0.0.40 (Slurm 23.11) whose parser warns for a plain integer
#: ("Expected OpenAPI type=object": UINT32_NO_VAL/UINT16_NO_VAL are addpss(.., OBJECT) there, no
#: longer checked from v0.0.41): sent as {set, infinite, number}, which every version takes
_OBJECT_NUMBERS_0040 = ("time_limit", "kill_warning_delay")


def for_version(desc: dict[str, Any], version: tuple[int, int, int]) -> dict[str, Any]:
    """A v0.0.40+ ``job_desc_msg`` as ``version``'s parser takes it without a warning; ConfigError for
    a ``segment_size`` it does not know (v0.0.40 would queue the job and ignore it)."""
    if "segment_size" in desc and version < SEGMENT_MIN:
        shown = "v%d.%d.%d" % version
        raise ConfigError(f"--segment={desc['segment_size']}: slurmrestd's {shown} API (Slurm 23.11) has no "
                          "segment size", hint=SEGMENT_HINT)
    if version >= SEGMENT_MIN:
        return desc
    return {k: {"set": True, "infinite": False, "number": v} if k in _OBJECT_NUMBERS_0040 and type(v) is int
            else v for k, v in desc.items()}


_ARG_KEYS = {"-N": "nodes", "--nodes": "nodes", "-J": "name", "--job-name": "name", "--comment": "comment",
             "--gres": "gres", "--gpus-per-node": "gpus_per_node", "-t": "time_limit", "--time": "time_limit",
             "--begin": "begin_time", "-w": "nodelist", "--nodelist": "nodelist", "-p": "partition",
             "--partition": "partition", "-o": "standard_output", "--output": "standard_output",
             "--signal": "signal", "--segment": "segment_size"}


def sbatch_options(args: Sequence[str]) -> dict[str, Any]:
    """The sbatch options the rest backend understands, by neutral name (``hold`` is a bool)."""
    out: dict[str, Any] = {}
    items = list(args)
    i = 0
    while i < len(items):
        arg = items[i]
        if arg in ("-H", "--hold"):
            out["hold"] = True
            i += 1
            continue
        key, eq, value = arg.partition("=")
        if not eq and key in _ARG_KEYS and i + 1 < len(items):
            value, i = items[i + 1], i + 1
        if key not in _ARG_KEYS:
            raise ConfigError(f"the rest backend does not translate sbatch option {arg!r}",
                              hint=f"supported: {' '.join(sorted(_ARG_KEYS))} -H; or use the cli backend")
        out[_ARG_KEYS[key]] = value
        i += 1
    return out


def sbatch_args_to_job(args: Sequence[str]) -> dict[str, Any]:
    """The sbatch options the rest backend understands, as v0.0.38 job properties."""
    job = sbatch_options(args)
    if "gres" in job:
        job["gres"] = job["gres"].removeprefix("gres:")
    if "segment_size" in job:  # topology/block's --segment came with Slurm 24.05 (v0.0.41's job_desc_msg)
        raise ConfigError(f"--segment={job['segment_size']}: slurmrestd's v0.0.38 API (Slurm 22.05) has no segment "
                          "size", hint=SEGMENT_HINT)
    return job


def _tres(gres: str) -> str:
    """``gpu:3`` / ``gres:gpu:h100:3`` -> ``gres/gpu:3`` / ``gres/gpu:h100:3`` (TRES spelling)."""
    items = [g.strip() for g in gres.split(",") if g.strip()]
    return ",".join("gres/" + g.removeprefix("gres:").removeprefix("gres/") for g in items)


def sbatch_args_to_job_desc(args: Sequence[str]) -> dict[str, Any]:
    """The sbatch options the rest backend understands, as a v0.0.40+ ``job_desc_msg``."""
    desc: dict[str, Any] = {}
    tres: list[str] = []
    for key, value in sbatch_options(args).items():
        if key == "gres":
            tres.append(_tres(value))
        elif key == "gpus_per_node":
            tres.append(f"gres/gpu:{value}")
        elif key == "time_limit":
            desc["time_limit"] = minutes(value)
        elif key == "begin_time":
            desc["begin_time"] = start_time(value)
        elif key == "nodelist":
            desc["required_nodes"] = list(_hosts(value))
        elif key == "signal":
            desc.update(_signal(value))
        elif key == "segment_size":  # job_desc_msg's segment_size (uint16, v0.0.41+)
            desc["segment_size"] = segment_size(value)
        else:  # nodes (sbatch's "N" / "min-max" text), name, comment, partition, standard_output, hold
            desc[key] = value
    if tres:
        desc["tres_per_node"] = ",".join(tres)
    return desc


def _signal(value: str) -> dict[str, Any]:
    """``[B:]SIG[@SECONDS]`` -> kill_warning_* fields."""
    batch = value.startswith("B:")
    sig, _, delay = value.removeprefix("B:").partition("@")
    out: dict[str, Any] = {"kill_warning_signal": sig}
    if delay:
        if not delay.isdigit():
            raise ConfigError(f"--signal={value}: the time after @ must be seconds")
        out["kill_warning_delay"] = int(delay)
    if batch:
        out["kill_warning_flags"] = ["BATCH_JOB"]
    return out
