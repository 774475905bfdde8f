"""`fabric infer status` on an output directory whose metrics log ends with a deeply nested JSON
line (within one event line's bound) skips that line as it skips any unparsable one: it was a
RecursionError traceback. Found by the hostile-files probe (fix-sec-files)."""

from __future__ import annotations

import json
from pathlib import Path

from fabric_hpc.cli.main import main
from fabric_hpc.inference import write_simulated_artefact

from .builders import SMALL


def test_status_skips_a_deeply_nested_last_metrics_line(tmp_path: Path, capsys) -> None:
    cfg = write_simulated_artefact(tmp_path / "eng", limits=SMALL)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    (tmp_path / "in.jsonl").write_text('{"id": "a", "prompt_token_ids": [1, 2], "max_tokens": 2}\n')
    out = tmp_path / "out"
    assert main(["infer", "run", "--engine-config", str(tmp_path / "cfg.json"), "--input",
                 str(tmp_path / "in.jsonl"), "--output", str(out)]) == 0
    logs = sorted((out / "metrics").glob("rank-*.jsonl"))
    assert logs
    with open(logs[0], "a") as f:
        f.write("[" * 5000 + "]" * 5000 + "\n")
    capsys.readouterr()
    assert main(["infer", "status", str(out)]) == 0
    assert "Traceback" not in capsys.readouterr().err
