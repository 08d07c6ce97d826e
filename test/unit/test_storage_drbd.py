"""DRBD8Dev: every step's argv against a recorded /proc/drbd, and this machine's
missing module reported clearly."""

import os

import pytest

from corral import errors, storage
from corral.storage import base, drbd
from corral.utils.process import RunResult

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "storage")
SECRET = "d9a5f0c2b9e14c8e8f0a2b3c4d5e6f708192a3b4"
LID = ("node1", "node2", 11000, 0, 5, SECRET)
PARAMS = {"local_node": "node1", "local_ip": "192.0.2.1", "remote_ip": "192.0.2.2"}
DATA_LV, META_LV = "/dev/xenvg/0b7a.disk0_data", "/dev/xenvg/0b7a.disk0_meta"
PROC_FREE = "version: 8.4.11 (api:1/proto:86-101)\nsrcversion: X\n 0: cs:Unconfigured\n"


def load(name):
    with open(os.path.join(DATA, name)) as fh:
        return fh.read()


class FakeChild(base.BlockDev):
    """An LV stand-in that is always attached at a fixed path."""

    DEV_TYPE = "fake"
    CAN_GROW = True

    def __init__(self, path, size):
        super().__init__(("fake", path), [], size, {})
        self.path, self.grown, self.info = path, [], None

    @classmethod
    def create(cls, unique_id, children, size, params, excl_stor=False):
        return cls(unique_id[1], size)

    def remove(self):
        pass

    def attach(self):
        self.attached, self.dev_path = True, self.path
        return True

    def assemble(self):
        self.attach()

    def shutdown(self):
        pass

    def grow(self, amount, dryrun, backingstore):
        self.grown.append((amount, dryrun, backingstore))

    def set_info(self, text):
        self.info = text


class FakeRunner:
    def __init__(self, answers=None):
        self.calls, self.answers = [], answers or {}

    def __call__(self, argv, **kwargs):
        self.calls.append(list(argv))
        rc, out, err = self.answers.get(tuple(argv[:2]), (0, "", ""))
        return RunResult(list(argv), rc, None, out, err)


@pytest.fixture
def node(tmp_path, monkeypatch):
    """A fake /proc/drbd (8.4 by default) and a recording runner; tools 'present'."""
    proc = tmp_path / "proc_drbd"
    proc.write_text(PROC_FREE)
    monkeypatch.setattr(drbd, "PROC_DRBD", str(proc))
    monkeypatch.setattr(base, "missing_tools", lambda tools: [])
    runner = FakeRunner()
    monkeypatch.setattr(drbd.DRBD8Dev, "runner", runner)
    return {"proc": proc, "runner": runner}


def _dev(params=PARAMS, size=1024):
    children = [FakeChild(DATA_LV, size), FakeChild(META_LV, 128)]
    return storage.get_device_class("drbd")(LID, children, size, params)


def test_minor_from_local_node():
    assert _dev().minor == 0
    assert _dev(dict(PARAMS, local_node="node2")).minor == 5
    assert _dev({"local_minor": 7}).minor == 7
    with pytest.raises(errors.BlockDeviceError, match="neither end"):
        _dev({"local_node": "node3"})
    with pytest.raises(errors.BlockDeviceError, match="expected \\(nodeA"):
        drbd.DRBD8Dev(("a", "b"), [], 1, PARAMS)


def test_create_writes_metadata(node):
    dev = drbd.DRBD8Dev.create(LID, [FakeChild(DATA_LV, 1024), FakeChild(META_LV, 128)], 1024,
                               PARAMS)
    assert node["runner"].calls == [
        ["drbdmeta", "--force", "/dev/drbd0", "v08", META_LV, "flex-external", "create-md"]]
    assert not dev.attached


def test_create_refuses_used_minor_and_small_meta(node):
    node["proc"].write_text(load("proc_drbd_84_connected.txt"))
    with pytest.raises(errors.BlockDeviceError, match="minor 0 is already in use"):
        drbd.DRBD8Dev.create(LID, [FakeChild(DATA_LV, 1), FakeChild(META_LV, 128)], 1, PARAMS)
    with pytest.raises(errors.BlockDeviceError, match="meta device too small"):
        drbd.DRBD8Dev.create(LID, [FakeChild(DATA_LV, 1), FakeChild(META_LV, 64)], 1, PARAMS)
    assert node["runner"].calls == []


def test_assemble_84_full_sequence(node):
    dev = _dev()
    dev.assemble()
    assert node["runner"].calls == [
        ["drbdsetup", "new-resource", "resource0"],
        ["drbdsetup", "new-minor", "resource0", "0", "0"],
        ["drbdmeta", "/dev/drbd0", "v08", META_LV, "flex-external", "apply-al"],
        ["drbdsetup", "attach", "0", DATA_LV, META_LV, "flexible", "--on-io-error=detach",
         "--size", "1024m"],
        ["drbdsetup", "disk-options", "0", "--resync-rate", "61440"],
        ["drbdsetup", "connect", "resource0", "ipv4:192.0.2.1:11000", "ipv4:192.0.2.2:11000",
         "--protocol", "C", "--after-sb-0pri", "discard-zero-changes", "--after-sb-1pri",
         "consensus", "--cram-hmac-alg", "md5", "--shared-secret", SECRET]]
    assert dev.dev_path == "/dev/drbd0"


def test_assemble_83_sequence(node):
    node["proc"].write_text("version: 8.3.11 (api:88/proto:86-96)\n 0: cs:Unconfigured\n")
    _dev().assemble()
    assert [c[:3] for c in node["runner"].calls] == [
        ["drbdsetup", "/dev/drbd0", "disk"], ["drbdsetup", "/dev/drbd0", "syncer"],
        ["drbdsetup", "/dev/drbd0", "net"]]


def test_assemble_without_peer_stays_standalone(node):
    _dev({"local_node": "node1"}).assemble()
    assert "connect" not in [c[1] for c in node["runner"].calls]


def test_assemble_failure_takes_minor_down(node):
    node["runner"].answers[("drbdsetup", "attach")] = (10, "", "0: Failure: (114) Lower "
                                                       "device is already claimed")
    with pytest.raises(errors.BlockDeviceError, match="already claimed"):
        _dev().assemble()
    assert node["runner"].calls[-1] == ["drbdsetup", "down", "resource0"]


def test_assemble_already_configured_is_idempotent(node):
    node["proc"].write_text(load("proc_drbd_84_connected.txt"))
    node["runner"].answers[("drbdsetup", "show")] = (0, load("drbdsetup_show_84.txt"), "")
    dev = drbd.DRBD8Dev(LID, [FakeChild("/dev/xenvg/0b7a.disk0_data", 1024),
                              FakeChild("/dev/xenvg/0b7a.disk0_meta", 128)], 1024, PARAMS)
    dev.assemble()
    assert node["runner"].calls == [["drbdsetup", "show", "0"]]
    assert dev.attach() and dev.dev_path == "/dev/drbd0"


def test_assemble_reconnects_standalone(node):
    node["proc"].write_text(load("proc_drbd_84_mixed.txt"))
    node["runner"].answers[("drbdsetup", "show")] = (
        0, load("drbdsetup_show_84_standalone.txt"), "")
    dev = drbd.DRBD8Dev(LID, [FakeChild("/dev/xenvg/0b7a.disk0_data", 1024),
                              FakeChild("/dev/xenvg/0b7a.disk0_meta", 128)], 1024, PARAMS)
    dev.assemble()
    assert [c[1] for c in node["runner"].calls] == ["show", "connect"]


def test_assemble_replaces_mismatched_minor(node):
    node["proc"].write_text(load("proc_drbd_84_connected.txt"))
    node["runner"].answers[("drbdsetup", "show")] = (0, load("drbdsetup_show_84.txt"), "")
    other = drbd.DRBD8Dev(LID, [FakeChild("/dev/xenvg/other_data", 1),
                                FakeChild("/dev/xenvg/other_meta", 128)], 1, PARAMS)
    assert not other.attach()
    node["runner"].calls.clear()
    other.assemble()
    assert node["runner"].calls[:2] == [["drbdsetup", "show", "0"],
                                        ["drbdsetup", "down", "resource0"]]
    assert node["runner"].calls[2] == ["drbdsetup", "new-resource", "resource0"]


def test_roles_net_sync_steps(node):
    dev = _dev()
    dev.open(force=True)
    dev.open()
    dev.close()
    dev.disconnect_net()
    dev.attach_net(multimaster=True)
    dev.pause_resume_sync(True)
    dev.pause_resume_sync(False)
    dev.set_sync_params({"dynamic-resync": True})
    calls = node["runner"].calls
    assert calls[0] == ["drbdsetup", "primary", "0", "--force"]
    assert calls[1] == ["drbdsetup", "primary", "0"]
    assert calls[2] == ["drbdsetup", "secondary", "0"]
    assert calls[3] == ["drbdsetup", "disconnect", "ipv4:192.0.2.1:11000",
                        "ipv4:192.0.2.2:11000"]
    assert calls[4][:2] == ["drbdsetup", "connect"] and "--allow-two-primaries" in calls[4]
    assert calls[5] == ["drbdsetup", "pause-sync", "0"]
    assert calls[6] == ["drbdsetup", "resume-sync", "0"]
    assert calls[7][:4] == ["drbdsetup", "disk-options", "0", "--c-plan-ahead"]


def test_shutdown_and_remove(node):
    dev = _dev()
    dev.shutdown()  # minor free: nothing to run
    assert node["runner"].calls == []
    node["proc"].write_text(load("proc_drbd_84_connected.txt"))
    dev.remove()
    assert node["runner"].calls == [["drbdsetup", "down", "resource0"]]


def test_grow(node):
    dev = _dev()
    dev.grow(512, dryrun=True, backingstore=True)
    dev.grow(512, dryrun=False, backingstore=True)
    assert dev.children[0].grown == [(512, True, True), (512, False, True)]
    assert dev.children[1].grown == []
    dev.grow(512, dryrun=True, backingstore=False)
    assert node["runner"].calls == []
    dev.grow(512, dryrun=False, backingstore=False)
    assert node["runner"].calls == [["drbdsetup", "resize", "0", "--size", "1536m"]]


def test_sync_status_from_proc(node):
    node["proc"].write_text(load("proc_drbd_84_syncing.txt"))
    st = _dev().get_sync_status()
    assert st == storage.SyncStatus(68.5, 67, True, "syncing")
    node["proc"].write_text(PROC_FREE)
    assert _dev().get_sync_status() == storage.SyncStatus(None, None, True, "faulty")
    dev = _dev()
    dev.set_info("inst1")
    assert [c.info for c in dev.children] == ["inst1", "inst1"]


def test_drbd9_kernel_refused(node):
    node["proc"].write_text(load("proc_drbd_9.txt"))
    msg = drbd.DRBD8Dev.check_environment()
    assert "Corral needs the DRBD 8.x kernel module" in msg
    with pytest.raises(errors.BlockDeviceError, match="DRBD 9.1.16 kernel module loaded"):
        _dev().assemble()
    assert node["runner"].calls == []


def test_missing_tools_reported(node, monkeypatch):
    monkeypatch.setattr(base, "missing_tools", lambda tools: ["drbdsetup"])
    assert drbd.DRBD8Dev.check_environment() == \
        "DRBD tools not found (drbdsetup); install the drbd-utils package"


def test_this_machine_has_no_module():
    """Real /proc: no DRBD module here (PLATFORM.md §5)."""
    if os.path.exists(drbd.PROC_DRBD):
        pytest.skip("this machine has a DRBD module")
    expected = ("DRBD kernel module not loaded (/proc/drbd missing); install drbd-utils and "
                "load the drbd 8.x module")
    assert drbd.DRBD8Dev.check_environment() == expected
    dev = _dev()
    with pytest.raises(errors.BlockDeviceError) as exc:
        dev.assemble()
    assert str(exc.value) == expected
    with pytest.raises(errors.BlockDeviceError, match="not loaded"):
        drbd.DRBD8Dev.create(LID, dev.children, 1024, PARAMS)
    with pytest.raises(errors.BlockDeviceError, match="not loaded"):
        dev.open()
    assert dev.attach() is False
    dev.shutdown()  # nothing can be up: no-op
    assert drbd.used_minors() == []
