"""NCCL topology XML: ``sm`` only where the GPU model's compute capability is known. NCCL reads the
device's own compute capability only when the attribute is missing (src/graph/xml.cc
ncclTopoGetXmlFromGpu), so a made-up sm="90" for an L40S or T4 would stand."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.topology import Fabric
from fabric_hpc.topology import export as ex
from fabric_hpc.topology.discover import discover
from fabric_hpc.topology.nccl_xml import nccl_topo_xml

from .test_export import _nccl_tree, _one_host
from .test_export_probe_fixes import FIX, _linked_dgx

# compute capability × 10, NVIDIA's table (https://developer.nvidia.com/cuda-gpus)
KNOWN = [("L40S", "89"), ("NVIDIA-L40-48GB", "89"), ("L4", "89"), ("A10", "86"), ("A10G", "86"),
         ("A40", "86"), ("A30", "80"), ("Tesla-T4", "75"), ("H100-SXM5-80GB", "90"), ("A100-PCIE-40GB", "80")]
UNKNOWN = ["RTX-6000-Ada", "Quadro-RTX-8000", "Mystery-9000", "A16", "L20"]


@pytest.mark.parametrize("model,sm", KNOWN)
def test_known_models_get_their_compute_capability(model, sm):
    assert ex.gpu_sm(model) == sm
    assert {g.get("sm") for g in _nccl_tree(_one_host(gpu_model=model)).iter("gpu")} == {sm}


@pytest.mark.parametrize("model", UNKNOWN)
def test_an_unknown_model_gets_no_sm(model):
    assert ex.gpu_sm(model) is None
    gpus = list(_nccl_tree(_one_host(gpu_model=model)).iter("gpu"))
    assert gpus and all("sm" not in g.attrib for g in gpus), [g.attrib for g in gpus]


@pytest.mark.parametrize("model,sm", [("RTX-6000-Ada", None), ("L40S", "89"), ("H100-80GB-HBM3", "90")])
def test_the_xml_of_a_discovered_host_writes_sm_only_when_known(tmp_path, capsys, model, sm):
    found = discover(root=_linked_dgx(tmp_path), nvml_recording=FIX / "nvml-dgx-h100.json", hostname="dgx01")
    spec = found.spec.model_copy(update={"host_types": {
        k: v.model_copy(update={"gpu_model": model}) for k, v in found.spec.host_types.items()}})
    gpus = list(ET.fromstring(nccl_topo_xml(Fabric(spec), "dgx01", found.facts)).iter("gpu"))
    assert len(gpus) == 8 and {g.get("sm") for g in gpus} == {sm}
    path, facts = tmp_path / "h.yaml", tmp_path / "h.facts.json"
    from fabric_hpc.topology import dump_spec

    path.write_text(dump_spec(spec))
    facts.write_text(json.dumps(found.facts))
    assert main(["topology", "export", str(path), "--format", "nccl-xml", "--host", "dgx01",
                 "--facts", str(facts)]) == 0
    out = capsys.readouterr().out
    assert out.count(f'sm="{sm}"') == 8 if sm else " sm=" not in out, out
