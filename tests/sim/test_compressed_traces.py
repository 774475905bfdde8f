"""Traces as the archives ship them: a gzip'd file (the Parallel Workloads Archive's ``.swf.gz``) reads
like the plain file; another compression, a corrupt or truncated gzip stream, and a gzip stream that
decompresses past the file limit are one-line errors naming the file."""

from __future__ import annotations

import bz2
import gzip
from pathlib import Path

import pytest

from fabric_hpc.cli.main import cli
from fabric_hpc.errors import ConfigError
from fabric_hpc.sim import load_trace, read_swf, read_tiresias
from fabric_hpc.sim import rows

SWF = """; Version: 2.2
; Computer: IBM SP2
; MaxProcs: 128
;
    1      0   1245   1020   16  -1  -1   16  3600  -1  1  1  1  1  1  -1  -1  -1
    2    120     -1   3000    8  -1  -1    8  7200  -1  1  2  1  2  2  -1  -1  -1
    3     60     20     -1    4  -1  -1    4  7200  -1  0  3  1  1  1  -1  -1  -1
"""


def _jobs(trace) -> list[tuple[str, int, float, float | None]]:  # noqa: ANN001 - a Trace
    return [(j.id, j.gpus, j.submit, j.duration) for j in trace]


def test_a_gzipped_swf_reads_like_the_plain_file(tmp_path: Path) -> None:
    plain, packed = tmp_path / "log.swf", tmp_path / "log.swf.gz"
    plain.write_text(SWF)
    packed.write_bytes(gzip.compress(SWF.encode()))
    assert _jobs(read_swf(packed)) == _jobs(read_swf(plain)) == [("swf1", 16, 0.0, 1020.0),
                                                                 ("swf2", 8, 120.0, 3000.0)]
    assert _jobs(load_trace(str(packed))) == _jobs(read_swf(plain))  # the kind is sniffed inside the gzip
    assert read_swf(packed).skipped == 1


def test_fabric_sim_run_replays_a_gzipped_swf(tmp_path: Path) -> None:
    from click.testing import CliRunner

    packed = tmp_path / "log.swf.gz"
    packed.write_bytes(gzip.compress(SWF.encode()))
    res = CliRunner().invoke(cli, ["sim", "run", "--trace", f"swf:{packed}", "--out", str(tmp_path / "o"),
                                   "--no-progress", "--no-topology-report", "--json"])
    assert res.exit_code == 0, res.output
    assert '"jobs": 2' in res.output


def test_an_error_in_a_gzipped_trace_names_its_line(tmp_path: Path) -> None:
    p = tmp_path / "t.csv.gz"
    p.write_bytes(gzip.compress(b"job_id,num_gpu,submit_time,duration\r\n1,4,0,10\r\n2,x,5,10\r\n"))
    with pytest.raises(ConfigError, match=r"t\.csv\.gz:3: num_gpu='x'"):
        read_tiresias(p)


def test_a_truncated_gzip_is_one_error_naming_the_file(tmp_path: Path) -> None:
    p = tmp_path / "log.swf.gz"
    p.write_bytes(gzip.compress(SWF.encode() * 50)[:-40])
    with pytest.raises(ConfigError, match=r"log\.swf\.gz' is a truncated or corrupt gzip file"):
        read_swf(p)


@pytest.mark.parametrize("damage", ["crc", "method", "trailing"])
def test_a_corrupt_gzip_is_one_config_error_not_a_filesystem_error(tmp_path: Path, damage: str) -> None:
    """gzip.BadGzipFile is an OSError: a flipped CRC byte, a bad method byte or trailing garbage read as a
    filesystem error (exit 5, "check permissions and free space") before the reviewer found it."""
    data = bytearray(gzip.compress(SWF.encode() * 50))
    if damage == "crc":
        data[-8] ^= 0xFF
    elif damage == "method":
        data[2] = 7
    else:
        data += b"XY"
    p = tmp_path / "log.swf.gz"
    p.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=r"log\.swf\.gz' is a truncated or corrupt gzip file") as err:
        read_swf(p)
    assert "gzip -t" in err.value.hint


def test_another_compression_is_refused_with_the_command_that_undoes_it(tmp_path: Path) -> None:
    p = tmp_path / "log.swf.bz2"
    p.write_bytes(bz2.compress(SWF.encode()))
    with pytest.raises(ConfigError, match=r"bzip2-compressed") as exc:
        read_swf(p)
    assert "bunzip2" in (exc.value.hint or "")


def test_a_gzip_bomb_stops_at_the_file_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rows, "MAX_FILE_BYTES", 1 << 16)  # the limit, small: a 1 MiB line of zeros
    p = tmp_path / "bomb.swf.gz"
    p.write_bytes(gzip.compress(b"0" * (1 << 20)))
    with pytest.raises(ConfigError, match=r"bomb\.swf\.gz.*more than the limit of 65,536 bytes"):
        read_swf(p)


def test_a_number_of_too_many_digits_is_said_as_too_long_not_as_not_a_number(tmp_path: Path) -> None:
    p = tmp_path / "log.swf"
    p.write_text(SWF.replace("    1      0", "    " + "9" * 19 + " 0", 1))
    with pytest.raises(ConfigError, match=r"log\.swf:5: job number='9{19}' has more than 18 digits"):
        read_swf(p)
