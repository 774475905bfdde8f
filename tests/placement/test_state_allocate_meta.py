"""``ClusterState.allocate(job, gpus, **meta)`` took metadata that a state file may not hold (``tp=3`` on
4 GPUs, ``tp=0``, a list), and ``save`` then wrote a file that ``ClusterState.load`` (and so every
``fabric place -s``) refused. ``allocate`` now refuses what is wrong in itself (``tp=0``, a list)
before it changes anything; a ``tp``/``pp`` whose product does not divide the job's GPUs (which the
Slurm view can meet: a job's GPUs on hosts outside the fabric) is read as one ring, as
``parallel_shape`` always did, and ``save`` leaves it out."""

from __future__ import annotations

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement import ClusterState
from fabric_hpc.topology.io import open_fabric


@pytest.mark.parametrize(("meta", "words"), [({"tp": 0}, "whole number"),
                                             ({"pp": "x"}, "whole number"), ({"tp": True}, "whole number"),
                                             ({"tier": [1, 2]}, "plain values")])
def test_allocate_refuses_metadata_the_file_cannot_hold(tmp_path, meta, words):
    fab = open_fabric("leaf-spine-16")
    state = ClusterState(fab)
    with pytest.raises(ConfigError, match=words):
        state.allocate("j1", fab.gpus[:4], **meta)
    assert not state.holds("j1") and state.free.all() and "j1" not in state.job_meta
    path = tmp_path / "state.json"
    state.save(path)
    assert ClusterState.load(fab, path).free.all()


def test_good_metadata_round_trips(tmp_path):
    fab = open_fabric("leaf-spine-16")
    state = ClusterState(fab)
    state.allocate("j1", fab.gpus[:8], tp=4, pp=2, tier="high")
    state.allocate("j1", fab.gpus[8:16])  # more GPUs for the same job: 16 still split into 4·2
    path = tmp_path / "state.json"
    state.save(path)
    loaded = ClusterState.load(fab, path)
    assert loaded.job_meta["j1"] == {"tp": 4, "pp": 2, "tier": "high"}
    assert loaded.parallel_shape("j1") == (4, 2)


def test_a_shape_that_does_not_divide_is_saved_as_one_ring(tmp_path):
    fab = open_fabric("leaf-spine-16")
    state = ClusterState(fab)
    state.allocate("j1", fab.gpus[:4], tp=3, tier="low")
    assert state.parallel_shape("j1") == (1, 1)
    path = tmp_path / "state.json"
    state.save(path)
    loaded = ClusterState.load(fab, path)
    assert loaded.job_meta["j1"] == {"tier": "low"} and loaded.parallel_shape("j1") == (1, 1)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_a_metadata_number_json_cannot_hold_is_refused(value):
    """NaN or infinity would be saved as ``NaN`` and refused by ``load`` (not JSON)."""
    fab = open_fabric("leaf-spine-16")
    state = ClusterState(fab)
    with pytest.raises(ConfigError, match="finite number"):
        state.allocate("j", fab.gpus[:2], weight=value)
    assert not state.holds("j")
