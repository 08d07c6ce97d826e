"""Hypervisors that cannot work on a node, and bad hvparams, through the CLI (issue 8).

A one-node cluster with fake, libvirt and xen-pvm enabled, where the node's
libvirt is unreachable ($CORRAL_LIBVIRT_URI names a socket nobody serves) and
this machine is no Xen dom0: ``gnt-cluster verify`` reports each as Ganeti's
ENODEHV, ``gnt-node info``/``list`` still answer, and instance creation with a
broken hypervisor or bad hvparams fails with a clear message before anything
(config entry, disk, domain, runtime file) exists.
"""

import json
import os
import re

import pytest

from conftest import destroy_local, init_cluster, new_cluster

ADD = ("gnt-instance", "add", "--no-name-check", "--no-ip-check", "-o", "busybox",
       "--no-nics")
NO_DOM0 = not os.path.exists("/proc/xen/capabilities")
# The module shares one cluster: keep its tests on one xdist worker (make check-fast).
pytestmark = pytest.mark.xdist_group("hypervisor-problems")


@pytest.fixture(scope="module")
def hv_cluster():
    cl = new_cluster()
    sock = cl.path("nolibvirt", "libvirt-sock")
    cl.env["CORRAL_LIBVIRT_URI"] = "qemu+unix:///system?socket=%s" % sock
    try:
        init_cluster(cl, "--enabled-hypervisors=fake,libvirt,xen-pvm")
        yield cl
    finally:
        destroy_local(cl)


def instance_names(cl) -> list[str]:
    with open(cl.path("var", "lib", "corral", "config.data")) as fh:
        return sorted(i["name"] for i in json.load(fh)["instances"].values())


def test_verify_reports_each_broken_hypervisor(hv_cluster):
    proc = hv_cluster.run("gnt-cluster", "verify", check=False)
    assert proc.returncode == 1, proc.stdout
    uri = hv_cluster.env["CORRAL_LIBVIRT_URI"]
    assert ("  - ERROR: node localhost: hypervisor libvirt verify failure: 'Cannot connect "
            "to libvirt at %s: " % uri) in proc.stdout, proc.stdout
    if NO_DOM0:
        assert "  - ERROR: node localhost: hypervisor xen-pvm verify failure: '" in proc.stdout
        assert "Xen dom0" in proc.stdout or "Xen toolstack" in proc.stdout
    assert "hypervisor fake verify failure" not in proc.stdout
    coded = hv_cluster.run("gnt-cluster", "verify", "--error-codes", check=False).stdout
    assert "ERROR:ENODEHV:node:localhost:hypervisor libvirt verify failure: '" in coded
    ignored = hv_cluster.run("gnt-cluster", "verify", "--ignore-errors=ENODEHV", check=False)
    assert ignored.returncode == 0, ignored.stdout
    assert "WARNING: node localhost: hypervisor libvirt verify failure" in ignored.stdout


def test_node_queries_survive_a_broken_hypervisor(hv_cluster):
    out = hv_cluster.run("gnt-node", "list", "--no-headers", "--separator=|", "-o",
                         "name,mtotal,mfree").stdout.strip().split("|")
    assert out[0] == "localhost" and out[1] not in ("?", "*") and out[2] not in ("?", "*")
    info = hv_cluster.run("gnt-node", "info", "localhost").stdout
    assert "Node name: localhost" in info
    problems = info.split("  hypervisor problems:\n", 1)[1]
    assert re.search(r"    - libvirt: Cannot connect to libvirt at ", problems), info
    assert "    - xen-pvm: " in problems, info
    assert "fake" not in problems, info


@pytest.mark.parametrize("argv,words", [
    (["-H", "libvirt:frobnicate=1"], "Unknown libvirt parameter 'frobnicate'"),
    (["-H", "xen-pvm:frobnicate=1"], "Unknown xen-pvm parameter 'frobnicate'"),
    (["-H", "libvirt:domain_type=vmware"], "domain_type"),
    (["-H", "libvirt"], "Cannot connect to libvirt at qemu+unix:///system?socket="),
    (["-H", "libvirt:uri=qemu+unix:///system?socket=/nonexistent/libvirt-sock"],
     "Cannot connect to libvirt at qemu+unix:///system?socket=/nonexistent/libvirt-sock"),
    (["-H", "libvirt:uri=not a uri"], "expected a libvirt connection URI"),
    (["-H", "xen-pvm:kernel_path=/nonexistent/vmlinuz"],
     "kernel_path': file /nonexistent/vmlinuz does not exist"),
    (["-H", "xen-pvm:kernel_path=,use_bootloader=false"],
     "A Xen PVM instance needs a kernel: set 'kernel_path' or 'use_bootloader'"),
])
def test_bad_hypervisor_input_creates_nothing(hv_cluster, argv, words):
    proc = hv_cluster.run(*ADD, "-t", "file", "-s", "8m", *argv, "hv1", check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert words in proc.stderr, proc.stderr
    assert instance_names(hv_cluster) == []
    file_dir = hv_cluster.path("srv", "file")
    assert not os.path.exists(file_dir) or os.listdir(file_dir) == []
    for hv in ("libvirt", "xen"):
        run_dir = hv_cluster.path("var", "run", "corral", "%s-hypervisor" % hv)
        assert not os.path.exists(run_dir) or \
            [e for e in os.listdir(run_dir) if "hv1" in e] == [], os.listdir(run_dir)


@pytest.mark.skipif(not NO_DOM0, reason="this machine has /proc/xen")
def test_xen_instance_on_a_node_without_dom0_creates_nothing(hv_cluster, tmp_path):
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"\0")
    proc = hv_cluster.run(*ADD, "-t", "file", "-s", "8m", "-H",
                          "xen-pvm:kernel_path=%s" % kernel, "xen1", check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Hypervisor parameter validation failed on node localhost: " in proc.stderr
    assert "dom0" in proc.stderr or "Xen toolstack" in proc.stderr, proc.stderr
    assert instance_names(hv_cluster) == []
    file_dir = hv_cluster.path("srv", "file")
    assert not os.path.exists(file_dir) or os.listdir(file_dir) == []
