"""Golden-file tests of the pure QEMU argv generator.

Regenerate after an intended change with CORRAL_UPDATE_GOLDEN=1 and review
the diff of test/data/kvm/.
"""

import os

import pytest

from corral import errors
from corral.hypervisor import hvparams
from corral.hypervisor.base import DiskSpec, InstanceSpec, NicSpec
from corral.hypervisor.kvm import cmdline
from corral.hypervisor.kvm import params as kp

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "kvm")
HELP_7_2 = "QEMU emulator version 7.2.22\nusage: qemu-system-x86_64 [options]\n" \
           "-no-acpi        disable ACPI\n-no-reboot      exit instead of rebooting\n"
FACTS = kp.QemuFacts(binary="/usr/bin/kvm", version=(7, 2, 22),
                     version_text="QEMU emulator version 7.2.22", help_text=HELP_7_2,
                     kvm_usable=False, vhost_net=False)
PATHS = kp.instance_paths("/R/var/run/corral/kvm-hypervisor", "inst1.example.com")
UUID = "5f8a3b52-0d1e-4c55-9a33-1f2e3d4c5b6a"
BOOT = {"kernel_path": "/boot/vmlinuz", "initrd_path": "/boot/initrd.img",
        "root_path": "/dev/vda", "kvm_flag": "disabled"}

CASES = {
    "direct_kernel": dict(hv=BOOT, nics=[NicSpec("aa:00:00:11:22:33", mode="bridged",
                                                  link="br0")]),
    "disk_boot": dict(hv={"kernel_path": "", "boot_order": "disk", "kvm_flag": "disabled"},
                      disks=2),
    "ide_cdrom": dict(hv={"kernel_path": "", "disk_type": "ide", "boot_order": "cdrom",
                          "cdrom_image_path": "/iso/debian.iso", "kvm_flag": "disabled"},
                      disks=3, ro_index=None),
    "vnc": dict(hv=dict(BOOT, vnc_bind_address="127.0.0.1", keymap="de",
                        usb_mouse="tablet", serial_console=False), port=5901),
    "routed_nic": dict(hv=dict(BOOT, nic_type="e1000"),
                       nics=[NicSpec("aa:00:00:44:55:66", ip="10.1.2.3", mode="routed"),
                             NicSpec("aa:00:00:44:55:67", mode="bridged", link="br1")]),
    "kvm_full": dict(hv={"kernel_path": "", "kvm_flag": "enabled", "cpu_type": "host",
                         "machine_version": "pc-i440fx-7.2", "cpu_cores": 2,
                         "cpu_sockets": 1, "acpi": False, "use_localtime": True,
                         "reboot_behavior": "exit", "disk_type": "scsi-hd",
                         "scsi_controller_type": "virtio-scsi-pci", "disk_cache": "none",
                         "disk_aio": "native", "use_guest_agent": True,
                         "kvm_extra": "-global kvm-pit.lost_tick_policy=discard"},
                     be={"vcpus": 2, "maxmem": 512}, disks=1),
    "incoming_paused": dict(hv=BOOT, incoming="tcp:10.0.0.2:8102", paused=True),
}


def make_case(case: dict) -> tuple[InstanceSpec, list[DiskSpec], dict]:
    hv = hvparams.fill_hvparams("kvm", {}, None, case.get("hv"))
    be = hvparams.fill_beparams({}, case.get("be"))
    inst = InstanceSpec("inst1.example.com", UUID, hv, be, nics=case.get("nics", []),
                        network_port=case.get("port"))
    ro_index = case.get("ro_index", 1)
    disks = [DiskSpec("/srv/disks/inst1.disk%d" % i, "ro" if i == ro_index else "rw")
             for i in range(case.get("disks", 1))]
    kwargs = {"incoming": case.get("incoming"), "paused": case.get("paused", False)}
    return inst, disks, kwargs


def taps_for(inst: InstanceSpec) -> list[kp.TapInfo]:
    return [kp.TapInfo("tap%d" % i, 10 + i) for i in range(len(inst.nics))]


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str) -> None:
    inst, disks, kwargs = make_case(CASES[name])
    argv = cmdline.build_argv(inst, disks, FACTS, PATHS, taps_for(inst), **kwargs)
    text = "\n".join(argv) + "\n"
    path = os.path.join(DATA, name + ".argv")
    if os.environ.get("CORRAL_UPDATE_GOLDEN"):
        with open(path, "w") as fh:
            fh.write(text)
    with open(path) as fh:
        assert text == fh.read(), "argv of %s differs from %s" % (name, path)


def test_pure_same_input_same_output() -> None:
    inst, disks, kwargs = make_case(CASES["routed_nic"])
    first = cmdline.build_argv(inst, disks, FACTS, PATHS, taps_for(inst), **kwargs)
    assert first == cmdline.build_argv(inst, disks, FACTS, PATHS, taps_for(inst), **kwargs)


@pytest.mark.parametrize("flag,usable,expected", [
    ("disabled", True, "tcg"), ("enabled", False, "kvm"), ("", False, "tcg"), ("", True, "kvm")])
def test_accel_choice(flag: str, usable: bool, expected: str) -> None:
    facts = kp.QemuFacts("/usr/bin/kvm", (7, 2, 0), "", kvm_usable=usable)
    assert cmdline.accel({"kvm_flag": flag}, facts) == expected


@pytest.mark.parametrize("hv,usable,expected", [
    ({"kvm_flag": "disabled"}, True, "131080k"),     # TCG: 128 MiB + 8 KiB
    ({"kvm_flag": ""}, False, "131080k"),            # TCG because /dev/kvm is unusable
    ({"kvm_flag": "enabled"}, False, "128"),         # KVM keeps the plain MiB value
    ({"kvm_flag": ""}, True, "128"),
    ({"kvm_flag": "disabled", "mem_path": "/dev/hugepages"}, False, "128")])
def test_memory_arg_pads_tcg_only(hv: dict, usable: bool, expected: str) -> None:
    # The pad keeps QEMU < 9.0 off its TCG-unsafe dirty-bitmap fast path
    # (guest RAM corrupted by live migration): see cmdline.memory_arg.
    facts = kp.QemuFacts("/usr/bin/kvm", (7, 2, 22), "", kvm_usable=usable)
    assert cmdline.memory_arg(128, hv, facts) == expected


def test_tcg_ram_size_is_not_a_multiple_of_64_pages() -> None:
    inst, disks, _ = make_case({"hv": BOOT, "be": {"maxmem": 1024}})
    argv = cmdline.build_argv(inst, disks, FACTS, PATHS, [])
    size = int(argv[argv.index("-m") + 1].rstrip("k")) * 1024
    assert size % 8192 == 0 and size % (64 * 4096) != 0 and size > 1024 << 20


def test_kernel_cmdline_serial_console() -> None:
    hv = hvparams.fill_hvparams("kvm", {}, None, {"serial_speed": 115200,
                                                   "kernel_args": "ro quiet"})
    assert cmdline.kernel_cmdline(hv) == "root=/dev/vda1 console=ttyS0,115200 ro quiet"
    hv["serial_console"] = False
    assert "console=" not in cmdline.kernel_cmdline(hv)


def test_acpi_off_without_no_acpi_option() -> None:
    inst, disks, _ = make_case({"hv": dict(BOOT, acpi=False)})
    facts = kp.QemuFacts("/usr/bin/qemu", (9, 0, 0), "", help_text="")
    argv = cmdline.build_argv(inst, disks, facts, PATHS, [])
    assert "pc,accel=tcg,acpi=off" in argv and "-no-acpi" not in argv


def test_vhost_only_when_available() -> None:
    inst, disks, _ = make_case(CASES["direct_kernel"])
    with_vhost = kp.QemuFacts("/usr/bin/kvm", (7, 2, 0), "", vhost_net=True)
    assert any("vhost=on" in a for a in cmdline.build_argv(inst, disks, with_vhost, PATHS,
                                                          taps_for(inst)))
    assert not any("vhost=on" in a for a in cmdline.build_argv(inst, disks, FACTS, PATHS,
                                                              taps_for(inst)))


def test_vnc_needs_network_port() -> None:
    inst, disks, _ = make_case({"hv": dict(BOOT, vnc_bind_address="127.0.0.1")})
    with pytest.raises(errors.HypervisorError, match="network_port"):
        cmdline.build_argv(inst, disks, FACTS, PATHS, [])


def test_ide_rejects_readonly_disk() -> None:
    inst, disks, _ = make_case({"hv": {"kernel_path": "", "disk_type": "ide"}, "disks": 2})
    with pytest.raises(errors.HypervisorError, match="read-only"):
        cmdline.build_argv(inst, disks, FACTS, PATHS, [])


def test_nic_tap_count_mismatch_is_a_bug() -> None:
    inst, disks, _ = make_case(CASES["direct_kernel"])
    with pytest.raises(errors.ProgrammerError):
        cmdline.build_argv(inst, disks, FACTS, PATHS, [])


def test_parse_version() -> None:
    assert kp.parse_version("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg)") == (7, 2, 22)
    assert kp.parse_version("QEMU emulator version 8.1") == (8, 1, 0)
    assert kp.parse_version("garbage") == (0, 0, 0)
