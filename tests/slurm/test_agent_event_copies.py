"""An SRE's probe: the audit log's copy of an agent event (``decisions.jsonl``) and the ``-v`` stream's copy
had different ``ts`` (the stream's was made again by ``emit``), so the two could not be joined. They are one
record now: the same fields, the same ``ts``. Failed before its fix."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabric_hpc.events import LOGGER_NAME
from fabric_hpc.slurm.contract import SlurmError
from tests.slurm.test_agent_actions import Fake, agent, events, gang


class Stream(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.events: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.events.append(record.event)  # type: ignore[attr-defined]


@pytest.fixture
def stream() -> Iterator[list[dict]]:
    logger, handler = logging.getLogger(LOGGER_NAME), Stream()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.events
    logger.removeHandler(handler)
    logger.setLevel(level)


class Failing(Fake):
    """Refuses job 2's pin; the second read of the jobs fails (a failed cycle: ``agent.error``)."""

    reads = 0

    def jobs(self):
        self.reads += 1
        if self.reads == 2:
            raise SlurmError("slurm_load_jobs error: Unable to contact slurm controller (connect failure)")
        return super().jobs()

    def job(self, job_id: int):  # the refused pin's check that job 2 is still pending: no cycle's read
        return next(j for j in self._jobs if j.job_id == job_id)


def test_audit_and_stream_copies_of_an_agent_event_are_one_record(tmp_path: Path, stream: list[dict]) -> None:
    client = Failing([gang(1), gang(2)], refuse={2: "Invalid node name specified for job 2"})
    a = agent(tmp_path, client, interval_s=0.1, max_backoff_s=1.0)
    a.run(max_cycles=2)
    audit = events(tmp_path)
    kinds = {e["event"] for e in audit}
    assert {"agent.start", "agent.place", "agent.failed", "agent.error", "agent.stop"} <= kinds, kinds
    streamed = [e for e in stream if e["event"] in kinds]
    assert len(streamed) == len(audit)
    for record in audit:
        assert record in streamed, record  # the same dict: same ts, same fields
