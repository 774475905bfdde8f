"""fabric topology export: an option the chosen format does not read is a usage error; the NCCL
topology XML carries a host's real PCI bus ids, or is not exported to jobs at all."""

from __future__ import annotations

import pytest

from fabric_hpc.cli.main import main


@pytest.mark.parametrize("fmt,option", [
    ("topology-tree", ["--block-size", "4"]), ("gres", ["--block-size", "4"]),
    ("slurm-nodes", ["--block-size", "4"]), ("nccl-xml", ["--block-size", "4"]),
    ("gres", ["--host", "su01-h01"]), ("topology-tree", ["--host", "su01-h01"]),
    ("topology-block", ["--default-topology", "block"]), ("topology-tree", ["--device-dir", "/dev"]),
])
def test_an_option_the_format_ignores_is_a_usage_error(fmt, option, capsys):
    assert main(["topology", "export", "superpod:sus=1", "--format", fmt, *option]) == 2
    err = capsys.readouterr().err
    assert f"{option[0]} is for --format" in err and f"not {fmt}: --format {fmt} would ignore it" in err, err


def test_the_options_of_the_format_are_taken(capsys):
    assert main(["topology", "export", "superpod:sus=1", "--format", "topology-block", "--block-size", "16"]) == 0
    assert "BlockSizes=16\n" in capsys.readouterr().out
    assert main(["topology", "export", "superpod:sus=1", "--format", "topology-yaml", "--block-size", "16",
                 "--default-topology", "block"]) == 0
    assert "block_sizes:" in capsys.readouterr().out
