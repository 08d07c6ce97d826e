"""Pure data for the KVM driver: probed QEMU facts, file layout, device maps.

Nothing here touches the system; :mod:`corral.hypervisor.kvm.runtime` fills
these structures from the machine, :mod:`.cmdline` turns them into argv.
"""

import os
import re
from dataclasses import asdict, dataclass
from typing import Any

DEFAULT_MACHINE = "pc"
FALLBACK_BINARY = "qemu-system-x86_64"

# hvparam nic_type -> QEMU -device model
NIC_MODELS = {
    "paravirtual": "virtio-net-pci", "rtl8139": "rtl8139", "ne2k_isa": "ne2k_isa",
    "ne2k_pci": "ne2k_pci", "i82551": "i82551", "i82557b": "i82557b",
    "i82559er": "i82559er", "pcnet": "pcnet", "e1000": "e1000",
}
# hvparam disk_type -> QEMU -device model (None: legacy -drive if=<type>)
DISK_DEVICES = {
    "paravirtual": "virtio-blk-pci", "ide": "ide-hd", "scsi": "scsi-hd",
    "scsi-hd": "scsi-hd", "scsi-block": "scsi-block", "scsi-generic": "scsi-generic",
    "scsi-cd": "scsi-cd", "sd": None, "mtd": None, "pflash": None,
}
SCSI_CONTROLLERS = {"lsi": "lsi53c895a", "megasas": "megasas",
                    "virtio-scsi-pci": "virtio-scsi-pci", "dc390": "dc390"}
BOOT_ORDER = {"floppy": "a", "cdrom": "d", "disk": "c", "network": "n"}


@dataclass(frozen=True)
class QemuFacts:
    """What was probed about the QEMU binary and the host (input to cmdline)."""

    binary: str
    version: tuple[int, int, int]
    version_text: str
    help_text: str = ""
    kvm_usable: bool = False        # /dev/kvm opens and is known to run guests
    vhost_net: bool = False         # /dev/vhost-net exists

    def supports(self, option: str) -> bool:
        """True if ``-help`` lists ``option`` (e.g. "-no-acpi")."""
        return re.search(r"(^|\n)%s[\s\n]" % re.escape(option), self.help_text) is not None


def parse_version(text: str) -> tuple[int, int, int]:
    """(major, minor, micro) from ``qemu -version`` output; (0, 0, 0) if unknown."""
    m = re.search(r"version (\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        return (0, 0, 0)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


@dataclass(frozen=True)
class InstancePaths:
    """Where one instance's runtime files live (see doc/design-kvm.md)."""

    dir: str
    pidfile: str
    qmp: str
    serial: str
    qga: str
    runtime: str
    chroot: str
    serial_log: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def instance_paths(hv_dir: str, name: str) -> InstancePaths:
    """The layout under the kvm run dir; the serial log lives outside the
    instance's own directory so it survives cleanup (post-mortem reading)."""
    d = os.path.join(hv_dir, name)
    return InstancePaths(dir=d, pidfile=os.path.join(d, "pid"), qmp=os.path.join(d, "qmp.sock"),
                         serial=os.path.join(d, "serial.sock"), qga=os.path.join(d, "qga.sock"),
                         runtime=os.path.join(d, "runtime.json"),
                         chroot=os.path.join(d, "chroot"),
                         serial_log=os.path.join(hv_dir, "log", name + ".serial.log"))


@dataclass(frozen=True)
class TapInfo:
    """A tap opened for one NIC: the fd number as QEMU will see it."""

    ifname: str
    fd: int
