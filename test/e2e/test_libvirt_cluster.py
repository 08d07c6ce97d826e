"""An instance through libvirt on a 2-node ``--hypervisor libvirt`` vcluster (issue 8).

Each node runs its own libvirtd (tools/vcluster).  The busybox guest (QEMU TCG)
is added on node1 on a ``sharedfile`` disk (the same directory on both nodes:
libvirt migrates memory, Corral's storage makes the disk visible), its console
ticks are seen, it is live-migrated peer to peer to node2, where the same boot
keeps ticking (the counter goes on, no new boot marker), then it is shut down
and removed: afterwards no domain, QEMU or runtime dir of it is left, and
destroying the vcluster leaves no libvirtd, namespace or mount.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

from corral.tools import vcluster as vcluster_api
from corral.tools import vcluster_libvirt as lvsetup
from corral.utils.console import GuestConsole

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("qemu-system-x86_64")
                       or not shutil.which("libvirtd", path=os.environ.get("PATH", "") +
                                           ":/usr/sbin")
                       or not os.path.exists("/bin/busybox"),
                       reason="needs root, libvirt-daemon(-driver-qemu), qemu-system-x86, "
                              "busybox-static (make deps)"),
]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BOOT_TIMEOUT = 240.0
CMD_TIMEOUT = 600.0
NAME = "lvguest1"
MIN_TICK = 3   # migrate only after a few ticks: a rebooted guest would count from 1 again


class LibvirtCluster:
    """gnt-* against the vcluster's master, and facts about its nodes."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.vc = vcluster_api.load(base)

    def gnt(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
        env.update(vcluster_api.env(self.base))
        proc = subprocess.run(list(argv), env=env, capture_output=True, text=True,
                              timeout=CMD_TIMEOUT)
        if check and proc.returncode != 0:
            raise AssertionError("%s failed (%d):\nstdout: %s\nstderr: %s" %
                                 (" ".join(argv), proc.returncode, proc.stdout, proc.stderr))
        return proc

    def uri(self, node: str) -> str:
        return lvsetup.libvirt_uri(vcluster_api.libvirt_dir(self.vc.node(node)))

    def domains(self, node: str) -> dict[str, bool]:
        """{domain name: active} as the node's own libvirtd sees it."""
        import libvirt
        conn = libvirt.open(self.uri(node))
        try:
            return {d.name(): bool(d.isActive()) for d in conn.listAllDomains()}
        finally:
            conn.close()

    def qemus(self, node: str) -> int:
        """QEMU processes in the node's network namespace."""
        return sum(name.startswith("qemu-system") for name in self.processes(node))

    def processes(self, node: str) -> list[str]:
        """Names of the processes in the node's network namespace."""
        out = subprocess.run(["ip", "netns", "pids", self.vc.node(node).ns],
                             capture_output=True, text=True, check=True).stdout
        names = []
        for pid in out.split():
            try:
                with open("/proc/%s/comm" % pid) as fh:
                    names.append(fh.read().strip())
            except OSError:
                continue
        return sorted(names)

    def runtime_dir(self, node: str) -> str:
        return os.path.join(self.vc.node(node).root, "var", "run", "corral",
                            "libvirt-hypervisor", NAME)

    def console_socket(self) -> str:
        """The serial console socket the cluster names for the instance (it moves)."""
        out = self.gnt("gnt-instance", "console", "--show-cmd", NAME).stdout
        match = re.search(r"UNIX-CONNECT:([^\s']+)", out)
        assert match, out
        return match.group(1)

    def where(self) -> list[str]:
        out = self.gnt("gnt-instance", "list", "--no-headers", "--separator=|", "-o",
                       "hypervisor,pnode,status", NAME).stdout
        return out.strip().split("|")


def next_tick(con: GuestConsole, timeout: float = BOOT_TIMEOUT) -> int:
    """The next whole ``tick N`` line (the socket may split "tick 1" from its "2")."""
    return int(con.wait_for(r"tick (\d+)\r?\n", timeout).group(1))


def _leftovers(namespaces: list[str], pids: list[int], base: str) -> list[str]:
    found = ["netns %s" % ns for ns in namespaces if os.path.exists("/run/netns/" + ns)]
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as fh:
                if fh.read().split()[2] != "Z":
                    found.append("libvirtd pid %d" % pid)
        except OSError:
            continue
    with open("/proc/self/mounts") as fh:
        found += ["mount %s" % line.split()[1] for line in fh if base in line.split()[1]]
    return found + (["dir %s" % base] if os.path.exists(base) else [])


@pytest.fixture(scope="module")
def lv_cluster():
    try:
        import libvirt  # noqa: F401
    except ImportError:
        pytest.fail("libvirt-python is missing (make deps)")
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "guest-image")], check=True,
                   stdout=subprocess.DEVNULL, timeout=900)
    base = tempfile.mkdtemp(prefix="vl", dir="/tmp")
    namespaces: list[str] = []
    pids: list[int] = []
    try:
        vc = vcluster_api.create(base, nodes=2, hypervisor="libvirt")
        namespaces = [n.ns for n in vc.nodes] + [vc.hub_ns]
        pids = [lvsetup.pid_of(vcluster_api.libvirt_dir(n)) for n in vc.nodes]
        assert all(pids), pids
        yield LibvirtCluster(base)
    finally:
        vcluster_api.destroy(base)
    assert _leftovers(namespaces, pids, base) == []


def test_add_console_migrate_shutdown_remove(lv_cluster):
    lc = lv_cluster
    lc.gnt("gnt-instance", "add", "-t", "sharedfile", "-s", "64m", "-o", "busybox",
           "-n", "node1", "--net", "0:link=br0", "-B", "maxmem=128,minmem=128",
           "--no-name-check", "--no-ip-check", NAME)
    try:
        assert lc.where() == ["libvirt", lc.vc.node("node1").name, "running"]
        assert lc.domains("node1") == {NAME: True} and lc.domains("node2") == {}
        with GuestConsole(lc.console_socket()) as con:
            before = next_tick(con)
            while before < MIN_TICK:
                before = next_tick(con)

        out = lc.gnt("gnt-instance", "migrate", "-f", "-n", "node2", NAME).stdout
        assert "migration completed" in out, out
        assert lc.where() == ["libvirt", lc.vc.node("node2").name, "running"]
        assert lc.domains("node2") == {NAME: True} and lc.domains("node1") == {}
        assert lc.qemus("node2") == 1 and lc.qemus("node1") == 0
        with GuestConsole(lc.console_socket()) as con:
            after = next_tick(con, 60.0)
            assert after > before, "tick %d before, %d after: the guest restarted" % (
                before, after)
            assert next_tick(con, 60.0) > after
            assert "CORRAL-GUEST-UP" not in con.buf

        lc.gnt("gnt-instance", "shutdown", "--timeout=120", NAME)
        assert lc.where() == ["libvirt", lc.vc.node("node2").name, "ADMIN_down"]
        assert lc.qemus("node2") == 0 and lc.qemus("node1") == 0
    finally:
        lc.gnt("gnt-instance", "remove", "-f", NAME, check=False)
    assert NAME not in lc.gnt("gnt-instance", "list", "--no-headers", "-o", "name").stdout
    assert lc.domains("node1") == {} and lc.domains("node2") == {}
    assert not os.path.exists(lc.runtime_dir("node1"))
    assert not os.path.exists(lc.runtime_dir("node2"))
    assert [f for f in os.listdir(lc.vc.shared_dir) if NAME in f] == []


def test_unreachable_libvirtd_is_reported_and_start_node_restarts_it(lv_cluster):
    lc = lv_cluster
    lvdir = vcluster_api.libvirt_dir(lc.vc.node("node2"))
    old = lvsetup.pid_of(lvdir)
    os.kill(old, signal.SIGKILL)            # libvirtd alone dies: the node daemon says so
    proc = lc.gnt("gnt-cluster", "verify", "--error-codes", check=False)
    assert proc.returncode == 1
    assert ("ERROR:ENODEHV:node:%s:hypervisor libvirt verify failure: 'Cannot connect to "
            "libvirt at %s" % (lc.vc.node("node2").name, lc.uri("node2"))) in proc.stdout, \
        proc.stdout
    vcluster_api.stop_node(lc.base, "node2")  # the whole node: nothing of it runs
    try:
        assert lc.processes("node2") == []
    finally:
        vcluster_api.start_node(lc.base, "node2")
    new = lvsetup.pid_of(lvdir)
    assert new and new != old and "libvirtd" in lc.processes("node2")
    assert lc.domains("node2") == {}
    proc = lc.gnt("gnt-cluster", "verify", check=False)
    assert "verify failure" not in proc.stdout and "ENODERPC" not in proc.stdout, proc.stdout
