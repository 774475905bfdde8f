"""What an ML engineer new to fabric met (probe, 2026-12-07), each pinned by a test."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import subprocess
import zipfile
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.inference import VirtualClock, merge_job, run_job
from fabric_hpc.inference.pipeline import PipelineOptions

from .builders import make_config, random_items, read_results


def _zip(data: bytes) -> bytes:
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("items.jsonl", data)
    return buf.getvalue()


@pytest.mark.parametrize("name,pack", [
    ("a.jsonl", gzip.compress), ("my items.jsonl", bz2.compress), ("a.jsonl", lzma.compress),
    ("a.jsonl", _zip), ("b.jsonl.gz", gzip.compress)])
def test_the_fix_for_a_compressed_input_works_as_written(tmp_path: Path, name: str, pack) -> None:
    """Before: `gunzip -k spool/a.jsonl` (gzip: unknown suffix -- ignored), `unzip -k` (no such option)."""
    cfg, items = make_config(tmp_path), random_items(6)
    spool = tmp_path / "spool"
    spool.mkdir()
    data = spool / name
    data.write_bytes(pack("".join(json.dumps(i) + "\n" for i in items).encode()))
    given = spool if name.endswith(".jsonl") else data
    with pytest.raises(ConfigError, match="-compressed") as err:
        run_job(cfg, str(given), tmp_path / "out", engine_options={"clock": VirtualClock()})
    command = err.value.hint.split(": ", 1)[1]
    subprocess.run(command, shell=True, check=True, cwd=tmp_path, capture_output=True)
    plain = data if name.endswith(".jsonl") else data.with_suffix("")
    run_job(cfg, str(spool if name.endswith(".jsonl") else plain), tmp_path / "out",
            engine_options={"clock": VirtualClock()}, options=PipelineOptions(chunk_size=4))
    merge_job(tmp_path / "out")
    assert sorted(r["id"] for r in read_results(tmp_path / "out")) == sorted(i["id"] for i in items)


@pytest.mark.parametrize("name", ["-x.jsonl.gz", "-y.jsonl"])
def test_the_fix_for_a_name_that_starts_with_a_dash_is_no_option(tmp_path: Path, name: str) -> None:
    """shlex.quote leaves ``-x.jsonl.gz`` bare: ``gunzip -c -x.jsonl.gz`` took it for options and left an
    empty ``-x.jsonl``."""
    from fabric_hpc.inputs import decompress_command

    items = random_items(3)
    data = tmp_path / name
    data.write_bytes(gzip.compress("".join(json.dumps(i) + "\n" for i in items).encode()))
    subprocess.run(decompress_command(name, "gunzip"), shell=True, check=True, cwd=tmp_path,
                   capture_output=True)
    plain = tmp_path / name.removesuffix(".gz")
    assert [json.loads(line)["id"] for line in plain.read_text().splitlines()] == [i["id"] for i in items]
