"""within=host with nodes > 1 is a contradictory request: a ConfigError (exit 3) that says so."""

from __future__ import annotations

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.errors import ConfigError
from fabric_hpc.placement import parse_request


def test_within_host_cannot_hold_two_nodes():
    with pytest.raises(ConfigError, match="so it cannot hold nodes=2"):
        parse_request("nodes=2,gpus=4,within=host")
    assert parse_request("nodes=1,gpus=4,within=host").nodes == 1
    assert parse_request("gpus=8,within=host").gpus == 8


def test_cli_exits_3(capsys):
    fabric = "leaf-spine:hosts=4,hosts_per_leaf=2,gpus=4"
    assert main(["place", "-t", fabric, "-r", "nodes=2,gpus=4,within=host"]) == 3
    assert "cannot hold nodes=2" in capsys.readouterr().err
