"""Golden-file tests of the pure libvirt domain XML generator and URI helpers.

Regenerate after an intended change with CORRAL_UPDATE_GOLDEN=1 and review
the diff of test/data/libvirt/*.xml against libvirt's formatdomain docs.
"""

import os
import xml.etree.ElementTree as ET

import pytest

from corral import errors
from corral.hypervisor import hvparams
from corral.hypervisor.base import DiskSpec, InstanceSpec, NicSpec
from corral.hypervisor.libvirt import domxml

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "libvirt")
UUID = "5f8a3b52-0d1e-4c55-9a33-1f2e3d4c5b6a"
RUN = "/R/var/run/corral/libvirt-hypervisor"
PATHS = domxml.DomainPaths(dir=RUN + "/inst1", serial_socket=RUN + "/inst1/serial.sock",
                           serial_log=RUN + "/log/inst1.serial.log",
                           runtime=RUN + "/inst1/runtime.json")
BR = NicSpec("aa:00:00:11:22:33", mode="bridged", link="br0")

CASES = {
    "direct_kernel_tcg": ("qemu", dict(hv={"kernel_path": "/boot/vmlinuz",
                                           "initrd_path": "/boot/initrd.img",
                                           "root_path": "/dev/vda"},
                                       nics=[BR], disks=1)),
    "disk_boot_kvm": ("kvm", dict(hv={"boot_order": "cdrom", "cdrom_image_path": "/iso/d.iso",
                                      "disk_type": "ide", "nic_type": "e1000",
                                      "disk_cache": "none", "machine_type": "pc-i440fx-7.2",
                                      "cpu_mode": "host-model", "use_localtime": True,
                                      "reboot_behavior": "exit", "serial_console": False},
                                  be={"vcpus": 2, "maxmem": 1024}, disks=2, port=5901,
                                  vnc="127.0.0.1",
                                  nics=[NicSpec("aa:00:00:11:22:34", mode="openvswitch",
                                                link="ovs0", vlan="100")])),
    "lxc_container": ("lxc", dict(hv={"uri": "lxc:///system", "acpi": False}, disks=1)),
}


def generate(dtype: str, case: dict) -> str:
    params = hvparams.fill_hvparams("libvirt", {}, None, case.get("hv"))
    hvparams.check_hvparams("libvirt", params)
    inst = InstanceSpec("inst1", UUID, params, hvparams.fill_beparams({}, case.get("be")),
                        nics=case.get("nics", []), network_port=case.get("port"),
                        hypervisor="libvirt")
    disks = [DiskSpec("/dev/drbd%d" % i, dev_type="drbd") if i == 0 else
             DiskSpec("/srv/corral/file-storage/inst1/disk%d" % i, "ro", dev_type="file")
             for i in range(case.get("disks", 1))]
    return domxml.build_domain_xml(inst, disks, dtype, PATHS, case.get("vnc"))


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    text = generate(*CASES[name])
    path = os.path.join(DATA, name + ".xml")
    if os.environ.get("CORRAL_UPDATE_GOLDEN"):
        with open(path, "w") as fh:
            fh.write(text)
    with open(path) as fh:
        assert text == fh.read()


def test_direct_kernel_contents() -> None:
    root = ET.fromstring(generate(*CASES["direct_kernel_tcg"]))
    assert root.get("type") == "qemu"
    assert root.findtext("os/cmdline") == "root=/dev/vda ro console=ttyS0,38400"
    # 128 MiB + 8 KiB under TCG (hypervisor.common.tcg_ram_kib); KVM keeps MiB
    assert root.find("memory").text == "131080" and root.find("memory").get("unit") == "KiB"
    assert root.find("currentMemory").text == "131080"
    serial = root.find("devices/serial")
    assert serial.get("type") == "unix"
    assert serial.find("source").attrib == {"mode": "bind", "path": PATHS.serial_socket}
    assert serial.find("log").attrib == {"file": PATHS.serial_log, "append": "on"}
    disk = root.find("devices/disk")
    assert disk.get("type") == "block" and disk.find("source").get("dev") == "/dev/drbd0"
    assert disk.find("target").attrib == {"dev": "vda", "bus": "virtio"}
    nic = root.find("devices/interface")
    assert nic.get("type") == "bridge" and nic.find("source").get("bridge") == "br0"
    assert nic.find("model").get("type") == "virtio"
    assert root.find("devices/graphics") is None   # no <graphics type='none'/> (rejected)
    assert domxml.is_corral_domain(ET.tostring(root, encoding="unicode"))
    assert domxml.serial_socket_of(ET.tostring(root, encoding="unicode")) == \
        PATHS.serial_socket


def test_vnc_and_devices() -> None:
    root = ET.fromstring(generate(*CASES["disk_boot_kvm"]))
    assert root.find("devices/graphics").attrib == {"type": "vnc", "listen": "127.0.0.1",
                                                    "port": "5901", "autoport": "no"}
    assert root.find("os/boot").get("dev") == "cdrom"
    assert [t.get("dev") for t in root.findall("devices/disk/target")] == ["hda", "hdb", "hdc"]
    assert root.find("devices/interface/virtualport").get("type") == "openvswitch"
    assert root.find("devices/interface/vlan/tag").get("id") == "100"
    assert root.find("devices/serial") is None
    assert root.findtext("on_reboot") == "destroy"


def test_unsupported_nic_mode() -> None:
    hv, case = CASES["direct_kernel_tcg"]
    case = dict(case, nics=[NicSpec("aa:00:00:11:22:35", ip="10.0.0.5", mode="routed")])
    with pytest.raises(errors.HypervisorError, match="routed"):
        generate(hv, case)


def test_domain_type_and_uris() -> None:
    assert domxml.resolve_domain_type({}, "qemu:///system", kvm_usable=False) == "qemu"
    assert domxml.resolve_domain_type({}, "qemu+unix:///system?socket=/s", True) == "kvm"
    assert domxml.resolve_domain_type({"domain_type": "qemu"}, "qemu:///system", True) == \
        "qemu"
    assert domxml.resolve_domain_type({}, "xen:///system", False) == "xen"
    assert domxml.resolve_domain_type({}, "test:///default", False) == "test"
    with pytest.raises(errors.HypervisorError, match="domain_type"):
        domxml.resolve_domain_type({}, "vbox:///session", False)
    assert domxml.target_uri("qemu:///system", "10.88.0.2") == "qemu+tcp://10.88.0.2/system"
    assert domxml.target_uri("qemu+unix:///system?socket=/x/sock", "10.88.0.2", "tls") == \
        "qemu+tls://10.88.0.2/system"
    assert domxml.target_uri("xen:///system", "fd00::2") == "xen+tcp://[fd00::2]/system"


def test_libvirt_hvparams() -> None:
    defaults = hvparams.hv_defaults("libvirt")
    assert defaults["uri"] == "qemu:///system"
    hvparams.check_hvparams("libvirt", defaults)
    with pytest.raises(errors.OpPrereqError, match="Unknown libvirt parameter 'kvm_path'"):
        hvparams.check_hvparams("libvirt", {"kvm_path": "/usr/bin/kvm"})
    with pytest.raises(errors.OpPrereqError, match="connection URI"):
        hvparams.check_hvparams("libvirt", {"uri": "not a uri"})
    with pytest.raises(errors.OpPrereqError, match="initrd_path"):
        hvparams.check_hvparams("libvirt", dict(defaults, initrd_path="/boot/i"))
