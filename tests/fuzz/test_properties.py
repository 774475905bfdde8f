"""Property tests (hypothesis): malformed input of every CLI input kind, through the real CLI.

Each generated input must end with exit 0 (it happened to be valid) or a user-error code with a
message on stderr: never a traceback, never a hang (each example has a deadline), never a file
outside the output path. Sizes stay small so the whole suite runs in about a minute on 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .harness import run_cli

REPO = Path(__file__).resolve().parents[2]
#: FABRIC_FUZZ_EXAMPLES=2000 runs a longer, randomised hunt (CI: 60 examples, fixed seed).
_EXAMPLES = int(os.environ.get("FABRIC_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=_EXAMPLES, deadline=None, derandomize="FABRIC_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
pytestmark = pytest.mark.timeout(120)

LEAF_SPINE = (REPO / "topology/leaf-spine-16.yaml").read_bytes()
NASTY_TOKENS = ["nan", "inf", "-inf", "-1", "0", "1e308", "99999999999999999999", "&a", "*a", "[", "]", "{", "}",
                "\xff", "\x00", "..", "/", " ", ",", "=", "n[1-99999999]", "a[1-1000000]b[1-1000000]", "%d", "\n"]


def _mutate(data: bytes, draw_ops: list[tuple[int, int, bytes]]) -> bytes:
    out = bytearray(data)
    for kind, pos, blob in draw_ops:
        if not out:
            out.extend(blob)
            continue
        pos %= len(out)
        if kind == 0:
            out[pos:pos + len(blob)] = blob  # overwrite
        elif kind == 1:
            out[pos:pos] = blob  # insert
        else:
            del out[pos:]  # truncate
    return bytes(out)


ops = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10**6),
                         st.one_of(st.binary(max_size=8), st.sampled_from(NASTY_TOKENS).map(str.encode))),
               min_size=1, max_size=4)
text_tokens = st.lists(st.one_of(st.sampled_from(NASTY_TOKENS), st.text(max_size=6)), max_size=6).map("".join)


def _tmp() -> Path:
    return Path(tempfile.mkdtemp(prefix="fabric-fuzz-"))


def _check(argv_of, capsys, **kw) -> None:
    tmp = _tmp()
    try:
        run_cli(argv_of(tmp), capsys, cwd=tmp, allow_ok=True, seconds=15, **kw)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@FUZZ
@given(ops)
def test_topology_file(capsys, mutation):
    def argv(t: Path) -> list[str]:
        (t / "f.yaml").write_bytes(_mutate(LEAF_SPINE, mutation))
        return ["topology", "validate", str(t / "f.yaml")]
    _check(argv, capsys)


@FUZZ
@given(st.sampled_from(["superpod", "nvl72", "fat-tree", "leaf-spine", "bogus"]),
       st.lists(st.tuples(st.sampled_from(["sus", "racks", "k", "hosts", "hosts_per_leaf", "gpus_per_host",
                                           "racks_per_su", "sus_per_spine_group", "prefix", "gpus", "x"]),
                          st.one_of(st.sampled_from(NASTY_TOKENS + ["10000000", "513", "65"]),
                                    st.integers(-5, 24).map(str))), max_size=3))
def test_generator_reference(capsys, name, params):
    # small valid sizes only: a valid 200-SU SuperPOD is a legitimately slow build, not a hang
    ref = name + ":" + ",".join(f"{k}={v}" for k, v in params)
    _check(lambda t: ["topology", "show", ref, "--json"], capsys)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["nodes", "gpus", "within", "include", "exclude", "slices",
                                           "slice_level", "switches", "numa", "rail", "features", "bogus"]),
                          st.one_of(st.sampled_from(NASTY_TOKENS), st.integers(-3, 10**9).map(str))), max_size=4))
def test_request_string(capsys, items):
    request = ",".join(f"{k}={v}" for k, v in items)
    _check(lambda t: ["place", "-t", "leaf-spine:hosts=8", "-r", request, "--solver", "greedy"], capsys)


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-10, 10**12), st.floats(),
                                     st.sampled_from(NASTY_TOKENS)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.sampled_from(
                                                       ["version", "jobs", "down", "gpus", "hosts", "j1"]),
                                                       inner, max_size=3)), max_leaves=8)


@FUZZ
@given(json_values)
def test_cluster_state_file(capsys, doc):
    def argv(t: Path) -> list[str]:
        (t / "s.json").write_text(json.dumps(doc))
        return ["place", "-t", "leaf-spine:hosts=8", "-r", "gpus=1", "--solver", "greedy", "-s", str(t / "s.json")]
    _check(argv, capsys)


TIRESIAS = (REPO / "data/traces/tiresias_60_job.csv").read_bytes()[:400]


@FUZZ
@given(ops, st.sampled_from(["tiresias", "swf", "sacct", "jobcomp", "openb"]))
def test_trace_file(capsys, mutation, kind):
    def argv(t: Path) -> list[str]:
        (t / "trace").write_bytes(_mutate(TIRESIAS, mutation))
        return ["sim", "run", "--trace", f"{kind}:{t / 'trace'}", "-t", "leaf-spine:hosts=4", "--out",
                str(t / "out"), "--no-progress", "--no-topology-report", "--limit", "20"]
    _check(argv, capsys, allowed_new=("out",))


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["jobs", "load", "cluster_gpus", "gpus_per_host", "seed", "sigma",
                                           "median_duration_s", "bogus"]),
                          st.one_of(st.sampled_from(NASTY_TOKENS), st.integers(-3, 50).map(str))), max_size=3))
def test_synthetic_reference(capsys, items):
    ref = "synthetic:" + ",".join(f"{k}={v}" for k, v in items + [("jobs", "20")] if k)
    _check(lambda t: ["sim", "run", "--trace", ref, "-t", "leaf-spine:hosts=4", "--out", str(t / "out"),
                      "--no-progress", "--no-topology-report"], capsys, allowed_new=("out",))


@FUZZ
@given(json_values, st.sampled_from([".json", ".yaml"]))
def test_engine_config(capsys, doc, suffix):
    def argv(t: Path) -> list[str]:
        (t / f"e{suffix}").write_text(json.dumps(doc))
        (t / "in.jsonl").write_text('{"id": "a", "prompt": "x"}\n')
        return ["infer", "run", "--engine-config", str(t / f"e{suffix}"), "--input", str(t / "in.jsonl"),
                "--output", str(t / "out")]
    _check(argv, capsys, allowed_new=("out",))


@FUZZ
@given(st.binary(max_size=64), st.sampled_from(["infer-status", "infer-merge", "agent-status"]))
def test_output_and_state_files(capsys, blob, command):
    def argv(t: Path) -> list[str]:
        (t / "d").mkdir()
        (t / "d" / ("status.json" if command == "agent-status" else "run.json")).write_bytes(blob)
        if command == "agent-status":
            return ["agent", "status", "--state-dir", str(t / "d")]
        return ["infer", command.split("-")[1], str(t / "d")]
    _check(argv, capsys)


@FUZZ
@given(ops, st.sampled_from(["zarr.json", "w/zarr.json", "w/c.0.0", "latest"]))
def test_checkpoint_directory(capsys, mutation, victim):
    import numpy as np

    from fabric_hpc.checkpoint import save

    def argv(t: Path) -> list[str]:
        save(t / "ck", {"w": np.arange(16, dtype=np.float32).reshape(4, 4)}, step=1)
        path = t / "ck" / ("latest" if victim == "latest" else f"step-0000000001/{victim}")
        path.write_bytes(_mutate(path.read_bytes(), mutation))
        return ["ckpt", "restore", str(t / "ck"), "--to-world-size", "2", "--out", str(t / "out")]
    _check(argv, capsys, allowed_new=("out",))


NODE_LISTS = {name: (REPO / "data/topologies" / name).read_bytes()[:600]
              for name in ("alibaba_openb_node_list_gpu_node.csv", "alibaba_spot2026_node_info.csv",
                           "alibaba_lingjun2023_topo.csv")}


@FUZZ
@given(ops, st.sampled_from(sorted(NODE_LISTS)))
def test_topology_import_csv(capsys, mutation, name):
    def argv(t: Path) -> list[str]:
        (t / "n.csv").write_bytes(_mutate(NODE_LISTS[name], mutation))
        return ["topology", "import", str(t / "n.csv"), "-o", str(t / "out.yaml")]
    _check(argv, capsys, allowed_new=("out",))


@FUZZ
@given(json_values, st.sampled_from(["infer-status", "infer-merge"]))
def test_inference_journal(capsys, doc, command):
    def argv(t: Path) -> list[str]:
        out = t / "o"
        (out / "journal").mkdir(parents=True)
        (out / "chunks").mkdir()
        (out / "run.json").write_text(json.dumps({"input": str(t / "in.jsonl"), "limits": {},
                                                  "engine_config": {"engine": "simulated"}}))
        (t / "in.jsonl").write_text('{"id": "a", "prompt": "x"}\n')
        (out / "journal" / "rank-0.jsonl").write_text(json.dumps(doc) + "\n")
        return ["infer", command.split("-")[1], str(out)]
    _check(argv, capsys)
