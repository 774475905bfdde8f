"""Discovery on PCIe GPUs joined in pairs by NVLink bridges (H100 NVL, A100 PCIe: GPU 0-1, 2-3, ...).
The host type can only say "direct NVLink" (a full mesh), so the model, placement and gres.conf
``Links=`` count NVLink between GPUs that have none (``Links=-1,2,2,...``). Before, discovery said
only "the fabric model treats them as a full mesh"; now it says which pairs NVLink joins and how to
model the host instead. A full direct mesh gets no such note."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from fabric_hpc.topology.discover import discover

FIXTURES = Path(__file__).parent / "fixtures"


def _recording(tmp_path: Path, peer_of) -> Path:
    rec = copy.deepcopy(json.loads((FIXTURES / "nvml-dgx-h100.json").read_text()))
    bus = [d["pci_bus_id"] for d in rec["devices"]]
    for i, d in enumerate(rec["devices"]):
        d["nvlinks"] = [{"link": n, "state": 1, "version": 6, "remote_type": 0, "remote_pci_bus_id": bus[p]}
                        for n, p in enumerate(peer_of(i))]
    path = tmp_path / "nvml.json"
    path.write_text(json.dumps(rec))
    return path


def test_bridged_pairs_are_named_with_the_fix(tmp_path):
    rec = _recording(tmp_path, lambda i: [i ^ 1] * 12)
    d = discover(root=FIXTURES / "dgx-h100", nvml_recording=rec, hostname="nvl01")
    note = [n for n in d.notes if "NVLink joins only" in n]
    assert note and "4 of the 28 GPU pairs (0-1, 2-3, 4-5, 6-7" in note[0], d.notes
    assert "set nvlink_gbps: 0" in note[0]
    assert "NVLink joins only" in d.yaml()


def test_a_full_direct_mesh_has_no_such_note(tmp_path):
    rec = _recording(tmp_path, lambda i: [p for p in range(8) if p != i])
    d = discover(root=FIXTURES / "dgx-h100", nvml_recording=rec, hostname="mesh01")
    assert not [n for n in d.notes if "NVLink joins only" in n], d.notes
    assert any("full mesh" in n for n in d.notes)


def test_links_whose_peer_nvml_does_not_name_make_no_pairs_claim(tmp_path):
    """Review: with the peers' bus ids unknown (no or an unmatched ``remote_pci_bus_id``) the note said
    "NVLink joins only 0 of the 28 GPU pairs (none)" and told the admin to drop a real NVLink mesh."""
    rec_path = _recording(tmp_path, lambda i: [p for p in range(8) if p != i])
    rec = json.loads(rec_path.read_text())
    for d in rec["devices"]:
        for link in d["nvlinks"]:
            link["remote_pci_bus_id"] = "00000000:FF:00.0"  # a GPU NVML lists nowhere
    rec_path.write_text(json.dumps(rec))
    d = discover(root=FIXTURES / "dgx-h100", nvml_recording=rec_path, hostname="unknown01")
    assert not [n for n in d.notes if "NVLink joins only" in n], d.notes
