"""``fabric ckpt``: list, show, verify, restore (reshard), prune, export/import HDF5."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from fabric_hpc.cli.main import one_line
from fabric_hpc.cli import output
from fabric_hpc.cli.output import PlainTable, console, json_option, render, table
from fabric_hpc.cli.ckpt_interop import STEP_TYPE
from fabric_hpc.cli.params import OutputDir


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@contextmanager
def _progress(label: str, total: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr (bytes done / total); silent with --json or no terminal."""
    if not enabled or total <= 0 or not sys.stderr.isatty():  # no bar, and no blank line, in a job's log
        yield lambda n: None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), console=console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


step_option = click.option("--step", type=STEP_TYPE, default=None, help="Step to use (default: latest).")


class _Group(click.Group):
    """Turns a MemoryError left in any ``fabric ckpt`` command into the exit-5 error with the fix (the
    readers that know the tensor raise their own first, naming it)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MemoryError:
            from fabric_hpc.checkpoint.errors import CheckpointMemoryError
            raise CheckpointMemoryError(
                f"`fabric ckpt {ctx.invoked_subcommand or ''}` ran out of memory (more than this process "
                "may allocate)",
                hint="run it with more memory: a larger --mem (or --mem-per-cpu) in the sbatch script, "
                     "a host with more free memory, or a higher ulimit -v") from None


@click.group("ckpt", cls=_Group)
def group() -> None:
    """Checkpoints: list, show, verify, restore onto another world size, prune; export/import (HDF5),
    export-hf/import-hf (Hugging Face safetensors), export-dcp/import-dcp (PyTorch DCP), convert."""


@group.command("list")
@click.argument("directory", type=click.Path(path_type=Path, readable=False))
@json_option
def list_cmd(directory: Path, as_json: bool) -> None:
    """List the checkpoints under DIRECTORY (newest last), flagging damaged steps and leftovers."""
    from fabric_hpc.checkpoint import health
    from fabric_hpc.checkpoint.retention import latest_problem
    from fabric_hpc.checkpoint.store import (
        denied, list_checkpoints, read_latest, root_warnings, uncommitted_steps, unreadable, why_uncommitted,
    )
    health.require_root(directory, "list")
    latest = read_latest(directory)
    rows = [_list_row(health.step_health(ref), latest) for ref in list_checkpoints(directory)]
    for ref in uncommitted_steps(directory):  # shown, not hidden: a partial copy, a symlink, a damaged step
        rows.append({"step": ref.step, "path": str(ref.path), "latest": ref.path.name == latest,
                     "damaged": True, "error": why_uncommitted(ref.path),
                     **({"unreadable": True} if unreadable(ref.path) else {})})
    rows.sort(key=lambda r: r["step"])
    left = health.leftovers(directory)
    damaged = {r["step"] for r in rows if r.get("damaged")}
    if (problem := latest_problem(directory, damaged)) is not None:
        click.echo(one_line(f"warning: {directory}: {problem} (restores without --step and prune refuse it)"),
                   err=True)
        for r in rows:
            r["latest_problem"] = problem
    for warning in root_warnings(directory):  # `latest` names a step that is gone: restore takes the newest
        click.echo(one_line(f"warning: {directory}: {warning}"), err=True)
    if as_json:  # the JSON stays one row per step: leftovers are said on stderr (prune --json lists them)
        for lo in left:
            click.echo(one_line(_leftover_line(lo)), err=True)
    render(as_json, rows, lambda c: _list_human(c, directory, rows, left))
    if unread := [r["path"] for r in rows if r.get("unreadable")]:
        raise denied(*unread)  # listed above; exit 5


def _list_row(h: Any, latest: str | None) -> dict[str, Any]:
    ref = h.ref
    row = {"step": ref.step, "path": str(ref.path), "latest": ref.path.name == latest}
    if h.state is None:
        m = h.manifest
        return {**row, "created_at": m.created_at, "world_size": m.world_size, "tensors": len(m.tensors),
                "bytes": m.nbytes, "tags": m.tags}
    if h.state == "newer":  # not damage: upgrade fabric-hpc to read it
        return {**row, "newer_format": True, "error": h.why}
    return {**row, "damaged": True, "error": h.why,
            **({"unreadable": True} if h.state == "unreadable" else {})}


def _list_human(c: Any, directory: Path, rows: list[dict], left: list[Any]) -> None:
    if not rows:
        c.print(f"no checkpoint in {directory} yet")
    else:
        t = table(
            f"checkpoints in {directory}", ["step", "latest", "created", "world", "tensors", "size", "tags"],
            [(r["step"], "*" if r["latest"] else "", r.get("created_at", f"{_label(r)}: {r.get('error')}"),
              r.get("world_size"), r.get("tensors"), _size(r["bytes"]) if "bytes" in r else "",
              ",".join(r.get("tags", []))) for r in rows])
        # a timestamp is never cut in two (other columns give way); a DAMAGED message still folds
        t.columns[2].min_width = max((len(r["created_at"]) for r in rows if "created_at" in r), default=None)
        _fit_last_column(c, t)
        c.print(t)
    for lo in left:
        c.print(_leftover_line(lo), soft_wrap=True)


def _leftover_line(lo: Any) -> str:
    """One leftover of a killed save or prune, in the same words with and without --json."""
    what = {"abandoned": "abandoned (its writer is gone): `fabric ckpt prune` removes it",
            "in progress": "in progress (its writer is running)"}.get(
        lo.state, "writer unknown (another host, or an older name): kept")
    return f"leftover {lo.path}: {_size(lo.nbytes)}, pid {lo.pid}, {what}"


def _label(row: dict[str, Any]) -> str:
    return "NEWER FORMAT" if row.get("newer_format") else "UNREADABLE" if row.get("unreadable") else "DAMAGED"


def _fit_last_column(c: Any, t: Any) -> None:
    """Narrow the table's last column (tags, folded) so the table fits the console, if it can."""
    import io

    from rich.console import Console
    last = t.columns[-1]
    for _ in range(3):
        probe = Console(width=c.width, file=io.StringIO(), markup=False, highlight=False, soft_wrap=True)
        probe.print(t)
        over = max(map(len, probe.file.getvalue().splitlines()), default=0) - c.width
        widest = max((len(str(x)) for x in [last.header, *last._cells]), default=6)
        if over <= 0 or (last.max_width or widest) <= 6:
            return
        last.max_width = max(6, (last.max_width or widest) - over)


@group.command("show")
@click.argument("path", type=click.Path(path_type=Path, readable=False))
@step_option
@json_option
def show_cmd(path: Path, step: int | None, as_json: bool) -> None:
    """Show a checkpoint's manifest and tensor index (PATH: a checkpoint or a root)."""
    from fabric_hpc.checkpoint import open_checkpoint
    from fabric_hpc.checkpoint.format import parse_provenance
    from fabric_hpc.checkpoint.reader import read_manifest
    ck = open_checkpoint(path, step)
    m = ck.manifest
    prov = parse_provenance(read_manifest(ck.path))
    data = {"path": str(ck.path), **m.model_dump(mode="json", exclude={"tensors"}),
            "provenance": prov.model_dump(mode="json") if prov else None,
            "tensors": {n: {"dtype": e.dtype, "shape": e.shape, "chunk_shape": e.chunk_shape,
                            "split": e.split.model_dump() if e.split else None, "chunks": len(e.chunks),
                            "bytes": sum(c.nbytes for c in e.chunks)} for n, e in m.tensors.items()}}
    if m.values is not None:  # `values`: the manifest's exact encoding; `plain_values`: as a reader expects
        data["plain_values"] = _plain_values(m.values.leaves)

    def human(c: Any) -> None:
        c.print(f"{ck.path}  step {m.step}  created {m.created_at}  world size {m.world_size}  "
                f"{_size(m.nbytes)}  format v{m.format_version}")
        if m.layout or m.tags or m.user_metadata:
            c.print(f"layout {m.layout}  tags {m.tags}  metadata {m.user_metadata}")
        if m.values is not None and m.values.leaves:  # non-tensor leaves (`--json`: values)
            c.print(f"values {', '.join(sorted(m.values.leaves))}  (plain Python leaves; --json shows them: "
                    "plain_values)")
        if (p := prov) is not None:
            c.print(f"saved by {p.user or '?'} on {p.host or '?'} at {p.saved_at or '?'}"
                    + (f" (Slurm job {p.slurm_job_id})" if p.slurm_job_id else ""))
        columns = ["tensor", "dtype", "shape", "split", "chunks", "size"]
        rows = [(n, t["dtype"], t["shape"], _split_text(t["split"]), t["chunks"], _size(t["bytes"]))
                for n, t in data["tensors"].items()]
        c.print(table(None, columns, rows) if len(rows) <= output.PLAIN_ROWS else PlainTable(columns, rows))
    render(as_json, data, human)


def _plain_values(leaves: dict[str, Any]) -> dict[str, Any] | None:
    from fabric_hpc.checkpoint.values import plain
    try:
        return {name: plain(doc) for name, doc in leaves.items()}
    except ValueError:  # a damaged leaf: `verify` names it
        return None


@group.command("verify")
@click.argument("path", type=click.Path(path_type=Path, readable=False))
@step_option
@click.option("--all", "all_steps", is_flag=True, help="Verify every committed checkpoint under PATH.")
@json_option
def verify_cmd(path: Path, step: int | None, all_steps: bool, as_json: bool) -> None:
    """Check every chunk checksum and the metadata; exit 3 and name the damage if any."""
    from fabric_hpc.checkpoint.format import MANIFEST
    from fabric_hpc.checkpoint.restore import VerifyReport
    from fabric_hpc.checkpoint.store import (
        denied, list_checkpoints, root_problems, root_warnings, uncommitted_steps, unreadable,
    )
    if all_steps and step is not None:
        raise click.UsageError("--step and --all cannot be combined: --all verifies every step")
    if all_steps:
        _require_root_for_all(path)
    # --all: each step directory itself (the root is listed once, not once per step)
    targets = [(r.path, None, r.step) for r in list_checkpoints(path)] if all_steps else [(path, step, None)]
    reports = []
    if not (path / MANIFEST).is_file() and path.is_dir():  # a root: its own damage, and warnings
        problems, warnings = root_problems(path), root_warnings(path)
        if problems or warnings:
            unread = [r.path for r in uncommitted_steps(path) if unreadable(r.path)]
            reports.append(VerifyReport(path, None, problems=problems, unreadable=bool(unread),
                                        warnings=warnings))
    for target, s, listed in targets:
        if s is None and not all_steps and reports and _latest_refused(path):  # the root's report names it
            continue
        with _progress(f"verify {target.name if all_steps else s if s is not None else 'latest'}",
                       _total(target, s), not as_json) as tick:
            reports.append(_verify_one(target, s, listed, tick))
    if not reports:  # an empty root: nothing saved yet (list shows [], prune does nothing)
        render(as_json, [], lambda c: c.print(f"nothing to verify: no checkpoint in {path} yet"))
        return
    render(as_json, [r.as_dict() for r in reports], lambda c: [
        c.print(f"{_verdict(r)}  {r.path}"
                + ("" if (r.step is None and r.ok) or r.newer_format else
                   f"  {r.tensors} tensors, {r.chunks} chunks, {_size(r.nbytes)}")
                + "".join(f"\n  - {p}" for p in r.problems)
                + "".join(f"\n  - warning: {w}" for w in r.warnings)) for r in reports])
    if any(r.unreadable for r in reports):  # permission denied: what is there is unknown (exit 5)
        raise denied(*[r.path for r in reports if r.unreadable and r.step is not None],
                     *[r.path for r in uncommitted_steps(path) if unreadable(r.path)])
    _raise_for_damage(path, reports)


def _raise_for_damage(path: Path, reports: list[Any]) -> None:
    """verify's exit: 3 naming the damaged steps (and the root's damage), or the steps a newer
    fabric-hpc wrote, which were not verified (fix: upgrade)."""
    from fabric_hpc.checkpoint import CheckpointCorruptError
    from fabric_hpc.checkpoint.errors import CheckpointNewerFormatError
    bad, newer = [r for r in reports if r.damaged], [r for r in reports if r.newer_format]
    unchecked = (f"{len(newer)} checkpoint(s) written by a newer fabric-hpc, not verified: "
                 + ", ".join(str(r.path) for r in newer)) if newer else ""
    upgrade = "; upgrade fabric-hpc to verify the newer ones" if newer else ""
    if bad:
        root = (f"; for the damage of the root {path} itself: rewrite its `latest` naming a committed step "
                f"(`echo step-NNNNNNNNNN > {path / 'latest'}`), move step directories without a manifest "
                "out of it") if any(r.step is None for r in bad) else ""
        named = ", ".join(str(r.path) for r in bad) + (f"; {unchecked}" if newer else "")
        raise CheckpointCorruptError(f"{len(bad)} checkpoint(s) damaged: {named}",
                                     hint="restore an older step (`fabric ckpt list`, then --step N), or "
                                          f"re-save{root}{upgrade}")
    if newer:
        raise CheckpointNewerFormatError(unchecked, hint="upgrade fabric-hpc to verify them")


def _verify_one(target: Path, step: int | None, listed: int | None, tick: Any) -> Any:
    """verify() of one step; under --all (``listed``: the step of a listed step directory) a step a
    newer fabric-hpc wrote is a report of its own (NEWER FORMAT), so the other steps are still
    verified (list and prune go on past it too), and one pruned meanwhile is a warning (not damage)."""
    from fabric_hpc.checkpoint import CheckpointNotFoundError, verify
    from fabric_hpc.checkpoint.errors import CheckpointNewerFormatError
    from fabric_hpc.checkpoint.restore import VerifyReport
    try:
        return verify(target, step=step, progress=tick)
    except CheckpointNewerFormatError as exc:
        if listed is None:
            raise
        return VerifyReport(target, listed, problems=[exc.message], newer_format=True)
    except CheckpointNotFoundError as exc:
        if listed is None:
            raise
        return VerifyReport(target, listed, warnings=[f"not verified: {exc.message}"])


def _verdict(r: Any) -> str:
    if not r.ok:
        return "UNREADABLE" if r.unreadable else "NEWER FORMAT" if r.newer_format else "DAMAGED"
    return "WARNING" if r.warnings else "OK"


def _total(target: Path, step: int | None) -> int:
    """Bytes to verify (for the progress bar; 0 when the manifest cannot be read: verify says why)."""
    from fabric_hpc.checkpoint import open_checkpoint
    from fabric_hpc.errors import FabricError
    try:
        return open_checkpoint(target, step).manifest.nbytes
    except (FabricError, OSError):
        return 0


def _latest_refused(root: Path) -> bool:
    """Whether opening ``root`` without --step is refused (a damaged ``latest``)."""
    from fabric_hpc.checkpoint import CheckpointCorruptError
    from fabric_hpc.checkpoint.store import resolve
    try:
        resolve(root)
    except CheckpointCorruptError:
        return True
    return False


def _require_root_for_all(path: Path) -> None:
    """--all needs a checkpoint root: a step directory or an unrelated directory is exit 3 naming
    why (an empty root is fine: nothing to verify, exit 0)."""
    from fabric_hpc.checkpoint import CheckpointNotFoundError
    from fabric_hpc.checkpoint.health import root_state, require_root
    if root_state(path) == "checkpoint":
        raise CheckpointNotFoundError(f"{path}: it is a checkpoint itself, not a root of checkpoints",
                                      hint=f"drop --all to verify it, or give its root {path.parent} "
                                           "with --all")
    require_root(path, "verify --all")


@group.command("restore")
@click.argument("path", type=click.Path(path_type=Path, readable=False))
@click.option("--to-world-size", "world_size", type=click.IntRange(min=1, max=1 << 20), required=True,
              help="Lay split tensors out for this many ranks.")
@click.option("--mesh", "mesh", default=None, metavar="AxB",
              help="Lay tensors split over several dims out as blocks of this mesh (e.g. 2x4 for 8 ranks).")
@click.option("--out", "out", type=OutputDir(), required=True,
              help="Checkpoint root to write the resharded checkpoint into.")
@step_option
@json_option
def restore_cmd(path: Path, world_size: int, mesh: str | None, out: Path, step: int | None, as_json: bool) -> None:
    """Rewrite a checkpoint for another world size (verifying every chunk it reads)."""
    from fabric_hpc.checkpoint import open_checkpoint
    from fabric_hpc.checkpoint.reshard import reshard
    total = open_checkpoint(path, step).manifest.nbytes
    _require_out_root(out)
    with _progress("reshard", total, not as_json) as tick:
        res = reshard(path, out, world_size, step=step, mesh=_mesh(mesh), progress=tick)
    data = {"path": str(res.path), "step": res.step, "world_size": world_size, "bytes": res.nbytes,
            "seconds": round(res.seconds, 3), "existing": res.existing}
    render(as_json, data, lambda c: c.print(
        f"{res.path} already holds this reshard for world size {world_size} (verified): nothing written"
        if res.existing else f"wrote {res.path} for world size {world_size} ({_size(res.nbytes)})"))


def _require_out_root(out: Path) -> None:
    """--out must be new, empty, or a checkpoint root: writing step directories into a directory of
    other files (a home directory, notes) would mix them in."""
    from fabric_hpc.checkpoint import CheckpointError
    from fabric_hpc.checkpoint.health import root_state
    if not out.is_dir() or (state := root_state(out)) == "root":
        return
    why = "is a checkpoint itself" if state == "checkpoint" \
        else "holds other files and is not a checkpoint root"
    raise CheckpointError(f"--out {out} {why}: the reshard would be written among them",
                          hint="give a new or empty directory (or an existing checkpoint root) as --out")


def _split_text(split: dict | None) -> str:
    if not split:
        return ""
    dims, parts = split["dim"], split["parts"]
    if isinstance(dims, int):
        return f"dim {dims} / {parts}"
    return f"dims {','.join(map(str, dims))} / {'x'.join(map(str, parts))}"


def _mesh(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        mesh = tuple(int(p) for p in text.lower().split("x"))
    except ValueError:
        mesh = ()
    if not mesh or any(m < 1 for m in mesh):
        raise click.BadParameter(f"{text!r} is not a mesh like 2x4", param_hint="--mesh")
    return mesh


@group.command("prune")
@click.argument("directory", type=click.Path(path_type=Path, readable=False))
@click.option("--keep-last", type=click.IntRange(min=1), required=True, help="Keep the newest N.")
@click.option("--keep-every", type=click.IntRange(min=1), default=None, help="Also keep steps divisible by K.")
@click.option("--keep-tagged/--no-keep-tagged", default=True, show_default=True, help="Keep tagged checkpoints.")
@click.option("--dry-run", is_flag=True, help="Only show what would be removed.")
@click.option("--force", is_flag=True, help="Prune even while `latest` is damaged or names a damaged step.")
@json_option
def prune_cmd(directory: Path, keep_last: int, keep_every: int | None, keep_tagged: bool,
              dry_run: bool, force: bool, as_json: bool) -> None:
    """Delete old checkpoints (never latest, never a damaged one; checkpoints being read are skipped)
    and what killed saves and prunes left behind."""
    from fabric_hpc.checkpoint import RetentionPolicy, prune
    from fabric_hpc.checkpoint.health import require_root
    from fabric_hpc.checkpoint.store import denied, step_dir_name, uncommitted_steps, unreadable
    require_root(directory, "prune")
    if unread := [r.path for r in uncommitted_steps(directory) if unreadable(r.path)]:
        raise denied(*unread)  # what is in them is unknown: nothing is deleted
    res = prune(directory, RetentionPolicy(keep_last, keep_every, keep_tagged), dry_run=dry_run,
                refuse_broken_latest=not force)
    data = {"removed": res.removed, "kept": res.kept, "busy": res.busy, "damaged": res.damaged,
            "newer_format": res.newer, "pinned": {str(k): v for k, v in res.pinned.items()},
            "pin_problems": res.pin_problems, "dry_run": dry_run,
            "removed_paths": [str(directory / step_dir_name(s)) for s in res.removed],
            "leftovers_removed": res.leftovers}
    render(as_json, data, lambda c: c.print(_prune_text(directory, res, dry_run), soft_wrap=True))


def _prune_text(directory: Path, res: Any, dry_run: bool) -> str:
    from fabric_hpc.checkpoint.store import step_dir_name
    if not (res.removed or res.kept or res.damaged or res.leftovers):
        return f"nothing to prune: no checkpoint in {directory} yet"
    return (f"{'would remove' if dry_run else 'removed'} "
            + (", ".join(f"step {s} ({directory / step_dir_name(s)})" for s in res.removed) or "nothing")
            + f"; kept {res.kept}"
            + "".join(f"; step {s} pinned by {who}" for s, who in res.pinned.items())
            + (f"; pin files that protect nothing (unreadable): {res.pin_problems}"
               if res.pin_problems else "")
            + (f"; busy (being read, retry later) {res.busy}" if res.busy else "")
            + (f"; DAMAGED, kept and not counted in --keep-last (see fabric ckpt verify): {res.damaged}"
               if res.damaged else "")
            + (f"; NEWER FORMAT (written by a newer fabric-hpc; upgrade to read it), kept and not counted in "
               f"--keep-last: {res.newer}" if res.newer else "")
            + (f"; {'would remove' if dry_run else 'removed'} leftovers of killed saves/prunes: "
               f"{res.leftovers}" if res.leftovers else ""))


@group.command("export")
@click.argument("path", type=click.Path(path_type=Path, readable=False))
@click.option("--h5", "h5", type=click.Path(path_type=Path, readable=False), required=True,
              help="HDF5 file to write (outside every checkpoint directory).")
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@step_option
@json_option
def export_cmd(path: Path, h5: Path, force: bool, step: int | None, as_json: bool) -> None:
    """Export a checkpoint to one HDF5 file (an existing FILE only with --force)."""
    from fabric_hpc.checkpoint import open_checkpoint
    from fabric_hpc.checkpoint.hdf5 import export_h5
    total = open_checkpoint(path, step).manifest.nbytes
    with _progress("export", total, not as_json) as tick:
        out = export_h5(path, h5, step=step, progress=tick, overwrite=force)
    render(as_json, {"h5": str(out)}, lambda c: c.print(f"wrote {out}"))


@group.command("import")
@click.option("--h5", "h5", type=click.Path(path_type=Path, readable=False), required=True,
              help="HDF5 file to read.")
@click.argument("directory", type=OutputDir())
@click.option("--step", type=STEP_TYPE, default=None,
              help="Step of the new checkpoint (default: the exported one's).")
@json_option
def import_cmd(h5: Path, directory: Path, step: int | None, as_json: bool) -> None:
    """Import an exported HDF5 file as a checkpoint under DIRECTORY."""
    from fabric_hpc.checkpoint.hdf5 import import_h5
    res = import_h5(h5, directory, step=step)
    render(as_json, {"path": str(res.path), "step": res.step, "bytes": res.nbytes},
           lambda c: c.print(f"imported {h5} as {res.path}"))


# import-hf, export-hf, import-dcp, export-dcp, convert (fabric_hpc/cli/ckpt_interop.py)
from fabric_hpc.cli.ckpt_interop import register as _register_interop  # noqa: E402

_register_interop(group)
