"""``fabric ckpt import-hf / export-hf / import-dcp / export-dcp / convert``: checkpoints in and
out of other ecosystems (registered on the ``ckpt`` group by :func:`register`)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click

from fabric_hpc.checkpoint.store import MAX_STEP
from fabric_hpc.cli.output import json_option, render
from fabric_hpc.cli.params import InputFile, OutputDir

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40}
PICKLE_WARNING = ("DCP's .metadata file is a Python pickle written by torch: unpickling a file "
                  "from an untrusted source can run arbitrary code. Only pass --trust-pickle for "
                  "checkpoints you (or someone you trust) wrote.")


def parse_size(text: str) -> int:
    """'5GB', '500MiB', '20KB' or a number of bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    unit = m.group(2).upper() if m else ""
    if not m or unit not in _UNITS or float(m.group(1)) * _UNITS[unit] < 1:
        raise click.BadParameter(f"{text!r} is not a size like 5GB, 500MiB or 1048576", param_hint="--max-shard-size")
    return int(float(m.group(1)) * _UNITS[unit])


def _files_size(src: Path, pattern: str) -> int:
    """Bytes of the files an import will read (for the progress bar; 0 when unknown)."""
    if src.is_file():
        return src.stat().st_size
    return sum(p.stat().st_size for p in src.glob(pattern)) if src.is_dir() else 0


#: every ckpt command's --step/--out-step: what a step directory name can hold
STEP_TYPE = click.IntRange(0, MAX_STEP)


def _step_opt(default_help: str) -> click.Option:
    return click.option("--step", type=STEP_TYPE, default=None, help=default_help)


def register(group: click.Group) -> None:
    for cmd in (import_hf_cmd, export_hf_cmd, import_dcp_cmd, export_dcp_cmd, convert_cmd):
        group.add_command(cmd)


@click.command("import-hf")
@click.argument("src", type=click.Path(path_type=Path, readable=False))
@click.argument("out", type=OutputDir())
@click.option("--step", type=STEP_TYPE, default=0, show_default=True, help="Step of the new checkpoint.")
@click.option("--prefix", default=None, help="Put the tensors under this group (e.g. 'model').")
@json_option
def import_hf_cmd(src: Path, out: Path, step: int, prefix: str | None, as_json: bool) -> None:
    """Import a Hugging Face safetensors model (SRC: directory or .safetensors file) into checkpoint root OUT."""
    from fabric_hpc.checkpoint.interop.hf import import_hf
    from fabric_hpc.cli.ckpt import _progress
    with _progress("import", _files_size(src, "*.safetensors"), not as_json) as tick:
        res = import_hf(src, out, step=step, prefix=prefix, progress=tick)
    _render_import(src, res, as_json)


@click.command("export-hf")
@click.argument("path", type=click.Path(path_type=Path, readable=False))
@click.argument("out", type=OutputDir())
@_step_opt("Step to export (default: latest; PATH may also be a step directory).")
@click.option("--max-shard-size", "max_shard", default="5GB", show_default=True,
              help="Largest safetensors file (5GB, 500MiB, bytes); a larger tensor gets a file of its own.")
@click.option("--prefix", default=None, help="Export only this subtree (stripped from the keys).")
@click.option("--config", "config", type=InputFile(path_type=Path, what="config"),
              default=None,
              help="config.json to write (default: the one carried from import-hf, if any).")
@click.option("--no-quantization-config", "no_quant", is_flag=True,
              help="Do not write quantization_config into config.json for a converted fp8 checkpoint.")
@json_option
def export_hf_cmd(path: Path, out: Path, step: int | None, max_shard: str, prefix: str | None,
                  config: Path | None, no_quant: bool, as_json: bool) -> None:
    """Export a checkpoint as a Hugging Face safetensors directory OUT (sharded, with the index)."""
    from fabric_hpc.checkpoint import open_checkpoint
    from fabric_hpc.checkpoint.interop.hf import export_hf
    from fabric_hpc.cli.ckpt import _progress, _size
    limit = parse_size(max_shard)
    total = open_checkpoint(path, step).manifest.nbytes
    with _progress("export", total, not as_json) as tick:
        info = export_hf(path, out, step=step, prefix=prefix, max_shard_bytes=limit, config=config,
                         quantization_config=not no_quant, progress=tick)

    def human(c: Any) -> None:
        c.print(f"wrote {info['path']}: {info['tensors']} tensors in {len(info['files'])} file(s), "
                f"{_size(info['bytes'])}")
        quant = info["quantization_config"]
        if quant is not None:
            where = "written into config.json" if info["config_written"] else \
                "NOT written: no config.json (pass --config); add it to config.json by hand"
            c.print(f"quantization_config ({where}): {json.dumps(quant)}")
    render(as_json, info, human)


@click.command("import-dcp")
@click.argument("src", type=click.Path(path_type=Path, readable=False))
@click.argument("out", type=OutputDir())
@click.option("--trust-pickle", is_flag=True,
              help="Required: DCP's .metadata is a pickle (unpickling untrusted files can run code).")
@click.option("--step", type=STEP_TYPE, default=0, show_default=True, help="Step of the new checkpoint.")
@click.option("--prefix", default=None, help="Put the tensors under this group (e.g. 'model').")
@click.option("--skip-objects", is_flag=True, help="Import only the tensors (skip pickled Python objects).")
@json_option
def import_dcp_cmd(src: Path, out: Path, trust_pickle: bool, step: int, prefix: str | None,
                   skip_objects: bool, as_json: bool) -> None:
    """Import a torch.distributed.checkpoint directory SRC into checkpoint root OUT (needs --trust-pickle)."""
    from fabric_hpc.checkpoint.interop.dcp import import_dcp
    from fabric_hpc.cli.ckpt import _progress
    from fabric_hpc.cli.output import console
    if trust_pickle:
        console(stderr=True).print(f"warning: {PICKLE_WARNING}", markup=False)
    with _progress("import", _files_size(src, "*.distcp"), not as_json) as tick:
        res = import_dcp(src, out, trust_pickle=trust_pickle, step=step, prefix=prefix,
                         skip_objects=skip_objects, progress=tick)
    _render_import(src, res, as_json)


@click.command("export-dcp")
@click.argument("path", type=click.Path(path_type=Path, readable=False))
@click.argument("out", type=OutputDir())
@_step_opt("Step to export (default: latest; PATH may also be a step directory).")
@click.option("--prefix", default=None, help="Export only this subtree (stripped from the keys).")
@json_option
def export_dcp_cmd(path: Path, out: Path, step: int | None, prefix: str | None, as_json: bool) -> None:
    """Export a checkpoint as a torch.distributed.checkpoint directory OUT (loadable on any world size)."""
    from fabric_hpc.checkpoint import open_checkpoint
    from fabric_hpc.checkpoint.interop.dcp import export_dcp
    from fabric_hpc.cli.ckpt import _progress, _size
    total = open_checkpoint(path, step).manifest.nbytes
    with _progress("export", total, not as_json) as tick:
        info = export_dcp(path, out, step=step, prefix=prefix, progress=tick)
    render(as_json, info, lambda c: c.print(f"wrote {info['path']}: {info['tensors']} tensors, {_size(info['bytes'])}"))


@click.command("convert")
@click.argument("path", type=click.Path(path_type=Path, readable=False))
@click.argument("out", type=OutputDir())
@click.option("--recipe", "recipe", type=InputFile(path_type=Path, what="recipe"),
              required=True,
              help="YAML/JSON recipe: rename, pipeline, transpose, fuse_qkv, split_qkv, fuse, split, cast, tp, drop.")
@_step_opt("Step to convert (default: latest).")
@click.option("--out-step", type=STEP_TYPE, default=None, help="Step of the result (default: the same).")
@click.option("--workers", type=click.IntRange(min=1, max=64), default=None,
              help="Tensors converted in parallel (default 4), within 1.1x the largest tensor's memory.")
@json_option
def convert_cmd(path: Path, out: Path, recipe: Path, step: int | None, out_step: int | None, workers: int | None,
                as_json: bool) -> None:
    """Transcode a checkpoint (names, fused projections, dtype incl. fp8, tensor-parallel layout) into root OUT."""
    from fabric_hpc.checkpoint import open_checkpoint
    from fabric_hpc.checkpoint.convert import convert, load_recipe
    from fabric_hpc.cli.ckpt import _progress, _size
    from fabric_hpc.extras import require
    plan = load_recipe(recipe)  # a bad recipe fails before anything is opened
    require("torch", extra="torch", needed_for="fabric ckpt convert")  # its casts and workers run on torch
    total = open_checkpoint(path, step).manifest.nbytes
    with _progress("convert", total, not as_json) as tick:
        rep = convert(path, out, plan, step=step, out_step=out_step, workers=workers, progress=tick)

    def human(c: object) -> None:
        c.print(f"wrote {rep.path}: {len(rep.tensors)} tensors converted, {_size(rep.nbytes)} in {rep.seconds:.1f} s")  # type: ignore[attr-defined]
        for r in rep.tensors:
            if "rel_rms_error" in r:
                c.print(f"  {r['name']}: {r['from_dtype']} -> {r['dtype']}"  # type: ignore[attr-defined]
                        + (f" (scale per {r['scale']})" if "scale" in r else "")
                        + f", relative RMS error {r['rel_rms_error']:.3g}, max abs error {r['max_abs_error']:.3g}")
    render(as_json, rep.as_dict(), human)


def _render_import(src: Path, res: Any, as_json: bool) -> None:
    """What an import prints: the new checkpoint, its size and time."""
    from fabric_hpc.cli.ckpt import _size

    render(as_json, {"path": str(res.path), "step": res.step, "bytes": res.nbytes, "seconds": round(res.seconds, 3)},
           lambda c: c.print(f"imported {src} as {res.path} ({_size(res.nbytes)})"))
