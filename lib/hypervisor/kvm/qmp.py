"""A small blocking QMP client over a unix socket.

One connection = greeting + ``qmp_capabilities``; then ``execute`` sends a
command and waits for its reply (matched by ``id``), queueing any events that
arrive meanwhile; ``wait_event`` blocks in select() until a wanted event, the
deadline, or the peer closing (QEMU exited).  No polling loops.

QEMU serves one QMP client at a time per socket, so callers keep connections
short (the driver serializes its QMP use per instance).  Every failure is a
``QmpError`` (a HypervisorError), so driver callers see domain errors only.
"""

import itertools
import select
import socket
import time
from typing import Any, Callable

from corral import errors, serializer


class QmpError(errors.HypervisorError):
    """QMP connection failure, timeout, or an error reply."""


class QmpClosed(QmpError):
    """The peer closed the connection (QEMU exited or is exiting)."""


class QmpTimeout(QmpError):
    """No answer before the deadline."""


class QmpClient:
    """Connect with :meth:`connect` (or ``with QmpClient(path) as q:``)."""

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.greeting: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []
        self._buf = b""
        self._ids = itertools.count(1)

    def __enter__(self) -> "QmpClient":
        self.connect()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def connect(self) -> None:
        """Connect and negotiate capabilities; QmpError if QEMU is not there."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError as err:
            sock.close()
            raise QmpError("Cannot connect to QMP socket %s: %s" % (self.path, err))
        sock.setblocking(False)
        self.sock = sock
        deadline = time.monotonic() + self.timeout
        msg = self._read_message(deadline)
        if "QMP" not in msg:
            self.close()
            raise QmpError("Unexpected QMP greeting on %s: %r" % (self.path, msg))
        self.greeting = msg["QMP"]
        self.execute("qmp_capabilities")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    @property
    def version(self) -> tuple[int, int, int]:
        qemu = self.greeting.get("version", {}).get("qemu", {})
        return (qemu.get("major", 0), qemu.get("minor", 0), qemu.get("micro", 0))

    def execute(self, command: str, arguments: dict[str, Any] | None = None,
                timeout: float | None = None) -> Any:
        """Run ``command``; its ``return`` value, or QmpError with QEMU's error text."""
        if self.sock is None:
            raise QmpError("QMP client for %s is not connected" % self.path)
        cmd_id = "corral-%d" % next(self._ids)
        request: dict[str, Any] = {"execute": command, "id": cmd_id}
        if arguments:
            request["arguments"] = arguments
        self._send(request)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            msg = self._read_message(deadline)
            if "event" in msg:
                self.events.append(msg)
                continue
            if msg.get("id") != cmd_id:
                continue
            if "error" in msg:
                err = msg["error"]
                raise QmpError("QMP command %s failed: %s: %s" %
                               (command, err.get("class"), err.get("desc")))
            return msg.get("return")

    def wait_event(self, names: set[str] | frozenset[str], timeout: float) -> dict | None:
        """The first queued or arriving event named in ``names``; None on timeout.

        Raises QmpClosed if QEMU closes the connection first.
        """
        for idx, ev in enumerate(self.events):
            if ev.get("event") in names:
                return self.events.pop(idx)
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self._read_message(deadline)
            except QmpTimeout:
                return None
            if msg.get("event") in names:
                return msg
            if "event" in msg:
                self.events.append(msg)

    def _send(self, data: dict[str, Any]) -> None:
        assert self.sock is not None
        payload = (serializer.dumps(data) + "\n").encode()
        try:
            self.sock.setblocking(True)
            self.sock.settimeout(self.timeout)
            self.sock.sendall(payload)
        except OSError as err:
            raise QmpClosed("Cannot send to QMP socket %s: %s" % (self.path, err))
        finally:
            self.sock.setblocking(False)

    def _read_message(self, deadline: float) -> dict[str, Any]:
        """One JSON message; QmpTimeout at the deadline."""
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.sock is None:
                raise QmpTimeout("Timeout waiting for QMP on %s" % self.path)
            ready, _, _ = select.select([self.sock], [], [], remaining)
            if not ready:
                continue
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as err:
                raise QmpClosed("QMP connection %s failed: %s" % (self.path, err))
            if not chunk:
                raise QmpClosed("QMP connection %s closed by QEMU" % self.path)
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        if not line.strip():
            return self._read_message(deadline)
        try:
            msg = serializer.loads(line)
        except ValueError as err:
            raise QmpError("Malformed QMP message on %s: %s" % (self.path, err))
        if not isinstance(msg, dict):
            raise QmpError("Malformed QMP message on %s: %r" % (self.path, msg))
        return msg


_JOB_END_EVENTS = frozenset(["BLOCK_JOB_CANCELLED", "BLOCK_JOB_COMPLETED", "BLOCK_JOB_ERROR",
                             "JOB_STATUS_CHANGE"])


def end_block_jobs(mon: QmpClient, wanted: Callable[[str], bool], force: bool,
                   timeout: float) -> None:
    """Cancel the block jobs whose id ``wanted`` accepts, dismiss them once
    concluded, and wait (QMP events) until none is left.  Idempotent.

    A ready mirror completes cleanly with a plain cancel; ``force`` drops a
    job whatever its state.  QmpError naming the jobs if they do not end
    within ``timeout`` seconds.
    """
    cancelled: set[str] = set()
    deadline = time.monotonic() + timeout
    while True:
        jobs = [j for j in mon.execute("query-block-jobs") or [] if wanted(j.get("device", ""))]
        if not jobs:
            return
        for job in jobs:
            name = job["device"]
            if job.get("status") == "concluded":
                mon.execute("job-dismiss", {"id": name})
            elif name not in cancelled:
                mon.execute("block-job-cancel", {"device": name, "force": force})
                cancelled.add(name)
        if all(j.get("status") == "concluded" for j in jobs):
            continue  # dismissed just now; look again
        left = deadline - time.monotonic()
        if left <= 0 or mon.wait_event(_JOB_END_EVENTS, left) is None:
            raise QmpError("Block job(s) %s did not end within %d s" %
                           (", ".join(sorted(j["device"] for j in jobs)), timeout))
