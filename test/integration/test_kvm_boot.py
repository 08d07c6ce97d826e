"""Real QEMU (TCG) boots of the busybox guest through the KVM driver.

Needs qemu-system-x86, busybox-static, e2fsprogs, socat (make deps) and the
guest kernel/initrd cache built by tools/guest-image.  Every test cleans up
its QEMU processes, taps, namespaces and files in a finally/fixture.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from corral.hypervisor import DiskSpec, InstanceSpec, get_hypervisor, hvparams
from corral.hypervisor.kvm import params as kp
from corral.hypervisor.kvm import runtime
from corral.utils import process
from corral.utils.console import GuestConsole as Serial

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BOOT_DEADLINE = 120.0
OS_PATH = "/sbin:/bin:/usr/sbin:/usr/bin"

pytestmark = pytest.mark.skipif(
    not shutil.which("qemu-system-x86_64") or not os.path.exists("/bin/busybox"),
    reason="qemu-system-x86 / busybox-static not installed (make deps)")


@pytest.fixture(scope="module")
def guest_image() -> tuple[str, str]:
    out = subprocess.run([os.path.join(REPO, "tools", "guest-image")], check=True,
                         stdout=subprocess.PIPE, text=True, timeout=600).stdout.split()
    return out[0], out[1]


@pytest.fixture
def node_root(monkeypatch):
    # short path: unix socket paths must stay under 108 bytes
    root = tempfile.mkdtemp(prefix="ckvm", dir="/tmp")
    monkeypatch.setenv("CORRAL_ROOT", root)
    try:
        yield root
    finally:
        for name in os.listdir(runtime.hv_dir()) if os.path.isdir(runtime.hv_dir()) else []:
            pid = runtime.running_pid(kp.instance_paths(runtime.hv_dir(), name), name)
            if pid:
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)


def make_disk(root: str, name: str) -> str:
    """Run the busybox OS create script the way the node daemon would."""
    path = os.path.join(root, name + ".disk0")
    with open(path, "wb") as fh:
        fh.truncate(64 << 20)
    env = {"PATH": OS_PATH, "OS_API_VERSION": "20", "OS_NAME": "busybox", "OS_VARIANT": "",
           "DEBUG_LEVEL": "0", "INSTANCE_NAME": name, "HYPERVISOR": "kvm",
           "DISK_COUNT": "1", "DISK_0_PATH": path, "DISK_0_ACCESS": "rw", "NIC_COUNT": "0"}
    osdir = os.path.join(REPO, "os-definitions", "busybox")
    subprocess.run(["./create"], cwd=osdir, env=env, check=True, timeout=120,
                   stdin=subprocess.DEVNULL)
    return path


def make_spec(name: str, image: tuple[str, str]) -> InstanceSpec:
    hv = hvparams.fill_hvparams("kvm", {}, None, {
        "kernel_path": image[0], "initrd_path": image[1], "root_path": "/dev/vda",
        "kernel_args": "ro", "kvm_flag": "disabled"})
    return InstanceSpec(name, "6c1d0a4e-0000-4000-8000-%012d" % 1, hv,
                        hvparams.fill_beparams({}, {"maxmem": 128}))




def qemu_pids(name: str) -> list[int]:
    """Live processes whose command line says ``-name <name>``."""
    return [int(e) for e in os.listdir("/proc") if e.isdigit()
            and runtime._cmdline_matches(int(e), name) and process.is_process_alive(int(e))]


@pytest.mark.slow
def test_boot_console_and_graceful_stop(guest_image, node_root) -> None:
    name = "bbx%d" % os.getpid()
    hv = get_hypervisor("kvm")
    inst = make_spec(name, guest_image)
    disk = make_disk(node_root, name)
    paths = runtime.paths_for(name)
    hv.start_instance(inst, [DiskSpec(disk)])
    serial = None
    try:
        assert hv.list_instances() == [name]
        assert hv.get_instance_info(name)["memory"] == 128
        console = hv.get_console(inst, "node1")
        assert console["kind"] == "ssh" and console["socket"] == paths.serial
        serial = Serial(console["socket"])
        deadline = time.monotonic() + BOOT_DEADLINE
        serial.wait_until(r"CORRAL-GUEST-UP", deadline)
        first = int(serial.wait_until(r"tick (\d+)", deadline).group(1))
        second = int(serial.wait_until(r"tick (\d+)", deadline).group(1))
        assert second > first
        serial.send("echo hello > /root/f; md5sum /root/f; sync; echo CMD-DONE-$((6*7))")
        serial.wait_until(r"CMD-DONE-42", deadline)
        assert "b1946ac92492d2347c6235b4d2611184  /root/f" in serial.buf
        serial.close()
        serial = None
        with open(paths.serial_log, errors="replace") as fh:
            log = fh.read()
        assert "CORRAL-GUEST-UP" in log and "tick 1" in log
        hv.stop_instance(name, timeout=90)
    finally:
        if serial:
            serial.close()
        hv.stop_instance(name, force=True)
    with open(paths.serial_log, errors="replace") as fh:
        assert "CORRAL-GUEST-DOWN poweroff" in fh.read(), "guest did not shut down cleanly"
    assert hv.list_instances() == [] and hv.get_instance_info(name) is None
    assert qemu_pids(name) == []
    assert not os.path.exists(paths.dir)
    fsck = subprocess.run(["e2fsck", "-fn", disk], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    assert fsck.returncode == 0, fsck.stdout
    cat = subprocess.run(["debugfs", "-R", "cat /root/f", disk], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    assert cat.stdout == "hello\n"


@pytest.mark.slow
def test_killed_behind_our_back(guest_image, node_root) -> None:
    name = "kil%d" % os.getpid()
    hv = get_hypervisor("kvm")
    inst = make_spec(name, guest_image)
    disk = make_disk(node_root, name)
    hv.start_instance(inst, [DiskSpec(disk)])
    try:
        pid = hv.get_instance_info(name)["pid"]
        os.kill(pid, signal.SIGKILL)
        assert runtime.wait_pid_exit(pid, 30)
        assert hv.list_instances() == [] and hv.get_instance_info(name) is None
        hv.start_instance(inst, [DiskSpec(disk)])     # stale files cleaned
        assert hv.get_instance_info(name)["pid"] != pid
        with pytest.raises(Exception, match="already running"):
            hv.start_instance(inst, [DiskSpec(disk)])
        before = hv.get_instance_info(name)["pid"]
        hv.reboot_instance(inst, [DiskSpec(disk)], "hard")
        assert hv.get_instance_info(name)["pid"] not in (0, before)
    finally:
        hv.stop_instance(name, force=True)
    assert hv.list_instances() == [] and qemu_pids(name) == []
    assert not os.path.exists(runtime.paths_for(name).dir)


TAP_SCRIPT = r"""
import os, sys, subprocess
from corral.hypervisor.base import NicSpec
from corral.hypervisor.kvm import netdev
from corral import errors
fd, tap = netdev.open_tap()
netdev.configure_tap(tap, NicSpec("aa:00:00:12:34:56", mode="bridged", link="cbr0"))
link = subprocess.run(["ip", "-o", "link", "show", "dev", tap], capture_output=True, text=True)
assert "master cbr0" in link.stdout and "fe:00:00:12:34:56" in link.stdout, link.stdout
fd2, tap2 = netdev.open_tap()
netdev.configure_tap(tap2, NicSpec("aa:00:00:12:34:57", ip="10.99.0.7", mode="routed"))
route = subprocess.run(["ip", "route", "show", "10.99.0.7"], capture_output=True, text=True)
assert tap2 in route.stdout, route.stdout
try:
    netdev.configure_tap(tap2, NicSpec("aa:00:00:12:34:58", mode="bridged", link="nobr"))
    raise SystemExit("missing bridge accepted")
except errors.HypervisorError as err:
    assert "nobr" in str(err)
os.close(fd); os.close(fd2)
assert not netdev.link_exists(tap) and not netdev.link_exists(tap2)
print("TAPS-OK")
"""


def test_tap_setup_in_netns() -> None:
    if not shutil.which("ip") or not os.path.exists("/dev/net/tun"):
        pytest.skip("iproute2 or /dev/net/tun missing")
    ns = "ckvm%d" % os.getpid()
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for cmd in (["ip", "link", "add", "cbr0", "type", "bridge"],
                    ["ip", "link", "set", "cbr0", "up"]):
            subprocess.run(["ip", "netns", "exec", ns] + cmd, check=True)
        res = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", TAP_SCRIPT],
                             capture_output=True, text=True, timeout=60)
        assert "TAPS-OK" in res.stdout, res.stdout + res.stderr
    finally:
        subprocess.run(["ip", "netns", "del", ns])
