"""A real guest (QEMU under TCG) through gnt-instance on a one-node kvm cluster.

Needs qemu-system-x86, busybox-static, e2fsprogs, socat and the guest
kernel/initrd from tools/guest-image (make deps).  The cluster root is short
(/tmp/ciXXXX) because QEMU's unix socket paths must stay under 108 bytes.
"""

import os
import re
import select
import shutil
import signal
import subprocess
import sys

import pytest

from corral.utils import process
from corral.utils.console import GuestConsole

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import destroy_local, init_cluster, new_cluster  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BOOT_TIMEOUT = 180.0
MARKER = "CORRAL-GUEST-UP"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not shutil.which("qemu-system-x86_64") or not os.path.exists("/bin/busybox")
    or not shutil.which("socat"), reason="qemu-system-x86 / busybox-static / socat missing")]


@pytest.fixture
def kvm_cluster():
    out = subprocess.run([os.path.join(REPO, "tools", "guest-image")], check=True,
                         stdout=subprocess.PIPE, text=True, timeout=900).stdout.split()
    kernel, initrd = out[0], out[1]
    cl = new_cluster("ci")
    root = cl.root
    try:
        init_cluster(cl, "--enabled-hypervisors=kvm", "--enabled-disk-templates=file",
                          "-H", "kvm:kernel_path=%s,initrd_path=%s,root_path=/dev/vda,"
                          "kvm_flag=disabled,serial_console=true" % (kernel, initrd))
        yield cl
    finally:
        cl.run("corral-daemon-util", "stop-all", check=False)
        for pid in qemu_pids(root):
            os.kill(pid, signal.SIGKILL)
        destroy_local(cl)


def hv_dir(cluster) -> str:
    return cluster.path("var", "run", "corral", "kvm-hypervisor")


def qemu_pids(root: str) -> list[int]:
    """QEMU processes whose command line points into this cluster's root."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as fh:
                cmd = fh.read()
        except OSError:
            continue
        prog = os.path.basename(cmd.split(b"\0")[0])
        if (b"qemu" in prog or b"kvm" in prog) and root.encode() in cmd:
            out.append(int(entry))
    return out


def wait_boots(cluster, name: str, count: int) -> None:
    """Return once the guest printed its marker ``count`` times (log, then socket)."""
    sock = os.path.join(hv_dir(cluster), name, "serial.sock")
    log = os.path.join(hv_dir(cluster), "log", name + ".serial.log")
    with GuestConsole(sock) as console:
        with open(log, errors="replace") as fh:
            if fh.read().count(MARKER) >= count:
                return
        console.wait_for(re.escape(MARKER), BOOT_TIMEOUT)


def status(cluster, name: str) -> str:
    return cluster.run("gnt-instance", "list", "--no-headers", "-o", "status",
                       name).stdout.strip()


def test_kvm_instance_lifecycle(kvm_cluster):
    cl = kvm_cluster
    cl.run("gnt-instance", "add", "--no-name-check", "--no-ip-check", "-t", "file",
           "--disk", "0:size=64m", "-o", "busybox", "--no-nics", "-B", "maxmem=128", "vm1",
           timeout=300)
    wait_boots(cl, "vm1", 1)
    assert status(cl, "vm1") == "running"
    shown = cl.run("gnt-instance", "console", "--show-cmd", "vm1").stdout
    sock = os.path.join(hv_dir(cl), "vm1", "serial.sock")
    assert "UNIX-CONNECT:%s" % sock in shown and shown.startswith("socat ")

    cl.run("gnt-instance", "reboot", "vm1", timeout=300)
    wait_boots(cl, "vm1", 2)

    pid = process.read_pid_file(os.path.join(hv_dir(cl), "vm1", "pid"))
    os.kill(pid, signal.SIGKILL)
    fd = os.pidfd_open(pid)
    try:
        select.select([fd], [], [], 30)
    finally:
        os.close(fd)
    assert status(cl, "vm1") == "ERROR_down"
    cl.run("gnt-instance", "startup", "vm1", timeout=300)
    wait_boots(cl, "vm1", 3)
    assert status(cl, "vm1") == "running"

    cl.run("gnt-instance", "shutdown", "--timeout=90", "vm1", timeout=300)
    assert status(cl, "vm1") == "ADMIN_down" and qemu_pids(cl.root) == []
    (disk,) = os.listdir(cl.path("srv", "file", "vm1"))
    cl.run("gnt-instance", "grow-disk", "vm1", "0", "32m")
    assert os.path.getsize(cl.path("srv", "file", "vm1", disk)) == 96 << 20
    cl.run("gnt-instance", "rename", "--no-name-check", "--no-ip-check", "vm1", "vm2")
    assert os.listdir(cl.path("srv", "file", "vm2")) == [disk]

    cl.run("gnt-instance", "start", "vm2", timeout=300)
    wait_boots(cl, "vm2", 1)
    cl.run("gnt-instance", "remove", "-f", "--shutdown-timeout=90", "vm2", timeout=300)
    assert qemu_pids(cl.root) == []
    assert not os.path.exists(cl.path("srv", "file", "vm2"))
    assert not os.path.exists(os.path.join(hv_dir(cl), "vm2"))
    assert cl.run("gnt-instance", "list", "--no-headers").stdout == ""
    taps = subprocess.run(["ip", "-o", "link", "show", "type", "tun"], capture_output=True,
                          text=True).stdout
    assert "vm2" not in taps
