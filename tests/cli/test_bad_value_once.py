"""A bad option value is reported once: ``fabric place --time-limit 0`` printed "Invalid value for
'--time-limit': Invalid value for '--time-limit': '0' must be …" (main re-formatted click's message
into ``exc.message``, and ``exc.show()`` formatted it again)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(("argv", "option", "words"), [
    (["place", "-t", "leaf-spine-16", "-r", "gpus=8", "--time-limit", "0"], "--time-limit",
     "must be a finite"),
    (["place", "-t", "leaf-spine-16", "-r", "gpus=8", "--time-limit", "abc"], "--time-limit",
     "is not a number"),
    (["place", "-t", "leaf-spine-16", "-r", "gpus=8", "--workers", "0"], "--workers", "is not in the range"),
])
def test_invalid_value_prefix_appears_once(capsys, argv, option, words):
    from fabric_hpc.cli.main import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count(f"Invalid value for '{option}'") == 1, err
    assert f"Error: Invalid value for '{option}': " in err and words in err


def test_a_newline_in_a_bad_value_stays_escaped(capsys):
    """The one-line escaping of click's message is kept (a newline cannot start a line of its own)."""
    from fabric_hpc.cli.main import main

    assert main(["place", "-t", "leaf-spine-16", "-r", "gpus=8", "--time-limit", "1\n{\"x\": 1}"]) == 2
    err = capsys.readouterr().err
    assert not any(line.startswith("{") for line in err.splitlines())
    assert err.count("Invalid value for '--time-limit'") == 1, err
