"""``open_client`` called from Python names its arguments (``url=``, ``backend``); the CLI and the
agent keep their flags: ``open_client("cli", url="x")`` used to say ``--rest-url is for --backend rest``."""

from __future__ import annotations

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm import open_client


def test_url_without_rest_names_the_argument():
    with pytest.raises(ConfigError) as err:
        open_client("cli", url="x")
    assert str(err.value).startswith("url= is for backend rest, not backend='cli'")
    assert "--" not in str(err.value) and "--" not in err.value.hint


def test_rest_without_url_names_the_argument():
    with pytest.raises(ConfigError) as err:
        open_client("rest")
    assert err.value.hint.startswith("url='unix:/run/slurmrestd.sock'")


@pytest.mark.parametrize("url", ["https://h:6820", "http://u:pw@h:1", "unix:", "http://h:0"])
def test_bad_url_names_the_argument(url):
    with pytest.raises(ConfigError) as err:
        open_client("rest", url=url)
    assert str(err.value).startswith("url '") and "--rest-url" not in str(err.value) + err.value.hint
    assert "pw" not in str(err.value)


def test_token_file_without_rest_names_the_argument():
    with pytest.raises(ConfigError, match="for backend rest") as err:
        open_client("cli", token_file="/etc/fabric-hpc/slurm.jwt")
    assert str(err.value).startswith("token_file= / user=")


def test_cli_keeps_its_flags(capsys):
    assert main(["slurm", "jobs", "--backend", "cli", "--rest-url", "unix:/run/slurmrestd.sock"]) == 3
    assert "--rest-url is for --backend rest, not --backend cli" in capsys.readouterr().err
    assert main(["slurm", "jobs", "--backend", "rest", "--rest-url", "https://h:6820"]) == 3
    assert "--rest-url 'https://h:6820': https is not supported" in capsys.readouterr().err
