"""Where the agent's fairshare usage comes from each cycle: Slurm's accounting or the agent's own ledger.

``--usage-source`` (``AgentConfig.usage_source``):

* ``ledger``: the :class:`~fabric_hpc.slurm.usage.AgentUsage` ledger in ``<state_dir>/usage.json``;
* ``slurm``: Slurm's own usage, ``sshare`` (:mod:`fabric_hpc.slurm.sshare`), and from the same answer each
  account's shares (``fairshare=``), given to the policy in the step input (:attr:`UsageSource.shares`);
  with the ledger the policy's configured shares are used;
* ``auto`` (default): ``slurm`` when ``scontrol show config`` says
  ``AccountingStorageType = accounting_storage/slurmdbd`` (asked at the first cycle; when that question
  fails, the ledger is used and it is asked again after ``RECHECK_S``), else ``ledger``.

The ledger is charged every cycle whatever the source, so it is ready when ``sshare`` fails: then that
cycle uses the ledger, an ``agent.usage_error`` event says why (and the fix), and the next cycle asks
``sshare`` again; the same error is written again only after ``ERROR_REPEAT_S``. An ``sshare`` answer
without a single user association fails too (:class:`~fabric_hpc.slurm.sshare.NoAccounting`): a Slurm
without slurmdbd answers only its header, and taking that would weigh every account the same.
Each change of the source in use is an ``agent.usage_source`` event (audit log and event stream) with
the reason; ``status.json`` carries ``usage_source`` (``slurm`` or ``ledger``) and ``usage_unit``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from fabric_hpc.slurm.contract import SlurmClient, SlurmError
from fabric_hpc.slurm.sshare import read_usage
from fabric_hpc.slurm.usage import AgentUsage

if TYPE_CHECKING:
    from fabric_hpc.slurm.cli_backend import CliClient

UsageMode = Literal["auto", "slurm", "ledger"]
RECHECK_S = 300.0
#: An unchanged usage error is written again after this long (a reader of the audit log's end finds it).
ERROR_REPEAT_S = 600.0
_DBD = re.compile(r"^AccountingStorageType\s*=\s*accounting_storage/slurmdbd\s*$", re.MULTILINE)


def command_client(client: SlurmClient | None = None, timeout: float = 30.0) -> CliClient:
    """The cli client :func:`command_runner` runs through: the agent keeps it to interrupt() it at stop."""
    from fabric_hpc.slurm.cli_backend import CliClient

    env = client.env if isinstance(client, CliClient) else dict(os.environ)
    return CliClient(env, timeout=timeout)  # one place runs Slurm commands and maps their failures


def command_runner(client: SlurmClient | None = None,
                   timeout: float = 30.0) -> Callable[[Sequence[str]], str]:
    """argv -> stdout of a Slurm command, with the environment of ``client`` when it is the cli backend
    (else this process's: ``SLURM_CONF``); SlurmError on failure."""
    return command_client(client, timeout).run


def has_slurmdbd(run: Callable[[Sequence[str]], str]) -> bool:
    """``scontrol show config`` says ``AccountingStorageType = accounting_storage/slurmdbd``; SlurmError
    when it cannot be asked."""
    return bool(_DBD.search(run(["scontrol", "show", "config"])))


class UsageSource:
    """The usage of one cycle, from the configured source, with the fallback described above."""

    def __init__(self, mode: UsageMode, ledger: AgentUsage, run: Callable[[Sequence[str]], str],
                 log: Callable[..., None]) -> None:
        self.mode, self.ledger, self.run, self.log = mode, ledger, run, log
        self.active: str | None = None  # "slurm" or "ledger" once a cycle ran
        self.unit = "gpu_seconds"
        #: this cycle's shares per account from sshare (source slurm); None: the policy's configured ones
        self.shares: dict[str, int] | None = None
        self._accounting: bool | None = None  # auto: AccountingStorageType is slurmdbd
        self._asked_at = -RECHECK_S
        self._last_error: tuple[str, float] | None = None  # the last usage_error written, when (monotonic)

    def usage(self, now: float, held: Mapping[str, int]) -> dict[str, float]:
        ledger_usage = self.ledger.charge(now, held)
        if self.ledger.went_back_s is not None:
            self.log("usage_clock_back", ledger_t=now + self.ledger.went_back_s, now=now,
                     back_s=round(self.ledger.went_back_s, 3),
                     note="the clock is behind the usage ledger's time: the interval is not charged, "
                          "charging resumes from now")
        self.shares = None
        if self.mode == "ledger":
            return self._use("ledger", "usage_source = ledger", ledger_usage, "gpu_seconds")
        if self.mode == "auto" and not self._has_accounting():
            return self._use("ledger", "AccountingStorageType is not accounting_storage/slurmdbd", ledger_usage,
                             "gpu_seconds")
        try:
            answer = read_usage(self.run)
        except SlurmError as exc:
            self._error("slurm", exc)
            return self._use("ledger", f"sshare failed: {exc.message[:200]}", ledger_usage, "gpu_seconds")
        self._last_error = None
        self.shares = answer.shares
        return self._use("slurm", f"sshare ({answer.unit})", answer.usage, answer.unit)

    def _has_accounting(self) -> bool:
        if self._accounting is None and time.monotonic() - self._asked_at >= RECHECK_S:
            self._asked_at = time.monotonic()
            try:
                self._accounting = has_slurmdbd(self.run)
            except SlurmError as exc:
                self._error("scontrol show config", exc)
        return bool(self._accounting)

    def _error(self, source: str, exc: SlurmError) -> None:
        """``agent.usage_error`` with the fix; the same error again only after ``ERROR_REPEAT_S`` (a
        Slurm without accounting answers the same every cycle: one record per cycle would flood the log)."""
        now, error = time.monotonic(), exc.message[:500]
        last = self._last_error
        if last is not None and last[0] == error and now - last[1] < ERROR_REPEAT_S:
            return
        self._last_error = (error, now)
        self.log("usage_error", source=source, error=error, hint=(exc.hint or "")[:500], fallback="ledger")

    def _use(self, source: str, reason: str, usage: dict[str, float], unit: str) -> dict[str, float]:
        if source != self.active or unit != self.unit:
            self.log("usage_source", source=source, unit=unit, reason=reason)
        self.active, self.unit = source, unit
        return usage

    def status(self) -> dict[str, Any]:
        return {"usage_source": self.active, "usage_unit": self.unit}
