"""Parsers and decoders of Slurm answers: exact results for good input and for the golden answers
recorded from live Slurm 22.05 and 25.11 (data/slurm-*/, see data/README.md), a named SlurmError /
ExternalError for bad input, and nothing else for mangled answers (hypothesis)."""

from __future__ import annotations

import contextlib

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabric_hpc.errors import ConfigError, ExternalError, NotFoundError
from fabric_hpc.slurm import decode
from fabric_hpc.slurm.cli_backend import job_from_scontrol, node_from_scontrol
from fabric_hpc.slurm.contract import Job, Node, SlurmError
from fabric_hpc.slurm.rest_answers import checked
from fabric_hpc.slurm.rest_backend import (choose_version, minutes, sbatch_args_to_job,
                                           sbatch_args_to_job_desc)
from fabric_hpc.slurm.parse import (Gres, gpu_count, gpu_indices, hosts, job_node_gres, parse_gres, parse_key_values,
                                    parse_state, reason_words)


@pytest.mark.parametrize("text,expected", [
    ("gpu:8(IDX:0-7)", [Gres("gpu", None, 8, tuple(range(8)))]),
    ("gpu:h100:8(S:0-1)", [Gres("gpu", "h100", 8, None, (0, 1))]),
    ("gres:gpu:3", [Gres("gpu", None, 3)]),
    ("gres/gpu:h100:2", [Gres("gpu", "h100", 2)]),
    ("gpu:h100:3(IDX:0-1,5)", [Gres("gpu", "h100", 3, (0, 1, 5))]),
    ("gpu:h100:0(IDX:N/A)", [Gres("gpu", "h100", 0, ())]),
    ("gpu:a100:2(IDX:0-1),nic:1", [Gres("gpu", "a100", 2, (0, 1)), Gres("nic", None, 1)]),
    ("(null)", []), ("", []), (None, []),
])
def test_parse_gres(text, expected):
    assert parse_gres(text) == expected


@pytest.mark.parametrize("bad", ["gpu:8(IDX:0-x)", "gpu:8(FOO:1)", "gpu::8", "8:gpu", "gpu:8(IDX:0-7"])
def test_malformed_gres_is_a_named_error(bad):
    with pytest.raises(ExternalError) as err:
        parse_gres(bad)
    assert bad[:5] in str(err.value)


def test_gpu_counts_and_indices():
    assert gpu_count("gres:gpu:h100:8") == 8
    assert gpu_indices("gpu:h100:3(IDX:0-2)") == (0, 1, 2)
    with pytest.raises(ExternalError, match="no GPU indices"):
        gpu_indices("gpu:3")
    with pytest.raises(ExternalError, match="3 GPUs but 2 indices"):
        gpu_indices("gpu:3(IDX:0-1)")


def test_states_reasons_hosts():
    assert parse_state("PENDING") == ("PENDING", ())
    assert parse_state("COMPLETING+REQUEUED") == ("COMPLETING", ("REQUEUED",))
    assert parse_state(["RUNNING"]) == ("RUNNING", ())
    # a requeued job in teardown (25.11's JSON): COMPLETING, as scontrol's text says
    assert parse_state(["PENDING", "COMPLETING", "REQUEUED"]) == ("COMPLETING", ("PENDING", "REQUEUED"))
    assert parse_state("PENDING+COMPLETING") == ("COMPLETING", ("PENDING",))
    for bad in ("", "WEIRD_STATE", "running now"):
        with pytest.raises(ExternalError):
            parse_state(bad)
    assert "start time" in reason_words("BeginTime")
    assert reason_words("SomethingNew") == "SomethingNew"
    assert hosts("n[1-3,7]") == ("n1", "n2", "n3", "n7")
    assert hosts("(null)") == ()
    with pytest.raises(ExternalError, match="malformed node list"):
        hosts("n[1-3")


LINE = ("JobId=7 JobName=wrap UserId=root(0) JobState=RUNNING Reason=None NodeList=n[1-2] NumNodes=2 "
        "Comment=fabric:within=leaf SubmitTime=2026-01-01T00:00:00 EligibleTime=2026-01-01T00:00:01 "
        "StartTime=2026-01-01T00:00:02 ReqNodeList=n[1-2] Priority=5 JOB_GRES=gpu:h100:6   Nodes=n1 CPU_IDs=0 "
        "Mem=0 GRES=gpu:h100:3(IDX:0-2)   Nodes=n2 CPU_IDs=0 Mem=0 GRES=gpu:h100:3(IDX:4-6) TresPerNode=gres:gpu:3")


def test_scontrol_job_line():
    assert parse_key_values(LINE)["JobName"] == "wrap"
    assert job_node_gres(LINE) == {"n1": "gpu:h100:3(IDX:0-2)", "n2": "gpu:h100:3(IDX:4-6)"}
    job = job_from_scontrol(LINE)
    assert (job.job_id, job.state, job.nodes, job.gpus_per_node) == (7, "RUNNING", 2, 3)
    assert job.gpus == {"n1": (0, 1, 2), "n2": (4, 5, 6)}
    assert job.fabric_marked and job.fabric_options == "within=leaf"
    assert job.req_nodes == ("n1", "n2")
    with pytest.raises(ExternalError):
        job_from_scontrol("no pairs here")
    node = node_from_scontrol("NodeName=n3 State=IDLE+DRAIN Gres=gpu:h100:8(S:0-1) GresUsed=gpu:h100:0(IDX:N/A) "
                              "CPUTot=8 Partitions=debug")
    assert (node.name, node.state, node.gpus, node.usable) == ("n3", "idle", 8, False)


GOOD = {"job_id": 3, "job_state": "RUNNING", "nodes": "n[4-5]", "node_count": 2, "tres_per_node": "gres:gpu:8",
        "gres_detail": ["gpu:8(IDX:0-7)", "gpu:8(IDX:0-7)"], "comment": "fabric", "eligible_time": 10}


def test_squeue_json_job():
    job = decode.job(GOOD)
    assert job.gpus == {"n4": tuple(range(8)), "n5": tuple(range(8))} and job.begin_time == 10.0


@pytest.mark.parametrize("change,words", [
    ({"job_id": "3"}, "'job_id' is str"),
    ({"job_state": "EXPLODED"}, "unknown job state 'EXPLODED'"),
    ({"gres_detail": ["gpu:8(IDX:0-7)"]}, "1 GRES details for 2 nodes"),
    ({"nodes": "n[4-"}, "malformed node list"),
])
def test_unexpected_json_is_a_named_error(change, words):
    with pytest.raises(SlurmError, match=words.replace("[", r"\[").replace("(", r"\(")):
        decode.job({**GOOD, **change})
    with pytest.raises(SlurmError, match="no 'job_state' field"):
        decode.job({k: v for k, v in GOOD.items() if k != "job_state"})
    json.dumps(GOOD)  # the fixture itself stays JSON


def test_remembered_parses_still_name_each_record():
    """The decoder asks each parser once per distinct string: equal strings give equal answers, and a
    bad string is an error naming every record that carries it (errors are never remembered)."""
    a, b = decode.job({**GOOD, "job_id": 11}), decode.job({**GOOD, "job_id": 12})
    assert a.gpus == b.gpus and a.node_list == b.node_list and a.gpus_per_node == b.gpus_per_node == 8
    for jid in (21, 22):
        with pytest.raises(SlurmError, match=f"job {jid}: .*GRES string"):
            decode.job({**GOOD, "job_id": jid, "tres_per_node": "gres:gpu:8,,(bad"})
        with pytest.raises(SlurmError, match=f"job {jid}: .*unknown job state"):
            decode.job({**GOOD, "job_id": jid, "job_state": "EXPLODED"})


def test_answers_are_parsed_with_the_collector_paused_and_restored():
    import gc

    from fabric_hpc.slurm.replay import ReplayClient

    assert gc.isenabled()
    assert decode.parse_json('{"jobs": [1, 2.5, null]}') == {"jobs": [1, 2.5, None]} and gc.isenabled()
    with pytest.raises(json.JSONDecodeError):
        decode.parse_json('{"jobs": [')
    assert gc.isenabled()  # also after an error
    gc.disable()
    try:  # a caller that paused the collector keeps it paused
        decode.jobs_answer({"jobs": [GOOD]}, "squeue --json")
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(SlurmError, match="recorded jobs is not JSON"):
        ReplayClient("{}", '{"jobs": [').jobs()
    assert gc.isenabled()
    assert [j.job_id for j in ReplayClient("{}", json.dumps({"jobs": [GOOD]})).jobs()] == [GOOD["job_id"]]
    assert gc.isenabled()  # a client's read (parse and decode) pauses it only while it runs


# -- golden answers of live Slurm 22.05 and 25.11 ---------------------------------------------
DATA = Path(__file__).parent / "data"
VERSIONS = sorted(p.name.removeprefix("slurm-") for p in DATA.glob("slurm-*"))


def _load(version: str, name: str) -> Any:
    return json.loads((DATA / f"slurm-{version}" / name).read_text())


def _node_answer(version: str) -> Any:
    """The answer with a node list: sinfo --json (22.05) or scontrol show nodes --json (23.02+)."""
    path = DATA / f"slurm-{version}" / "scontrol-nodes.json"
    return json.loads(path.read_text()) if path.exists() else _load(version, "sinfo.json")


def test_both_versions_are_recorded():
    assert {"22.05", "25.11"} <= set(VERSIONS)


@pytest.mark.parametrize("version", VERSIONS)
def test_golden_nodes(version):
    sinfo = decode.nodes_answer(_load(version, "sinfo.json"), "sinfo --json")
    assert (sinfo is None) == (version != "22.05")  # 23.02+: per-partition records, no node list
    for nodes in (decode.nodes_answer(_node_answer(version), "nodes"),
                  decode.nodes_answer(_load(version, "rest-nodes.json"), "GET /nodes")):
        by_name = {n.name: n for n in nodes}
        assert sorted(by_name) == sorted(f"n{i}" for i in range(1, 17))
        assert {(n.gpus, n.gpu_type, n.cpus, n.partitions, n.features) for n in nodes} == \
            {(8, "h100", 8, ("debug",), ("h100",))}
        assert by_name["n7"].gpus_used == by_name["n10"].gpus_used == (0, 1, 2)
        assert by_name["n1"].gpus_used == tuple(range(8))
        assert {n.name for n in nodes if n.state == "mixed"} == {"n1", "n7", "n10"}
        assert all(n.state == "idle" and n.gpus_used == () and n.usable for n in nodes if n.state != "mixed")
    assert nodes == decode.nodes_answer(_node_answer(version), "nodes")  # CLI and REST agree


@pytest.mark.parametrize("version", VERSIONS)
def test_golden_jobs(version):
    ids = _load(version, "meta.json")["jobs"]
    answers = [_load(version, "squeue.json"), _load(version, "rest-jobs.json")]
    if (DATA / f"slurm-{version}" / "scontrol-jobs.json").exists():
        answers.append(_load(version, "scontrol-jobs.json"))
    decoded = [decode.jobs_answer(a, "jobs") for a in answers]
    assert all(d == decoded[0] for d in decoded)  # squeue, scontrol and slurmrestd agree
    jobs = {j.job_id: j for j in decoded[0]}
    placed, running = jobs[ids["placed"]], jobs[ids["running"]]
    assert (placed.state, placed.nodes, placed.gpus_per_node, placed.fabric_marked) == ("RUNNING", 2, 3, True)
    assert placed.node_list == placed.req_nodes == ("n7", "n10")
    assert placed.gpus == {"n7": (0, 1, 2), "n10": (0, 1, 2)}
    assert placed.start_time and placed.submit_time and placed.time_limit_min is None
    assert running.gpus == {"n1": tuple(range(8))} and running.comment == "nofabric"
    begin, held, res = jobs[ids["begin"]], jobs[ids["held"]], jobs[ids["resources"]]
    assert (begin.state, begin.reason, begin.fabric_options, begin.nodes) == ("PENDING", "BeginTime", "within=leaf", 2)
    assert begin.begin_time and begin.begin_time > begin.submit_time + 3000 and begin.gpus == {}
    assert (held.reason, held.time_limit_min, held.priority, held.begin_time) == ("JobHeldUser", 30, 0, None)
    assert (res.reason, res.nodes, res.gpus_per_node, res.node_list) == ("Resources", 16, 8, ())
    assert [j.held for j in (begin, held, res, placed)] == [False, True, False, False]  # held: priority 0
    assert begin.priority and res.priority  # read from every answer (none is the unknown None)
    one = decode.jobs_answer(_load(version, "rest-job.json"), "GET /job")
    assert one == [placed]


_TEXT = {v: (DATA / f"slurm-{v}" / "scontrol-jobs-d-o.txt").read_text().splitlines()[0] for v in VERSIONS}


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_mangled_scontrol_lines_are_slurm_errors_only(version, data):
    line = _TEXT[version]
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(line)))
        line = line[:at] + data.draw(st.text(max_size=6)) + line[at + data.draw(st.integers(0, 8)):]
    for fn in (job_from_scontrol, node_from_scontrol):
        with contextlib.suppress(SlurmError):  # a SlurmError is the only allowed failure
            assert isinstance(fn(line), (Job, Node))


@pytest.mark.parametrize("version", VERSIONS)
def test_golden_scontrol_text(version):
    lines = (DATA / f"slurm-{version}" / "scontrol-jobs-d-o.txt").read_text().splitlines()
    jobs = {j.job_id: j for j in map(job_from_scontrol, filter(None, lines))}
    placed = jobs[_load(version, "meta.json")["jobs"]["placed"]]
    assert placed.gpus == {"n7": (0, 1, 2), "n10": (0, 1, 2)} and placed.gpus_per_node == 3


def test_number_objects_and_states():
    obj = {"a": {"set": True, "infinite": False, "number": 5}, "b": {"set": False, "infinite": False, "number": 0},
           "c": {"set": True, "infinite": True, "number": 0}, "d": 7, "e": None}
    assert [decode.number(obj, k, "x") for k in "abcde"] == [5, None, None, 7, None]
    assert decode.state({"s": ["IDLE", "DRAIN"]}, "s", "x") == ("IDLE", ("DRAIN",))
    assert decode.state({"s": "idle", "f": ["DRAIN"]}, "s", "x", "f") == ("idle", ("DRAIN",))
    node = decode.node({"name": "n1", "state": ["IDLE", "DRAIN"], "gres": "gpu:h100:8", "cpus": 8})
    assert not node.usable and node.state == "idle"
    for bad, words in (({"a": "5"}, "'a' is str '5'"), ({"a": {"set": True}}, "'a' is dict"),
                       ({"a": True}, "'a' is bool"), ({"a": [1]}, "'a' is list"), ({"a": float("inf")}, "is float"),
                       ({"a": 10**30}, "is int"), ({"a": {"set": True, "number": float("nan")}}, "is dict")):
        with pytest.raises(SlurmError, match=words):
            decode.number(bad, "a", "x")
    with pytest.raises(SlurmError, match="node n1: field 'state' is list"):
        decode.node({"name": "n1", "state": []})


# -- mangled answers give SlurmError and nothing else -------------------------------------------
_JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.integers() | st.floats()
                     | st.text(max_size=12), lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)
_MANGLED = {v: (_node_answer(v), _load(v, "squeue.json")) for v in VERSIONS}


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):
            out += _paths(v, prefix + (i,))
    return out


def _mangle(data: Any, draw: Any) -> Any:
    data = copy.deepcopy(data)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths[1:] or paths))
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        if not path:
            return draw(_JSON)
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(_JSON)
    return data


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mangled_answers_are_slurm_errors_only(version, data):
    nodes, jobs = _MANGLED[version]
    small_nodes = {**nodes, "nodes": nodes["nodes"][:3]}
    small_jobs = {**jobs, "jobs": jobs["jobs"][:5]}
    for fn, answer in ((decode.nodes_answer, small_nodes), (decode.jobs_answer, small_jobs)):
        try:
            out = fn(_mangle(answer, data.draw), "mangled")
        except SlurmError:
            continue
        assert out is None or all(isinstance(x, (Node, Job)) for x in out)


# -- REST: version choice, field names, warnings (offline, on recorded answers) ----------------
@pytest.mark.parametrize("version,expected", [("22.05", "v0.0.38"), ("25.11", "v0.0.44")])
def test_version_negotiated_from_the_recorded_spec(version, expected):
    assert choose_version(_load(version, "rest-openapi-paths.json")["paths"]) == expected
    # v0.0.45 (26.05) says no job is --exclusive: the newest up to v0.0.44 where one is offered
    older = ["/slurm/v0.0.42/jobs/", "/slurm/v0.0.45/jobs/", "/slurm/v0.0.38/jobs"]
    assert choose_version(older) == "v0.0.42"
    assert choose_version(["/slurm/v0.0.45/jobs/", "/slurm/v0.0.46/jobs/", "/slurm/v0.0.38/"]) == "v0.0.46"
    assert choose_version(["/slurm/v0.0.40/jobs/", "/slurm/v0.0.41/jobs/", "/openapi/v3"]) == "v0.0.41"
    with pytest.raises(SlurmError, match="offers v0.0.37, v0.0.39"):
        choose_version(["/slurm/v0.0.37/jobs", "/slurm/v0.0.39/jobs/", "/openapi/v3"])


@pytest.mark.parametrize("version", VERSIONS)
def test_recorded_unknown_field_answer_is_an_error(version):
    rec = _load(version, "rest-update-unknown-field.json")
    field = next(iter(rec["request"].get("job", rec["request"])))
    assert rec["http_status"] == 200  # what slurmrestd says: success...
    with pytest.raises(SlurmError, match=field):  # ...what fabric says: not applied
        checked(rec["http_status"], rec["answer"], "POST /job")
    held = {"errors": [], "warnings": [{"description": "Job submission resulted in non-zero return code: Job is in "
                                                       "held state, pending scheduler release"}], "job_id": 3}
    assert checked(200, held, "submit")["job_id"] == 3
    with pytest.raises(NotFoundError):
        checked(500, {"errors": [{"error_number": 2017, "description": "Invalid job id specified"}]}, "GET /job/9")


def test_sbatch_options_in_both_dialects():
    args = ["-N", "2", "--gres=gpu:h100:3", "-H", "--comment=fabric", "-t", "1:30:00", "-w", "n[1-2]",
            "--signal=B:USR1@120"]
    assert sbatch_args_to_job_desc(args) == {
        "nodes": "2", "tres_per_node": "gres/gpu:h100:3", "hold": True, "comment": "fabric", "time_limit": 90,
        "required_nodes": ["n1", "n2"], "kill_warning_signal": "USR1", "kill_warning_delay": 120,
        "kill_warning_flags": ["BATCH_JOB"]}
    assert sbatch_args_to_job(["-N", "2", "--gres=gres:gpu:3", "-w", "n[1-2]"]) == {
        "nodes": "2", "gres": "gpu:3", "nodelist": "n[1-2]"}
    assert [minutes(t) for t in ("30", "5:30", "1:00:00", "2-00", "1-01:01:00")] == [30, 6, 60, 2880, 1501]
    with pytest.raises(ConfigError, match="--exclusive"):
        sbatch_args_to_job_desc(["--exclusive"])


def test_segment_reaches_slurmrestd_as_segment_size():
    """export.segment_args's --segment was refused by the rest backend: it is job_desc_msg's
    segment_size (data_parser v0.0.41+, Slurm 24.05+); v0.0.38 (22.05) has none, said so."""
    assert sbatch_args_to_job_desc(["-N", "36", "--segment=18"]) == {"nodes": "36", "segment_size": 18}
    assert sbatch_args_to_job_desc(["--segment", "2"]) == {"segment_size": 2}
    with pytest.raises(ConfigError, match="v0.0.38 API .Slurm 22.05. has no segment size") as e:
        sbatch_args_to_job(["-N", "36", "--segment=18"])
    assert "cli backend" in e.value.hint
    for bad in ("0", "x", "-2", "70000"):
        with pytest.raises(ConfigError, match="expected a whole number of hosts"):
            sbatch_args_to_job_desc([f"--segment={bad}"])
