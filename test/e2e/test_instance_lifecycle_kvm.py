"""An instance's whole life on a kvm vcluster (issue 4 acceptance).

Create with the busybox OS on a `file` disk, see its console marker, reboot
(marker again), shut down, grow the disk, rename, remove: afterwards the node
has no QEMU process, tap, disk file or runtime file of it.  Uses the session
``kvm_vcluster``; node3 hosts the guest.
"""

import os
import re
import subprocess

import pytest

from corral.utils.console import GuestConsole

pytestmark = pytest.mark.slow

BOOT_TIMEOUT = 240.0
NODE = "node3"


def hv_dir(vk) -> str:
    return os.path.join(vk.node(NODE).root, "var", "run", "corral", "kvm-hypervisor")


def qemu_pids(vk, name: str) -> list[int]:
    root = vk.node(NODE).root.encode() + b"/"
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as fh:
                cmd = fh.read()
        except OSError:
            continue
        if b"\0-name\0%s\0" % name.encode() in cmd and root in cmd:
            found.append(int(entry))
    return found


def taps(vk) -> list[str]:
    out = subprocess.run(["ip", "-n", vk.node(NODE).ns, "-o", "link", "show", "type", "tun"],
                         capture_output=True, text=True, check=True).stdout
    return re.findall(r"^\d+: ([^:@]+)", out, re.M)


def node_files(vk, name: str) -> list[str]:
    """Files on the node that still carry the instance's name."""
    found = []
    for top, _dirs, files in os.walk(vk.node(NODE).root):
        if "/var/log/" in top + "/":
            continue  # logs (OS install log, kept serial log) are meant to stay
        found += [os.path.join(top, f) for f in files if name in f or name in top]
    return found


def test_file_instance_lifecycle(kvm_vcluster):
    vk, name, renamed = kvm_vcluster, "life1.vk.test", "life2.vk.test"
    vk.gnt("gnt-instance", "add", "-t", "file", "-s", "64m", "-o", "busybox", "-n", NODE,
           "--net", "0:link=br0", "-B", "maxmem=128,minmem=128", "--no-name-check",
           "--no-ip-check", name)
    try:
        sock = os.path.join(hv_dir(vk), name, "serial.sock")
        log = os.path.join(hv_dir(vk), "log", name + ".serial.log")
        with GuestConsole(sock) as con:
            if "CORRAL-GUEST-UP" not in open(log, errors="replace").read():
                con.wait_for("CORRAL-GUEST-UP", BOOT_TIMEOUT)
        assert len(taps(vk)) == 1
        vk.gnt("gnt-instance", "reboot", "--type=hard", name)
        with GuestConsole(sock) as con:
            con.wait_for("CORRAL-GUEST-UP", BOOT_TIMEOUT)
        vk.gnt("gnt-instance", "shutdown", "--timeout=30", name)
        assert qemu_pids(vk, name) == [] and taps(vk) == []
        status = vk.gnt("gnt-instance", "list", "--no-headers", "-o", "status", name).stdout
        assert status.strip() == "ADMIN_down"
        vk.gnt("gnt-instance", "grow-disk", name, "0", "32m")
        sizes = vk.gnt("gnt-instance", "list", "--no-headers", "--units=m", "-o", "disk.sizes",
                       name).stdout
        assert sizes.strip() == "96"
        vk.gnt("gnt-instance", "rename", "--no-name-check", "--no-ip-check", name, renamed)
        name = renamed
        vk.gnt("gnt-instance", "startup", name)
        with GuestConsole(os.path.join(hv_dir(vk), name, "serial.sock")) as con:
            con.wait_for(r"tick \d+", BOOT_TIMEOUT)
    finally:
        vk.gnt("gnt-instance", "remove", "-f", name, check=False)
    assert qemu_pids(vk, name) == []
    assert taps(vk) == []
    assert node_files(vk, name) == []
    assert vk.gnt("gnt-instance", "list", "--no-headers", "-o", "name").stdout.count(name) == 0
