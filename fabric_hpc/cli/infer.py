"""``fabric infer``: batch inference runs through the saturation harness."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import click

from fabric_hpc.cli.ckpt_interop import STEP_TYPE
from fabric_hpc.cli.main import one_line
from fabric_hpc.cli.output import console, json_option, render, table
from fabric_hpc.cli.params import FiniteFloat, InputFile, OutputDir, OutputFile
from fabric_hpc.errors import ConfigError, FabricError


@click.group("infer")
def group() -> None:
    """Batch inference: prepare, run, status, merge, bench."""


@group.command("prepare")
@click.argument("engine_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--checkpoint", required=True, type=click.Path(path_type=Path),
              help="fabric checkpoint root (latest, or --step) or step directory to serve.")
@click.option("--step", type=STEP_TYPE, default=None, help="Checkpoint step (default: latest).")
@click.option("--prefix", default=None,
              help="Subtree holding the model (default: top level, else 'model').")
@click.option("--dtype", type=click.Choice(["float32", "float16", "bfloat16"]), required=True)
@click.option("--max-batch-size", type=click.IntRange(1), required=True)
@click.option("--max-input-len", type=click.IntRange(1), required=True)
@click.option("--max-seq-len", type=click.IntRange(2), required=True)
@click.option("--max-num-tokens", type=click.IntRange(1), required=True)
@click.option("--config-out", required=True, type=OutputFile(path_type=Path, what="engine config"),
              help="Where to write the nine-field engine config (JSON) for `fabric infer run` "
                   "(an existing file is replaced only if prepare wrote it for ENGINE_DIR, or with --force).")
@click.option("--force", is_flag=True, default=False,
              help="Replace an existing --config-out file whatever it holds (ENGINE_DIR is refreshed only "
                   "if an earlier prepare wrote it; a checkpoint's tensors are never written to, its root "
                   "gets a pin of the step, ROOT/.pins/, so that fabric ckpt prune keeps it).")
@json_option
def prepare_cmd(engine_dir: Path, checkpoint: Path, step: int | None, prefix: str | None, dtype: str,
                max_batch_size: int, max_input_len: int, max_seq_len: int, max_num_tokens: int,
                config_out: Path, force: bool, as_json: bool) -> None:
    """Prepare a PyTorch engine directory that serves a fabric checkpoint step directly.

    ENGINE_DIR must be new, empty, or one an earlier prepare wrote (it holds fabric_engine.json;
    then it is refreshed); neither it nor --config-out may lie inside a checkpoint."""
    import json
    import os

    from fabric_hpc.inference.engines import prepare_pytorch_engine
    from fabric_hpc.checkpoint.writer import refuse_inside_checkpoint
    from fabric_hpc.inference.engines.artefact import ENGINE_FILE
    from fabric_hpc.inputs import output_path

    # checked before anything is written
    config_out = output_path(config_out, what="engine config")
    refuse_inside_checkpoint(config_out, "the engine config")
    if os.path.lexists(config_out) and not force and not _prepared_for(config_out, engine_dir):
        raise ConfigError(f"engine config {str(config_out)!r} already exists and is not one prepare wrote "
                          f"for {str(engine_dir)!r}: not replacing it",
                          hint="give a new --config-out file, or add --force to replace it")
    cfg = prepare_pytorch_engine(engine_dir, dtype=dtype, max_batch_size=max_batch_size,
                                 max_input_len=max_input_len, max_seq_len=max_seq_len,
                                 max_num_tokens=max_num_tokens, checkpoint=checkpoint, step=step,
                                 prefix=prefix)
    # `infer run` reads engine_dir relative to the config file, wherever this command ran
    cfg["engine_dir"] = os.path.relpath(engine_dir.resolve(), config_out.resolve().parent)
    from fabric_hpc.atomic import write_atomic

    write_atomic(config_out, json.dumps(cfg, indent=2) + "\n")
    build = json.loads((engine_dir / ENGINE_FILE).read_text(encoding="utf-8"))
    ck = build["checkpoint"]
    data = {"engine_dir": str(engine_dir), "engine_config": str(config_out), **ck}
    render(as_json, data, lambda c: c.print(f"{engine_dir}: serves {ck['path']} step {ck['step']} "
                                            f"({ck['naming']} names); engine config -> {config_out}"))


def _prepared_for(config_out: Path, engine_dir: Path) -> bool:
    """Whether ``config_out`` is an engine config an earlier prepare wrote for ``engine_dir`` (a
    pytorch config whose engine_dir, relative to the file, is that directory): refreshed freely."""
    import json

    try:
        if config_out.is_symlink() or config_out.stat().st_size > 1 << 20:
            return False
        doc = json.loads(config_out.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(doc, dict) or doc.get("engine") != "pytorch" or not isinstance(doc.get("engine_dir"), str):
        return False
    return (config_out.parent / doc["engine_dir"]).resolve() == engine_dir.resolve()


def _progress_line(snap: dict[str, Any]) -> str:
    """One rank's live snapshot, or the job's totals (no GPU or queue fields: they are per rank)."""
    line = (f"done {snap.get('items_done', 0):,} (+{snap.get('resumed', 0):,} resumed)  "
            f"{snap.get('items_per_s', 0):,.0f} items/s  "
            f"{snap.get('output_tokens_per_s', 0):,.0f} out tok/s  "
            f"pad {snap.get('padding_waste', 0):.2%}  busy {snap.get('engine_busy_fraction', 0):.0%}")
    if "queue_depths" not in snap:
        return line
    q, util = snap["queue_depths"] or {}, snap.get("gpu_util")
    return (f"{line}  gpu {'-' if util is None else f'{util:.0f}%'}  "
            f"lanes {q.get('lanes', 0)} engine {q.get('engine_active', 0)} done_q {q.get('done_q', 0)}")


def _reject_limit(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, float]:
    """``--max-rejected``: ``("count", N)`` for an integer, ``("fraction", F)`` for ``F`` in [0, 1)
    or a percentage ``P%``."""
    text = value.strip()
    try:
        if text.endswith("%"):
            kind, number = "fraction", float(text[:-1]) / 100
        elif text.isdigit():
            kind, number = "count", float(int(text))
        else:
            kind, number = "fraction", float(text)
    except ValueError:
        number = float("nan")
    if not number >= 0 or (kind == "fraction" and not number <= 1):  # NaN fails both
        raise click.BadParameter(f"{value!r} is not a count (e.g. 0, 100), a fraction in 0..1 (0.05) or a "
                                 f"percentage (5%)")
    return kind, number


@group.command("run")
@click.option("--engine-config", "engine_config", required=True,
              type=InputFile(path_type=Path, what="engine config"),
              help="Engine config (JSON or YAML) with the nine required fields.")
@click.option("--input", "source", required=True,
              help="Spool directory of *.jsonl work items, one .jsonl file, or '-' for stdin.")
@click.option("--output", required=True, type=OutputDir(),
              help="Output directory (journal, chunks, metrics); rerun with it to resume.")
@click.option("--chunk-size", default=512, show_default=True, type=click.IntRange(1),
              help="Results per atomically committed chunk (at most 10000).")
@click.option("--progress/--no-progress", default=None,
              help="Progress (rank 0 only): a live line on a terminal; otherwise (a Slurm log) a plain line "
                   "every --progress-every seconds. Default: on when stderr is a terminal.")
@click.option("--progress-every", default=15.0, show_default=True, type=FiniteFloat(0.1, 3600),
              help="Seconds between plain progress lines when stderr is not a terminal.")
@click.option("--max-rejected", default="10%", show_default=True, callback=_reject_limit,
              help="Dead-lettered input lines allowed before the run exits 3 (results stay committed): "
                   "a count (0: none), a fraction of the input's lines (0.05) or a percentage (5%).")
@click.option("--output-mode", type=click.Choice(["private", "umask"]), default="private",
              show_default=True, help="private: every output file 0600 and directory 0700 "
              "whatever the umask; umask: follow the job's umask (e.g. to share results).")
@click.option("--textfile-dir", type=click.Path(path_type=Path), default=None,  # checked by run_job: exit 3
              envvar="FABRIC_INFER_TEXTFILE_DIR",
              help="A node-local node-exporter textfile directory (it must exist on every node): each "
              "rank also writes its .prom file there, world-readable, removed at its end (docs/metrics.md).")
@click.option("--preflight", is_flag=True, default=False,
              help="Check, once, what every rank needs before it starts (the engine config, the input, "
              "the output directory, --textfile-dir on this node, that mpi4py loads its MPI library), "
              "run nothing, and exit 0 or with the error a rank would give. infer_batch.sbatch runs "
              "it before srun: a rank failing at its start under srun can lose its error line.")
@json_option
def run_cmd(engine_config: Path, source: str, output: Path, chunk_size: int, progress: bool | None,
            progress_every: float, max_rejected: tuple[str, float], output_mode: str,
            textfile_dir: Path | None, preflight: bool, as_json: bool) -> None:
    """Run (or resume) a batch job; launch under mpiexec/srun for one rank per GPU."""
    from fabric_hpc.inference.pipeline import MAX_CHUNK_SIZE, PipelineOptions
    from fabric_hpc.inference import runner

    if chunk_size > MAX_CHUNK_SIZE:  # checked here: importing the limit at startup costs every command
        raise click.BadParameter(f"{chunk_size} is over {MAX_CHUNK_SIZE}: a chunk's journal record lists "
                                 "its ids, and must stay a line resume and merge can read",
                                 param_hint="'--chunk-size'")
    for err in (_overlap(source, output), runner.foreign_output(output)):
        if err is not None:
            if _launch_rank() != 0 and not preflight:  # every rank meets it before MPI: rank 0 says it
                raise SystemExit(err.exit_code)
            raise err
    if preflight:
        runner.preflight(engine_config, source, output, textfile_dir)
        render(as_json, {"preflight": "ok", "output": str(output)},
               lambda c: c.print(f"preflight: ready to launch the ranks into {output}"))
        return
    opts = PipelineOptions(chunk_size=chunk_size, admit_batch=1 if source == "-" else 64)
    show = sys.stderr.isatty() if progress is None else progress
    dead = output / "dead-letter.jsonl"

    def verdict(result: dict[str, Any]) -> None:  # on every rank, before its infer.finish
        if result["rank"] == 0:
            _note_ignored(result["ignored_inputs"])
        _check_rejected(result, dead, max_rejected)

    with _Progress(show, progress_every) as on_progress:
        try:
            result = runner.run_job(engine_config, source, output, options=opts, progress=on_progress,
                                    output_mode=output_mode,
                                    last_words=_json_last_words if as_json else None,
                                    textfile_dir=textfile_dir, verdict=verdict)
        except FabricError as exc:  # under MPI only the verdict returns here: every rank; rank 0 says it
            if _launch_rank() != 0:
                raise SystemExit(exc.exit_code) from None
            raise
    if result["rank"] != 0:
        return
    # the whole job at the top (not rank 0's rates beside job totals); each rank under "ranks"
    result = {**result["job"], **{k: result[k] for k in (
        "world_size", "attempt", "resumed", "items_done_all_ranks", "dead_letter", "ignored_inputs",
        "ranks")}}
    result["dead_letter_file"] = str(dead) if result["dead_letter"] else None
    reasons = f" (each with its reason: {dead})" if result["dead_letter"] else ""
    render(as_json, result, lambda c: c.print(
        f"attempt {result['attempt']}: {result['items_done_all_ranks']:,} items done on "
        f"{result['world_size']} rank(s), {result['resumed']:,} skipped as already done, "
        f"{result['dead_letter']:,} dead-lettered{reasons}\njob: {_progress_line(result)}\n"
        f"next: fabric infer merge {shlex.quote(str(output))}"
        + (" --input FILE  (FILE: the lines that were piped in; merge checks the results against them)"
           if source == "-" else "")))


def _note_ignored(ignored: list[str]) -> None:
    if ignored:
        click.echo(one_line(f"note: {len(ignored)} spool entries named like work were not read: "
                            f"{', '.join(ignored[:8])}{' ...' if len(ignored) > 8 else ''} "
                            "(only regular files named *.jsonl are)"), err=True)


def _check_rejected(result: dict[str, Any], dead: Path, limit: tuple[str, float]) -> None:
    """ConfigError (exit 3) when every line, or more than ``--max-rejected`` of them, was
    dead-lettered; an error alone, not a summary that says "next: fabric infer merge" before it."""
    n = result["dead_letter"] or 0
    if not n:
        return
    if not result["items_done_all_ranks"] and not result["resumed"]:
        raise ConfigError(f"every item of the input ({n:,}) was dead-lettered: nothing ran",
                          hint=f"each reason is in {dead} (often items longer than the "
                               "engine's max_input_len or max_num_tokens)")
    total = n + result["items_done_all_ranks"] + result["resumed"]
    kind, value = limit
    if n > (value * total if kind == "fraction" else value):
        allowed = f"{value:.4g} of the lines ({value:.2%})" if kind == "fraction" else f"{int(value):,}"
        raise ConfigError(f"{n:,} of {total:,} input lines ({n / total:.2%}) were dead-lettered, more "
                          f"than --max-rejected allows ({allowed}); the {total - n:,} others ran and are "
                          f"committed",
                          hint=f"each reason is in {dead}: fix those lines and rerun with the same --output "
                               f"(finished items are kept), or raise --max-rejected")


class _Progress:
    """The progress display of rank 0 as a context manager yielding the ``progress`` callback: a
    live line on a terminal, plain lines every ``every`` seconds otherwise, nothing when off."""

    def __init__(self, show: bool, every: float) -> None:
        from rich.live import Live
        from rich.text import Text

        self.text = Text
        self.live = Live(Text("starting"), console=console(stderr=True), transient=True) \
            if show and sys.stderr.isatty() else None
        self.plain, self.every, self.last = show and self.live is None, every, 0.0

    def __enter__(self) -> Any:
        if self.live is not None:
            self.live.start()
        return self.update

    def update(self, snap: dict[str, Any]) -> None:
        import time

        if snap.get("rank", 0) != 0:
            return
        if self.live is not None:
            self.live.update(self.text(_progress_line(snap)))
        elif self.plain and time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            click.echo(f"{time.strftime('%H:%M:%S')} progress: {_progress_line(snap)}", err=True)

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.stop()


def _overlap(source: str, output: Path) -> ConfigError | None:
    if source == "-":
        return None
    src, out = Path(source).resolve(), output.resolve()
    if src == out or out in src.parents or src in out.parents:
        return ConfigError(f"--output {str(output)!r} and --input {source!r} overlap: results would be "
                           f"read back as work items",
                           hint="give an output directory outside the input (and not above it)")
    return None


def _launch_rank() -> int:
    """This process's rank as the MPI launcher (mpiexec, srun) set it, read before MPI starts; 0
    when not launched so."""
    import os

    for var in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def _json_last_words(rank: int, exc: BaseException, code: int) -> None:
    """Under MPI with ``--json``: rank 0's error document on stdout before the teardown ends it
    (as the CLI writes one for a single-rank failure), so a script reading stdout gets JSON."""
    if rank == 0:
        from fabric_hpc.cli.output import print_json
        from fabric_hpc.errors import FabricError

        err = exc if isinstance(exc, FabricError) else FabricError(str(exc) or type(exc).__name__)
        print_json({**err.to_dict(), "exit_code": code})


@group.command("status")
@click.argument("output", type=click.Path(file_okay=False, path_type=Path))
@json_option
def status_cmd(output: Path, as_json: bool) -> None:
    """Progress of a run from its output directory (also while it runs)."""
    from fabric_hpc.inference.runner import job_status

    st = job_status(output)

    def human(c: Any) -> None:
        import time

        c.print(f"{st['output']}: {st['phase']}, engine {st['engine']}, {st['attempts']} attempt(s), "
                f"{st['done']:,} items done (journalled), {st['items_read']:,} read, {st['in_flight']:,} in "
                f"flight (this attempt), {st['dead_letter']:,} dead-lettered, "
                f"merged: {'yes' if st['merged'] else 'no'}, running: {'yes' if st['running'] else 'no'}")
        rows = [(rank, r.get("phase") or "-", "-" if r.get("items_done") is None else f"{r['items_done']:,}",
                 _when(r.get("ts")),
                 f"{r.get('items_per_s') or 0:,.0f}", f"{r.get('padding_waste') or 0:.2%}",
                 f"{r.get('engine_busy_fraction') or 0:.0%}",
                 " ".join(f"{k}={v}" for k, v in (r.get("queue_depths") or {}).items()))
                for rank, r in st["ranks"].items()]
        if rows:
            c.print(table(f"each rank's last metrics snapshot (now {time.strftime('%H:%M:%S')}; done: "
                          f"in the last attempt, the count above is the journal's)",
                          ["rank", "phase", "done", "at", "items/s", "padding", "busy", "queues"], rows))

    render(as_json, st, human)


def _when(ts: Any) -> str:
    """A snapshot's time, ``HH:MM:SS (Ns ago)``; ``-`` when it has none."""
    import time

    if not isinstance(ts, int | float):
        return "-"
    return f"{time.strftime('%H:%M:%S', time.localtime(ts))} ({max(0.0, time.time() - ts):,.0f}s ago)"


@group.command("merge")
@click.argument("output", type=click.Path(file_okay=False, path_type=Path))
@click.option("--input", "source", default=None,
              help="Input to check against (default: the run's own input).")
@json_option
def merge_cmd(output: Path, source: str | None, as_json: bool) -> None:
    """Check output ids == input ids exactly (none missing or duplicated); write results.jsonl."""
    from fabric_hpc.inference.runner import merge_job

    res = merge_job(output, source)
    dead = output / "dead-letter.jsonl"
    res["dead_letter_file"] = str(dead) if res["dead_letter"] else None

    def human(c: Any) -> None:
        c.print(f"ok: {res['items']:,} items, each exactly once, from {res['chunks']:,} chunks, in input "
                f"order -> {res['results']}")
        if res["without_input"]:
            which = ("are not in the input given to merge (--input, not the run's own)" if res["other_input"]
                     else "the input no longer holds")
            why = "" if res["other_input"] else ": their spool file was removed or changed after they ran"
            click.echo(f"note: {res['without_input']:,} results kept whose ids {which} "
                       f"(e.g. {', '.join(map(repr, res['without_input_ids']))}){why}; they follow the "
                       f"input's results", err=True)
        fixed = res["dead_letter_with_result"]
        if res["dead_letter"] - fixed:
            click.echo(one_line(f"note: {res['dead_letter'] - fixed:,} input lines were dead-lettered and "
                                f"have no result: {dead}"), err=True)
        if fixed:
            click.echo(one_line(f"note: {fixed:,} dead-lettered input lines have a result all the same, "
                                f"from another line with the same id (a fixed copy); the rejected lines are "
                                f"still in the input: {dead}"), err=True)

    render(as_json, res, human)


@group.command("bench")
@click.option("--items", default=100_000, show_default=True, type=click.IntRange(1000),
              help="Items for the scheduling-overhead benchmark.")
@click.option("--saturation-items", default=4000, show_default=True, type=click.IntRange(100),
              help="Items of the ragged workload for the saturation benchmark.")
@json_option
def bench_cmd(items: int, saturation_items: int, as_json: bool) -> None:
    """Harness benchmarks on CPU with the simulated engine (overhead, padding, busy fraction)."""
    from rich.live import Live
    from rich.text import Text

    from fabric_hpc.inference.bench import bench_overhead, bench_saturation

    over = bench_overhead(items)
    live = Live(Text("saturation: starting"), console=console(stderr=True), transient=True)
    with live:
        sat = bench_saturation(saturation_items, tick=lambda s: live.update(
            Text("saturation: " + _progress_line(s))))
    data = {"overhead": over, "saturation": sat}
    render(as_json, data, lambda c: c.print(table("fabric infer bench", ["measure", "value"], [
        ("scheduling core items/s (zero-cost engine)", f"{over['core_items_per_s']:,.0f}"),
        ("threaded pipeline items/s (zero-cost engine)", f"{over['pipeline_items_per_s']:,.0f}"),
        ("padding waste (ragged)", f"{sat['padding_waste']:.2%}"),
        ("static batching waste B=32 / B=128",
         f"{sat['static_b32_waste']:.1%} / {sat['static_b128_waste']:.1%}"),
        ("engine busy fraction", f"{sat['engine_busy_fraction']:.1%}"),
    ])))
