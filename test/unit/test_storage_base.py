"""The storage interface: registry, environment checks, flags, import boundaries."""

import ast
import os

import pytest

from corral import errors, storage
from corral.storage import base, drbd, lvm

LIB = os.path.join(os.path.dirname(__file__), "..", "..", "lib", "storage")


def test_registry_has_every_type():
    expected = {"file", "sharedfile", "blockdev", "plain", "drbd", "ext", "rbd", "mirror"}
    assert storage.DEV_TYPES == expected
    for t in expected:
        cls = storage.get_device_class(t)
        assert issubclass(cls, base.BlockDev)
        assert cls.DEV_TYPE == t


def test_unknown_type_is_a_block_device_error():
    with pytest.raises(errors.BlockDeviceError, match="Unknown storage type 'gluster'"):
        storage.get_device_class("gluster")


def test_every_driver_implements_the_core():
    for t in storage.DEV_TYPES:
        cls = storage.get_device_class(t)
        assert not getattr(cls, "__abstractmethods__", None), (t, cls.__abstractmethods__)


def test_base_cannot_be_instantiated_without_core():
    class Half(base.BlockDev):
        def attach(self):
            return False

    with pytest.raises(TypeError):
        Half(("x",), [], 1, {})


def test_missing_abilities_raise_block_device_error_not_notimplemented():
    dev = storage.get_device_class("blockdev")(("manual", "/dev/nonexistent"), [], 10, {})
    assert not dev.CAN_GROW and not dev.CAN_SNAPSHOT
    with pytest.raises(errors.BlockDeviceError, match="cannot be grown"):
        dev.grow(10, False, True)
    with pytest.raises(errors.BlockDeviceError, match="do not support snapshots"):
        dev.snapshot()
    with pytest.raises(errors.BlockDeviceError, match="cannot be renamed"):
        dev.rename(("manual", "/dev/other"))


def test_verify_environment_on_this_machine(monkeypatch):
    # This machine has neither device-mapper nor DRBD (PLATFORM.md §1, §5);
    # the checks must say so while the file drivers pass.
    assert storage.verify_environment(["file", "sharedfile", "blockdev"]) == []
    msgs = storage.verify_environment(["drbd"])
    if os.path.exists(drbd.PROC_DRBD):
        pytest.skip("this machine has a DRBD module")
    assert any(m.startswith("drbd: DRBD kernel module not loaded (/proc/drbd missing); "
                            "install drbd-utils and load the drbd 8.x module") for m in msgs)
    # drbd implies its LVM children are checked too
    assert any(m.startswith("plain: ") for m in msgs) == bool(lvm.LogicalVolume
                                                               .check_environment())


def test_verify_environment_reports_missing_device_mapper(monkeypatch, tmp_path):
    monkeypatch.setattr(lvm, "DM_CONTROL", str(tmp_path / "control"))
    msgs = storage.verify_environment(["plain"])
    assert len(msgs) == 1
    assert ("device-mapper not available (%s missing)" % (tmp_path / "control")) in msgs[0] \
        or "lvm2 tools not found" in msgs[0]


def test_verify_environment_reports_missing_lvm_tools(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(base, "missing_tools", lambda tools: list(tools))
    msg = lvm.LogicalVolume.check_environment()
    assert msg.startswith("lvm2 tools not found (lvcreate")
    assert msg.endswith("install the lvm2 package")


def test_combine_sync_status_worst_wins():
    s = base.combine_sync_status([
        base.SyncStatus(),
        base.SyncStatus(50.0, 30, True, base.LDS_SYNC),
        base.SyncStatus(20.0, 10, False, base.LDS_UNKNOWN),
    ])
    assert s == base.SyncStatus(20.0, 30, True, base.LDS_SYNC)
    assert base.combine_sync_status([]) == base.SyncStatus()
    assert s.to_dict()["ldisk_status"] == "syncing"


def test_build_and_find_device(tmp_path):
    path = str(tmp_path / "inst" / "disk0")
    dev = storage.build_device({"dev_type": "file", "logical_id": ["loop", path], "size": 4,
                                "params": {"allowed_dirs": [str(tmp_path)]}})
    assert isinstance(dev, storage.get_device_class("file"))
    assert storage.find_device("file", ("loop", path), [], 4, {}) is None
    dev.create(dev.unique_id, [], 4, dev.params)
    found = storage.find_device("file", ("loop", path), [], 4, {})
    assert found is not None and found.dev_path == path


def _imports(path):
    tree = ast.parse(open(path).read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(node.module + "." + a.name for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_import_boundaries():
    drivers = {"filestorage", "blockdev", "lvm", "drbd", "extstorage", "rbd", "mirror"}
    helpers = {"drbd": {"drbd_cmdgen", "drbd_info"}, "mirror": {"mirror_proc"}}
    for fname in os.listdir(LIB):
        if not fname.endswith(".py") or fname == "__init__.py":
            continue
        mod = fname[:-3]
        imported = _imports(os.path.join(LIB, fname))
        for bad in ("corral.cmdlib", "corral.config", "corral.jqueue"):
            assert not any(i.startswith(bad) for i in imported), (fname, bad)
        for other in drivers - {mod}:
            assert "corral.storage." + other not in imported, (fname, other)
        allowed = {"base"} | helpers.get(mod, set())
        used = {i.rsplit(".", 1)[1] for i in imported if i.startswith("corral.storage.")}
        assert used <= allowed, (fname, used)


def test_modules_stay_small():
    for fname in os.listdir(LIB):
        if fname.endswith(".py"):
            with open(os.path.join(LIB, fname)) as fh:
                assert len(fh.readlines()) < 600, fname


def test_list_storage_units(tmp_path, monkeypatch):
    rows = storage.list_storage_units("file", [str(tmp_path)])
    assert rows[0]["name"] == str(tmp_path) and set(rows[0]) == {"name", "size", "used",
                                                                  "free", "allocatable"}
    monkeypatch.setattr(lvm.LogicalVolume, "runner", lambda argv, **kw: base.process.RunResult(
        argv, 0, None, "  xenvg|100.00|40.00|1|wz--n-\n", ""))
    assert storage.list_storage_units("lvm-vg") == [
        {"name": "xenvg", "size": 100, "used": 60, "free": 40, "allocatable": True}]
    with pytest.raises(errors.BlockDeviceError, match="Unknown storage unit type"):
        storage.list_storage_units("gluster")
