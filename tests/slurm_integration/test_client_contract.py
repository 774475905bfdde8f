"""One contract for every backend: cli and rest run it against a live cluster; pyslurm in test_pyslurm_contract.py.

The cluster has JWT next to munge, and slurmrestd runs as a site runs it (unprivileged, JWT);
the REST client negotiates its API version from the server's OpenAPI spec.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from fabric_hpc.errors import NotFoundError
from fabric_hpc.slurm import SlurmClient, SlurmError, decode, open_client
from fabric_hpc.slurm.rest_backend import CURRENT_MIN, RestClient, _vtuple
from tests.slurm_integration.restd import Restd, jwt_cluster, running_restd, token

SCRIPT = "#!/bin/sh\nsleep {s}\n"


#: the pyslurm backend as the contract tests meet it (in process, or in its worker process)
PYSLURM_CLIENTS = ("PyslurmClient", "PyslurmWorker")


@pytest.fixture(scope="module")
def contract_cluster(slurm_cluster_factory: Any, slurm_fabric: Any) -> Iterator[Any]:
    """The 16-host cluster with JWT next to munge, its files readable by slurmrestd's user."""
    with jwt_cluster(slurm_cluster_factory, slurm_fabric) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def restd(contract_cluster: Any) -> Iterator[Restd]:
    """slurmrestd as a site runs it: as ``daemon``, ``rest_auth/jwt``, openapi/slurmctld (23.11+) or
    openapi/v0.0.38 (22.05), on a unix socket."""
    with running_restd(contract_cluster) as server:
        yield server


def _rest(request: pytest.FixtureRequest, cluster: Any) -> SlurmClient:
    server = request.getfixturevalue("restd")
    return open_client("rest", url=server.url, token=token(cluster), env=cluster.env)


def _cli(request: pytest.FixtureRequest, cluster: Any) -> SlurmClient:
    return open_client("cli", env=cluster.env)


#: backend name -> how to open it on the contract cluster (add a backend here)
OPENERS = {"cli": _cli, "rest": _rest}


@pytest.fixture(params=list(OPENERS))
def client(request: pytest.FixtureRequest, contract_cluster: Any) -> Iterator[SlurmClient]:
    c = OPENERS[request.param](request, contract_cluster)
    yield c
    contract_cluster.run(["scancel", "--user", str(os.getuid())], check=False)


def _wait(client: SlurmClient, jid: int, states: set[str], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        job = client.job(jid)
        if job.state in states:
            return job
        assert time.monotonic() < deadline, f"job {jid} stayed {job.state} ({job.reason})"
        time.sleep(0.1)


def test_nodes(client: SlurmClient, contract_cluster: Any) -> None:
    nodes = {n.name: n for n in client.nodes()}
    assert sorted(nodes) == sorted(contract_cluster.node_names)
    assert all(n.gpus == 8 and n.gpu_type == "h100" and n.cpus == 8 for n in nodes.values())


def test_account_is_read(client: SlurmClient, contract_cluster: Any) -> None:
    """The fairshare account of a job is its Slurm account (submitted with sbatch --account)."""
    jid = contract_cluster.sbatch("-N1", "--gres=gpu:1", "-H", "--account=physics", "--comment=fabric", wrap="true")
    assert client.job(jid).account == "physics"


def test_exclusions_are_read_and_updated(client: SlurmClient, contract_cluster: Any) -> None:
    """Job.exc_nodes is Slurm's ExcNodeList (-x); ExcNodeList updates replace it (the agent's hand-over
    of an include= job: tests/slurm/test_include_handoff.py)."""
    jid = contract_cluster.sbatch("-N1", "--gres=gpu:1", "-H", "-x", "n[2-3]", "--comment=fabric", wrap="true")
    assert client.job(jid).exc_nodes == ("n2", "n3")
    client.update(jid, ExcNodeList="n[1-3,9]")
    assert client.job(jid).exc_nodes == ("n1", "n2", "n3", "n9")


def test_submit_hold_place_release_runs_exactly_there(client: SlurmClient, contract_cluster: Any) -> None:
    jid = client.submit(SCRIPT.format(s=30), ["-N", "2", "--gres=gpu:3", "-H", "--comment=fabric"],
                        cwd=str(contract_cluster.work_dir))
    job = client.job(jid)
    assert (job.state, job.nodes, job.gpus_per_node, job.fabric_marked) == ("PENDING", 2, 3, True)
    assert jid in {j.job_id for j in client.jobs() if j.pending}
    client.place(jid, ["n7", "n10"])
    client.release(jid)
    job = _wait(client, jid, {"RUNNING"})
    assert job.node_list == ("n7", "n10")
    assert job.gpus == {"n7": (0, 1, 2), "n10": (0, 1, 2)}
    used = {n.name: n.gpus_used for n in client.nodes()}
    assert used["n7"] == (0, 1, 2) and used["n1"] == ()
    client.requeue(jid)
    job = _wait(client, jid, {"PENDING"})
    client.cancel(jid)
    assert _wait(client, jid, {"CANCELLED"}).state == "CANCELLED"


def test_a_job_that_ended_is_not_requeued(client: SlurmClient, contract_cluster: Any) -> None:
    """The agent's victim may end between the cycle's read and the requeue: Slurm requeues an ended batch job
    too and runs it again (job_mgr.c ``_job_requeue_op``), so every backend requeues only a job that still
    runs (cli and rest: ``scontrol requeue Incomplete``; pyslurm: read first)."""
    jid = client.submit(SCRIPT.format(s=0), ["-N", "1", "--gres=gpu:1"], cwd=str(contract_cluster.work_dir))
    _wait(client, jid, {"COMPLETED"})
    client.requeue(jid)
    time.sleep(1)
    assert client.job(jid).state == "COMPLETED"


def test_unpin_clears_the_pin(client: SlurmClient, contract_cluster: Any) -> None:
    """The agent's unpin (``ReqNodeList=""``) leaves a pending job without required nodes (rest v0.0.40+:
    ``required_nodes: ""``, which slurmctld reads as "clear"; an empty list would change nothing)."""
    jid = client.submit(SCRIPT.format(s=1), ["-N", "2", "--gres=gpu:1", "-H"],
                        cwd=str(contract_cluster.work_dir))
    client.place(jid, ["n7", "n10"])
    assert client.job(jid).req_nodes == ("n7", "n10")
    client.unpin(jid)
    assert client.job(jid).req_nodes == ()
    client.cancel(jid)


def test_defer_and_hold(client: SlurmClient, contract_cluster: Any) -> None:
    # submitted held: an idle cluster may otherwise start the job before hold() reaches it
    jid = client.submit(SCRIPT.format(s=1), ["-N", "1", "--gres=gpu:1", "-H"], cwd=str(contract_cluster.work_dir))
    client.hold(jid)  # holding a held job is fine
    assert client.job(jid).held and client.job(jid).priority == 0  # every backend reads the hold
    client.defer(jid, 300)
    job = client.job(jid)
    assert job.state == "PENDING" and job.begin_time is not None and job.begin_time > time.time() + 200
    assert job.held  # a deferral (the agent renews a held job's) keeps the hold
    client.release(jid)
    assert not client.job(jid).held and client.job(jid).priority  # released: a priority again
    client.cancel(jid)


def _reason(client: SlurmClient, jid: int, reasons: set[str], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while (job := client.job(jid)).reason not in reasons:
        assert time.monotonic() < deadline, f"job {jid}: reason {job.reason}, not {sorted(reasons)}"
        time.sleep(0.2)
    return job


def test_dependency_is_read(client: SlurmClient, contract_cluster: Any) -> None:
    """Every backend gives a job waiting on a dependency as Slurm says it, alike: the reason (Dependency,
    DependencyNeverSatisfied) and the dependency text (Job.dependent, Job.blocked). A deferral resets the
    reason to None until Slurm's next scheduling pass; the text stays until the dependency is satisfied."""
    first = contract_cluster.sbatch("-N1", "--gres=gpu:1", "-H", wrap="true")  # held: it does not end
    ok = contract_cluster.sbatch("-N1", "--gres=gpu:1", f"--dependency=afterok:{first}", wrap="true")
    any_ = contract_cluster.sbatch("-N1", "--gres=gpu:1", f"--dependency=afterany:{first}", wrap="true")
    for jid, kind in ((ok, "afterok"), (any_, "afterany")):
        job = _reason(client, jid, {"Dependency"})
        assert (job.state, job.dependency) == ("PENDING", f"{kind}:{first}(unfulfilled)"), job
        assert not job.held
        assert job.dependent and job.blocked == "dependency"
        client.defer(jid, 300)
        job = client.job(jid)
        assert job.begin_time is not None and job.begin_time > time.time() + 200
        assert job.dependency == f"{kind}:{first}(unfulfilled)" and job.blocked == "dependency", job
    client.cancel(first)  # afterok can never be satisfied now; afterany is
    job = _reason(client, ok, {"DependencyNeverSatisfied"})
    assert job.dependency == f"afterok:{first}(failed)" and job.blocked == "dependency", job
    deadline = time.monotonic() + 30
    while (job := client.job(any_)).dependency:
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert job.state == "PENDING" and job.reason != "Dependency" and job.blocked is None, job  # deferred


def test_unknown_job_is_not_found(client: SlurmClient) -> None:
    with pytest.raises(NotFoundError):
        client.job(9_999_999)


# -- REST only: negotiation and warnings ------------------------------------------------------
def _rest_client(request: pytest.FixtureRequest, cluster: Any, **kw: Any) -> RestClient:
    server = request.getfixturevalue("restd")
    return RestClient(server.url, token=token(cluster), env=cluster.env, **kw)


def test_rest_negotiates_the_newest_version_it_speaks(request: pytest.FixtureRequest, contract_cluster: Any) -> None:
    """The newest offered from v0.0.40 up to v0.0.44 (26.05's v0.0.45 says no job is --exclusive)."""
    rest = _rest_client(request, contract_cluster)
    _, spec = rest._request("GET", "/openapi/v3")
    offered = sorted({p.split("/")[2] for p in spec["paths"] if p.startswith("/slurm/v")}, key=_vtuple)
    speakable = [v for v in offered if _vtuple(v) >= CURRENT_MIN] or ["v0.0.38"]
    assert rest.version == ([v for v in speakable if _vtuple(v) <= decode.JOBS_PARSER] or speakable)[-1]
    names = sorted(contract_cluster.node_names)
    for version in speakable:  # every version it may speak reads the same cluster
        nodes = _rest_client(request, contract_cluster, api=version).nodes()
        assert sorted(n.name for n in nodes) == names and {n.gpus for n in nodes} == {8}


def test_rest_without_a_token_is_refused(request: pytest.FixtureRequest, contract_cluster: Any) -> None:
    rest = _rest_client(request, contract_cluster)
    rest.token = None
    with pytest.raises(SlurmError):
        rest.jobs()


def test_rest_agent_whose_user_may_not_modify_jobs_stops(request: pytest.FixtureRequest,
                                                         contract_cluster: Any) -> None:
    """The agent through slurmrestd as a user who may not modify root's jobs (its JWT and user name):
    Slurm's refusal is fatal (:class:`AgentPrivilegeError`, exit 3), as through scontrol, not an
    ``agent.failed`` every cycle."""
    from fabric_hpc.slurm.actions import Actions, AgentPrivilegeError

    rest = _rest_client(request, contract_cluster, user="nobody")
    rest.token = token(contract_cluster, user="nobody")
    jid = contract_cluster.sbatch("-N1", "--gres=gpu:1", "-H", "--comment=fabric", wrap="true")
    try:
        for act in ({"started": [{"job": jid, "hosts": ["n3"]}]}, {"deferred": [jid]}, {"unpin": [jid]}):
            acts = Actions(rest, lambda what, **kw: None)
            with pytest.raises(AgentPrivilegeError):
                acts.apply(act.get("requeued", []), act.get("started", []), {}, act.get("deferred", []), 300,
                           unpin=act.get("unpin", ()))
    finally:
        contract_cluster.run(["scancel", str(jid)], check=False)


def test_rest_warning_about_an_ignored_field_is_an_error(request: pytest.FixtureRequest,
                                                         contract_cluster: Any) -> None:
    rest = _rest_client(request, contract_cluster)
    jid = rest.submit(SCRIPT.format(s=30), ["-N", "1", "--gres=gpu:1", "-H"], cwd=str(contract_cluster.work_dir))
    try:
        wrong = "nodelist" if not rest.legacy else "no_such_field"  # v0.0.38's name, unknown to v0.0.42+
        with pytest.raises(SlurmError, match=wrong):
            rest._call("POST", f"/job/{jid}", {wrong: "n3"})
        assert rest.job(jid).req_nodes == ()
        rest.update(jid, ReqNodeList="n3")
        assert rest.job(jid).req_nodes == ("n3",)
    finally:
        rest.cancel(jid)


@pytest.mark.parametrize("backend", ["cli", "rest"])
def test_fabric_slurm_jobs_and_nodes_commands(backend: str, request: pytest.FixtureRequest,
                                              contract_cluster: Any) -> None:
    """``fabric slurm jobs|nodes`` as a user runs them (the rest backend with ``SLURM_JWT``): no traceback."""
    import json
    import subprocess
    import sys

    env, extra = {**contract_cluster.env, "PYTHONPATH": os.environ.get("PYTHONPATH", os.getcwd())}, []
    if backend == "rest":
        env["SLURM_JWT"] = token(contract_cluster)
        extra = ["--backend", "rest", "--rest-url", request.getfixturevalue("restd").url]
    wd = str(contract_cluster.work_dir)
    run = contract_cluster.sbatch("-N1", "--gres=gpu:2", "-w", "n5", script=SCRIPT.format(s=60), cwd=wd)
    held = contract_cluster.sbatch("-N2", "--gres=gpu:8", "-H", "--comment=fabric", script=SCRIPT.format(s=1), cwd=wd)
    try:
        contract_cluster.wait_job(run, ("RUNNING",), timeout=30)
        out = {}
        for what in ("jobs", "nodes"):
            for fmt in ([], ["--json"]):
                proc = subprocess.run([sys.executable, "-m", "fabric_hpc.cli", "slurm", what, *extra, *fmt],
                                      env=env, text=True, capture_output=True, timeout=60)
                assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
                out[what, bool(fmt)] = proc.stdout
        jobs = {d["job"]: d for d in json.loads(out["jobs", True])}
        assert jobs[run]["node_list"] == ["n5"] and jobs[run]["gpus_per_node"] == 2
        assert (jobs[held]["state"], jobs[held]["reason"], jobs[held]["fabric"]) == ("PENDING", "JobHeldUser", True)
        nodes = {d["node"]: d for d in json.loads(out["nodes", True])}
        assert nodes["n5"]["gpus_used"] == [0, 1] and nodes["n6"]["gpus_used"] == [] and len(nodes) == 16
    finally:
        contract_cluster.run(["scancel", str(run), str(held)], check=False)


def test_reservations_are_read(client: SlurmClient, contract_cluster: Any) -> None:
    """A reservation still to come is read with its nodes, times and flags (the agent keeps long jobs off
    its nodes: tests/slurm/test_future_reservations.py)."""
    from fabric_hpc.slurm.contract import ReadsReservations

    assert isinstance(client, ReadsReservations)
    c = contract_cluster
    c.run(["scontrol", "create", "reservation", "ReservationName=contract_later", "StartTime=now+7200",
           "Duration=90", "Nodes=n[3-4]", "Users=root", "Flags=MAINT,IGNORE_JOBS"])
    try:
        found, ignored = client.reservations()
    finally:
        c.run(["scontrol", "delete", "ReservationName=contract_later"], check=False)
    [r] = [r for r in found if r.name == "contract_later"]
    assert r.nodes == ("n3", "n4") and r.end - r.start == 90 * 60 and not ignored, (found, ignored)
    assert 7000 < r.start - time.time() < 7300, r
    assert "MAINT" in r.flags, r  # pyslurm's MAINTENANCE reads as Slurm's name


# -- the agent's actions and reads, through each backend ----------------------------------------------
def _begins_in(job: Any, seconds: float) -> bool:
    """The job's begin time is ``seconds`` from now, as the agent recognises its own deferral."""
    from fabric_hpc.slurm.view import DEFERRAL_SLACK_S

    slack = DEFERRAL_SLACK_S + 2
    return job.begin_time is not None and abs(job.begin_time - (time.time() + seconds)) <= slack


def test_the_agents_actions_take_effect(client: SlurmClient, contract_cluster: Any) -> None:
    """The agent's own code (:class:`Actions`) through this backend: pins (ReqNodeList, StartTime=now), a
    batch of deferrals, then an unpin (ReqNodeList cleared, deferred again) and a hand-over (ReqNodeList
    cleared, StartTime=now, ExcNodeList its kept_out) in the next cycle, a deferred held job released,
    and the requeue of a spot victim (its old pin cleared). Every effect read back: nothing refused."""
    from fabric_hpc.slurm.actions import Actions

    notes: list[tuple[str, dict[str, Any]]] = []
    acts = Actions(client, lambda what, **kw: notes.append((what, kw)))
    held = ["-N2", "--gres=gpu:1", "-H", "--comment=fabric"]
    a, b, c, d = (contract_cluster.sbatch(*held, wrap="true") for _ in range(4))
    done = acts.apply([], [{"job": a, "hosts": ["n7", "n10"]}, {"job": b, "hosts": ["n8", "n9"]}], {},
                      [c, d], 300)
    assert done.placed == [a, b] and not notes, notes
    for jid, pin in ((a, ("n7", "n10")), (b, ("n8", "n9"))):
        job = client.job(jid)
        assert job.req_nodes == pin and _begins_in(job, 0) and job.held, job
        listed = {j.job_id: j for j in client.jobs()}[jid]  # the stop's release of pins reads the list
        assert (listed.req_nodes, listed.begin_time) == (pin, job.begin_time), listed
    for jid in (c, d):
        job = client.job(jid)
        assert _begins_in(job, 300) and job.held and job.req_nodes == (), job
    acts.apply([], [], {b: "test"}, [c], 300, unpin=[a], kept_out=lambda j: "n[1-3]" if j == b else None)
    assert [w for w, _ in notes] == ["handoff"], notes
    job = client.job(a)
    assert job.req_nodes == () and _begins_in(job, 300) and job.held, job
    job = client.job(b)
    assert (job.req_nodes, job.exc_nodes) == ((), ("n1", "n2", "n3")) and _begins_in(job, 0), job
    client.release(c)  # released: still deferred (the agent's begin time), no longer held
    job = client.job(c)
    assert not job.held and job.pending and _begins_in(job, 300), job
    victim = contract_cluster.sbatch("-N2", "--gres=gpu:1", "--comment=fabric", "-w", "n11,n12",
                                     wrap="sleep 300")
    _wait(client, victim, {"RUNNING"})
    acts.pins[victim] = frozenset({"n11", "n12"})  # its -w stands for the agent's pin: one it remembers
    assert acts.apply([victim], [], {}, [], 300).requeued == [victim]
    assert [w for w, _ in notes] == ["handoff"], notes
    deadline = time.monotonic() + 30
    while (job := client.job(victim)).req_nodes or not job.pending:
        assert time.monotonic() < deadline, f"the requeued victim kept its pin: {job}"
        time.sleep(0.2)


def test_the_fields_the_agent_reads(client: SlurmClient, contract_cluster: Any) -> None:
    """Every field of a pending job the agent's placement reads, as Slurm has it, alike on every backend:
    its constraint (AND and OR), partition, QOS, time limit, memory, --exclusive, --no-requeue, -c, GPU
    type and count, reservation, the hold and its reason."""
    c = contract_cluster
    before = c.run(["sinfo", "-h", "-N", "-n", "n15", "-o", "%b"]).stdout.strip().replace("(null)", "")
    _node_features(c, "n15,n16", ",".join(f for f in (before, "fast", "big") if f))
    c.run(["scontrol", "create", "reservation", "ReservationName=contract_job", "StartTime=now",
           "Duration=60", "Nodes=n[5-6]", "Users=root", "Flags=IGNORE_JOBS"])
    try:
        cli = open_client("cli", env=c.env)
        one = c.sbatch("-N1", "--gres=gpu:h100:2", "-H", "--constraint=fast&big", "-p", "debug", "-t", "30",
                       "--mem=1000", "--exclusive", "--no-requeue", "-c", "2", "--comment=fabric",
                       wrap="true")
        two = c.sbatch("-N2", "--gres=gpu:1", "-H", "--constraint=fast|big", "--mem-per-cpu=100",
                       "--reservation=contract_job", "-t", "1:30:00", wrap="true")
        job = client.job(one)
        got = (job.features, job.partition, job.time_limit_min, job.mem_per_node)
        assert got == ("fast&big", "debug", 30, 1000), job
        got = (job.exclusive, job.requeue, job.gpu_type, job.gpus_per_node, job.nodes)
        assert got == (True, False, "h100", 2, 1), job
        assert job.held and job.reason == "JobHeldUser" and job.blocked == "held" and job.cpus >= 2, job
        three = c.sbatch("-N2", "--gpus=4", "-H", "--comment=fabric", wrap="true")
        job = client.job(three)  # fabric why's size (pyslurm: TresPerJob from squeue, pyslurm has none)
        assert (job.gpus_per_job, job.gpus_per_node, job.nodes) == (4, 0, 2), job
        job = client.job(two)
        got = (job.features, job.reservation, job.time_limit_min, job.mem_per_cpu)
        assert got == ("fast|big", "contract_job", 90, 100), job
        assert (job.exclusive, job.requeue, job.nodes, job.gpus_per_node) == (False, True, 2, 1), job
        for jid in (one, two, three):
            mine, theirs = client.job(jid), cli.job(jid)
            assert (mine.qos, mine.account, mine.user, mine.cpus) == (theirs.qos, theirs.account, theirs.user,
                                                                      theirs.cpus), (mine, theirs)
            listed = {j.job_id: j for j in client.jobs()}[jid]
            got = (listed.features, listed.reservation, listed.gpus_per_job)
            # pyslurm's list leaves --gpus=N unread (0): the agent's cycle does not use it
            per_job = 0 if type(client).__name__ in PYSLURM_CLIENTS else mine.gpus_per_job
            assert got == (mine.features, mine.reservation, per_job), listed
    finally:
        c.run(["scancel", "--user", str(os.getuid())], check=False)
        c.run(["scontrol", "delete", "ReservationName=contract_job"], check=False)
        _node_features(c, "n15,n16", before)


#: sbatch's GPU options -> (gpus_per_node, gpus_per_job, gpu_type) as every backend reads them: per node
#: is Slurm's TresPerNode, in all its TresPerJob (pyslurm: squeue's, pyslurm 25.11.2 has no reading of it);
#: per task (TresPerTask) is read by none, nor the type of --gpus=TYPE:N
GPU_FORMS = {("--gpus=16",): (0, 16, None), ("--gpus=h100:4",): (0, 4, None),
             ("--gpus-per-node=3",): (3, 0, None), ("--gres=gpu:2",): (2, 0, None),
             ("--gres=gpu:h100:2",): (2, 0, "h100"), ("--gpus-per-task=2", "--ntasks=3"): (0, 0, None),
             ("--gpus=4", "--gpus-per-node=2"): (2, 4, None), ("--gpus=2", "--gres=gpu:1"): (1, 2, None),
             ("--gpus=5", "--gpus-per-task=1", "-n5"): (0, 5, None)}


def test_the_gpu_request_of_each_form(client: SlurmClient, contract_cluster: Any) -> None:
    """Each way sbatch asks for GPUs reads alike on every backend, pending (held) and running, from one job
    and from the list: before, the pyslurm backend read no ``--gpus=N`` (``fabric slurm why`` gave a
    pending ``-N2 --gpus=16`` job no GPUs there)."""
    c = contract_cluster
    jobs = {}
    for form, want in GPU_FORMS.items():
        nodes = "-N1" if "--gpus-per-task=2" in form or "-n5" in form else "-N2"
        for hold in ("-H", None):
            jid = c.sbatch(*([hold] if hold else []), nodes, *form, "--comment=nofabric", wrap="sleep 300")
            jobs[jid] = (form, hold, want)
    try:
        for jid, (form, hold, want) in jobs.items():
            if hold is None:
                _wait(client, jid, {"RUNNING"})
        listed = {j.job_id: j for j in client.jobs()}
        # pyslurm's list leaves --gpus=N unread (one squeue of every job each agent cycle, for why alone)
        unread = type(client).__name__ in PYSLURM_CLIENTS
        for jid, (form, hold, want) in jobs.items():
            for job, per_job in ((client.job(jid), True), (listed[jid], not unread)):
                got = (job.gpus_per_node, job.gpus_per_job, job.gpu_type)
                assert got == (want if per_job else (want[0], 0, want[2])), (form, hold, job)
    finally:
        c.run(["scancel", *map(str, jobs)], check=False)


def _node_features(cluster: Any, hosts: str, feats: str) -> None:
    cluster.run(["scontrol", "update", f"NodeName={hosts}", f"AvailableFeatures={feats}",
                 f"ActiveFeatures={feats}"])


def test_the_agents_actions_on_jobs_that_ended_meanwhile(client: SlurmClient, contract_cluster: Any) -> None:
    """A job cancelled between the agent's view and its action (Slurm still knows it, or no longer does):
    the action does nothing and is no ``agent.failed`` record on any backend (a race, not a failure)."""
    from fabric_hpc.slurm.actions import Actions

    notes: list[tuple[str, dict[str, Any]]] = []
    acts = Actions(client, lambda what, **kw: notes.append((what, kw)))
    gone = [contract_cluster.sbatch("-N1", "--gres=gpu:1", "-H", "--comment=fabric", wrap="true")
            for _ in range(5)]
    contract_cluster.run(["scancel", *map(str, gone)])
    for jid in gone:
        _wait(client, jid, {"CANCELLED"})
    unknown = 9_999_990
    acts.apply([gone[0], unknown], [{"job": gone[1], "hosts": ["n3"]}, {"job": unknown, "hosts": ["n4"]}], {},
               [gone[2], gone[3], unknown], 300, unpin=[gone[4], unknown + 1])
    acts.apply([], [], {gone[1]: "test", unknown: "test"}, [gone[2]], 300, kept_out=lambda j: "n1")
    failed = [(kw["action"], kw["job"]) for w, kw in notes if w == "failed"]
    assert failed == [], failed
