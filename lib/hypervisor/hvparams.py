"""The one table of hypervisor (hvparams) and backend (beparams) parameters.

Each parameter is declared once here (name, kind, default, allowed values,
doc); the CLI (``-H kvm:acpi=false``), RAPI, the master's validation, the node
drivers and the man pages all read these tables.  Defaults are Ganeti HEAD's
(spec/hypervisors-storage.md §2, §4).

Layering (spec §1): filled hvparams = cluster ← OS ← instance; the globals in
``HV_GLOBALS`` exist at cluster level only.  Setting a key to ``"default"``
(CLI) removes an override: :func:`parse_params` keeps that marker for the
code that edits the stored overrides; the fill functions skip ``None`` values
only (``disk_cache=default`` is a real value).  Everything here is pure: no
file is looked at (node-side checks are ``BaseHypervisor.validate_parameters``).
"""

import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from corral import constants, errors

K_STRING = "string"
K_BOOL = "bool"
K_INT = "int"
K_PATH = "path"          # "" or an absolute path
K_ENUM = "enum"
K_ADDRESS = "address"    # "" or an IP address or an interface name


@dataclass(frozen=True)
class Param:
    """One parameter: what it accepts, its default and what it means."""

    name: str
    kind: str
    default: Any
    doc: str
    values: tuple = ()                     # K_ENUM: allowed values
    minimum: int | None = None             # K_INT bounds
    maximum: int | None = None
    check: Callable[[Any], str | None] | None = field(default=None, compare=False)

    def describe_allowed(self) -> str:
        if self.kind == K_ENUM:
            return "one of " + ", ".join(repr(v) for v in self.values)
        if self.kind == K_INT:
            lo = "" if self.minimum is None else ">= %d" % self.minimum
            hi = "" if self.maximum is None else "<= %d" % self.maximum
            return "an integer " + " and ".join(x for x in (lo, hi) if x)
        return {K_BOOL: "a boolean (true/false)",
                K_PATH: "an absolute path or empty",
                K_ADDRESS: "an IP address, an interface name or empty",
                K_STRING: "a string"}.get(self.kind, self.kind)


_IFACE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
_CPU_LIST_RE = re.compile(r"^(all|\d+(-\d+)?(,\d+(-\d+)?)*)$")
SERIAL_SPEEDS = (75, 110, 300, 600, 1200, 1800, 2400, 4800, 9600, 14400, 19200, 28800,
                 38400, 57600, 115200, 230400, 345600, 460800)
KVM_DISK_TYPES = ("paravirtual", "ide", "scsi", "sd", "mtd", "pflash", "scsi-hd",
                  "scsi-block", "scsi-generic", "scsi-cd")
KVM_NIC_TYPES = ("paravirtual", "rtl8139", "ne2k_isa", "ne2k_pci", "i82551", "i82557b",
                 "i82559er", "pcnet", "e1000")
MIGRATION_MODES = ("live", "non-live")


def _check_cpu_mask(value: str) -> str | None:
    """``all``, a CPU list (``0-2,5``) or one list per vCPU separated by ``:``."""
    for part in value.replace("\\,", ",").split(":"):
        if not _CPU_LIST_RE.match(part.strip()):
            return "invalid CPU mask part %r (use all, 0-2,5 or 1:3)" % part
    return None


def _check_serial_speed(value: int) -> str | None:
    if value not in SERIAL_SPEEDS:
        return "must be one of %s" % ", ".join(str(s) for s in SERIAL_SPEEDS)
    return None


def _check_migration_caps(value: str) -> str | None:
    for cap in value.split(":"):
        if cap and not re.match(r"^[a-z0-9-]+$", cap):
            return "invalid migration capability %r (colon separated names)" % cap
    return None


def _p(name: str, kind: str, default: Any, doc: str, **kw: Any) -> Param:
    return Param(name, kind, default, doc, **kw)


def _enum(name: str, default: str, values: tuple, doc: str) -> Param:
    return Param(name, K_ENUM, default, doc, values=values)


_KVM = [
    _p("kvm_path", K_PATH, "/usr/bin/kvm",
       "QEMU binary; if missing at start, qemu-system-x86_64 from PATH is used"),
    _p("kernel_path", K_PATH, "/boot/vmlinuz-3-kvmU",
       "kernel for direct boot; empty = boot from disk per boot_order"),
    _p("initrd_path", K_PATH, "", "initrd for direct kernel boot"),
    _p("root_path", K_STRING, "/dev/vda1", "root= argument for direct kernel boot"),
    _p("kernel_args", K_STRING, "ro", "extra kernel command line for direct boot"),
    _enum("boot_order", "disk", ("floppy", "cdrom", "disk", "network"),
          "boot device when no kernel_path is set"),
    _enum("disk_type", "paravirtual", KVM_DISK_TYPES, "disk bus/device model"),
    _enum("cdrom_disk_type", "", ("",) + KVM_DISK_TYPES, "CD-ROM bus; empty = disk_type"),
    _p("cdrom_image_path", K_PATH, "", "ISO image for the first CD-ROM"),
    _p("cdrom2_image_path", K_PATH, "", "ISO image for the second (non bootable) CD-ROM"),
    _p("floppy_image_path", K_PATH, "", "floppy image"),
    _enum("nic_type", "paravirtual", KVM_NIC_TYPES, "NIC device model"),
    _enum("scsi_controller_type", "lsi", ("lsi", "megasas", "virtio-scsi-pci", "dc390"),
          "SCSI controller model"),
    _p("kvm_pci_reservations", K_INT, 12, "PCI slots left to QEMU", minimum=0, maximum=32),
    _p("acpi", K_BOOL, True, "ACPI (needed for a clean system_powerdown)"),
    _p("serial_console", K_BOOL, True, "serial console on a unix socket"),
    _p("serial_speed", K_INT, 38400, "baud rate of the console= argument",
       check=_check_serial_speed),
    _p("vnc_bind_address", K_ADDRESS, "", "VNC address or interface; empty = no VNC"),
    _p("vnc_tls", K_BOOL, False, "VNC over TLS"),
    _p("vnc_x509_path", K_PATH, "", "VNC TLS certificate directory"),
    _p("vnc_x509_verify", K_BOOL, False, "verify VNC client certificates"),
    _p("vnc_password_file", K_PATH, "", "file holding the VNC password"),
    _p("keymap", K_STRING, "", "VNC keymap (-k)"),
    _p("vga", K_STRING, "", "-vga type"),
    _enum("usb_mouse", "", ("", "mouse", "tablet"), "emulated USB pointer"),
    _p("usb_devices", K_STRING, "", "host USB devices, space separated"),
    _p("spice_bind", K_ADDRESS, "", "SPICE address or interface; empty = no SPICE"),
    _enum("spice_ip_version", 0, (0, 4, 6), "SPICE IP version (0 = any)"),
    _p("spice_password_file", K_PATH, "", "file holding the SPICE password"),
    _enum("spice_image_compression", "", ("", "auto_glz", "auto_lz", "quic", "glz", "lz", "off"),
          "SPICE image compression"),
    _enum("spice_jpeg_wan_compression", "", ("", "auto", "never", "always"),
          "SPICE JPEG WAN compression"),
    _enum("spice_zlib_glz_wan_compression", "", ("", "auto", "never", "always"),
          "SPICE zlib-glz WAN compression"),
    _enum("spice_streaming_video", "", ("", "off", "all", "filter"), "SPICE video streaming"),
    _p("spice_playback_compression", K_BOOL, True, "SPICE audio compression"),
    _p("spice_use_tls", K_BOOL, False, "SPICE over TLS"),
    _p("spice_tls_ciphers", K_STRING, "HIGH:-DES:-3DES:-EXPORT:-DH", "SPICE TLS ciphers"),
    _p("spice_use_vdagent", K_BOOL, True, "SPICE guest agent channel"),
    _p("cpu_type", K_STRING, "", "-cpu model; empty = QEMU default"),
    _p("cpu_mask", K_STRING, "all", "CPU pinning", check=_check_cpu_mask),
    _p("cpu_cores", K_INT, 0, "cores per socket (0 = unspecified)", minimum=0),
    _p("cpu_threads", K_INT, 0, "threads per core (0 = unspecified)", minimum=0),
    _p("cpu_sockets", K_INT, 0, "sockets (0 = unspecified)", minimum=0),
    _p("mem_path", K_PATH, "", "hugetlbfs mount for guest memory"),
    _p("use_localtime", K_BOOL, False, "guest RTC in local time"),
    _p("use_guest_agent", K_BOOL, False, "QEMU guest agent channel"),
    _enum("disk_cache", "default", ("default", "none", "writethrough", "writeback"),
          "host page cache mode for disks"),
    _enum("disk_aio", "threads", ("threads", "native", "io_uring"), "disk AIO mode"),
    _enum("disk_discard", "ignore", ("ignore", "unmap"), "pass guest discards down"),
    _enum("security_model", "none", ("none", "user", "pool"), "user QEMU runs as"),
    _p("security_domain", K_STRING, "", "user name for security_model=user"),
    _enum("kvm_flag", "", ("", "enabled", "disabled"),
          "hardware acceleration: enabled, disabled (TCG) or auto (empty)"),
    _p("use_chroot", K_BOOL, False, "run QEMU chrooted"),
    _p("vhost_net", K_BOOL, True, "vhost-net for tap NICs (ignored if /dev/vhost-net is absent)"),
    _p("vnet_hdr", K_BOOL, True, "virtio-net header on taps"),
    _p("virtio_net_queues", K_INT, 1, "virtio-net queues", minimum=1, maximum=8),
    _p("machine_version", K_STRING, "", "-machine type; empty = pc"),
    _p("kvm_extra", K_STRING, "", "extra QEMU arguments (split on whitespace)"),
    _p("soundhw", K_STRING, "", "sound device"),
    _p("user_shutdown", K_BOOL, False, "report guest-initiated poweroff as USER_down"),
    _enum("reboot_behavior", "reboot", ("reboot", "exit"), "exit = -no-reboot"),
    _p("migration_port", K_INT, 8102, "TCP port for incoming migrations", minimum=1,
       maximum=65535),
    _p("migration_bandwidth", K_INT, 32, "migration bandwidth cap in MiB/s", minimum=1),
    _p("migration_downtime", K_INT, 30, "maximum migration downtime in ms", minimum=1),
    _enum("migration_mode", "live", MIGRATION_MODES, "default migration mode"),
    _p("migration_caps", K_STRING, "", "colon separated QEMU migration capabilities",
       check=_check_migration_caps),
]

_FAKE = [
    _enum("migration_mode", "live", MIGRATION_MODES, "default migration mode"),
]


def _check_xen_boot_order(value: str) -> str | None:
    if not value or any(c not in "acdn" for c in value):
        return "boot devices are letters a (floppy), c (disk), d (cdrom), n (network)"
    return None


def _check_libvirt_uri(value: str) -> str | None:
    if not re.match(r"^[a-z][a-z0-9+.-]*:(//[^\s]*)?$", value):
        return "expected a libvirt connection URI such as qemu:///system"
    return None


# Xen (spec §5): both flavours share these; HEAD drives Xen through xl only.
_XEN_COMMON = [
    _p("migration_port", K_INT, 8002, "TCP port of the xl migration stream on the target",
       minimum=1, maximum=65535),
    _enum("reboot_behavior", "reboot", ("reboot", "exit"), "exit = on_reboot=destroy"),
    _p("cpu_mask", K_STRING, "all", "CPU pinning (xl.cfg cpus=)", check=_check_cpu_mask),
    _p("cpu_cap", K_INT, 0, "CPU cap in % of one physical CPU (0 = none)", minimum=0,
       maximum=65535),
    _p("cpu_weight", K_INT, 256, "credit scheduler weight", minimum=1, maximum=65535),
    _p("vif_script", K_PATH, "", "vif hotplug script; empty = xl's default (vif-bridge)"),
    _p("cpuid", K_STRING, "", "xl.cfg cpuid= (libxl string)"),
    _p("soundhw", K_STRING, "", "emulated sound device (HVM only)"),
]
_XEN_PVM = _XEN_COMMON + [
    _p("kernel_path", K_PATH, "/boot/vmlinuz-3-xenU", "PV kernel (direct boot)"),
    _p("initrd_path", K_PATH, "", "initrd for the PV kernel"),
    _p("root_path", K_STRING, "/dev/xvda1", "root= argument; empty = none"),
    _p("kernel_args", K_STRING, "ro", "extra kernel command line"),
    _p("use_bootloader", K_BOOL, False, "boot through bootloader_path (pygrub style)"),
    _p("bootloader_path", K_PATH, "", "bootloader program"),
    _p("bootloader_args", K_STRING, "", "bootloader arguments (split on whitespace)"),
    _p("blockdev_prefix", K_STRING, "sd", "guest disk names: <prefix>a, <prefix>b, ..."),
    _enum("migration_mode", "live", MIGRATION_MODES, "default migration mode"),
]
XEN_NIC_TYPES = ("rtl8139", "ne2k_isa", "ne2k_pci", "e1000", "paravirtual")
_XEN_HVM = _XEN_COMMON + [
    _p("kernel_path", K_PATH, "/usr/lib/xen/boot/hvmloader",
       "HVM loader (xl.cfg firmware=); the default is skipped when absent"),
    _p("boot_order", K_STRING, "cd", "boot devices, letters a/c/d/n",
       check=_check_xen_boot_order),
    _p("cdrom_image_path", K_PATH, "", "ISO image for the CD-ROM"),
    _enum("nic_type", "rtl8139", XEN_NIC_TYPES, "emulated NIC model"),
    _enum("disk_type", "paravirtual", ("paravirtual", "ioemu"), "disk device kind"),
    _enum("vif_type", "ioemu", ("ioemu", "vif"), "xl vif type="),
    _p("vnc_bind_address", K_ADDRESS, "0.0.0.0", "VNC address; empty = no VNC"),
    _p("vnc_password_file", K_PATH, "", "file holding the VNC password"),
    _p("acpi", K_BOOL, True, "ACPI"),
    _p("pae", K_BOOL, True, "PAE"),
    _p("viridian", K_BOOL, False, "Hyper-V enlightenments for Windows guests"),
    _p("use_localtime", K_BOOL, False, "guest RTC in local time"),
    _p("device_model", K_PATH, "/usr/lib/xen/bin/qemu-dm",
       "device model (xl.cfg device_model_override=); the default is skipped when absent"),
    _p("pci_pass", K_STRING, "", "PCI devices to pass through, ';' separated BDFs"),
    _p("blockdev_prefix", K_STRING, "hd", "guest disk names: <prefix>a, <prefix>b, ..."),
    _enum("migration_mode", "non-live", MIGRATION_MODES, "default migration mode"),
]

# libvirt (Corral's own; Ganeti has none): a connection URI plus a KVM-like subset.
_LIBVIRT = [
    _p("uri", K_STRING, "qemu:///system", "libvirt connection URI (xen:///system, lxc:///...)",
       check=_check_libvirt_uri),
    _enum("domain_type", "", ("", "kvm", "qemu", "xen", "lxc", "test"),
          "<domain type=>; empty = from the URI (qemu: kvm if usable, else qemu/TCG)"),
    _p("kernel_path", K_PATH, "", "kernel for direct boot; empty = boot per boot_order"),
    _p("initrd_path", K_PATH, "", "initrd for direct kernel boot"),
    _p("root_path", K_STRING, "/dev/vda1", "root= argument for direct kernel boot"),
    _p("kernel_args", K_STRING, "ro", "extra kernel command line for direct boot"),
    _enum("boot_order", "disk", ("cdrom", "disk", "network"), "boot device without kernel"),
    _p("cdrom_image_path", K_PATH, "", "ISO image for a CD-ROM"),
    _enum("disk_type", "paravirtual", ("paravirtual", "ide", "scsi", "sata"), "disk bus"),
    _enum("nic_type", "paravirtual", ("paravirtual", "e1000", "rtl8139"), "NIC model"),
    _enum("disk_cache", "default", ("default", "none", "writethrough", "writeback"),
          "host page cache mode for disks"),
    _p("serial_console", K_BOOL, True, "serial console on a unix socket with a log file"),
    _p("serial_speed", K_INT, 38400, "baud rate of the console= argument",
       check=_check_serial_speed),
    _p("vnc_bind_address", K_ADDRESS, "", "VNC listen address; empty = no VNC"),
    _p("machine_type", K_STRING, "", "machine type (os/type machine=); empty = default"),
    _enum("cpu_mode", "", ("", "host-model", "host-passthrough"), "CPU model mode"),
    _p("acpi", K_BOOL, True, "ACPI (needed for a clean shutdown)"),
    _p("use_localtime", K_BOOL, False, "guest RTC in local time"),
    _enum("reboot_behavior", "reboot", ("reboot", "exit"), "exit = on_reboot destroy"),
    _enum("migration_mode", "live", MIGRATION_MODES, "default migration mode"),
    _p("migration_bandwidth", K_INT, 32, "migration bandwidth cap in MiB/s", minimum=1),
    _enum("migration_transport", "tcp", ("tcp", "tls", "ssh"),
          "transport of the target libvirt URI (qemu+tcp://<secondary ip>/system)"),
]

HV_PARAMS: dict[str, dict[str, Param]] = {
    constants.HT_KVM: {p.name: p for p in _KVM},
    constants.HT_FAKE: {p.name: p for p in _FAKE},
    constants.HT_XEN_PVM: {p.name: p for p in _XEN_PVM},
    constants.HT_XEN_HVM: {p.name: p for p in _XEN_HVM},
    constants.HT_LIBVIRT: {p.name: p for p in _LIBVIRT},
}

# Cluster-level only: rejected in instance and OS hvparams (spec §1).
HV_GLOBALS = frozenset(["migration_port", "migration_bandwidth", "migration_mode"])

BE_PARAMS: dict[str, Param] = {p.name: p for p in [
    _p("maxmem", K_INT, 128, "memory at start (MiB)", minimum=1),
    _p("minmem", K_INT, 128, "lower bound for ballooning (MiB)", minimum=1),
    _p("vcpus", K_INT, 1, "virtual CPUs", minimum=1),
    _p("auto_balance", K_BOOL, True, "include in N+1 checks and rebalancing"),
    _p("always_failover", K_BOOL, False, "migrations become failovers"),
    _p("spindle_use", K_INT, 1, "spindles accounted on the node", minimum=0),
]}
BE_MEMORY_ALIAS = "memory"


def hv_table(hv: str) -> dict[str, Param]:
    """The parameter table of ``hv``; OpPrereqError for a hypervisor without one."""
    try:
        return HV_PARAMS[hv]
    except KeyError:
        raise errors.OpPrereqError("Unknown hypervisor '%s' (known: %s)" %
                                   (hv, ", ".join(sorted(HV_PARAMS))), errors.ECODE_INVAL)


def hv_defaults(hv: str) -> dict[str, Any]:
    return {name: p.default for name, p in hv_table(hv).items()}


def be_defaults() -> dict[str, Any]:
    return {name: p.default for name, p in BE_PARAMS.items()}


_TRUE = frozenset(["true", "yes", "on", "1", "y", "t"])
_FALSE = frozenset(["false", "no", "off", "0", "n", "f"])


def parse_value(param: Param, text: Any) -> Any:
    """Convert a CLI/RAPI string to the parameter's type (non-strings pass through).

    Raises OpPrereqError naming the parameter when the text does not parse.
    """
    if not isinstance(text, str):
        return text
    if param.kind == K_BOOL:
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    elif param.kind == K_INT or (param.kind == K_ENUM and param.values
                                 and isinstance(param.values[-1], int)):
        try:
            return int(text.strip())
        except ValueError:
            pass
    else:
        return text
    raise errors.OpPrereqError("Invalid value %r for parameter '%s': expected %s" %
                               (text, param.name, param.describe_allowed()),
                               errors.ECODE_INVAL)


def parse_params(table: dict[str, Param], raw: dict[str, Any]) -> dict[str, Any]:
    """Typed copy of ``raw``; the value ``"default"`` is kept (means: remove override)."""
    out = {}
    for key, value in raw.items():
        if key not in table or value == "default" or value is None:
            out[key] = value
        else:
            out[key] = parse_value(table[key], value)
    return out


def parse_hvparams(hv: str, raw: dict[str, Any]) -> dict[str, Any]:
    return parse_params(hv_table(hv), raw)


def parse_beparams(raw: dict[str, Any]) -> dict[str, Any]:
    return parse_params(BE_PARAMS, raw)


def check_value(param: Param, value: Any) -> str | None:
    """Why ``value`` is not acceptable for ``param``, or None if it is."""
    kind = param.kind
    if kind == K_BOOL:
        ok = isinstance(value, bool)
    elif kind == K_INT:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and ((param.minimum is not None and value < param.minimum)
                   or (param.maximum is not None and value > param.maximum)):
            ok = False
    elif kind == K_ENUM:
        ok = value in param.values and type(value) is type(param.values[-1])
    elif kind == K_PATH:
        ok = isinstance(value, str) and (value == "" or os.path.isabs(value))
    elif kind == K_ADDRESS:
        ok = isinstance(value, str) and (value == "" or _is_ip(value)
                                         or bool(_IFACE_RE.match(value)))
    else:
        ok = isinstance(value, str)
    if not ok:
        return "expected %s" % param.describe_allowed()
    if param.check is not None:
        return param.check(value)
    return None


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def _check_table(table: dict[str, Param], params: dict[str, Any], what: str) -> None:
    for key in sorted(params):
        if key not in table:
            raise errors.OpPrereqError(
                "Unknown %s parameter '%s' (known: %s)" % (what, key, ", ".join(sorted(table))),
                errors.ECODE_INVAL)
        problem = check_value(table[key], params[key])
        if problem:
            raise errors.OpPrereqError("Invalid value %r for %s parameter '%s': %s" %
                                       (params[key], what, key, problem), errors.ECODE_INVAL)


def check_hvparams(hv: str, params: dict[str, Any], level: str = "cluster") -> None:
    """Validate typed hvparams (pure); OpPrereqError(ECODE_INVAL) names the bad one.

    ``level`` is ``cluster``, ``os`` or ``instance``; below cluster level the
    globals (migration_port, ...) are rejected.  Cross-parameter rules are
    checked only when both parameters are present (e.g. on filled params).
    """
    _check_table(hv_table(hv), params, hv)
    if level != "cluster":
        bad = sorted(HV_GLOBALS.intersection(params))
        if bad:
            raise errors.OpPrereqError(
                "Parameter '%s' is cluster-wide (global) and cannot be set at %s level" %
                (bad[0], level), errors.ECODE_INVAL)
    if hv == constants.HT_KVM:
        _check_kvm_rules(params)
    elif hv == constants.HT_XEN_PVM:
        _check_xen_pvm_rules(params)
    elif hv == constants.HT_LIBVIRT and params.get("initrd_path") \
            and "kernel_path" in params and not params["kernel_path"]:
        raise errors.OpPrereqError("Parameter 'initrd_path' needs 'kernel_path' "
                                   "(direct kernel boot)", errors.ECODE_INVAL)


def _check_xen_pvm_rules(p: dict[str, Any]) -> None:
    """A PV guest needs a kernel or a bootloader (checked on filled params)."""
    def fail(msg: str) -> None:
        raise errors.OpPrereqError(msg, errors.ECODE_INVAL)

    if "kernel_path" in p and "use_bootloader" in p and not p["kernel_path"] \
            and not p["use_bootloader"]:
        fail("A Xen PVM instance needs a kernel: set 'kernel_path' or 'use_bootloader'")
    if p.get("use_bootloader") and "bootloader_path" in p and not p["bootloader_path"]:
        fail("Parameter 'use_bootloader' needs 'bootloader_path'")
    if p.get("initrd_path") and "kernel_path" in p and not p["kernel_path"]:
        fail("Parameter 'initrd_path' needs 'kernel_path'")


def _check_kvm_rules(p: dict[str, Any]) -> None:
    def fail(msg: str) -> None:
        raise errors.OpPrereqError(msg, errors.ECODE_INVAL)

    if p.get("initrd_path") and "kernel_path" in p and not p["kernel_path"]:
        fail("Parameter 'initrd_path' needs 'kernel_path' (direct kernel boot)")
    if p.get("security_model") == "user" and "security_domain" in p \
            and not p["security_domain"]:
        fail("Parameter 'security_domain' must be set when security_model is 'user'")
    if p.get("security_domain") and p.get("security_model") in ("none", "pool"):
        fail("Parameter 'security_domain' can only be set with security_model 'user'")
    if p.get("boot_order") == "cdrom" and "cdrom_image_path" in p \
            and not p["cdrom_image_path"]:
        fail("Parameter 'boot_order' is 'cdrom' but 'cdrom_image_path' is empty")
    if p.get("vnc_tls") is True and "vnc_bind_address" in p and not p["vnc_bind_address"]:
        fail("Parameter 'vnc_tls' needs 'vnc_bind_address'")
    if p.get("spice_use_tls") is True and "spice_bind" in p and not p["spice_bind"]:
        fail("Parameter 'spice_use_tls' needs 'spice_bind'")


def check_beparams(params: dict[str, Any]) -> None:
    """Validate typed beparams (pure); ``memory`` (legacy) must be expanded first."""
    _check_table(BE_PARAMS, params, "backend")
    if "maxmem" in params and "minmem" in params and params["minmem"] > params["maxmem"]:
        raise errors.OpPrereqError("Parameter 'minmem' (%s) must not exceed 'maxmem' (%s)" %
                                   (params["minmem"], params["maxmem"]), errors.ECODE_INVAL)


def upgrade_beparams(params: dict[str, Any]) -> dict[str, Any]:
    """Expand the legacy ``memory`` key into maxmem and minmem (spec §2)."""
    out = dict(params)
    if BE_MEMORY_ALIAS in out:
        mem = out.pop(BE_MEMORY_ALIAS)
        out.setdefault("maxmem", mem)
        out.setdefault("minmem", mem)
    return out


def _layer(base: dict[str, Any], *overrides: dict[str, Any] | None) -> dict[str, Any]:
    out = dict(base)
    for layer in overrides:
        for key, value in (layer or {}).items():
            if value is None:
                continue
            out[key] = value
    return out


def fill_hvparams(hv: str, cluster_defaults: dict[str, Any] | None,
                  os_hvp: dict[str, Any] | None = None,
                  instance_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Filled hvparams: table defaults ← cluster ← OS ← instance (spec §1).

    Globals always come from the cluster level.  Keys unknown to the table
    are dropped, so a filled dict is always complete and valid in shape.
    """
    table = hv_table(hv)
    filled = _layer(hv_defaults(hv), cluster_defaults, os_hvp, instance_params)
    for key in HV_GLOBALS.intersection(table):
        filled[key] = (cluster_defaults or {}).get(key, table[key].default)
    return {k: v for k, v in filled.items() if k in table}


def fill_beparams(cluster_defaults: dict[str, Any] | None,
                  instance_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Filled beparams: table defaults ← cluster ``default`` ← instance."""
    filled = _layer(be_defaults(), upgrade_beparams(cluster_defaults or {}),
                    upgrade_beparams(instance_params or {}))
    return {k: v for k, v in filled.items() if k in BE_PARAMS}
