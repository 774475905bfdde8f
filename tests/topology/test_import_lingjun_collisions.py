"""Lingjun import: two switches of the CSV that would get one fabric name are refused at import,
naming both CSV lines and the fix (not the generated spec's duplicate group)."""

from __future__ import annotations

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.errors import ConfigError
from fabric_hpc.topology.importers import import_lingjun

HEAD = "ip,DSW,PSW,ASW\n"


@pytest.mark.parametrize("rows,line,first,name,what", [
    (["aa,G6,P1-S1,S1", "bb,G6,P1,S1-S1"], 3, 2, "p1-s1-s1",
     ("the ToR of PSW 'P1' and ASW 'S1-S1'", "the ToR of PSW 'P1-S1' and ASW 'S1'")),
    (["aa,G6,P1-S1,S1", "bb,G6,P1,S1"], 3, 2, "p1-s1", ("the ToR of PSW 'P1' and ASW 'S1'", "PSW 'P1-S1'")),
    (["aa,G6,P1,S1", "bb,G6,G6,S2"], 3, 2, "g6", ("PSW 'G6'", "DSW 'G6'")),
    (["aa,G6,P1,S1", "bb,G7,root,S1"], 3, 3, "root", ("PSW 'root'",)),
])
def test_colliding_switches_are_named_with_their_lines(tmp_path, rows, line, first, name, what):
    path = tmp_path / "lj.csv"
    path.write_text(HEAD + "\n".join(rows) + "\n")
    with pytest.raises(ConfigError) as err:
        import_lingjun(path)
    text = str(err.value)
    assert f"lj.csv:{line}: " in text and f"'{name}'" in text, text
    assert all(w in text for w in what), text
    if len(what) == 2:
        assert f"on line {first}," in text and "network.groups" not in text, text
        assert f"rename one of the two in the CSV (line {first} or {line})" in err.value.hint


def test_the_same_switch_on_many_lines_is_no_collision(tmp_path):
    path = tmp_path / "lj.csv"
    path.write_text(HEAD + "aa,G6,P1,S1\nbb,G6,P1,S1\ncc,G6,P1,S1-S1\ndd,G6,P2,S1\n")
    spec = import_lingjun(path)
    assert sorted(g.name for g in spec.network.groups) == ["g6", "p1", "p1-s1", "p1-s1-s1", "p2", "p2-s1"]


def test_the_cli_says_which_lines(tmp_path, capsys):
    path = tmp_path / "lj.csv"
    path.write_text(HEAD + "aa,G6,P1-S1,S1\nbb,G6,P1,S1-S1\n")
    assert main(["topology", "import", str(path)]) == 3
    err = capsys.readouterr().err
    assert "lj.csv:3: the ToR of PSW 'P1' and ASW 'S1-S1' and, on line 2," in err, err
    assert "Traceback" not in err
