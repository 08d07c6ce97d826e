"""The QMP client against a scripted fake QMP server on a unix socket."""

import json
import os
import socket
import tempfile
import threading

import pytest

from corral import errors
from corral.hypervisor.kvm import qmp

GREETING = {"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 22}},
                    "capabilities": ["oob"]}}


class FakeQmp:
    """Serves one client: greeting, then answers via ``handler(request)``.

    The handler returns a list of messages to send (events and/or reply);
    returning None closes the connection (like QEMU exiting).
    """

    def __init__(self, handler) -> None:
        self.dir = tempfile.mkdtemp(prefix="qmpt")
        self.path = os.path.join(self.dir, "qmp.sock")
        self.handler = handler
        self.requests: list[dict] = []
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(self.path)
        self.srv.listen(1)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.srv.accept()
        with conn:
            conn.sendall((json.dumps(GREETING) + "\n").encode())
            buf = b""
            while True:
                data = conn.recv(4096)
                if not data:
                    return
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    req = json.loads(line)
                    self.requests.append(req)
                    out = self.handler(req)
                    if out is None:
                        return
                    for msg in out:
                        if msg.get("_reply"):
                            msg = {"return": msg["_reply"], "id": req.get("id")}
                        conn.sendall((json.dumps(msg) + "\n").encode())

    def close(self) -> None:
        self.srv.close()
        self.thread.join(5)
        os.unlink(self.path)
        os.rmdir(self.dir)


def default_handler(req: dict):
    cmd = req["execute"]
    if cmd == "qmp_capabilities":
        return [{"return": {}, "id": req["id"]}]
    if cmd == "query-status":
        return [{"event": "RESUME", "timestamp": {}},
                {"return": {"status": "running", "running": True}, "id": req["id"]}]
    if cmd == "system_powerdown":
        return [{"return": {}, "id": req["id"]}, {"event": "POWERDOWN"}]
    if cmd == "quit":
        return [{"return": {}, "id": req["id"]}, {"event": "SHUTDOWN"}]
    if cmd == "die":
        return None
    return [{"error": {"class": "CommandNotFound", "desc": "The command %s has not been "
                       "found" % cmd}, "id": req["id"]}]


@pytest.fixture
def server():
    srv = FakeQmp(default_handler)
    yield srv
    srv.close()


def test_handshake_and_execute(server) -> None:
    with qmp.QmpClient(server.path, timeout=5) as mon:
        assert mon.version == (7, 2, 22)
        assert mon.execute("query-status") == {"status": "running", "running": True}
        assert [e["event"] for e in mon.events] == ["RESUME"]   # queued meanwhile
    assert server.requests[0]["execute"] == "qmp_capabilities"


def test_error_reply_is_domain_error(server) -> None:
    with qmp.QmpClient(server.path, timeout=5) as mon:
        with pytest.raises(errors.HypervisorError, match="CommandNotFound"):
            mon.execute("bogus")


def test_wait_event(server) -> None:
    with qmp.QmpClient(server.path, timeout=5) as mon:
        mon.execute("system_powerdown")
        ev = mon.wait_event({"POWERDOWN"}, timeout=5)
        assert ev is not None and ev["event"] == "POWERDOWN"
        assert mon.wait_event({"SHUTDOWN"}, timeout=0.2) is None   # timeout, no event


def test_peer_close_is_reported(server) -> None:
    with qmp.QmpClient(server.path, timeout=5) as mon:
        with pytest.raises(qmp.QmpClosed):
            mon.execute("die")


def test_timeout_without_answer() -> None:
    srv = FakeQmp(lambda req: [{"return": {}, "id": req["id"]}]
                  if req["execute"] == "qmp_capabilities" else [])
    try:
        with qmp.QmpClient(srv.path, timeout=5) as mon:
            with pytest.raises(qmp.QmpTimeout):
                mon.execute("query-status", timeout=0.3)
    finally:
        srv.close()


def test_no_socket() -> None:
    with pytest.raises(qmp.QmpError, match="Cannot connect"):
        qmp.QmpClient("/nonexistent/qmp.sock", timeout=1).connect()
