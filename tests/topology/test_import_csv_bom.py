"""A CSV saved with a UTF-8 byte order mark (Excel's "CSV UTF-8") imports as the same file without it."""

from __future__ import annotations

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.topology.importers import detect_kind, import_csv, lingjun_host_map

FILES = {
    "openb": "sn,cpu_milli,memory_mib,gpu,model\nnode-1,64000,262144,2,P100\nnode-2,64000,262144,2,P100\n",
    "lingjun": "ip,DSW,PSW,ASW\n10.0.0.1,G1,P1,S1\n10.0.0.2,G1,P1,S1\n",
    "spot2026": "gpu_model,gpu_capacity_num,cpu_num,node_name\nA10,1,32,0\nA10,1,32,1\n",
}


@pytest.mark.parametrize("kind", FILES)
def test_a_bom_is_not_part_of_the_header(tmp_path, kind):
    (tmp_path / "plain").mkdir(), (tmp_path / "bom").mkdir()
    # one file name, so one description
    plain, bom = tmp_path / "plain" / "hosts.csv", tmp_path / "bom" / "hosts.csv"
    plain.write_text(FILES[kind], encoding="utf-8")
    bom.write_text(FILES[kind], encoding="utf-8-sig")
    assert bom.read_bytes().startswith(b"\xef\xbb\xbf")
    assert detect_kind(bom) == detect_kind(plain) == kind
    assert import_csv(bom).model_dump() == import_csv(plain).model_dump()
    assert import_csv(bom, kind=kind).model_dump() == import_csv(plain, kind=kind).model_dump()
    if kind == "lingjun":
        assert lingjun_host_map(bom) == lingjun_host_map(plain)


def test_the_cli_imports_a_bom_csv(tmp_path, capsys):
    path = tmp_path / "bom.csv"
    path.write_text(FILES["openb"], encoding="utf-8-sig")
    assert main(["topology", "import", str(path), "-o", str(tmp_path / "out.yaml")]) == 0, capsys.readouterr()
    assert "node-[1-2]" in (tmp_path / "out.yaml").read_text()
