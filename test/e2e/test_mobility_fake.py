"""Mobility on the shared fake-hypervisor vcluster: gnt-node migrate/failover, move of
file disks between node daemons, migration of file disks (the fake's offline copy).

Each test creates its own instances and removes them again.
"""

import glob
import os

import pytest

pytestmark = pytest.mark.slow

ADD = ["gnt-instance", "add", "-o", "noop", "--no-name-check", "--no-ip-check", "--no-nics"]
MARK = b"corral-e2e-mobility-mark"


def pnode(vc, name: str) -> str:
    out = vc.gnt("gnt-instance", "list", "--no-headers", "-o", "pnode", name).stdout.strip()
    return vc.node(out).short


def guest_hosts(vc) -> list[str]:
    master = vc.current_master().short
    return [n.short for n in vc.vc.nodes if n.short != master][:2]


def disk_files(vc, node: str, name: str) -> list[str]:
    return glob.glob(os.path.join(vc.node(node).root, "file", name, "*"))


def test_node_migrate_and_failover(vcluster):
    vc = vcluster
    a, b = guest_hosts(vc)
    names = ["nm1.fake.test", "nm2.fake.test"]
    try:
        for name in names:
            vc.gnt(*ADD, "-t", "sharedfile", "-s", "16m", "-n", a, name)
        out = vc.gnt("gnt-node", "migrate", "-f", "-n", b, a).stdout
        assert "All instances migrated successfully." in out
        assert [pnode(vc, n) for n in names] == [b, b]
        empty = vc.gnt("gnt-node", "migrate", "-f", a)
        assert "No primary instances on node" in empty.stderr
        # shared storage needs a target (-n or an allocator): every failover fails
        proc = vc.gnt("gnt-node", "failover", "-f", b, check=False)
        assert proc.returncode == 1
        assert "2 error(s) out of 2 instance(s)" in proc.stdout
        assert "No target node given" in proc.stderr
        for name in names:
            vc.gnt("gnt-instance", "failover", "-f", "-n", a, name)
        assert [pnode(vc, n) for n in names] == [a, a]
    finally:
        for name in names:
            vc.gnt("gnt-instance", "remove", "-f", name, check=False)


def test_move_and_migrate_file_disks(vcluster):
    vc = vcluster
    a, b = guest_hosts(vc)
    name = "mv1.fake.test"
    try:
        vc.gnt(*ADD, "-t", "file", "-s", "8m", "-n", a, name)
        [path] = disk_files(vc, a, name)
        with open(path, "r+b") as fh:
            fh.seek(3 << 20)
            fh.write(MARK)
        out = vc.gnt("gnt-instance", "move", "-f", "-n", b, "--compress", "gzip-fast",
                     name).stdout
        assert "disk copy progress: 100.00 %" in out
        assert pnode(vc, name) == b and disk_files(vc, a, name) == []
        [moved] = disk_files(vc, b, name)
        with open(moved, "rb") as fh:
            fh.seek(3 << 20)
            assert fh.read(len(MARK)) == MARK
        out = vc.gnt("gnt-instance", "migrate", "-f", "-n", a, name).stdout
        assert "downtime 0 ms" in out
        assert pnode(vc, name) == a and disk_files(vc, b, name) == []
        [back] = disk_files(vc, a, name)
        with open(back, "rb") as fh:
            fh.seek(3 << 20)
            assert fh.read(len(MARK)) == MARK
        proc = vc.gnt("gnt-instance", "failover", "-f", "-n", b, name, check=False)
        assert proc.returncode == 1 and "does not allow failovers" in proc.stderr
    finally:
        vc.gnt("gnt-instance", "remove", "-f", name, check=False)


def test_export_to_another_node_and_import_elsewhere(vcluster):
    """gnt-backup between node daemons: the export lands on the target node, the
    import reads it from there onto a third node's disk; older exports go."""
    vc = vcluster
    a, b = guest_hosts(vc)
    name, copy = "bk1.fake.test", "bk2.fake.test"
    try:
        vc.gnt(*ADD, "-t", "file", "-s", "8m", "-n", a, "--no-start", name)
        [path] = disk_files(vc, a, name)
        with open(path, "r+b") as fh:
            fh.seek(3 << 20)
            fh.write(MARK)
        vc.gnt("gnt-backup", "export", "-n", a, name)
        vc.gnt("gnt-backup", "export", "-n", b, "--transport-compression", "gzip", name)
        out = vc.gnt("gnt-backup", "list", "--no-headers").stdout.split("\n")
        assert [line.split() for line in out if name in line] == [[vc.node(b).name, name]]
        vc.gnt("gnt-backup", "import", "-n", a, "-t", "file", "--src-node", b, "--src-dir",
               name, "--no-name-check", "--no-ip-check", copy)
        assert pnode(vc, copy) == a
        [imported] = disk_files(vc, a, copy)
        with open(imported, "rb") as fh:
            fh.seek(3 << 20)
            assert fh.read(len(MARK)) == MARK
    finally:
        for inst in (name, copy):
            vc.gnt("gnt-instance", "remove", "-f", inst, check=False)
        vc.gnt("gnt-backup", "remove", name, check=False)


def _fake_record(vc, node: str, name: str) -> str:
    return os.path.join(vc.node(node).root, "var", "run", "corral", "fake-hypervisor",
                        name + ".json")


def test_watcher_maintains_the_health_of_an_offline_node(vcluster):
    """A node cut off, marked offline and failed over from comes back still running the
    instance: with maintain_node_health its watcher stops that stale copy."""
    from corral.tools import vcluster as vcluster_api
    vc = vcluster
    a, b = guest_hosts(vc)
    name = "mh1.fake.test"
    healed = offline = False
    try:
        vc.gnt(*ADD, "-t", "sharedfile", "-s", "8m", "-n", b, name)
        vc.gnt("gnt-cluster", "modify", "--maintain-node-health", "yes")
        # An online node is left alone.
        proc = vc.on(b, "corral-watcher", "--once", "--debug")
        assert "Node health: this node is online" in proc.stderr
        vcluster_api.partition(vc.base, b)
        offline = True  # also if the command fails after its job was queued
        vc.gnt("gnt-node", "modify", "-O", "yes", "--force", b)
        vc.gnt("gnt-instance", "failover", "-f", "--ignore-consistency", "-n", a, name)
        vcluster_api.heal(vc.base, b)
        healed = True
        assert os.path.exists(_fake_record(vc, b, name))  # the stale copy
        proc = vc.on(b, "corral-watcher", "--once", "--debug")
        assert "should not be running, shutting them down: %s" % name in proc.stderr
        assert not os.path.exists(_fake_record(vc, b, name))
        assert os.path.exists(_fake_record(vc, a, name)) and pnode(vc, name) == a
    finally:
        if not healed:
            vcluster_api.heal(vc.base, b)
        if offline:
            vc.gnt("gnt-node", "modify", "-O", "no", b, check=False)
        vc.gnt("gnt-cluster", "modify", "--maintain-node-health", "no", check=False)
        vc.gnt("gnt-instance", "remove", "-f", name, check=False)
