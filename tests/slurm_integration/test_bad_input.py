"""Malformed fabric requests are rejected at submit, with a message the user can act on."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slurm


@pytest.mark.parametrize("args,message", [
    (["-N2", "--gres=gpu:16", "--comment=fabric"], "16 GPUs per node requested, but nodes have 8"),
    (["--comment=fabric"], "fabric placement is for GPU jobs: add --gres=gpu:N"),
    (["-N2", "--gres=gpu:8", "--comment=fabric:bogus=1"], "unknown option 'bogus' (valid: exclude, include"),
    (["-N2", "--gres=gpu:8", "--comment=fabric:switches=two"], "option switches needs a positive whole number"),
    (["-N2-4", "--gres=gpu:8", "--comment=fabric"], "give an exact node count"),
    (["-N2", "--gres=gpu:8", "-w", "n[1-2]", "--comment=fabric"],
     "fabric chooses the nodes; use --comment=fabric:include=HOSTS"),
])
def test_rejected_at_submit(fabric_cluster, args, message):
    proc = fabric_cluster.run(["sbatch", "--parsable", *args, "--wrap", "true"], check=False)
    assert proc.returncode != 0
    assert f"fabric: {message}" in proc.stderr.replace("--comment=fabric:bogus=1: ", "").replace(
        "--comment=fabric:switches=two: ", "")


def test_opt_out_and_plain_jobs_are_untouched(fabric_cluster):
    # a gang that did not ask for fabric and that fabric cannot place as given (-w, a node range) is Slurm's
    for args in (["-N2", "--gres=gpu:8", "--comment=nofabric"], ["-N1", "--gres=gpu:2"], ["-N2"],
                 ["-N2", "--gres=gpu:8", "-w", "n[1-2]"], ["-N2-4", "--gres=gpu:8"]):
        jid = fabric_cluster.sbatch(*args, wrap="true")
        info = fabric_cluster.job(jid)
        assert not info.get("Comment", "").startswith("fabric"), info
        fabric_cluster.wait_job(jid, timeout=30)


@pytest.mark.parametrize("comment,message", [
    ("fabric:within=%d%s", "option within needs a name, got '%d%s'"),
    ("fabric:%n=1", "cannot read option '%n=1'"),
    ("fabric:within=a\"b'c", "option within needs a name, got 'a\"b'c'"),
    ("fabric:include=a[1-1000000]b[1-1000000]", "stands for more than 100000 names"),
    ("fabric:" + "x" * 5000, "fabric reads at most 1024"),
])
def test_user_text_is_data_at_submit(fabric_cluster, comment, message):
    """The live slurmctld runs the same Lua: a format directive in a comment is shown, not run."""
    proc = fabric_cluster.run(["sbatch", "--parsable", "-N2", "--gres=gpu:8", f"--comment={comment}",
                               "--wrap", "true"], check=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
