"""The rest backend against the slurmrestd of Slurm 23.02, 23.11, 24.05 and 24.11, which the live tests
(Debian's 22.05, 25.11.7) never see (23.11.11 and 24.05.8 were run once: docs/slurm.md): what each serves,
what the client asks for and what it reads.

What SchedMD's sources say (tags slurm-23-02-7-1, slurm-23-11-10-1, slurm-24-05-8-1, slurm-24-11-6-1):

* Which ``/slurm/vX.Y.Z/`` each slurmrestd offers: without ``-s`` every openapi plugin is loaded
  (src/slurmrestd/slurmrestd.c: ``oas_specs`` NULL), and ``openapi/slurmctld`` serves one path set per
  data_parser plugin (``/slurm/{data_parser}/jobs/`` ...: src/slurmrestd/plugins/openapi/slurmctld/).
  23.02: src/plugins/openapi/v0.0.37, v0.0.38 (as 22.05's: no field changes), v0.0.39 (data_parser
  v0.0.39); 23.11: openapi/v0.0.38, v0.0.39, slurmctld with data_parser v0.0.39 and v0.0.40; 24.05:
  openapi/v0.0.39, slurmctld with v0.0.39–v0.0.41; 24.11: slurmctld with v0.0.40–v0.0.42.
* The paths are those of 25.11 (``/jobs/``, ``/job/{job_id}``, ``/job/submit``, ``/nodes/``,
  ``/reservations/``); an update is ``POST /job/{job_id}`` with a ``job_desc_msg`` (jobs.c
  ``_job_post_update``: ``DATA_PARSE(JOB_DESC_MSG_PTR, .., ctxt->query)``), a submit ``{"job": {..}}``
  (``JOB_SUBMIT_REQ``). The ``JOB_DESC_MSG`` fields fabric sends are in all of v0.0.40–v0.0.42 with the
  same parsers (``required_nodes``/``excluded_nodes`` ``CSV_STRING``: a list or a string;
  ``begin_time`` ``TIMESTAMP_NO_VAL``: a number; ``time_limit`` ``UINT32_NO_VAL``; ``environment``
  ``STRING_ARRAY``), except ``segment_size``: v0.0.41 on (parsers.c). An unknown field is a warning
  ("Ignoring unknown field", parsing.c) and the rest of the request is applied: a submit with
  ``segment_size`` to v0.0.40 would queue the job without it.
* ``errors[]``: ``description``, ``error_number``, ``error``, ``source``; ``warnings[]``:
  ``description``, ``source`` (``OPENAPI_ERROR``/``OPENAPI_WARNING``). A held submit warns twice
  ("Job submission resulted in non-zero return code: Job is in held state, pending scheduler
  release" and the notice alone: jobs.c ``_job_post_submit``/``_job_submit_rc``).
* Job, node and reservation records are those of the cli answers of the same data_parser
  (:mod:`tests.slurm.test_answers_23_24` builds them from the 25.11 golden answers).

They are served by a real HTTP server on loopback and read by the real :class:`RestClient`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.slurm.contract import SlurmError
from fabric_hpc.slurm.rest_backend import RestClient, UnsupportedVersion
from tests.slurm.test_answers_23_24 import GOLDEN, NOW, job_of, resv_answer

GOLDEN_2205 = GOLDEN.parent / "slurm-22.05"
#: release -> (the data_parser versions its slurmctld plugin serves, other openapi plugins' versions)
SERVES = {"23.02": ((), ("v0.0.37", "v0.0.38", "v0.0.39")),
          "23.11": (("v0.0.39", "v0.0.40"), ("v0.0.38", "v0.0.39")),
          "24.05": (("v0.0.39", "v0.0.40", "v0.0.41"), ("v0.0.39",)),
          "24.11": (("v0.0.40", "v0.0.41", "v0.0.42"), ())}
#: JOB_DESC_MSG fields fabric may send and each one's JSON types (parsers.c of v0.0.40–v0.0.42)
DESC_TYPES: dict[str, tuple[type, ...]] = {
    "script": (str,), "environment": (list,), "current_working_directory": (str,), "nodes": (str,),
    "name": (str,), "comment": (str,), "partition": (str,), "standard_output": (str,), "hold": (bool,),
    "time_limit": (int,), "begin_time": (int,), "required_nodes": (list, str), "excluded_nodes": (list, str),
    "tres_per_node": (str,), "kill_warning_signal": (str,), "kill_warning_delay": (int,),
    "kill_warning_flags": (list,), "segment_size": (int,)}
SEGMENT_FROM = "v0.0.41"


def _golden(name: str) -> Any:
    return json.loads((GOLDEN / name).read_text())


def _paths(versions: tuple[str, ...]) -> dict[str, Any]:
    ends = ("jobs/", "job/submit", "job/{job_id}", "nodes/", "reservations/")
    return {"paths": {f"/slurm/{v}/{end}": {} for v in versions for end in ends}}


#: fields whose parser checks the JSON type against its OpenAPI type and warns otherwise (parsing.c
#: ``_parse_check_openapi``, for ``PARSER_MODEL_SIMPLE``/``COMPLEX`` parsers with an OpenAPI format):
#: ``CSV_STRING``/``STRING_ARRAY`` (``addpsa``: array) in all; ``UINT32_NO_VAL``/``UINT16_NO_VAL`` are
#: ``addpss(.., OBJECT)`` in v0.0.40 only (``addpsp``, no check, from v0.0.41)
OAS_CHECKED = {"required_nodes": list, "excluded_nodes": list}
OAS_CHECKED_0040 = {"time_limit": dict, "kill_warning_delay": dict}


def _desc_warnings(version: str, desc: dict[str, Any]) -> list[dict[str, str]]:
    """What ``version``'s parser says of a job_desc_msg: unknown fields and OpenAPI type mismatches
    (warnings: the value is still applied), values it cannot parse (AssertionError)."""
    out = []
    checked = {**OAS_CHECKED, **(OAS_CHECKED_0040 if version == "v0.0.40" else {})}
    for key, value in desc.items():
        if key not in DESC_TYPES or (key == "segment_size" and version < SEGMENT_FROM):
            out.append({"description": f'Ignoring unknown field "{key}" of type {type(value).__name__} in '
                                       "DATA_PARSER_JOB_DESC_MSG", "source": f"#/{key}/"})
            continue
        if key in checked and not isinstance(value, checked[key]):
            out.append({"description": f"Expected OpenAPI type={checked[key].__name__} but got "
                                       f"{type(value).__name__}: {value!r}", "source": f"#/{key}/"})
        if isinstance(value, dict) and key in ("time_limit", "kill_warning_delay"):
            assert set(value) == {"set", "infinite", "number"}, value  # UINT64_NO_VAL's dictionary
            value = value["number"]
        if not isinstance(value, DESC_TYPES[key]) or isinstance(value, bool) != (bool in DESC_TYPES[key]):
            raise AssertionError(f"{version} cannot parse {key}={value!r}")
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise AssertionError(f"{version} cannot parse {key}={value!r}")
    return out


class Restd:
    """A stand-in slurmrestd of ``release`` started with ``versions`` on loopback."""

    def __init__(self, release: str, versions: tuple[str, ...]) -> None:
        self.release, self.versions, self.posts = release, versions, []
        self.held_submit = False
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                return None

            def _send(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                status, answer = owner.answer(self.command, self.path, body)
                raw = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_DELETE = _send

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if path == "/openapi/v3":
            return 200, _paths(self.versions)
        version, _, rest = path.removeprefix("/slurm/").partition("/")
        if version not in self.versions:
            return 404, {"errors": [{"description": "Unable to find requested URL endpoint",
                                     "error_number": 9001}]}
        if method == "POST":
            self.posts.append((path, body))
            return self._post(version, rest, body)
        return self._get(rest, method)

    def _get(self, rest: str, method: str) -> tuple[int, Any]:
        ok = {"errors": [], "warnings": [], "meta": {}}
        if rest == "jobs/":
            data = _golden("rest-jobs.json")
            return 200, {**data, "jobs": [job_of(self.release, j) for j in data["jobs"]]}
        if rest == "job/1" and method == "GET":
            data = _golden("rest-job.json")
            return 200, {**data, "jobs": [job_of(self.release, j) for j in data["jobs"]]}
        if rest == "job/99":
            error = {"description": "Unable to query JobId=99", "error_number": 2017,
                     "error": "Invalid job id specified", "source": "_op_handler_job"}
            return 500, {**ok, "jobs": [], "errors": [error]}
        if rest == "job/1":  # DELETE
            return 200, ok
        if rest == "nodes/":
            return 200, _golden("rest-nodes.json")
        if rest == "reservations/":
            return 200, resv_answer(self.release)
        raise AssertionError(f"unexpected GET {rest}")

    def _post(self, version: str, rest: str, body: Any) -> tuple[int, Any]:
        if rest == "job/submit":
            desc = body["job"]
            warnings = _desc_warnings(version, desc)
            if desc.get("hold"):
                note = "Job is in held state, pending scheduler release"
                warnings += [{"description": f"Job submission resulted in non-zero return code: {note}",
                              "source": "slurm_submit_batch_job()"},
                             {"description": note, "source": "slurm_submit_batch_job()"}]
            return 200, {"job_id": 42, "step_id": "batch", "job_submit_user_msg": "", "errors": [],
                         "warnings": warnings, "meta": {}}
        return 200, {"job_id": 0, "results": [], "errors": [], "warnings": _desc_warnings(version, body),
                     "meta": {}}


@pytest.fixture(params=["23.11", "24.05", "24.11"])
def restd(request: pytest.FixtureRequest) -> Iterator[Restd]:
    """Each release's slurmrestd as a site starts it: ``-s openapi/slurmctld`` (the docs' setup)."""
    server = Restd(request.param, SERVES[request.param][0])
    yield server
    server.close()


NEWEST = {"23.11": "v0.0.40", "24.05": "v0.0.41", "24.11": "v0.0.42"}


@pytest.mark.parametrize("release", sorted(SERVES))
def test_each_release_without_s_gets_a_version_it_serves(release: str) -> None:
    slurmctld, plugins = SERVES[release]
    server = Restd(release, tuple(sorted(set(slurmctld + plugins))))
    try:
        client = RestClient(server.url, token="t")
        assert client.version == NEWEST.get(release, "v0.0.38")  # 23.02: its openapi/v0.0.38, as 22.05's
    finally:
        server.close()


def test_the_slurmctld_plugin_of_each_release_is_spoken(restd: Restd) -> None:
    assert RestClient(restd.url, token="t").version == NEWEST[restd.release]


def test_nodes(restd: Restd) -> None:
    nodes = {n.name: n for n in RestClient(restd.url, token="t").nodes()}
    assert len(nodes) == 16
    n7 = nodes["n7"]
    assert (n7.state, n7.flags, n7.gpus, n7.gpu_type, n7.gpus_used) == ("mixed", (), 8, "h100", (0, 1, 2))
    assert (n7.partitions, n7.features, n7.cpus, n7.mem) == (("debug",), ("h100",), 8, 16384)


def test_jobs_states_gpus_times_and_limits(restd: Restd) -> None:
    client = RestClient(restd.url, token="t")
    jobs = {j.job_id: j for j in client.jobs()}
    placed, running, begin, held, resources = (jobs[i] for i in range(1, 6))
    assert (placed.state, placed.node_list, placed.req_nodes) == ("RUNNING", ("n7", "n10"), ("n7", "n10"))
    assert placed.gpus == {"n7": (0, 1, 2), "n10": (0, 1, 2)} and placed.gpus_per_node == 3
    assert placed.time_limit_min is None and placed.start_time == 1796313725.0 and placed.priority == 1
    assert (placed.partition, placed.exc_nodes, placed.dependency) == ("debug", (), "")
    assert running.gpus == {"n1": tuple(range(8))}
    assert (held.time_limit_min, held.priority, held.start_time) == (30, 0, None)
    assert (begin.state, begin.begin_time, begin.comment) == ("PENDING", 1796317322.0, "fabric:within=leaf")
    assert (resources.nodes, resources.gpus_per_node, resources.reason) == (16, 8, "Resources")
    assert client.job(1).gpus == placed.gpus
    with pytest.raises(NotFoundError):
        client.job(99)


def test_reservations(restd: Restd) -> None:
    found, ignored = RestClient(restd.url, token="t").reservations()
    by_name = {r.name: r for r in found}
    assert not ignored and (by_name["maint"].start, by_name["maint"].end) == (NOW + 600.0, NOW + 4200.0)
    assert by_name["maint"].nodes == ("n3", "n4")


def test_the_pin_update_is_what_each_parser_takes(restd: Restd) -> None:
    client = RestClient(restd.url, token="t")
    client.update(7, ReqNodeList="n[7,10]", StartTime="1796313800", ExcNodeList="n3")
    client.update(7, TimeLimit="1:00:00", Comment="c", Name="x")
    client.hold(7)
    client.release(7)
    v = NEWEST[restd.release]
    assert restd.posts[0] == (f"/slurm/{v}/job/7", {"required_nodes": ["n7", "n10"], "begin_time": 1796313800,
                                                    "excluded_nodes": ["n3"]})
    limit = {"set": True, "infinite": False, "number": 60} if v == "v0.0.40" else 60
    assert restd.posts[1][1] == {"time_limit": limit, "comment": "c", "name": "x"}
    assert [p[1] for p in restd.posts[2:]] == [{"hold": True}, {"hold": False}]
    client.cancel(1)


def test_submit_and_a_held_submit(restd: Restd) -> None:
    client = RestClient(restd.url, token="t")
    args = ["-N", "2", "--gres=gpu:3", "-t", "30", "-w", "n[1-2]", "--signal=B:USR1@60", "--begin=now+60",
            "-H"]
    assert client.submit("#!/bin/sh\ntrue\n", args) == 42
    desc = restd.posts[0][1]["job"]
    assert (desc["tres_per_node"], desc["required_nodes"]) == ("gres/gpu:3", ["n1", "n2"])
    assert isinstance(desc["begin_time"], int)
    if restd.release == "23.11":  # v0.0.40's UINT32_NO_VAL/UINT16_NO_VAL: an integer draws a warning
        assert (desc["time_limit"], desc["kill_warning_delay"]) == (
            {"set": True, "infinite": False, "number": 30}, {"set": True, "infinite": False, "number": 60})
    else:
        assert (desc["time_limit"], desc["kill_warning_delay"]) == (30, 60)
    assert desc["environment"][0].startswith("PATH=") and desc["hold"] is True


def test_segment_is_sent_only_where_the_parser_has_it(restd: Restd) -> None:
    client = RestClient(restd.url, token="t")
    if restd.release == "23.11":  # v0.0.40 would queue the job and ignore the segment
        with pytest.raises(ConfigError, match="segment") as info:
            client.submit("#!/bin/sh\n", ["-N", "2", "--segment=2"])
        assert "cli backend" in (info.value.hint or "") and not restd.posts
    else:
        assert client.submit("#!/bin/sh\n", ["-N", "2", "--segment=2"]) == 42
        assert restd.posts[0][1]["job"]["segment_size"] == 2


@pytest.mark.parametrize(("release", "versions", "fix"), [
    ("23.02", ("v0.0.39",), "-s openapi/v0.0.38"),          # -s openapi/v0.0.39
    ("23.11", ("v0.0.39",), "-d data_parser/v0.0.40"),      # -s openapi/slurmctld -d data_parser/v0.0.39
])
def test_an_unspoken_version_names_a_fix_the_release_has(release: str, versions: tuple[str, ...],
                                                         fix: str) -> None:
    server = Restd(release, versions)
    try:
        clear = "offers v0.0.39; fabric speaks v0.0.38 and v0.0.40"
        with pytest.raises(UnsupportedVersion, match=clear) as info:
            RestClient(server.url, token="t").jobs()
        assert fix in (info.value.hint or "")
    finally:
        server.close()


def test_23_02_reads_as_22_05_on_its_openapi_v0_0_38() -> None:
    """23.02's openapi/v0.0.38 writes what 22.05's does (git diff slurm-22-05-8-1 slurm-23-02-7-1: no field
    changes): the recorded 22.05 answers, read through the legacy paths."""
    server = Restd("23.02", SERVES["23.02"][1])
    server._get = lambda rest, method: (200, json.loads(  # type: ignore[method-assign]
        (GOLDEN_2205 / {"jobs": "rest-jobs.json", "nodes": "rest-nodes.json"}[rest]).read_text()))
    try:
        client = RestClient(server.url, token="t")
        assert client.legacy and len(client.nodes()) == 16
        assert {j.state for j in client.jobs()} >= {"RUNNING", "PENDING"}
    finally:
        server.close()


def test_slurm_errors_are_read(restd: Restd) -> None:
    with pytest.raises(SlurmError, match="Ignoring unknown field"):
        RestClient(restd.url, token="t")._call("POST", "/job/7", {"nodelist": "n3"})


def test_unpin_clears_the_pin_with_one_empty_name(restd: Restd) -> None:
    """The agent's unpin (and its stop's) is ``ReqNodeList=""``: slurmctld clears a pending job's
    required nodes only for an empty string (job_mgr.c: ``job_desc->req_nodes[0] == '\\0'``). ``CSV_STRING``
    parses ``[""]`` to one (xstrfmtcatat of ""), ``[]`` to NULL (no change), and a string draws
    "Expected OpenAPI type=array" (parsing.c ``_parse_check_openapi``)."""
    client = RestClient(restd.url, token="t")
    client.unpin(7)
    client.update(7, ExcNodeList=" ")
    assert [p[1] for p in restd.posts] == [{"required_nodes": [""]}, {"excluded_nodes": [""]}]


#: what 24.05.8's slurmrestd (data_parser v0.0.41, no AccountingStorageType) warned on every GET /job/
#: and /jobs/ of the live 24.05 tier (docs/slurm.md, the 24.05.8 row); it still dumped every job
NO_ACCOUNTING = "Slurm accounting storage is disabled. Could not query the following: [QOS]."


def test_24_05_no_accounting_notice_is_benign_on_a_read_only() -> None:
    from fabric_hpc.slurm.rest_answers import checked

    answer = {"jobs": [{"job_id": 7}], "errors": [],
              "warnings": [{"description": NO_ACCOUNTING, "source": ""}] * 2}
    assert checked(200, answer, "slurmrestd GET /jobs/", read=True)["jobs"] == [{"job_id": 7}]
    with pytest.raises(SlurmError, match="accounting storage is disabled"):
        checked(200, answer, "slurmrestd POST /job/7")
    other = {"warnings": [{"description": NO_ACCOUNTING.replace("[QOS]", "[QOS] and more")}]}
    with pytest.raises(SlurmError, match="and more"):
        checked(200, other, "slurmrestd GET /jobs/", read=True)


def test_24_05_refused_token_gets_the_jwt_fix() -> None:
    """24.05.8's slurmrestd answered `fabric slurm nodes --backend rest` with a garbage or wrongly signed
    JWT live with HTTP 500 "Failure to query nodes: Zero Bytes were transmitted or received"."""
    from fabric_hpc.slurm.rest_answers import JWT_HINT, checked

    for entry in ({"description": "Failure to query nodes", "error_number": 5005,
                   "error": "Zero Bytes were transmitted or received", "source": "_dump_nodes"},
                  {"description": "Failure to query nodes",
                   "error": "Zero Bytes were transmitted or received"}):
        with pytest.raises(SlurmError) as info:
            checked(500, {"errors": [entry], "nodes": []}, "slurmrestd GET /nodes/")
        assert info.value.hint and info.value.hint.startswith(JWT_HINT) and "24.05" in info.value.hint
    with pytest.raises(SlurmError) as other:
        refused = {"description": "Failure to query nodes", "error_number": 1007,
                   "error": "Unable to contact slurm controller (connect failure)"}
        checked(500, {"errors": [refused]}, "slurmrestd GET /nodes/")
    assert other.value.hint is None
