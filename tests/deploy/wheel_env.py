"""fabric-hpc built as a wheel and installed into a fresh virtual environment (no checkout on its path).

The environment has no site packages of its own beyond the wheel: a ``.pth`` file adds the shared
venv's site-packages (numpy, ortools, … already installed there) *after* the wheel. A directory named
in a ``.pth`` file is not a site directory, so the shared venv's editable-install finder (which would
point at a checkout) is not activated; :meth:`WheelEnv.check_isolated` proves it.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class WheelEnv:
    root: Path       # the venv
    wheel: Path
    sdist: Path
    cwd: Path        # an empty directory to run commands in (never the checkout)

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        return {**env, **(extra or {})}

    def run(self, *argv: str, check: bool = True, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(list(argv), cwd=self.cwd, env=env or self.env(), capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{argv} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        return proc

    def fabric(self, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.bin / "fabric"), *args, **kw)  # type: ignore[arg-type]

    def check_isolated(self) -> str:
        """Where the venv imports fabric_hpc from (must be inside it, not the checkout)."""
        out = self.run(str(self.bin / "python"), "-c",
                       "import fabric_hpc, json, sys; print(fabric_hpc.__file__); print(json.dumps(sys.path))").stdout
        where, path = out.splitlines()[0], json.loads(out.splitlines()[1])
        assert Path(where).resolve().is_relative_to(self.root.resolve()), where
        others = [p for p in path if p and Path(p, "fabric_hpc").exists() and not Path(p).is_relative_to(self.root)]
        assert not others, f"a fabric_hpc source on the path: {others}"
        return where


def build(out: Path) -> tuple[Path, Path]:
    """``python -m build`` (sdist, then the wheel from the sdist) without network: the shared venv's setuptools.

    One build of this checkout at a time (pytest-xdist workers each build their own): the sdist step writes
    ``fabric_hpc.egg-info`` into the checkout, so two at once could read each other's half-written files."""
    with open(REPO / "pyproject.toml", "rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        subprocess.run([sys.executable, "-m", "build", "--no-isolation", "-o", str(out), str(REPO)], check=True,
                       capture_output=True, text=True, timeout=300, cwd=REPO)
    wheels, sdists = sorted(out.glob("fabric_hpc-*.whl")), sorted(out.glob("fabric_hpc-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, list(out.iterdir())
    return wheels[0], sdists[0]


def install(base: Path) -> WheelEnv:
    """Build, make a venv (no system site packages), install the wheel with pip (no index, no deps)."""
    wheel, sdist = build(base / "dist")
    root = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "pip", "--python", str(root / "bin" / "python"), "install", "--no-deps",
                    "--no-index", "--quiet", str(wheel)], check=True, capture_output=True, text=True, env=env,
                   timeout=300)
    site = subprocess.run([str(root / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True, env=env).stdout.strip()
    shared = str(Path(sysconfig.get_paths()["purelib"]).resolve())  # the dependencies, not fabric_hpc (editable there: finder inactive)
    Path(site, "zz_shared_deps.pth").write_text(shared + "\n")
    cwd = base / "work"
    cwd.mkdir()
    return WheelEnv(root=root, wheel=wheel, sdist=sdist, cwd=cwd)
