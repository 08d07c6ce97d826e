"""A shared multi-node vcluster (tools/vcluster) for the end-to-end tests.

``vcluster`` is SESSION-scoped: one 3-node cluster (fake hypervisor) is built
once and destroyed at the end, also on failure.  Tests using it must leave it
as they found it (node online, in the cluster, network healed); the master
may move (master failover), so always ask ``current_master()``.  Tests that
need another cluster build their own with ``vcluster_api.create`` in a
``try/finally``.
"""

import json
import os
import subprocess
import sys
import tempfile

import pytest

from corral.tools import vcluster as vcluster_api

BIN = os.path.dirname(sys.executable)


class VClusterFixture:
    """Runs gnt-* commands against a vcluster, from this namespace or on its nodes."""

    def __init__(self, base: str) -> None:
        self.base = base

    @property
    def vc(self) -> vcluster_api.VCluster:
        return vcluster_api.load(self.base)

    def node(self, ident: str) -> vcluster_api.Node:
        return self.vc.node(ident)

    def current_master(self) -> vcluster_api.Node:
        return vcluster_api.current_master(self.vc)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
        env.update(vcluster_api.env(self.base))
        return env

    def gnt(self, *argv: str, check: bool = True, timeout: float = 300
            ) -> subprocess.CompletedProcess:
        """A gnt-* command in this namespace, talking to the current master."""
        proc = subprocess.run(list(argv), env=self.env(), capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError("%s failed (%d):\nstdout: %s\nstderr: %s" %
                                 (" ".join(argv), proc.returncode, proc.stdout, proc.stderr))
        return proc

    def on(self, ident: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        """A command run on node ``ident`` (its namespace and environment)."""
        vc = self.vc
        return vcluster_api.run_on(vc, vc.node(ident), list(argv), check=check)

    def data_path(self, ident: str, *parts: str) -> str:
        return os.path.join(self.node(ident).root, "var", "lib", "corral", *parts)

    def config_serial(self, ident: str) -> int | None:
        try:
            with open(self.data_path(ident, "config.data")) as fh:
                return json.load(fh)["serial_no"]
        except FileNotFoundError:
            return None

    def ssconf(self, ident: str, key: str) -> str | None:
        try:
            with open(self.data_path(ident, "ssconf_" + key)) as fh:
                return fh.read().strip()
        except FileNotFoundError:
            return None

    def roles(self) -> dict[str, str]:
        out = self.gnt("gnt-node", "list", "--no-headers", "-o", "name,role").stdout
        return dict(line.split() for line in out.splitlines())


@pytest.fixture(scope="session")
def vcluster():
    if os.geteuid() != 0:
        pytest.skip("vcluster needs root")
    base = tempfile.mkdtemp(prefix="vc", dir="/tmp")
    try:
        vcluster_api.create(base, nodes=3)
        yield VClusterFixture(base)
    finally:
        vcluster_api.destroy(base)


def _kvm_vcluster(prefix: str):
    """Build a 3-node kvm vcluster (TCG guests, bridge br0 for NICs, ``DIR/shared``
    for sharedfile), yield it, destroy it whatever happened."""
    import shutil
    if os.geteuid() != 0:
        pytest.skip("vcluster needs root")
    if not shutil.which("qemu-system-x86_64") or not os.path.exists("/bin/busybox") \
            or not shutil.which("socat"):
        pytest.skip("qemu-system-x86 / busybox-static / socat missing")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run([os.path.join(repo, "tools", "guest-image")], check=True,
                   stdout=subprocess.DEVNULL, timeout=900)
    base = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    try:
        vcluster_api.create(base, nodes=3, hypervisor="kvm")
        yield VClusterFixture(base)
    finally:
        vcluster_api.destroy(base)


@pytest.fixture(scope="session")
def kvm_vcluster():
    """The kvm vcluster shared by the kvm end-to-end tests."""
    yield from _kvm_vcluster("vk")


@pytest.fixture(scope="module")
def own_kvm_vcluster():
    """A kvm vcluster of the module's own, for scenarios that must not inherit
    what earlier modules did to the shared one (the mirror tests)."""
    yield from _kvm_vcluster("vm")
