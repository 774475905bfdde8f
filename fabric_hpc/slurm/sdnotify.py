"""systemd's readiness protocol (``Type=notify``), without a dependency: one datagram to ``$NOTIFY_SOCKET``.

The agent says ``READY=1`` once Slurm answered its first contact (so ``systemctl start`` returns
when the agent can really work, and fails when it exits 5 instead), ``STATUS=…`` after each cycle,
and ``STOPPING=1`` on the way out. Outside systemd (no ``NOTIFY_SOCKET``) every call does nothing.
The variable is untrusted: only a filesystem path or an abstract name (``@…``) that fits a Unix
socket address is used; anything else, or a send that fails, is reported as False and never raised
(the service manager then sees no readiness and its start timeout says so).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

_MAX_ADDR = 107  # sun_path is 108 bytes with the terminating NUL
_MAX_MESSAGE = 4096


def notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send ``message`` (``KEY=VALUE`` lines) to the service manager; True when it was sent."""
    addr = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if not addr or len(addr.encode()) > _MAX_ADDR or "\0" in addr:
        return False
    if addr.startswith("@"):
        target = "\0" + addr[1:]
    elif addr.startswith("/"):
        target = addr
    else:  # vsock: or relative names: not ours to guess
        return False
    data = message.encode("utf-8", "replace")[:_MAX_MESSAGE]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(1.0)
            sock.sendto(data, target)
    except OSError:
        return False
    return True
