"""The bounds of the agent's numeric settings: one set, read by the agent config (``AgentConfig``,
the ``[agent]`` section of the config file), the CLI options of ``fabric agent run`` and ``fabric
slurm plugin-config``, and job_submit.lua's renderer (:func:`fabric_hpc.slurm.plugins.render_job_submit`).

Light on purpose (no imports): the CLI modules read it when their options are declared.
"""

from __future__ import annotations

DAY_S = 86400
#: Seconds a deferred job waits for the agent before Slurm takes it (job_submit.lua's FALLBACK_S).
FALLBACK_S = (5, DAY_S)
#: job_submit.lua's limit of GPUs per node.
MAX_GPUS_PER_NODE = (1, 1024)
#: (low, high, low excluded) of the agent's float settings.
FLOATS: dict[str, tuple[float, float, bool]] = {
    "interval_s": (0.0, DAY_S, True),
    "max_backoff_s": (0.0, DAY_S, True),
    "contact_timeout_s": (0.0, DAY_S, True),
    "pin_timeout_s": (0.0, DAY_S, True),
    "backfill_interval_s": (0.0, DAY_S, False),
    "compact_wait_s": (0.0, 7 * DAY_S, False),
    "preempt_benefit_ratio": (0.0, 1e6, False),
}


def range_text(lo: float, hi: float, lo_open: bool = False) -> str:
    """``5..86400`` (both ends allowed) or ``> 0 and ≤ 86400`` (low end excluded)."""
    return f"> {lo:g} and ≤ {hi:g}" if lo_open else f"{lo:g}..{hi:g}"


def check_int(name: str, value: int, bounds: tuple[int, int]) -> int:
    """``value`` when inside ``bounds``; a ValueError naming ``name`` and the range otherwise (the
    caller names the value: pydantic adds it, as ``(got …)``)."""
    lo, hi = bounds
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in {lo}..{hi}")
    return value


def check_float(name: str, value: float) -> float:
    """``value`` when inside :data:`FLOATS`'s range of ``name``; a ValueError naming both otherwise."""
    lo, hi, lo_open = FLOATS[name]
    if (value <= lo if lo_open else value < lo) or value > hi:
        raise ValueError(f"{name} must be {range_text(lo, hi, lo_open)}")
    return value
