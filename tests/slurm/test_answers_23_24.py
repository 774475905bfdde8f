"""The cli backend reads the JSON answers of Slurm 23.02, 23.11, 24.05 and 24.11 (data_parser v0.0.39 to
v0.0.42), which the live tests (Debian's 22.05, 25.11.7) never see.

Each version's answers are built from the 25.11.7 golden answers
(``tests/slurm_integration/data/slurm-25.11``) by changing only what differs in the fields fabric reads,
each change citing SchedMD's source (git tag, file:
``src/plugins/data_parser/v0.0.4X/parsers.c``, its ``add_parse`` tables and ``DUMP_FUNC`` s). They are then
answered by stand-in ``squeue``/``sinfo``/``scontrol``/``sshare`` commands on ``PATH`` and read by the real
:class:`~fabric_hpc.slurm.cli_backend.CliClient` and :func:`~fabric_hpc.slurm.sshare.read_usage`, as the agent
reads them.

What the sources say (fields fabric reads; the rest of each answer is left as 25.11 wrote it):

* all four: ``gres_detail`` and node ``gres_used`` are the same strings (``gpu:h100:3(IDX:0-2)``:
  23.02 src/slurmctld/gres_ctld.c, 24.05+ src/stepmgr/gres_stepmgr.c); node ``state``, ``features``,
  ``active_features``, ``partitions`` are lists (v0.0.39 ``CSV_LIST``, v0.0.40+ ``CSV_STRING``); ``shared``
  is a flag list (``JOB_SHARED``); ``time_limit``/``priority``/``node_count``/``cpus`` are
  ``{set, infinite, number}`` (``UINT32_NO_VAL``); ``sinfo --json`` has per-partition ``sinfo`` records and
  no ``nodes`` list (23.02: ``DATA_DUMP_CLI(SINFO_DATA_LIST, .., "sinfo", ..)`` in src/sinfo/sinfo.c; 23.11+:
  ``OPENAPI_SINFO_RESP``); ``segment_size`` is not in the job (first in v0.0.43).
* 23.02 (v0.0.39): ``job_state`` is one string, ``job_state_string()`` (src/common/slurm_protocol_defs.c):
  a flag's name in place of the base state when a flag is set (``SPECIAL_EXIT``, ``REQUEUE_HOLD``,
  ``STOPPED``...); ``submit_time``/``eligible_time``/``start_time`` and a reservation's ``start_time``/
  ``end_time`` are plain integers, ``null`` when NO_VAL or INFINITE (``UINT64``); ``job_resources`` is the
  old ``allocated_nodes`` layout; ``sshare`` has no ``--json`` (src/sshare/sshare.c: none until 23.11).
* 23.11 (v0.0.40): ``job_state`` a list (``JOB_STATE`` flag array, base first), times
  ``{set, infinite, number}`` (``TIMESTAMP_NO_VAL``); ``job_resources`` still the old layout;
  ``sshare --json`` as 25.11 for the fields fabric reads (``type`` flag list, ``name``, ``parent``,
  ``usage`` (UINT64),  ``shares`` (UINT32_NO_VAL), ``tres.usage[].value`` (FLOAT128: a plain float)).
* 24.05 (v0.0.41), 24.11 (v0.0.42): as 23.11, but ``job_resources`` has the new layout
  (``select_type``, ``nodes: {count, select_type, list, whole, allocation}``, ``cpus``, ``threads_per_core``),
  which fabric does not read (it takes the nodes from ``nodes`` and the GPUs from ``gres_detail``).
"""

from __future__ import annotations

import copy
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from fabric_hpc.slurm.cli_backend import CliClient
from fabric_hpc.slurm.reservations import FOREVER
from fabric_hpc.slurm.sshare import read_usage

GOLDEN = Path(__file__).resolve().parents[1] / "slurm_integration" / "data" / "slurm-25.11"
VERSIONS = ("23.02", "23.11", "24.05", "24.11")
NOW = 1796313722  # the golden answers' time


def _golden(name: str) -> Any:
    return json.loads((GOLDEN / name).read_text())


def _plain(value: Any) -> Any:
    """v0.0.39 ``UINT64`` (parsers.c ``DUMP_FUNC(UINT64)``, slurm-23-02-8-1): the number, or null for
    NO_VAL/INFINITE, where 25.11 writes ``{set, infinite, number}``."""
    if isinstance(value, dict):
        return value["number"] if value["set"] and not value["infinite"] else None
    return value


def _number(n: int | None, *, infinite: bool = False) -> dict[str, Any]:
    return {"set": n is not None, "infinite": infinite, "number": n or 0}


def _old_job_resources(res: dict[str, Any]) -> dict[str, Any]:
    """v0.0.39/v0.0.40 ``JOB_RES`` (parsers.c of slurm-23-02-8-1 and slurm-23-11-11-1: ``nodes``,
    ``allocated_cores``, ``allocated_cpus``, ``allocated_hosts``, ``allocated_nodes`` of
    ``JOB_RES_NODES``)."""
    alloc = res["nodes"]["allocation"]
    return {"nodes": res["nodes"]["list"], "allocated_cores": res["cpus"], "allocated_cpus": res["cpus"],
            "allocated_hosts": res["nodes"]["count"],
            "allocated_nodes": [{"sockets": {"0": {"cores": {"0": "allocated"}}}, "nodename": a["name"],
                                 "cpus_used": 0, "memory_used": 0, "memory_allocated": 0} for a in alloc]}


#: v0.0.39 ``job_state``: job_state_string() of slurm-23-02-8-1 (src/common/slurm_protocol_defs.c) names the
#: first flag set (COMPLETING, STAGE_OUT, CONFIGURING, RESIZING, REQUEUED, REQUEUE_FED, REQUEUE_HOLD,
#: SPECIAL_EXIT, STOPPED, REVOKED, RESV_DEL_HOLD, SIGNALING) and the base state only where none is
_STRING_ORDER = ("COMPLETING", "STAGE_OUT", "CONFIGURING", "RESIZING", "REQUEUED", "REQUEUE_FED",
                 "REQUEUE_HOLD", "SPECIAL_EXIT", "STOPPED", "REVOKED", "RESV_DEL_HOLD", "SIGNALING")


def _state_string(states: list[str]) -> str:
    return next((f for f in _STRING_ORDER if f in states[1:]), states[0])


def job_of(version: str, j: dict[str, Any]) -> dict[str, Any]:
    """A 25.11 job record as ``version`` writes it."""
    j = copy.deepcopy(j)
    j.pop("segment_size", None)  # first in v0.0.43 (not in v0.0.42's JOB_INFO table, slurm-24-11-7-1)
    if version in ("23.02", "23.11") and j.get("job_resources"):
        j["job_resources"] = _old_job_resources(j["job_resources"])
    if version == "23.02":
        j["job_state"] = _state_string(j["job_state"])  # v0.0.39 DUMP_FUNC(JOB_STATE)
        for key in ("submit_time", "eligible_time", "start_time"):  # v0.0.39 add_parse(UINT64, ..)
            j[key] = _plain(j[key])
    return j


def jobs_answer(version: str, extra: list[dict[str, Any]] = ()) -> dict[str, Any]:
    data = _golden("squeue.json")
    data["jobs"] = [job_of(version, j) for j in data["jobs"]] + list(extra)
    return data


def resv_answer(version: str) -> dict[str, Any]:
    """``scontrol show reservation --json``: ``reservations`` (src/scontrol/info_res.c of each tag) with
    ``name``, ``node_list``, ``flags`` (a flag list) and ``start_time``/``end_time`` (v0.0.39 ``UINT64``,
    null when INFINITE; v0.0.40+ ``TIMESTAMP_NO_VAL``)."""
    records = [{"name": "maint", "node_list": "n[3-4]", "flags": ["MAINT", "SPEC_NODES"],
                "start_time": _number(NOW + 600), "end_time": _number(NOW + 4200)},
               {"name": "forever", "node_list": "n16", "flags": ["SPEC_NODES"],
                "start_time": _number(NOW - 60), "end_time": _number(None, infinite=True)}]
    if version == "23.02":
        for r in records:
            r["start_time"], r["end_time"] = _plain(r["start_time"]), _plain(r["end_time"])
    return {"reservations": records, "meta": {}, "errors": [], "warnings": []}


def _script(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _commands(tmp_path: Path, version: str, jobs: dict[str, Any]) -> dict[str, str]:
    """Stand-in Slurm commands printing ``version``'s answers; the environment to run them."""
    d = tmp_path / version
    d.mkdir()
    (d / "squeue.json").write_text(json.dumps(jobs))
    (d / "sinfo.json").write_text((GOLDEN / "sinfo.json").read_text())
    (d / "nodes.json").write_text((GOLDEN / "scontrol-nodes.json").read_text())  # same node fields in all
    (d / "resv.json").write_text(json.dumps(resv_answer(version)))
    (d / "sshare.json").write_text((GOLDEN / "sshare.json").read_text())
    (d / "sshare-P.txt").write_text((GOLDEN / "sshare-P.txt").read_text())
    _script(d / "squeue", f'cat "{d}/squeue.json"\n')
    _script(d / "sinfo", f'cat "{d}/sinfo.json"\n')
    _script(d / "scontrol", f'case "$2" in nodes) cat "{d}/nodes.json";; reservation) cat "{d}/resv.json";;\n'
                            f'job) cat "{d}/squeue.json";; *) exit 2;; esac\n')
    if version == "23.02":  # getopt_long's words for an option sshare 23.02 does not have
        _script(d / "sshare", f'case "$*" in *--json*) echo "sshare: unrecognized option \'--json\'" >&2; '
                              f'exit 1;; esac\ncat "{d}/sshare-P.txt"\n')
    else:
        _script(d / "sshare", f'cat "{d}/sshare.json"\n')
    return {"PATH": f"{d}:{os.environ.get('PATH', '/usr/bin:/bin')}"}


@pytest.fixture(params=VERSIONS)
def version(request: pytest.FixtureRequest) -> str:
    return request.param


def test_nodes_come_from_scontrol_with_each_nodes_gpus(tmp_path: Path, version: str) -> None:
    client = CliClient(_commands(tmp_path, version, jobs_answer(version)))
    nodes = {n.name: n for n in client.nodes()}
    assert len(nodes) == 16
    assert client._scontrol_nodes  # sinfo --json had no node list: scontrol asked, and asked directly next
    n7 = nodes["n7"]
    assert (n7.state, n7.flags, n7.gpus, n7.gpu_type, n7.gpus_used) == ("mixed", (), 8, "h100", (0, 1, 2))
    assert (n7.cpus, n7.cpus_alloc, n7.mem) == (8, 1, 16384)
    assert (n7.partitions, n7.features) == (("debug",), ("h100",))
    assert nodes["n1"].gpus_used == tuple(range(8))
    assert nodes["n2"].gpus_used == () and nodes["n2"].state == "idle"


def test_jobs_states_gpus_times_and_limits(tmp_path: Path, version: str) -> None:
    jobs = {j.job_id: j for j in CliClient(_commands(tmp_path, version, jobs_answer(version))).jobs()}
    placed, running, begin, held, resources = (jobs[i] for i in range(1, 6))
    assert (placed.state, placed.flags, placed.node_list) == ("RUNNING", (), ("n7", "n10"))
    assert placed.gpus == {"n7": (0, 1, 2), "n10": (0, 1, 2)}
    assert (placed.gpus_per_node, placed.nodes, placed.cpus, placed.req_nodes) == (3, 2, 2, ("n7", "n10"))
    assert running.gpus == {"n1": tuple(range(8))}
    assert placed.start_time == 1796313725.0 and placed.submit_time > 0
    assert placed.time_limit_min is None  # infinite: unlimited
    assert held.time_limit_min == 30 and held.priority == 0 and held.start_time is None
    assert held.begin_time is None  # eligible_time 0: unknown
    assert (begin.state, begin.gpus, begin.node_list, begin.begin_time) == ("PENDING", {}, (), 1796317322.0)
    assert begin.comment == "fabric:within=leaf"
    assert (resources.nodes, resources.gpus_per_node, resources.reason) == (16, 8, "Resources")
    assert all(j.segment_size == 0 and not j.exclusive and j.requeue for j in jobs.values())


def test_one_job_by_scontrol_json(tmp_path: Path, version: str) -> None:
    client = CliClient(_commands(tmp_path, version, jobs_answer(version)))
    assert client.job(1).gpus == {"n7": (0, 1, 2), "n10": (0, 1, 2)}
    assert not client._job_squeue  # scontrol show job --json exists since 23.02


def test_reservations(tmp_path: Path, version: str) -> None:
    found, ignored = CliClient(_commands(tmp_path, version, jobs_answer(version))).reservations()
    assert not ignored
    by_name = {r.name: r for r in found}
    assert (by_name["maint"].start, by_name["maint"].end) == (NOW + 600.0, NOW + 4200.0)
    assert by_name["maint"].nodes == ("n3", "n4") and "MAINT" in by_name["maint"].flags
    assert by_name["forever"].end == FOREVER and by_name["forever"].nodes == ("n16",)


def test_sshare_usage(tmp_path: Path, version: str) -> None:
    """23.02 has no ``sshare --json`` (``-P`` is asked); 23.11+ answer as 25.11 for what fabric reads."""
    client = CliClient(_commands(tmp_path, version, jobs_answer(version)))
    found = read_usage(client.run)
    assert found.unit == "gpu_seconds" and set(found.usage) >= {"alpha"}
    assert found.usage["alpha"] == pytest.approx(160.0, abs=60.0)  # -P prints whole GPU-minutes


#: pending jobs held with a state flag (slurm-23-02-8-1 src/slurmctld):
#: ``scontrol requeuehold State=SpecialExit`` (job_mgr.c ``_job_requeue_op``: SPECIAL_EXIT), too many failed
#: launches (``_handle_requeue_limit``: REQUEUE_HOLD), the reservation it names deleted or invalid
#: (reservation.c: RESV_DEL_HOLD)
HELD_FLAGS = (("SPECIAL_EXIT", "JobHeldUser"), ("REQUEUE_HOLD", "JobHoldMaxRequeue"),
              ("RESV_DEL_HOLD", "ReservationDeleted"))


@pytest.mark.parametrize(("flag", "reason"), HELD_FLAGS)
def test_a_held_pending_job_reads_alike_in_every_version(tmp_path: Path, version: str, flag: str,
                                                         reason: str) -> None:
    """23.02 writes such a job's state as the flag's name alone (``"SPECIAL_EXIT"``), 23.11+ as
    ``["PENDING", "SPECIAL_EXIT"]``: both are a pending job with that flag, listed by ``jobs()`` (not a
    finished one, which SPECIAL_EXIT alone read as), with no nodes."""
    held = copy.deepcopy(_golden("squeue.json")["jobs"][3])
    held.update(job_id=6, job_state=["PENDING", flag], state_reason=reason, nodes="n3", gres_detail=[])
    client = CliClient(_commands(tmp_path, version, jobs_answer(version, [job_of(version, held)])))
    if version == "23.02":
        assert json.loads((tmp_path / version / "squeue.json").read_text())["jobs"][-1]["job_state"] == flag
    jobs = {j.job_id: j for j in client.jobs()}
    assert 6 in jobs, f"{flag} job left out of jobs()"
    assert (jobs[6].state, jobs[6].flags, jobs[6].reason) == ("PENDING", (flag,), reason)
    assert jobs[6].node_list == ()
    assert jobs[6].pending and not jobs[6].active


def test_a_requeued_job_still_completing_holds_its_nodes_in_every_version(tmp_path: Path,
                                                                          version: str) -> None:
    """``scontrol requeue`` of a running job: PENDING + REQUEUED + COMPLETING until its epilog ends; v0.0.40+
    list the flags in their flag table's order (REQUEUED before COMPLETING), 23.02 names COMPLETING alone."""
    placed = copy.deepcopy(_golden("squeue.json")["jobs"][0])
    placed.update(job_id=7, job_state=["PENDING", "REQUEUED", "COMPLETING"], state_reason="BeginTime")
    client = CliClient(_commands(tmp_path, version, jobs_answer(version, [job_of(version, placed)])))
    job = {j.job_id: j for j in client.jobs()}[7]
    assert (job.state, job.node_list, job.active, job.pending) == ("COMPLETING", ("n7", "n10"), True, False)
    assert job.gpus == {"n7": (0, 1, 2), "n10": (0, 1, 2)}
