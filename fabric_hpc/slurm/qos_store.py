"""The QOS of each fabric job as the agent last read it, kept across restarts: ``<state_dir>/qos.json``.

A ``qos:NAME=TIER`` entry of ``tier_map`` (:mod:`fabric_hpc.slurm.tiers`) matches the QOS Slurm reports for
a job. Slurm 25.11 without slurmdbd reports it while the job is pending (``squeue``: ``QOS=scav``) but none
once it runs (``(null)``; JSON ``qos: ""``; tested live on 25.11.7): a QOS-mapped spot gang became a
``normal`` one when it started, and no ``high`` gang could take its GPUs. With slurmdbd a running job keeps
its QOS; 22.05 without slurmdbd shows none even while pending (only ``partition:`` entries match there).

So the agent remembers the QOS it read for each fabric-marked job (:meth:`QosMemory.fill`, every cycle,
before the view): a job Slurm now reports without one gets the remembered one; one reported with a QOS
(pending, or running with slurmdbd) updates the memory (``scontrol update QOS=`` while pending wins);
jobs Slurm no longer lists are forgotten. The file is rewritten (:func:`fabric_hpc.atomic.write_atomic`, not
fsync'd) after a cycle that changed it and read once at start under the agent's lock, so a restarted agent
keeps the QOS of gangs that started before it died. A job the agent never saw pending (submitted and started
while the agent was down longer than the plugin's fallback) has no remembered QOS: its tier comes from its
partition entry and its comment, as for a job without QOS. A file that is not one of these (damaged,
foreign, too large) is ignored: the agent logs one ``agent.qos_ignored`` record and starts without it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from fabric_hpc.slurm.jobs_file import JobsFile
from fabric_hpc.slurm.contract import Job

QOS_FILE = "qos.json"
FORMAT = "fabric-agent-qos/1"
#: Jobs kept (about 20 bytes each); more fabric jobs than this in Slurm at once: the newest ids are kept.
MAX_JOBS = 100_000
#: Largest file read back (bytes), and the longest QOS text kept.
MAX_BYTES = 8 << 20
MAX_QOS_CHARS = 256


class QosMemory:
    """Job id -> the QOS Slurm last reported for it (:meth:`fill`), saved to ``<state_dir>/qos.json``."""

    def __init__(self, state_dir: str | Path) -> None:
        self.path = Path(state_dir) / QOS_FILE
        self.jobs: dict[int, str] = {}
        self._file = JobsFile(self.path, FORMAT, "QOS", MAX_BYTES)

    def fill(self, jobs: Iterable[Job]) -> list[Job]:
        """Slurm's jobs, each fabric-marked job without a QOS given the one remembered for it; the memory
        updated from those reported with one, and cleared of jobs no longer listed."""
        out, listed = [], set()
        for job in jobs:
            listed.add(job.job_id)
            if job.fabric_marked and job.qos and len(job.qos) <= MAX_QOS_CHARS:
                self.jobs[job.job_id] = job.qos
            elif job.fabric_marked and not job.qos and (qos := self.jobs.get(job.job_id)):
                job = replace(job, qos=qos)
            out.append(job)
        self.jobs = {j: q for j, q in self.jobs.items() if j in listed}
        if len(self.jobs) > MAX_JOBS:
            self.jobs = dict(sorted(self.jobs.items())[-MAX_JOBS:])
        return out

    def save(self) -> None:
        """Rewrite the file when the memory changed since the last save (or load)."""
        self._file.save({str(j): q for j, q in sorted(self.jobs.items())})

    def load(self) -> str | None:
        """Read the file; None when it was read (or there is none), else why it was ignored."""
        entries, why = self._file.load()
        if why is not None:
            return why
        try:
            jobs = {int(k): _qos(v) for k, v in entries.items()}
        except (ValueError, TypeError) as exc:
            return f"damaged: {type(exc).__name__}: {str(exc)[:200]}"
        self.jobs = dict(sorted(jobs.items())[-MAX_JOBS:])
        return None


def _qos(value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_QOS_CHARS:
        raise ValueError(f"not a QOS name: {str(value)[:80]!r}")
    return value
