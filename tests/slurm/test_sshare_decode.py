"""Decoding ``sshare`` (Slurm's fairshare usage): golden answers recorded from the live daemons of both tiers
(tests/slurm_integration/test_slurm_usage_live.py with FABRIC_RECORD_SSHARE=1) and malformed ones."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from fabric_hpc.slurm.contract import SlurmError
from fabric_hpc.slurm.sshare import decode_json, decode_parsable, read_usage
from fabric_hpc.slurm.usage import AgentUsage
from fabric_hpc.slurm.usage_source import UsageSource

DATA = Path(__file__).resolve().parents[1] / "slurm_integration" / "data"
# the recorded run: alpha held 8 GPUs and beta 1 GPU for 20 s (tests/slurm_integration/test_slurm_usage_live.py)
HEADER = "Account|User|RawShares|RawUsage|GrpTRESRaw"


@pytest.mark.parametrize("tier", ["slurm-22.05", "slurm-25.11"])
def test_recorded_parsable_answer_in_whole_gpu_minutes(tier):
    got = decode_parsable((DATA / tier / "sshare-P.txt").read_text())
    assert got.unit == "gpu_seconds"
    # 160 GPU-seconds print as 2 whole GPU-minutes, 20 GPU-seconds as 0; root's own user row used nothing
    assert got.usage == {"alpha": 120.0, "beta": 0.0, "root": 0.0}
    assert got.shares == {"alpha": 1, "beta": 1}  # the accounts' own rows; root has none


def test_recorded_json_answer_in_gpu_seconds():
    got = decode_json(json.loads((DATA / "slurm-25.11" / "sshare.json").read_text()))
    assert got.unit == "gpu_seconds" and set(got.usage) == {"alpha", "beta", "root"}
    assert got.usage["alpha"] == pytest.approx(160, rel=0.01) and got.usage["beta"] == pytest.approx(20, rel=0.01)
    assert got.usage["root"] == 0.0  # the root account row (sum of its children) is not counted again
    assert got.shares == {"alpha": 1, "beta": 1}  # root's row: shares unset; user rows' shares not taken


def test_user_rows_of_one_account_add_up_and_parents_are_not_counted_twice():
    out = "\n".join([HEADER, "root|||500|gres/gpu=9", " phys||5|500|gres/gpu=9", "  phys|ann|1|100|gres/gpu=3",
                     "  phys|bob|parent|400|cpu=1,gres/gpu=6", " chem||parent|0|gres/gpu=0", ""])
    got = decode_parsable(out)
    assert got.usage == {"phys": 540.0} and got.shares == {"phys": 5}  # chem: fairshare=parent


def test_without_gpu_accounting_raw_usage_is_used_in_billing_seconds():
    out = "\n".join([HEADER, "root|||30|cpu=0,mem=0", " a||1|10|cpu=0", "  a|u|1|10|cpu=0", "  b|u|1|20|cpu=0"])
    got = decode_parsable(out)
    assert got.unit == "billing_seconds" and got.usage == {"a": 10.0, "b": 20.0}


@pytest.mark.parametrize("text, names", [
    ("", "header"),
    ("Account|User|RawShares|RawUsage\n", "header"),
    ("Account|User|RawUsage|GrpTRESRaw\n", "header"),
    (HEADER + "\n a|u|1|1\n", "4 fields"),
    (HEADER + "\n|u|1|1|gres/gpu=1\n", "'Account' is empty"),
    (HEADER + "\n a|u|1|-5|gres/gpu=1\n", "RawUsage"),
    (HEADER + "\n a|u|1|lots|gres/gpu=1\n", "RawUsage"),
    (HEADER + "\n a|u|1|1|gres/gpu\n", "GrpTRESRaw 'gres/gpu'"),
    (HEADER + "\n a|u|1|1|gres/gpu=inf\n", "GrpTRESRaw 'gres/gpu=inf'"),
    (HEADER + "\n a|u|1|1|gres/gpu=-2\n", "GrpTRESRaw"),
    (HEADER + "\n a||-1|1|gres/gpu=1\n", "RawShares"),
    (HEADER + "\n a||1.5|1|gres/gpu=1\n", "RawShares"),
    (HEADER + "\n a||lots|1|gres/gpu=1\n", "RawShares"),
    (HEADER + "\n a||nan|1|gres/gpu=1\n", "RawShares"),
    (HEADER + "\n a||99999999999|1|gres/gpu=1\n", "RawShares"),
])
def test_malformed_parsable_answers_are_slurm_errors_naming_the_field(text, names):
    with pytest.raises(SlurmError) as info:
        decode_parsable(text)
    assert names in info.value.message


def _golden_json() -> dict:
    return json.loads((DATA / "slurm-25.11" / "sshare.json").read_text())


def _account_row(data: dict) -> dict:
    return next(r for r in data["shares"]["shares"] if r["type"] == ["ASSOCIATION"] and r["name"] == "beta")


def _user_row(data: dict) -> dict:
    return next(r for r in data["shares"]["shares"] if r["type"] == ["USER"] and r["parent"] == "alpha")


@pytest.mark.parametrize("mangle, names", [
    (lambda d: d.update(errors=[{"error": "boom"}]), "reported errors"),
    (lambda d: d.pop("shares"), "'shares'"),
    (lambda d: d["shares"].update(shares={"a": 1}), "shares.shares"),
    (lambda d: d["shares"]["shares"].append(7), "shares[6]"),
    (lambda d: _user_row(d).pop("type"), "'type'"),
    (lambda d: _user_row(d).update(type=3), "'type'"),
    (lambda d: _user_row(d).update(parent=""), "empty"),
    (lambda d: _user_row(d).update(parent=["alpha"]), "'parent'"),
    (lambda d: _user_row(d).pop("usage"), "'usage'"),
    (lambda d: _user_row(d).update(usage=-1), "usage"),
    (lambda d: _user_row(d).update(usage="19"), "'usage'"),
    (lambda d: _user_row(d)["tres"].update(usage={"gres/gpu": 1}), "tres.usage"),
    (lambda d: _user_row(d)["tres"]["usage"].append({"name": "gres/gpu", "value": "many"}), "'value'"),
    (lambda d: _user_row(d)["tres"]["usage"].append({"name": "gres/gpu", "value": -3.0}), "value"),
    (lambda d: _user_row(d)["tres"]["usage"].append({"value": 3.0}), "'name'"),
    (lambda d: _user_row(d)["tres"]["usage"].append([1]), "tres.usage["),
    (lambda d: _account_row(d).update(shares=-1), "'shares'"),
    (lambda d: _account_row(d).update(shares=2.5), "'shares'"),
    (lambda d: _account_row(d).update(shares="10"), "'shares'"),
    (lambda d: _account_row(d).update(shares=True), "'shares'"),
    (lambda d: _account_row(d).update(shares={"set": True, "infinite": False, "number": -4}), "'shares'"),
    (lambda d: _account_row(d).update(shares={"set": True, "infinite": False, "number": 2**40}), "'shares'"),
])
def test_malformed_json_answers_are_slurm_errors_naming_the_field(mangle, names):
    data = copy.deepcopy(_golden_json())
    mangle(data)
    with pytest.raises(SlurmError) as info:
        decode_json(data)
    assert names in info.value.message


def test_unknown_json_fields_and_number_objects_are_tolerated():
    data = copy.deepcopy(_golden_json())
    row = _user_row(data)
    row["something_new"] = {"x": 1}
    row["usage"] = {"set": True, "infinite": False, "number": 19}
    for item in row["tres"]["usage"]:
        if item["name"] == "gres/gpu":
            item["value"] = {"set": True, "infinite": False, "number": 600.0}
    assert decode_json(data).usage["alpha"] == 600.0


def test_json_account_shares_plain_set_unset_and_parent():
    data = copy.deepcopy(_golden_json())
    _account_row(data)["shares"] = 10
    assert decode_json(data).shares == {"alpha": 1, "beta": 10}
    _account_row(data)["shares"] = {"set": False, "infinite": False, "number": 0}
    assert decode_json(data).shares == {"alpha": 1}
    _account_row(data)["shares"] = 0x7FFFFFFF  # fairshare=parent
    assert decode_json(data).shares == {"alpha": 1}


class _Answers:
    """Recorded answers by command (argv -> stdout or a SlurmError), counting what was asked."""

    def __init__(self, answers: dict[str, str | SlurmError]) -> None:
        self.answers, self.asked = answers, []

    def __call__(self, argv: Sequence[str]) -> str:
        self.asked.append(" ".join(argv))
        found = next(v for k, v in self.answers.items() if " ".join(argv).startswith(k))
        if isinstance(found, SlurmError):
            raise found
        return found


def test_without_json_sshare_is_asked_for_its_parsable_columns():
    run = _Answers({"sshare -a --json": SlurmError("`sshare -a --json` exited 1: sshare: unrecognized option '--json'"),
                    "sshare -a -P": (DATA / "slurm-22.05" / "sshare-P.txt").read_text()})
    assert read_usage(run).usage["alpha"] == 120.0
    assert run.asked == ["sshare -a --json", "sshare -a -P -o Account,User,RawShares,RawUsage,GrpTRESRaw"]


def test_a_failing_sshare_is_raised_and_non_json_is_a_slurm_error():
    with pytest.raises(SlurmError, match="Unable to contact"):
        read_usage(_Answers({"sshare": SlurmError("sshare: error: Unable to contact slurm controller")}))
    with pytest.raises(SlurmError, match="did not answer JSON"):
        read_usage(_Answers({"sshare": "<html>"}))


def test_auto_without_slurmdbd_and_ledger_mode_use_the_ledger(tmp_path):
    events: list[tuple[str, dict]] = []
    run = _Answers({"scontrol show config": "AccountingStorageType   = accounting_storage/none\n"})
    source = UsageSource("auto", AgentUsage(tmp_path), run, lambda w, **f: events.append((w, f)))
    source.usage(100.0, {"x": 4})
    assert source.usage(110.0, {"x": 4})["x"] == pytest.approx(40, rel=1e-4)
    assert source.active == "ledger" and run.asked == ["scontrol show config"]  # asked once
    assert source.shares is None  # the ledger: the policy's configured shares
    assert [w for w, _ in events] == ["usage_source"] and "not accounting_storage/slurmdbd" in events[0][1]["reason"]
    never, other = _Answers({}), tmp_path / "b"
    other.mkdir()
    ledger = UsageSource("ledger", AgentUsage(other), never, lambda w, **f: None)
    ledger.usage(1.0, {"x": 1})
    assert ledger.active == "ledger" and never.asked == []


def test_slurm_mode_falls_back_to_the_ledger_when_the_answer_is_bad(tmp_path):
    events: list[tuple[str, dict]] = []
    run = _Answers({"sshare -a --json": '{"shares": 3, "errors": []}'})
    source = UsageSource("slurm", AgentUsage(tmp_path), run, lambda w, **f: events.append((w, f)))
    source.usage(0.0, {"x": 1})
    assert source.usage(5.0, {"x": 1}) == {"x": pytest.approx(5, rel=1e-4)} and source.active == "ledger"
    # the same error is not written again (until ERROR_REPEAT_S): a cycle each second would flood the log
    assert [w for w, _ in events] == ["usage_error", "usage_source"]
    assert "'shares'" in events[0][1]["error"] and events[0][1]["fallback"] == "ledger"


def test_recorded_24_05_json_answer_with_an_infinite_fairshare_level():
    """24.05.8's `sshare -a --json` (recorded live: FABRIC_RECORD_SSHARE=1) writes a user row's
    fairshare level as `Infinity`, which orjson refuses; the answer is read, the usage is Slurm's."""
    from fabric_hpc.slurm.sshare import read_usage

    text = (DATA / "sshare-24.05" / "sshare.json").read_text()
    assert '"level": Infinity' in text
    got = read_usage(lambda argv: text)
    assert got.unit == "gpu_seconds" and got.usage["alpha"] > got.usage["beta"] > 0
    assert got.shares == {"alpha": 1, "beta": 1}
    data = json.loads(text)
    alpha = next(r for r in data["shares"]["shares"] if r["name"] == "alpha")
    gpu = next(u for u in alpha["tres"]["usage"] if u["name"] == "gres/gpu")
    gpu["value"] = float("inf")  # a field fabric reads: refused, not taken as usage
    with pytest.raises(SlurmError, match="gres/gpu|value|expected"):
        read_usage(lambda argv: json.dumps(data))
    with pytest.raises(SlurmError, match="did not answer JSON"):
        read_usage(lambda argv: text.replace("Infinity", "Infinit"))
