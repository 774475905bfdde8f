"""An engine directory's JSON files (config.json, fabric_engine.json) are read through fabric's
input limits: a deeply nested, non-UTF-8 or oversized file is an EngineConfigError/ConfigError
naming the file (exit 3), never a RecursionError/UnicodeDecodeError traceback or a whole-file read
of any size. Found by the hostile-files probe (fix-sec-files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.errors import ConfigError
from fabric_hpc.inference import EngineConfigError, load_engine_config, write_simulated_artefact
from fabric_hpc.inference.engines.artefact import ENGINE_FILE, read_build, read_pytorch_artefact

from .builders import SMALL

DEEP = "[" * 100_000 + "]" * 100_000
BAD = {"deep": DEEP.encode(), "not-utf8": b'\xff\xfe{"a": 1}'}
WHY = {"deep": "nested more than 64 levels", "not-utf8": "not UTF-8"}


@pytest.mark.parametrize("kind", list(BAD))
def test_simulated_config_json(tmp_path: Path, capsys, kind: str) -> None:
    cfg = write_simulated_artefact(tmp_path / "eng", limits=SMALL)
    (tmp_path / "eng" / "config.json").write_bytes(BAD[kind])
    with pytest.raises(EngineConfigError, match=rf"config\.json.*{WHY[kind]}"):
        load_engine_config(cfg)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    (tmp_path / "in.jsonl").write_text('{"id": "a", "prompt_token_ids": [1, 2], "max_tokens": 2}\n')
    code = main(["infer", "run", "--engine-config", str(tmp_path / "cfg.json"), "--input",
                 str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 3 and "Traceback" not in err and "config.json" in err and WHY[kind] in err


def test_an_oversized_config_json_is_refused_before_it_is_read(tmp_path: Path) -> None:
    cfg = write_simulated_artefact(tmp_path / "eng", limits=SMALL)
    with open(tmp_path / "eng" / "config.json", "r+b") as f:
        f.truncate((16 << 20) + 1)  # sparse: nothing may read it whole
    with pytest.raises(EngineConfigError, match=r"config\.json.*more than the limit"):
        load_engine_config(cfg)


@pytest.mark.parametrize("kind", list(BAD))
def test_pytorch_engine_files(tmp_path: Path, kind: str) -> None:
    (tmp_path / "config.json").write_bytes(BAD[kind])
    with pytest.raises(ConfigError, match=rf"config\.json.*{WHY[kind]}"):
        read_pytorch_artefact(tmp_path)
    (tmp_path / ENGINE_FILE).write_bytes(BAD[kind])
    with pytest.raises(ConfigError, match=rf"{ENGINE_FILE}.*{WHY[kind]}"):
        read_build(tmp_path)
