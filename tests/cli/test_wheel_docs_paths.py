"""What a wheel user reads works without a checkout: the docs' commands open the shipped fabrics by name
(a path with a directory is never redirected to them), hints say where the CSV data is, and `fabric
--help` describes `docs` as it is used."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fabric_hpc.cli.main import COMMAND_GROUPS, main

REPO = Path(__file__).resolve().parents[2]
# a fabric file of the checkout's topology/ given as a command's input (not written with -o)
CHECKOUT_FABRIC = re.compile(r"(?<![\w/.-])(?<!-o )topology/[\w.-]+\.ya?ml")


def _code_lines(page: Path) -> list[str]:
    lines, inside = [], False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            inside = not inside
        elif inside:
            lines.append(line)
    return lines


@pytest.mark.parametrize("page", sorted((REPO / "docs").glob("*.md")), ids=lambda p: p.name)
def test_docs_commands_open_shipped_fabrics_by_name(page: Path) -> None:
    bad = [line for line in _code_lines(page)
           if re.match(r"\s*(\$ )?fabric |.*(load|open)_fabric\(", line) and CHECKOUT_FABRIC.search(line)]
    assert not bad, f"{page.name}: a checkout path where the shipped name works in both: {bad}"


def test_the_placement_example_runs_outside_a_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    example = next(line for line in _code_lines(REPO / "docs/placement.md")
                   if line.startswith("fabric place -t"))
    fabric = example.split()[example.split().index("-t") + 1]
    monkeypatch.chdir(tmp_path)  # no topology/ here, as for a wheel user
    assert main(["place", "-t", fabric, "-r", "nodes=4,gpus=8,within=leaf", "--json"]) == 0
    assert '"su01-h01/gpu0"' in capsys.readouterr().out


def test_a_missing_csv_says_where_the_data_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["topology", "import", "data/topologies/alibaba_lingjun2023_topo.csv", "-o", "x.yaml"]) == 3
    err = capsys.readouterr().err
    assert "https://github.com/alibaba/alibaba-lingjun-dataset-2023" in err
    assert "https://github.com/alibaba/clusterdata" in err and "source tree" in err


def test_help_describes_docs_as_it_is_used() -> None:
    text = COMMAND_GROUPS["docs"][1]
    assert "list, print" not in text and "fabric docs PAGE" in text

