"""A one-request-per-connection HTTP server on a unix socket, for the tests that stand in for slurmrestd
where the real one cannot say what they need (a proxy's error page, an expired token, a dropped connection,
a restart with another API version). Subclasses answer in :meth:`UnixHttpServer.handle`."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path


class UnixHttpServer:
    """Accepts connections on ``path`` in a daemon thread; each gets one :meth:`handle` call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: list = []
        self.unasked = self.unanswered = 0  # connections closed before a request / before the answer
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            with conn:
                try:
                    request = conn.recv(65536)
                    if not request:  # closed without asking (a client that refused to send its request)
                        self.unasked += 1
                        continue
                    self.handle(conn, request)
                except (BrokenPipeError, ConnectionResetError):  # the client left before the answer
                    self.unanswered += 1

    def handle(self, conn: socket.socket, request: bytes) -> None:
        raise NotImplementedError

    @staticmethod
    def reply(conn: socket.socket, status: int | str, body: bytes | object,
              content_type: str = "application/json") -> None:
        """Send one answer (``status``: a code, or a code and its text); a body that is not bytes as JSON."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        line = status if isinstance(status, str) else f"{status} X"
        conn.sendall(b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                     % (line.encode(), content_type.encode(), len(raw), raw))

    def close(self) -> None:
        self.sock.close()
