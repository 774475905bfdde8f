"""The documentation pages travel in the wheel, and `fabric docs` reads them from an installed wheel.

Help texts and ``fix:`` hints name pages as ``docs/X.md``; a user with the wheel and no checkout
reads one with ``fabric docs docs/X.md`` (or ``fabric docs X``).
"""

from __future__ import annotations

import re
import tomllib
import zipfile
from pathlib import Path

from click.testing import CliRunner

from fabric_hpc.cli.main import cli, main
from tests.deploy.wheel_env import REPO, WheelEnv

PAGES = sorted(p.name for p in (REPO / "docs").glob("*.md"))
NAMED = re.compile(r"docs/([a-z0-9_-]+\.md)")  # not the docstrings' docs/X.md


def _pages_named_in_code() -> set[str]:
    return {m for f in (REPO / "fabric_hpc").rglob("*.py")
            for m in NAMED.findall(f.read_text(encoding="utf-8"))}


def test_wheel_ships_every_page_and_nothing_else_of_docs(wheel_env: WheelEnv) -> None:
    wheel = zipfile.ZipFile(wheel_env.wheel)
    shipped = {n.split("/", 2)[2]: i.file_size for i in wheel.infolist()
               for n in [i.filename] if n.startswith("fabric_hpc/docs/")}
    assert len(PAGES) >= 16 and sorted(shipped) == PAGES  # no PNGs, no docs/gpu-check/*.json
    named = _pages_named_in_code()
    assert len(named) >= 10 and named <= set(shipped), named - set(shipped)
    for name, size in shipped.items():
        assert size == (REPO / "docs" / name).stat().st_size, name
    docs_bytes = sum(i.compress_size for i in wheel.infolist() if i.filename.startswith("fabric_hpc/docs/"))
    assert docs_bytes < 600_000, docs_bytes  # 16 pages: 399,991 bytes compressed on 2026-12-07 (catches PNGs)


def test_installed_fabric_docs_prints_lists_and_locates_pages(wheel_env: WheelEnv) -> None:
    page = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert wheel_env.fabric("docs", "deploy").stdout == page
    assert wheel_env.fabric("docs", "docs/deploy.md").stdout == page
    page = wheel_env.fabric("docs", "docs/slurm.md#slurm-releases").stdout
    assert page.startswith("# fabric-hpc on a real Slurm")
    listing = wheel_env.fabric("docs").stdout
    assert all(re.search(rf"^{re.escape(p[:-3])}\s", listing, re.M) for p in PAGES), listing
    where = Path(wheel_env.fabric("docs", "placement", "--path").stdout.strip())
    assert where.is_file() and where.resolve().is_relative_to(wheel_env.root.resolve()), where
    assert where.name == "placement.md"
    folder = Path(wheel_env.fabric("docs", "--path").stdout.strip())
    assert sorted(p.name for p in folder.iterdir()) == PAGES
    unknown = wheel_env.fabric("docs", "docs/nope.md", check=False)
    assert unknown.returncode == 3 and "Traceback" not in unknown.stderr
    assert "no documentation page 'docs/nope.md'" in unknown.stderr and "deploy, engines" in unknown.stderr
    top = wheel_env.fabric("--help").stdout
    assert "fabric docs events" in top and "docs/events.md" not in top


def test_page_names_as_hints_write_them() -> None:
    runner = CliRunner()
    events = (REPO / "docs" / "events.md").read_text(encoding="utf-8")
    for ref in ("events", "events.md", "docs/events.md", "docs/events.md#catalogue"):
        result = runner.invoke(cli, ["docs", ref])
        assert result.exit_code == 0 and result.output == events, ref
    assert main(["docs", "docs/placment.md"]) == 3 and main(["docs", ""]) == 3


def test_readme_names_the_real_extras_and_fabric_docs() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    sentence = next(line for line in readme.split("\n\n") if "Optional extras" in line)
    assert len(extras) >= 3 and all(f"`{name}`" in sentence for name in extras), sentence
    assert "fabric docs" in readme
