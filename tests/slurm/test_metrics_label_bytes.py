"""SRE probe: an agent whose state dir has a name that is not UTF-8 (``/srv/fabric-\\xff``, a legal Linux
path) put it, as Python reads it (a lone surrogate), in ``fabric_agent_info{state_dir}``: prometheus-client
could not encode the page, so every scrape of ``/metrics`` was an HTTP 500 (and a traceback on the agent's
stderr), and ``fabric agent check`` no longer knew its own agent on the port."""

from __future__ import annotations

import os
import socket
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from fabric_hpc.cli.agent_checks import _metrics_port_ok
from fabric_hpc.slurm.metrics import AgentMetrics, label_text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_state_dir_that_is_not_utf8_is_scraped_and_recognised(tmp_path: Path) -> None:
    state = tmp_path / os.fsdecode(b"agent-\xff\xfe")
    state.mkdir()
    port = _free_port()
    metrics = AgentMetrics(port, backend="cli", state_dir=os.path.realpath(state))
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            body = resp.read()
        text = body.decode("utf-8")  # strict: the page is UTF-8
        (info,) = [s for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == "fabric_agent_info"]
        assert info.labels["state_dir"] == label_text(os.path.realpath(state))
        assert info.labels["state_dir"].endswith("agent-\\xff\\xfe")  # the bytes, readable
        assert "served by the running fabric agent of this state dir" in _metrics_port_ok(port, str(state))
    finally:
        metrics.close()


def test_label_text_keeps_valid_text_as_it_is_but_a_backslash_doubled() -> None:
    assert label_text('/var/lib/a"b\\c\nd é') == '/var/lib/a"b\\\\c\nd é'
    assert label_text("x\ud800y") == "x\\ud800y"  # a surrogate no file name holds: escaped all the same


def test_a_name_that_is_not_utf8_and_one_spelling_its_escape_get_different_labels() -> None:
    """Review: ``b'/srv/fabric-\\xff'`` and the literal ``/srv/fabric-\\\\xff`` gave one label, so
    ``fabric agent check`` could take another agent on the port for this state dir's."""
    raw, spelled = os.fsdecode(b"/srv/fabric-\xff"), "/srv/fabric-\\xff"
    assert label_text(raw) != label_text(spelled)
    assert label_text(raw) == "/srv/fabric-\\xff" and label_text(spelled) == "/srv/fabric-\\\\xff"
