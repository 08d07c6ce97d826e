"""Talking to a guest's serial console socket (tools, tests, the demo).

QEMU's serial chardev socket keeps no history, while its ``logfile=`` records
everything; ``wait_for_marker`` therefore looks in the log first and then
follows the socket, woken by select() on new data (no polling).
"""

import os
import re
import select
import socket
import time


class GuestConsole:
    """Event-driven reader/writer of a serial console unix socket."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf = ""

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        """Wait until ``pattern`` appears in output received from now on."""
        return self.wait_until(pattern, time.monotonic() + timeout)

    def wait_until(self, pattern: str, deadline: float) -> re.Match:
        """Like wait_for, with an absolute ``time.monotonic()`` deadline."""
        regex = re.compile(pattern)
        start = len(self.buf)
        timeout = max(0.0, deadline - time.monotonic())
        while True:
            match = regex.search(self.buf, start)
            if match:
                return match
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no %r on the console within %.0f s; last output: %s" %
                                   (pattern, timeout, self.buf[-2000:]))
            ready, _, _ = select.select([self.sock], [], [], remaining)
            if ready:
                data = self.sock.recv(65536)
                if not data:
                    raise EOFError("console closed; last output: %s" % self.buf[-2000:])
                self.buf += data.decode("utf-8", "replace")

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\n")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "GuestConsole":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_for_marker(socket_path: str, log_path: str | None, marker: str,
                    timeout: float) -> None:
    """Return once ``marker`` was printed on the console (before or after this call)."""
    with GuestConsole(socket_path) as console:
        if log_path and os.path.exists(log_path):
            with open(log_path, errors="replace") as fh:
                if marker in fh.read():
                    return
        console.wait_for(re.escape(marker), timeout)
