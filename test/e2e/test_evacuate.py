"""Allocation and evacuation on the shared 3-node vcluster (fake hypervisor).

Acceptance (issue 6): ``gnt-node evacuate`` of a node with 5 instances moves
all of them; instances are placed without ``-n`` (built-in allocator) and
with ``-I hail``.  Every test removes the instances it made.
"""

import json
import os
import re

import pytest

pytestmark = pytest.mark.slow

ADD = ("gnt-instance", "add", "--no-name-check", "--no-ip-check", "-o", "busybox",
       "--no-install", "--no-nics")
HAIL = "/usr/lib/ganeti/iallocators/hail"


def _instances(vcluster) -> dict[str, tuple[str, str]]:
    out = vcluster.gnt("gnt-instance", "list", "--no-headers", "-o", "name,pnode,status").stdout
    return {n: (p, s) for n, p, s in (line.split() for line in out.splitlines())}


def _remove(vcluster, names) -> None:
    for name in names:
        vcluster.gnt("gnt-instance", "remove", "-f", name, check=False)


def test_evacuate_node_with_five_instances(vcluster):
    nodes = sorted(vcluster.roles())
    victim = nodes[-1]
    names = ["ev%d" % i for i in range(5)]
    try:
        for i, name in enumerate(names):
            template = ("-t", "sharedfile", "--disk", "0:size=64m") if i % 2 else \
                ("-t", "diskless")
            extra = ("--no-start",) if i == 4 else ()
            vcluster.gnt(*ADD, *template, *extra, "-n", victim, name)
        before = _instances(vcluster)
        assert all(before[n][0] == victim for n in names)
        out = vcluster.gnt("gnt-node", "evacuate", "-f", victim, timeout=600).stdout
        assert "All instances evacuated successfully." in out, out
        after = _instances(vcluster)
        for name in names:
            assert after[name][0] != victim, after
            assert after[name][1] == before[name][1], (name, before[name], after[name])
        assert len({after[n][0] for n in names}) == 2  # spread over the two other nodes
        pinst = vcluster.gnt("gnt-node", "list", "--no-headers", "-o", "pinst_cnt",
                             victim).stdout.strip()
        assert pinst == "0"
        again = vcluster.gnt("gnt-node", "evacuate", "-f", victim)
        assert "No instances to evacuate on node(s) %s" % victim in again.stderr
    finally:
        _remove(vcluster, names)


def test_placement_without_a_node(vcluster):
    names = ["pl%d" % i for i in range(6)]
    try:
        for name in names:
            out = vcluster.gnt(*ADD, "-t", "diskless", "-B", "maxmem=256", name).stdout
            assert "via iallocator builtin" in out
        placed = _instances(vcluster)
        counts: dict[str, int] = {}
        for name in names:
            counts[placed[name][0]] = counts.get(placed[name][0], 0) + 1
            assert placed[name][1] == "running"
        assert sorted(counts.values()) == [2, 2, 2], counts
    finally:
        _remove(vcluster, names)


def test_parallel_placements_spread(vcluster, tmp_path):
    """Creations submitted together (and run at once) see each other's chosen nodes."""
    names = ["pp%d" % i for i in range(6)]
    files = []
    for name in names:
        path = tmp_path / (name + ".json")
        path.write_text(json.dumps([{
            "OP_ID": "OP_INSTANCE_CREATE", "instance_name": name, "mode": "create",
            "disk_template": "diskless", "disks": [], "nics": [], "os_type": "busybox",
            "no_install": True, "name_check": False, "ip_check": False,
            "beparams": {"maxmem": 256}}]))
        files.append(str(path))
    try:
        out = vcluster.gnt("gnt-debug", "submit-job", *files).stdout
        jobs = re.findall(r"Submitted job ID (\d+)", out)
        assert len(jobs) == len(names), out
        for job in jobs:
            vcluster.gnt("gnt-job", "wait", job)
        placed = _instances(vcluster)
        counts: dict[str, int] = {}
        for name in names:
            counts[placed[name][0]] = counts.get(placed[name][0], 0) + 1
        assert sorted(counts.values()) == [2, 2, 2], counts
    finally:
        _remove(vcluster, names)


@pytest.mark.skipif(not os.path.exists(HAIL), reason="ganeti-htools (hail) not installed")
def test_hail_places_an_instance(vcluster):
    try:
        out = vcluster.gnt(*ADD, "-t", "sharedfile", "--disk", "0:size=1g", "-I", "hail",
                           "byhail").stdout
        assert "via iallocator hail" in out
        assert _instances(vcluster)["byhail"][1] == "running"
    finally:
        _remove(vcluster, ["byhail"])


def test_change_group(vcluster):
    target = sorted(vcluster.roles())[0]
    vcluster.gnt("gnt-group", "add", "evac2")
    try:
        vcluster.gnt("gnt-group", "assign-nodes", "evac2", target)
        others = [n for n in vcluster.roles() if n != target]
        vcluster.gnt(*ADD, "-t", "diskless", "-n", others[0], "cg1")
        out = vcluster.gnt("gnt-instance", "change-group", "--to", "evac2", "cg1",
                           timeout=600).stdout
        assert "Instance 'cg1' changed group successfully." in out, out
        assert _instances(vcluster)["cg1"] == (target, "running")
        out = vcluster.gnt("gnt-group", "evacuate", "--to", "default", "evac2",
                           timeout=600).stdout
        assert "All instances evacuated successfully." in out
        assert _instances(vcluster)["cg1"][0] != target
    finally:
        _remove(vcluster, ["cg1"])
        vcluster.gnt("gnt-group", "assign-nodes", "default", target, check=False)
        vcluster.gnt("gnt-group", "remove", "evac2", check=False)


def test_watcher_pause_reaches_every_node(vcluster):
    """The pause file lands on every node, and a non-master's watcher honours it."""
    vcluster.gnt("gnt-cluster", "watcher", "pause", "1h")
    try:
        for name in vcluster.roles():
            assert os.path.exists(vcluster.data_path(name, "watcher.pause")), name
        other = next(n for n in vcluster.roles() if n != vcluster.current_master().name)
        proc = vcluster.on(other, "corral-watcher", "--once", "--debug")
        assert "Watcher is paused until" in proc.stderr
    finally:
        vcluster.gnt("gnt-cluster", "watcher", "continue")
    for name in vcluster.roles():
        assert not os.path.exists(vcluster.data_path(name, "watcher.pause")), name
    proc = vcluster.on(other, "corral-watcher", "--once", "--debug")
    assert "Watcher run finished" in proc.stderr
