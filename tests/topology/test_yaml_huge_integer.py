"""A YAML integer of more than 4,300 digits is a clear error naming the line, not a traceback.

PyYAML's int constructor calls ``int()``, which refuses such a string with a bare ValueError
(Python's integer-conversion limit); every YAML input (fabric files, engine configs) reads through
``fabric_hpc.inputs.load_yaml``. Found by the hostile-files probe (fix-sec-files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.errors import ConfigError
from fabric_hpc.inputs import load_yaml

SHIPPED = Path(__file__).resolve().parents[2] / "topology" / "leaf-spine-16.yaml"


@pytest.mark.parametrize("number", ["9" * 5000, "1_" + "1" * 5000, "-" + "7" * 4301])
def test_load_yaml_names_the_line_of_a_huge_integer(number):
    pattern = r"f\.yaml: line 3: the integer .* has more than 4,300 digits"
    with pytest.raises(ConfigError, match=pattern) as err:
        load_yaml(f"a: 1\nb: 2\nc: {number}\n", "f.yaml")
    assert err.value.hint and "ordinary size" in err.value.hint


def test_ordinary_integers_still_read():
    data, _ = load_yaml("a: 0x1f\nb: 1_000\nc: -12\nd: 017\ne: " + "9" * 4300 + "\n", "f.yaml")
    assert data["a"] == 31 and data["b"] == 1000 and data["c"] == -12 and data["d"] == 15
    assert data["e"] == int("9" * 4300)


def test_topology_validate_with_a_huge_integer_is_exit_3(tmp_path, capsys):
    text = SHIPPED.read_text().replace("gpus: 8", "gpus: " + "9" * 5000, 1)
    assert "9" * 5000 in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    assert main(["topology", "validate", str(bad)]) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err and "more than 4,300 digits" in err and "bad.yaml" in err
