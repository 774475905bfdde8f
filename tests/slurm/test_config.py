"""The test cluster's configuration text, without daemons (runs everywhere)."""

from __future__ import annotations

import os

import pytest

from fabric_hpc.errors import ConfigError, ExternalError
from fabric_hpc.testing import NodeSpec, SlurmTestCluster, check_prerequisites, parse_key_values
from fabric_hpc.testing import tree_topology_conf
from fabric_hpc.testing._slurm_config import free_ports, gres_device_files, node_line


def test_node_spec_round_trips_exporter_fields():
    fields = {"CPUs": "8", "Sockets": "2", "CoresPerSocket": "4", "ThreadsPerCore": "1",
              "RealMemory": "16384", "Gres": "gpu:h100:8", "Features": "h100,nvl", "Weight": "5"}
    spec = NodeSpec.from_fields("n3", fields)
    assert (spec.cpus, spec.gpus, spec.gpu_type, spec.sockets) == (8, 8, "h100", 2)
    assert spec.features == ("h100", "nvl") and spec.extra == {"Weight": "5"}
    assert spec.fields() == fields


def test_node_line_owns_address_and_port():
    line = node_line(NodeSpec("n1", cpus=4, gpus=2), hostname="box", port=20001)
    fields = parse_key_values(line)
    assert fields["NodeName"] == "n1" and fields["NodeAddr"] == "127.0.0.1" and fields["Port"] == "20001"
    assert fields["NodeHostname"] == "box" and fields["Gres"] == "gpu:2" and fields["State"] == "UNKNOWN"
    with pytest.raises(ConfigError, match="set by the test cluster"):
        NodeSpec("n1", extra={"Port": "1"})


@pytest.mark.parametrize("bad", [{"name": "1bad"}, {"name": "n1", "cpus": 0}, {"name": "n1", "gpus": -1}])
def test_node_spec_rejects_impossible_values(bad):
    with pytest.raises(ConfigError):
        NodeSpec(**bad)


def test_gres_device_files_expand_ranges():
    text = "AutoDetect=off\nNodeName=n[1-2] Name=gpu File=/d/nvidia[0-2] Cores=0-3\n" \
           "NodeName=n3 Name=gpu File=/d/nvidia1  # again\n"
    assert [str(p) for p in gres_device_files(text)] == ["/d/nvidia0", "/d/nvidia1", "/d/nvidia2"]


def test_tree_topology_conf_groups_nodes_under_leaves():
    text = tree_topology_conf([f"n{i}" for i in range(1, 6)], 2)
    assert text.splitlines() == ["SwitchName=leaf1 Nodes=n1,n2", "SwitchName=leaf2 Nodes=n3,n4",
                                 "SwitchName=leaf3 Nodes=n5", "SwitchName=spine Switches=leaf1,leaf2,leaf3"]


def test_parse_key_values_keeps_spaces_and_nested_equals():
    line = "JobId=7 JobName=wrap JobState=RUNNING Reason=None TRES=cpu=2,node=2 Command=/bin/sh -c x"
    fields = parse_key_values(line)
    assert fields["TRES"] == "cpu=2,node=2" and fields["Command"] == "/bin/sh -c x"
    assert fields["JobState"] == "RUNNING"


def test_free_ports_are_distinct_and_below_ephemeral_range():
    ports = free_ports(20)
    assert len(set(ports)) == 20 and all(20000 <= p < 32768 for p in ports)


def test_cluster_rejects_duplicate_nodes_and_unknown_devices(tmp_path):
    with pytest.raises(ConfigError, match="duplicate"):
        SlurmTestCluster([NodeSpec("n1"), NodeSpec("n1")], base_dir=tmp_path)
    gres = "NodeName=n1 Name=gpu File=/nonexistent/nvidia0\n"
    cluster = SlurmTestCluster(1, base_dir=tmp_path, gres_conf=gres)
    with pytest.raises(ConfigError, match="/nonexistent/nvidia0"):
        cluster.write_config()
    cluster.stop()


def test_slurm_conf_text(tmp_path):
    cluster = SlurmTestCluster(2, base_dir=tmp_path, settings={"SelectTypeParameters": "CR_Core_Memory"},
                               extra_conf="JobCompLoc={log_dir}/jobcomp.txt",
                               config_files={"prolog.sh": "#!/bin/sh\nexit 0\n"})
    if os.geteuid() != 0:
        pytest.skip("write_config makes device nodes with mknod (root)")
    text = cluster.write_config().read_text()
    cluster.stop()
    lines = text.splitlines()
    assert "SelectTypeParameters=CR_Core_Memory" in lines and "SelectTypeParameters=CR_Core" not in lines
    assert f"JobCompLoc={cluster.log_dir}/jobcomp.txt" in lines
    assert f"SlurmctldPort={cluster.ctld_port}" in lines
    assert sum(line.startswith("NodeName=") for line in lines) == 2
    assert os.access(cluster.etc_dir / "prolog.sh", os.X_OK)
    assert (cluster.device_dir / "nvidia7").is_char_device()
    assert os.major((cluster.device_dir / "nvidia7").stat().st_rdev) == 195


def test_missing_binaries_is_an_external_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("shutil.which", lambda *a, **k: None)
    with pytest.raises(ExternalError, match="not installed") as info:
        check_prerequisites()
    assert "slurm-wlm" in (info.value.hint or "")


def test_from_fabric_refuses_a_fabric_too_big_to_emulate():
    from fabric_hpc.topology import build, generators

    with pytest.raises(ConfigError, match="at most 128"):
        SlurmTestCluster.from_fabric(build(generators.superpod(sus=5)))


def test_base_settings_follow_the_slurm_version(tmp_path):
    from fabric_hpc.testing._slurm_config import base_settings

    common = dict(cluster_name="c", hostname="h", ctld_port=1, munge_socket=tmp_path / "s", base_dir=tmp_path,
                  etc_dir=tmp_path, log_dir=tmp_path)
    assert base_settings(**common, topology=False, version=(22, 5, 8))["TopologyPlugin"] == "topology/none"
    assert base_settings(**common, topology=False, version=(25, 11, 7))["TopologyPlugin"] == "topology/flat"
    assert base_settings(**common, topology=True, version=(25, 11, 7))["TopologyPlugin"] == "topology/tree"


def test_a_callers_scheduler_parameters_keep_the_releases_own(tmp_path):
    """test_faults' prompt cluster (``sched_interval=1``) replaced 24.05's and 23.11's ``bf_interval=1``:
    there only backfill starts jobs on these accounting-less clusters, then every 30 s, and a ``sleep 1``
    job was still RUNNING after the test's 30 s (23.11.11, 2026-12-07)."""
    from fabric_hpc.testing._slurm_config import base_settings, merge_settings

    common = dict(cluster_name="c", hostname="h", ctld_port=1, munge_socket=tmp_path / "s", base_dir=tmp_path,
                  etc_dir=tmp_path, log_dir=tmp_path, topology=False)
    for version in ((23, 11, 11), (24, 5, 8)):
        merged = merge_settings(base_settings(**common, version=version),
                                {"SchedulerParameters": "sched_interval=1", "MinJobAge": "5"})
        assert merged["SchedulerParameters"] == "bf_interval=1,sched_interval=1", merged
        assert merged["MinJobAge"] == "5"  # other keys: replaced
    named = merge_settings(base_settings(**common, version=(24, 5, 8)),
                           {"SchedulerParameters": "bf_interval=5"})
    assert named["SchedulerParameters"] == "bf_interval=5"  # an option the caller names: the caller's
    plain = merge_settings(base_settings(**common, version=(25, 11, 7)),
                           {"SchedulerParameters": "sched_interval=1"})
    assert plain["SchedulerParameters"] == "sched_interval=1"


def test_port_clash_names_the_port_slurm_could_not_bind(tmp_path):
    from fabric_hpc.testing._logs import port_clash, set_aside_logs

    (tmp_path / "mariadbd.out").write_text("[ERROR] Can't start server: Bind on TCP/IP port. Got error: 98: "
                                           "Address already in use\n")
    taken = "fatal: Unable to bind listen port (29674): Address already in use"
    bind = "error: Error binding slurm stream socket: Address already in use"
    (tmp_path / "slurmd-n4.log").write_text(f"{bind}\n{taken}\n")
    assert port_clash(tmp_path) == f"slurmd-n4.log: {taken}"
    set_aside_logs(tmp_path, 1)
    assert port_clash(tmp_path) is None
    assert sorted(p.name for p in (tmp_path / "start-1").iterdir()) == ["mariadbd.out", "slurmd-n4.log"]
    (tmp_path / "slurmctld.log").write_text("error: Invalid key NoSuchKey\n")
    assert port_clash(tmp_path) is None


def test_only_the_lines_a_start_added_are_read_for_a_clash(tmp_path):
    from fabric_hpc.testing._logs import log_sizes, port_clash

    log = tmp_path / "slurmd-n1.log"
    log.write_text("fatal: Unable to bind listen port (29674): Address already in use\n")  # an earlier start
    since = log_sizes(tmp_path)
    with log.open("a") as f:
        f.write("fatal: Invalid key NoSuchKey\n")
    assert port_clash(tmp_path, since) is None and port_clash(tmp_path) is not None


def test_a_port_counts_as_the_daemons_only_when_the_daemon_listens_on_it():
    import os
    import socket
    import subprocess
    import sys

    from fabric_hpc.testing._processes import listens

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        # the child holds the inherited socket until it has exec'd (CLOEXEC): read its first line first
        other = subprocess.Popen([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(30)"],
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert other.stdout is not None and other.stdout.readline() == "up\n"
            assert listens(os.getpid(), port) and not listens(other.pid, port)
        finally:
            other.kill()
            other.wait()
