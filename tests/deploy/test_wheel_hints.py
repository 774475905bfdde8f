"""Help texts and fix lines name what an installed wheel has: no ``plugins/``, ``topology/`` or ``data/``
folder of the source tree as if it were there, and no Makefile target as if there were a Makefile."""

from __future__ import annotations

import json
import re

from tests.deploy.wheel_env import WheelEnv

#: a folder of the source tree named as a path (Slurm's plugin names topology/tree, topology/block and
#: install's "topology/gres.conf" (topology.conf and gres.conf) are not paths)
CHECKOUT_PATH = re.compile(r"(?<![\w/.-])(plugins|jobscripts|data|topology|tests|benchmarks)/"
                           r"(?!(tree|block|gres\.conf)\b)[\w*]")

#: every command's --help, from the wheel's own click objects, in the wheel's venv
HELP_TEXTS = r"""
import json, click
from click.testing import CliRunner
from fabric_hpc.cli.main import cli
ctx = click.Context(cli)
def walk(cmd, path):
    yield path
    if isinstance(cmd, click.Group):
        for name in cmd.list_commands(ctx):
            yield from walk(cmd.get_command(ctx, name), path + [name])
run = lambda p: CliRunner().invoke(cli, [*p, "--help"], prog_name="fabric").output
print(json.dumps({" ".join(p): run(p) for p in walk(cli, [])}))
"""


def test_help_texts_name_no_source_tree_folder(wheel_env: WheelEnv) -> None:
    texts = json.loads(wheel_env.run(str(wheel_env.bin / "python"), "-c", HELP_TEXTS).stdout)
    assert len(texts) > 40 and "Usage: fabric place" in texts["place"]
    bad = {cmd: m.group(0) for cmd, text in texts.items()
           if (m := CHECKOUT_PATH.search(" ".join(text.split())))}
    assert not bad, bad
    make = {cmd for cmd, text in texts.items() if re.search(r"\bmake [a-z]", text) and "checkout" not in text}
    assert not make, make


def test_a_missing_sample_trace_says_where_to_get_it(wheel_env: WheelEnv) -> None:
    """README's example trace is in the source tree only: the fix says so and where it comes from."""
    proc = wheel_env.fabric("sim", "run", "--trace", "tiresias:data/traces/tiresias_60_job.csv",
                            "-t", "superpod:sus=1",
                            "--out", str(wheel_env.cwd / "sim-missing"), check=False)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    fix = " ".join(proc.stderr.split("fix:", 1)[1].split())
    assert "not in the wheel" in fix and "https://github.com/SymbioticLab/Tiresias" in fix, fix
    assert "https://github.com/alibaba/clusterdata" in fix, fix


def test_the_pyslurm_fix_names_make_only_for_a_checkout(wheel_env: WheelEnv) -> None:
    hint = wheel_env.run(str(wheel_env.bin / "python"), "-c", "from fabric_hpc.slurm.pyslurm_backend import "
                         "INSTALL_HINT; print(INSTALL_HINT)").stdout
    assert "pip install pyslurm" in hint
    assert "make pyslurm" not in hint or "checkout" in hint, hint


def test_the_demo_help_names_the_command_a_wheel_has(wheel_env: WheelEnv) -> None:
    text = wheel_env.run(str(wheel_env.bin / "python"), "-m", "fabric_hpc.demo", "--help").stdout
    assert "python -m fabric_hpc.demo" in text
    assert "make demo" not in text or "checkout" in text, text
