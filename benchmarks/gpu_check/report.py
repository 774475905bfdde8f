"""The GPU check's outputs: ``gpu_check.json`` (schema below, checked by :func:`validate`),
``gpu_check.md`` (a section for docs/benchmarks.md) and :func:`fold`, which files a GPU run's
results into docs/benchmarks.md and tests/topology/fixtures/.

Datasheet peaks used for "of peak" (``benchmarks/inference_gpu/workload.py``: PEAKS): NVIDIA H200
SXM, from NVIDIA's H200 Tensor Core GPU datasheet: BF16 Tensor Core 1,979 TFLOP/s *with sparsity*,
so 989 TFLOP/s dense; 141 GB HBM3e at 4.8 TB/s. The ``ceilings`` part measures the reachable
rates on the machine itself (a bf16 matmul reached about 790 TFLOP/s and a device copy about
4.3 TB/s there, per the workplace's notes on the machine).
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import shutil
import sys
import tarfile
from pathlib import Path
from typing import Any

FORMAT, VERSION = "fabric-hpc/gpu-check", 1
TITLE = "GPU check (lent H200)"
ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "topology" / "fixtures"
ROW_KEYS = ("requests", "wall_s", "output_tokens_per_s", "padding_waste", "nvml_util",
            "gpm_sm_util", "nvml", "useful_tflops", "useful_gbps", "flops_of_peak", "bytes_of_peak")
#: keys every part's result has when the part finished ("row" holds ROW_KEYS)
REQUIRED: dict[str, tuple[str, ...]] = {
    "discovery": ("nvml", "driver_version", "gpus", "cpus", "fabric", "files", "host",
                  "snapshot_replays_identically"),
    "ceilings": ("device", "datasheet", "matmul", "copy_d2d", "host_device"),
    "baseline": ("model", "workload", "subset", "row", "setup_s"),
    "fabric_1rank": ("row",),
    "fabric_2ranks": ("row", "ranks"),
    "fabric_4ranks": ("row", "ranks"),
    "checkpoint": ("device", "state_bytes", "tensors", "filesystem", "async_reserve_s",
                   "fabric_async", "fabric_sync", "dcp_async"),
    "eager_decode": ("row", "decode"),
    "sdpa_cudnn": ("row", "decode"),
    "prefill_probe": ("settings", "torch", "cudnn"),
    "profile_steps": ("steps", "engine_host_s", "top_by_host", "top_by_device", "blocking"),
}
HARNESS_KEYS = ("exactly_once", "merged_items", "engine_busy_fraction")
SAVE_KEYS = ("stall_s", "total_s", "gbps", "stall_of_sync")


def new_document(args: Any, environment: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.gpu_check.plan import sizes

    return {"format": FORMAT, "version": VERSION, "mode": "tiny" if args.tiny else "full",
            "host": platform.node(), "started": _now(), "command": " ".join(sys.argv),
            "total_budget_s": args.total_budget, "sizes": sizes(args.tiny),
            "environment": environment, "parts": {}}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def validate(doc: dict[str, Any]) -> list[str]:
    """Schema problems of a document (empty when fine): missing keys of finished parts."""
    errors = [f"missing top-level key {k!r}" for k in ("format", "version", "mode", "parts",
                                                       "environment", "sizes") if k not in doc]
    for name, entry in doc.get("parts", {}).items():
        for k in ("status", "budget_s", "elapsed_s", "result"):
            if k not in entry:
                errors.append(f"{name}: missing {k!r}")
        result = entry.get("result", {})
        if entry.get("status") != "ok":
            continue
        want = [k for k in REQUIRED.get(name, ()) if k not in result]
        errors += [f"{name}: missing {k!r}" for k in want]
        row = result.get("row", {}) if "row" in REQUIRED.get(name, ()) else {}
        keys = ROW_KEYS + (HARNESS_KEYS if name.startswith(("fabric", "eager", "sdpa")) else ())
        errors += [f"{name}.row: missing {k!r}" for k in keys if row and k not in row]
        if name == "checkpoint":
            for m in ("fabric_async", "fabric_sync"):
                errors += [f"checkpoint.{m}: missing {k!r}" for k in SAVE_KEYS
                           if k not in result.get(m, {})]
    return errors


def write_outputs(doc: dict[str, Any], out: Path, elapsed: float, final: bool = False) -> dict[str, Any]:
    from fabric_hpc.atomic import write_atomic

    doc["elapsed_s"] = elapsed
    doc["finished"] = _now() if final else None
    doc["schema_errors"] = validate(doc)
    doc["targets"] = targets(doc["parts"])
    write_atomic(out / "gpu_check.json", json.dumps(doc, indent=1, default=str).encode())
    write_atomic(out / "gpu_check.md", render(doc).encode())
    return doc


def _f(x: Any, fmt: str = ".3g", none: str = "n/a") -> str:
    return none if x is None else format(x, fmt)


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{x * 100:.1f} %"


def render(doc: dict[str, Any]) -> str:
    parts = doc["parts"]
    env = doc["environment"]
    lines = [f"Mode: **{doc['mode']}**" + (" (CPU rehearsal: tiny model, 1 GiB state; checks that "
                                           "the check runs, measures nothing about a GPU)"
                                           if doc["mode"] == "tiny" else "")
             + f"; Python {env.get('python')}, torch {env.get('torch')}, transformers "
             f"{env.get('transformers')}; {doc.get('elapsed_s', 0):.0f} s of "
             f"{doc['total_budget_s']:.0f} s budget.", "",
             "| part | status | seconds (budget) |", "|---|---|---|"]
    for name, e in parts.items():
        err = f": {e['error']}" if e.get("error") else ""
        skip = f": {e['result']['skipped']}" if "skipped" in e.get("result", {}) else ""
        lines.append(f"| {name} | {e['status']}{err}{skip} | {e['elapsed_s']:.1f} ({e['budget_s']:g}) |")
    lines += ["", ("Targets (judged on the GPU run only): " if doc["mode"] == "tiny" else "Targets: ")
              + _targets_md(parts)]
    for fn in (_discovery_md, _ceilings_md, _inference_md, _profile_md, _checkpoint_md):
        text = fn(parts)
        if text:
            lines += ["", text]
    if doc.get("schema_errors"):
        lines += ["", "Schema errors: " + "; ".join(doc["schema_errors"])]
    return "\n".join(lines) + "\n"


def _verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("met" if ok else "**missed**")


def targets(parts: dict[str, Any]) -> dict[str, bool | None]:
    """Issue 16's targets, each True/False, or None when the part did not produce it."""
    row = (lambda name: parts.get(name, {}).get("result", {}).get("row") or {})
    base, one = row("baseline").get("output_tokens_per_s"), row("fabric_1rank")
    ck = parts.get("checkpoint", {}).get("result", {}).get("fabric_async", {})
    sm = [r.get("gpm_sm_util") for r in (row(n) for n in ("fabric_1rank", "fabric_2ranks")) if r]
    return {"fabric 1 rank >= 10x the static baseline": (one["output_tokens_per_s"] >= 10 * base
                                                 if base and one else None),
            "padding waste < 1 %": one["padding_waste"] < 0.01 if one else None,
            "GPM SM utilisation reported": any(x is not None for x in sm) if sm else None,
            "async stall <= 10 % of the sync save": (ck["stall_of_sync"] <= 0.10
                                                     if "stall_of_sync" in ck else None)}


def _targets_md(parts: dict[str, Any]) -> str:
    return "; ".join(f"{k}: {_verdict(v)}" for k, v in targets(parts).items()) + "."


def _discovery_md(parts: dict[str, Any]) -> str:
    r = parts.get("discovery", {}).get("result", {})
    if "nvml" not in r:
        return ""
    gpus = "; ".join(f"{g['name']} ({_f((g['memory_bytes'] or 0) / 2**30, '.0f')} GiB, GPM "
                     f"{g['gpm_supported']}, {g['nvlinks']} NVLinks, PCIe {g['pcie_gbps']} GB/s)"
                     for g in r.get("gpus", [])) or "none"
    fab = r.get("fabric", {})
    return (f"**Discovery** on `{r.get('host')}`: NVML {r['nvml']}; driver {r.get('driver_version')}; "
            f"GPUs: {gpus}; CPUs {r.get('cpus', {}).get('online')}, NUMA nodes {r.get('numa_nodes')}, "
            f"HCAs {r.get('hcas')}, NICs {', '.join(r.get('nics', [])) or 'none'}. Fabric model: "
            f"{fab.get('hosts')} host, {fab.get('gpus')} GPUs, {fab.get('edges')} edges; recording + "
            f"sysfs snapshot replay identically: {r.get('snapshot_replays_identically')}. Recorded: "
            f"{', '.join(r.get('files', []))}.")


def _ceilings_md(parts: dict[str, Any]) -> str:
    r = parts.get("ceilings", {}).get("result", {})
    if "matmul" not in r:
        return ""
    mm, cp, hd = r["matmul"], r.get("copy_d2d", {}), r.get("host_device")
    text = (f"**Ceilings** on {r['device']}: {mm['n']}^3 {mm['dtype']} matmul "
            f"{_f(mm['tflops'])} TFLOP/s ({_pct(mm['of_datasheet'])} of the datasheet's dense bf16); "
            f"device copy {_f(cp.get('gbps_read_plus_write'))} GB/s read+write "
            f"({_pct(cp.get('of_datasheet'))} of the HBM datasheet figure)")
    if isinstance(hd, dict):
        text += (f"; host<->device GB/s ({hd['bytes'] >> 20} MiB): "
                 + ", ".join(f"{k[:-5]} {v:.1f}" for k, v in hd.items() if k.endswith("_gbps")))
    else:
        text += f"; host<->device: {hd}"
    return text + "."


def _inference_md(parts: dict[str, Any]) -> str:
    from benchmarks.gpu_check.inference import rows_for_table
    from benchmarks.inference_gpu.__main__ import render as table

    results = {k: v.get("result", {}) | ({"status": v["status"]} if v["status"] != "ok" else {})
               for k, v in parts.items()}
    rows = rows_for_table(results)
    if not rows:
        return ""
    b = results.get("baseline", {})
    model, load = b.get("model", {}), b.get("workload", {})
    head = (f"**Inference**: {model.get('parameters', 0) / 1e6:,.1f} M-parameter random-weight "
            f"Llama ({model.get('dtype')}), {load.get('requests')} ragged requests "
            f"({load.get('prompt_tokens')} prompt, {load.get('output_tokens')} output tokens); "
            f"baseline timed on {b.get('subset', 'n/a')}; NVML: {b.get('row', {}).get('nvml', 'n/a')}.")
    text = [head, "", table(rows, {})]
    base = b.get("row", {}).get("output_tokens_per_s")
    one = results.get("fabric_1rank", {}).get("row")
    if base and one:
        text.append(f"\nfabric 1 rank / baseline: **{one['output_tokens_per_s'] / base:.2f}x** "
                    f"(target >= 10x); padding waste {one['padding_waste'] * 100:.2f} % (target < 1 %); "
                    f"exactly-once: 1 rank {one['exactly_once']}"
                    + (f", 2 ranks {two['exactly_once']}" if (two := results.get("fabric_2ranks", {})
                                                              .get("row")) else "") + ".")
    graphs = results.get("fabric_1rank", {}).get("decode_graphs")
    if graphs:
        text.append(f"\nDecode pass of the 1-rank run: CUDA graphs {graphs.get('graphs')} captured "
                    f"in {_f(graphs.get('capture_s'))} s (rows {graphs.get('row_buckets')}, context "
                    f"{graphs.get('context_buckets')}); largest graph-vs-eager logit difference "
                    f"{_f(graphs.get('max_rel_diff'))} of the logits' scale; fallback to eager: "
                    f"{graphs.get('fallback') or 'no'}.")
    for part, label in (("fabric_1rank", "1 rank"), ("sdpa_cudnn", "cuDNN attention allowed"),
                        ("eager_decode", "eager ablation")):
        st = results.get(part, {}).get("engine_stats")
        if st:
            h = st.get("host_s", {})
            text.append(f"Engine host time, {label}: {st.get('steps')} steps; issuing decode "
                        f"{_f(h.get('decode'))} s, issuing prefill {_f(h.get('prefill'))} s, "
                        f"waiting for tokens {_f(h.get('wait'))} s.")
    for part, label in (("sdpa_cudnn", "With vs without cuDNN attention"),
                        ("eager_decode", "Eager vs graph decode")):
        same = results.get(part, {}).get("same_as_default")
        if same:
            text.append(f"{label} outputs: {_pct(same['identical'])} of {same['requests']} "
                        f"requests identical, mean common prefix {_pct(same['mean_common_prefix'])}.")
    return "\n".join(text)


def _profile_md(parts: dict[str, Any]) -> str:
    from benchmarks.gpu_check.prefill_probe import probe_md
    from benchmarks.gpu_check.profile import profile_md

    texts = (profile_md(parts.get("profile_steps", {}).get("result", {})),
             probe_md(parts.get("prefill_probe", {}).get("result", {})))
    return "\n\n".join(t for t in texts if t)


def _checkpoint_md(parts: dict[str, Any]) -> str:
    r = parts.get("checkpoint", {}).get("result", {})
    if "state_bytes" not in r:
        return ""
    fs = r.get("filesystem", {})
    lines = [f"**Checkpoint**: {r['state_bytes'] / 2**30:.2f} GiB in {r.get('tensors')} tensors on "
             f"{r.get('device')}, written to {fs.get('mount')} ({fs.get('type')}); AsyncSaver "
             f"reserve() {_f(r.get('async_reserve_s'), '.2f')} s (once).", "",
             "| method | caller's stall s | total s | GB/s (D2H incl.) | stall / sync save |",
             "|---|---|---|---|---|"]
    for key, label in (("fabric_async", "fabric AsyncSaver"), ("fabric_sync", "fabric save() (sync)"),
                       ("dcp_async", "torch.distributed.checkpoint.async_save")):
        m = r.get(key)
        if not m:
            continue
        if "skipped" in m:
            lines.append(f"| {label} | skipped: {m['skipped']} | | | |")
            continue
        lines.append(f"| {label} | {m['stall_s']:.3f} | {m['total_s']:.2f} | {m['gbps']:.2f} | "
                     f"{_pct(m.get('stall_of_sync'))} |")
    a = r.get("fabric_async", {}).get("stall_of_sync")
    if a is not None:
        lines.append(f"\nAsync stall / sync save: **{a * 100:.1f} %** (target <= 10 %).")
    return "\n".join(lines)


def fold(run_dir: Path) -> int:
    """File a GPU run: its section into docs/benchmarks.md, its recording into the fixtures."""
    from benchmarks._report import write_section

    doc = json.loads((run_dir / "gpu_check.json").read_text())
    if doc.get("mode") != "full":
        print(f"{run_dir} holds a --tiny rehearsal; fold only a run on the lent GPU", file=sys.stderr)
        return 2
    env = doc["environment"]
    machine = (f"{doc['host']}: lent GPU machine, {env.get('cpus')} cores, Python {env.get('python')}, "
               f"torch {env.get('torch')}")
    write_section(TITLE, (run_dir / "gpu_check.md").read_text(), command=doc["command"],
                  machine_line=machine, date=doc["started"])
    gpu = (doc["parts"].get("discovery", {}).get("result", {}).get("gpus") or [{"name": "gpu"}])[0]
    slug = "lent-" + "".join(c if c.isalnum() else "-" for c in str(gpu["name"]).lower()).strip("-")
    (FIXTURES / slug).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run_dir / "nvml-recording.json", FIXTURES / f"nvml-{slug}.json")
    for name in ("discovery.yaml", "discovery.facts.json"):
        shutil.copyfile(run_dir / name, FIXTURES / slug / name)
    with tarfile.open(run_dir / "sysfs-snapshot.tar.gz") as tar:  # sys/ and proc/ of the host
        tar.extractall(FIXTURES / slug, filter="data")
    print(f"wrote docs/benchmarks.md ## {TITLE}, tests/topology/fixtures/nvml-{slug}.json and "
          f"tests/topology/fixtures/{slug}/")
    return 0
