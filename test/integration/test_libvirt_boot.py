"""The libvirt driver against real, private libvirtds booting the busybox guest (TCG).

Each "node" is a network namespace with a bridge and its own libvirtd, run
without systemd (PLATFORM.md §4) exactly as tools/vcluster runs one per node
(corral.tools.vcluster_libvirt: user libvirt-qemu, our own config files,
/etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/log/libvirt,
/var/cache/libvirt bind-mounted from a temp dir in a private mount
namespace).  The test process reaches each daemon from the host through its
socket:
``qemu+unix:///system?socket=<dir>/run/libvirt-sock`` (set as the node's
$CORRAL_LIBVIRT_URI).  Everything (domains, QEMUs, daemons, namespaces,
dirs) is removed in fixture finalizers.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from corral.hypervisor import DiskSpec, InstanceSpec, NicSpec, get_hypervisor, hvparams
from corral.tools import vcluster_libvirt as lvsetup
from corral.utils import process
from corral.utils.console import GuestConsole as Serial

import libvirt  # noqa: E402  (installed by make deps: libvirt-python)

from corral.hypervisor.libvirt import conn as lvc  # noqa: E402
from corral.hypervisor.libvirt import driver  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OS_PATH = "/sbin:/bin:/usr/sbin:/usr/bin"
DEADLINE = 180.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which("libvirtd") or not shutil.which("qemu-system-x86_64")
                       or not os.path.exists("/bin/busybox") or os.geteuid() != 0,
                       reason="needs root, libvirt-daemon(-driver-qemu), qemu-system-x86, "
                              "busybox-static (make deps)"),
]


class Node:
    """One netns with bridge br0 at ``ip`` and a private libvirtd."""

    def __init__(self, tag: str, ip: str) -> None:
        self.ns = "clv%s%d" % (tag, os.getpid())
        self.ip = ip
        self.work = tempfile.mkdtemp(prefix="clvd%s" % tag, dir="/tmp")
        self.uri = lvsetup.libvirt_uri(self.work)
        self.root = os.path.join(self.work, "root")     # the node's CORRAL_ROOT
        self.pid = 0

    def ns_run(self, *argv: str) -> None:
        subprocess.run(["ip", "netns", "exec", self.ns] + list(argv), check=True)

    def setup_net(self) -> None:
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        self.ns_run("ip", "link", "set", "lo", "up")
        self.ns_run("ip", "link", "add", "br0", "type", "bridge")
        # A fixed MAC, or the bridge adopts the guest tap's (fe:...) when that is
        # the lowest, on both nodes during the migration (see vcluster._pin_bridge_mac).
        self.ns_run("ip", "link", "set", "br0", "address",
                    "02:00:%02x:%02x:%02x:%02x" % tuple(int(o) for o in self.ip.split(".")))
        self.ns_run("ip", "addr", "add", self.ip + "/24", "dev", "br0")
        self.ns_run("ip", "link", "set", "br0", "up")

    def start_libvirtd(self) -> None:
        os.makedirs(self.root, exist_ok=True)
        self.pid = lvsetup.start(self.ns, self.work, self.ip)
        assert self.pid and process.is_process_alive(self.pid)

    def stop(self) -> None:
        try:
            conn = libvirt.open(self.uri)
            for dom in conn.listAllDomains():
                if dom.isActive():
                    dom.destroy()
                if dom.isPersistent():
                    dom.undefine()
            conn.close()
        except libvirt.libvirtError:
            pass
        lvc.forget(self.uri)
        if self.pid:
            process.kill_and_wait(self.pid, timeout=15)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        shutil.rmtree(self.work, ignore_errors=True)


@pytest.fixture(scope="module")
def guest_image() -> tuple[str, str]:
    out = subprocess.run([os.path.join(REPO, "tools", "guest-image")], check=True,
                         stdout=subprocess.PIPE, text=True, timeout=600).stdout.split()
    return out[0], out[1]


def qemu_pids(name: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as fh:
                if ("guest=%s," % name).encode() in fh.read():
                    out.append(int(entry))
        except OSError:
            pass
    return out


@pytest.fixture
def nodes(monkeypatch):
    """Two nodes whose bridges are joined by a veth pair (one L2 segment)."""
    made = [Node("a", "10.89.0.1"), Node("b", "10.89.0.2")]
    names: list[str] = []
    try:
        for node in made:
            node.setup_net()
        subprocess.run(["ip", "link", "add", "cva%d" % os.getpid(), "netns", made[0].ns, "type",
                        "veth", "peer", "cvb%d" % os.getpid(), "netns", made[1].ns], check=True)
        for node, dev in ((made[0], "cva%d"), (made[1], "cvb%d")):
            node.ns_run("ip", "link", "set", dev % os.getpid(), "master", "br0", "up")
        for node in made:
            node.start_libvirtd()
        yield made, names
    finally:
        for node in made:
            node.stop()
        for name in names:
            for pid in qemu_pids(name):
                process.kill_and_wait(pid, timeout=10, sig=signal.SIGKILL)


def on(monkeypatch, node: Node) -> None:
    """Make the driver act as ``node`` (its CORRAL_ROOT and its libvirtd)."""
    monkeypatch.setenv("CORRAL_ROOT", node.root)
    monkeypatch.setenv(driver.URI_ENV, node.uri)


def make_disk(path: str, name: str) -> str:
    """Run the busybox OS create script the way the node daemon would."""
    with open(path, "wb") as fh:
        fh.truncate(64 << 20)
    env = {"PATH": OS_PATH, "OS_API_VERSION": "20", "OS_NAME": "busybox", "OS_VARIANT": "",
           "DEBUG_LEVEL": "0", "INSTANCE_NAME": name, "HYPERVISOR": "libvirt",
           "DISK_COUNT": "1", "DISK_0_PATH": path, "DISK_0_ACCESS": "rw", "NIC_COUNT": "0"}
    subprocess.run(["./create"], cwd=os.path.join(REPO, "os-definitions", "busybox"), env=env,
                   check=True, timeout=120, stdin=subprocess.DEVNULL)
    return path




def boot_spec(name: str, image: tuple[str, str]) -> InstanceSpec:
    params = hvparams.fill_hvparams("libvirt", {}, None, {
        "kernel_path": image[0], "initrd_path": image[1], "root_path": "/dev/vda",
        "domain_type": "qemu"})
    return InstanceSpec(name, "6c1d0a4e-0000-4000-8000-%012d" % os.getpid(), params,
                        hvparams.fill_beparams({}, {"maxmem": 128}),
                        nics=[NicSpec("aa:00:0a:59:00:%02x" % (os.getpid() % 250),
                                      link="br0")], hypervisor="libvirt")


def test_boot_ticks_migrate_and_shutdown(guest_image, nodes, monkeypatch) -> None:
    (node_a, node_b), names = nodes
    name = "lvbb%d" % os.getpid()
    names.append(name)
    hv = get_hypervisor("libvirt")
    inst = boot_spec(name, guest_image)
    disk = make_disk(os.path.join(node_a.work, name + ".disk0"), name)   # seen by both
    on(monkeypatch, node_a)
    log_path = driver.paths_for(name).serial_log
    hv.start_instance(inst, [DiskSpec(disk)])
    deadline = time.monotonic() + DEADLINE
    serial = Serial(hv.get_console(inst, "a")["socket"])
    try:
        assert hv.list_instances() == [name]
        assert hv.get_instance_info(name)["state"] == "running"
        serial.wait_until(r"CORRAL-GUEST-UP", deadline)
        first = int(serial.wait_until(r"tick (\d+)", deadline).group(1))

        # live migration a -> b, peer to peer over the secondary addresses
        info = hv.migration_info(inst)
        on(monkeypatch, node_b)
        hv.accept_instance(inst, info, node_b.ip)
        on(monkeypatch, node_a)
        hv.migrate_instance(inst, node_b.ip, live=True)
        from corral.hypervisor.libvirt import migration
        assert migration._jobs[name].done.wait(DEADLINE)
        status = hv.get_migration_status(inst)
        assert status["status"] == "completed", status
        hv.finalize_migration_src(inst, success=True, live=True)
        assert lvc.lookup(lvc.connect(node_a.uri), name) is None
        on(monkeypatch, node_b)
        hv.finalize_migration_dst(inst, "", success=True)
        assert hv.list_instances() == [name]
        serial.close()
        serial = Serial(hv.get_console(inst, "b")["socket"])
        # the UART may re-send what was in its FIFO at switch-over: wait for a newer tick
        later = first
        while later <= first:
            later = int(serial.wait_until(r"tick (\d+)", deadline).group(1))
        serial.close()
        serial = None
        hv.stop_instance(name, timeout=90)
    finally:
        if serial:
            serial.close()
        for node in (node_b, node_a):
            on(monkeypatch, node)
            hv.stop_instance(name, force=True)
    log = open(log_path, errors="replace").read()
    assert "tick 1" in log and "CORRAL-GUEST-DOWN poweroff" in log, log[-2000:]
    assert hv.list_instances() == [] and qemu_pids(name) == []
