"""One set of bounds for the solver options: the API's and ``fabric place``'s flags."""

from __future__ import annotations

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.placement import SolveOptions


@pytest.mark.parametrize("field, value", [("time_limit_s", 0), ("time_limit_s", 3601.0), ("workers", 0),
                                          ("workers", 257)])
def test_solve_options_have_the_cli_bounds(field, value):
    """``SolveOptions(time_limit_s=0)`` was accepted while ``fabric place --time-limit 0`` is refused."""
    with pytest.raises(ConfigError, match=f"SolveOptions.{field} must be"):
        SolveOptions(**{field: value})
    assert SolveOptions(time_limit_s=3600, workers=256, host_item_limit=0).workers == 256  # 0: always per domain


def test_cli_refuses_what_solve_options_refuse(capsys):
    from fabric_hpc.cli.main import main

    for flag, value in (("--time-limit", "0"), ("--time-limit", "3601"), ("--workers", "257")):
        assert main(["place", "-t", "superpod:sus=1", "-r", "gpus=8", flag, value]) == 2
        assert flag in capsys.readouterr().err
