from __future__ import annotations

import json

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.hostlist import compress
from fabric_hpc.placement import ClusterState, PlacementInfeasible, place
from fabric_hpc.topology import build, generators, save_spec


def test_within_failure_names_largest_block_and_blocking_jobs():
    fab = build(generators.nvl72(racks=3))
    state = ClusterState(fab)
    for r in ("r001", "r002", "r003"):
        state.allocate(f"job-{r}", [g for h in fab.hosts if h.startswith(r) for g in fab.host_gpus(h)][:24])
    state.release("job-r002")
    for i in range(1, 4):
        state.allocate(f"small-{i}", [f"r002-h0{i}/gpu0"])
    for solver in ("cpsat", "greedy", "slurm-tree", "slurm-block"):
        with pytest.raises(PlacementInfeasible) as e:
            place(fab, state, "gpus=72,within=rack", solver=solver)
        ex = e.value.explanation
        assert ex["constraint"] == "within" and ex["largest"] == 69 and ex["where"] == "r002"
        assert "largest free block is 69 in r002" in str(e.value) and ex["blocking_jobs"] == 3


def test_capacity_failure_counts_jobs():
    fab = build(generators.leaf_spine(hosts=4, hosts_per_leaf=2, gpus=4))
    state = ClusterState(fab)
    state.allocate("big", [g for h in fab.hosts[:3] for g in fab.host_gpus(h)])
    with pytest.raises(PlacementInfeasible) as e:
        place(fab, state, "gpus=8")
    assert e.value.explanation["constraint"] == "capacity" and e.value.explanation["blocking_jobs"] == 1


def test_a_request_too_big_for_the_fabric_says_what_would_fit():
    fab = build(generators.nvl72(racks=1))  # 18 hosts x 4 GPUs
    state = ClusterState(fab)
    cases = {"gpus=100": "ask for at most 72 GPUs", "nodes=19,gpus=4": "ask for at most 18 nodes with 4 GPUs each",
             # a filter that matches nothing: the hint names what the fabric has
             "gpus=8,model=h100": "GPU models here: GB200; features: gb200, ib, nvl72",
             # no host has that many GPUs: the per-node size is what to change
             "nodes=2,gpus=5": "ask for at most 4 GPUs per node"}
    for request, hint in cases.items():
        with pytest.raises(PlacementInfeasible) as e:
            place(fab, state, request, solver="greedy")
        assert e.value.explanation["constraint"] == "eligibility" and hint in e.value.hint, request
    with pytest.raises(PlacementInfeasible) as e:  # a fabric without GPUs (e.g. discovered on a CPU host)
        empty = build(generators.leaf_spine(hosts=4, gpus=0))
        place(empty, ClusterState(empty), "gpus=1")
    assert "hosts have GPUs" in e.value.hint


@pytest.mark.parametrize("solver", ["cpsat", "greedy", "slurm-tree", "slurm-block"])
def test_whole_hosts_that_cannot_make_up_the_request_are_explained(solver):
    """Hosts are given whole: a total that no set of hosts makes up, or a per-node count no host
    has, can never fit (it was a 'breaks hard constraints' error, or 'wait for jobs to end' on an
    empty cluster)."""
    fab = build(generators.leaf_spine(hosts=4, hosts_per_leaf=2, gpus=8))
    for request, hint in (("gpus=12,whole_hosts", "a multiple of 8"),
                          ("nodes=2,gpus=4,whole_hosts", "drop gpus_per_node")):
        with pytest.raises(PlacementInfeasible) as e:
            place(fab, ClusterState(fab), request, solver=solver)
        assert e.value.explanation["constraint"] == "whole_hosts" and hint in e.value.hint, request
    assert len(place(fab, ClusterState(fab), "gpus=16,whole_hosts", solver=solver).gpus) == 16


@pytest.fixture()
def files(tmp_path):
    topo = tmp_path / "pod.yaml"
    save_spec(generators.superpod(sus=2, hosts_per_su=4), topo)
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"version": 1, "jobs": {"j": {"hosts": "su01-h[01-02]"}}, "down": []}))
    return str(topo), str(state)


def test_cli_json_and_commit(files, capsys):
    topo, state = files
    assert main(["place", "-t", topo, "-s", state, "-r", "nodes=2,gpus=8,within=leaf", "--json",
                 "--commit", "job-new"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["solver"] == "cpsat" and len(out["gpus"]) == 16 and out["domains"]["leaf"] == 1
    assert set(out["breakdown"]) >= {"comm_ms", "span", "frag", "pristine"}
    saved = json.loads(open(state).read())
    # whole hosts are written as the admin writes them: one host list (before, 16 GPU ids each)
    assert saved["jobs"]["j"] == {"hosts": "su01-h[01-02]"}
    assert saved["jobs"]["job-new"] == {"hosts": compress(out["hosts"])}
    # committing again under the same id would give one job two placements: refused, file unchanged
    before = open(state).read()
    assert main(["place", "-t", topo, "-s", state, "-r", "nodes=2,gpus=8", "--commit", "job-new"]) == 3
    assert "already holds 16 GPUs" in capsys.readouterr().err and open(state).read() == before


def test_cli_table_infeasible_and_bad_request(files, capsys):
    topo, state = files
    assert main(["place", "-t", topo, "-s", state, "-r", "nodes=3,gpus=8", "--solver", "slurm-tree"]) == 0
    assert "slurm-tree: 24 GPUs on 3 host(s)" in capsys.readouterr().out
    assert main(["place", "-t", topo, "-s", state, "-r", "nodes=5,gpus=8,within=leaf", "--json"]) == 4
    captured = capsys.readouterr()
    assert json.loads(captured.out)["explanation"]["constraint"] == "within"
    assert json.loads(captured.out)["explanation"]["never"] is True  # a leaf has 4 hosts: never, not "wait"
    assert "cannot ever fit this fabric, even with every GPU free" in captured.err
    assert "largest free block is 4 in su01-leaf" in captured.err and "relax within" in captured.err
    assert main(["place", "-t", topo, "-r", "nodes=3,gpu=8"]) == 3
    assert "unknown key 'gpu'" in capsys.readouterr().err


def test_cli_takes_generator_reference(capsys):
    assert main(["place", "-t", "superpod:sus=2", "-r", "nodes=2,gpus=8,within=leaf", "--json"]) == 0
    placed = json.loads(capsys.readouterr().out)
    assert len(placed["hosts"]) == 2 and placed["domains"]["leaf"] == 1
    assert main(["place", "-t", "superpod:sus=0", "-r", "nodes=2,gpus=8"]) == 3


def test_never_fits_tells_permanent_from_waiting():
    """A failure on an idle fabric is "never" (relax the constraint), a failure only on a busy state
    is "wait"; the answer is remembered per fabric and request."""
    from fabric_hpc.placement import ClusterState, PlacementInfeasible, Request, place
    from fabric_hpc.placement.explain import never_fits
    from fabric_hpc.topology import open_fabric

    fab = open_fabric("superpod:sus=1")
    numa = Request(nodes=2, gpus_per_node=8, numa_local=True)
    found = never_fits(fab, numa)
    assert found is not None and found.explanation["never"] and "relax numa_local" in found.hint
    assert never_fits(fab, numa) is found
    every_host = Request(nodes=len(fab.hosts), gpus_per_node=8)
    assert never_fits(fab, every_host) is None
    busy = ClusterState(fab)
    busy.allocate("other", fab.host_gpus(list(fab.hosts)[0]))
    with pytest.raises(PlacementInfeasible) as waiting:
        place(fab, busy, every_host, solver="greedy")
    assert not waiting.value.explanation.get("never") and "wait" in waiting.value.hint
    with pytest.raises(PlacementInfeasible, match="cannot ever fit this fabric, even with every GPU free"):
        place(fab, busy, numa, solver="greedy")


def test_place_takes_mappings_and_refuses_misuse_with_config_errors():
    from fabric_hpc.errors import ConfigError
    from fabric_hpc.topology import open_fabric

    fab = open_fabric("superpod:sus=1")
    st = ClusterState(fab)
    placed = place(fab, st, {"nodes": 2, "gpus_per_node": 8}, solver="greedy", options={"time_limit_s": 0.5},
                   weights={})
    assert len(placed.hosts) == 2
    for kwargs, needle in [({"options": {"workers": 0}}, "workers must be a whole number"),
                           ({"options": {"time_limit_s": float("nan")}}, "time_limit_s must be a finite number"),
                           ({"options": {"bogus": 1}}, "unknown solver option"),
                           ({"weights": {"span": -5}}, "span"),
                           ({"options": [1]}, "options must be a mapping")]:
        with pytest.raises(ConfigError, match=needle):
            place(fab, st, "nodes=2,gpus=8", solver="greedy", **kwargs)
    with pytest.raises(ConfigError, match="the cluster state is of fabric"):
        place(fab, ClusterState(open_fabric("superpod:sus=2")), "nodes=2,gpus=8", solver="greedy")


def test_switches_counts_the_lowest_switches_of_any_fabric():
    """``switches=K`` (max_domains at the default level "leaf") works on a fat-tree, whose lowest
    switch level is called "edge": Slurm's --switches counts the lowest switches."""
    from fabric_hpc.topology import open_fabric

    fab = open_fabric("fat-tree:k=4")
    placed = place(fab, ClusterState(fab), "nodes=2,gpus=4,switches=1", solver="greedy")
    assert placed.domains["edge"] == 1


def test_parallel_commits_never_share_a_gpu(tmp_path):
    """Eight `fabric place --commit` processes on one state file: eight jobs, disjoint GPUs."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    state = tmp_path / "state.json"
    state.write_text('{"version": 1, "jobs": {}}')
    procs = [subprocess.Popen([sys.executable, "-m", "fabric_hpc.cli", "place", "-t", "leaf-spine:hosts=4",
                               "-s", str(state), "-r", "gpus=1", "--commit", f"job{i}", "--json"],
                              cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(8)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [o[1][-300:] for o in outs]
    saved = json.loads(state.read_text())["jobs"]
    assert sorted(saved) == [f"job{i}" for i in range(8)]
    gpus = [g for j in saved.values() for g in j["gpus"]]
    assert len(set(gpus)) == 8


def test_commit_mistakes_change_nothing(files, tmp_path, capsys):
    topo, state = files
    before = open(state).read()
    assert main(["place", "-t", topo, "-s", state, "-r", "gpus=1", "--commit", ""]) == 3
    assert "job id must be non-empty" in capsys.readouterr().err and open(state).read() == before
    dup = tmp_path / "dup.json"  # a job id twice: JSON would keep the last one and free the first's GPUs
    dup.write_text('{"version": 1, "jobs": {"j1": {"gpus": ["h01/gpu0"]}, "j1": {"gpus": ["h01/gpu1"]}}}')
    assert main(["place", "-t", topo, "-s", str(dup), "-r", "gpus=1", "--commit", "j3"]) == 3
    assert "key 'j1' appears twice" in capsys.readouterr().err
    odd = tmp_path / "odd.json"
    odd.write_text('{"version": true, "jobs": {}}')
    assert main(["place", "-t", topo, "-s", str(odd), "-r", "gpus=1"]) == 3
    capsys.readouterr()


def test_commit_through_a_symlink_writes_its_target(files, tmp_path, capsys):
    topo, state = files
    link = tmp_path / "link.json"
    link.symlink_to(state)
    assert main(["place", "-t", topo, "-s", str(link), "-r", "gpus=1", "--commit", "j7"]) == 0
    assert link.is_symlink() and "j7" in json.loads(open(state).read())["jobs"]


def test_blocking_jobs_is_a_lower_bound_on_partly_used_hosts():
    """Two hosts each lack 2 GPUs for nodes=3,gpus=8: ending j1, j2 and big (3 jobs) is enough, so
    "at least N" must not say more (it said 5: a whole host's 8 GPUs per missing host)."""
    fab = build(generators.leaf_spine(hosts=4, hosts_per_leaf=2, gpus=8))
    state = ClusterState(fab)
    for job, gpus in (("j1", ["n1/gpu0"]), ("j2", ["n2/gpu0"]), ("j3", ["n3/gpu0"]), ("j4", ["n3/gpu1"]),
                      ("big", ["n1/gpu1", "n2/gpu1", "n3/gpu2"])):
        state.allocate(job, gpus)
    with pytest.raises(PlacementInfeasible) as e:
        place(fab, state, "nodes=3,gpus=8", solver="greedy")
    assert 1 <= e.value.explanation["blocking_jobs"] <= 3


def test_capacity_short_because_gpus_are_down_says_so():
    fab = build(generators.leaf_spine(hosts=4, hosts_per_leaf=2, gpus=8))
    state = ClusterState(fab)
    state.set_down(["n1"])
    with pytest.raises(PlacementInfeasible) as e:
        place(fab, state, "gpus=32", solver="greedy")
    assert "8 GPU(s) are down" in e.value.message and "wait for jobs" not in e.value.hint
    assert e.value.hint.startswith("bring back the 8 GPU(s) that are down") and e.value.explanation["down_gpus"] == 8


def _nvl72_busy(tmp_path):
    state = tmp_path / "s2.json"
    state.write_text(json.dumps({"version": 1, "jobs": {"a": {"gpus": ["r001-h01/gpu0"]},
                                                        "b": {"gpus": ["r002-h05/gpu3", "r002-h06/gpu0"]}}}))
    return str(state)


@pytest.mark.parametrize("solver", ["cpsat", "greedy", "slurm-tree", "slurm-block"])
def test_tp_groups_that_do_not_fit_now_name_the_block_and_the_jobs(tmp_path, capsys, solver):
    """tp=72 on two NVL72 racks each with a job on it said "needs 1 tensor-parallel groups ...; only
    0 such are free" and no hint, where within=nvlink names the largest free block, its domain, the
    jobs there and a hint: tp says as much (and in the singular)."""
    state = _nvl72_busy(tmp_path)
    assert main(["place", "-t", "nvl72:racks=2", "-s", state, "-r", "gpus=72,tp=72", "--json",
                 "--solver", solver]) == 4
    out = json.loads(capsys.readouterr().out)
    assert out["error"] == ("needs 1 tensor-parallel group of 72 GPUs in one NVLink domain; the largest free "
                            "block is 71 in r001; at least 1 job(s) there would have to end first (the largest "
                            "there: a)")
    assert out["hint"] == "wait, or use a smaller tp"
    ex = out["explanation"]
    assert (ex["where"], ex["free_block"], ex["blocking_jobs"], ex["level"]) == ("r001", 71, 1, "nvlink")
    assert "never" not in ex


def test_many_tp_groups_say_how_many_fit_and_where_one_more_is_nearest(tmp_path):
    from fabric_hpc.topology import open_fabric

    fab = open_fabric("nvl72:racks=2")
    state = ClusterState.load(fab, _nvl72_busy(tmp_path))
    with pytest.raises(PlacementInfeasible) as e:  # 71 and 70 free: 8 + 8 groups of 8, 17 needed
        place(fab, state, "gpus=136,tp=8", solver="greedy")
    assert str(e.value).startswith("needs 17 tensor-parallel groups of 8 GPUs, each in one NVLink domain; only 16 "
                                   "fit now (the largest free block is 71 in r001); at least 1 job(s) in r001 "
                                   "would have to end for one more")
    pod = build(generators.superpod(sus=3, hosts_per_su=4))
    busy = ClusterState(pod)
    busy.allocate("a", ["su01-h01/gpu0"])
    busy.allocate("b", ["su02-h01/gpu0", "su02-h02/gpu0"])
    with pytest.raises(PlacementInfeasible) as e:
        place(pod, busy, "gpus=64,slices=2,slice_level=leaf", solver="greedy")
    assert e.value.message == ("needs 2 slices of 32 GPUs, each in one leaf group; only 1 fit now (the largest free "
                            "block is 32 in su03-leaf); at least 1 job(s) in su01-leaf would have to end for one more"
                               " (the largest there: a)")
    assert e.value.hint == "wait, or relax slices"


@pytest.mark.parametrize("solver", ["cpsat", "greedy"])
def test_tp_with_numa_local_blames_the_numa_node_not_the_groups(solver):
    """gpus=16,tp=8,numa_local on a DGX blamed the tp groups on an empty cluster: the cause is that
    one NUMA node holds 4 of a host's 8 GPUs, and a group of 8 must sit in one host."""
    fab = build(generators.superpod(sus=1, hosts_per_su=4))
    with pytest.raises(PlacementInfeasible) as e:
        place(fab, ClusterState(fab), "gpus=16,tp=8,numa_local", solver=solver)
    assert str(e.value).startswith("numa_local: each host gives only the GPUs of one NUMA node (at most 4 here); "
                                   "a tensor-parallel group needs 8 GPUs in one NVLink domain (a host here), "
                                   "and one holds at most 4")
    assert "cannot ever fit" in str(e.value) and e.value.hint == "drop numa_local, or use a tp of at most 4 GPUs"
    assert e.value.explanation["constraint"] == "numa_local" and e.value.explanation["never"] is True
    assert len(place(fab, ClusterState(fab), "gpus=16,tp=4,numa_local", solver=solver).gpus) == 16


def test_cli_shows_the_pipeline_stages(capsys):
    """``pp=P``: the table and the JSON name each stage's GPUs in ring order (one host each here),
    the sends' own time (``stage_sends_ms``) and the cost's parts: ``comm_ms`` is ``comm_dp +
    comm_tp + comm_pp``, the sends weighed by their share of a step in the data-parallel
    all-reduce's milliseconds (docs/placement.md)."""
    from fabric_hpc.placement.cost import step_reference
    from fabric_hpc.topology import open_fabric

    assert main(["place", "-t", "superpod:sus=1", "-r", "gpus=20,pp=4", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    stages = doc["pipeline_stages"]
    assert [len(s) for s in stages] == [5, 5, 5, 5]
    assert doc["stage_sends_ms"] > 0  # each boundary crosses hosts: through the NICs
    assert [len({g.split("/")[0] for g in s}) for s in stages] == [1, 1, 1, 1]
    bd = doc["breakdown"]
    assert bd["comm_ms"] == pytest.approx(bd["comm_dp"] + bd["comm_tp"] + bd["comm_pp"], abs=1e-9)
    assert bd["comm_tp"] == 0 and bd["comm_pp"] > bd["comm_dp"] > 0
    ref = step_reference(open_fabric("superpod:sus=1"), 20, 1, 4, 256.0)
    want = ref.unit_ms * ref.s_pp * doc["stage_sends_ms"] / (1e3 * ref.send_s)
    assert bd["comm_pp"] == pytest.approx(want, abs=2e-3)
    assert main(["place", "-t", "superpod:sus=1", "-r", "gpus=20,pp=4"]) == 0
    out = capsys.readouterr().out
    assert out.count("pipeline stage ") == 4 and "(5 GPUs)" in out and "stage-to-stage sends: " in out
    assert "in the cost as comm_pp" in out and all(k in out for k in ("comm_dp", "comm_tp", "comm_pp"))
    assert main(["place", "-t", "superpod:sus=1", "-r", "gpus=20", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert not {"pipeline_stages", "stage_sends_ms"} & set(doc)
    assert not {"comm_dp", "comm_tp", "comm_pp"} & set(doc["breakdown"])
