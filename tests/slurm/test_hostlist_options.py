"""Host lists in request options: ``;`` separates items, in ``--comment=fabric:…`` (the documented form)
and in ``fabric place -r``, read by the one request parser; job_submit.lua agrees on what it accepts and
turns ``exclude=`` into the job's own Slurm exclude list, so no path starts the job on an excluded host."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.hostlist import expand
from fabric_hpc.placement.request import parse_request
from fabric_hpc.slurm.contract import Job, Node
from fabric_hpc.slurm.plugins import lua_string, render_job_submit
from fabric_hpc.slurm.view import _request, build_view
from fabric_hpc.topology import build, generators
from tests.real import require_real
from tests.slurm.test_job_submit_lua import LUA, gang, run_cases

EXCLUDED = {"n1", *(f"n{i}" for i in range(9, 16))}


def test_a_semicolon_host_list_in_the_comment_is_one_option():
    """Before: split_options turned ';' into ',' and the parser read 'n1' as a key: the job was handed
    to Slurm without its options ("unknown key 'n1'") and ran on n[9-10], hosts it excluded."""
    req = _request(2, 8, "exclude=n[9-15];n1")
    assert set(expand(req.exclude)) == EXCLUDED
    req = _request(2, 8, "include=n[1-4];n9,within=leaf")
    assert set(expand(req.include)) == {"n1", "n2", "n3", "n4", "n9"} and req.within == "leaf"


def test_the_agent_places_such_a_job_away_from_the_excluded_hosts():
    fab = build(generators.leaf_spine(16, hosts_per_leaf=4, gpus=8, cpus=8))
    nodes = [Node(name=h, state="idle", cpus=8, gpus=8) for h in fab.hosts]
    job = Job(4, "x", "PENDING", comment="fabric:exclude=n[9-15];n1", nodes=2, gpus_per_node=8,
              submit_time=1.0, begin_time=1000.0)
    view = build_view(fab, nodes, [job], now=100.0)
    assert not view.invalid
    (pending,) = view.pending
    assert set(expand(pending.job.request.exclude)) == EXCLUDED


def test_fabric_place_reads_semicolons_between_items():
    """Before: 'gpu[001-010,015];rack[1-2]-n[01-02]' was one item with three brackets, cross-expanded
    into names like 'gpu001;rack1-n01'."""
    req = parse_request("nodes=2,gpus=8,exclude=gpu[001-010,015];rack[1-2]-n[01-02]")
    names = expand(req.exclude)
    assert len(names) == 15 and "gpu015" in names and "rack2-n02" in names
    assert not [n for n in names if ";" in n]


@pytest.mark.parametrize(("value", "why"), [("n1;;n2", "empty item"), (";n1", "empty item"),
                                             ("n[1-", "'[' without ']'"), ("n[3-1]", "backwards")])
def test_a_bad_host_list_is_refused_by_the_parser(value, why):
    with pytest.raises(ConfigError) as exc:
        _request(2, 8, f"exclude={value}")
    assert f"exclude: host list '{value}'" in exc.value.message and why in exc.value.message.replace("runs ", "")


HOSTLISTS = ["exclude=n[9-15];n1", "include=n[1-4];n9", "exclude=n[1;3]", "exclude=n1;;n2", "exclude=;n1",
             "exclude=n[1-", "exclude=n[3-1]", "include=n1;n2;n3,within=leaf", "exclude=a[1-2]b[1-2];c1"]


def test_job_submit_and_the_agent_accept_the_same_host_lists(tmp_path: Path):
    """What the plugin lets through, the agent parses (else it handed the job to Slurm without its
    options); what the agent refuses, the plugin refuses at submit, naming the host list."""
    rows = run_cases(tmp_path, [gang(f"fabric:{o}") for o in HOSTLISTS])
    for opts, (rc, _, said) in zip(HOSTLISTS, rows, strict=True):
        try:
            _request(2, 8, opts)
            agent = None
        except ConfigError as exc:
            agent = exc.message
        assert (rc == "-1") == (agent is not None), (opts, rc, said, agent)
        if agent is not None:
            value = opts.partition("=")[2]
            assert f"host list '{value}'" in said and f"host list '{value}'" in agent, (said, agent)


DRIVER = r"""
slurm = {SUCCESS = 0, ERROR = -1}
function slurm.log_user(fmt, ...) string.format(fmt, ...) end
function slurm.log_info(fmt, ...) string.format(fmt, ...) end
dofile(PLUGIN)
for i, job in ipairs(CASES) do
  local rc = slurm_job_submit(job, {}, 1000)
  io.write(tostring(rc), "\t", tostring(job.exc_nodes), "\n")
end
"""


def test_job_submit_makes_exclude_slurms_own_exclude_list(tmp_path: Path):
    """Whoever starts the job (a hand-over, the deferral running out, the agent down) Slurm itself keeps
    it off the excluded hosts: the plugin adds them to the job's -x."""
    require_real("lua", LUA is not None, "lua5.4 is not installed (Debian: lua5.4)")
    plugin = tmp_path / "job_submit.lua"
    plugin.write_text(render_job_submit(state_dir=str(tmp_path / "agent")))
    cases = ['{min_nodes = 2, tres_per_node = "gres:gpu:8", comment = "fabric:exclude=n[9-15];n1"}',
             '{min_nodes = 2, tres_per_node = "gres:gpu:8", comment = "fabric:exclude=n2", exc_nodes = "n7"}',
             '{min_nodes = 2, tres_per_node = "gres:gpu:8", comment = "fabric:include=n[1-4]"}',
             '{min_nodes = 2, tres_per_node = "gres:gpu:8", comment = "nofabric", exc_nodes = "n7"}']
    script = tmp_path / "driver.lua"
    script.write_text(f"PLUGIN = {lua_string(str(plugin))}\nCASES = {{{', '.join(cases)}}}\n{DRIVER}")
    out = subprocess.run([LUA, str(script)], capture_output=True, timeout=60, check=True).stdout.decode()
    assert out.splitlines() == ["0\tn[9-15],n1", "0\tn7,n2", "0\tnil", "0\tn7"]
