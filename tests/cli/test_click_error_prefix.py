"""A bad option value is named once: click's "Invalid value for '--x':" prefix was printed twice, as the
message fabric escaped already held it and click's ``show()`` added it again."""

from __future__ import annotations

import pytest

from fabric_hpc.cli.main import main


@pytest.mark.parametrize("argv, option", [
    (["place", "-t", "topology/leaf-spine-16.yaml", "-r", "gpus=8", "--time-limit", "0"], "'--time-limit'"),
    (["infer", "run", "--engine-config", "x.json", "--input", "in", "--output", "out", "--chunk-size", "0"],
     "'--chunk-size'"),
])
def test_an_invalid_option_value_is_named_once(argv: list[str], option: str, capfd) -> None:
    assert main(argv) == 2
    err = capfd.readouterr().err
    [line] = [x for x in err.splitlines() if x.startswith("Error:")]
    assert line.startswith(f"Error: Invalid value for {option}: ") and line.count("Invalid value") == 1, err


def test_an_unknown_option_still_says_which(capfd) -> None:
    assert main(["place", "-r", "gpus=8", "--bogus"]) == 2
    assert "Error: No such option '--bogus'." in capfd.readouterr().err.splitlines()
