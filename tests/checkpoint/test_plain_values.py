"""Plain-Python values: a dict holding no tensors is one value stored as JSON with its keys
verbatim (spaces, unicode, '/', int keys, order); a '/' in a value's key beside tensors is refused
instead of coming back nested; errors about values say "value", not "tensor"."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import CheckpointError, CheckpointNotFoundError, restore, save
from fabric_hpc.checkpoint.format import ATTR


def test_a_dict_of_plain_values_keeps_its_keys_verbatim_and_in_order(tmp_path: Path) -> None:
    cfg = {"model name": "x", "a/b": 1, "zeta": {3: "é", "b": None}, "ä": [1, (2, 3)], "alpha": 0.5}
    save(tmp_path / "ck", {"cfg": cfg, "w": np.ones(2)}, step=1)
    back = restore(tmp_path / "ck")
    assert back["cfg"] == cfg and list(back["cfg"]) == list(cfg)
    assert list(back["cfg"]["zeta"]) == [3, "b"]
    assert restore(tmp_path / "ck", names=["cfg/zeta/3", "cfg/model name"]) == \
        {"cfg": {"zeta": {3: "é"}, "model name": "x"}}
    with pytest.raises(CheckpointNotFoundError, match="'cfg/zeta/q'") as info:
        restore(tmp_path / "ck", names=["cfg/zeta/q"])
    assert "names=['cfg']" in info.value.hint


def test_a_state_of_values_only_saves(tmp_path: Path) -> None:
    """{'cfg': {'model name': 'x'}} was refused: "tensor name 'cfg/model name' ... not allowed"."""
    save(tmp_path / "ck", {"cfg": {"model name": "x"}}, step=1)
    assert restore(tmp_path / "ck") == {"cfg": {"model name": "x"}}


def test_a_slash_in_a_values_key_beside_tensors_is_refused_not_nested(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as info:
        save(tmp_path / "ck", {"m": {"w": np.ones(1), "a/b": 1}}, step=1)
    assert "'a/b'" in info.value.message and "nested" in info.value.message
    assert "holds no tensors" in info.value.hint


def test_a_bad_value_name_beside_tensors_is_called_a_value(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as info:
        save(tmp_path / "ck", {"m": {"w": np.ones(1), "model name": 1}}, step=1)
    assert info.value.message.startswith("value name 'm/model name'")
    assert "holds no tensors" in info.value.hint


def test_optimizer_state_keeps_int_keys_above_tensors(tmp_path: Path) -> None:
    state = {"optim": {"state": {0: {"exp_avg": np.ones(2), "step": 3}}, "param_groups": [{"lr": 0.1}]},
             "sched": {"last_epoch": 4, "base_lrs": [0.1]}}
    save(tmp_path / "ck", state, step=1)
    back = restore(tmp_path / "ck")
    assert list(back["optim"]["state"]) == [0] and back["optim"]["state"][0]["step"] == 3
    assert back["sched"] == {"last_epoch": 4, "base_lrs": [0.1]}
    assert restore(tmp_path / "ck", names=["sched/last_epoch"]) == {"sched": {"last_epoch": 4}}


def test_a_checkpoint_with_values_stored_leaf_by_leaf_still_restores(tmp_path: Path) -> None:
    """Checkpoints written before stored {'sched': {'last_epoch': 4}} as the leaf sched/last_epoch."""
    save(tmp_path / "ck", {"w": np.ones(1), "sched": {"last_epoch": 4, "lrs": [1]}}, step=1)
    doc_path = tmp_path / "ck" / "step-0000000001" / "zarr.json"
    doc = json.loads(doc_path.read_text())
    values = next(v for k, v in doc["attributes"].items()
                  if k != ATTR and isinstance(v, dict) and "leaves" in v)
    assert values["leaves"] == {"sched": {"$d": [["last_epoch", 4], ["lrs", [1]]]}}
    values["leaves"] = {"sched/last_epoch": 4, "sched/lrs": [1]}  # the older layout
    doc_path.write_text(json.dumps(doc))
    assert restore(tmp_path / "ck")["sched"] == {"last_epoch": 4, "lrs": [1]}
    assert restore(tmp_path / "ck", names=["sched/lrs"]) == {"sched": {"lrs": [1]}}
