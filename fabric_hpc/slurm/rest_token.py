"""The rest backend's JWT from a file (``agent.rest_token_file``): what an installed agent, which has
no ``SLURM_JWT`` in its environment, reads at every request, so a token renewed by a cron job or a
systemd timer is used without a restart (docs/deploy.md: the rest backend's token).

The file holds the token alone or ``SLURM_JWT=<token>`` (what ``scontrol token`` prints); it must be a
regular file owned by root or by the user reading it, neither writable by its group nor open to
others (0600 or 0640): a token is a password. No message shows its content.
"""

from __future__ import annotations

import os
import shlex
import stat
from typing import Any

from fabric_hpc.errors import ConfigError

#: Largest token file read (bytes): a JWT is a few hundred.
MAX_TOKEN_BYTES = 1 << 16


#: The lifespan (seconds) of the token the printed command asks for: a day, renewed every 12 hours.
TOKEN_LIFESPAN_S = 86400


def renew_command(path: str, user: str) -> str:
    """The line that writes (or renews) the token file, as root. The new file is created under umask 077
    (0600) before ``scontrol`` writes the token into it, so no other user can open it and read the
    token later through the open file; a stale ``.new`` (perhaps 0644) is removed first. Group and
    mode 0640 are set before ``mv`` puts it in place. Every pasted value is shell-quoted."""
    new, dest, who = shlex.quote(f"{path}.new"), shlex.quote(path), shlex.quote(user)
    return (f"rm -f {new} && (umask 077 && scontrol token username={who} lifespan={TOKEN_LIFESPAN_S} > "
            f"{new}) && group=$(id -gn {who}) && chgrp \"$group\" {new} && chmod 0640 {new} && "
            f"mv {new} {dest}")


def file_hint(path: str, user: str) -> str:
    """The fix for a token in ``path`` that slurmrestd refuses."""
    return (f"renew the token in rest_token_file {path} for user {user} (agent.rest_user; the token's "
            f"username= must be it): {renew_command(path, user)} — from a cron job or systemd timer "
            "well before lifespan ends; the agent reads the file at every request (docs/deploy.md)")


def rest_token_note(cfg: Any) -> str:
    """What ``fabric slurm install`` prints for backend rest: where the installed agent's JWT comes
    from and how to create and renew it (the unit passes no SLURM_JWT)."""
    a, user = cfg.agent, cfg.agent.rest_user or cfg.install.service_user
    if not a.rest_token_file:
        return ("backend rest: the installed agent has no JWT (its unit sets no SLURM_JWT). Unless "
                "slurmrestd authenticates its unix socket's peer (rest_auth/local), set "
                "agent.rest_token_file (e.g. /etc/fabric-hpc/slurm.jwt) and agent.rest_user, and run "
                "install again (docs/deploy.md).")
    return (f"backend rest: the agent reads its JWT from {a.rest_token_file} at every request, as user "
            f"{user}. Create it now and renew it before it expires (cron or a systemd timer), as root:\n"
            f"  {renew_command(a.rest_token_file, user)}\n"
            "  (root's or the service user's, mode 0600/0640; lifespan in seconds; docs/deploy.md)")


def read_token_file(path: str) -> str:
    """The token in ``path`` (``SLURM_JWT=`` prefix and surrounding whitespace dropped); ConfigError
    for a missing, unreadable, foreign-owned, group-writable or world-readable file, or an empty one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"rest_token_file {path}: cannot be read ({exc.strerror})",
                          hint=f"write it as root: {renew_command(path, '<service user>')}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"rest_token_file {path} is not a regular file",
                              hint="point it at the token file")
        if st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o027:
            raise ConfigError(f"rest_token_file {path}: owner uid {st.st_uid}, mode {st.st_mode & 0o777:o}: "
                              "a token must be root's or the agent's own, not writable by its group and "
                              "not readable by others", hint=f"chown root {path} && chmod 0640 {path}")
        raw = os.read(fd, MAX_TOKEN_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_TOKEN_BYTES:
        raise ConfigError(f"rest_token_file {path} is larger than {MAX_TOKEN_BYTES} bytes: not a token")
    text = raw.decode("utf-8", "replace").strip()
    text = text.removeprefix("SLURM_JWT=").strip()
    if not text:
        raise ConfigError(f"rest_token_file {path} holds no token",
                          hint=f"write one: {renew_command(path, '<service user>')}")
    return text
