"""A port listed twice in one ibnetdiscover node block is refused, naming it: the second line used to
overwrite the first silently (its cable and link rate lost)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.topology.import_ib import import_ibnetdiscover

DUMP = Path(__file__).parent / "fixtures" / "ibnetdiscover" / "rails-2x2.txt"


def test_a_port_listed_twice_in_a_block_is_refused(tmp_path: Path) -> None:
    lines = DUMP.read_text().splitlines(keepends=True)
    assert lines[11].startswith('[2]\t"H-946dae0300d10030"')
    lines[11] = "[1]" + lines[11][3:]
    path = tmp_path / "fabric.ibnet"
    path.write_text("".join(lines))
    with pytest.raises(ConfigError) as err:
        import_ibnetdiscover(path, host_type="hgx-h800")
    assert err.value.message == (f"{path}:12: port 1 of Switch S-1070fd0300a00010 is listed twice in its "
                                 "block (first on line 11)")


def test_the_same_port_number_in_two_blocks_is_fine() -> None:
    spec = import_ibnetdiscover(DUMP, host_type="hgx-h800")
    assert len(spec.network.groups) == 3
