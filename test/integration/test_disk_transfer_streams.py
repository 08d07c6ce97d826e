"""Disk transfers between two in-process "nodes" through OS scripts and export files.

The gnt-backup data paths of backend/disk_transfer.py, end to end over real
TLS on loopback with real cluster certificates and the shipped busybox OS
definition: os-export -> export-file (then export_finalize), export-file ->
os-import, a failing import script, a failing export script, and refused
paths.  Each node is one CORRAL_ROOT; calls switch CORRAL_ROOT like the node
daemon of that node would have it (as test/unit/migration_helpers.py does).
"""

import hashlib
import os
import shutil
import stat
import threading
import uuid

import pytest

from corral import certs, errors, pathutils
from corral.backend import disk_transfer as dt
from corral.backend import exports

MiB = 1 << 20
DISK_SIZE = 6 * MiB
WAIT = 60.0
_ENV_LOCK = threading.Lock()


class Node:
    """One node's root; ``call`` runs a backend function as that node."""

    def __init__(self, root: str) -> None:
        self.root = root

    def call(self, func, *args, **kwargs):
        with _ENV_LOCK:
            saved = os.environ.get("CORRAL_ROOT")
            os.environ["CORRAL_ROOT"] = self.root
            try:
                return func(*args, **kwargs)
            finally:
                os.environ["CORRAL_ROOT"] = saved or ""


def _script(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _broken_os(base: str, name: str, script: str, body: str) -> None:
    """A copy of the shipped busybox OS whose ``script`` is replaced by ``body``."""
    target = os.path.join(base, name)
    shutil.copytree(os.path.join(pathutils.shipped_os_dir(), "busybox"), target,
                    symlinks=True)
    os.unlink(os.path.join(target, script))
    _script(os.path.join(target, script), "#!/bin/sh\n" + body)


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    certs.generate_cluster_ca(str(d / "ca.pem"), "cl.example")
    for name in ("node1", "node2"):
        certs.generate_node_cert(str(d / "ca.pem"), str(d / (name + ".pem")), name)
    return d


@pytest.fixture
def nodes(tmp_path, monkeypatch, ca_dir):
    """Two node roots with certificates; OS scripts log into a third, neutral root."""
    monkeypatch.setenv("CORRAL_ROOT", str(tmp_path / "neutral"))
    os_dir = tmp_path / "os"
    os_dir.mkdir()
    _broken_os(str(os_dir), "failimport", "import",
               'echo "import broke: disk full on $IMPORT_DISK_PATH" >&2\nexit 1\n')
    _broken_os(str(os_dir), "failexport", "export",
               'head -c 3000000 "$EXPORT_DISK_PATH"\necho "export broke: read error" >&2\n'
               'exit 3\n')
    monkeypatch.setenv("CORRAL_OS_SEARCH_PATH",
                       "%s:%s" % (os_dir, pathutils.shipped_os_dir()))
    out = []
    for name in ("node1", "node2"):
        node = Node(str(tmp_path / name))
        node.call(pathutils.ensure_dirs)
        shutil.copy(ca_dir / "ca.pem", node.call(pathutils.cluster_ca_file))
        shutil.copy(ca_dir / (name + ".pem"), node.call(pathutils.node_cert_file))
        out.append(node)
    os.makedirs(tmp_path / "neutral" / "var" / "log" / "corral" / "os", exist_ok=True)
    tids: list[str] = []
    yield out[0], out[1], tids
    for tid in tids:
        for node in out:
            node.call(dt.disk_transfer_cleanup, tid)


def file_disk(path: str, allowed: str) -> dict:
    return {"dev_type": "sharedfile", "logical_id": ["loop", path], "size": DISK_SIZE // MiB,
            "uuid": "disk-" + os.path.basename(path), "mode": "rw",
            "params": {"allowed_dirs": [allowed]}}


def os_args(os_name: str, disk: dict) -> dict:
    return {"instance": {"name": "inst1.example", "os": os_name, "uuid": "inst-uuid",
                         "primary_node": "node1", "secondary_nodes": []},
            "disks": [disk], "nics": [], "hypervisor": "fake", "hvparams": {},
            "beparams": {}, "osparams": {}, "reinstall": False, "debug": 0}


def make_disk(path: str, data: bool) -> str:
    """A DISK_SIZE file; with ``data``, random blocks around holes; returns its md5."""
    with open(path, "wb") as fh:
        fh.truncate(DISK_SIZE)
        if data:
            for offset in (0, 2 * MiB + 17, DISK_SIZE - 4096):
                fh.seek(offset)
                fh.write(os.urandom(4096 + 300 * 1024 if offset == 0 else 4096))
    return md5(path)


def md5(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.md5(fh.read()).hexdigest()


def transfer(src, dst, tids, src_entries, dst_entries):
    """Run one transfer node1 -> node2 (or as given); returns (source, target) status."""
    tid = uuid.uuid4().hex
    tids.append(tid)
    port = dst.call(dt.disk_import_start, tid, dst_entries, "127.0.0.1")
    src.call(dt.disk_export_start, tid, src_entries, "127.0.0.1", port)
    d = dst.call(dt.disk_transfer_status, tid, WAIT)
    s = src.call(dt.disk_transfer_status, tid, WAIT)
    assert d["status"] != "running" and s["status"] != "running", (s, d)
    return s, d


def test_export_then_import_roundtrip(nodes, tmp_path):
    node1, node2, tids = nodes
    shared = str(tmp_path / "disks")
    os.makedirs(shared)
    orig = str(tmp_path / "disks" / "orig")
    want = make_disk(orig, data=True)
    disk = file_disk(orig, shared)
    # (a) OS export script on node1 -> staged export file on node2
    s, d = transfer(node1, node2, tids,
                    [{"kind": "os-export", "os_args": os_args("busybox", disk),
                      "disk_index": 0}],
                    [{"kind": "export-file", "path": "inst1.new/%s" % disk["uuid"]}])
    assert (s["status"], d["status"]) == ("done", "done"), (s, d)
    assert s["total"] == DISK_SIZE and d["done"] == DISK_SIZE  # EXP_SIZE_FD prediction
    node2.call(exports.export_finalize, "inst1", "[export]\nversion = 0\n")
    assert node2.call(exports.export_list) == ["inst1"]
    assert node1.call(exports.export_list) == []
    staged = os.path.join(node2.root, "srv", "ganeti", "export", "inst1", disk["uuid"])
    assert md5(staged) == want
    assert os.stat(staged).st_blocks * 512 < DISK_SIZE  # the holes stayed holes
    # (b) export file on node2 -> OS import script onto a blank disk on node1
    new = str(tmp_path / "disks" / "new")
    make_disk(new, data=False)
    new_disk = file_disk(new, shared)
    s, d = transfer(node2, node1, tids,
                    [{"kind": "export-file", "path": "inst1/%s" % disk["uuid"]}],
                    [{"kind": "os-import", "os_args": os_args("busybox", new_disk),
                      "disk_index": 0}])
    assert (s["status"], d["status"]) == ("done", "done"), (s, d)
    assert s["total"] == d["total"] == DISK_SIZE
    assert md5(new) == want


def src_and_dst(tmp_path) -> tuple[str, str, str]:
    """The shared disk dir, a source disk with data and a blank target disk in it."""
    shared = str(tmp_path / "disks")
    os.makedirs(shared)
    src, dst = os.path.join(shared, "src"), os.path.join(shared, "dst")
    make_disk(src, data=True)
    make_disk(dst, data=False)
    return shared, src, dst


def test_failing_import_script_fails_transfer(nodes, tmp_path):
    node1, node2, tids = nodes
    shared, src, dst = src_and_dst(tmp_path)
    s, d = transfer(node1, node2, tids, [file_disk(src, shared)],
                    [{"kind": "os-import", "os_args": os_args("failimport",
                                                              file_disk(dst, shared)),
                      "disk_index": 0}])
    assert d["status"] == "failed" and s["status"] == "failed"
    assert "exit code 1" in d["error"] and "import broke: disk full" in d["error"], d
    assert "import broke" in s["error"]


def test_failing_export_script_fails_both_ends(nodes, tmp_path):
    node1, node2, tids = nodes
    shared = str(tmp_path / "disks")
    os.makedirs(shared)
    src = str(tmp_path / "disks" / "src")
    make_disk(src, data=True)
    s, d = transfer(node1, node2, tids,
                    [{"kind": "os-export", "os_args": os_args("failexport",
                                                              file_disk(src, shared)),
                      "disk_index": 0}],
                    [{"kind": "export-file", "path": "inst1.new/disk0"}])
    assert s["status"] == "failed" and "export broke: read error" in s["error"], s
    assert d["status"] == "failed" and "The source failed" in d["error"], d
    assert "export broke: read error" in d["error"]
    assert node2.call(exports.export_list) == []


@pytest.mark.parametrize("path", ["../inst1.new/disk0", "inst1.new/../../etc",
                                  "inst1.new/..", "inst1.new/a/b", "inst1/disk0"])
def test_target_refuses_bad_paths(nodes, path):
    _node1, node2, _tids = nodes
    with pytest.raises(errors.OpPrereqError):
        node2.call(dt.disk_import_start, uuid.uuid4().hex,
                   [{"kind": "export-file", "path": path}], "127.0.0.1")


@pytest.mark.parametrize("path", ["../etc/passwd", "inst1/../../x", "inst1/.."])
def test_source_refuses_bad_paths(nodes, path):
    node1, _node2, _tids = nodes
    with pytest.raises(errors.OpPrereqError):
        node1.call(dt.disk_export_start, uuid.uuid4().hex,
                   [{"kind": "export-file", "path": path}], "127.0.0.1", 9)


def test_unknown_kind_and_missing_os(nodes):
    node1, _node2, _tids = nodes
    with pytest.raises(errors.OpExecError, match="Unknown transfer source kind"):
        node1.call(dt.disk_export_start, uuid.uuid4().hex, [{"kind": "tape"}],
                   "127.0.0.1", 9)
    disk = {"dev_type": "sharedfile", "logical_id": ["loop", "/nonexistent"], "size": 1}
    with pytest.raises(errors.OpExecError, match="not valid"):
        node1.call(dt.disk_export_start, uuid.uuid4().hex,
                   [{"kind": "os-export", "os_args": os_args("no-such-os", disk),
                     "disk_index": 0}], "127.0.0.1", 9)


@pytest.mark.parametrize("src_os,dst_os,culprit", [("failexport", "busybox", "export broke"),
                                                   ("busybox", "failimport", "import broke")])
def test_script_to_script_failure_stops_both_scripts(nodes, tmp_path, src_os, dst_os,
                                                     culprit):
    """One script fails: the other sees EOF/EPIPE and exits, nothing waits for a timeout."""
    node1, node2, tids = nodes
    shared, src, dst = src_and_dst(tmp_path)
    s, d = transfer(node1, node2, tids,
                    [{"kind": "os-export", "os_args": os_args(src_os, file_disk(src, shared)),
                      "disk_index": 0}],
                    [{"kind": "os-import", "os_args": os_args(dst_os, file_disk(dst, shared)),
                      "disk_index": 0}])
    assert s["status"] == d["status"] == "failed", (s, d)
    assert culprit in d["error"] and culprit in s["error"], (s, d)
    assert max(s["elapsed"], d["elapsed"]) < 20.0
