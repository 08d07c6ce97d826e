"""The ``mirror`` disk template on the 3-node kvm vcluster (issue 9 acceptance).

One mirror guest per module on node2 (primary) and node3 (secondary); node1
is the master and never hosts it.  Each test finds where the guest is now,
and leaves both nodes up and the network healed.  Data checks are made from
inside the guest (md5sum on its console) and, with the guest stopped, on
both nodes' images.
"""

import hashlib
import os
import re
import time

import pytest

from corral.tools import vcluster as vcluster_api
from test_mobility_kvm import ADD, BOOT_TIMEOUT, console, primary, tick

pytestmark = pytest.mark.slow

NAME = "mir1.vk.test"


def secondary(vk, name: str) -> str:
    out = vk.gnt("gnt-instance", "list", "--no-headers", "-o", "snodes", name).stdout
    return vk.node(out.strip()).short


def image_paths(vk, name: str) -> dict[str, str]:
    """The host path of the guest's image on each of its two nodes (the image is
    ``<file storage dir>/<instance>/<disk uuid>.disk0``, bind-mounted per node)."""
    out = vk.gnt("gnt-instance", "info", "--static", name).stdout
    uuid = re.search(r"disk/0: mirror.*?UUID: (\S+)", out, re.S)
    assert uuid, out
    rel = os.path.join(name, "%s.disk0" % uuid.group(1))
    return {node: os.path.join(vk.node(node).root, "file", rel)
            for node in (primary(vk, name), secondary(vk, name))}


def listed(vk, name: str) -> list[str]:
    """``gnt-instance list`` replication fields of ``name``: [is_degraded, disk.sync]."""
    out = vk.gnt("gnt-instance", "list", "--no-headers", "--separator=|", "-o",
                 "is_degraded,disk.sync", name).stdout
    return out.strip().split("|")


def md5(path: str) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shell(vk, node: str, name: str, command: str, expect: str, timeout: float = 60) -> str:
    """Run ``command`` in the guest's root shell; the first match of ``expect``."""
    with console(vk, node, name) as con:
        con.send(command)
        return con.wait_for(expect, timeout).group(1)


def start_writer(vk, node: str, name: str) -> None:
    """A loop in the guest that writes and syncs a counter file, printing ``W N``."""
    shell(vk, node, name, "(i=0; while true; do i=$((i+1)); echo $i > /cnt; sync;"
          " echo W$i; sleep 0.3; done) > /dev/console 2>&1 &", r"(W\d+)")


def writes(vk, node: str, name: str, timeout: float = 60) -> int:
    with console(vk, node, name) as con:
        return int(con.wait_for(r"W(\d+)\r?\n", timeout).group(1))


def stop_and_compare(vk, name: str) -> None:
    """Shut the guest down; its two images must be byte-identical."""
    vk.gnt("gnt-instance", "shutdown", "--timeout=60", name)
    paths = image_paths(vk, name)
    sums = {node: md5(path) for node, path in paths.items()}
    assert len(set(sums.values())) == 1, sums
    vk.gnt("gnt-instance", "startup", name)


@pytest.fixture(scope="module")
def guest(own_kvm_vcluster):
    vk = own_kvm_vcluster
    out = vk.gnt(*ADD, "-t", "mirror", "-n", "node2:node3", NAME).stdout
    assert "copying the disks to the secondary node" in out, out
    try:
        tick(vk, "node2", NAME)
        yield NAME
    finally:
        vk.gnt("gnt-instance", "remove", "-f", NAME, check=False)


def test_info_and_verify_disks_show_replication(own_kvm_vcluster, guest):
    vk = own_kvm_vcluster
    vk.gnt("gnt-instance", "activate-disks", guest)
    info = vk.gnt("gnt-instance", "info", guest).stdout
    assert re.search(r"on primary: \S+ in sync, status ok", info), info
    assert re.search(r"on secondary: \S+ in sync, status ok", info), info
    out = vk.gnt("gnt-cluster", "verify-disks").stdout
    assert "No disks need to be activated." in out, out


def test_live_migrate_back_and_forth_while_writing(own_kvm_vcluster, guest):
    vk = own_kvm_vcluster
    node = primary(vk, guest)
    start_writer(vk, node, guest)
    first = writes(vk, node, guest)
    for _ in range(3):
        src = primary(vk, guest)
        before = tick(vk, src, guest)
        proc = vk.gnt("gnt-instance", "migrate", "-f", guest)
        assert re.search(r"downtime \d+ ms", proc.stdout), proc.stdout
        dst = primary(vk, guest)
        assert dst != src and secondary(vk, guest) == src
        assert tick(vk, dst, guest, 60) > before  # a restarted guest counts from 1 again
    assert writes(vk, primary(vk, guest), guest) > first
    vk.gnt("gnt-instance", "activate-disks", guest)
    stop_and_compare(vk, guest)
    tick(vk, primary(vk, guest), guest)


def test_partitioned_secondary_degrades_then_resyncs(own_kvm_vcluster, guest):
    vk = own_kvm_vcluster
    node, sec = primary(vk, guest), secondary(vk, guest)
    start_writer(vk, node, guest)
    vcluster_api.partition(vk.base, sec)
    try:
        # The guest stalls at most until TCP gives up, then writes on alone.
        cut = writes(vk, node, guest)
        assert writes(vk, node, guest, 90) > cut
        deadline = time.monotonic() + 120
        while True:
            info = vk.gnt("gnt-instance", "info", guest).stdout
            if "*DEGRADED*" in info:
                assert listed(vk, guest) == ["Y", "degraded"]
                break
            assert time.monotonic() < deadline, info
            writes(vk, node, guest)  # the next guest write, not a fixed sleep
    finally:
        vcluster_api.heal(vk.base, sec)
    out = vk.gnt("gnt-instance", "activate-disks", guest).stdout
    info = vk.gnt("gnt-instance", "info", guest).stdout
    assert re.search(r"on primary: \S+ in sync", info), out + info
    assert listed(vk, guest) == ["N", "in_sync"]
    stop_and_compare(vk, guest)


def test_failover_from_killed_primary_keeps_data(own_kvm_vcluster, guest):
    vk = own_kvm_vcluster
    node, sec = primary(vk, guest), secondary(vk, guest)
    tick(vk, node, guest)
    vk.gnt("gnt-instance", "activate-disks", guest)  # in sync, secondary marked complete
    digest = shell(vk, node, guest, "dd if=/dev/urandom of=/data bs=1k count=256"
                   " 2>/dev/null; sync; md5sum /data", r"([0-9a-f]{32})\s+/data")
    vcluster_api.stop_node(vk.base, node)
    try:
        vk.gnt("gnt-instance", "failover", "-f", "--ignore-consistency", guest, timeout=300)
        assert primary(vk, guest) == sec
        tick(vk, sec, guest, BOOT_TIMEOUT)
        again = shell(vk, sec, guest, "md5sum /data", r"([0-9a-f]{32})\s+/data")
        assert again == digest
    finally:
        vcluster_api.start_node(vk.base, node)
    vk.gnt("gnt-instance", "activate-disks", guest)
    stop_and_compare(vk, guest)


def test_replace_secondary_elsewhere_then_in_place_while_running(own_kvm_vcluster, guest):
    """replace-disks -n to the third node, then -s there, with the guest writing; the
    old secondary's image goes; both copies match; the layout is restored after."""
    vk = own_kvm_vcluster
    node, sec = primary(vk, guest), secondary(vk, guest)
    third = next(n.short for n in vk.vc.nodes if n.short not in (node, sec))
    capable = vk.gnt("gnt-node", "list", "--no-headers", "-o", "vm_capable", third).stdout
    assert capable.strip() in ("Y", "True"), capable  # the master hosts no guest, but may
    old_image = image_paths(vk, guest)[sec]
    while tick(vk, node, guest) < 2:  # the shell reads the console from tick 1 on
        pass
    start_writer(vk, node, guest)
    try:
        out = vk.gnt("gnt-instance", "replace-disks", "-n", third, guest).stdout
        assert "STEP 5/5 Removing old storage" in out and "in sync" in out, out
        assert secondary(vk, guest) == third and primary(vk, guest) == node
        assert not os.path.exists(old_image)
        first = writes(vk, node, guest)
        out = vk.gnt("gnt-instance", "replace-disks", "-s", guest).stdout
        assert "STEP 5/5 Removing old storage" in out, out
        assert writes(vk, node, guest) > first  # the guest kept running and writing
        images = image_paths(vk, guest)
        assert not [f for f in os.listdir(os.path.dirname(images[third]))
                    if "_replaced-" in f]
        info = vk.gnt("gnt-instance", "info", guest).stdout
        assert re.search(r"on secondary: \S+ in sync", info), info
        stop_and_compare(vk, guest)
    finally:
        if secondary(vk, guest) != sec:
            vk.gnt("gnt-instance", "replace-disks", "-n", sec, guest, check=False)
    assert secondary(vk, guest) == sec
    tick(vk, node, guest)


def test_convert_to_file_and_back_while_stopped(own_kvm_vcluster, guest):
    vk = own_kvm_vcluster
    node, sec = primary(vk, guest), secondary(vk, guest)
    vk.gnt("gnt-instance", "shutdown", "--timeout=60", guest)
    try:
        paths = image_paths(vk, guest)
        digest = md5(paths[node])
        vk.gnt("gnt-instance", "modify", "-t", "file", guest)
        out = vk.gnt("gnt-instance", "list", "--no-headers", "-o", "disk_template,snodes",
                     guest).stdout.split()
        assert out == ["file"], out
        assert not os.path.exists(paths[sec]) and md5(paths[node]) == digest
        out = vk.gnt("gnt-instance", "modify", "-t", "mirror", "-n", sec, guest).stdout
        assert "copying the disks to the secondary node" in out, out
        assert secondary(vk, guest) == sec
        assert {md5(p) for p in image_paths(vk, guest).values()} == {digest}
    finally:
        vk.gnt("gnt-instance", "startup", guest)
    tick(vk, node, guest)
    info = vk.gnt("gnt-instance", "info", guest).stdout
    assert re.search(r"on secondary: \S+ in sync", info), info
