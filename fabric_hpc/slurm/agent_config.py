"""The settings of ``fabric agent run`` (:class:`AgentConfig`): every field has a CLI flag of the same
name and a key of the config file's ``[agent]`` section (:mod:`fabric_hpc.slurm.deploy_config`);
numeric bounds from :mod:`fabric_hpc.slurm.limits`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from fabric_hpc.slurm import limits
from fabric_hpc.slurm.plugins import cluster_path, control_chars
from fabric_hpc.slurm.tiers import TierMap
from fabric_hpc.validation import StrictModel


class AgentConfig(StrictModel):
    """Settings of ``fabric agent run`` (every field has a CLI flag of the same name)."""

    state_dir: str
    interval_s: float = 2.0
    #: Seconds a deferred job waits for the agent before Slurm takes it (must match job_submit.lua).
    fallback_s: int = 60
    policy: Literal["fabric", "slurm"] = "fabric"
    placement: Literal["greedy", "cpsat"] = "greedy"
    metrics_port: int = Field(default=0, ge=0, le=65535)  # 0: no metrics endpoint
    max_backoff_s: float = 10.0
    #: Seconds the first contact with Slurm (at start) may take before the agent gives up (exit 5).
    contact_timeout_s: float = 10.0
    #: The fabric policy's compact-or-wait admission: a multi-host gang that waited less than this
    #: starts only on a compact placement (like Slurm's ``--switches=K@time``); None: the policy default.
    compact_wait_s: float | None = None
    #: The fabric policy's gang preemption of spot jobs for high-tier jobs (docs/scheduler.md).
    preemption: bool = True
    #: Preempt only when the waiting avoided is at least this many times the GPU-hours the victims
    #: lose; None: the policy default (20, `fabric_policy`). Higher: fewer preemptions.
    preempt_benefit_ratio: float | None = None
    #: Site mapping QOS/partition -> tier: ``qos:NAME=TIER`` / ``partition:NAME=TIER`` (see slurm/tiers.py).
    tier_map: list[str] = Field(default_factory=list)
    #: The TaskProlog's ``ckpt_root``: running jobs' last checkpoint times are read there (None: not read).
    ckpt_root: str | None = None
    #: Backfill passes at most this often (s), main passes in the cycles between (the simulator's
    #: ``backfill_interval_s``). 0: every cycle is a backfill pass (the cycles are already periodic).
    backfill_interval_s: float = 0.0
    #: Append each cycle's scheduler input and decisions to ``<state_dir>/cycles.jsonl`` (for
    #: replaying them through the simulator's step: ``fabric_hpc.scheduler.record``).
    record_cycles: bool = False
    #: Fairshare usage: ``slurm`` (sshare: Slurm's accounting), ``ledger`` (the agent's usage.json) or
    #: ``auto`` (slurm when AccountingStorageType is slurmdbd); see slurm/usage_source.py.
    usage_source: Literal["auto", "slurm", "ledger"] = "auto"
    #: Seconds a pinned job may stay pending on free GPUs before its pin counts as stale: the agent
    #: re-places it elsewhere, and hands it to Slurm after a few stale or failed pins (slurm/actions.py).
    pin_timeout_s: float = 60.0

    @field_validator("fallback_s")
    @classmethod
    def _fallback(cls, value: int) -> int:
        return limits.check_int("fallback_s", value, limits.FALLBACK_S)  # job_submit.lua's own limits

    @field_validator(*limits.FLOATS)
    @classmethod
    def _seconds(cls, value: float | None, info: ValidationInfo) -> float | None:
        return None if value is None else limits.check_float(str(info.field_name), value)

    @model_validator(mode="after")
    def _cadence(self) -> AgentConfig:
        limits.check_cadence(self.interval_s, self.fallback_s)  # limits.FALLBACK_PER_INTERVAL says why
        return self

    @field_validator("tier_map")
    @classmethod
    def _tier_map(cls, entries: list[str]) -> list[str]:
        TierMap.parse(entries)  # a bad entry is refused here (ConfigError is a ValueError), not at start
        return entries

    @field_validator("state_dir")
    @classmethod
    def _state_dir(cls, value: str) -> str:
        if control_chars(value):
            raise ValueError(f"state_dir {value!r} holds control characters")
        return value

    @field_validator("ckpt_root")
    @classmethod
    def _ckpt_root(cls, value: str | None) -> str | None:  # the TaskProlog's root: absolute on every node
        return None if value is None else cluster_path(value, what="ckpt_root", example="/shared/checkpoints")
