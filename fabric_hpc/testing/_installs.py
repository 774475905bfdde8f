"""Which Slurm a test cluster runs: Debian's packaged one on ``PATH`` or an install under a prefix.

A :class:`SlurmInstall` names the directories its commands come from and the version its
``slurmctld -V`` answers. :func:`installs` lists the Slurm releases of the test matrix: the system's
(Debian 12: 22.05, Debian 13: 24.11) and every prefix in ``FABRIC_SLURM_PREFIXES`` (default
``/opt/slurm-25.11``, where ``make slurm-25.11`` puts Slurm 25.11.7). See ``docs/testing.md``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fabric_hpc.errors import ExternalError

DEFAULT_PREFIXES = ("/opt/slurm-25.11",)
PREFIXES_ENV = "FABRIC_SLURM_PREFIXES"  # colon-separated install prefixes of the matrix
SYSTEM_SBIN = ("/usr/sbin", "/sbin")
NOT_SLURM = frozenset({"munged", "munge"})  # from the system even for a Slurm under a prefix
_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True)
class SlurmInstall:
    """One Slurm installation: ``prefix`` None is the system's (commands found on ``PATH``)."""

    prefix: Path | None = None

    @property
    def bin_dirs(self) -> tuple[Path, ...]:
        """Directories put first on ``PATH`` (none for the system Slurm)."""
        return () if self.prefix is None else (self.prefix / "bin", self.prefix / "sbin")

    def path(self, base: str | None = None) -> str:
        """``PATH`` for this Slurm's daemons, commands and jobs: its bin dirs first, then ``base``."""
        parts = [str(d) for d in self.bin_dirs]
        for part in (base if base is not None else os.environ.get("PATH", "/usr/bin:/bin")).split(":"):
            if part and part not in parts:
                parts.append(part)
        parts += [d for d in SYSTEM_SBIN if d not in parts]
        return ":".join(parts)

    def which(self, command: str) -> str | None:
        """Where a command of this Slurm is: in the prefix only (munge's ``munged`` from ``PATH``)."""
        if self.prefix is None or command in NOT_SLURM:
            return shutil.which(command, path=self.path())
        return shutil.which(command, path=":".join(map(str, self.bin_dirs)))

    @property
    def label(self) -> str:
        return "system Slurm" if self.prefix is None else f"Slurm in {self.prefix}"

    def version(self) -> tuple[int, int, int]:
        """``slurmctld -V`` as a tuple, e.g. (25, 11, 7); ExternalError when it does not answer."""
        slurmctld = self.which("slurmctld")
        if slurmctld is None:
            raise ExternalError(f"{self.label}: no slurmctld")
        return _cached_version(slurmctld)

    def available(self) -> bool:
        try:
            self.version()
        except ExternalError:
            return False
        return True


_VERSIONS: dict[str, tuple[int, int, int]] = {}


def _cached_version(slurmctld: str) -> tuple[int, int, int]:
    if slurmctld not in _VERSIONS:
        _VERSIONS[slurmctld] = read_version(slurmctld)
    return _VERSIONS[slurmctld]


def read_version(slurmctld: str) -> tuple[int, int, int]:
    """Run ``slurmctld -V`` (``slurm 25.11.7`` / ``slurm-wlm 22.05.8``) and parse the version."""
    try:
        proc = subprocess.run([slurmctld, "-V"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExternalError(f"{slurmctld} -V did not answer: {exc}") from None
    match = _VERSION.search(proc.stdout)
    if proc.returncode != 0 or not match:
        why = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        raise ExternalError(f"{slurmctld} -V did not print a version: {why[0]}",
                            hint="check the install's runtime libraries (ldd on slurmctld)")
    major, minor, micro = (int(g) for g in match.groups())
    return major, minor, micro


def version_text(version: tuple[int, ...]) -> str:
    """(22, 5, 8) -> ``22.05.8`` (Slurm writes the minor release with two digits)."""
    return ".".join(f"{v:02d}" if i == 1 else str(v) for i, v in enumerate(version))


def prefixes(environ: Mapping[str, str] | None = None) -> tuple[Path, ...]:
    """The install prefixes of the matrix: ``FABRIC_SLURM_PREFIXES`` or the default."""
    value = (os.environ if environ is None else environ).get(PREFIXES_ENV)
    raw = DEFAULT_PREFIXES if value is None else tuple(p for p in value.split(":") if p)
    return tuple(Path(p) for p in raw)


def installs(environ: Mapping[str, str] | None = None) -> list[SlurmInstall]:
    """The system Slurm, then one install per prefix (whether or not each runs)."""
    return [SlurmInstall(None)] + [SlurmInstall(p) for p in prefixes(environ)]


def tier_id(install: SlurmInstall) -> str:
    """A test id for the install: ``slurm-22.05`` (from a prefix's name while it does not run)."""
    try:
        return "slurm-" + version_text(install.version()[:2])
    except ExternalError:
        if install.prefix is not None:
            found = re.search(r"(\d+\.\d+)", install.prefix.name)
            return f"slurm-{found.group(1)}" if found else f"slurm-{install.prefix.name}"
        return "slurm-system"
