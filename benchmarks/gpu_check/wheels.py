"""The wheels the GPU check carries (``wheels.txt``): download here, install there.

    python -m benchmarks.gpu_check.wheels download [.whl]    # `make gpu-wheels`, on this machine

The lent machine cannot reach any registry; ``python -m benchmarks.gpu_check --wheels .whl``
installs the carried wheels there with ``pip install --no-index --no-deps --target`` (into the
check's work folder) before anything imports them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PINS = HERE / "wheels.txt"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")
LIMIT_BYTES = 40 << 20


def pins() -> list[str]:
    lines = (ln.split("#", 1)[0].strip() for ln in PINS.read_text().splitlines())
    return [ln for ln in lines if ln]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def download(dest: Path) -> list[tuple[str, int]]:
    """Fetch exactly the pinned wheels for CPython 3.12 x86-64 into ``dest`` (old ones removed)."""
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.whl"):
        old.unlink()
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.12", "--implementation", "cp", "-d", str(dest)]
    for plat in PLATFORMS:
        cmd += ["--platform", plat]
    subprocess.run(cmd + pins(), check=True)
    got = sorted(dest.glob("*.whl"))
    names = sorted(_norm(w.name.split("-")[0]) for w in got)
    want = sorted(_norm(p.split("==")[0]) for p in pins())
    if names != want:
        raise SystemExit(f"expected one wheel each of {want}, got {names}")
    sizes = [(w.name, w.stat().st_size) for w in got]
    if sum(s for _, s in sizes) > LIMIT_BYTES:
        raise SystemExit(f"wheels total {sum(s for _, s in sizes)} bytes, over {LIMIT_BYTES}")
    return sizes


def install(src: Path, target: Path) -> Path:
    """Install every wheel in ``src`` into ``target`` with no index and no dependencies."""
    wheels = sorted(str(w) for w in src.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"no wheels in {src}: run `make gpu-wheels` here before the device call")
    got = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                          "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(target),
                          *wheels])
    if got.returncode:
        raise SystemExit(f"pip could not install the wheels in {src} into {target} (its message "
                         "is above); they must be CPython 3.12 x86-64 wheels from `make gpu-wheels`")
    return target


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "download":
        print(__doc__)
        return 2
    sizes = download(Path(args[1] if len(args) > 1 else ".whl"))
    for name, size in sizes:
        print(f"{size / 2**20:8.2f} MiB  {name}")
    print(f"{sum(s for _, s in sizes) / 2**20:8.2f} MiB  total ({len(sizes)} wheels)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
