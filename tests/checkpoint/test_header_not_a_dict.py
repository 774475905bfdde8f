"""``layout``/``metadata`` that are not dicts (a list, a string) are refused with a CheckpointError
that names the field, before anything is written: ``dict([1])`` used to raise a raw TypeError."""

from __future__ import annotations

import numpy as np
import pytest

from fabric_hpc.checkpoint import save
from fabric_hpc.checkpoint.errors import CheckpointError


@pytest.mark.parametrize("field", ["layout", "metadata"])
@pytest.mark.parametrize("value", [[1], "lr=3e-4", [("a", 1)], 5])
def test_non_dict_header_field_is_refused_before_writing(tmp_path, field, value):
    with pytest.raises(CheckpointError, match=f"{field} must be a dict") as err:
        save(tmp_path / "ck", {"w": np.zeros(4, np.float32)}, step=1, **{field: value})
    assert err.value.hint and field in err.value.hint
    assert not any(tmp_path.rglob("zarr.json"))


def test_dict_metadata_still_saved(tmp_path):
    res = save(tmp_path / "ck", {"w": np.zeros(4, np.float32)}, step=1, metadata={"lr": 3e-4})
    assert res.path.exists()
