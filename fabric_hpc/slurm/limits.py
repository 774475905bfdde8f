"""The bounds of the agent's numeric settings: one set, read by the agent config (``AgentConfig``,
the ``[agent]`` section of the config file), the CLI options of ``fabric agent run`` and ``fabric
slurm plugin-config``, and job_submit.lua's renderer (:func:`fabric_hpc.slurm.plugins.render_job_submit`).

Light on purpose (no imports): the CLI modules read it when their options are declared.
"""

from __future__ import annotations

DAY_S = 86400
#: Seconds a deferred job waits for the agent before Slurm takes it (job_submit.lua's FALLBACK_S).
FALLBACK_S = (5, DAY_S)
#: ``fallback_s`` must be at least this many times ``interval_s``. The plugin takes the agent for dead once
#: its heartbeat (written after each cycle) is older than ``fallback_s``, and the agent renews a job's
#: deferral once less than ``fallback_s`` / 2 of it is left, so the next cycle must come within
#: ``fallback_s`` / 2 (the interval plus the cycle's own time) or the deferral runs out and Slurm starts
#: the job itself. At a third, a cycle may take up to ``fallback_s`` / 6 (10 s at the default 60).
FALLBACK_PER_INTERVAL = 3
#: job_submit.lua's limit of GPUs per node.
MAX_GPUS_PER_NODE = (1, 1024)
#: (low, high, low excluded) of the agent's float settings.
FLOATS: dict[str, tuple[float, float, bool]] = {
    "interval_s": (0.1, DAY_S, False),
    "max_backoff_s": (1.0, DAY_S, False),
    "contact_timeout_s": (1.0, DAY_S, False),
    "pin_timeout_s": (5.0, DAY_S, False),
    "backfill_interval_s": (0.0, DAY_S, False),
    "compact_wait_s": (0.0, 7 * DAY_S, False),
    "preempt_benefit_ratio": (0.0, 1e6, False),
}

#: Why the timing settings have a floor (their low end above): below it the agent works against slurmctld
#: in a tight loop (1e-9 was accepted), one fsync'd ``agent.error`` per try while it is down.
FLOORS_WHY = {
    "interval_s": "closer cycles only load slurmctld (the plugin wakes the agent at once anyway)",
    "max_backoff_s": "a shorter wait after a failed cycle retries a down slurmctld in a tight loop, "
                     "writing one agent.error per try",
    "contact_timeout_s": "a shorter wait gives up before Slurm can answer",
    "pin_timeout_s": "Slurm needs a few seconds to start a pinned job; a shorter timeout takes every pin "
                     "for stale",
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


def check_cadence(interval_s: float, fallback_s: float) -> None:
    """A ValueError when ``interval_s`` is over ``fallback_s`` / :data:`FALLBACK_PER_INTERVAL`."""
    if interval_s * FALLBACK_PER_INTERVAL > fallback_s:
        raise ValueError(f"interval_s {interval_s:g} is too long for fallback_s {fallback_s:g}: at most "
                         f"{fallback_s / FALLBACK_PER_INTERVAL:.3g} (fallback_s / {FALLBACK_PER_INTERVAL}), "
                         "else "
                         "job_submit.lua takes the agent for dead between cycles and deferrals run out "
                         "before they are renewed, and Slurm starts the jobs itself; shorten interval_s or "
                         "lengthen fallback_s (in job_submit.lua too: fabric slurm install)")


def check_float(name: str, value: float) -> float:
    """``value`` when inside :data:`FLOATS`'s range of ``name``; a ValueError naming both otherwise."""
    lo, hi, lo_open = FLOATS[name]
    if name in FLOORS_WHY and value < lo:
        raise ValueError(f"{name} {value:g} is below its floor of {lo:g} s: {FLOORS_WHY[name]}; "
                         f"set it to {range_text(lo, hi, lo_open)}")
    if (value <= lo if lo_open else value < lo) or value > hi:
        raise ValueError(f"{name} must be {range_text(lo, hi, lo_open)}")
    return value
