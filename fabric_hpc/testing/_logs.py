"""Logs of a test cluster's daemons: where they are, their tails, and what a failed start left in them."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

# slurmctld and slurmd name the port ("Unable to bind listen port (N)"); mariadbd and others say errno's text
_BIND_FAILURES = (re.compile(r"^.*Unable to bind listen port.*$", re.M),
                  re.compile(r"^.*Address already in use.*$", re.M))


def _logs(log_dir: Path) -> list[Path]:
    return sorted(log_dir.glob("*.log")) + sorted(log_dir.glob("*.out"))


def log_sizes(log_dir: Path) -> dict[str, int]:
    """The size of each daemon log (``*.log``, ``*.out``) now: where :func:`port_clash` starts reading."""
    return {p.name: p.stat().st_size for p in _logs(log_dir)} if log_dir.is_dir() else {}


def port_clash(log_dir: Path, since: dict[str, int] | None = None) -> str | None:
    """The first line the daemons' logs gained after ``since`` (:func:`log_sizes`; None: all) saying a
    port was taken, or None.

    A port :func:`~fabric_hpc.testing._slurm_config.free_ports` found free can be bound by another
    process (another test cluster, say) before the daemon that was given it starts.
    """
    texts = {}
    for path in _logs(log_dir):
        with path.open("rb") as f:
            f.seek((since or {}).get(path.name, 0))
            texts[path.name] = f.read(4 << 20).decode(errors="replace")
    for pattern in _BIND_FAILURES:
        for name, text in texts.items():
            if found := pattern.search(text):
                return f"{name}: {found.group(0).strip()}"
    return None


def set_aside_logs(log_dir: Path, attempt: int) -> None:
    """Move the logs of a failed start to ``log_dir/start-<attempt>/`` so the next start's are its own."""
    aside = log_dir / f"start-{attempt}"
    while aside.exists():  # an earlier start() of a reused base_dir set its own aside
        aside = aside.with_name(aside.name + "+")
    aside.mkdir()
    for path in _logs(log_dir):
        path.replace(aside / path.name)


class LogsMixin:
    """The log reading of :class:`~fabric_hpc.testing.SlurmTestCluster`."""

    base_dir: Path
    log_dir: Path
    node_names: tuple[str, ...]
    accounting: Any
    _procs: dict[str, subprocess.Popen[bytes]]
    run: Any  # provided by the cluster

    def log_paths(self) -> dict[str, Path]:
        """Log files by daemon: ``munged``, ``slurmctld``, ``slurmd-<node>`` (plus ``*.out`` stdout)."""
        paths = {"munged": self.log_dir / "munged.log", "slurmctld": self.log_dir / "slurmctld.log"}
        paths.update({f"slurmd-{n}": self.log_dir / f"slurmd-{n}.log" for n in self.node_names})
        if self.accounting is not None:
            paths["slurmdbd"] = self.log_dir / "slurmdbd.log"
        paths.update({p.stem + ".out": p for p in sorted(self.log_dir.glob("*.out"))})
        return paths

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.log_paths().get(name)
        if path is None or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def diagnostics(self, lines: int = 25) -> str:
        """Daemon status, node states and the tails of the logs: what to read when a start fails."""
        parts = [f"test cluster in {self.base_dir}"]
        parts += [f"  {n}: pid {p.pid}, " + ("running" if p.poll() is None else f"exited {p.returncode}")
                  for n, p in self._procs.items()]
        if self._procs.get("slurmctld") and self._procs["slurmctld"].poll() is None:
            parts.append(self.run(["sinfo", "-N", "-o", "%N %T %E"], check=False, timeout=10).stdout)
        munged = self._procs.get("munged")
        names = ["munged"] if munged is None or munged.poll() is not None else []
        names += ["slurmctld"] + [f"slurmd-{n}" for n in self.node_names[:2]]
        names += [n for n in self.log_paths()
                  if n.endswith(".out") and (n != "munged.out" or names[0] == "munged")]
        for name in names:
            tail = self.log_tail(name, lines)
            if tail:
                parts.append(f"--- {name} (last {lines} lines) ---\n{tail}")
        return "\n".join(parts)
