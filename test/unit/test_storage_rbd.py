"""RBD: command generation, showmapped parsing, flows with a fake runner."""

import json
import os

import pytest

from corral import errors, storage
from corral.storage import base, rbd
from corral.utils.process import RunResult

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "storage")


def load(name):
    with open(os.path.join(DATA, name)) as fh:
        return fh.read()


class FakeRbd:
    """A tiny in-memory rbd: images and mappings, answering the generated argv."""

    def __init__(self):
        self.calls, self.images, self.mapped = [], {}, {}

    def __call__(self, argv, **kwargs):
        self.calls.append(list(argv))
        op = argv[1]
        pool = argv[argv.index("-p") + 1] if "-p" in argv else None
        if op == "create":
            self.images[(pool, argv[4])] = int(argv[6])
        elif op == "map":
            if (pool, argv[4]) not in self.images:
                return RunResult(list(argv), 2, None, "", "rbd: map failed: No such file")
            self.mapped[(pool, argv[4])] = "/dev/rbd%d" % len(self.mapped)
        elif op == "showmapped":
            out = [{"id": str(i), "pool": p, "namespace": "", "name": n, "snap": "-",
                    "device": d} for i, ((p, n), d) in enumerate(self.mapped.items())]
            return RunResult(list(argv), 0, None, json.dumps(out), "")
        elif op == "unmap":
            self.mapped = {k: v for k, v in self.mapped.items() if v != argv[2]}
        elif op == "rm":
            if self.images.pop((pool, argv[4]), None) is None:
                return RunResult(list(argv), 2, None, "",
                                 "rbd: delete error: (2) No such file or directory")
        elif op == "resize":
            self.images[(pool, argv[4])] = int(argv[6])
        return RunResult(list(argv), 0, None, "", "")


@pytest.fixture
def fake(monkeypatch, tmp_path):
    runner = FakeRbd()
    monkeypatch.setattr(rbd.RADOSBlockDevice, "runner", runner)
    monkeypatch.setattr(base, "missing_tools", lambda tools: [])
    monkeypatch.setattr(rbd, "RBD_SYSFS", str(tmp_path))
    return runner


def test_commands():
    assert rbd.create_cmd("rbd", "img", 1024) == ["rbd", "create", "-p", "rbd", "img",
                                                  "--size", "1024"]
    assert rbd.map_cmd("rbd", "img") == ["rbd", "map", "-p", "rbd", "img"]
    assert rbd.showmapped_cmd("rbd") == ["rbd", "showmapped", "-p", "rbd", "--format", "json"]
    assert rbd.unmap_cmd("/dev/rbd0") == ["rbd", "unmap", "/dev/rbd0"]
    assert rbd.remove_cmd("rbd", "img") == ["rbd", "rm", "-p", "rbd", "img"]
    assert rbd.resize_cmd("rbd", "img", 2048) == ["rbd", "resize", "-p", "rbd", "img",
                                                  "--size", "2048"]
    assert rbd.snap_create_cmd("rbd", "img", "s1") == ["rbd", "snap", "create", "-p", "rbd",
                                                       "--snap", "s1", "img"]


def test_parse_showmapped_both_shapes():
    text = load("rbd_showmapped_list.json")
    assert len(rbd.parse_showmapped(text)) == 4
    assert rbd.find_mapping(text, "rbd", "disk-b") == "/dev/rbd1"  # snapshot mapping ignored
    assert rbd.find_mapping(text, "other", "disk-a") == "/dev/rbd3"
    assert rbd.find_mapping(text, "rbd", "disk-c") is None
    old = load("rbd_showmapped_dict.json")
    assert rbd.find_mapping(old, "rbd", "disk-a") == "/dev/rbd0"
    assert rbd.parse_showmapped("") == []
    with pytest.raises(errors.BlockDeviceError, match="showmapped"):
        rbd.parse_showmapped("{bad")


def test_double_mapping_is_an_error():
    text = json.dumps([{"pool": "rbd", "name": "a", "snap": "-", "device": "/dev/rbd0"},
                       {"pool": "rbd", "name": "a", "snap": "-", "device": "/dev/rbd1"}])
    with pytest.raises(errors.BlockDeviceError, match="mapped more than once"):
        rbd.find_mapping(text, "rbd", "a")


def test_lifecycle(fake):
    cls = storage.get_device_class("rbd")
    dev = cls.create(("rbd", "img1"), [], 1024, {"pool": "pool1"})
    assert fake.calls[0] == ["rbd", "create", "-p", "pool1", "img1", "--size", "1024"]
    assert not dev.attach()
    dev.assemble()
    assert ["rbd", "map", "-p", "pool1", "img1"] in fake.calls
    assert dev.dev_path == "/dev/rbd0"
    n = len(fake.calls)
    dev.assemble()  # already mapped: no second map
    assert [c[1] for c in fake.calls[n:]] == ["showmapped"]
    dev.grow(512, dryrun=True, backingstore=True)
    dev.grow(512, dryrun=False, backingstore=True)
    assert fake.calls[-1] == ["rbd", "resize", "-p", "pool1", "img1", "--size", "1536"]
    assert dev.snapshot("s1") == ("rbd", "img1@s1")
    dev.shutdown()
    assert ["rbd", "unmap", "/dev/rbd0"] in fake.calls and dev.dev_path is None
    dev.assemble()
    dev.remove()
    assert fake.calls[-2][:2] == ["rbd", "unmap"]
    assert fake.calls[-1] == ["rbd", "rm", "-p", "pool1", "img1"]
    dev.remove()  # gone already: fine


def test_userspace_access_needs_no_mapping(fake):
    dev = rbd.RADOSBlockDevice.create(("rbd", "img"), [], 10, {"access": "userspace"})
    dev.assemble()
    assert [c[1] for c in fake.calls] == ["create"]


def test_map_failure(fake):
    dev = rbd.RADOSBlockDevice(("rbd", "ghost"), [], 10, {})
    with pytest.raises(errors.BlockDeviceError, match="Mapping RBD image ghost failed"):
        dev.assemble()


def test_missing_rbd_reported(monkeypatch, tmp_path):
    monkeypatch.setattr(base, "missing_tools", lambda tools: list(tools))
    msg = "rbd command not found; install the ceph-common package"
    assert rbd.RADOSBlockDevice.check_environment() == msg
    with pytest.raises(errors.BlockDeviceError, match=msg):
        rbd.RADOSBlockDevice.create(("rbd", "img"), [], 10, {})
    monkeypatch.setattr(base, "missing_tools", lambda tools: [])
    monkeypatch.setattr(rbd, "RBD_SYSFS", str(tmp_path / "nope"))
    assert "rbd kernel module not loaded" in rbd.RADOSBlockDevice.check_environment()
    assert rbd.RADOSBlockDevice.check_environment({"access": "userspace"}) is None


def test_bad_names():
    with pytest.raises(errors.BlockDeviceError, match="image name"):
        rbd.RADOSBlockDevice(("rbd", "a/b"), [], 1, {})
    with pytest.raises(errors.BlockDeviceError, match="pool name"):
        rbd.RADOSBlockDevice(("rbd", "a"), [], 1, {"pool": "-x"})
