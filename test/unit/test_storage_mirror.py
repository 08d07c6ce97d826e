"""MirrorDev (disk template ``mirror``): command lines, parameters, the consistency
marker, status mapping and the assemble/shutdown logic with the processes faked.

The real processes are exercised in test/integration/test_mirror_storage.py.
The driver starts daemons rather than run-to-completion commands, so the
tests substitute mirror_proc's functions instead of the class ``runner``.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from corral import errors, storage
from corral.storage import base, filestorage, mirror, mirror_proc

UUID = "0f4b7a52-1c7e-4d0e-9b1a-5d2f3c4e5a6b"
LID = ("uuid-a", "uuid-b", 11050)


@pytest.fixture
def root(monkeypatch):
    # Short: the driver refuses socket paths longer than a unix socket allows.
    path = tempfile.mkdtemp(prefix="mu", dir="/tmp")
    monkeypatch.setenv("CORRAL_ROOT", path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _params(role="secondary", **over):
    p = {"local_node": "uuid-b" if role == "secondary" else "uuid-a", "role": role,
         "local_ip": "192.0.2.2" if role == "secondary" else "192.0.2.1",
         "remote_ip": "192.0.2.1" if role == "secondary" else "192.0.2.2",
         "local_name": "node-b" if role == "secondary" else "node-a",
         "remote_name": "node-a" if role == "secondary" else "node-b", "disk_uuid": UUID}
    p.update(over)
    return p


def _dev(root, role="secondary", image=True, **over):
    storage_dir = os.path.join(str(root), "fs")
    path = os.path.join(storage_dir, "inst1", "disk0")
    if image:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.truncate(1024 * 1024)
    child = filestorage.FileStorage(("loop", path), [], 1, {"allowed_dirs": [storage_dir]})
    return mirror.MirrorDev(LID, [child], 1, _params(role, **over))


# ----- parameters and construction ----------------------------------------------------

def test_registered_and_built_from_a_disk_dict(root):
    assert storage.get_device_class("mirror") is mirror.MirrorDev
    dev = storage.build_device({"dev_type": "mirror", "logical_id": list(LID), "size": 1,
                                "params": _params(),
                                "children": [{"dev_type": "file", "size": 1,
                                              "logical_id": ["loop", "/srv/x/disk0"]}]})
    assert isinstance(dev, mirror.MirrorDev) and dev.port == 11050 and dev.role == "secondary"
    assert dev.paths.dir == os.path.join(str(root), "var", "run", "corral", "mirror", UUID)
    assert dev.CAN_GROW and dev.SUPPORTS_SYNC


def test_check_params_defaults_and_overrides():
    assert mirror.check_params({}) == mirror.PARAM_DEFAULTS
    got = mirror.check_params({"tcp-retries2": "6", "keepalive-idle": 9, "other": "x"})
    assert got["tcp-retries2"] == 6 and got["keepalive-idle"] == 9


@pytest.mark.parametrize("key,value,match", [
    ("tcp-retries2", 0, "outside 1..15"), ("tcp-retries2", 16, "outside"),
    ("keepalive-count", "many", "must be an integer"), ("connect-timeout", 2.5, "integer"),
    ("keepalive-idle", True, "integer")])
def test_check_params_rejects(key, value, match):
    with pytest.raises(errors.BlockDeviceError, match=match):
        mirror.check_params({key: value})


@pytest.mark.parametrize("lid,params,match", [
    (("a", "b"), _params(), "expected \\(nodeA, nodeB, port\\)"),
    (("uuid-a", "uuid-b", 0), _params(), "Invalid mirror port"),
    (("uuid-a", "uuid-b", "x"), _params(), "Invalid mirror port"),
    (LID, _params(role="tertiary"), "role must be primary or secondary"),
    (LID, _params(local_node="uuid-c"), "neither end"),
    (LID, _params(disk_uuid="../../etc"), "Invalid mirror disk uuid"),
    (LID, _params(disk_uuid=""), "Invalid mirror disk uuid"),
    (LID, _params(**{"tcp-retries2": 99}), "outside")])
def test_constructor_validates(root, lid, params, match):
    with pytest.raises(errors.BlockDeviceError, match=match):
        mirror.MirrorDev(lid, [], 1, params)


def test_one_child_only(root):
    kids = [filestorage.FileStorage(("loop", "/x/%d" % i), [], 1, {}) for i in range(2)]
    with pytest.raises(errors.BlockDeviceError, match="one child"):
        mirror.MirrorDev(LID, kids, 1, _params())


# ----- command lines ------------------------------------------------------------------

def test_qsd_argv(root):
    paths = mirror.mirror_paths(UUID)
    argv = mirror.qsd_argv("/srv/fs/inst1/disk0", paths)
    assert argv[:4] == ["qemu-storage-daemon", "--daemonize", "--pidfile", paths.qsd_pid]
    blockdevs = [json.loads(argv[i + 1]) for i, a in enumerate(argv) if a == "--blockdev"]
    assert blockdevs[0] == {"driver": "file", "node-name": "file0",
                            "filename": "/srv/fs/inst1/disk0", "cache": {"direct": True},
                            "locking": "off"}
    assert blockdevs[1] == {"driver": "raw", "node-name": "disk0", "file": "file0"}
    server = json.loads(argv[argv.index("--nbd-server") + 1])
    assert server == {"addr": {"type": "unix", "path": paths.export_sock}}
    export = json.loads(argv[argv.index("--export") + 1])
    assert export["name"] == "disk" and export["writable"] is True
    assert argv[argv.index("--chardev") + 1] == \
        "socket,id=qmp0,path=%s,server=on,wait=off" % paths.qsd_qmp


def test_listener_argv(root):
    paths = mirror.mirror_paths(UUID)
    tun = mirror.check_params({"keepalive-idle": 7})
    argv = mirror.listener_argv(paths, "192.0.2.2", "192.0.2.1", 11050, "node-a", tun)
    assert argv[:6] == ["socat", "-d", "-d", "-b", str(mirror.SOCAT_BUFFER),
                        argv[5]]
    addr, opts = argv[5].split(",", 1)[0], argv[5].split(",")[1:]
    assert addr == "OPENSSL-LISTEN:11050"
    cert = os.path.join(str(root), "var", "lib", "corral", "server.pem")
    ca = os.path.join(str(root), "var", "lib", "corral", "cluster-ca.pem")
    for opt in ("pf=ip4", "bind=192.0.2.2", "range=192.0.2.1/32", "fork", "reuseaddr",
                "cert=" + cert, "cafile=" + ca, "verify=1", "commonname=node-a", "keepalive",
                "keepidle=7", "keepintvl=2", "keepcnt=3", "nodelay"):
        assert opt in opts, opt
    assert argv[6] == "UNIX-CONNECT:" + paths.export_sock


def test_client_argv_and_ipv6(root):
    paths = mirror.mirror_paths(UUID)
    tun = mirror.check_params({"connect-timeout": 9})
    argv = mirror.client_argv(paths, "192.0.2.2", 11050, "node-b", tun)
    assert argv[5] == "UNIX-LISTEN:%s,fork,unlink-early,mode=600" % paths.client_sock
    opts = argv[6].split(",")
    assert opts[0] == "OPENSSL:192.0.2.2:11050"
    assert {"pf=ip4", "connect-timeout=9", "verify=1", "commonname=node-b"} <= set(opts)
    v6 = mirror.client_argv(paths, "2001:db8::2", 11050, "node-b", tun)
    assert v6[6].startswith("OPENSSL:[2001:db8::2]:11050,pf=ip6,")
    lst = mirror.listener_argv(paths, "2001:db8::2", "2001:db8::1", 11050, "node-a", tun)
    assert "bind=[2001:db8::2]" in lst[5] and "range=[2001:db8::1]/128" in lst[5]


def test_sync_argv_and_uri():
    assert mirror.nbd_uri("/run/m/c.sock") == "nbd+unix:///disk?socket=/run/m/c.sock"
    assert mirror.nbd_uri("/run/a b") == "nbd+unix:///disk?socket=/run/a%20b"
    assert mirror.sync_argv("/img", "/s") == ["qemu-img", "convert", "-p", "-n", "-W", "-f",
                                              "raw", "-O", "raw", "/img",
                                              "nbd+unix:///disk?socket=/s"]


def test_parse_progress():
    assert mirror_proc.parse_progress("") is None
    assert mirror_proc.parse_progress("    (0.00/100%)\r    (12.50/100%)\r") == 12.5
    assert mirror_proc.parse_progress("    (100.00/100%)\r\n") == 100.0


def test_socket_paths_must_fit(root, monkeypatch):
    monkeypatch.setenv("CORRAL_ROOT", "/" + "x" * 80)
    dev = _dev(root)
    with pytest.raises(errors.BlockDeviceError, match="longer than a unix socket allows"):
        dev.assemble()


def test_unsafe_image_path_refused(root):
    with pytest.raises(errors.BlockDeviceError, match="characters socat"):
        mirror._check_path("/srv/a,b", "image")


# ----- tcp_retries2 and the marker --------------------------------------------------

def test_limit_tcp_retries2(tmp_path):
    f = tmp_path / "tcp_retries2"
    f.write_text("15\n")
    assert mirror_proc.limit_tcp_retries2(4, str(f)) == 15
    assert f.read_text().strip() == "4"
    assert mirror_proc.limit_tcp_retries2(4, str(f)) is None
    assert mirror_proc.limit_tcp_retries2(8, str(f)) is None  # never raised
    assert f.read_text().strip() == "4"
    assert mirror_proc.limit_tcp_retries2(4, str(tmp_path / "missing")) is None


def test_marker_and_status(root, monkeypatch):
    dev = _dev(root)
    degraded = base.SyncStatus(is_degraded=True, ldisk_status=base.LDS_SYNC)
    assert dev.get_sync_status() == degraded
    dev.set_consistent(True)
    assert os.path.exists(dev.paths.marker)
    assert dev.get_sync_status() == base.SyncStatus()
    assert dev.combined_sync_status() == base.SyncStatus()
    # A marker from before a reboot of this node does not count.
    monkeypatch.setattr(mirror, "boot_id", lambda: "another-boot")
    assert dev.get_sync_status() == degraded
    monkeypatch.undo()
    dev.set_consistent(False)
    dev.set_consistent(False)  # idempotent
    assert not os.path.exists(dev.paths.marker)
    assert dev.get_sync_status() == degraded
    with open(dev.paths.marker, "w") as fh:
        fh.write("garbage")
    assert not dev.is_consistent()


def test_primary_status_is_always_in_sync(root):
    assert _dev(root, role="primary").get_sync_status() == base.SyncStatus()


# ----- processes (faked) ------------------------------------------------------------

class FakeProcs:
    """Stands in for mirror_proc's start/stop/lookup: records calls, tracks 'running'."""

    def __init__(self, monkeypatch, fail=None):
        self.running, self.calls, self.fail = set(), [], fail
        monkeypatch.setattr(mirror_proc, "live_pid", self.live_pid)
        monkeypatch.setattr(mirror_proc, "stop_proc", self.stop)
        monkeypatch.setattr(mirror_proc, "launch_qsd", self.start)
        monkeypatch.setattr(mirror_proc, "spawn_socat", self.start)
        monkeypatch.setattr(mirror_proc, "limit_tcp_retries2",
                            lambda n: self.calls.append(("retries", n)))

    def live_pid(self, pid_file, token):
        return 42 if os.path.basename(pid_file)[:-4] in self.running else 0

    def stop(self, proc, token):
        self.calls.append(("stop", proc.name))
        self.running.discard(proc.name)

    def start(self, argv, proc):
        if proc.name == self.fail:
            raise errors.BlockDeviceError("%s would not start" % proc.name)
        self.calls.append(("start", proc.name, argv[0]))
        self.running.add(proc.name)
        return 42


def test_secondary_assemble_attach_shutdown(root, monkeypatch):
    fake = FakeProcs(monkeypatch)
    dev = _dev(root, **{"tcp-retries2": 5})
    dev.set_consistent(True)
    assert dev.attach() is False
    dev.assemble()
    assert [c for c in fake.calls if c[0] != "stop"] == [
        ("retries", 5), ("start", "qsd", "qemu-storage-daemon"), ("start", "listen", "socat")]
    assert dev.attach() is True and dev.dev_path == dev.children[0].dev_path
    assert not dev.is_consistent()  # (re)started: a resync must follow
    dev.set_consistent(True)
    fake.calls.clear()
    dev.assemble()  # all running: nothing happens, the marker stays
    assert fake.calls == [] and dev.is_consistent()
    fake.running.discard("listen")  # the listener died
    assert dev.attach() is False
    dev.assemble()
    assert ("start", "listen", "socat") in fake.calls and ("start", "qsd",
                                                            "qemu-storage-daemon") not in fake.calls
    assert not dev.is_consistent()
    fake.calls.clear()
    dev.shutdown()
    assert fake.calls == [("stop", "client"), ("stop", "listen"), ("stop", "qsd")]
    assert dev.attach() is False


def test_secondary_assemble_failure_stops_what_it_started(root, monkeypatch):
    fake = FakeProcs(monkeypatch, fail="listen")
    dev = _dev(root)
    with pytest.raises(errors.BlockDeviceError, match="listen would not start"):
        dev.assemble()
    assert fake.running == set()
    assert fake.calls[-1] == ("stop", "qsd")


def test_primary_assemble_starts_the_tunnel_only(root, monkeypatch):
    fake = FakeProcs(monkeypatch)
    dev = _dev(root, role="primary")
    dev.set_consistent(True)
    dev.assemble()
    assert fake.running == {"client"}
    assert dev.is_consistent()  # the primary never touches the marker
    assert dev.client_socket() == os.path.join(dev.paths.dir, "client.sock")


def test_assemble_needs_the_image_and_the_peer(root, monkeypatch):
    FakeProcs(monkeypatch)
    with pytest.raises(errors.BlockDeviceError, match="local image .* is missing"):
        _dev(root, image=False).assemble()
    with pytest.raises(errors.BlockDeviceError, match="remote_ip is missing"):
        _dev(root, remote_ip="").assemble()
    with pytest.raises(errors.BlockDeviceError, match="Invalid remote_ip"):
        _dev(root, remote_ip="10.0.0.300").assemble()
    with pytest.raises(errors.BlockDeviceError, match="Invalid peer node name"):
        _dev(root, remote_name="a,b").assemble()


def test_create_makes_a_missing_image_and_cleans_up(root, monkeypatch):
    dev = _dev(root, image=False)
    child = dev.children[0]
    made = mirror.MirrorDev.create(LID, [child], 1, dev.params)
    assert os.path.getsize(child.path) == 1024 * 1024 and made.dev_path is None
    os.unlink(child.path)
    monkeypatch.setenv("CORRAL_ROOT", "/" + "y" * 90)  # socket paths too long
    with pytest.raises(errors.BlockDeviceError, match="longer than a unix socket"):
        mirror.MirrorDev.create(LID, [child], 1, dev.params)
    assert not os.path.exists(child.path)


def test_remove_drops_the_run_dir(root, monkeypatch):
    FakeProcs(monkeypatch)
    dev = _dev(root)
    dev.assemble()
    dev.set_consistent(True)
    with open(dev.paths.qsd_log, "w") as fh:
        fh.write("log")
    dev.remove()
    assert not os.path.exists(dev.paths.dir)
    dev.remove()  # idempotent
    assert os.path.exists(dev.children[0].path)  # the backend removes the child


def test_sync_offline_preconditions(root, monkeypatch):
    FakeProcs(monkeypatch)
    with pytest.raises(errors.BlockDeviceError, match="runs on the primary"):
        _dev(root).sync_offline()
    with pytest.raises(errors.BlockDeviceError, match="tunnel .* is not running"):
        _dev(root, role="primary").sync_offline()


def test_grow_backing_store_grows_the_image(root, monkeypatch):
    FakeProcs(monkeypatch)
    dev = _dev(root)
    dev.grow(2, True, True)
    assert os.path.getsize(dev.children[0].path) == 1024 * 1024
    dev.grow(2, False, True)
    assert os.path.getsize(dev.children[0].path) == 3 * 1024 * 1024
    dev.grow(2, False, False)  # no export running here: only the recorded size
    assert dev.size == 3


def test_check_environment(monkeypatch):
    monkeypatch.setattr(base, "missing_tools", lambda tools: [])
    assert mirror.MirrorDev.check_environment() is None
    monkeypatch.setattr(base, "missing_tools", lambda tools: ["socat", "qemu-img"])
    msg = mirror.MirrorDev.check_environment()
    assert "socat, qemu-img" in msg and "qemu-utils, socat" in msg


# ----- process helpers on real (harmless) processes ------------------------------------

def test_live_pid_and_stop_proc(tmp_path):
    token = str(tmp_path) + "/"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", token],
                             start_new_session=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             start_new_session=True)
    try:
        pid_file = str(tmp_path / "p.pid")
        sock = tmp_path / "s.sock"
        sock.write_text("")
        proc = mirror_proc.Proc("client", pid_file, str(tmp_path / "p.log"), (str(sock),), True)
        with open(pid_file, "w") as fh:
            fh.write("%d\n" % other.pid)
        assert mirror_proc.live_pid(pid_file, token) == 0  # not ours: never signalled
        mirror_proc.stop_proc(proc, token)
        assert other.poll() is None and not os.path.exists(pid_file)
        with open(pid_file, "w") as fh:
            fh.write("%d\n" % child.pid)
        assert mirror_proc.live_pid(pid_file, token) == child.pid
        mirror_proc.stop_proc(proc, token)
        assert child.wait(10) is not None
        assert not os.path.exists(pid_file) and not sock.exists()
        mirror_proc.stop_proc(proc, token)  # idempotent
    finally:
        for p in (child, other):
            p.kill()
            p.wait()


def test_run_with_progress(tmp_path):
    seen = []
    script = 'printf "    (0.00/100%%)\\r    (50.00/100%%)\\r    (100.00/100%%)\\r\\n"'
    mirror_proc.run_with_progress(["sh", "-c", script], seen.append)
    assert seen and seen[-1] == 100.0 and seen == sorted(seen)
    with pytest.raises(errors.BlockDeviceError, match="Could not open 'nbd'"):
        mirror_proc.run_with_progress(["sh", "-c", "echo \"Could not open 'nbd'\"; exit 1"],
                                      None)


def test_spawn_socat_reports_a_failed_start(tmp_path):
    proc = mirror_proc.Proc("listen", str(tmp_path / "l.pid"), str(tmp_path / "l.log"), (),
                            True)
    with pytest.raises(errors.BlockDeviceError, match="exited at start"):
        mirror_proc.spawn_socat(["socat", "-d", "-d", "NO-SUCH-ADDRESS:1", "STDIO"], proc)
    assert not os.path.exists(proc.pid_file)
