"""Importers of the Alibaba data shipped in data/topologies/ (read from the repo, never ../shared)."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.hostlist import expand
from fabric_hpc.topology import build, dump_spec, parse_spec
from fabric_hpc.topology.importers import (
    HEADERS, detect_kind, gpu_count, import_csv, import_lingjun, import_node_list, lingjun_host_map,
    type_counts,
)
from fabric_hpc.topology.spec import HostType
from fabric_hpc.topology.spec_check import check_spec

DATA = Path(__file__).resolve().parents[2] / "data"
LINGJUN = DATA / "topologies/alibaba_lingjun2023_topo.csv"
OPENB = DATA / "topologies/alibaba_openb_node_list_gpu_node.csv"
SPOT = DATA / "topologies/alibaba_spot2026_node_info.csv"


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def lingjun():
    spec = import_lingjun(LINGJUN)
    return spec, build(spec)


def test_data_files_are_in_the_repo_with_their_licence():
    for rel in ("topologies/alibaba_lingjun2023_topo.csv", "topologies/alibaba_openb_node_list_gpu_node.csv",
                "topologies/alibaba_spot2026_node_info.csv", "traces/tiresias_60_job.csv",
                "traces/alibaba_openb_pod_list_default.csv", "LICENSE-Apache-2.0.txt", "README.md"):
        assert (DATA / rel).is_file(), rel
    readme = (DATA / "README.md").read_text()
    assert "Crux" in readme and "Apache-2.0" in readme and "ATC'23" in readme


def test_lingjun_counts_match_the_csv(lingjun):
    spec, fab = lingjun
    data = rows(LINGJUN)
    tors = {(r["PSW"], r["ASW"]) for r in data}
    assert len(data) == 847 and len(tors) == 119
    assert len(fab.hosts) == 847 and len(fab.gpus) == 847 * 8
    assert fab.levels == ["tor", "aggregation", "core"]
    assert fab.summary()["groups_per_level"] == {"tor": 119, "aggregation": len({r["PSW"] for r in data}),
                                                 "core": 1}


def test_lingjun_tor_is_the_psw_asw_pair(lingjun):
    spec, fab = lingjun
    names = dict(lingjun_host_map(LINGJUN))
    ip_of = {v: k for k, v in names.items()}
    expected: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in rows(LINGJUN):
        expected[(r["PSW"], r["ASW"])].add(ip_of[r["ip"]])
    by_name = {g.name: set(g.hosts) for g in fab.groups.values() if g.level == "tor"}
    for (psw, asw), hosts in expected.items():
        assert by_name[f"{psw}-{asw}".lower()] == hosts
        assert fab.groups[f"{psw}-{asw}".lower()].parent == psw.lower()
    # the same ASW name under different PSWs is two different ToRs
    asw_names = Counter(asw for _, asw in expected)
    assert max(asw_names.values()) > 1


def test_lingjun_host_names_are_stable_and_in_file_order():
    mapping = lingjun_host_map(LINGJUN)
    data = rows(LINGJUN)
    assert mapping[0] == ("lj0001", data[0]["ip"]) and mapping[-1] == ("lj0847", data[-1]["ip"])
    assert lingjun_host_map(LINGJUN) == mapping


def test_lingjun_distance_follows_the_tiers(lingjun):
    _, fab = lingjun
    tor = next(g for g in fab.groups.values() if g.level == "tor" and len(g.hosts) >= 2)
    a, b = tor.hosts[:2]
    other_psw = next(g for g in fab.groups.values() if g.level == "tor" and g.parent != tor.parent)
    same_tor = fab.distance(f"{a}/gpu0", f"{b}/gpu0")
    far = fab.distance(f"{a}/gpu0", f"{other_psw.hosts[0]}/gpu0")
    assert same_tor.level == "tor" and far.level == "core"
    assert same_tor.hops < far.hops


def test_lingjun_host_type_override_and_hostmap(tmp_path):
    small = HostType(gpus=4, gpu_model="A100-SXM4-40GB", gpu_memory_gb=40, sockets=2, cores_per_socket=32,
                     memory_gb=512, nvlink_gbps=600, nvswitches=6, pcie_gbps=32, nics=2, nic_gbps=25)
    spec = import_lingjun(LINGJUN, host_type=small, oversubscription=2.0, hostmap_path=tmp_path / "map.csv")
    assert gpu_count(spec) == 847 * 4
    tor = next(g for g in spec.network.groups if g.level == "tor")
    assert tor.uplink_gbps == len(expand(tor.hosts)) * 2 * 25 / 2.0
    written = rows(tmp_path / "map.csv")
    assert len(written) == 847 and written[0] == {"host": "lj0001", "ip": rows(LINGJUN)[0]["ip"]}


def test_lingjun_yaml_round_trip(lingjun):
    spec, _ = lingjun
    again, lines = parse_spec(dump_spec(spec), source="lingjun.yaml")
    check_spec(again, source="lingjun.yaml", locate=lines)
    assert again == spec


@pytest.mark.parametrize("path,kind,hosts", [(OPENB, "openb", 1213), (SPOT, "spot2026", 4278)])
def test_node_lists_keep_every_host_and_gpu(path, kind, hosts):
    data = rows(path)
    gpu_col = "gpu" if kind == "openb" else "gpu_capacity_num"
    spec = import_node_list(path)
    fab = build(spec)
    assert detect_kind(path) == kind
    assert len(fab.hosts) == hosts == len(data)
    assert len(fab.gpus) == sum(int(r[gpu_col]) for r in data)
    model_col = "model" if kind == "openb" else "gpu_model"
    want = Counter()
    for r in data:
        want[r[model_col]] += int(r[gpu_col])
    assert fab.summary()["gpu_models"] == dict(+want)  # models of hosts with GPUs
    assert spec.network is None and fab.levels == []


def test_openb_host_types_carry_cpus_and_memory():
    spec = import_node_list(OPENB)
    fab = build(spec)
    for r in rows(OPENB)[::97]:
        ht = fab.host_type(r["sn"])
        assert ht.gpus == int(r["gpu"]) and ht.gpu_model == r["model"]
        assert ht.sockets * ht.cores_per_socket * ht.threads_per_core == int(r["cpu_milli"]) // 1000
        assert ht.memory_gb == pytest.approx(int(r["memory_mib"]) / 1024)
    distinct = {(r["model"], r["gpu"], r["cpu_milli"], r["memory_mib"]) for r in rows(OPENB)}
    assert len(spec.host_types) == len(distinct)
    assert sum(type_counts(spec).values()) == 1213


def test_spot_names_and_assumed_memory():
    spec = import_node_list(SPOT, memory_gb_per_cpu=2.0)
    fab = build(spec)
    first = rows(SPOT)[0]
    ht = fab.host_type(f"spot{int(first['node_name']):04d}")
    assert ht.cores_per_socket == int(first["cpu_num"]) and ht.memory_gb == 2.0 * int(first["cpu_num"])
    a100 = next(t for t in spec.host_types.values() if t.gpu_model == "A100-SXM4-80GB")
    h800 = next(t for t in spec.host_types.values() if t.gpu_model == "H800")
    assert a100.nvlink_gbps == 600 and a100.nvswitches == 6   # SXM in the name, 8 GPUs: HGX board
    assert h800.nvlink_gbps == 0                              # form factor not stated: no NVLink assumed


def test_node_list_flat_leaves_option():
    spec = import_node_list(OPENB, hosts_per_leaf=32, nic_gbps=12.5)
    fab = build(spec)
    leaves = [g for g in fab.groups.values() if g.level == "leaf"]
    assert len(leaves) == -(-1213 // 32)
    assert all(len(g.hosts) <= 32 for g in leaves) and sum(len(g.hosts) for g in leaves) == 1213
    assert all(fab.host_type(h).nics == 1 and fab.host_type(h).nic_gbps == 12.5 for h in fab.hosts[::50])
    # consecutive file rows share a leaf
    assert fab.domains("openb-node-0000")[-2][1] == fab.domains("openb-node-0031")[-2][1]


def test_import_csv_dispatches_on_the_header():
    assert gpu_count(import_csv(LINGJUN)) == 847 * 8
    assert import_csv(OPENB).name == "alibaba-openb-2023"
    assert import_csv(SPOT, kind="spot2026").name == "alibaba-spot-2026"


def test_bad_inputs_name_file_line_and_fix(tmp_path):
    with pytest.raises(NotFoundError):
        import_lingjun(tmp_path / "nope.csv")
    bad_header = tmp_path / "h.csv"
    bad_header.write_text("ip,DSW,PSW\n1,a,b\n")
    with pytest.raises(ConfigError, match=r"h\.csv:1: header .* is not a lingjun file") as exc:
        import_lingjun(bad_header)
    assert ",".join(HEADERS["lingjun"]) in exc.value.hint
    with pytest.raises(ConfigError, match="unknown CSV header"):
        import_csv(bad_header)
    bad_value = tmp_path / "v.csv"
    bad_value.write_text("sn,cpu_milli,memory_mib,gpu,model\nn1,64000,1024,2,T4\nn2,64000,1024,two,T4\n")
    with pytest.raises(ConfigError, match=r"v\.csv:3: column 'gpu' must be an integer, got 'two'"):
        import_node_list(bad_value)
    huge = tmp_path / "huge.csv"  # an integer no host type accepts: the row is named, no pydantic dump
    huge.write_text("sn,cpu_milli,memory_mib,gpu,model\nn1,64000,1024,100000,T4\n")
    with pytest.raises(ConfigError, match=r"huge\.csv:2: host 'n1': gpus .*1024 \(got 100000\)"):
        import_node_list(huge)
    dup = tmp_path / "d.csv"
    dup.write_text("ip,DSW,PSW,ASW\nx,G1,P1,S1\nx,G1,P1,S2\n")
    with pytest.raises(ConfigError, match=r"d\.csv:3: host .* already listed at line 2"):
        import_lingjun(dup)
    not_tree = tmp_path / "t.csv"
    not_tree.write_text("ip,DSW,PSW,ASW\nx,G1,P1,S1\ny,G2,P1,S2\n")
    with pytest.raises(ConfigError, match="PSW P1 is under DSW G1 and G2"):
        import_lingjun(not_tree)
    with pytest.raises(ConfigError, match="hosts_per_leaf"):
        import_node_list(OPENB, hosts_per_leaf=0)


def test_several_core_switches_get_a_root(tmp_path):
    path = tmp_path / "two.csv"
    path.write_text("ip,DSW,PSW,ASW\na,G1,P1,S1\nb,G1,P1,S1\nc,G2,P2,S1\n")
    fab = build(import_lingjun(path))
    assert fab.levels == ["tor", "aggregation", "core", "root"]
    assert fab.distance("lj0001/gpu0", "lj0003/gpu0").level == "root"


@pytest.mark.parametrize("asw, shown", [("S 14", "'S 14'"), ("S#14", "'S#14'"), ("S=1", "'S=1'"),
                                         ("Sé", "'Sé'")])
def test_a_lingjun_switch_name_no_config_file_can_hold_is_named_by_its_line(tmp_path, capsys, asw, shown):
    """It was a pydantic ValidationError traceback (the name became a group name of the spec)."""
    from fabric_hpc.cli.main import main

    path = tmp_path / "lj.csv"
    path.write_text(f"ip,DSW,PSW,ASW\naa,G6,P10,S1\nbb,G6,P10,{asw}\n")
    assert main(["topology", "import", str(path), "-o", str(tmp_path / "x.yaml")]) == 3
    err = capsys.readouterr().err
    assert f"lj.csv:3: ASW switch name {shown} is not a valid switch name" in err
    assert "fix: rename that switch in column ASW" in err and "Traceback" not in err
    assert not (tmp_path / "x.yaml").exists()


def test_lingjun_switches_differing_only_in_case_are_refused_with_both_lines(tmp_path):
    path = tmp_path / "lj.csv"
    path.write_text("ip,DSW,PSW,ASW\naa,G6,P10,S1\nbb,G6,p10,S2\n")
    with pytest.raises(ConfigError, match=r"lj\.csv:3: PSW switch 'p10' differs from 'P10' \(line 2\) only in case"):
        import_lingjun(path)
    path.write_text("ip,DSW,PSW,ASW\naa,G6,P10,S1\nbb,G6,P11,s1\n")  # the same ASW name under two PSWs: fine
    assert len(build(import_lingjun(path)).hosts) == 2


def test_an_importer_value_the_schema_refuses_is_a_config_error_not_a_pydantic_dump(tmp_path):
    path = tmp_path / "lj.csv"
    path.write_text("ip,DSW,PSW,ASW\naa,G6,P10,S1\n")
    with pytest.raises(ConfigError, match=r"lj\.csv: name: String should have at least 1 character") as exc:
        import_lingjun(path, name="")
    assert "ValidationError" not in str(exc.value) and exc.value.hint
