"""``main()`` run in-process (tests, a Python caller) leaves the ``fabric_hpc`` logger as it found it:
the handler ``configure_logging`` installs writes to the stderr of that run, and one left behind wrote
to a closed capture later ("--- Logging error --- ... ValueError: I/O operation on closed file", a
traceback on the next test's stderr)."""

from __future__ import annotations

import io
import logging
import sys

from fabric_hpc.cli.main import main
from fabric_hpc.events import emit


def test_main_restores_the_logger(monkeypatch):
    log = logging.getLogger("fabric_hpc")
    before = (log.handlers[:], log.level, log.propagate)
    run_err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", run_err)
    assert main(["-v", "topology", "show", "leaf-spine-16"]) == 0
    assert (log.handlers, log.level, log.propagate) == before
    run_err.close()  # the run's stderr goes away, as a capture does after a test
    later = io.StringIO()
    monkeypatch.setattr(sys, "stderr", later)
    emit("checkpoint.part_damaged", path="x", step=1, problem="p", fix="f")
    assert "Logging error" not in later.getvalue()
