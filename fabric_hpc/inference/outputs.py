"""A run's output directory (:mod:`fabric_hpc.inference.runner` re-exports these): its run and merge
locks, its ``run.json``, and what backs ``fabric infer status`` (:func:`job_status`) and ``fabric infer
merge`` (:func:`merge_job`)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.events import MAX_EVENT_CHARS, emit, iter_json_lines
from fabric_hpc.inference.engine import EngineLimits
from fabric_hpc.inference.intake import changed_error, read_items
from fabric_hpc.inference.spool import load_snapshot, snapshot_lines, spool_lines
from fabric_hpc.inference.journal import committed_ids, merge_outputs, private_files
from fabric_hpc.inference.pipeline import PHASES
from fabric_hpc.inference.tokenizer import PromptTokenizer
from fabric_hpc.inputs import read_json
from fabric_hpc.pidlock import PidLock

SNAPSHOT = "spool-snapshot.json"
_LEADING_ID = re.compile(r'\s*\{\s*"id"\s*:\s*("(?:[^"\\]|\\.)*")')


def _output_lock(out: Path) -> PidLock:
    """Exclusive ``flock`` on ``<output>/.run.lock``, held by rank 0 for the whole run: a second
    run on the same directory is refused, not interleaved (its orphan cleanup would remove the
    first run's unjournalled chunks)."""
    return PidLock(out / ".run.lock",
                   busy=lambda owner: f"another `fabric infer run` (pid {owner}) is writing to {out}",
                   hint="wait for it to end (it resumes where it stops), or use another --output")


def _load_run(out: Path) -> dict[str, Any]:
    path = out / "run.json"
    starting = ("check the path; if it is a run's --output, that run has not started yet: it writes "
                "run.json once every rank has built its engine (minutes for a large model)")
    if not out.exists() and not out.is_symlink():
        raise NotFoundError(f"{out} does not exist: no `fabric infer run` has written it", hint=starting)
    if out.is_dir() and not path.exists() and not any(out.iterdir()):
        raise NotFoundError(f"{out} holds no run.json: no `fabric infer run` has written it", hint=starting)
    if not path.is_file():
        raise NotFoundError(f"{out} is not a fabric infer output directory (no run.json)",
                            hint="give the --output directory of `fabric infer run`")

    doc = read_json(path, what="run file", limit=16 << 20)
    need = {"input": str, "engine_config": dict, "limits": dict}
    bad = [k for k, t in need.items() if not isinstance(doc, dict) or not isinstance(doc.get(k), t)]
    if bad or not isinstance(doc["engine_config"].get("engine"), str):
        raise ConfigError(f"{path}: not a fabric infer run file "
                          f"(bad or missing {', '.join(bad) or 'engine'})",
                          hint="the output directory is damaged; rerun into a new --output directory")
    return doc


def job_status(output: str | os.PathLike[str]) -> dict[str, Any]:
    """Progress of a run from its output directory (works while it runs)."""
    out = Path(output)
    run = _load_run(out)
    attempts = out / "attempts"
    latest = max((int(p.name) for p in attempts.iterdir() if p.name.isdigit()), default=0) \
        if attempts.is_dir() else 0
    ranks = {}
    for path in sorted((out / "metrics").glob("rank-*.jsonl")):
        last = _last_record(path)
        # a rank of an earlier attempt (more ranks then) is not shown as the latest attempt's
        if last is not None and last.get("attempt") in (latest, None):
            ranks[path.stem] = {k: last.get(k) for k in (
                "ts", "attempt", "phase", "world_size", "items_in", "items_done", "items_per_s",
                "output_tokens_per_s", "padding_waste", "engine_busy_fraction", "queue_depths", "gpu_util")}
    dead = out / "dead-letter.jsonl"
    running, merged = _output_lock(out).holder() is not None, _merged(out)
    read = sum(r.get("items_in") or 0 for r in ranks.values())
    return {"output": str(out), "input": run["input"], "engine": run["engine_config"]["engine"],
            "phase": _job_phase(ranks, running=running, merged=merged,
                                merging=_merge_lock(out).holder() is not None),
            "attempts": len(list(attempts.iterdir())) if attempts.is_dir() else 0,
            "latest_attempt": latest,
            "done": len(committed_ids(out)),
            "items_read": read,
            # an ended run holds nothing: what it read and did not commit, a resume reads again
            "in_flight": max(0, read - sum(r.get("items_done") or 0 for r in ranks.values()))
            if running else 0,
            "dead_letter": sum(1 for _ in iter_json_lines(dead)) if dead.is_file() else 0,
            "merged": merged, "running": running,
            "ranks": ranks}


#: what ``status`` says a run is doing (``phase``; docs/inference.md, "Status")
JOB_PHASES = ("starting", *PHASES[:3], "merging", "finished", "stopped", "done")


def _job_phase(ranks: dict[str, dict[str, Any]], *, running: bool, merged: bool, merging: bool) -> str:
    """While the run holds its lock: the least advanced phase of the latest attempt's ranks
    (``starting`` before any reported; a rank not reported yet counts as reading its input; all
    finished but the run not ended yet: ``draining``). After it: ``merging`` while a merge runs,
    ``done`` once merged, ``finished`` when every rank finished its share, else ``stopped``."""
    size = max((r.get("world_size") or 1 for r in ranks.values()), default=0)
    finished = len(ranks) >= size > 0 and all(r.get("phase") == "finished" for r in ranks.values())
    if merging:
        return "merging"
    if running:
        if not ranks:
            return "starting"
        if len(ranks) < size:
            return PHASES[0]
        least = min(PHASES.index(r["phase"]) if r.get("phase") in PHASES else 1 for r in ranks.values())
        return PHASES[min(least, 2)]
    if merged:
        return "done"
    return "finished" if finished else "stopped"


def _last_record(path: Path, tail_bytes: int = 4 * MAX_EVENT_CHARS) -> dict[str, Any] | None:
    """The last whole JSON line of a metrics log (up to 64 MiB: only its last ``tail_bytes`` are
    read; each line is at most MAX_EVENT_CHARS), or None when it has none."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - tail_bytes))
        tail = f.read()
    for line in reversed(tail.split(b"\n")[:-1]):  # after the last newline: a torn write
        try:
            doc = json.loads(line)
        except (ValueError, RecursionError):  # a torn, damaged or deeply nested line: skipped
            continue
        if isinstance(doc, dict):
            return doc
    return None


def _merged(out: Path) -> bool:
    """Whether ``results.jsonl`` holds every committed chunk: written after the newest one (a
    later attempt's chunks make an older merge stale)."""
    results = out / "results.jsonl"
    if not results.is_file():
        return False
    chunks = out / "chunks"
    newest = max((p.stat().st_mtime_ns for p in chunks.glob("*.jsonl")), default=0) if chunks.is_dir() else 0
    return results.stat().st_mtime_ns >= newest


def _merge_lock(out: Path) -> PidLock:
    """Held by ``merge`` while it checks and writes: ``status`` says ``merging``, a second merge
    is refused; removed as it is released (a merge leaves nothing behind)."""
    return PidLock(out / ".merge.lock", busy=lambda owner: f"another `fabric infer merge` (pid {owner}) is "
                                                           f"merging {out}",
                   hint="wait for it to end", remove=True)


def _refuse_while_running(out: Path) -> None:
    if (pid := _output_lock(out).holder()) is not None:
        raise ConfigError(f"a `fabric infer run` (pid {pid}) is still writing to {out}",
                          hint="merge after it ends")


def merge_job(output: str | os.PathLike[str], source: str | None = None) -> dict[str, Any]:
    """Check output ids == accepted input ids exactly and write ``results.jsonl`` (holding
    ``.merge.lock`` meanwhile: ``status`` says ``merging``)."""
    out = Path(output)
    run = _load_run(out)
    _refuse_while_running(out)  # before creating the merge lock: a refused merge touches nothing
    with private_files(run.get("output_mode", "private")):
        lock = _merge_lock(out)
        lock.acquire()
    try:
        _refuse_while_running(out)  # again, holding the merge lock: a run starting now sees it (_prepare)
        result = _merge_locked(out, run, source)
    finally:
        lock.release()
    emit("infer.merged", **result)
    return result


def _merge_locked(out: Path, run: dict[str, Any], source: str | None) -> dict[str, Any]:
    if source == "-":  # not "this run read stdin" after a run of a spool: say what merge reads
        raise ConfigError("merge does not read stdin (--input -): it checks against a spool or a file",
                          hint="save the piped lines to a file and pass --input FILE" if run["input"] == "-"
                          else "leave --input out to check against the run's own input, or pass --input FILE")
    source = source or run["input"]
    if source == "-":
        raise ConfigError("this run read stdin: merge needs the same input again",
                          hint="pass --input FILE with the lines that were piped in")
    try:
        limits = EngineLimits(**run["limits"])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{out}/run.json: bad limits ({exc})",
                          hint="the output directory is damaged; rerun into a new --output directory"
                          ) from None
    snap_path = out / SNAPSHOT
    if str(Path(source).resolve()) == run["input"] and snap_path.is_file():  # what the last attempt read
        lines = snapshot_lines(load_snapshot(snap_path))
    else:
        lines = spool_lines(source)
    vocab = run.get("vocab_size")  # absent in a run.json written before intake knew it
    if vocab is not None and not (type(vocab) is int and vocab > 0):
        raise ConfigError(f"{out}/run.json: bad vocab_size {vocab!r}",
                          hint="the output directory is damaged; rerun into a new --output directory")
    # each committed id is paired with the line of the content its result was computed from (journalled
    # digests): an input whose lines for it all differ now is refused, not merged with the old results
    changed: list[tuple[str, str, int]] = []
    expected = [it.id for it in read_items(lines, limits=limits, dead_letter=None, vocab_size=vocab,
                                           skip=committed_ids(out), done_too=True, changed=changed,
                                           tokenizer=_run_tokenizer(out, run))]
    if changed:
        raise changed_error(changed, merging=True)
    # counted before results.jsonl is written: a damaged dead letter fails the merge, writing nothing
    dead, with_result = _dead_letter_counts(out / "dead-letter.jsonl", set(expected))
    with private_files(run.get("output_mode", "private")):
        result = merge_outputs(out, expected)  # each id of expected has exactly one result now
    return {**result, "dead_letter": dead, "dead_letter_with_result": with_result,
            "other_input": str(Path(source).resolve()) != run["input"]}


def _run_tokenizer(out: Path, run: dict[str, Any]) -> PromptTokenizer | None:
    """The tokenizer the run encoded text prompts with (run.json's ``tokenizer``: its identity), read
    only where the input has a text prompt; None where the run encoded none (its text prompts were
    dead-lettered, or it began before text prompts were read: merge expects no result for them)."""
    ident = run.get("tokenizer")
    if ident is None:
        return None
    engine_dir = run["engine_config"].get("engine_dir")
    if not isinstance(ident, str) or not isinstance(engine_dir, str):
        raise ConfigError(f"{out}/run.json: bad tokenizer or engine_dir",
                          hint="the output directory is damaged; rerun into a new --output directory")
    return PromptTokenizer(engine_dir, expect=ident, mismatch=(
        f"{out}/run.json: the run encoded text prompts with tokenizer sha256 {ident[:12]}",
        "merge cannot tell which text items it accepted",
        "merge where the engine's model directory holds the run's tokenizer.json and tokenizer_config.json"))


def _dead_letter_counts(path: Path, have: set[str]) -> tuple[int, int]:
    """How many lines were dead-lettered, and how many of those name an id of ``have`` (the ids that
    get a result: a line rejected and then fixed by a later line with the same id, a new spool file),
    counted while the file is read a line at a time."""
    if not path.is_file():
        return 0, 0
    dead = with_result = 0
    for rec in iter_json_lines(path):
        dead += 1
        found = _dead_letter_id(rec.get("raw"))
        with_result += found is not None and found in have
    return dead, with_result


def _dead_letter_id(raw: Any) -> str | None:
    """The id a dead-lettered line's raw text names, or None."""
    found = None
    if isinstance(raw, str):
        try:
            doc = json.loads(raw)
            found = doc.get("id", doc.get("custom_id")) if isinstance(doc, dict) else None
        except (ValueError, RecursionError):  # broken, too deep, or cut at 2,000 characters: an id
            # at its start still counts
            match = _LEADING_ID.match(raw)
            try:
                found = json.loads(match.group(1)) if match else None
            except ValueError:
                found = None
    return found if isinstance(found, str) else None
