"""``--exclusive`` on Slurm 26.05, replayed from its answers (``data/slurm-26.05``, recorded live from
26.05.3 by ``python -m tests.slurm_integration.record_exclusive``; 26.05 is not a tier of ``make test``).

26.05's default data_parser, v0.0.45, writes a job's ``shared`` as its removed-field marker ``[]`` for every
job (parsers.c of slurm-26-05-3-1, JOB_INFO: ``add_removed(JOB_SHARED, "shared", ..)``) and says
``--exclusive`` nowhere else in a job record. Before, the agent read every 26.05 job as shareable and pinned
an ``--exclusive`` gang onto hosts where other jobs ran. Now the cli backend reads jobs again with
``--json=v0.0.44`` (which 26.05 has: ``"shared": ["none"]``), the rest backend speaks v0.0.44 where offered,
and the ``scontrol show job`` text reader takes 26.05's ``Exclusive=NODE`` (its ``OverSubscribe=NO`` is
every job's).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from fabric_hpc.slurm import decode
from fabric_hpc.slurm.cli_backend import CliClient, job_from_scontrol
from fabric_hpc.slurm.rest_backend import choose_version

DATA = Path(__file__).resolve().parent / "data" / "slurm-26.05"
JOBS = json.loads((DATA / "meta.json").read_text())["jobs"]


def _commands(tmp_path: Path, *, has_v44: bool = True) -> tuple[dict[str, str], Path]:
    """Stand-in ``squeue``/``scontrol`` printing 26.05's recorded answers for the option asked (each call's
    words logged); without v0.0.44 they answer ``--json=v0.0.44`` as 26.05 answered a parser it lacks."""
    log = tmp_path / "calls.log"
    lacking = (f'cat "{DATA}/squeue-v0.0.41.stderr" >&2; exit 1' if not has_v44 else
               "true")
    for name, default, older in (("squeue", "squeue.json", "squeue-v0.0.44.json"),
                                 ("scontrol", "scontrol-job.json", "scontrol-job-v0.0.44.json")):
        path = tmp_path / name
        path.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\n'
                        f'case "$*" in *--json=v0.0.44*) {lacking}; cat "{DATA}/{older}";;\n'
                        f'  *--json*) cat "{DATA}/{default}";; *) exit 2;; esac\n')
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{tmp_path}:{os.environ.get('PATH', '/usr/bin:/bin')}"}, log


def test_the_recorded_answers_say_what_the_fix_relies_on() -> None:
    default = json.loads((DATA / "squeue.json").read_text())
    older = json.loads((DATA / "squeue-v0.0.44.json").read_text())
    assert (decode.data_parser(default), decode.data_parser(older)) == ((0, 0, 45), (0, 0, 44))
    assert {j["job_id"]: j["shared"] for j in default["jobs"]} == dict.fromkeys(JOBS.values(), [])
    assert {j["job_id"]: j["shared"] for j in older["jobs"]} == {
        JOBS["exclusive"]: ["none"], JOBS["plain"]: [], JOBS["user"]: ["user"]}


def test_cli_jobs_say_which_job_is_exclusive(tmp_path: Path) -> None:
    env, log = _commands(tmp_path)
    client = CliClient(env)
    for _ in range(2):
        jobs = {j.job_id: j for j in client.jobs()}
        assert [jobs[JOBS[k]].exclusive for k in ("exclusive", "plain", "user")] == [True, False, False]
    # the default's answer told v0.0.45 once; every later read asks v0.0.44 directly
    assert log.read_text().splitlines() == ["squeue --json", "squeue --json=v0.0.44", "squeue --json=v0.0.44"]


def test_cli_one_job_says_exclusive(tmp_path: Path) -> None:
    env, log = _commands(tmp_path)
    client = CliClient(env)
    assert client.job(JOBS["exclusive"]).exclusive
    assert [j.exclusive for j in client.jobs() if j.job_id == JOBS["exclusive"]] == [True]
    ask = f"scontrol show job --json=v0.0.44 {JOBS['exclusive']}"
    assert log.read_text().splitlines() == [f"scontrol show job --json {JOBS['exclusive']}", ask,
                                            "squeue --json=v0.0.44"]


def test_a_slurm_without_v0_0_44_keeps_its_default(tmp_path: Path) -> None:
    """A later Slurm that dropped v0.0.44 (its words as 26.05 refuses v0.0.41): the default's answer is read,
    and v0.0.44 is not asked again."""
    env, log = _commands(tmp_path, has_v44=False)
    client = CliClient(env)
    assert len(client.jobs()) == len(client.jobs()) == 3
    assert log.read_text().splitlines() == ["squeue --json", "squeue --json=v0.0.44", "squeue --json"]


def test_rest_speaks_v0_0_44_on_26_05() -> None:
    paths = json.loads((DATA / "rest-openapi-paths.json").read_text())["paths"]
    assert any(p.startswith("/slurm/v0.0.45/") for p in paths)
    assert choose_version(paths) == "v0.0.44"


def test_scontrol_text_says_exclusive_by_its_exclusive_word() -> None:
    lines = (DATA / "scontrol-jobs-d-o.txt").read_text().splitlines()
    assert all(" OverSubscribe=NO " in line for line in lines)  # every 26.05 job's
    got = {j.job_id: j.exclusive for j in map(job_from_scontrol, lines)}
    assert got == {JOBS["exclusive"]: True, JOBS["plain"]: False, JOBS["user"]: False}


def _switchable(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A stand-in ``squeue`` whose Slurm changes under the client: ``--json`` prints the file named in
    ``default`` (25.11-like: the v0.0.44 answer; 26.05: the v0.0.45 one), and ``--json=v0.0.44`` fails as
    26.05 fails a parser it lacks while a file ``no44`` exists."""
    log = tmp_path / "calls.log"
    (tmp_path / "default").write_text("squeue-v0.0.44.json")
    path = tmp_path / "squeue"
    path.write_text(f'#!/bin/sh\necho "squeue $*" >> "{log}"\n'
                    f'case "$*" in *--json=v0.0.44*) if [ -e "{tmp_path}/no44" ]; then '
                    f'cat "{DATA}/squeue-v0.0.41.stderr" >&2; exit 1; fi;\n'
                    f'  cat "{DATA}/squeue-v0.0.44.json";;\n'
                    f'  *--json*) cat "{DATA}/$(cat "{tmp_path}/default")";; *) exit 2;; esac\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return {"PATH": f"{tmp_path}:{os.environ.get('PATH', '/usr/bin:/bin')}"}, log


def _exclusive(client: CliClient) -> list[bool]:
    jobs = {j.job_id: j for j in client.jobs()}
    return [jobs[JOBS[k]].exclusive for k in ("exclusive", "plain", "user")]


def test_an_upgrade_to_26_05_under_a_running_client_is_seen(tmp_path: Path) -> None:
    """An agent started on 25.11 (plain --json, v0.0.44) and Slurm upgraded to 26.05 in place: every plain
    answer is checked, so the next read says --exclusive again (it latched plain --json for its life)."""
    env, log = _switchable(tmp_path)
    client = CliClient(env)
    assert _exclusive(client) == [True, False, False]
    (tmp_path / "default").write_text("squeue.json")  # 26.05 now
    assert _exclusive(client) == _exclusive(client) == [True, False, False]
    assert log.read_text().splitlines() == ["squeue --json", "squeue --json", "squeue --json=v0.0.44",
                                            "squeue --json=v0.0.44"]


def test_a_parser_dropped_under_a_running_client_falls_back_and_says_so(tmp_path: Path, caplog) -> None:
    """v0.0.44 chosen, then gone (a later Slurm): the read falls back to --json instead of failing every
    cycle, and one slurm.jobs_exclusive_unread event says --exclusive is no longer seen."""
    import logging

    env, log = _switchable(tmp_path)
    (tmp_path / "default").write_text("squeue.json")
    client = CliClient(env)
    assert _exclusive(client) == [True, False, False]
    (tmp_path / "no44").write_text("")
    with caplog.at_level(logging.INFO, logger="fabric_hpc.events"):
        assert _exclusive(client) == _exclusive(client) == [False, False, False]
    seen = [r.event for r in caplog.records if hasattr(r, "event")]
    said = [e for e in seen if e["event"] == "slurm.jobs_exclusive_unread"]
    assert len(said) == 1 and said[0]["data_parser"] == "v0.0.45" and "--exclusive" in said[0]["hint"]
    assert log.read_text().splitlines() == ["squeue --json", "squeue --json=v0.0.44", "squeue --json=v0.0.44",
                                            "squeue --json", "squeue --json"]


def test_a_slurmrestd_offering_only_v0_0_45_is_said_once(caplog) -> None:
    """slurmrestd started with ``-d data_parser/v0.0.45`` alone: the rest client speaks it (nothing older
    is offered) and says once that --exclusive is not seen, with the fix."""
    import logging

    from fabric_hpc.slurm.rest_backend import RestClient
    from tests.slurm.test_rest_answers_23_24 import Restd

    server = Restd("24.11", ("v0.0.45",))
    try:
        client = RestClient(server.url, token="t")
        with caplog.at_level(logging.INFO, logger="fabric_hpc.events"):
            assert client.version == client.version == "v0.0.45"
    finally:
        server.close()
    said = [r.event for r in caplog.records
            if getattr(r, "event", {}).get("event") == "slurm.jobs_exclusive_unread"]
    assert len(said) == 1 and said[0]["backend"] == "rest" and "data_parser/v0.0.44" in said[0]["hint"]
