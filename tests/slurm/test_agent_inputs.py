"""What the agent reads besides nodes and jobs: tiers from QOS/partition, usage, last checkpoints."""

from __future__ import annotations

import json
import os
import pwd

import numpy as np
import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.scheduler import UsageLedger
from fabric_hpc.slurm.ckpt_time import job_checkpoint_dir, last_checkpoint_time
from fabric_hpc.slurm.contract import Job, Node
from fabric_hpc.slurm.tiers import TierMap
from fabric_hpc.slurm.usage import AgentUsage
from fabric_hpc.slurm.view import Inputs, build_view
from fabric_hpc.topology import build, generators

ME = pwd.getpwuid(os.getuid()).pw_name  # the agent believes checkpoints of the job's own user only


def test_tier_map_order_and_errors():
    tm = TierMap.parse(["qos:urgent=high", "partition:preempt=spot", "qos:scavenger=spot"])
    assert tm.tier("urgent", "preempt", None) == "high"          # QOS first
    assert tm.tier("", "preempt", "high") == "spot"              # a mapped partition beats the comment
    assert tm.tier("other", "batch", "high") == "high"           # unmapped: the comment's tier=
    assert tm.tier("", "spot", None) == "spot"                   # a partition named like a tier
    assert tm.tier("", "batch", None) == "normal"
    assert tm.entries() == ["partition:preempt=spot", "qos:scavenger=spot", "qos:urgent=high"]
    for bad in ("urgent=high", "qos:urgent", "qos:urgent=gold", "node:a=high"):
        with pytest.raises(ConfigError):
            TierMap.parse([bad])
    with pytest.raises(ConfigError, match="mapped twice"):
        TierMap.parse(["qos:a=high", "qos:a=spot"])


def test_usage_ledger_round_trip():
    led = UsageLedger(3600.0)
    led.advance(0.0, {})
    led.advance(100.0, {"a": 8, "b": 2})
    again = UsageLedger.from_dict(json.loads(json.dumps(led.to_dict())))
    for ledger in (led, again):
        ledger.advance(500.0, {"a": 1})
    assert again.usage() == led.usage() and again.time == 500.0
    with pytest.raises(ConfigError):
        UsageLedger.from_dict({"half_life_s": 1.0, "t": None, "usage": {"a": -1}})
    with pytest.raises(ConfigError):
        UsageLedger.from_dict({"half_life_s": 1.0, "t": None, "usage": {}, "extra": 1})


def test_agent_usage_persists_and_charges_previous_holdings(tmp_path):
    u = AgentUsage(tmp_path, half_life_s=1e9)
    assert u.charge(1000.0, {"a": 8}) == {}                      # first cycle: nothing to charge yet
    usage = u.charge(1010.0, {"a": 8, "b": 16})                  # [1000, 1010) charged with a's 8 GPUs
    assert usage["a"] == pytest.approx(80.0, rel=1e-6) and "b" not in usage
    reborn = AgentUsage(tmp_path, half_life_s=1e9)               # a restart reads usage.json
    usage = reborn.charge(1020.0, {})
    assert usage["a"] == pytest.approx(160.0, rel=1e-6) and usage["b"] == pytest.approx(160.0, rel=1e-6)
    assert not [p for p in os.listdir(tmp_path) if p != "usage.json"]   # no temp file left
    with pytest.raises(ConfigError, match="half-life"):
        AgentUsage(tmp_path, half_life_s=60.0)
    (tmp_path / "usage.json").write_text('{"ledger": 1}')
    assert "usage file" in (AgentUsage(tmp_path).damaged or "")  # moved aside at start (test_usage_damaged)


def _save_ckpt(root, step):
    from fabric_hpc.checkpoint.writer import save

    save(root, {"w": np.zeros(4, dtype=np.float32)}, step=step)


def test_last_checkpoint_time_from_the_latest_manifest(tmp_path):
    d = job_checkpoint_dir(tmp_path, ME, "train")
    d.mkdir(parents=True)
    assert last_checkpoint_time(tmp_path, ME, "train", now=1e12) is None      # nothing committed
    _save_ckpt(d, 10)
    manifest = d / "step-0000000010" / "zarr.json"
    os.utime(manifest, (5000.0, 5000.0))
    assert last_checkpoint_time(tmp_path, ME, "train", now=1e12) == 5000.0
    assert last_checkpoint_time(tmp_path, ME, "train", now=4000.0) == 4000.0  # future: counts as now
    assert last_checkpoint_time(tmp_path, "bob", "train", now=1e12) is None


def test_last_checkpoint_time_refuses_symlinks_and_junk(tmp_path):
    real = tmp_path / "elsewhere"
    real.mkdir()
    _save_ckpt(real, 3)
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "train").symlink_to(real)                                  # the job dir is a link
    assert last_checkpoint_time(tmp_path, "alice", "train", now=1e12) is None
    d = job_checkpoint_dir(tmp_path, "bob", "train")
    d.mkdir(parents=True)
    (d / "step-0000000003").symlink_to(real / "step-0000000003")                   # the step dir is a link
    (d / "latest").write_text("step-0000000003\n")
    assert last_checkpoint_time(tmp_path, "bob", "train", now=1e12) is None
    d = job_checkpoint_dir(tmp_path, "carol", "train")
    d.mkdir(parents=True)
    _save_ckpt(d, 1)
    (d / "latest").write_text("step-0000000001" + " " * 100)                       # oversized pointer
    assert last_checkpoint_time(tmp_path, "carol", "train", now=1e12) is None
    (d / "latest").write_text("../../bob/train/step-0000000003")                    # not a step name
    assert last_checkpoint_time(tmp_path, "carol", "train", now=1e12) is None
    os.unlink(d / "latest")
    os.mkfifo(d / "latest")                                                          # never blocks
    assert last_checkpoint_time(tmp_path, "carol", "train", now=1e12) is None


def test_view_reads_account_tier_usage_and_checkpoint(tmp_path):
    fab = build(generators.leaf_spine(4, hosts_per_leaf=2, gpus=8, cpus=8))
    hosts = list(fab.hosts)
    nodes = [Node(name=h, state="mixed", gpus=8) for h in hosts]
    d = job_checkpoint_dir(tmp_path, ME, "train")
    d.mkdir(parents=True)
    _save_ckpt(d, 7)
    os.utime(d / "step-0000000007" / "zarr.json", (1500.0, 1500.0))
    jobs = [Job(job_id=1, name="train", state="RUNNING", comment="fabric", user=ME, account="physics",
                qos="scavenger", partition="gpu", nodes=1, gpus_per_node=8, node_list=(hosts[0],),
                gpus={hosts[0]: tuple(range(8))}, start_time=1000.0, time_limit_min=60),
            Job(job_id=2, name="other", state="RUNNING", user="bob", nodes=1, gpus_per_node=4,
                node_list=(hosts[1],), gpus={hosts[1]: (0, 1, 2, 3)}, start_time=1000.0),
            Job(job_id=3, name="big", state="PENDING", comment="fabric:tier=high", user="carol", account="bio",
                qos="normal", partition="gpu", nodes=2, gpus_per_node=8, submit_time=1900.0, time_limit_min=30)]
    inputs = Inputs(tiers=TierMap.parse(["qos:scavenger=spot"]), ckpt_root=tmp_path)
    view = build_view(fab, nodes, jobs, now=2000.0, inputs=inputs)
    run, other = view.running  # bob's job is no fabric job: running to the policy, never a victim
    assert (run.job.account, run.job.tier, run.last_checkpoint) == ("physics", "spot", 1500.0)
    assert (other.job.id, other.job.account, other.preemptible, len(other.gpus)) == ("2", "bob", False, 4)
    (pend,) = view.pending
    assert (pend.job.account, pend.job.tier, pend.job.user) == ("bio", "high", "carol")
    assert view.held == {"physics": 8, "bob": 4}   # every running job, by account (bob has none: user)
    view = build_view(fab, nodes, jobs, now=2000.0)  # no checkpoint root: not read
    assert view.running[0].last_checkpoint is None


def test_a_pinned_job_keeps_hosts_that_are_being_released_for_a_grace_period():
    """A requeued victim's GPUs stay allocated while Slurm tears it down: the high job the agent
    pinned to those hosts must not be re-placed (which would preempt a second victim)."""
    from fabric_hpc.slurm.view import PIN_GRACE_S

    fab = build(generators.leaf_spine(4, hosts_per_leaf=2, gpus=8, cpus=8))
    a, b, c = list(fab.hosts)[:3]
    nodes = [Node(name=a, state="mixed", gpus=8, gpus_used=tuple(range(8))),       # victim tearing down
             Node(name=b, state="mixed", gpus=8, gpus_used=(0, 1, 2, 3)),          # completing job
             Node(name=c, state="mixed", gpus=8, gpus_used=(0,))]                  # someone else running

    def view(now, hosts, begin):
        jobs = [Job(job_id=5, name="victim", state="PENDING", comment="fabric:tier=spot", nodes=1,
                    gpus_per_node=8, submit_time=0.0, begin_time=None),            # requeued: no GPUs
                Job(job_id=6, name="done", state="COMPLETING", user="u", nodes=1, gpus_per_node=4,
                    node_list=(b,), gpus={b: (0, 1, 2, 3)}, start_time=10.0),
                Job(job_id=7, name="other", state="RUNNING", user="u", nodes=1, gpus_per_node=1,
                    node_list=(c,), gpus={c: (0,)}, start_time=10.0),
                Job(job_id=9, name="high", state="PENDING", comment="fabric:tier=high", nodes=len(hosts),
                    gpus_per_node=8, req_nodes=hosts, submit_time=50.0, begin_time=begin)]
        return build_view(fab, nodes, jobs, now=now)

    v = view(100.0, (a, b), begin=90.0)
    assert v.pinned == {9: (a, b)} and 9 not in v.candidates            # waits for its hosts
    assert sorted(v.state.job_gpus("9")) == sorted(fab.host_gpus(b)[4:])  # holding what is free now
    v = view(90.0 + PIN_GRACE_S + 1, (a, b), begin=90.0)
    assert 9 in v.candidates and not v.pinned                           # too long: re-placed
    v = view(100.0, (a, c), begin=90.0)
    assert 9 in v.candidates and not v.pinned                           # a running job holds c's GPU


def test_a_request_that_can_never_fit_is_handed_to_slurm_not_deferred_forever():
    """``numa_local`` with 8 GPUs per node on hosts with 4 GPUs per NUMA node fits no state: the
    view lists it as invalid (the agent hands it to Slurm, event agent.handoff), not a candidate."""
    fab = build(generators.superpod(sus=1))
    jobs = [Job(job_id=3, name="numa", state="PENDING", comment="fabric:numa_local", nodes=2, gpus_per_node=8,
                submit_time=0.0, begin_time=160.0),
            Job(job_id=4, name="fine", state="PENDING", comment="fabric:numa_local", nodes=2, gpus_per_node=4,
                submit_time=0.0, begin_time=160.0)]
    v = build_view(fab, [Node(name=h, state="idle", gpus=8) for h in fab.hosts], jobs, now=100.0)
    assert list(v.invalid) == [3] and "cannot ever fit this fabric" in v.invalid[3] and "numa_local" in v.invalid[3]
    assert list(v.candidates) == [4]


def test_a_requeued_victim_in_teardown_does_not_take_back_its_hosts():
    """25.11 answers a requeued victim as PENDING+COMPLETING with its old ReqNodeList and begin
    time until its epilog ends; it must not reserve its old hosts ahead of the job it was
    preempted for (which would then be re-placed and preempt a second victim: a CI flake)."""
    from fabric_hpc.slurm.parse import parse_state

    fab = build(generators.leaf_spine(2, hosts_per_leaf=2, gpus=8, cpus=8))
    a, b = list(fab.hosts)[:2]
    nodes = [Node(name=h, state="mixed", gpus=8, gpus_used=tuple(range(8))) for h in (a, b)]
    state, flags = parse_state(["PENDING", "COMPLETING", "REQUEUED"])
    jobs = [Job(job_id=5, name="victim", state=state, flags=flags, comment="fabric:tier=spot", nodes=2,
                gpus_per_node=8, req_nodes=(a, b), submit_time=0.0, begin_time=20.0, node_list=(a, b)),
            Job(job_id=9, name="high", state="PENDING", comment="fabric:tier=high", nodes=1,
                gpus_per_node=8, req_nodes=(a,), submit_time=50.0, begin_time=90.0)]
    v = build_view(fab, nodes, jobs, now=100.0)
    assert v.pinned == {9: (a,)} and 9 not in v.candidates   # keeps the host its victim frees
    assert 5 not in v.candidates and 5 not in v.pinned        # in teardown: neither placed nor pinned
    assert not v.running                                       # holds no GPU the view could give


def test_checkpoint_before_the_start_is_not_this_runs(tmp_path):
    fab = build(generators.leaf_spine(2, hosts_per_leaf=2, gpus=8, cpus=8))
    h = list(fab.hosts)[0]
    d = job_checkpoint_dir(tmp_path, ME, "train")
    d.mkdir(parents=True)
    _save_ckpt(d, 1)
    os.utime(d / "step-0000000001" / "zarr.json", (900.0, 900.0))  # written by the previous run
    job = Job(job_id=1, name="train", state="RUNNING", comment="fabric", user=ME, nodes=1, gpus_per_node=8,
              node_list=(h,), gpus={h: tuple(range(8))}, start_time=1000.0)
    view = build_view(fab, [Node(name=h, state="allocated", gpus=8)], [job], now=2000.0,
                      inputs=Inputs(ckpt_root=tmp_path))
    assert view.running[0].last_checkpoint is None and view.running[0].job.account == ME


def test_agent_run_rejects_a_bad_tier_map_in_one_line(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "fabric_hpc.cli", "agent", "run", "--topology",
                          "leaf-spine:hosts=2,hosts_per_leaf=2", "--state-dir", str(tmp_path),
                          "--tier-map", "qos:urgent=gold"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "SLURM_CONF": str(tmp_path / "none.conf")})
    assert out.returncode == 3, out
    assert "unknown tier 'gold'" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("comment", ["fabric", "fabric:within=leaf", "fabric:tier=high,switches=2",
                                     "fabric:numa_local,features=a&b", "fabric:rail_aligned=false,exclude=h[1-2]"])
def test_request_is_built_from_slurms_numbers_not_a_request_text(comment):
    """The size comes from Slurm's -N/--gpus-per-node as numbers, the options from the comment: the
    same request the text form gives (the oracle), with no formatting and re-parsing of the size."""
    from fabric_hpc.placement import parse_request
    from fabric_hpc.slurm.view import request_of, split_options

    job = Job(job_id=9, name="x", state="PENDING", comment=comment, nodes=3, gpus_per_node=4)
    opts, _ = split_options(job)
    assert request_of(job) == parse_request("nodes=3,gpus_per_node=4" + (f",{opts}" if opts else ""))


@pytest.mark.parametrize("size", ["nodes=2", "gpus=4", "gpus_per_node=2", "gpus-per-node=2"])
def test_a_size_in_the_comment_is_refused_naming_the_job(size):
    from fabric_hpc.slurm.view import request_of

    job = Job(job_id=11, name="x", state="PENDING", comment=f"fabric:within=leaf,{size}", nodes=2,
                   gpus_per_node=8)
    with pytest.raises(ConfigError, match=r"job 11 --comment: .* given in the fabric options") as exc:
        request_of(job)
    assert "-N and --gpus-per-node" in (exc.value.hint or "")
