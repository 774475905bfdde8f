"""Who may run the agent: a user Slurm lets modify other users' jobs.

``scontrol update JobId=N ReqNodeList=… StartTime=now`` on another user's job needs SlurmUser, root,
or a Slurm operator or administrator (``sacctmgr modify user NAME set AdminLevel=Operator``; that
needs slurmdbd). Any other user gets "Invalid user id" / "Access/permission denied" for every job.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable, Sequence

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.actions import PRIVILEGE_HINT
from fabric_hpc.slurm.cli_backend import ChildNotStarted, ChildTimeout, run_child
from fabric_hpc.slurm.contract import SlurmError

Run = Callable[[Sequence[str]], str]
#: Seconds ``scontrol show config`` has to answer when install looks up the SlurmUser (no answer: none known)
SCONTROL_TIMEOUT_S = 10


def slurm_user_from(config_text: str) -> str | None:
    """``SlurmUser`` of ``scontrol show config`` (``SlurmUser = slurm(64030)`` → ``slurm``)."""
    for line in config_text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "SlurmUser":
            return value.strip().split("(")[0] or None
    return None


def detect_slurm_user(env: dict[str, str] | None = None) -> str | None:
    """The cluster's SlurmUser (``scontrol show config``); None when scontrol does not answer."""
    try:
        out = run_child(["scontrol", "show", "config"], SCONTROL_TIMEOUT_S, env=env)
    except (ChildNotStarted, ChildTimeout):
        return None
    return slurm_user_from(out.stdout) if out.returncode == 0 else None


def current_user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def check_privilege(run: Run, user: str | None = None) -> str:
    """Why ``user`` (default: this process's) may modify jobs, in words; ConfigError (exit 3) when it may not."""
    slurm_user = slurm_user_from(run(["scontrol", "show", "config"]))
    user = user or current_user()
    if user == "root":
        return "runs as root"
    if user == slurm_user:
        return f"runs as SlurmUser ({user})"
    try:
        level = run(["sacctmgr", "-nP", "show", "user", user, "format=AdminLevel"]).strip()
    except SlurmError:
        level = ""  # no slurmdbd (or no sacctmgr): no operators
    if level.lower() in ("operator", "administrator"):
        return f"{user} is a Slurm {level.lower()}"
    raise ConfigError(f"the agent's user {user} may not modify other users' jobs (SlurmUser is "
                      f"{slurm_user or 'unknown'}, {user}'s AdminLevel is {level or 'none'})", hint=PRIVILEGE_HINT)
