"""A client's memo of decoded records (``decode.Decoded``): a job or node record whose read fields are
unchanged since the client's last answer is not decoded again, and the memo gives exactly what the plain
decoders give, refuses what they refuse, and holds the last answer's records only."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from fabric_hpc.slurm import decode
from fabric_hpc.slurm.contract import SlurmError, queued
from fabric_hpc.slurm.replay import ReplayClient

DATA = Path(__file__).resolve().parents[1] / "slurm_integration" / "data"
JOB_ANSWERS = sorted([*DATA.glob("slurm-*/squeue.json"), *DATA.glob("slurm-*/scontrol-jobs.json"),
                      *DATA.glob("slurm-*/rest-jobs.json"), *DATA.glob("slurm-*/rest-job.json")])
NODE_ANSWERS = sorted([*DATA.glob("slurm-22.05/sinfo.json"), *DATA.glob("slurm-*/scontrol-nodes.json"),
                       *DATA.glob("slurm-*/rest-nodes.json")])


class _Reads(dict):
    """A record that notes every field asked for."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.asked.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)


def _records(path: Path, key: str) -> list[dict[str, Any]]:
    return json.loads(path.read_text())[key]


@pytest.mark.parametrize(("paths", "key", "decoder", "fields"),
                         [(JOB_ANSWERS, "jobs", decode.job, (*decode.JOB_FIELDS, "flags")),  # flags: a part
                          (NODE_ANSWERS, "nodes", decode.node, decode.NODE_FIELDS)], ids=["jobs", "nodes"])
def test_the_decoders_read_only_the_memos_fields(paths, key, decoder, fields) -> None:
    asked: set[str] = set()
    for path in paths:
        for raw in _records(path, key):
            for variant in (raw, {**raw, "active_features": []}):  # node(): features where none active
                rec = _Reads(variant)
                decoder(rec)
                asked |= rec.asked
    assert len(paths) >= 3
    assert asked <= set(fields), sorted(asked - set(fields))
    assert len(asked) >= len(fields) - 3  # the list is what they read, not a superset grown stale


def test_the_memo_decodes_as_the_plain_decoder_and_reuses_unchanged_jobs() -> None:
    raw = _records(DATA / "slurm-25.11" / "squeue.json", "jobs")
    memo = decode.Decoded(decode.job, decode.JOB_FIELDS)
    first = memo(raw)
    assert first == [decode.job(r) for r in raw] and len(memo) == len(raw)
    changed = copy.deepcopy(raw)
    changed[0]["comment"] = "fabric:tier=high"  # a field the decoder reads
    changed[1]["last_sched_evaluation"] = {"set": True, "infinite": False, "number": 1}  # one it does not
    changed[2]["job_state"] = ["COMPLETING"]
    second = memo(changed)
    assert second == [decode.job(r) for r in changed]
    assert second[0].comment == "fabric:tier=high" and second[0] is not first[0]
    assert second[2].state == "COMPLETING"
    assert second[1] is first[1] and second[3] is first[3]  # unchanged in what is read: not decoded again
    memo(changed[:1])
    assert len(memo) == 1  # the last answer's records only


@pytest.mark.parametrize(("field", "good", "bad"), [("requeue", True, 1), ("node_count", 1, True),
                                                     ("user_id", 0, False)])
def test_values_equal_in_python_but_not_to_the_decoder_are_not_taken_for_each_other(field, good, bad) -> None:
    raw = _records(DATA / "slurm-22.05" / "squeue.json", "jobs")[0]
    memo = decode.Decoded(decode.job, decode.JOB_FIELDS)
    assert memo([{**raw, field: good}]) == [decode.job({**raw, field: good})]
    assert {**raw, field: good} == {**raw, field: bad}  # the same dict to Python
    with pytest.raises(SlurmError, match=field):
        decode.job({**raw, field: bad})
    with pytest.raises(SlurmError, match=field):
        memo([{**raw, field: bad}])


def test_an_absent_field_is_not_taken_for_a_null_one() -> None:
    raw = _records(DATA / "slurm-25.11" / "scontrol-nodes.json", "nodes")[0]
    memo = decode.Decoded(decode.node, decode.NODE_FIELDS)
    assert memo([{**raw, "name": None}])[0].name == ""  # null: the default, as the decoder has it
    gone = {k: v for k, v in raw.items() if k != "name"}
    with pytest.raises(SlurmError, match="no 'name' field"):
        memo([gone])


def test_the_replay_client_answers_the_same_with_its_memo() -> None:
    d = DATA / "slurm-25.11"
    nodes, jobs = (d / "scontrol-nodes.json").read_text(), (d / "squeue.json").read_text()
    client = ReplayClient(nodes, jobs)
    plain_nodes = decode.nodes_answer(json.loads(nodes), "nodes")
    plain_jobs = queued(decode.jobs_answer(json.loads(jobs), "jobs"))
    for _ in range(2):
        assert client.nodes() == plain_nodes
        assert client.jobs() == plain_jobs
    assert len(client.decoded.nodes) == len(plain_nodes) and len(client.decoded.jobs) == len(plain_jobs)


def test_only_the_segment_flags_of_a_jobs_flags_are_read_and_kept() -> None:
    """25.11 job flags such as BACKFILL_ATTEMPTED change from cycle to cycle: the memo keys only the segment
    flags the decoder reads, so such a change reuses the job, and --spread-segments does not."""
    raw = _records(DATA / "slurm-25.11" / "squeue.json", "jobs")[2]
    memo = decode.Decoders().jobs
    (first,) = memo([{**raw, "flags": ["USING_DEFAULT_QOS"]}])
    (again,) = memo([{**raw, "flags": ["USING_DEFAULT_QOS", "BACKFILL_ATTEMPTED"]}])
    assert again is first and first.segment_flags == ()
    (spread,) = memo([{**raw, "flags": ["BACKFILL_ATTEMPTED", "SPREAD_SEGMENTS"]}])
    assert spread is not first and spread.segment_flags == ("SPREAD_SEGMENTS",)
    assert spread == decode.job({**raw, "flags": ["SPREAD_SEGMENTS"]})
    with pytest.raises(SlurmError, match="flags"):
        memo([{**raw, "flags": [1]}])
