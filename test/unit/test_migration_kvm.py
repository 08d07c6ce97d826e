"""KVM migration steps against a scripted QMP server (no QEMU), status parsing,
and the disk transfer stream's refusals."""

import json
import os
import socket
import subprocess
import sys
import threading

import pytest

from corral import errors
from corral.hypervisor import base
from corral.hypervisor.kvm import KvmHypervisor, migration, runtime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


class FakeQmp:
    """A QMP server on a unix socket: answers commands from ``replies`` (value or
    callable(args) -> value), records them, sends ``events[cmd]`` after a reply."""

    def __init__(self, path: str, replies: dict, events: dict | None = None) -> None:
        self.path, self.replies, self.events = path, replies, events or {}
        self.commands: list[tuple[str, dict]] = []
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(path)
        self.sock.listen(5)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                stream = conn.makefile("rwb")
                stream.write(b'{"QMP": {"version": {"qemu": {"major": 7, "minor": 2,'
                             b' "micro": 0}}, "capabilities": []}}\n')
                stream.flush()
                for line in stream:
                    msg = json.loads(line)
                    cmd, args = msg["execute"], msg.get("arguments", {})
                    self.commands.append((cmd, args))
                    reply = self.replies.get(cmd, {})
                    value = reply(args) if callable(reply) else reply
                    stream.write(json.dumps({"return": value, "id": msg["id"]}).encode() + b"\n")
                    for event in self.events.get(cmd, []):
                        stream.write(json.dumps({"event": event}).encode() + b"\n")
                    stream.flush()

    def names(self) -> list[str]:
        return [c for c, _a in self.commands if c != "qmp_capabilities"]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def vm(tmp_path, monkeypatch):
    """A 'running' instance: a process named like QEMU (-name vm1) and a QMP socket."""
    root = "/tmp/kq%d" % os.getpid()
    monkeypatch.setenv("CORRAL_ROOT", root)
    paths = runtime.paths_for("vm1")
    os.makedirs(paths.dir, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)",
                             "-name", "vm1"])
    with open(paths.pidfile, "w") as fh:
        fh.write(str(proc.pid))
    runtime.save_runtime(paths, {"spec": {}, "disks": [], "taps": [], "pid": proc.pid})
    servers = []

    def serve(replies, events=None):
        server = FakeQmp(paths.qmp, replies, events)
        servers.append(server)
        return server
    spec = base.InstanceSpec(name="vm1", uuid="u", hvparams={"migration_port": 8102,
                                                             "migration_bandwidth": 5,
                                                             "migration_downtime": 40},
                             beparams={})
    try:
        yield KvmHypervisor(), spec, serve
    finally:
        for server in servers:
            server.close()
        proc.kill()
        proc.wait()
        import shutil
        shutil.rmtree(root, ignore_errors=True)


def test_migrate_sets_parameters_and_events(vm):
    hv, spec, serve = vm
    qmp = serve({})
    hv.migrate_instance(spec, "10.0.0.2", live=False)
    assert qmp.names() == ["stop", "migrate-set-parameters", "migrate-set-capabilities",
                           "migrate"]
    args = dict(qmp.commands)
    assert args["migrate-set-parameters"] == {"max-bandwidth": 5 << 20, "downtime-limit": 40}
    assert {"capability": "events", "state": True} in \
        args["migrate-set-capabilities"]["capabilities"]
    assert args["migrate"] == {"uri": "tcp:10.0.0.2:8102"}


def test_wait_returns_on_event_not_after_timeout(vm):
    hv, spec, serve = vm
    states = iter([{"status": "active", "ram": {"transferred": 1, "total": 4,
                                                "remaining": 3}},
                   {"status": "completed", "downtime": 12, "total-time": 640,
                    "ram": {"transferred": 4, "total": 4, "remaining": 0}}])
    serve({"query-migrate": lambda a: next(states), "query-block-jobs": []},
          events={"query-block-jobs": ["MIGRATION"]})
    import time
    start = time.monotonic()
    status = hv.wait_migration(spec, 30.0)
    assert time.monotonic() - start < 10
    assert status["status"] == "completed" and status["downtime"] == 12
    assert status["transferred"] == 4 and status["total_time"] == 640


def test_mirror_and_stop(vm):
    hv, spec, serve = vm
    jobs = [[{"device": "corral-mig-disk0", "status": "ready", "ready": True, "offset": 9,
              "len": 9}],
            [{"device": "corral-mig-disk0", "status": "concluded", "ready": True,
              "offset": 9, "len": 9}], []]
    qmp = serve({"query-block-jobs": lambda a: jobs.pop(0) if len(jobs) > 1 else jobs[0]},
                events={"block-job-cancel": ["JOB_STATUS_CHANGE"]})
    hv.mirror_disks(spec, "10.0.0.2", 1)
    hv.stop_mirror(spec)
    mirror = dict(qmp.commands)["drive-mirror"]
    assert mirror["target"] == "nbd:10.0.0.2:8103:exportname=disk0"
    assert mirror["sync"] == "full" and mirror["mode"] == "existing"
    assert mirror["auto-dismiss"] is False
    assert ("block-job-cancel", {"device": "corral-mig-disk0", "force": False}) in qmp.commands
    assert ("job-dismiss", {"id": "corral-mig-disk0"}) in qmp.commands


def test_abort_cancels_and_resumes(vm):
    hv, spec, serve = vm
    state = {"status": "active"}

    def cancel(args):
        state["status"] = "cancelled"
        return {}
    qmp = serve({"query-migrate": lambda a: dict(state), "migrate_cancel": cancel,
                 "query-block-jobs": [], "query-status": {"running": False,
                                                         "status": "paused"}},
                events={"migrate_cancel": ["MIGRATION"]})
    hv.abort_migration(spec)
    names = qmp.names()
    assert names.index("migrate_cancel") < names.index("cont")


def test_export_disks_over_nbd():
    class Mon:
        def __init__(self):
            self.calls = []

        def execute(self, cmd, args=None):
            self.calls.append((cmd, args))
    mon = Mon()
    migration.KvmMigrationMixin._export_disks(mon, "10.0.0.3", 8103, 2)
    assert mon.calls == [
        ("nbd-server-start", {"addr": {"type": "inet",
                                       "data": {"host": "10.0.0.3", "port": "8103"}}}),
        ("nbd-server-add", {"device": "disk0", "writable": True}),
        ("nbd-server-add", {"device": "disk1", "writable": True})]


def test_summarize_status_keeps_only_corral_jobs():
    st = migration.summarize_status(
        {"status": "active", "ram": {"transferred": 5, "total": 10, "remaining": 5,
                                     "mbps": 268.4, "dirty-sync-count": 2}},
        [{"device": "corral-mig-disk0", "offset": 1, "len": 2, "ready": False,
          "status": "running"}, {"device": "backup0", "offset": 0, "len": 1}])
    assert st["dirty_sync_count"] == 2 and st["remaining"] == 5
    assert [d["job"] for d in st["disks"]] == ["corral-mig-disk0"]
    assert not migration._mirror_changed(st)
    st["disks"][0].update(status="concluded")
    assert migration._mirror_changed(st)


# ---- disk transfer stream ---------------------------------------------------------------

def test_transfer_refuses_wrong_id_and_oversized_data(tmp_path, monkeypatch):
    from migration_helpers import make_cluster
    from corral.backend import disk_transfer as dt
    monkeypatch.delenv("CORRAL_ROOT", raising=False)
    _cfg, rpc = make_cluster(tmp_path)
    small, big = str(tmp_path / "shared" / "a"), str(tmp_path / "shared" / "b")
    for path, size in ((small, 1 << 20), (big, 3 << 20)):
        with open(path, "wb") as fh:
            fh.truncate(size)
            fh.write(b"x")
    allowed = [str(tmp_path / "shared")]

    def disk(path):
        return {"dev_type": "sharedfile", "logical_id": ["loop", path], "size": 1,
                "params": {"allowed_dirs": allowed}}
    port = rpc.on("node2.example", dt.disk_import_start, "t1", [disk(small)], "127.0.0.1")
    rpc.on("node1.example", dt.disk_export_start, "t-other", [disk(big)], "127.0.0.1", port)
    st = rpc.on("node2.example", dt.disk_transfer_status, "t1", 30)
    assert st["status"] == "failed" and "wrong transfer id" in st["error"]
    port = rpc.on("node2.example", dt.disk_import_start, "t2", [disk(small)], "127.0.0.1")
    rpc.on("node1.example", dt.disk_export_start, "t2", [disk(big)], "127.0.0.1", port)
    st = rpc.on("node2.example", dt.disk_transfer_status, "t2", 30)
    assert st["status"] == "failed" and "do not fit" in st["error"]
    src = rpc.on("node1.example", dt.disk_transfer_status, "t2", 30)
    assert src["status"] == "failed" and "do not fit" in src["error"]
    for tid in ("t1", "t2", "t-other"):
        for node in ("node1.example", "node2.example"):
            rpc.on(node, dt.disk_transfer_cleanup, tid)
    with pytest.raises(errors.OpExecError, match="No transfer"):
        rpc.on("node2.example", dt.disk_transfer_status, "t1")
