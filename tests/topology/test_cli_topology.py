"""`fabric topology ...` end to end through the console entry point."""

from __future__ import annotations

import json

import pytest

from fabric_hpc.cli.main import main


def test_generate_validate_show_round_trip(tmp_path, capsys):
    out = tmp_path / "pod.yaml"
    assert main(["topology", "generate", "superpod", "--sus", "2", "-o", str(out)]) == 0
    assert main(["topology", "validate", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == [{"fabric": str(out), "ok": True, "hosts": 64, "gpus": 512}]
    assert main(["topology", "show", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["levels"] == ["leaf", "spine"]


def test_show_distance_and_host(capsys):
    assert main(["topology", "show", "superpod:sus=2", "--distance", "su01-h01/gpu0", "su02-h01/gpu0",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["hops"] == 3
    assert main(["topology", "show", "nvl72:racks=1", "--host", "r001-h02", "--json"]) == 0
    host = json.loads(capsys.readouterr().out)
    assert len(host["gpus"]) == 4 and host["domains"][0] == ["nvlink", "r001"]


def test_export_to_file(tmp_path):
    out = tmp_path / "topology.conf"
    assert main(["topology", "export", "leaf-spine:hosts=8", "--format", "topology-tree", "-o", str(out)]) == 0
    assert "SwitchName=leaf2 Nodes=n[5-8]" in out.read_text()


def test_bad_input_exit_3_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("fabric: 1\nname: x\nhost_types: {}\nhosts: []\nbogus: 2\n")
    assert main(["topology", "validate", str(bad)]) == 3
    err = capsys.readouterr().err
    assert "unknown key 'bogus'" in err and "Traceback" not in err
    # every file is checked, good ones too, and --json says which failed (it printed nothing)
    good = tmp_path / "good.yaml"
    assert main(["topology", "generate", "leaf-spine", "--hosts", "4", "-o", str(good)]) == 0
    capsys.readouterr()
    assert main(["topology", "validate", str(bad), str(good), str(tmp_path / "none.yaml"), "--json"]) == 3
    out, err = capsys.readouterr()
    assert [(r["fabric"], r["ok"]) for r in json.loads(out)] == [(str(bad), False), (str(good), True),
                                                                 (str(tmp_path / "none.yaml"), False)]
    assert "2 of 3 fabric files are invalid" in err
    assert main(["topology", "show", "superpod:sus=zero"]) == 3
    assert main(["topology", "show", "nowhere.yaml"]) == 3
    assert main(["topology", "export", "superpod:sus=1", "--format", "nccl-xml"]) == 3
    assert "needs --host" in capsys.readouterr().err


def test_report_with_state(tmp_path, capsys):
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"version": 1, "jobs": {"train-1": {"hosts": "su01-h[01-04]"}},
                                 "down": ["su02-h01"]}))
    out = tmp_path / "r.html"
    assert main(["topology", "report", "superpod:sus=2", "--state", str(state), "--out", str(out),
                 "--png", str(tmp_path / "r.png"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["allocated"], summary["down"]) == (32, 8)
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_bad_state_is_exit_3(tmp_path, capsys):
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"version": 1, "jobs": {"x": {"hosts": "nope[1-2]"}}}))
    assert main(["topology", "report", "superpod:sus=1", "--state", str(state), "--out",
                 str(tmp_path / "r.html")]) == 3
    assert "Traceback" not in capsys.readouterr().err


def test_import_lingjun_and_node_list(tmp_path, capsys):
    from pathlib import Path

    data = Path(__file__).resolve().parents[2] / "data" / "topologies"
    out = tmp_path / "lj.yaml"
    assert main(["topology", "import", str(data / "alibaba_lingjun2023_topo.csv"), "-o", str(out)]) == 0
    assert main(["topology", "show", str(out), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["hosts"] == 847 and shown["levels"] == ["tor", "aggregation", "core"]
    assert main(["topology", "import", str(data / "alibaba_openb_node_list_gpu_node.csv"),
                 "--hosts-per-leaf", "32", "-o", str(tmp_path / "openb.yaml")]) == 0
    assert main(["topology", "import", str(data / "alibaba_lingjun2023_topo.csv"), "--hosts-per-leaf", "8"]) == 3


def test_discover_on_this_host(capsys):
    assert main(["topology", "discover", "--json"]) == 0
    captured = capsys.readouterr()
    found = json.loads(captured.out)
    assert found["spec"]["hosts"][0]["names"]
    assert found["notes"] == [] or "note:" in captured.err


def test_export_topology_yaml_and_block_size(tmp_path, capsys):
    out = tmp_path / "topology.yaml"
    assert main(["topology", "export", "leaf-spine:hosts=8", "--format", "topology-yaml",
                 "--default-topology", "block", "-o", str(out)]) == 0
    assert "- topology: block\n  cluster_default: true" in out.read_text()
    assert main(["topology", "export", "leaf-spine:hosts=11", "--format", "topology-block"]) == 3
    err = capsys.readouterr().err
    assert "unequal sizes" in err and "fix:" in err and "Traceback" not in err
    assert main(["topology", "export", "leaf-spine:hosts=11", "--format", "topology-block",
                 "--block-size", "3"]) == 0
    assert "BlockSizes=3,6" in capsys.readouterr().out


def test_show_prints_markup_in_names_as_text(tmp_path, capsys):
    """A fabric named like rich markup is printed as written (it crashed `topology show`)."""
    from fabric_hpc.topology import dump_spec, generators

    spec = generators.leaf_spine(hosts=2, hosts_per_leaf=2, gpus=2)
    text = dump_spec(spec).replace(f"name: {spec.name}", 'name: "[/bold] x [red]y[/red]"', 1)
    path = tmp_path / "m.yaml"
    path.write_text(text)
    assert main(["topology", "show", str(path)]) == 0
    assert "[/bold] x [red]y[/red]: 2 hosts" in capsys.readouterr().out


def test_show_distance_in_a_direct_nvlink_mesh(capsys):
    """No NVSwitch: two GPUs share one direct link (300/7 GB/s), not the GPU's whole 300 GB/s."""
    from pathlib import Path

    mesh = str(Path(__file__).parent / "fixtures" / "nvlink-mesh.yaml")
    assert main(["topology", "show", mesh, "--distance", "a1/gpu0", "a1/gpu4", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["level"], d["hops"], d["bandwidth_gbps"]) == ("nvlink", 1, 42.857)


def test_leaf_spine_with_fewer_hosts_than_a_leaf_holds(capsys):
    """`leaf-spine:hosts=3` failed on its own default hosts_per_leaf=4."""
    assert main(["topology", "show", "leaf-spine:hosts=3", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["hosts"] == 3 and s["groups_per_level"]["leaf"] == 1
    assert main(["topology", "generate", "leaf-spine", "--hosts", "3"]) == 0


def test_export_refuses_to_overwrite_its_input_fabric(tmp_path, capsys):
    """`export v2.yaml --format topology-tree -o v2.yaml` replaced the fabric by a topology.conf."""
    fabric = tmp_path / "v2.yaml"
    assert main(["topology", "generate", "leaf-spine", "--hosts", "4", "-o", str(fabric)]) == 0
    before = fabric.read_text()
    capsys.readouterr()
    for out in (str(fabric), str(tmp_path / "." / "v2.yaml")):
        assert main(["topology", "export", str(fabric), "--format", "topology-tree", "-o", out]) == 3
        err = capsys.readouterr().err
        assert "--out" in err and "is the input FABRIC" in err and "fix: give --out another file name" in err
    assert fabric.read_text() == before


@pytest.mark.parametrize("device_dir, needle", [
    ("/a\nNodeName=evil", "holds '\\n', '='"), ("/a b", "holds ' '"), ("/a#b", "holds '#'"), ("/a,b", "holds ','"),
    ("/dev/x[1-2]", "holds '[', ']'"), ("/a\tb", "holds '\\t'"), ("", "is not an absolute path"),
    ("dev", "is not an absolute path"), ("./dev", "is not an absolute path"),
])
def test_export_gres_refuses_a_device_dir_gres_conf_would_misread(tmp_path, capsys, device_dir, needle):
    """`--device-dir $'/a\\nNodeName=evil'` injected a line into gres.conf; spaces, '#' and relative paths passed."""
    out = tmp_path / "gres.conf"
    assert main(["topology", "export", "leaf-spine:hosts=2", "--format", "gres", "--device-dir", device_dir,
                 "-o", str(out)]) == 3
    err = capsys.readouterr().err
    assert f"device directory {device_dir!r} {needle}" in err and "fix: give the absolute directory of the nvidiaN" in err
    assert not out.exists()


def test_export_gres_takes_plain_absolute_device_dirs(capsys):
    for device_dir in ("/dev", "/dev/", "/run/nvidia-devices_1.x"):
        assert main(["topology", "export", "leaf-spine:hosts=2", "--format", "gres", "--device-dir", device_dir]) == 0
        assert f"File={device_dir.rstrip('/')}/nvidia0 " in capsys.readouterr().out


def test_discover_out_names_its_yaml_and_facts_files(tmp_path, capsys):
    """`discover -o x.facts.json` wrote YAML into x.facts.json and the facts into x.facts.facts.json."""
    assert main(["topology", "discover", "--no-nvml", "-o", str(tmp_path / "x.facts.json")]) == 3
    err = capsys.readouterr().err
    assert "the host's fragment is YAML, not JSON" in err and f"fix: give the fragment's file, e.g. -o {tmp_path / 'x'}.yaml" in err
    assert list(tmp_path.iterdir()) == []
    assert main(["topology", "discover", "--no-nvml", "-o", str(tmp_path / "x.facts.yaml")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.facts.json", "x.facts.yaml"]
    assert json.loads((tmp_path / "x.facts.json").read_text())["host"]
    capsys.readouterr()
    assert main(["topology", "discover", "--no-nvml", "-o", str(tmp_path / "no" / "x.yaml")]) == 3
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "no").exists()
    assert main(["topology", "discover", "--no-nvml", "-o", str(tmp_path / "h.yaml"),
                 "--record", str(tmp_path / "h.facts.json")]) == 3
    assert "it would be overwritten" in capsys.readouterr().err


def test_show_refuses_distance_with_host(capsys):
    assert main(["topology", "show", "leaf-spine:hosts=2", "--distance", "n1/gpu0", "n2/gpu0", "--host", "n1"]) == 3
    err = capsys.readouterr().err
    assert "--distance and --host show different things" in err and "fix:" in err


def test_report_counts_are_formatted_alike(tmp_path, capsys):
    """It said "16,384 GPUs, 16384 free"."""
    assert main(["topology", "report", "superpod:sus=4", "--out", str(tmp_path / "r.html")]) == 0
    assert "1,024 GPUs, 1,024 free, 0 allocated, 0 down, 0 jobs" in capsys.readouterr().out
