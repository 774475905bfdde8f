"""``checkpoint.saved`` has one schema whichever writer saved (SRE probe 12): the plain writer, the
stream writer, a node's tiered save and the drained shared copy all give the same keys, ``tier`` always."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from fabric_hpc.checkpoint.interop.stream import StreamWriter
from fabric_hpc.checkpoint.tiers import drain, save_local
from fabric_hpc.checkpoint.writer import save
from fabric_hpc.events import LOGGER_NAME

KEYS = {"ts", "event", "path", "step", "bytes", "tier", "seconds", "world_size", "nodes"}


class Events(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.events: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.events.append(record.event)  # type: ignore[attr-defined]


def test_every_writer_gives_checkpoint_saved_the_same_keys(tmp_path: Path) -> None:
    logger, handler = logging.getLogger(LOGGER_NAME), Events()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        state = {"w": np.arange(8, dtype=np.float32)}
        save(tmp_path / "plain", state, step=1)
        with StreamWriter(tmp_path / "stream", step=2) as w:
            w.add("w", state["w"])
        _, part = save_local(tmp_path / "local", state, step=3)
        assert part is not None and drain(part, tmp_path / "shared") is not None
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    saved = [e for e in handler.events if e["event"] == "checkpoint.saved"]
    assert [e["tier"] for e in saved] == ["direct", "direct", "local", "shared"]
    assert all(set(e) == KEYS for e in saved), [sorted(set(e) ^ KEYS) for e in saved]
    assert all(e["world_size"] == 1 and e["seconds"] >= 0 and e["bytes"] == 32 for e in saved)
    assert [e["nodes"] for e in saved] == [None, None, 1, 1]
