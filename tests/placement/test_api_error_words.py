"""The Python API's messages name its argument (``request``), the CLI's its flag (``--request``):
``place(fab, s, "gpus=0")`` used to say ``--request: gpus: …`` with ``example: --request '…'``."""

from __future__ import annotations

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.errors import ConfigError
from fabric_hpc.placement import ClusterState, parse_request, place
from fabric_hpc.topology import build, generators


@pytest.fixture(scope="module")
def fab():
    return build(generators.leaf_spine(4))


@pytest.mark.parametrize("text, part", [("gpus=0", "request: gpus: expected a positive whole number"),
                                        ("gpuz=3", "request: unknown key 'gpuz'"),
                                        ("nodes=x", "request: nodes: expected a positive whole number")])
def test_place_names_the_argument(fab, text, part):
    with pytest.raises(ConfigError) as err:
        place(fab, ClusterState(fab), text)
    assert str(err.value).startswith(part)
    assert "--request" not in str(err.value)
    assert err.value.hint == "example: request='nodes=4,gpus=8,within=leaf'"


def test_parse_request_defaults_to_the_argument_and_takes_a_flag():
    with pytest.raises(ConfigError, match=r"^request: gpus") as err:
        parse_request("gpus=0")
    assert "--request" not in str(err.value)
    with pytest.raises(ConfigError, match=r"^--request: gpus") as err:
        parse_request("gpus=0", source="--request")
    assert err.value.hint == "example: --request 'nodes=4,gpus=8,within=leaf'"


def test_too_long_names_the_argument():
    with pytest.raises(ConfigError, match=r"^request: .* characters") as err:
        parse_request("gpus=1," * 10_000)
    assert "--request" not in err.value.hint


def test_cli_keeps_the_flag(capsys):
    assert main(["place", "-t", "leaf-spine:hosts=4", "-r", "gpus=0"]) != 0
    err = capsys.readouterr().err
    assert "--request: gpus: expected a positive whole number" in err
    assert "example: --request 'nodes=4,gpus=8,within=leaf'" in err
