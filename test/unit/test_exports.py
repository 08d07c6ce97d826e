"""Node-side instance exports (backend/exports.py): names, list, info, finalize, remove."""

import os

import pytest

from corral import errors, pathutils
from corral.backend import exports


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_ROOT", str(tmp_path))
    return tmp_path


def _stage(name: str, files: dict[str, bytes]) -> str:
    staging = os.path.join(pathutils.export_dir(), name + ".new")
    os.makedirs(staging, exist_ok=True)
    for fname, data in files.items():
        with open(os.path.join(staging, fname), "wb") as fh:
            fh.write(data)
    return staging


def test_export_dir_under_root(root):
    assert pathutils.export_dir() == os.path.join(str(root), "srv", "ganeti", "export")


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden", "a/b", "/abs", "x" * 256,
                                  "tab\there", "new\nline", "bell\x07", None, 3])
def test_check_name_refuses(name):
    with pytest.raises(errors.OpPrereqError) as info:
        exports.check_name(name)
    assert info.value.args[1] == errors.ECODE_INVAL


@pytest.mark.parametrize("name", ["inst1.example.com", "inst1.new", "a b", "x" * 255,
                                  "disk0_UUID-1234"])
def test_check_name_accepts(name):
    assert exports.check_name(name) == name


@pytest.mark.parametrize("rel", ["inst1", "inst1/a/b", "../inst1/x", "inst1/..",
                                 "inst1/.hidden", "/etc/passwd", "", None])
def test_file_path_refuses(root, rel):
    with pytest.raises(errors.OpPrereqError):
        exports.file_path(rel)


def test_file_path_staging_only_for_writes(root):
    assert exports.file_path("inst1/disk0").endswith("/export/inst1/disk0")
    assert exports.file_path("inst1.new/disk0", staging=True).endswith("/inst1.new/disk0")
    with pytest.raises(errors.OpPrereqError, match="staging"):
        exports.file_path("inst1/disk0", staging=True)
    with pytest.raises(errors.OpPrereqError):
        exports.file_path(".new/disk0", staging=True)


def test_file_path_refuses_symlink_out(root, tmp_path):
    os.makedirs(pathutils.export_dir())
    os.symlink(str(tmp_path), os.path.join(pathutils.export_dir(), "evil"))
    with pytest.raises(errors.OpPrereqError, match="outside"):
        exports.file_path("evil/secret")


def test_list_without_dir_is_empty(root):
    assert exports.export_list() == []


def test_list_ignores_staging_and_incomplete(root):
    _stage("b-inst", {"disk0": b"x"})
    exports.export_finalize("b-inst", "[export]\n")
    _stage("a-inst", {})
    exports.export_finalize("a-inst", "[export]\n")
    _stage("c-inst", {exports.CONFIG_FILE: b"[export]\n"})  # still staging
    os.makedirs(os.path.join(pathutils.export_dir(), "no-config"))
    assert exports.export_list() == ["a-inst", "b-inst"]


def test_finalize_replaces_older_export(root):
    _stage("inst1", {"disk0": b"old"})
    exports.export_finalize("inst1", "version=1\n")
    _stage("inst1", {"disk0": b"new"})
    exports.export_finalize("inst1", "version=2\n")
    final = os.path.join(pathutils.export_dir(), "inst1")
    assert exports.export_info("inst1") == "version=2\n"
    with open(os.path.join(final, "disk0"), "rb") as fh:
        assert fh.read() == b"new"
    assert sorted(os.listdir(pathutils.export_dir())) == ["inst1"]


def test_finalize_crash_leftover_old_is_cleaned(root):
    base = pathutils.export_dir()
    os.makedirs(os.path.join(base, exports._old_name("inst1")))
    exports.export_finalize("inst1", "x\n")  # no staging dir: diskless instance
    assert os.listdir(base) == ["inst1"]
    assert os.listdir(os.path.join(base, "inst1")) == [exports.CONFIG_FILE]


def test_finalize_failed_rename_keeps_old_export(root, monkeypatch):
    _stage("inst1", {"disk0": b"old"})
    exports.export_finalize("inst1", "version=1\n")
    _stage("inst1", {"disk0": b"new"})
    real_rename = os.rename

    def failing(src, dst):
        if src.endswith("inst1.new"):
            raise OSError(28, "No space left on device")
        return real_rename(src, dst)
    monkeypatch.setattr(os, "rename", failing)
    with pytest.raises(errors.OpExecError, match="No space"):
        exports.export_finalize("inst1", "version=2\n")
    monkeypatch.setattr(os, "rename", real_rename)
    assert exports.export_info("inst1") == "version=1\n"


def test_finalize_refuses_bad_names(root):
    with pytest.raises(errors.OpPrereqError):
        exports.export_finalize("inst1.new", "x")
    with pytest.raises(errors.OpPrereqError):
        exports.export_finalize("../etc", "x")
    assert not os.path.exists(pathutils.export_dir())


def test_info_missing(root):
    with pytest.raises(errors.OpExecError, match="not found"):
        exports.export_info("nope")


def test_remove_is_idempotent(root):
    _stage("inst1", {"disk0": b"x"})
    exports.export_finalize("inst1", "x\n")
    _stage("inst2", {"disk0": b"x"})
    exports.export_remove("inst1")
    exports.export_remove("inst1")
    exports.export_remove("inst2.new")
    exports.export_remove("never-existed")
    assert os.listdir(pathutils.export_dir()) == []
    with pytest.raises(errors.OpPrereqError):
        exports.export_remove("..")


def test_finalize_repeated_is_a_no_op(root):
    _stage("inst1", {"disk0": b"data"})
    exports.export_finalize("inst1", "version=1\n")
    exports.export_finalize("inst1", "version=1\n")
    final = os.path.join(pathutils.export_dir(), "inst1")
    assert sorted(os.listdir(final)) == [exports.CONFIG_FILE, "disk0"]
