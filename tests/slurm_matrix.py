"""The Slurm test matrix: which Slurm releases the live tests run on (see docs/testing.md).

One tier per install of :func:`fabric_hpc.testing._installs.installs`: the system's Slurm (Debian 12:
22.05, Debian 13: 24.11) and each prefix of ``FABRIC_SLURM_PREFIXES`` (default ``/opt/slurm-25.11``).
``FABRIC_SLURM_TIERS`` (comma-separated, e.g. ``25.11`` or ``slurm-22.05``) keeps only those tiers.

A test marked ``@pytest.mark.slurm_min(25, 5)`` (it needs Slurm >= 25.05) or ``slurm_max(25, 11)`` (at
most 25.11) is generated only for the tiers that have such a Slurm (:func:`tiers_within`, applied by
``pytest_generate_tests`` in ``tests/conftest.py``): on the 22.05 tier it does not exist, rather than skip.

A tier whose Slurm does not run here skips with the reason, except under ``FABRIC_REQUIRE_REAL=1``
when it can be had: the system's Slurm always (``make test`` installs it), Slurm 25.11 when the
vendor files are there (``SLURM_VENDOR``, default ``../shared/vendor``; ``make test`` installs it).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from fabric_hpc.errors import ExternalError
from fabric_hpc.testing._installs import DEFAULT_PREFIXES, SlurmInstall, installs, tier_id, version_text
from tests.real import REQUIRE_REAL, require_real

REPO = Path(__file__).resolve().parents[1]
VENDOR = Path(os.environ.get("SLURM_VENDOR") or REPO.parent / "shared" / "vendor")
VENDOR_FILES = ("slurm-25.11.7-debian12-amd64.tar.xz", "slurm-25.11.7.tar.xz")
COMMANDS = ("slurmctld", "slurmd", "munged", "sbatch", "srun", "sinfo", "scontrol", "squeue")


@dataclass(frozen=True)
class Tier:
    id: str
    install: SlurmInstall

    @property
    def release(self) -> tuple[int, int] | None:
        """(major, minor) of the tier's Slurm: from ``slurmctld -V``, else from its id (``slurm-25.11``)."""
        if self.install.available():
            return self.install.version()[:2]
        found = re.match(r"slurm-(\d+)\.(\d+)", self.id)
        return (int(found.group(1)), int(found.group(2))) if found else None


def _tiers() -> list[Tier]:
    wanted = {w.strip().removeprefix("slurm-") for w in os.environ.get("FABRIC_SLURM_TIERS", "").split(",")}
    wanted.discard("")
    out: list[Tier] = []
    for install in installs():
        tid = tier_id(install)
        while tid in {t.id for t in out}:
            tid += "-2"
        if not wanted or tid.removeprefix("slurm-") in wanted:
            out.append(Tier(tid, install))
    return out


TIERS = _tiers()


def tiers_within(low: tuple[int, ...] | None, high: tuple[int, ...] | None) -> list[Tier]:
    """The tiers whose Slurm release is within ``low`` .. ``high`` (either None: open); a tier of
    unknown release is kept (it skips, or fails under FABRIC_REQUIRE_REAL=1, with the reason)."""
    return [t for t in TIERS if t.release is None
            or ((low is None or t.release >= low) and (high is None or t.release <= high))]


def missing(install: SlurmInstall) -> str | None:
    """Why this install cannot run a test cluster here (None when it can)."""
    absent = [c for c in COMMANDS if install.which(c) is None]
    if absent:
        where = "on PATH" if install.prefix is None else f"in {install.prefix}/bin, sbin"
        return f"{install.label}: {', '.join(absent)} not found {where}"
    try:
        install.version()
    except ExternalError as exc:
        return f"{install.label}: {exc.message}"
    return None


def vendor_present() -> bool:
    return any((VENDOR / name).is_file() for name in VENDOR_FILES)


def require_install(install: SlurmInstall) -> None:
    """Skip (or fail under FABRIC_REQUIRE_REAL=1 when it could be installed) a tier that cannot run."""
    why = missing(install)
    if why is None:
        return
    if install.prefix is None:
        require_real("slurm", False, why)
    if install.prefix not in {Path(p) for p in DEFAULT_PREFIXES}:
        how = f"build it: make slurm-check SLURM_SRC=<source> SLURM_CHECK_PREFIX={install.prefix}"
        if REQUIRE_REAL:
            pytest.fail(f"{why} (FABRIC_SLURM_PREFIXES names it; {how})")
        pytest.skip(f"{why}: {how}")
    if REQUIRE_REAL and vendor_present():
        pytest.fail(f"{why} (FABRIC_REQUIRE_REAL=1 and the files are in {VENDOR}: run `make slurm-25.11`)")
    pytest.skip(f"{why}: run `make slurm-25.11` (needs Slurm's files in SLURM_VENDOR={VENDOR})")


def tier_header() -> list[str]:
    """One line for pytest's header: every tier and the version it runs, or why it cannot."""
    parts = []
    for tier in TIERS:
        why = missing(tier.install)
        what = why if why else f"{tier.install.label} {version_text(tier.install.version())}"
        parts.append(f"{tier.id} ({what})")
    return ["slurm tiers: " + ("; ".join(parts) if parts else "none selected (FABRIC_SLURM_TIERS)")]
