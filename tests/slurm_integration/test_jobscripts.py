"""jobscripts/*.sbatch run on a live cluster with fabric's TaskProlog; shellcheck-clean."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fabric_hpc.slurm.prolog import safe_component
from tests.real import require_real

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SCRIPTS = sorted((REPO / "jobscripts").glob("*.sbatch"))


def test_shellcheck_clean():
    require_real("slurm", shutil.which("shellcheck") is not None, "shellcheck is not installed (Debian: shellcheck)")
    assert len(SCRIPTS) == 3
    proc = subprocess.run(["shellcheck", *map(str, SCRIPTS)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


@pytest.fixture(scope="module")
def prolog_cluster(slurm_cluster_factory, tmp_path_factory):
    """4 hosts (2 leaves) with plugins/task_prolog.py as TaskProlog."""
    from fabric_hpc.topology import build, generators, save_spec

    fab = build(generators.leaf_spine(4, hosts_per_leaf=2, gpus=8, cpus=8))
    topo = tmp_path_factory.mktemp("prolog") / "topology.yaml"
    save_spec(fab.spec, topo)
    scripts = {}
    for name in ("task_prolog.py", "prolog.py"):  # the Prolog (root) writes, the TaskProlog checks
        text = (REPO / "plugins" / name).read_text()
        # this checkout's fabric_hpc also for the Prolog, which slurmd runs without the job's env
        text = text.replace("#!/usr/bin/env python3", f"#!{sys.executable}\nimport sys; sys.path.insert(0, "
                            f"{str(REPO)!r})", 1)
        scripts[name] = text.replace('"/etc/fabric-hpc/prolog.json"', '"{etc_dir}/fabric-prolog.json"')
    cfg = json.dumps({"topology": str(topo), "topo_dir": "{base_dir}/nccl", "ckpt_root": "{base_dir}/ckpt"})
    cluster = slurm_cluster_factory(fab, settings={"TaskProlog": "{etc_dir}/task_prolog.py",
                                                   "Prolog": "{etc_dir}/prolog.py"},
                                    config_files={**scripts, "fabric-prolog.json": cfg})
    from fabric_hpc.testing.nccl_facts import write_facts

    for host in fab.hosts:  # each host's discovery sidecar: its NCCL topology file needs real bus ids
        write_facts(cluster.base_dir / "nccl", fab, host)
    return cluster


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_task_prolog_exports(prolog_cluster):
    c = prolog_cluster
    jid = c.sbatch("-N2", "--gres=gpu:4", "-J", "probe", wrap="srun bash -c 'echo CVD=$CUDA_VISIBLE_DEVICES "
                   "TOPO=$NCCL_TOPO_FILE CK=$FABRIC_CKPT_DIR BIND=$FABRIC_CPU_BIND HOST=$SLURMD_NODENAME'")
    out = c.job_output(jid, c.wait_job(jid, timeout=60))
    lines = [line for line in out.splitlines() if line.startswith("CVD=")]
    assert len(lines) == 2, out
    for line in lines:
        kv = dict(part.split("=", 1) for part in line.split())
        assert kv["CVD"] == "0,1,2,3" and kv["BIND"] == "map_ldom:0,0,0,0"  # GPUs 0-3 sit on socket 0
        assert kv["CK"] == str(c.base_dir / "ckpt" / "root" / "probe")
        assert kv["TOPO"] == str(c.base_dir / "nccl" / f"nccl-topo-{kv['HOST']}.xml")
        topo = Path(kv["TOPO"]).stat()
        assert (topo.st_uid, topo.st_mode & 0o777) == (0, 0o644)   # written by the root Prolog
        assert Path(kv["TOPO"]).read_text().lstrip().startswith("<system")


def test_task_prolog_hostile_job_name(prolog_cluster):
    c = prolog_cluster
    jid = c.sbatch("-N1", "--gres=gpu:1", "-J", "../../etc", wrap="srun bash -c 'echo CK=$FABRIC_CKPT_DIR'")
    out = c.job_output(jid, c.wait_job(jid, timeout=60))
    ck = next(line for line in out.splitlines() if line.startswith("CK="))[3:]
    name = safe_component("../../etc")  # _._.._etc and a hash: never a job literally named _._.._etc
    assert name.startswith("_._.._etc+") and ck == str(c.base_dir / "ckpt" / "root" / name), out


def test_train_gang_saves_on_usr1_and_restores(prolog_cluster):
    c = prolog_cluster
    script = (REPO / "jobscripts" / "train_gang.sbatch").read_text()
    env = f"--export=ALL,FABRIC_PYTHON={sys.executable},TRAIN_STEPS=400,STEP_SECONDS=0.05"
    jid = c.sbatch(env, script=script)
    c.wait_job(jid, states=("RUNNING",), timeout=60)
    deadline = time.monotonic() + 30
    while c.job_output(jid).count("train_demo: rank") < 2:  # both ranks past the TaskProlog, stepping
        assert time.monotonic() < deadline, c.job_output(jid)
        time.sleep(0.2)
    time.sleep(1.0)  # some steps
    c.run(["scancel", "--batch", "--signal=USR1", str(jid)])  # what --signal=B:USR1@120 delivers
    # rank 0 saves and requeues the unfinished job (test_train_requeue_live.py follows the requeued
    # run); it is cancelled while pending: the second job below resumes from the save instead
    deadline = time.monotonic() + 60
    while c.job(jid).get("Restarts") != "1" or len(_json_lines(c.job_output(jid))) < 2:
        assert time.monotonic() < deadline, (c.job(jid), c.job_output(jid))
        time.sleep(0.2)
    c.run(["scancel", str(jid)])
    out = c.job_output(jid, c.wait_job(jid, states=("CANCELLED",), timeout=60))
    ranks = _json_lines(out)
    assert "SIGUSR1" in out and len(ranks) == 2, out
    rank0 = next(r for r in ranks if r["rank"] == 0)
    assert rank0["signalled"] and rank0["requeueing"] and 0 < rank0["saved"] < 400
    ckpt = Path(rank0["ckpt_dir_env"])
    assert ckpt == c.base_dir / "ckpt" / "root" / "train_gang"
    # a new run of the same job restores the latest checkpoint and carries on
    target = rank0["saved"] + 5
    jid2 = c.sbatch(f"--export=ALL,FABRIC_PYTHON={sys.executable},TRAIN_STEPS={target},STEP_SECONDS=0.01",
                    script=script)
    again = _json_lines(c.job_output(jid2, c.wait_job(jid2, timeout=60)))
    r0 = next(r for r in again if r["rank"] == 0)
    assert (r0["restored_step"], r0["step"], r0["saved"]) == (rank0["saved"], target, target)
    assert r0["w0"] == float(target)

    # ckpt_restore.sbatch: verify it and reshard it for 2 ranks
    dest = c.base_dir / "resharded"
    jid3 = c.sbatch(f"--export=ALL,FABRIC={BIN / 'fabric'},CKPT={ckpt},WORLD_SIZE=2,DEST={dest}",
                    script=(REPO / "jobscripts" / "ckpt_restore.sbatch").read_text())
    out3 = c.job_output(jid3, c.wait_job(jid3, timeout=90))
    assert "ckpt_restore: ok" in out3
    from fabric_hpc.checkpoint import list_checkpoints

    assert [r.step for r in list_checkpoints(dest)] == [target]


def test_infer_batch_mpi(prolog_cluster, tmp_path):
    from fabric_hpc.inference import CostModel, EngineLimits, write_simulated_artefact

    c = prolog_cluster
    limits = EngineLimits(max_batch_size=8, max_num_tokens=512, max_input_len=64, max_seq_len=96,
                          kv_capacity_tokens=1024)
    cost = CostModel(base_s=1e-4, prefill_s_per_token=1e-7, decode_s_per_seq=2e-6, ctx_s_per_token=0.0)
    cfg = write_simulated_artefact(tmp_path / "engine", limits=limits, cost=cost)
    (tmp_path / "engine.json").write_text(json.dumps(cfg))
    spool = tmp_path / "spool"
    spool.mkdir()
    items = [{"id": f"i{k}", "prompt": [k + 1, k + 2, k + 3], "max_new_tokens": 4} for k in range(40)]
    (spool / "a.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    out_dir = tmp_path / "out"
    env = (f"--export=ALL,FABRIC={BIN / 'fabric'},ENGINE_CONFIG={tmp_path / 'engine.json'},INPUT={spool},"
           f"OUTPUT={out_dir},PATH={BIN}:{c.env['PATH']}")  # srun of the Slurm under test
    jid = c.sbatch(env, script=(REPO / "jobscripts" / "infer_batch.sbatch").read_text())
    out = c.job_output(jid, c.wait_job(jid, timeout=120))
    results = [json.loads(line) for line in (out_dir / "results.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in results) == sorted(i["id"] for i in items), out
    ranks = list((out_dir / "journal").glob("rank-*.jsonl"))
    assert len(ranks) == 2, out  # two MPI ranks on two nodes, one world


def _hf_greedy(state: dict, config: dict, prompt: list[int], new: int) -> list[int]:
    """Greedy tokens of transformers' LlamaForCausalLM holding ``state`` (an independent
    implementation of the served model), cut after EOS as the engine stops there."""
    import torch
    import transformers

    cfg = {k: v for k, v in config.items() if k not in ("architectures", "torch_dtype")}
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg, attn_implementation="eager"))
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = model.eval().generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new,
                                    min_new_tokens=new, do_sample=False, pad_token_id=0)[0, len(prompt):].tolist()
    eos = config.get("eos_token_id")
    return out[:out.index(eos) + 1] if eos in out else out


def test_train_ckpt_infer_chain(prolog_cluster, tmp_path):
    """train_gang.sbatch (a tiny torch Llama trainer) -> checkpoint -> infer_batch.sbatch serving
    that checkpoint with the PyTorch engine on 2 MPI ranks; the served tokens are those of the
    trained weights (transformers, fed the checkpoint's tensors)."""
    require_real("torch", _imports("torch") and _imports("transformers"), "pip install -e '.[torch]'")
    c = prolog_cluster
    env = (f"--export=ALL,FABRIC_PYTHON={sys.executable},TRAIN_STEPS=12,STEP_SECONDS=0,"
           "TRAIN_MODULE=fabric_hpc.inference.engines.train_tiny")
    jid = c.sbatch(env, "-J", "train_llama", script=(REPO / "jobscripts" / "train_gang.sbatch").read_text())
    out = c.job_output(jid, c.wait_job(jid, timeout=90))
    rank0 = next(r for r in _json_lines(out) if r["rank"] == 0)
    assert rank0["saved"] == 12 and rank0["last_loss"] < rank0["first_loss"], out
    ckpt = Path(rank0["ckpt_dir_env"])

    spool = tmp_path / "spool"
    spool.mkdir()
    items = [{"id": f"i{k}", "prompt": [3 * k + 5, 3 * k + 6, 3 * k + 7], "max_new_tokens": 6} for k in range(8)]
    (spool / "a.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    out_dir, cfg = tmp_path / "out", tmp_path / "engine.json"
    env = (f"--export=ALL,FABRIC={BIN / 'fabric'},CKPT={ckpt},ENGINE_CONFIG={cfg},INPUT={spool},"
           f"OUTPUT={out_dir},DTYPE=float32,MAX_BATCH_SIZE=4,MAX_INPUT_LEN=16,MAX_SEQ_LEN=64,"
           f"MAX_NUM_TOKENS=128,PATH={BIN}:{c.env['PATH']}")
    jid = c.sbatch(env, script=(REPO / "jobscripts" / "infer_batch.sbatch").read_text())
    out = c.job_output(jid, c.wait_job(jid, timeout=120))
    build = json.loads((tmp_path / "engine.engine" / "fabric_engine.json").read_text())
    assert build["checkpoint"] == {"path": str(ckpt), "step": 12, "prefix": "model", "naming": "huggingface"}, out
    assert len(list((out_dir / "journal").glob("rank-*.jsonl"))) == 2, out
    served = {r["id"]: r["tokens"] for r in map(json.loads, (out_dir / "results.jsonl").read_text().splitlines())}
    assert sorted(served) == sorted(i["id"] for i in items), out

    from fabric_hpc.checkpoint import open_checkpoint, restore

    state = restore(ckpt, step=12, names=["model"], as_torch=True)["model"]
    config = open_checkpoint(ckpt, 12).manifest.user_metadata["hf_files"]["config.json"]
    for i in items:
        assert served[i["id"]] == _hf_greedy(state, config, i["prompt"], i["max_new_tokens"]), i


def _imports(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
