"""EngineLimits checks its fields with EngineConfigErrors (a FabricError) that name the field: a
negative size raised a plain ValueError, a string a TypeError, and max_input_len > max_seq_len was
accepted although prepare refuses it."""

from __future__ import annotations

import pytest

from fabric_hpc.errors import FabricError
from fabric_hpc.inference.engine import EngineConfigError, EngineLimits

OK = {"max_batch_size": 8, "max_num_tokens": 4096, "max_input_len": 512, "max_seq_len": 1024,
      "kv_capacity_tokens": 65536}


@pytest.mark.parametrize("field,value", [("max_batch_size", -1), ("max_batch_size", "8"),
                                         ("kv_capacity_tokens", 0), ("max_num_tokens", 2.5),
                                         ("best_batch_size", -3)])
def test_bad_field_is_a_named_fabric_error(field, value):
    with pytest.raises(EngineConfigError, match=f"EngineLimits.{field} must be a whole number >= 1") as err:
        EngineLimits(**{**OK, field: value})
    assert isinstance(err.value, FabricError)


def test_input_longer_than_sequence_is_refused():
    with pytest.raises(EngineConfigError, match="max_input_len 1024 is above max_seq_len 512"):
        EngineLimits(**{**OK, "max_input_len": 1024, "max_seq_len": 512})


def test_good_limits_default_best_batch():
    assert EngineLimits(**OK).best_batch_size == 8
