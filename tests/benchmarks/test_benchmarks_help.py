"""``python -m benchmarks --help`` tells a new user that each benchmark writes docs/benchmarks.md and
where its own options are (a smoke run that leaves the docs alone), probe 2026-12-07."""

from __future__ import annotations

import pytest

from benchmarks.__main__ import main


def test_the_help_says_how_to_run_one_benchmark_small_without_writing_the_docs(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "python -m benchmarks.NAME --help" in out
    assert "python -m benchmarks.scheduler --quick --no-write" in out
