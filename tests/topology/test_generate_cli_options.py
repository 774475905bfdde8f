"""`fabric topology generate <kind>` takes every parameter its generator reference takes
(`nvl72:racks=3,racks_per_su=2` worked, `generate nvl72 --racks-per-su 2` did not exist)."""

from __future__ import annotations

import inspect

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.cli.topology import generate
from fabric_hpc.topology import dump_spec, generators

#: generator parameters whose CLI option has another name
RENAMED = {("fat-tree", "gpus_per_host"): "gpus"}


@pytest.mark.parametrize("kind", sorted(generators.GENERATORS))
def test_every_generator_parameter_has_an_option(kind):
    params = inspect.signature(inspect.unwrap(generators.GENERATORS[kind])).parameters
    options = {p.name for p in generate.commands[kind].params}
    missing = [n for n in params if RENAMED.get((kind, n), n) not in options]
    assert not missing, f"generate {kind} lacks options for {missing}"


@pytest.mark.parametrize(("argv", "spec"), [
    (["nvl72", "--racks", "3", "--racks-per-su", "2"], generators.nvl72(3, racks_per_su=2)),
    (["superpod", "--sus", "5", "--sus-per-spine-group", "2"], generators.superpod(5, sus_per_spine_group=2)),
    (["fat-tree", "--k", "4", "--nic-gbps", "25"], generators.fat_tree(4, nic_gbps=25.0)),
    (["leaf-spine", "--hosts", "6", "--cpus", "16", "--memory-gb", "64"],
     generators.leaf_spine(6, cpus=16, memory_gb=64.0)),
])
def test_the_options_give_the_references_fabric(argv, spec, capsys):
    assert main(["topology", "generate", *argv]) == 0
    assert capsys.readouterr().out == dump_spec(spec)
