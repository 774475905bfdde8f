from __future__ import annotations

import json

import numpy as np
import pytest

from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.placement import ClusterState


def test_allocate_release_and_occupancy(pod):
    s = ClusterState(pod)
    s.allocate("a", ["su01-h01/gpu0", "su01-h01/gpu1"])
    s.set_down(["su01-h02"])
    occ = s.occupancy()
    assert occ["su01-h01/gpu0"] == "a" and occ["su01-h02/gpu3"] == "down" and occ["su01-h03/gpu0"] == "free"
    with pytest.raises(ConfigError, match="not free"):
        s.allocate("b", ["su01-h01/gpu1", "su01-h01/gpu2"])
    assert s.occupancy()["su01-h01/gpu2"] == "free"  # all or nothing
    assert s.release("a") == 2
    assert s.free.sum() == len(pod.gpus) - 8


def test_state_file_roundtrip(pod, tmp_path):
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "jobs": {"j1": {"hosts": "su01-h[01-02]", "tier": "hi"},
                                                        "j2": {"gpus": ["su02-h01/gpu7"]}},
                                "down": ["su02-h04", "su02-h03/gpu1"]}))
    s = ClusterState.load(pod, path)
    assert len(s.job_gpus("j1")) == 16 and s.job_meta["j1"] == {"tier": "hi"}
    s.save(tmp_path / "out.json")
    again = ClusterState.load(pod, tmp_path / "out.json")
    assert np.array_equal(again.owner >= 0, s.owner >= 0) and again.occupancy() == s.occupancy()


@pytest.mark.parametrize("data, words", [
    ({"version": 2}, "version-1"),
    ({"version": 1, "jobs": {"x": {"gpus": ["nope/gpu0"]}}}, "no GPU"),
    ({"version": 1, "jobs": {"x": {"gpus": [], "hosts": "su01-h01"}}}, "exactly one"),
    ({"version": 1, "jobs": {"x": {"hosts": "su01-h01"}, "y": {"gpus": ["su01-h01/gpu0"]}}}, "not free"),
    ({"version": 1, "extra": 1}, "unknown key"),
    ({"version": 1, "jobs": []}, "'jobs' must map job ids"),
    ({"version": 1, "jobs": {"x": {"gpus": []}}}, "jobs.x: holds no GPUs"),
    ({"version": 1, "jobs": {"x": {"gpus": ["su01-h01/gpu0", "su01-h01/gpu0"]}}}, "lists GPU 'su01-h01/gpu0' twice"),
    ({"version": 1, "jobs": {"x": {"hosts": ["su01-h01"]}}}, "jobs.x.hosts must be a host-list string, got list"),
    ({"version": 1, "jobs": {"x": {"hosts": "su01-h01", "tier": ["x"]}}}, r"metadata \['tier'\] must be plain values"),
])
def test_bad_state_files(pod, data, words):
    with pytest.raises(ConfigError, match=words):
        ClusterState.from_dict(pod, data)


def test_missing_file(pod, tmp_path):
    with pytest.raises(NotFoundError):
        ClusterState.load(pod, tmp_path / "absent.json")
    with pytest.raises(ConfigError, match="file name is empty"):  # `-s ''` is not "no state"
        ClusterState.load(pod, "")


def test_api_misuse_is_refused_and_changes_nothing(pod):
    s = ClusterState(pod)
    s.allocate("a", ["su01-h01/gpu0"])
    before = s.owner.copy()
    for gpus, err in (([-1], NotFoundError), ([len(pod.gpus)], NotFoundError), ([], ConfigError),
                      (np.array([0, -3]), NotFoundError)):
        with pytest.raises(err):
            s.allocate("b", gpus)
    with pytest.raises(ConfigError, match="non-empty"):
        s.allocate("", [5])
    with pytest.raises(ConfigError, match="held by job"):  # a job keeps its GPUs until released
        s.set_down("su01-h01")
    assert np.array_equal(s.owner, before) and not s.holds("b")
    s.release("a")
    s.set_down("su01-h01")
    assert s.occupancy()["su01-h01/gpu0"] == "down"


@pytest.mark.parametrize("doc, needle", [
    ({"version": 1, "jobs": {}, "down": ["zz1"]}, "state.json: down: 'zz1' is neither a host nor a GPU"),
    ({"version": 1, "jobs": {"j": {"hosts": ""}}}, "state.json: jobs.j.hosts: "),
    ({"version": 1, "jobs": {"j": {"hosts": "nope[1-2]"}}}, "state.json: jobs.j.hosts: 'nope1'"),
])
def test_state_file_errors_name_the_file_and_the_entry(pod, tmp_path, doc, needle):
    path = tmp_path / "state.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError) as e:
        ClusterState.load(pod, path)
    assert needle in e.value.message


def test_a_down_host_without_gpus_survives_a_commit(tmp_path):
    """A CPU-only host in `down` was dropped when the state was written back."""
    from fabric_hpc.topology import build, generators

    fab = build({"fabric": 1, "name": "mix", "host_types": {
        "g": {"gpus": 8, "gpu_model": "H100", "gpu_memory_gb": 80, "sockets": 2, "cores_per_socket": 8,
              "memory_gb": 64, "nvlink_gbps": 900, "nvswitches": 4, "pcie_gbps": 64, "nics": 1, "nic_gbps": 50},
        "c": {"gpus": 0, "gpu_model": "none", "gpu_memory_gb": 0, "sockets": 2, "cores_per_socket": 8,
              "memory_gb": 64, "nvlink_gbps": 0, "nvswitches": 0, "pcie_gbps": 64, "nics": 1, "nic_gbps": 50}},
        "hosts": [{"names": "g[1-2]", "type": "g"}, {"names": "c[1-2]", "type": "c"}],
        "network": {"levels": ["leaf"], "groups": [{"name": "l", "level": "leaf", "switches": 1,
                                                     "hosts": "g[1-2],c[1-2]"}]}})
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "jobs": {}, "down": ["c1", "g2"]}))
    state = ClusterState.load(fab, path)
    state.allocate("j", ["g1/gpu0"])
    state.copy().save(path)
    assert json.loads(path.read_text())["down"] == ["g2,c1"]
    again = ClusterState.load(fab, path)
    again.set_down("c1", down=False)
    assert "c1" not in json.dumps(again.to_dict()["down"])
