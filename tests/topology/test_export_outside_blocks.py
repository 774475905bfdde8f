"""Hosts in no block (NVL72 racks plus DGX hosts in no NVLink domain) are exported for topology/block
with a note of what Slurm does with them, not refused: Slurm 25.11 starts with ``Blocks lack access
to N nodes`` and gives those hosts to the jobs that can use no block host (src/plugins/topology/block:
``topology_p_eval_nodes`` selects by block only when the job's usable nodes overlap a block; live:
tests/slurm/test_block_outside_live.py). The export used to exit 3 saying they "could never run a job"."""

from __future__ import annotations

import yaml

from fabric_hpc.cli.main import main
from fabric_hpc.topology import build, export as ex, export_yaml as exy, generators


def mixed():
    """Two NVL72 racks plus dgx[1-2] (DGX H100) in no NVLink domain, all under one leaf."""
    spec = generators.nvl72(2).model_dump(mode="json", exclude_defaults=True)
    spec["host_types"]["dgx"] = generators.DGX_H100.model_dump(mode="json")
    spec["hosts"].append({"names": "dgx[1-2]", "type": "dgx"})
    spec["network"]["groups"][0]["hosts"] += ",dgx[1-2]"
    return build({"fabric": 1, **spec})


def test_block_conf_keeps_the_racks_and_notes_the_hosts_outside():
    text = ex.topology_conf(mixed(), "block")
    lines = text.splitlines()
    assert [ln for ln in lines if not ln.startswith("#")] == [
        "BlockName=r001 Nodes=r001-h[01-18]", "BlockName=r002 Nodes=r002-h[01-18]", "BlockSizes=18,36"]
    note = next(ln for ln in lines if ln.startswith("# note: "))
    assert "dgx[1-2] in no multi-host NVLink domain, so in no block" in note
    assert "--gres=gpu:h100:N" in note and "Blocks lack access to 2 nodes" in note
    assert "is refused if its --nodelist names them (Slurm 23.11 and 26.05 run it there)." in note
    assert "could never run" not in text
    assert "# note" not in ex.topology_conf(build(generators.nvl72(2)), "block")


def test_yaml_with_the_block_default_is_written_with_the_note():
    text = exy.topology_yaml(mixed(), default="block")
    assert ("# block: dgx[1-2] in no multi-host NVLink domain, so in no block: Slurm's topology/block gives "
            "them") in text
    entries = yaml.safe_load(text)
    assert next(e for e in entries if e["cluster_default"])["topology"] == "block"
    assert "must not hold them" not in exy.topology_yaml(mixed())


def test_cli_export_writes_the_file_and_says_the_note_on_stderr(tmp_path, capsys):
    from fabric_hpc.topology import save_spec

    path = tmp_path / "mixed.yaml"
    save_spec(mixed().spec, path)
    assert main(["topology", "export", str(path), "--format", "topology-block"]) == 0
    out, err = capsys.readouterr()
    assert "BlockName=r001" in out
    assert err.startswith("note: dgx[1-2] in no multi-host NVLink domain")
    assert main(["topology", "export", str(path), "--format", "topology-tree"]) == 0
    assert capsys.readouterr().err == ""
