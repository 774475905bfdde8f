"""Run names the font cannot draw (CJK, emoji) print no matplotlib "Glyph … missing from font" warning on
the user's terminal when ``fabric sim compare --report`` draws its pictures (the topology report's rule:
only that warning, only while drawing)."""

from __future__ import annotations

import warnings

from fabric_hpc.cli.main import main
from tests.scheduler.test_sim_report import _copy, runs  # noqa: F401  (the fixture)


def test_unprintable_run_names_print_no_glyph_warning(runs, tmp_path, capfd) -> None:  # noqa: F811
    a, b = _copy(runs, tmp_path, "slurm", "基线🚀"), _copy(runs, tmp_path, "fabric", "\U0001F9EA-fabric")
    before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert main(["sim", "compare", a, b, "--report", str(tmp_path / "r.html")]) == 0
    assert [str(w.message) for w in seen if "missing from font" in str(w.message)] == []
    assert "missing from font" not in capfd.readouterr().err
    assert list(warnings.filters) == before
