"""`fabric topology import` refuses an oversized CSV up front, and reads the file once (probe 7, item 4)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.errors import ConfigError
from fabric_hpc.topology.importers import MAX_CSV_BYTES, import_csv, load_csv

DATA = Path(__file__).resolve().parents[2] / "data" / "topologies"


def test_an_oversized_csv_is_refused_before_it_is_read(tmp_path, capsys):
    big = tmp_path / "big.csv"
    with big.open("w") as f:
        f.write("ip,DSW,PSW,ASW\n")
        f.truncate(MAX_CSV_BYTES + 1)  # sparse: nothing is written, nothing may be read
    assert main(["topology", "import", str(big)]) == 3
    err = capsys.readouterr().err
    assert "over the import limit" in err and f"{MAX_CSV_BYTES + 1:,}" in err
    with pytest.raises(ConfigError, match="over the import limit"):
        import_csv(big)


@pytest.mark.parametrize("name", ["alibaba_lingjun2023_topo.csv", "alibaba_openb_node_list_gpu_node.csv",
                                  "alibaba_spot2026_node_info.csv"])
def test_shipped_data_is_far_under_the_limit_and_read_once(tmp_path, name):
    assert (DATA / name).stat().st_size * 100 < MAX_CSV_BYTES
    copy = tmp_path / name
    shutil.copy(DATA / name, copy)
    loaded = load_csv(copy)
    copy.unlink()  # every later step works on what was read: the file is not opened again
    spec = import_csv(loaded)
    assert spec.hosts and name in (spec.description or "")


def test_lingjun_with_host_map_reads_the_file_once(tmp_path):
    copy = tmp_path / "lj.csv"
    shutil.copy(DATA / "alibaba_lingjun2023_topo.csv", copy)
    loaded = load_csv(copy)
    copy.unlink()
    spec = import_csv(loaded, hostmap_path=tmp_path / "map.csv")
    assert (tmp_path / "map.csv").read_text().startswith("host,ip")
    assert spec.network is not None
