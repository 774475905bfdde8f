"""The wheel and sdist carry the licence text and the attribution of the data-derived fabric they ship,
and declare only the dependencies fabric_hpc imports (zarr and numcodecs: the tests read with them)."""

from __future__ import annotations

import tarfile
import zipfile

from tests.deploy.wheel_env import REPO, WheelEnv


def test_wheel_and_sdist_carry_the_licence_and_notice(wheel_env: WheelEnv) -> None:
    whl = zipfile.ZipFile(wheel_env.wheel)
    names = set(whl.namelist())
    info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    assert {f"{info}/licenses/LICENSE", f"{info}/licenses/NOTICE", "fabric_hpc/fabrics/NOTICE"} <= names
    assert whl.read(f"{info}/licenses/LICENSE") == (REPO / "data/LICENSE-Apache-2.0.txt").read_bytes()
    meta = whl.read(f"{info}/METADATA").decode()
    assert "License-Expression: Apache-2.0" in meta and "License-File: LICENSE" in meta
    notice = whl.read("fabric_hpc/fabrics/NOTICE").decode()
    assert "alibaba-lingjun-2023.yaml" in notice and "alibaba/alibaba-lingjun-dataset-2023" in notice
    assert "Apache License" in notice
    with tarfile.open(wheel_env.sdist) as tar:
        members = {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}
    assert {"LICENSE", "NOTICE"} <= members


def test_zarr_is_a_test_dependency_only(wheel_env: WheelEnv) -> None:
    whl = zipfile.ZipFile(wheel_env.wheel)
    meta = whl.read(next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines()
                if line.startswith("Requires-Dist:")]
    for name in ("zarr", "numcodecs"):
        mine = [r for r in requires if r.split("<")[0].split(">")[0].split(";")[0].strip() == name]
        assert mine and all('extra == "test"' in r for r in mine), mine
    for path in (REPO / "fabric_hpc").rglob("*.py"):
        text = path.read_text()
        assert "import zarr" not in text and "import numcodecs" not in text, path
