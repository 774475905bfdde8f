"""Slurm client commands against one cluster (``sbatch``, ``scontrol``, ``sinfo``, ``slurmd -G``).

:class:`SlurmClient` is the half of :class:`~fabric_hpc.testing.SlurmTestCluster` that only talks to
a running cluster: it needs ``env`` (the environment pointing at the cluster's ``slurm.conf``),
``work_dir`` and ``_check_node``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fabric_hpc.errors import ConfigError, ExternalError
from fabric_hpc.hostlist import expand
from fabric_hpc.testing._slurm_config import parse_key_values

INSTALL_HINT = "as root: apt-get install --no-install-recommends slurm-wlm munge (Debian 12: Slurm 22.05)"
TERMINAL_STATES = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE",
     "OUT_OF_MEMORY"}
)


class SlurmClient:
    env: dict[str, str]
    work_dir: Path

    def _check_node(self, node: str) -> str:
        raise NotImplementedError

    def run(self, args: Sequence[str] | str, *, check: bool = True, timeout: float = 60.0,
            input: str | None = None,
            cwd: str | os.PathLike[str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command against this cluster: argv, or a string split as a shell would (no shell)."""
        argv = shlex.split(args) if isinstance(args, str) else [str(a) for a in args]
        try:
            proc = subprocess.run(argv, env=self.env, cwd=cwd or self.work_dir, input=input, text=True,
                                  capture_output=True, timeout=timeout, check=False)
        except FileNotFoundError:
            raise ExternalError(f"{argv[0]}: command not found", hint=INSTALL_HINT) from None
        except subprocess.TimeoutExpired as exc:
            raise ExternalError(f"`{shlex.join(argv)}` did not finish within {timeout:g} s") from exc
        if check and proc.returncode != 0:
            raise ExternalError(f"`{shlex.join(argv)}` exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def sbatch(self, *args: str, script: str | None = None, wrap: str | None = None,
               cwd: str | os.PathLike[str] | None = None) -> int:
        """Submit a batch job (``script`` text on stdin, or ``wrap``); returns its job id."""
        if (script is None) == (wrap is None):
            raise ConfigError("sbatch needs exactly one of script= or wrap=")
        argv = ["sbatch", "--parsable", *args] + (["--wrap", wrap] if wrap is not None else [])
        out = self.run(argv, input=script, cwd=cwd).stdout.strip()
        try:
            return int(out.split(";")[0])
        except ValueError:
            raise ExternalError(f"sbatch answered {out!r} instead of a job id") from None

    def job(self, jobid: int) -> dict[str, str]:
        """``scontrol show job`` of one job as a dict (``JobState``, ``NodeList``, ``StdOut``, ...)."""
        line = self.run(["scontrol", "show", "job", "-o", str(jobid)]).stdout.strip()
        return parse_key_values(line)

    def wait_job(self, jobid: int, states: Iterable[str] = ("COMPLETED",),
                 timeout: float = 60.0) -> dict[str, str]:
        """Poll until the job is in one of ``states``; a different final state is an ExternalError."""
        wanted = set(states)
        deadline = time.monotonic() + timeout
        while True:
            info = self.job(jobid)
            state = info.get("JobState", "")
            if state in wanted:
                return info
            if state in TERMINAL_STATES or time.monotonic() > deadline:
                why = "ended" if state in TERMINAL_STATES else f"still {state} after {timeout:g} s:"
                output = self.job_output(jobid, info)
                raise ExternalError(f"job {jobid} {why} {state}, not {sorted(wanted)}: "
                                    f"Reason={info.get('Reason')} NodeList={info.get('NodeList')}\n{output}")
            time.sleep(0.1)

    def job_output(self, jobid: int, info: Mapping[str, str] | None = None) -> str:
        """The text of a batch job's standard output file ('' when there is none yet)."""
        path = Path((info or self.job(jobid)).get("StdOut", ""))
        if not path.is_absolute():
            path = self.work_dir / path
        return path.read_text(errors="replace") if path.is_file() else ""

    def node_states(self, *, check: bool = True) -> dict[str, str]:
        """Node name -> ``sinfo`` state (``idle``, ``alloc``, ``down*``, ...)."""
        proc = self.run(["sinfo", "-h", "-N", "-o", "%N %T"], check=check, timeout=10)
        return dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)

    def hostnames(self, hostlist: str) -> list[str]:
        """Expand a Slurm host list (``n[1-3,5]``) with ``scontrol show hostnames``."""
        if hostlist in ("", "(null)"):
            return []
        return self.run(["scontrol", "show", "hostnames", hostlist]).stdout.split()

    def gres_report(self, node: str) -> list[dict[str, str]]:
        """The GPUs one node's slurmd reads from ``gres.conf`` (``slurmd -G``): Type, File, Cores, Links."""
        proc = self.run(["slurmd", "-G", "-N", self._check_node(node)])
        lines = (proc.stdout + proc.stderr).splitlines()
        return [parse_key_values(line.split("Gres ", 1)[1]) for line in lines if "Gres Name=" in line]

    def topology(self) -> dict[str, dict[str, Any]]:
        """``scontrol show topology`` as switch -> {"level": int, "switches": [...], "nodes": [...]}."""
        out: dict[str, dict[str, Any]] = {}
        for line in self.run(["scontrol", "show", "topology"]).stdout.splitlines():
            fields = parse_key_values(line.strip())
            if "SwitchName" not in fields:
                continue
            out[fields["SwitchName"]] = {
                "level": int(fields.get("Level", "0")),
                "switches": expand(fields["Switches"]) if fields.get("Switches") else [],
                "nodes": self.hostnames(fields.get("Nodes", "")),
            }
        return out
