"""Golden-file tests of the pure xl.cfg generator (xl.cfg(5), Xen 4.17).

Regenerate after an intended change with CORRAL_UPDATE_GOLDEN=1 and review
the diff of test/data/xen/*.cfg against the xl.cfg / xl-disk-configuration /
xl-network-configuration manuals.
"""

import os
import re

import pytest

from corral import errors
from corral.hypervisor import hvparams
from corral.hypervisor.base import DiskSpec, InstanceSpec, NicSpec
from corral.hypervisor.xen import config

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "xen")
UUID = "5f8a3b52-0d1e-4c55-9a33-1f2e3d4c5b6a"
NIC = NicSpec("aa:00:00:11:22:33", mode="bridged", link="xen-br0")

CASES = {
    "pvm_direct": ("xen-pvm", dict(hv={"kernel_path": "/boot/vmlinuz-xen",
                                       "initrd_path": "/boot/initrd-xen"},
                                   nics=[NIC], disks=2)),
    "pvm_bootloader": ("xen-pvm", dict(hv={"use_bootloader": True,
                                           "bootloader_path": "/usr/lib/xen-4.17/bin/pygrub",
                                           "bootloader_args": "-q --entry=1",
                                           "cpu_mask": "1:2-3", "cpu_cap": 50,
                                           "cpu_weight": 512, "reboot_behavior": "exit",
                                           "blockdev_prefix": "xvd"},
                                       be={"vcpus": 2, "maxmem": 512}, disks=1,
                                       nics=[NicSpec("aa:00:00:44:55:66", ip="10.1.2.3",
                                                     mode="routed")])),
    "hvm_defaults": ("xen-hvm", dict(hv={}, nics=[NIC], disks=1, port=5901)),
    "hvm_full": ("xen-hvm", dict(hv={"kernel_path": "", "device_model": "",
                                     "boot_order": "dc", "cdrom_image_path": "/iso/d.iso",
                                     "nic_type": "paravirtual", "disk_type": "ioemu",
                                     "viridian": True, "use_localtime": True, "acpi": False,
                                     "vnc_bind_address": "127.0.0.1", "cpu_mask": "0-1",
                                     "soundhw": "hda", "pci_pass": "01:00.0;02:00.1",
                                     "cpuid": "host,tm=0",
                                     "vif_script": "/etc/xen/scripts/vif-corral"},
                                 nics=[NIC, NicSpec("aa:00:00:11:22:34", mode="openvswitch",
                                                    link="ovs0", vlan="100")],
                                 disks=2, port=5902, password="s3cret")),
}


def make(hv: str, case: dict) -> tuple[InstanceSpec, list[DiskSpec]]:
    params = hvparams.fill_hvparams(hv, {}, None, case.get("hv"))
    hvparams.check_hvparams(hv, params)
    inst = InstanceSpec("inst1.example.com", UUID, params,
                        hvparams.fill_beparams({}, case.get("be")), nics=case.get("nics", []),
                        network_port=case.get("port"), hypervisor=hv)
    disks = [DiskSpec("/dev/xenvg/disk%d" % i, "rw", dev_type="plain") if i == 0 else
             DiskSpec("/srv/corral/file-storage/inst1/disk%d" % i, "ro", dev_type="file")
             for i in range(case.get("disks", 1))]
    return inst, disks


def generate(hv: str, case: dict) -> str:
    inst, disks = make(hv, case)
    if hv == "xen-pvm":
        return config.build_pvm_config(inst, disks)
    return config.build_hvm_config(inst, disks, case.get("password"))


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    hv, case = CASES[name]
    text = generate(hv, case)
    path = os.path.join(DATA, name + ".cfg")
    if os.environ.get("CORRAL_UPDATE_GOLDEN"):
        with open(path, "w") as fh:
            fh.write(text)
    with open(path) as fh:
        assert text == fh.read()


# Keys documented in xl.cfg(5) for Xen 4.17 that the generator may write.
XL_CFG_KEYS = {"type", "name", "uuid", "memory", "maxmem", "vcpus", "cpus", "cap",
               "cpu_weight", "cpuid", "kernel", "ramdisk", "cmdline", "bootloader",
               "bootloader_args", "firmware", "device_model_version",
               "device_model_override", "acpi", "pae", "viridian", "localtime", "boot", "vnc",
               "vnclisten", "vncdisplay", "vncunused", "vncpasswd", "serial", "soundhw", "pci",
               "vif", "disk", "on_poweroff", "on_reboot", "on_crash"}
LINE = re.compile(r"^([a-z_]+) = (\d+|'[^'\\]*'|\[('[^'\\]*'(, )?)*\])$")


@pytest.mark.parametrize("name", sorted(CASES))
def test_syntax_and_keys_per_manual(name: str) -> None:
    """Every line is ``key = int|'string'|['list', ...]`` with a key from xl.cfg(5)."""
    hv, case = CASES[name]
    lines = generate(hv, case).splitlines()
    assert lines[0].startswith("#")
    keys = []
    for line in lines[1:]:
        m = LINE.match(line)
        assert m, line
        keys.append(m.group(1))
    assert set(keys) <= XL_CFG_KEYS, set(keys) - XL_CFG_KEYS
    assert len(keys) == len(set(keys)), "duplicate keys"
    assert keys[:2] == ["type", "name"]


def test_pvm_specifics() -> None:
    text = generate(*CASES["pvm_direct"])
    assert "type = 'pv'\n" in text
    assert "cmdline = 'root=/dev/xvda1 ro'\n" in text
    # blockdev_prefix sd (HEAD default): sda, sdb; target= last (xl-disk-configuration)
    assert "'format=raw, vdev=sda, access=rw, backendtype=phy, target=/dev/xenvg/disk0'" \
        in text
    assert "vdev=sdb, access=ro, target=/srv/corral/file-storage/inst1/disk1'" in text
    assert "vif = ['mac=aa:00:00:11:22:33,bridge=xen-br0']" in text
    assert "\ncpus =" not in text and "\ncap =" not in text   # cpu_mask all, cpu_cap 0


def test_pvm_bootloader_and_pinning() -> None:
    text = generate(*CASES["pvm_bootloader"])
    assert "kernel =" not in text and "cmdline" not in text
    assert "bootloader_args = ['-q', '--entry=1']\n" in text
    assert "cpus = ['1', '2-3']\n" in text and "cap = 50\n" in text
    assert "on_reboot = 'destroy'\n" in text
    assert "'mac=aa:00:00:44:55:66,ip=10.1.2.3,script=vif-route'" in text


def test_hvm_specifics() -> None:
    text = generate(*CASES["hvm_defaults"])
    assert "firmware = '/usr/lib/xen/boot/hvmloader'\n" in text
    assert "device_model_version = 'qemu-xen-traditional'\n" in text
    assert "boot = 'cd'\n" in text and "vnclisten = '0.0.0.0'\n" in text
    assert "vncdisplay = 1\n" in text
    assert "'mac=aa:00:00:11:22:33,bridge=xen-br0,type=ioemu,model=rtl8139'" in text
    full = generate(*CASES["hvm_full"])
    assert "firmware" not in full and "device_model" not in full
    assert "vncpasswd = 's3cret'\n" in full and "acpi = 0\n" in full
    assert "format=raw, vdev=hdc, access=ro, devtype=cdrom, target=/iso/d.iso" in full
    assert "bridge=ovs0.100,script=/etc/xen/scripts/vif-corral,type=vif" in full
    assert "pci = ['01:00.0', '02:00.1']\n" in full


def test_pvm_without_kernel_is_rejected() -> None:
    params = hvparams.fill_hvparams("xen-pvm", {}, None, {"kernel_path": ""})
    with pytest.raises(errors.OpPrereqError, match="needs a kernel"):
        hvparams.check_hvparams("xen-pvm", params)
    inst = InstanceSpec("i", UUID, params, hvparams.fill_beparams({}, {}))
    with pytest.raises(errors.HypervisorError, match="has no kernel"):
        config.build_pvm_config(inst, [])


def test_unquotable_values_rejected() -> None:
    hv, case = CASES["pvm_direct"]
    case = dict(case, hv=dict(case["hv"], kernel_args="ro quiet' extra='x"))
    with pytest.raises(errors.HypervisorError, match="cannot be written"):
        generate(hv, case)


def test_hvparam_tables() -> None:
    pvm = hvparams.hv_defaults("xen-pvm")
    hvm = hvparams.hv_defaults("xen-hvm")
    assert pvm["kernel_path"] == "/boot/vmlinuz-3-xenU" and pvm["root_path"] == "/dev/xvda1"
    assert pvm["blockdev_prefix"] == "sd" and hvm["blockdev_prefix"] == "hd"
    assert pvm["migration_mode"] == "live" and hvm["migration_mode"] == "non-live"
    assert pvm["migration_port"] == hvm["migration_port"] == 8002
    assert hvm["boot_order"] == "cd" and hvm["nic_type"] == "rtl8139"
    assert hvm["device_model"] == "/usr/lib/xen/bin/qemu-dm"
    assert (hvm["cpu_weight"], hvm["cpu_cap"], hvm["cpu_mask"]) == (256, 0, "all")
    with pytest.raises(errors.OpPrereqError, match="Unknown xen-pvm parameter 'acpi'"):
        hvparams.check_hvparams("xen-pvm", {"acpi": True})
    with pytest.raises(errors.OpPrereqError, match="boot_order"):
        hvparams.check_hvparams("xen-hvm", {"boot_order": "cx"})
    with pytest.raises(errors.OpPrereqError, match="cluster-wide"):
        hvparams.check_hvparams("xen-hvm", {"migration_port": 9000}, level="instance")
