"""A Hugging Face ``config.json`` holding NaN (Python's ``json.dump`` writes ``float('nan')`` as ``NaN``;
``"rope_scaling": NaN`` is pandas' missing value written out). Before, ``fabric ckpt import-hf`` refused
the whole model as corrupt ("NaN is not a valid JSON number"), and prepare refused such a config.json
in an engine directory. Now NaN/Infinity is carried where the engine does not look (the manifest holds
null and where each was; export writes it back), and refused by name where the engine reads a number."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from fabric_hpc.checkpoint import open_checkpoint
from fabric_hpc.checkpoint.interop.hf import NONFINITE, export_hf, import_hf
from fabric_hpc.errors import ConfigError
from fabric_hpc.inference.engines import prepare_pytorch_engine

from .conftest import LIMITS


def _with_config(hf_dir: Path, dst: Path, **changes: object) -> Path:
    shutil.copytree(hf_dir, dst)
    doc = json.loads((dst / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps({**doc, **changes}, indent=2))  # json.dump writes NaN
    return dst


def test_nan_in_fields_the_engine_does_not_read_imports_exports_and_serves(hf_dir: Path, tmp_path: Path):
    src = _with_config(hf_dir, tmp_path / "hf", rope_scaling=math.nan, initializer_range=math.nan,
                       extra=[1.0, -math.inf])
    assert "NaN" in (src / "config.json").read_text()
    import_hf(src, tmp_path / "ck")
    meta = open_checkpoint(tmp_path / "ck").manifest.user_metadata
    assert meta["hf_files"]["config.json"]["rope_scaling"] is None
    assert meta[NONFINITE] == {"config.json": {"/rope_scaling": "NaN", "/initializer_range": "NaN",
                                               "/extra/1": "-Infinity"}}
    export_hf(tmp_path / "ck", tmp_path / "out")
    back = json.loads((tmp_path / "out/config.json").read_text())
    assert math.isnan(back["rope_scaling"]) and math.isnan(back["initializer_range"])
    assert back["extra"] == [1.0, -math.inf]
    # the engine serves it, from the checkpoint and from the model directory alike
    from_ckpt = prepare_pytorch_engine(tmp_path / "eng", dtype="float32", checkpoint=tmp_path / "ck",
                                       **LIMITS)
    direct = prepare_pytorch_engine(src, dtype="float32", **LIMITS)
    assert from_ckpt["architecture"] == direct["architecture"]


def test_nan_in_a_field_the_engine_reads_is_refused_by_name(hf_dir: Path, tmp_path: Path):
    src = _with_config(hf_dir, tmp_path / "hf", rms_norm_eps=math.nan)
    import_hf(src, tmp_path / "ck")  # the import carries it: only a reader of the field can judge it
    with pytest.raises(ConfigError, match=r"rms_norm_eps is nan: the engine needs a finite number"):
        prepare_pytorch_engine(tmp_path / "eng", dtype="float32", checkpoint=tmp_path / "ck", **LIMITS)
    with pytest.raises(ConfigError, match=r"rms_norm_eps is nan"):
        prepare_pytorch_engine(src, dtype="float32", **LIMITS)
    bad = _with_config(hf_dir, tmp_path / "hf2", rope_scaling=2.0)
    with pytest.raises(ConfigError, match=r"rope_scaling 2\.0 \(an object or null\)"):
        prepare_pytorch_engine(bad, dtype="float32", **LIMITS)


_BASE = {"architectures": ["LlamaForCausalLM"], "vocab_size": 32, "hidden_size": 16,
         "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}


@pytest.mark.parametrize(("extra", "named"), [
    ({"tie_word_embeddings": math.nan}, "tie_word_embeddings nan"),  # bool(NaN): an untied model tied
    ({"attention_bias": math.nan}, "attention_bias nan"),
    ({"architectures": math.nan}, "architectures nan"),  # a traceback: NaN is not subscriptable
    ({"eos_token_id": [math.inf]}, "eos_token_id is inf"),  # a traceback: int(inf) overflows
    ({"eos_token_id": math.inf}, "eos_token_id is inf"),
])
def test_a_non_finite_or_mistyped_value_the_engine_reads_is_refused_by_name(extra: dict, named: str) -> None:
    """Review: NaN in ``tie_word_embeddings`` silently tied an untied model's LM head to its
    embeddings (``bool(nan)`` is True); NaN ``architectures`` and ``[Infinity]`` EOS ids were tracebacks."""
    from fabric_hpc.inference.engines.spec import LlamaSpec

    with pytest.raises(ConfigError, match=named):
        LlamaSpec.from_hf_config({**_BASE, **extra})
    assert LlamaSpec.from_hf_config({**_BASE, "tie_word_embeddings": None}).tie_word_embeddings is False


def test_an_edited_nonfinite_pointer_with_unicode_digits_is_skipped() -> None:
    """Review: ``'²'.isdigit()`` is True but ``int('²')`` raises: an edited ``hf_nonfinite`` pointer
    was a ValueError on export; edited metadata is skipped as the docstring says."""
    from fabric_hpc.checkpoint.interop.hf import restore_nonfinite

    doc = {"a": [None, None], "b": None}
    got = restore_nonfinite(doc, {"/a/²": "NaN", "/a/²/x": "NaN", "/b": "Infinity"})
    assert got["a"] == [None, None] and got["b"] == math.inf
