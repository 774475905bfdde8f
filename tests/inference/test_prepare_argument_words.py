"""``prepare_pytorch_engine`` with a bad build limit names the argument, before anything is written:
it used to blame ``models/x/fabric_engine.json``, a file that does not exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.inference.engines.artefact import prepare_pytorch_engine

LIMITS = {"dtype": "float32", "max_batch_size": 1, "max_input_len": 8, "max_seq_len": 16,
          "max_num_tokens": 16}


@pytest.mark.parametrize("field, value", [("max_batch_size", 0), ("max_input_len", 0), ("max_seq_len", 1),
                                          ("max_num_tokens", -1)])
def test_bad_limit_names_the_argument(tmp_path: Path, field: str, value: int) -> None:
    eng = tmp_path / "models" / "x"
    with pytest.raises(ConfigError) as err:
        prepare_pytorch_engine(eng, **{**LIMITS, field: value}, preset="tiny")
    assert str(err.value).startswith(f"prepare_pytorch_engine(): {field}: ")
    assert "fabric_engine.json" not in str(err.value)
    assert not eng.exists() and not (tmp_path / "models").exists()


def test_existing_directory_untouched(tmp_path: Path) -> None:
    eng = tmp_path / "eng"
    eng.mkdir()
    with pytest.raises(ConfigError, match=r"^prepare_pytorch_engine\(\): max_batch_size"):
        prepare_pytorch_engine(eng, **{**LIMITS, "max_batch_size": 0}, preset="tiny")
    assert list(eng.iterdir()) == []
