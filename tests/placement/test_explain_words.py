"""Explanations that say what is true, and errors that say how to fix them (a new-user probe)."""

from __future__ import annotations

import json

import pytest

from fabric_hpc.placement import ClusterState, PlacementInfeasible, place
from fabric_hpc.topology import build, generators


@pytest.fixture(scope="module")
def su():
    """One SuperPOD SU: 32 DGX hosts of 8 GPUs."""
    return build(generators.superpod(sus=1))


def _one_small_job_per_host(fab, hosts) -> ClusterState:
    state = ClusterState(fab)
    for i, h in enumerate(hosts):
        state.allocate(f"j{i}", [fab.host_gpus(h)[0]])
    return state


@pytest.mark.parametrize("solver", ["cpsat", "greedy", "slurm-tree", "slurm-block"])
def test_whole_hosts_short_counts_entirely_free_hosts_and_the_jobs_that_free_one(su, solver):
    """Hosts 2-32 each run one 1-GPU job: 225 GPUs are free but only host 1's 8 are on an entirely
    free host, and ending one job frees another (it said "only 8 are free; at least 8 running
    job(s) would have to end")."""
    state = _one_small_job_per_host(su, su.hosts[1:])
    with pytest.raises(PlacementInfeasible) as e:
        place(su, state, "gpus=16,whole_hosts", solver=solver)
    ex, text = e.value.explanation, str(e.value)
    assert ex["constraint"] == "capacity" and ex["largest"] == 8 and ex["blocking_jobs"] == 1
    assert "only 8 GPUs are on entirely free hosts (225 are free in all)" in text
    assert "at least 1 running job(s)" in text and ex["unit"] == "GPUs on entirely free hosts"


def test_whole_hosts_within_a_domain_counts_jobs_per_host():
    """The same count inside one domain (``within``): 24 GPUs fit in all (8 + 16 on free hosts),
    the fullest leaf group holds 16, and one job there ends to free one more host."""
    fab = build(generators.superpod(sus=2))
    state = _one_small_job_per_host(fab, fab.hosts[1:32] + fab.hosts[34:])
    with pytest.raises(PlacementInfeasible) as e:
        place(fab, state, "gpus=24,whole_hosts,within=leaf", solver="greedy")
    ex = e.value.explanation
    assert ex["constraint"] == "within" and ex["largest"] == 16 and ex["blocking_jobs"] == 1, str(e.value)


@pytest.mark.parametrize("doc, words, fix", [
    ({"jobs": {"a": {"gpus": ["su01-h01/gpu0"]}, "b": {"gpus": ["su01-h01/gpu0"]}}},
     "jobs.b: job 'b': 1 GPU(s) are not free: su01-h01/gpu0 (a)",
     "remove su01-h01/gpu0 from jobs.b or from jobs.a"),
    ({"jobs": {"a": {"gpus": ["su01-h99/gpu0"]}}}, "jobs.a: no GPU 'su01-h99/gpu0'",
     "hosts here: su01-h01 .. su01-h32"),
    ({"jobs": [{"gpus": ["su01-h01/gpu0"]}]}, "'jobs' must map job ids", '"jobs": {"job-17": {"gpus": ['),
    ({"jobs": {"": {"gpus": ["su01-h01/gpu0"]}}}, "a job id must be a non-empty string", 'e.g. "job-42"'),
    ({"jobs": {"a": {"gpus": ["su01-h01/gpu0"], "hosts": "su01-h02"}}}, "give exactly one of 'gpus'",
     '"a": {"gpus": ['),
    ({"jobs": {"a": {"gpus": ["su01-h01/gpu0"]}}, "down": ["su01-h01"]}, "su01-h01/gpu0 (down)",
     "remove su01-h01/gpu0 from jobs.a or from 'down'"),
    ({"down": "su01-h01"}, "down: 'down' must be a list of host names, host lists or GPU ids, not a string",
     '"down": ["su02-h07"'),
    ({"down": ["su01-h01", 3]}, "not a list holding number 3", '"down": ['),
])
def test_state_file_errors_say_how_to_fix_them(su, tmp_path, doc, words, fix):
    from fabric_hpc.errors import ConfigError

    path = tmp_path / "st.json"
    path.write_text(json.dumps({"version": 1, **doc}))
    with pytest.raises(ConfigError) as e:
        ClusterState.load(su, path)
    assert e.value.message.startswith(f"{path}: ") and e.value.message.count(str(path)) == 1
    assert words in e.value.message and e.value.hint and fix in e.value.hint


@pytest.mark.parametrize("request_text, words, fix", [
    ("gpus=8,include=nohost", "request names host 'nohost'",
     "su01-h[01-04] (32 hosts: su01-h01 .. su01-h32)"),
    ("gpus=8,exclude=su09-h01", "request names host 'su09-h01'", "host lists of this fabric"),
])
def test_unknown_hosts_in_a_request_name_the_fabrics_hosts(su, request_text, words, fix):
    from fabric_hpc.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        place(su, ClusterState(su), request_text, solver="greedy")
    assert words in e.value.message and fix in e.value.hint


@pytest.mark.parametrize("text, words", [
    ("gpus=16,tp=3", "(use tp = 2, 4, 8 or 16; or 18 GPUs for tp=3)"),
    ("gpus=18,tp=3,pp=4", "(use pp = 2, 3 or 6; or 24 GPUs for pp=4)"),
    ("gpus=7,tp=2", "(use tp = 7; or 8 GPUs for tp=2)"),
])
def test_split_suggestions_keep_values_and_gpu_counts_apart(text, words):
    """It said "use tp = 2, 4, 8, 16, or 18 GPUs": a list of tp values ending in a GPU count."""
    from fabric_hpc.errors import ConfigError
    from fabric_hpc.placement import parse_request

    with pytest.raises(ConfigError) as e:
        parse_request(text)
    assert words in e.value.message


def test_features_read_as_written(su):
    """``describe()`` leaked a Python tuple: ``features=('foo',)``."""
    with pytest.raises(PlacementInfeasible) as e:
        place(su, ClusterState(su), "gpus=8,features=foo&bar", solver="greedy")
    assert "(features=foo&bar)" in e.value.message and "('" not in e.value.message


@pytest.mark.parametrize("text, needed, unit, held", [
    ("gpus=16,tp=8,numa_local", 2, "tensor-parallel groups of 8 GPUs", "and one holds at most 4 GPUs"),
    ("nodes=2,gpus=8,tp=16", 1, "tensor-parallel groups of 2 hosts with 8 free GPUs",
     "and one holds at most 1 such host"),
    ("gpus=16,slices=2,slice_level=host,numa_local", 2, "slices of 8 GPUs", "and one holds at most 4 GPUs"),
])
def test_group_failures_count_groups_in_their_unit(su, text, needed, unit, held):
    """``needed: 2, unit: "GPUs"`` meant two groups; "one holds at most 1" did not say of what."""
    with pytest.raises(PlacementInfeasible) as e:
        place(su, ClusterState(su), text, solver="greedy")
    ex = e.value.explanation
    assert ex["unit"] == unit and ex["needed"] == needed and held in e.value.message


def test_a_permanent_failure_suggests_relaxing_what_binds(su):
    """``within=rack,tp=72`` for 144 GPUs on NVL72 racks: the rack is too small, tp=72 fits a rack;
    it said "relax within, tp"."""
    fab = build(generators.nvl72(racks=2))
    with pytest.raises(PlacementInfeasible) as e:
        place(fab, ClusterState(fab), "gpus=144,within=rack,tp=72", solver="greedy")
    assert e.value.explanation["constraint"] == "within"
    assert e.value.hint == "relax within (docs/placement.md)"
    with pytest.raises(PlacementInfeasible) as e:  # several set, none named: all of them, as before
        place(su, ClusterState(su), "nodes=2,gpus=8,numa_local", solver="greedy")
    assert e.value.hint == "relax numa_local (docs/placement.md)"


def test_cli_fix_lines_name_real_files_and_ids(capsys):
    from pathlib import Path

    from fabric_hpc.cli.main import main

    assert main(["place", "-r", "gpus=8"]) == 3
    err = capsys.readouterr().err
    named = err.split("fabric place -t ")[1].split()[0]  # once it named topology/superpod.yaml
    from fabric_hpc.topology.shipped import shipped_fabrics  # now a fabric the wheel ships, by name

    assert named in shipped_fabrics()
    assert Path(__file__).parents[2].joinpath("topology", named + ".yaml").is_file()
    assert main(["place", "-t", "superpod:sus=1", "-r", "gpus=8", "--commit", ""]) == 3
    assert "fix: name the job the placement is for, e.g. --commit job-42" in capsys.readouterr().err
