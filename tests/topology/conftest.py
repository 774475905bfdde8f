from __future__ import annotations

import pytest

from fabric_hpc.topology import build, dump_spec, generators


@pytest.fixture(scope="session")
def superpod4():
    return build(generators.superpod(4))


@pytest.fixture()
def superpod_yaml(tmp_path):
    """A valid 2-SU SuperPOD file and a helper that writes edited copies."""
    text = dump_spec(generators.superpod(2))
    path = tmp_path / "pod.yaml"
    path.write_text(text)

    def edit(old: str, new: str, count: int = 1) -> str:
        assert old in text, f"fixture text has no {old!r}"
        p = tmp_path / "edited.yaml"
        p.write_text(text.replace(old, new, count))
        return str(p)

    return path, edit
