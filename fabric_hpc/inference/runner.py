"""A whole run: config -> engine -> resume state -> shard -> pipeline -> journal, on every rank.

:func:`run_job` is what ``fabric infer run`` calls on each MPI rank; :func:`job_status` and
:func:`merge_job` back ``fabric infer status`` and ``fabric infer merge`` (they live in
:mod:`fabric_hpc.inference.outputs`, re-exported here).
"""

from __future__ import annotations

import collections
import functools
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fabric_hpc.errors import ConfigError, ExternalError, FabricError, NotFoundError
from fabric_hpc.events import emit
from fabric_hpc.inference.engine import (Engine, EngineLimits, KnowsVocabulary, build_engine,
                                         load_engine_config)
from fabric_hpc.inference.intake import DeadLetter, WorkItem, read_items
from fabric_hpc.inference.spool import checked_snapshot, ignored_entries, snapshot_lines, stream_lines
from fabric_hpc.atomic import remove_stale_siblings, write_atomic
from fabric_hpc.inference.journal import ChunkSink, committed_ids, next_attempt, private_files
from fabric_hpc.inference.resume import prepare_resume
from fabric_hpc.inference.mpi import (MpiContext, PeerFailed, check_mpi_library, exit_code_of, first_line,
                                      mpi_context, same_engine_everywhere, shard_longest_first)
from fabric_hpc.inference.outputs import (  # noqa: F401 (job_status, merge_job: re-exported, __all__)
    SNAPSHOT, _last_record, _merge_lock, _output_lock, job_status, merge_job)
from fabric_hpc.inference.pipeline import PHASES, Pipeline, PipelineOptions
from fabric_hpc.inference.telemetry import MetricsWriter, job_totals
from fabric_hpc.inference.tokenizer import (PromptTokenizer, record_tokenizer, recorded_tokenizer,
                                            same_tokenizer_everywhere, tokenizer_for_run)
from fabric_hpc.inference.weights import describe_weights, same_weights, weights_identity
from fabric_hpc.inputs import read_json
from fabric_hpc.pidlock import PidLock

__all__ = ["job_status", "merge_job", "preflight", "run_job"]

FAULT_ENV = "FABRIC_INFER_FAULT"  # test hook: "RANK:N" -> that rank fails after acking N items
IGNORED_IN_EVENT = 20  # names an infer.spool_ignored event lists (all are in the --json summary)


def _check_same_run(path: Path, run_doc: dict[str, Any]) -> dict[str, Any]:
    """ConfigError naming the old and new values when ``path`` (run.json) holds another run; else
    its recorded tokenizer (:func:`recorded_tokenizer`)."""
    old = read_json(path, what="run file", limit=16 << 20)
    weighed = isinstance(old, dict) and "weights" in old and "weights" in run_doc
    for key in ("input", "engine_config", "limits"):
        before = old.get(key) if isinstance(old, dict) else None
        if _same_setting(key, before, run_doc[key], weighed=weighed):
            continue
        if isinstance(before, dict):
            changed = sorted(k for k in before.keys() | run_doc[key].keys() if before.get(k) != run_doc[key].get(k))
            diff = ", ".join(f"{k}: {before.get(k)!r} then, {run_doc[key].get(k)!r} now" for k in changed[:5])
            diff += f", and {len(changed) - 5} more ({', '.join(changed[5:])[:200]})" if len(changed) > 5 else ""
        else:
            diff = f"{before!r} then, {run_doc[key]!r} now"
        raise ConfigError(f"{path.parent} holds a run with a different {key} ({diff[:900]}): cannot resume it",
                          hint=f"use a new --output directory, or the original {key}")
    _check_same_mode(path, old, run_doc)
    recorded = recorded_tokenizer(path, old)
    if recorded.get("tokenizer"):  # text prompts were encoded: the weights' identity leaves it out
        tokenizer_for_run(path.parent, run_doc["engine_config"]["engine_dir"], recorded).load()
    _check_same_weights(path, old, run_doc)
    return recorded


def _check_same_mode(path: Path, old: Any, run_doc: dict[str, Any]) -> None:
    """ConfigError when the run recorded another ``--output-mode``: a resume would leave files of two
    modes in one directory (0600 beside 0644). A run.json without one (older) resumes unchecked."""
    before = old.get("output_mode") if isinstance(old, dict) else None
    if before is None or before == run_doc["output_mode"]:
        return
    raise ConfigError(f"{path.parent} holds a run written with --output-mode {before}; this run asks for "
                      f"--output-mode {run_doc['output_mode']}: cannot resume it (its files would mix modes)",
                      hint=f"resume with --output-mode {before} (the recorded mode), or use a new --output "
                           f"directory (to share a private run's results, copy results.jsonl after merge)")


def _same_setting(key: str, before: Any, now: Any, *, weighed: bool) -> bool:
    """Whether run.json's ``before`` and this run's ``now`` are the same setting. The engine
    directory is compared resolved (a trailing slash or a symlink is the same directory); where both
    runs record their weights' identity, not at all: a copy of the same engine files elsewhere serves
    the same weights (:func:`_check_same_weights` compares them next)."""
    if key != "engine_config" or not isinstance(before, dict) or not isinstance(now, dict):
        return before == now
    if weighed:
        return {k: v for k, v in before.items() if k != "engine_dir"} == \
            {k: v for k, v in now.items() if k != "engine_dir"}
    resolved = [os.path.realpath(d["engine_dir"]) if isinstance(d.get("engine_dir"), str)
                else d.get("engine_dir") for d in (before, now)]
    return {**before, "engine_dir": resolved[0]} == {**now, "engine_dir": resolved[1]}


def _check_same_weights(path: Path, old: Any, run_doc: dict[str, Any]) -> None:
    """After the input, engine config and limits: a re-prepared engine (a newer checkpoint step)
    keeps those, so only its weights' identity tells the runs apart. A run.json
    written before identities were recorded has none and cannot be checked."""
    if not isinstance(old, dict) or "weights" not in old or \
            same_weights(old["weights"], run_doc["weights"], run_doc["engine_config"]["engine_dir"]):
        return
    raise ConfigError(f"{path.parent} holds a run that served {describe_weights(old['weights'])}; the engine "
                      f"now serves {describe_weights(run_doc['weights'])}: cannot resume it (its results "
                      f"would mix two models)",
                      hint="use a new --output directory for the new weights, or serve the weights the run "
                           "started with (pin the step: `fabric infer prepare --step N`, CKPT_STEP=N)")


#: run.json's temporary siblings (:func:`fabric_hpc.atomic.temp_sibling`), of any host: a run's own
_RUN_JSON_TMP = re.compile(r"\.run\.json\.[^/]+-\d+-[0-9a-f]{8}\.tmp")


def foreign_output(output: Path) -> ConfigError | None:
    """An existing, non-empty output directory that no run wrote (no run.json) is refused: the
    harness would write into, and clean up in, a folder of someone else's files. So is one inside a
    committed checkpoint step (prune would delete the results with it)."""
    from fabric_hpc.checkpoint.writer import refuse_inside_checkpoint
    try:
        refuse_inside_checkpoint(output, "the run's --output")
    except ConfigError as exc:
        return exc
    if not output.is_dir() or (output / "run.json").exists():
        return None
    remove_stale_siblings(output / "run.json")  # a run killed while writing its first run.json
    entries = sorted(p.name for p in output.iterdir()
                     if p.name != ".run.lock" and not _RUN_JSON_TMP.fullmatch(p.name))
    if not entries:
        return None
    shown = ", ".join(repr(n) for n in entries[:5]) + (f" and {len(entries) - 5} more" if entries[5:] else "")
    return ConfigError(f"--output {str(output)!r} is not empty and holds no fabric run (no run.json): "
                       f"{shown}",
                       hint="give a new or empty directory for --output (to resume a run, give the "
                            "directory it wrote: it holds run.json)")


def _prepare(ctx: MpiContext, out: Path, run_doc: dict[str, Any], source: str
             ) -> tuple[int, dict[str, Any] | None, PidLock | None, list[str], dict[str, Any]]:
    """Rank 0 locks the output, checks run.json, cleans orphans, opens an attempt and takes the
    spool snapshot; every rank gets the attempt, the same snapshot and run.json's tokenizer
    (:func:`recorded_tokenizer`; rank 0 also the lock, and the spool's entries named like work
    that are not read: :func:`ignored_entries`)."""
    state: dict[str, Any] = {}
    lock = None
    if ctx.rank == 0:
        try:
            if source == "-" and ctx.size > 1:  # refused before the output directory is touched
                raise ConfigError(f"stdin input needs a single rank (this run has {ctx.size})",
                                  hint="use a spool directory (or one .jsonl file) as --input, or run "
                                       "one rank")
            if source != "-":  # a wrong --input fails before the output directory is touched
                state["snapshot"] = checked_snapshot(run_doc["input"])
                state["ignored"] = ignored_entries(run_doc["input"])
                if state["ignored"]:  # count and the first names: a spool can hold thousands
                    emit("infer.spool_ignored", count=len(state["ignored"]),
                         entries=state["ignored"][:IGNORED_IN_EVENT])
            engine = run_doc["engine_config"]
            run_doc = {**run_doc, "weights": weights_identity(engine["engine"], engine["engine_dir"])}
            if (foreign := foreign_output(out)) is not None:
                raise foreign
            out.mkdir(parents=True, exist_ok=True)
            lock = _output_lock(out)
            lock.acquire()
            if (merging := _merge_lock(out).holder()) is not None:  # it would lose results.jsonl
                raise ConfigError(f"a `fabric infer merge` (pid {merging}) is merging {out}",
                                  hint="rerun after it ends")
            path = out / "run.json"
            if path.is_file():
                state["recorded"] = _check_same_run(path, run_doc)
            else:
                write_atomic(path, json.dumps(run_doc, indent=2).encode())
                state["recorded"] = {"tokenizer": None}
            prepare_resume(out)
            (out / "dead-letter.jsonl").unlink(missing_ok=True)  # recomputed from the input
            for prom in out.glob("metrics/rank-*.prom"):  # an earlier attempt's ranks: not exported as current
                prom.unlink()
            if source != "-":
                write_atomic(out / SNAPSHOT, json.dumps(state["snapshot"]).encode())
            state["attempt"] = next_attempt(out)
        except FabricError as exc:
            state["error"] = (type(exc).__name__, exc.message, exc.hint)
    state = ctx.bcast(state)
    if "error" in state:
        if lock is not None:
            lock.release()
        kind, message, hint = state["error"]
        cls = {"NotFoundError": NotFoundError, "ExternalError": ExternalError}.get(kind, ConfigError)
        raise cls(message, hint=hint)
    return int(state["attempt"]), state.get("snapshot"), lock, state.get("ignored", []), state["recorded"]


def _items(ctx: MpiContext, snapshot: dict[str, Any] | None, out: Path, limits: EngineLimits,
           done: set[str], vocab: int | None, tok: PromptTokenizer) -> tuple[Iterator[WorkItem], DeadLetter]:
    dead = DeadLetter(out / "dead-letter.jsonl" if ctx.rank == 0 else None)
    read = functools.partial(read_items, limits=limits, skip=done, vocab_size=vocab, tokenizer=tok)
    if snapshot is None:
        if ctx.size > 1:
            raise ConfigError("stdin input needs a single rank", hint="use a spool directory")
        return read(stream_lines(sys.stdin.buffer), dead_letter=dead), dead
    if ctx.size == 1:
        if getattr(done, "digests", None):  # a changed committed item refused before new commits, as ranks do
            collections.deque(read(snapshot_lines(snapshot), dead_letter=None), maxlen=0)
        return read(snapshot_lines(snapshot), dead_letter=dead), dead
    # every rank reads the same snapshot (same files, same byte counts), so all compute the
    # same shards however the spool changes meanwhile
    costs = [(it.id, it.cost) for it in read(snapshot_lines(snapshot), dead_letter=dead)]
    same_tokenizer_everywhere(ctx, tok)
    if (identity := tok.encoded_with) is not None:  # the same on every rank (checked just above)
        if ctx.rank == 0:
            record_tokenizer(out, identity)
        ctx.rendezvous()  # no rank commits a text result before run.json names its tokenizer (kill -9)
    mine = shard_longest_first(costs, ctx.size)[ctx.rank]
    del costs
    gen = read(snapshot_lines(snapshot), dead_letter=None)
    return (it for it in gen if it.id in mine), dead


def _fault_hook(ctx: MpiContext, out: Path) -> Callable[[list[str]], None] | None:
    spec = os.environ.get(FAULT_ENV, "")
    if not spec:
        return None
    rank, _, count = spec.partition(":")
    if not (rank.isdigit() and count.isdigit()):
        raise ConfigError(f"{FAULT_ENV}={spec[:40]!r} is not RANK:N (a test hook: fail rank RANK after N items)",
                          hint=f"unset {FAULT_ENV}")
    if int(rank) != ctx.rank:
        return None
    limit, seen = int(count), [0]

    def hook(ids: list[str]) -> None:
        seen[0] += len(ids)
        if seen[0] >= limit:
            (out / f"fault-rank-{ctx.rank}").write_text(repr(time.time()))
            raise RuntimeError(f"injected fault on rank {ctx.rank} after {seen[0]} items")
    return hook


def run_job(engine_config: str | os.PathLike[str] | Mapping[str, Any], source: str,
            output: str | os.PathLike[str], *, options: PipelineOptions | None = None,
            engine_options: Mapping[str, Any] | None = None,
            progress: Callable[[dict[str, Any]], None] | None = None,
            metrics_interval: float = 1.0, output_mode: str = "private",
            last_words: Callable[[int, BaseException, int], None] | None = None,
            textfile_dir: str | os.PathLike[str] | None = None,
            verdict: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run (or resume) a job on this rank; return this rank's final snapshot, ``job`` (the whole
    job's totals, on every rank: :func:`~fabric_hpc.inference.telemetry.job_totals`, counts summed
    over ranks, rates over the slowest rank's wall time), ``ranks`` (every rank's final snapshot, in
    rank order), ``attempt``, ``resumed``, ``dead_letter`` (rank 0), ``ignored_inputs`` (rank 0: the
    spool's entries named like work that were not read, each with why) and this ``rank``.
    ``output_mode="private"`` creates every output file 0600 and directory 0700 whatever the
    umask; ``"umask"`` follows the process umask. ``textfile_dir``: a node-exporter textfile
    directory on this node, where each rank also writes its ``.prom`` file world-readable (removed
    at the rank's end; docs/metrics.md). Under MPI a failure ends the process in the ranks'
    ordered teardown instead of raising; ``last_words(rank, error, exit_code)`` is called first.
    ``verdict(result)``, on every rank after the work is committed (``dead_letter``: the job's count
    on every rank), may raise a FabricError that fails the run (``fabric infer run
    --max-rejected``): every rank raises it, no teardown (no rank is left waiting).
    Each rank ends with an ``infer.finish`` event (``exit_code`` 0, or the failure's: the verdict's too)."""
    with private_files(output_mode):
        return _run_job(engine_config, source, output, options=options,
                        engine_options=engine_options, progress=progress,
                        metrics_interval=metrics_interval, output_mode=output_mode, last_words=last_words,
                        textfile_dir=textfile_dir, verdict=verdict)


def preflight(engine_config: str | os.PathLike[str], source: str, output: str | os.PathLike[str],
              textfile_dir: str | os.PathLike[str] | None = None) -> None:
    """What every rank checks before MPI starts, checked once in this process (``fabric infer run
    --preflight``; infer_batch.sbatch runs it on the batch node before ``srun``): ``textfile_dir``
    here, the engine config, the input, that ``output`` (or the directory that would hold it) is
    writable, and that mpi4py loads its MPI library. A rank that fails
    before ``MPI_Init`` can lose its error line under ``srun --kill-on-bad-exit``: srun stops the
    other ranks at once and drops their output still in flight (seen on Slurm 22.05)."""
    _check_textfile_dir(textfile_dir)
    load_engine_config(engine_config)
    if source != "-":
        checked_snapshot(_resolved_input(source))
    _check_writable(Path(output))
    check_mpi_library()


def _check_writable(output: Path) -> None:
    """ConfigError unless ``output``, or its nearest existing parent (where the run creates it), is a
    directory this user can write."""
    where = output.absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    if not where.is_dir() or not os.access(where, os.W_OK | os.X_OK):
        what = "is not a directory" if not where.is_dir() else "is not writable by this user"
        raise ConfigError(f"--output {str(output)!r}: {str(where)!r} {what}: no rank could write its results",
                          hint="give an --output directory this user can create and write")


def _summary(ctx, snap: dict[str, Any], attempt: int, resumed: int, dead_letter: int) -> dict[str, Any]:
    """This rank's result with every rank's snapshot and the job's totals (a collective: all ranks).
    ``resumed``: this input's items an earlier attempt committed (the journal may hold more: ids of a
    batch file removed since), so --max-rejected's share is of this input's lines."""
    ranks = ctx.allgather(snap)
    ctx.barrier()
    job = job_totals(ranks)
    return {**snap, "job": job, "ranks": ranks, "rank": ctx.rank, "world_size": ctx.size,
            "attempt": attempt, "resumed": resumed, "items_done_all_ranks": job["items_done"],
            "dead_letter": dead_letter if ctx.rank == 0 else None}


def _start_engine(ctx: MpiContext, engine_config: str | os.PathLike[str] | Mapping[str, Any],
                  engine_options: Mapping[str, Any] | None, source: str,
                  output_mode: str) -> tuple[Engine, dict[str, Any]]:
    """(this rank's engine, the run's document: input, engine config, limits, output mode, vocabulary,
    tokenizer: None until a text prompt is encoded), after every rank built its engine (one that
    failed on a rank: the others answer, not wait)."""
    config = load_engine_config(engine_config)
    if engine_options is not None and "local_rank" in engine_options:
        raise ConfigError("engine option 'local_rank' is set by the harness (this rank's GPU on its node)",
                          hint="leave it out; choose a GPU with device= (PyTorch) or CUDA_VISIBLE_DEVICES")
    engine = build_engine(config, local_rank=ctx.local_rank, **dict(engine_options or {}))
    ctx.rendezvous()
    vocab = int(engine.vocab_size) if isinstance(engine, KnowsVocabulary) else None
    same_engine_everywhere(ctx, {**asdict(engine.limits), "vocab_size": vocab})
    return engine, {"input": source if source == "-" else _resolved_input(source),
                    "engine_config": config.model_dump(), "limits": asdict(engine.limits),
                    "output_mode": output_mode, "vocab_size": vocab, "tokenizer": None}


def _resolved_input(source: str) -> str:
    """``source`` absolute and resolved, except where resolving loses it: ``/dev/stdin`` on a pipe
    resolves to ``/proc/PID/fd/pipe:[N]``, no path at all; kept as given there, so the spool check
    says what it is (a FIFO: pipe into ``--input -``)."""
    resolved = Path(source).resolve()
    if not os.path.lexists(resolved) and os.path.exists(source):
        return os.path.abspath(source)
    return str(resolved)


def _judge(verdict: Callable[[dict[str, Any]], None] | None, result: dict[str, Any],
           dead_letter: int) -> FabricError | None:
    """The error ``verdict`` raises for this result, or None. ``dead_letter``: this rank's count,
    the job's on every rank (each rank read the whole snapshot to cost and shard it: :func:`_items`)."""
    if verdict is None:
        return None
    try:
        verdict({**result, "dead_letter": dead_letter})
    except FabricError as exc:
        return exc
    return None


def _finish(ctx: MpiContext, started: float, metrics: MetricsWriter | None, pipeline: Pipeline | None,
            code: int, error: BaseException | None = None) -> None:
    """This rank's last event, ``infer.finish`` (before a failure's teardown, which may end the
    process), after closing its metrics (which removes its textfile-directory copy)."""
    if metrics is not None:
        metrics.close()
    try:
        snap = pipeline.snapshot() if pipeline is not None else {}
    except Exception:  # noqa: BLE001 - a failing pipeline: the event still says how the rank ended
        snap = {}
    emit("infer.finish", rank=ctx.rank, size=ctx.size, exit_code=code,
         seconds=round(time.monotonic() - started, 3), items_in=snap.get("items_in", 0),
         items_done=snap.get("items_done", 0), output_tokens=snap.get("output_tokens", 0),
         **({"error": first_line(error)} if error is not None else {}))


def _run_job(engine_config: str | os.PathLike[str] | Mapping[str, Any], source: str,
             output: str | os.PathLike[str], *, options: PipelineOptions | None,
             engine_options: Mapping[str, Any] | None,
             progress: Callable[[dict[str, Any]], None] | None,
             metrics_interval: float, output_mode: str,
             last_words: Callable[[int, BaseException, int], None] | None,
             textfile_dir: str | os.PathLike[str] | None,
             verdict: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
    ctx = mpi_context()
    ctx.last_words = last_words
    out = Path(output)
    opts = options or PipelineOptions(admit_batch=1 if source == "-" else 64)
    pipeline: Pipeline | None = None
    metrics: MetricsWriter | None = None
    lock: PidLock | None = None
    started = time.monotonic()
    try:
        _check_textfile_dir(textfile_dir)  # on every rank's node, before the engine loads
        engine, run_doc = _start_engine(ctx, engine_config, engine_options, source, output_mode)
        limits, vocab = engine.limits, run_doc["vocab_size"]
        attempt, snapshot, lock, ignored, recorded = _prepare(ctx, out, run_doc, source)
        tok = tokenizer_for_run(out, run_doc["engine_config"]["engine_dir"], recorded,  # ranks record: _items
                                on_load=functools.partial(record_tokenizer, out) if ctx.size == 1 else None)
        # one view of finished work for every rank: read on rank 0 before any rank starts
        # (a rank reading later could see work another rank already committed and shard differently)
        done = ctx.bcast(committed_ids(out) if ctx.rank == 0 else None)
        metrics = MetricsWriter(out, ctx.rank, local_rank=ctx.local_rank, attempt=attempt,
                                textfile_dir=textfile_dir, world_size=ctx.size)
        metrics.write({"phase": PHASES[0]})  # `status` shows it while the rank costs and shards its input
        items, dead = _items(ctx, snapshot, out, limits, done, vocab, tok)
        sink = ChunkSink(out, rank=ctx.rank, attempt=attempt, chunk_size=opts.chunk_size)
        pipeline = Pipeline(engine, items, sink, opts, on_ack=_fault_hook(ctx, out), decode=tok.decode)
        emit("infer.start", rank=ctx.rank, size=ctx.size, attempt=attempt, resumed=len(done))
        pipeline.start()
        pipeline.join(_ticker(ctx, metrics, pipeline, progress, metrics_interval, lambda: dead.skipped),
                      interval=0.1)
        snap = metrics.write(pipeline.snapshot())
        _close(sink, dead, engine)
        ctx.rendezvous()  # a rank that finished first answers a late failure, not waits in allgather
        snap = {**snap, "elapsed_s": time.monotonic() - started}  # engine start-up and input costing included
        result = {**_summary(ctx, snap, attempt, dead.skipped, dead.count), "ignored_inputs": ignored}
        failure = _judge(verdict, result, dead.count)  # raised after infer.finish says it
        _finish(ctx, started, metrics, pipeline, 0 if failure is None else failure.exit_code, failure)
        if failure is None:
            return result
    except BaseException as exc:
        _abort(ctx, started, metrics, pipeline, exc)
        raise
    finally:
        if lock is not None:
            lock.release()
    raise failure  # the one way here: the verdict failed the run, alike on every rank (no teardown)


def _abort(ctx: MpiContext, started: float, metrics: MetricsWriter | None, pipeline: Pipeline | None,
           exc: BaseException) -> None:
    """A failed rank's end, before ``exc`` is raised: its pipeline stopped, ``infer.finish`` with the error,
    then the other ranks told: another rank's failure (:class:`PeerFailed`, after ``infer.peer_failed``)
    acknowledged with that rank's exit code, this rank's own failure made fatal to all."""
    if pipeline is not None:
        pipeline.shutdown()
    if isinstance(exc, PeerFailed):
        emit("infer.peer_failed", rank=ctx.rank, error=str(exc))
        _finish(ctx, started, metrics, pipeline, exc.exit_code, exc)
        ctx.acknowledge(exc)
    else:
        _finish(ctx, started, metrics, pipeline, exit_code_of(exc), exc)
        ctx.fatal(exc)


def _close(*parts: Any) -> None:
    for part in parts:
        part.close()


def _check_textfile_dir(textfile_dir: str | os.PathLike[str] | None) -> None:
    """ConfigError for a ``textfile_dir`` that is not a writable directory on this node: a typo
    there was a run whose metrics were never exported (a failed write later, a full disk, is only
    an ``infer.telemetry_failed`` event: telemetry never ends a run that started)."""
    if textfile_dir is None:
        return
    path = Path(textfile_dir)
    hint = ("create it on every node the job runs on (docs/metrics.md: `install -d -m 1777 DIR`), "
            "or leave --textfile-dir (FABRIC_INFER_TEXTFILE_DIR) out")
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is not a directory"
        raise ConfigError(f"--textfile-dir {str(path)!r} {what} on {os.uname().nodename}: the metrics "
                          f"would never be exported", hint=hint)
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"--textfile-dir {str(path)!r} is not writable on {os.uname().nodename}: the "
                          f"metrics would never be exported", hint=hint)


def _ticker(ctx: MpiContext, metrics: MetricsWriter, pipeline: Pipeline,
            progress: Callable[[dict[str, Any]], None] | None, interval: float,
            resumed: Callable[[], int]) -> Callable[[], None]:
    """What the pipeline's join calls every 0.1 s: answer peers, and every ``interval`` seconds write
    a metrics snapshot (and hand ``progress`` the job's view of it: :func:`_job_progress`)."""
    last = [0.0]

    def tick() -> None:
        ctx.poll()
        if time.monotonic() - last[0] >= interval:
            last[0] = time.monotonic()
            snap = metrics.write(pipeline.snapshot())
            if progress:
                progress({**_job_progress(metrics, snap), "resumed": resumed()})

    return tick


def _job_progress(metrics: MetricsWriter, snap: dict[str, Any]) -> dict[str, Any]:
    """This rank's snapshot with the job's counts, rates, padding and busy fraction over it and the
    other ranks' latest snapshots of this attempt (their metrics logs, at most a second old), as
    ``status`` reads them; the queue depths and GPU stay this rank's. One rank: ``snap``."""
    if metrics.world_size <= 1:
        return snap
    snaps = [snap]
    for rank in range(metrics.world_size):
        path = metrics.dir / f"rank-{rank:05d}.jsonl"
        try:
            other = _last_record(path, tail_bytes=64 << 10) if rank != metrics.rank else None
        except OSError:  # not written yet (a rank still costing its input), or unreadable now
            other = None
        if other is not None and other.get("attempt") == metrics.attempt:
            snaps.append(other)
    job = job_totals(snaps)
    return {**snap, **{k: job[k] for k in ("items_done", "items_per_s", "output_tokens_per_s",
                                           "padding_waste", "engine_busy_fraction")}}
