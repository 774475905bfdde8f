"""The daemon side of the placement agent (:class:`~fabric_hpc.slurm.agent.Agent` inherits it): the
loop that cycles until stopped, with its start checks and ``agent.start``/``agent.stop`` records, the
exponential backoff and ``agent.error`` record of a failed cycle, the signal handlers (SIGTERM/SIGINT
stop, SIGHUP reopens the logs), the wake-up by the job_submit plugin, and releasing the pins at stop.
The cycle itself, the state and the records are :class:`~fabric_hpc.slurm.agent.Agent`'s."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import traceback
from typing import Any

from fabric_hpc.errors import FabricError
from fabric_hpc.events import emit_event, make_event
from fabric_hpc.slurm.actions import AgentPrivilegeError
from fabric_hpc.slurm.agent_support import (STOP_BUDGET_S, bounded, contact_answers, cycle_error,
                                            error_text, first_contact, gpu_mismatch, model_overlap,
                                            plugin_dir, run_within, stop_budget, stop_reason)
from fabric_hpc.slurm.audit import repair_logs
from fabric_hpc.slurm.contract import Node
from fabric_hpc.slurm.sdnotify import notify
from fabric_hpc.slurm.tier_check import unknown_entries


class AgentDaemon:
    """The daemon loop of :class:`~fabric_hpc.slurm.agent.Agent`: ``run``, ``stop``, the signal
    handlers. It uses the agent's ``cycle()``, ``_log``/``_write_status``, its client, config, state
    directory, lock, logs and stores."""

    def run(self, *, max_cycles: int | None = None) -> None:
        """Cycle until stopped (SIGTERM/SIGINT or ``stop()``); a failed cycle backs off and the loop goes on.

        Fatal (raised): the lock is held by another agent, the metrics port cannot be served, or Slurm
        does not answer the first contact. ``agent.stop`` says why the agent stopped (``reason``).
        """
        self.lock.acquire()
        started, stop = False, {"reason": "signal"}
        try:
            self._repair_logs()
            if self.config.metrics_port:  # served before Slurm is asked: a taken port fails at once
                from fabric_hpc.slurm.metrics import AgentMetrics

                self.metrics = AgentMetrics(self.config.metrics_port, backend=self.client.backend,
                                            state_dir=os.path.realpath(self.state_dir))
            nodes = self.first_contact()
            if nodes is None:  # SIGTERM while waiting for Slurm
                return
            model_overlap(self.fab, [n.name for n in nodes])  # no host in common: nothing to place (exit 3)
            if mismatch := gpu_mismatch(self.fab, nodes):
                self._log("model_mismatch", detail=mismatch)  # `fabric agent check` fails on it (exit 3)
            self._log("start", pid=os.getpid(), config=self.config.model_dump())
            if unknown := unknown_entries(self.inputs.tiers, nodes, self.start_commands.run)[0]:
                self._log("tier_map_unknown", entries=unknown, hint="these entries map no job: fix the names "
                          "(sinfo -s; sacctmgr show qos format=name) and restart the agent")
            started = True
            notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=Slurm answered; placing gangs")
            self._loop(max_cycles)
            stop["reason"] = "signal" if self._stop.is_set() else "cycles"
        except Exception as exc:
            stop = stop_reason(exc)
            raise
        finally:
            notify("STOPPING=1")
            released = self.release_pins() if started else []
            self._log("stop", pid=os.getpid(), cycles=self.cycles, errors=self.errors, released=released,
                      **stop)
            self.lock.release()
            self.audit.close()
            if self.metrics is not None:
                self.metrics.close()

    def _repair_logs(self) -> None:
        """Cut a torn last line (a write cut short by a crash or a full disk) off the audit log and the
        cycle recording, under the lock, before this agent appends to them (``agent.torn_tail_cut``); read
        the last agent's deferrals (:mod:`~fabric_hpc.slurm.deferral_store`)."""
        for path, cut in repair_logs(self.state_dir):
            self._log("torn_tail_cut", file=str(path), bytes=cut)
        if why := self.deferral_store.load(self.actions):  # the last agent's deferrals, under the lock
            self._log("deferrals_ignored", file=str(self.deferral_store.path), reason=why)
        self.deferral_store.recover_pins(self.actions)  # pins sent after the file's last save (kill -9)
        if why := self.qos_memory.load():  # the QOS of running jobs, as the last agent read them pending
            self._log("qos_ignored", file=str(self.qos_memory.path), reason=why)
        if aside := self.usage.set_aside():  # a damaged usage.json: moved aside, usage starts from zero
            self._log("usage_ignored", **aside)

    def _loop(self, max_cycles: int | None) -> None:
        backoff = 0.0
        while not self._stop.is_set() and (max_cycles is None or self.cycles < max_cycles):
            try:
                if self._reopen.is_set():
                    self._reopen_logs()
                self.cycle()
                backoff = 0.0
            except AgentPrivilegeError:
                raise  # the agent may not modify jobs: every cycle would fail the same way
            except Exception as exc:  # noqa: BLE001 - the loop must outlive any answer (module docstring)
                if self._stop.is_set():  # a request abandoned by the stop (Agent.stop): no failed cycle
                    break
                backoff = min(self.config.max_backoff_s, max(0.25, backoff * 2))
                self._error(exc, backoff)
                self._sleep(backoff, wakeable=False)
                continue
            self._sleep(self.config.interval_s)

    def _reopen_logs(self) -> None:
        """SIGHUP: reopen decisions.jsonl (and cycles.jsonl) by name, so a log logrotate moved away is
        left to it and a new one written (``agent.logs_reopened``, the new file's first record); one that
        cannot be opened is a failed cycle (``agent.error``, written to the old file)."""
        self._reopen.clear()
        logs = [w for w in (self.audit, self.cycles_log) if w is not None]
        for writer in logs:
            writer.reopen()
        self._log("logs_reopened", files=[str(w.path) for w in logs])

    def _error(self, exc: Exception, retry_in_s: float) -> None:
        """One failed cycle: the ``agent.error`` event (audit log and event stream) and the counters."""
        self.errors += 1
        where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
        exc = cycle_error(exc, self.state_dir)  # a full or read-only disk: one line, the fix
        hint = exc.hint if isinstance(exc, FabricError) else None
        self.last_error = bounded(error_text(exc), 300) + (f"; fix: {bounded(hint, 400)}" if hint else "")
        fields: dict[str, Any] = {"kind": type(exc).__name__, "error": bounded(error_text(exc)),
                                  "retry_in_s": retry_in_s, "errors": self.errors}
        if hint:  # the fix (a JWT to renew, a slurmrestd to restart): in the log as in `fabric agent status`
            fields["hint"] = bounded(hint, 400)
        if not isinstance(exc, FabricError):  # not a deliberate error: say where it came from
            fields["where"] = f"{where[0].filename}:{where[0].lineno}" if where else "?"
        event = make_event("agent.error", **fields)  # one record: the audit log's and the stream's
        try:
            records, self._notes = [*self._notes, event], []
            self.audit.write_many(records)
        except OSError as log_exc:  # the audit log itself failing (disk full) must not end the loop either
            event["audit_log"] = bounded(f"not written: {log_exc}", 200)
        emit_event(event)
        if self.metrics is not None:
            self.metrics.errors.inc()
        try:
            self._write_status()
        except OSError:  # the error is logged above; the next cycle writes it again
            with contextlib.suppress(OSError):  # its mtime, the last try, says it is stale (agent status)
                os.utime(self.state_dir / "status.json")

    def release_pins(self, budget_s: float | None = None) -> list[int]:
        """At stop: clear the ``ReqNodeList`` of every job the agent pinned that has not started (a list
        someone else set is kept: :attr:`~fabric_hpc.slurm.actions.Actions.pins` says which are its own), so
        Slurm's own scheduler may place it anywhere (a stopped agent strands nothing). Best effort:
        Slurm may be down too; a killed agent cannot do this (the next agent re-places stale pins).
        All of it within ``budget_s`` (STOP_BUDGET_S: well inside the unit's TimeoutStopSec), each
        request too: a frozen Slurm is left, with the pins done so far."""
        budget = STOP_BUDGET_S if budget_s is None else budget_s
        deadline = time.monotonic() + budget
        released: list[int] = []
        if (probe := getattr(self.client, "contact_probe", None)) is not None:  # pyslurm holds the GIL: its
            if not contact_answers(probe(), budget / 3):  # calls cannot be left behind in a thread
                return released
        left = max(0.0, deadline - time.monotonic())  # the probe's time is part of the budget
        with stop_budget(self.client, left):
            run_within(lambda: self._release(released), left, "fabric-agent-release-pins")
        return list(released)

    def _release(self, released: list[int]) -> None:
        try:
            jobs = self.client.jobs()
        except Exception:  # noqa: BLE001 - stopping anyway
            return
        for job in jobs:
            own = self.actions.pins.get(job.job_id)  # a ReqNodeList someone else set is left as it is
            if job.pending and job.fabric_marked and job.req_nodes and frozenset(job.req_nodes) == own:
                try:
                    self.client.update(job.job_id, ReqNodeList="")
                    released.append(job.job_id)
                except Exception:  # noqa: BLE001 - one job's refusal does not keep the others pinned
                    continue

    def first_contact(self) -> list[Node] | None:
        """Slurm's nodes, read once within ``contact_timeout_s`` (:func:`first_contact`); SIGTERM
        stops the wait (None)."""
        return first_contact(self.client, self.config.contact_timeout_s, self._stop)

    def stop(self, *_: object) -> None:
        """SIGTERM/SIGINT: end the loop; a request to Slurm in flight is abandoned (cli and rest backends),
        and so is a Slurm command outside the client (sshare, scontrol show topology, sacctmgr)."""
        self._stop.set()
        self.commands.interrupt()
        self.start_commands.interrupt()
        if (interrupt := getattr(self.client, "interrupt", None)) is not None:
            interrupt()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGHUP, lambda *_: self._reopen.set())  # logrotate's postrotate (_reopen_logs)

    def _sleep(self, seconds: float, *, wakeable: bool = True) -> None:
        wake = plugin_dir(self.state_dir) / "wake"  # the plugin's (root's directory: docs/slurm.md)
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            if wakeable:
                try:
                    mtime = wake.stat().st_mtime
                except FileNotFoundError:
                    mtime = 0.0
                if mtime > self._wake_mtime:
                    self._wake_mtime = mtime
                    return
            self._stop.wait(0.05)
