"""GRES types of a fabric with several GPU models: distinct wherever the short type (the model's first
word) would merge two models (A100-SXM4-40GB and -80GB both ``a100``), unchanged elsewhere."""

from __future__ import annotations

import re

import pytest

from fabric_hpc.topology import build
from fabric_hpc.topology import export as ex
from fabric_hpc.topology import generators

MIXED = {"A100-SXM4-40GB": "a100-sxm4-40gb", "A100-SXM4-80GB": "a100-sxm4-80gb",
         "H100-PCIe-80GB": "h100-pcie-80gb", "H100-SXM5-80GB": "h100-sxm5-80gb", "L40S": "l40s"}


def _fabric(models: list[str], gpus: int = 2) -> object:
    base = generators.DGX_H100.model_copy(update={"gpu_numa": None, "gpus": gpus, "nics": gpus}).model_dump()
    types = {f"t{i}": {**base, "gpu_model": m} for i, m in enumerate(models)}
    hosts = [{"names": f"n{i + 1}", "type": f"t{i}"} for i in range(len(models))]
    network = {"levels": ["leaf"], "groups": [{"name": "leaf", "level": "leaf", "switches": 1,
                                               "hosts": f"n[1-{len(models)}]", "uplink_gbps": 100}]}
    return build({"fabric": 1, "name": "mixed", "host_types": types, "hosts": hosts, "network": network})


def _node_types(text: str) -> dict[str, str]:
    return dict(re.findall(r"NodeName=(\S+) .*Gres=gpu:([^:]+):", text))


def test_colliding_models_get_distinct_types():
    fab = _fabric(list(MIXED))
    assert ex.gres_types(fab) == MIXED
    nodes = _node_types(ex.slurm_nodes_conf(fab))
    assert nodes == {f"n{i + 1}": t for i, t in enumerate(MIXED.values())}, nodes
    gres = dict(re.findall(r"NodeName=(\S+) Name=gpu Type=(\S+) File=\S+nvidia0 ", ex.gres_conf(fab)))
    assert gres == nodes  # gres.conf and the node lines agree, or slurmd refuses the node


@pytest.mark.parametrize("models,want", [
    (["A100-SXM4-40GB", "H100-SXM5-80GB"], ["a100", "h100"]),  # no collision: today's short names
    (["H100-SXM5-80GB", "H100 SXM5 80GB"], ["h100", "h100"]),  # the same model, spelled twice
    (["H100", "H100-PCIe"], ["h100", "h100-pcie"]),
])
def test_short_types_stay_where_nothing_collides(models, want):
    assert [ex.gres_types(_fabric(models))[m] for m in models] == want


@pytest.mark.slurm
def test_slurm_places_a_job_on_the_model_it_names(slurm_cluster_factory):
    fab = _fabric(["A100-SXM4-40GB", "A100-SXM4-80GB"], gpus=1)
    cluster = slurm_cluster_factory(fab)
    try:
        for host, gtype in (("n1", "a100-sxm4-40gb"), ("n2", "a100-sxm4-80gb")):
            job = cluster.sbatch(f"--gres=gpu:{gtype}:1", wrap="true")
            assert cluster.hostnames(cluster.wait_job(job, timeout=60)["NodeList"]) == [host]
    finally:
        cluster.stop()
