"""Multi-node acceptance (issue 3): roles, offline, remove, bad input, partition, failover.

All tests share the session vcluster (conftest.py) and put it back as they
found it; the master may move, so names are resolved at run time.
"""

import os
import re
import subprocess
import tempfile

import pytest

from corral.tools import vcluster as vcluster_api

pytestmark = pytest.mark.slow


def _candidates(vcluster, exclude: str) -> list[str]:
    return sorted(n for n, r in vcluster.roles().items() if r == "C" and n != exclude)


def test_create_roles_and_lists(vcluster):
    roles = vcluster.roles()
    assert len(roles) == 3
    assert sorted(roles.values()) == ["C", "C", "M"]
    listing = vcluster.gnt("gnt-node", "list").stdout.splitlines()
    assert listing[0].split() == ["Node", "DTotal", "DFree", "MTotal", "MNode", "MFree",
                                  "Pinst", "Sinst"]
    assert len(listing) == 4 and all(re.search(r"\d", line) for line in listing[1:])
    groups = vcluster.gnt("gnt-group", "list").stdout.splitlines()
    assert groups[0].split() == ["Group", "Nodes", "Instances", "AllocPolicy", "NDParams"]
    assert groups[1].split()[:4] == ["default", "3", "0", "preferred"]
    master = vcluster.current_master()
    assert vcluster.gnt("gnt-cluster", "getmaster").stdout.strip() == master.name
    addrs = subprocess.run(["ip", "-n", master.ns, "-o", "addr", "show", "dev", "br0"],
                           capture_output=True, text=True).stdout
    assert " %s/32 " % vcluster.vc.master_ip in addrs


def test_offline_node_reported_by_verify(vcluster):
    target = _candidates(vcluster, vcluster.current_master().name)[-1]
    vcluster.gnt("gnt-node", "modify", "-O", "yes", target)
    try:
        assert vcluster.roles()[target] == "O"
        mfree = vcluster.gnt("gnt-node", "list", "--no-headers", "-o", "name,mfree", target)
        assert mfree.stdout.split() == [target, "*"]
        verify = vcluster.gnt("gnt-cluster", "verify")
        assert "NOTICE: 1 offline node(s) found." in verify.stdout
        assert "Verifying 2 node(s) of group default" in verify.stdout
    finally:
        vcluster.gnt("gnt-node", "modify", "-O", "no", target)
    assert vcluster.roles()[target] == "C"


def test_remove_and_add_again(vcluster):
    target = _candidates(vcluster, vcluster.current_master().name)[-1]
    vcluster.gnt("gnt-node", "remove", target)
    try:
        assert target not in vcluster.roles()
        assert vcluster.ssconf(target, "cluster_name") is None
        assert vcluster.config_serial(target) is None
    finally:
        vcluster.gnt("gnt-node", "add", target)
    assert vcluster.roles()[target] == "C"
    master = vcluster.current_master().name
    assert vcluster.config_serial(target) == vcluster.config_serial(master)


def _refused(vcluster, argv, message):
    master = vcluster.current_master().name
    before = vcluster.config_serial(master)
    proc = vcluster.gnt(*argv, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(message, proc.stderr), proc.stderr
    assert vcluster.config_serial(master) == before
    return proc


def test_bad_node_add_refused(vcluster):
    vc = vcluster.vc
    member = vc.nodes[0].name
    _refused(vcluster, ["gnt-node", "add", member], "already in the configuration")
    _refused(vcluster, ["gnt-node", "add", "nosuch.%s.test" % vc.vcname],
             "resolver_error.*\n.*Cannot resolve host name 'nosuch")
    target = _candidates(vcluster, vcluster.current_master().name)[-1]
    keys = os.path.join(vcluster.node(target).root, "ssh", "authorized_keys")
    with open(keys) as fh:
        saved = fh.read()
    vcluster.gnt("gnt-node", "remove", target)
    try:
        with open(keys, "w") as fh:
            fh.write("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHh0aGlzaXNub3R0aGVjbHVzdGVya2V5eHh4"
                     " stranger\n")
        _refused(vcluster, ["gnt-node", "add", target], "SSH authentication as root@%s failed"
                 % re.escape(target))
    finally:
        with open(keys, "w") as fh:
            fh.write(saved)
        vcluster.gnt("gnt-node", "add", target)
    assert vcluster.roles()[target] == "C"


def test_node_of_another_cluster_refused_and_destroy_cleans_up(vcluster):
    other = tempfile.mkdtemp(prefix="vo", dir="/tmp")
    try:
        vc2 = vcluster_api.create(other, nodes=1, share_network=vcluster.base)
        foreign = vc2.nodes[0]
        with open(os.path.join(vcluster.base, "ssh", "id_ed25519.pub")) as src, \
                open(os.path.join(foreign.root, "ssh", "authorized_keys"), "a") as dst:
            dst.write(src.read())
        _refused(vcluster, ["gnt-node", "add", foreign.name], "not in the cluster's known hosts")
        _refused(vcluster, ["gnt-node", "add", "--no-ssh-key-check", foreign.name],
                 "already a member of another cluster, '%s'" % re.escape(vc2.cluster_name))
        _refused(vcluster, ["gnt-node", "add", "--no-node-setup", foreign.name],
                 "not signed by this cluster's CA")
    finally:
        vcluster_api.destroy(other)
    assert not os.path.exists(other)
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert foreign.ns not in netns and not os.path.exists("/etc/netns/" + foreign.ns)
    with open("/proc/mounts") as fh:
        assert other not in fh.read()
    assert not _processes_mentioning(other)
    assert len(vcluster.roles()) == 3


def _cmdline(pid: str) -> bytes:
    try:
        with open("/proc/%s/cmdline" % pid, "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as fh:
                cmdline = fh.read()
            with open("/proc/%s/environ" % pid, "rb") as fh:
                environ = fh.read()
        except OSError:
            continue
        if text.encode() in cmdline or text.encode() in environ:
            found.append(int(pid))
    return found


def test_partitioned_candidate_catches_up(vcluster):
    master = vcluster.current_master().name
    target = _candidates(vcluster, master)[-1]
    vcluster_api.partition(vcluster.base, target)
    try:
        vcluster.gnt("gnt-cluster", "add-tags", "while-partitioned")
        vcluster.gnt("gnt-cluster", "add-tags", "still-partitioned")
        assert vcluster.config_serial(target) < vcluster.config_serial(master)
        verify = vcluster.gnt("gnt-cluster", "verify", "--error-codes", check=False)
        assert verify.returncode == 1
        assert re.search(r"ERROR:ENODERPC:node:%s:" % re.escape(target), verify.stdout)
    finally:
        vcluster_api.heal(vcluster.base, target)
    vcluster.gnt("gnt-cluster", "redist-conf")
    assert vcluster.config_serial(target) == vcluster.config_serial(master)
    assert vcluster.ssconf(target, "node_list") == vcluster.ssconf(master, "node_list")
    vcluster.gnt("gnt-cluster", "remove-tags", "while-partitioned", "still-partitioned")
    assert vcluster.config_serial(target) == vcluster.config_serial(master)


def test_master_failover_after_crash(vcluster):
    old = vcluster.current_master()
    new = _candidates(vcluster, old.name)[0]
    tag = "before-crash-%d" % os.getpid()
    vcluster.gnt("gnt-cluster", "add-tags", tag)
    vcluster_api.stop_node(vcluster.base, old.name)
    try:
        vcluster.on(new, "gnt-cluster", "master-failover")
        assert vcluster.current_master().name == new
        assert tag in vcluster.gnt("gnt-cluster", "list-tags").stdout.split()
        assert vcluster.gnt("gnt-cluster", "getmaster").stdout.strip() == new
    finally:
        problem = vcluster_api.start_node(vcluster.base, old.name)
    assert problem and "not the master any more" in problem
    pids = subprocess.run(["ip", "netns", "pids", old.ns], capture_output=True,
                          text=True).stdout.split()
    assert not [p for p in pids if b"corral-masterd" in _cmdline(p)]
    vcluster.on(old.name, "corral-daemon-util", "check")  # only noded belongs there now
    assert vcluster.ssconf(old.name, "master_node") == new
    assert vcluster.roles()[old.name] == "C"
    vcluster.gnt("gnt-cluster", "remove-tags", tag)
    assert vcluster.config_serial(old.name) == vcluster.config_serial(new)
    # The new master recorded the old one's queue copy as failed while it was
    # down; the background probe brings it back at its own pace, redist-conf
    # at once (as verify's message says) — then nothing is left to report.
    vcluster.gnt("gnt-cluster", "redist-conf")
    verify = vcluster.gnt("gnt-cluster", "verify")
    assert "ERROR" not in verify.stdout


def _master_ip_up(vcluster) -> bool:
    master = vcluster.current_master()
    addrs = subprocess.run(["ip", "-n", master.ns, "-o", "addr", "show", "dev", "br0"],
                           capture_output=True, text=True).stdout
    return " %s/32 " % vcluster.vc.master_ip in addrs


def test_master_ip_commands_and_node_tags(vcluster):
    vcluster.gnt("gnt-cluster", "deactivate-master-ip", "--yes")
    try:
        assert not _master_ip_up(vcluster)
    finally:
        vcluster.gnt("gnt-cluster", "activate-master-ip")
    assert _master_ip_up(vcluster)
    node = vcluster.vc.nodes[1].name
    vcluster.gnt("gnt-node", "add-tags", node, "rack:a1")
    try:
        assert vcluster.gnt("gnt-node", "list-tags", node).stdout.split() == ["rack:a1"]
        info = vcluster.gnt("gnt-node", "info", node).stdout
        assert "Node name: %s" % node in info and "tags: rack:a1" in info
    finally:
        vcluster.gnt("gnt-node", "remove-tags", node, "rack:a1")


def test_group_lifecycle(vcluster):
    node = vcluster.vc.nodes[2].name
    vcluster.gnt("gnt-group", "add", "--alloc-policy=last_resort", "rack2")
    try:
        vcluster.gnt("gnt-group", "assign-nodes", "rack2", node)
        rows = vcluster.gnt("gnt-group", "list", "--no-headers", "--separator=|",
                            "-o", "name,node_cnt,alloc_policy,node_list").stdout.splitlines()
        assert "rack2|1|last_resort|%s" % node in rows
        vcluster.gnt("gnt-group", "rename", "rack2", "rack3")
        refused = vcluster.gnt("gnt-group", "remove", "rack3", check=False)
        assert refused.returncode == 1 and "not empty" in refused.stderr
        vcluster.gnt("gnt-group", "modify", "--alloc-policy=unallocable", "rack3")
        assert "Allocation policy: unallocable" in vcluster.gnt("gnt-group", "info",
                                                                "rack3").stdout
    finally:
        vcluster.gnt("gnt-group", "assign-nodes", "default", node)
        for name in ("rack2", "rack3"):
            vcluster.gnt("gnt-group", "remove", name, check=False)
    groups = vcluster.gnt("gnt-group", "list", "--no-headers", "-o", "name").stdout.split()
    assert groups == ["default"]
