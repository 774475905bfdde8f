"""A host without discovered PCI bus ids gets no NCCL_TOPO_FILE (NCCL's own detection beats a file of
made-up ids, whose GPUs NCCL drops): from the Prolog, the TaskProlog's full path and its fast path,
each saying why; a host with them gets a file of its real ids."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabric_hpc.slurm import task_fast
from fabric_hpc.slurm.prolog import hints_path, prepare_node, task_exports, topo_path, write_topo
from fabric_hpc.testing.nccl_facts import synthetic_facts, write_facts
from fabric_hpc.topology import build, generators
from tests.real import require_real
from tests.slurm.prolog_site import make_site

HOST, OTHER = "su01-h01", "su01-h02"


@pytest.fixture()
def site() -> Iterator[dict]:
    require_real("slurm", os.geteuid() == 0, "the hints file is trusted only when root's: run as root")
    fab = build(generators.superpod(1))
    base, cfg = make_site(fab, "fabric-nccl-facts-")
    yield {"fab": fab, "base": base, "cfg": cfg, "config": base / "prolog.json"}
    shutil.rmtree(base)


def _env(host: str) -> dict[str, str]:
    return {"SLURMD_NODENAME": host, "CUDA_VISIBLE_DEVICES": "5,0", "SLURM_JOB_ID": "7",
            "SLURM_JOB_NAME": "t"}


def _full(site: dict, host: str, notes: list[str]) -> dict[str, str]:
    return task_exports(site["fab"], _env(host), topo_dir=Path(site["cfg"]["topo_dir"]),
                        ckpt_root=site["cfg"]["ckpt_root"], notes=notes)


def test_a_host_without_facts_gets_no_topology_file(site: dict, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="fabric_hpc.events"):
        assert prepare_node(site["config"], {"SLURMD_NODENAME": HOST}) is None
    event = next(r.event for r in caplog.records if r.getMessage() == "slurm.prolog.no_nccl_topo_file")
    assert event["host"] == HOST and "no discovery facts for su01-h01" in event["reason"]
    topo_dir = Path(site["cfg"]["topo_dir"])
    assert not topo_path(topo_dir, HOST).exists()
    hints = json.loads(hints_path(topo_dir, HOST).read_text())
    assert hints["topo_sha256"] is None and "no discovered PCI bus ids" in hints["topo_note"]
    notes: list[str] = []
    full = _full(site, HOST, notes)
    assert "NCCL_TOPO_FILE" not in full and full["CUDA_VISIBLE_DEVICES"]
    assert notes and notes[0].startswith("no NCCL_TOPO_FILE: no discovered PCI bus ids for su01-h01")
    exports, fast_notes = task_fast.fast_result(site["config"], _env(HOST))
    assert exports == full and fast_notes[0].startswith("no NCCL_TOPO_FILE: no discovered PCI bus ids")


def test_an_old_file_of_made_up_ids_is_removed_and_never_exported(site: dict) -> None:
    topo_dir = Path(site["cfg"]["topo_dir"])
    topo_dir.mkdir(mode=0o755)
    old = topo_path(topo_dir, HOST)
    old.write_text('<system version="1"><cpu numaid="0" arch="x86_64"/></system>\n')  # as before this fix
    notes: list[str] = []
    out = _full(site, HOST, notes)
    assert "NCCL_TOPO_FILE" not in out and "no discovery facts" in notes[0]
    prepare_node(site["config"], {"SLURMD_NODENAME": HOST})
    assert not old.exists()


def test_a_host_with_facts_gets_its_real_bus_ids(site: dict) -> None:
    topo_dir = Path(site["cfg"]["topo_dir"])
    write_facts(topo_dir, site["fab"], HOST)
    path = prepare_node(site["config"], {"SLURMD_NODENAME": HOST})
    assert path == topo_path(topo_dir, HOST)
    ids = {g["pci_bus_id"].lower().replace("00000000:", "0000:")
           for g in synthetic_facts(site["fab"], HOST)["gpus"]}
    text = path.read_text()
    assert all(f'busid="{b}"' in text for b in ids) and 'vendor="GenuineIntel"' in text
    notes: list[str] = []
    full = _full(site, HOST, notes)
    assert full["NCCL_TOPO_FILE"] == str(path) and not notes
    assert task_fast.fast_result(site["config"], _env(HOST)) == (full, [])
    # the other host of the same model, without facts, still gets none
    assert prepare_node(site["config"], {"SLURMD_NODENAME": OTHER}) is None


def test_facts_of_another_host_are_not_used(site: dict) -> None:
    topo_dir = Path(site["cfg"]["topo_dir"])
    write_facts(topo_dir, site["fab"], OTHER).rename(task_fast.facts_path(topo_dir, HOST))
    with pytest.raises(Exception, match="the facts are of host 'su01-h02', not 'su01-h01'"):
        write_topo(site["fab"], HOST, topo_dir)
