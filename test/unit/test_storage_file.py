"""file / sharedfile drivers, end to end in temporary directories."""

import io
import os

import pytest

from corral import errors, pathutils, storage
from corral.storage import filestorage

MIB = 1024 * 1024


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A CORRAL_ROOT (for file-storage-paths) and a storage dir inside tmp_path."""
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setenv("CORRAL_ROOT", str(root))
    sdir = tmp_path / "file-storage"
    sdir.mkdir()
    return {"root": root, "sdir": sdir, "params": {"allowed_dirs": [str(sdir)]}}


def _new(env, name="inst1.example.com/disk0", size=8, dev_type="file"):
    cls = storage.get_device_class(dev_type)
    path = str(env["sdir"] / name)
    return cls.create(("loop", path), [], size, env["params"])


def test_create_is_sparse_and_sized(env):
    dev = _new(env)
    path = env["sdir"] / "inst1.example.com" / "disk0"
    assert dev.attached and dev.dev_path == str(path)
    st = os.stat(path)
    assert st.st_size == 8 * MIB
    assert st.st_blocks * 512 < MIB  # sparse
    assert dev.get_actual_size() == 8 * MIB
    assert dev.get_sync_status() == storage.SyncStatus()


def test_create_refuses_existing_file(env):
    _new(env)
    with pytest.raises(errors.BlockDeviceError, match="already exists"):
        _new(env)


@pytest.mark.parametrize("bad", ["../escape/disk0", "inst/../../escape", "inst/./../../x"])
def test_create_rejects_dotdot(env, bad):
    path = str(env["sdir"]) + "/" + bad
    with pytest.raises(errors.BlockDeviceError, match=r"\.\.|not inside"):
        filestorage.FileStorage.create(("loop", path), [], 1, env["params"])
    assert not os.path.exists(os.path.normpath(path))


def test_create_rejects_outside_and_relative_and_base_itself(env, tmp_path):
    for path in (str(tmp_path / "elsewhere" / "disk0"), "relative/disk0", str(env["sdir"])):
        with pytest.raises(errors.BlockDeviceError):
            filestorage.FileStorage.create(("loop", path), [], 1, env["params"])
    assert not (tmp_path / "elsewhere").exists()


def test_create_rejects_symlink_escape(env, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, env["sdir"] / "inst1")
    with pytest.raises(errors.BlockDeviceError, match="not inside"):
        filestorage.FileStorage.create(("loop", str(env["sdir"] / "inst1" / "disk0")), [],
                                       1, env["params"])
    assert os.listdir(outside) == []


def test_create_without_configured_dir_is_refused(env):
    with pytest.raises(errors.BlockDeviceError, match="No file storage directory"):
        filestorage.FileStorage.create(("loop", str(env["sdir"] / "i" / "d")), [], 1, {})


def test_file_storage_paths_file_is_honoured(env, tmp_path):
    paths_file = pathutils.file_storage_paths_file()
    os.makedirs(os.path.dirname(paths_file))
    with open(paths_file, "w") as fh:
        fh.write("# allowed\n%s\n" % (tmp_path / "other"))
    with pytest.raises(errors.BlockDeviceError, match="not below any directory allowed"):
        _new(env)
    with open(paths_file, "w") as fh:
        fh.write("/\n")  # a forbidden system dir never counts
    with pytest.raises(errors.BlockDeviceError, match="not below any directory allowed"):
        _new(env)
    with open(paths_file, "w") as fh:
        fh.write("%s\n" % env["sdir"])
    assert _new(env).attached


def test_remove_deletes_file_and_empty_instance_dir_only(env):
    d0 = _new(env, "inst1/disk0")
    d1 = _new(env, "inst1/disk1")
    d0.remove()
    assert not os.path.exists(d0.path)
    assert os.path.isdir(env["sdir"] / "inst1")
    d1.remove()
    assert not (env["sdir"] / "inst1").exists()
    assert env["sdir"].is_dir()  # the storage dir itself stays
    d1.remove()  # idempotent


def test_remove_file_directly_in_storage_dir_keeps_dir(env):
    dev = _new(env, "disk-flat")
    dev.remove()
    assert env["sdir"].is_dir()


def test_attach_assemble_shutdown(env):
    path = str(env["sdir"] / "inst1" / "disk0")
    dev = filestorage.FileStorage(("loop", path), [], 4, env["params"])
    assert not dev.attach()
    with pytest.raises(errors.BlockDeviceError, match="does not exist"):
        dev.assemble()
    _new(env, "inst1/disk0", 4)
    dev.assemble()
    assert dev.dev_path == path
    dev.open()
    dev.close()
    dev.shutdown()
    dev.set_info("inst1")


def test_grow(env):
    dev = _new(env, size=4)
    dev.grow(4, dryrun=True, backingstore=True)
    assert os.path.getsize(dev.path) == 4 * MIB
    dev.grow(4, dryrun=False, backingstore=False)
    assert os.path.getsize(dev.path) == 4 * MIB
    dev.grow(6, dryrun=False, backingstore=True)
    assert os.path.getsize(dev.path) == 10 * MIB
    assert dev.size == 10
    with pytest.raises(errors.BlockDeviceError, match="shrink"):
        dev.grow(-1, False, True)


def test_rename(env):
    dev = _new(env, "old/disk0")
    new = str(env["sdir"] / "new" / "disk0")
    dev.rename(("loop", new))
    assert dev.unique_id == ("loop", new) and dev.dev_path == new
    assert os.path.isfile(new) and not os.path.exists(env["sdir"] / "old" / "disk0")
    with pytest.raises(errors.BlockDeviceError, match="not inside"):
        dev.rename(("loop", "/etc/x"))
    assert not (env["sdir"] / "old").exists()  # emptied instance dir goes


def test_export_import_stream_roundtrip(env):
    src = _new(env, "a/disk0", 1)
    payload = os.urandom(300 * 1024)
    assert src.import_stream(io.BytesIO(payload)) == len(payload)
    dst = _new(env, "b/disk0", 1)
    with src.export_stream() as fh:
        dst.import_stream(fh)
    with open(dst.path, "rb") as fh:
        assert fh.read(len(payload)) == payload
    with pytest.raises(errors.BlockDeviceError, match="exceeds"):
        dst.import_stream(io.BytesIO(b"x" * (2 * MIB)))


def test_sharedfile_is_separate_type(env):
    dev = _new(env, "inst1/disk0", 2, "sharedfile")
    assert isinstance(dev, filestorage.SharedFileStorage)
    assert dev.DEV_TYPE == "sharedfile"
    dev.remove()
    assert not (env["sdir"] / "inst1").exists()


def test_bad_driver_and_logical_id(env):
    with pytest.raises(errors.BlockDeviceError, match="Unknown file driver"):
        filestorage.FileStorage(("qcow", "/x"), [], 1, {})
    with pytest.raises(errors.BlockDeviceError, match="Invalid file logical_id"):
        filestorage.FileStorage(("loop",), [], 1, {})


def test_storage_unit_info(env):
    _new(env, "i/d", 4)
    with open(env["sdir"] / "i" / "d", "r+b") as fh:
        fh.write(os.urandom(2 * MIB))
    info = filestorage.storage_unit_info(str(env["sdir"]))
    assert info["name"] == str(env["sdir"]) and info["allocatable"] is True
    assert info["used"] >= 2 and info["size"] >= info["free"] > 0
