"""Pure generation of libvirt domain XML (formatdomain.html), and libvirt URIs.

``build_domain_xml`` is a function of the instance, its disks, the resolved
domain type and the node-local runtime paths; it touches nothing.  Corral's
domains carry ``<metadata><corral:instance .../></metadata>`` so the driver
never undefines a domain somebody else defined under the same name.
"""

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from corral import errors
from corral.hypervisor import common
from corral.hypervisor.base import DiskSpec, InstanceSpec, NicSpec

CORRAL_NS = "http://corral.invalid/xmlns/libvirt/instance/1"
ET.register_namespace("corral", CORRAL_NS)

DISK_BUS = {"paravirtual": ("virtio", "vd"), "ide": ("ide", "hd"), "scsi": ("scsi", "sd"),
            "sata": ("sata", "sd")}
NIC_MODEL = {"paravirtual": "virtio", "e1000": "e1000", "rtl8139": "rtl8139"}
BOOT_DEV = {"disk": "hd", "cdrom": "cdrom", "network": "network"}
_BLOCK_TYPES = ("plain", "drbd", "blockdev", "rbd", "ext", "lvm", "block")
URI_DOMAIN_TYPES = {"qemu": "qemu", "xen": "xen", "lxc": "lxc", "test": "test"}


@dataclass(frozen=True)
class DomainPaths:
    """Node-local files of one domain (serial socket must not be shared: PLATFORM §4)."""

    dir: str
    serial_socket: str
    serial_log: str
    runtime: str


# --- URIs ----------------------------------------------------------------------
def uri_driver(uri: str) -> str:
    """``qemu`` for qemu:///system, qemu+tcp://h/system, ...; the part before ``+``."""
    return urlsplit(uri).scheme.split("+", 1)[0]


def resolve_domain_type(params: dict[str, Any], uri: str, kvm_usable: bool) -> str:
    """The hvparam if set, else from the URI: qemu → kvm when usable, else qemu (TCG)."""
    if params.get("domain_type"):
        return str(params["domain_type"])
    drv = uri_driver(uri)
    if drv == "qemu":
        return "kvm" if kvm_usable else "qemu"
    if drv not in URI_DOMAIN_TYPES:
        raise errors.HypervisorError("Cannot derive a domain type from URI %s: set "
                                     "domain_type" % uri)
    return URI_DOMAIN_TYPES[drv]


def target_uri(local_uri: str, target_ip: str, transport: str = "tcp") -> str:
    """The migration target's URI: same driver and path, host = the target's address."""
    parts = urlsplit(local_uri)
    host = "[%s]" % target_ip if ":" in target_ip else target_ip
    path = parts.path or "/system"
    return urlunsplit(("%s+%s" % (uri_driver(local_uri), transport), host, path, "", ""))


# --- XML -------------------------------------------------------------------------
def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, {k.rstrip("_"): v for k, v in attrs.items()})
    if text is not None:
        el.text = text
    return el


def _os(dom: ET.Element, params: dict[str, Any], domain_type: str) -> None:
    os_el = _sub(dom, "os")
    if domain_type == "lxc":
        _sub(os_el, "type", "exe")
        _sub(os_el, "init", "/sbin/init")
        return
    attrs = {"arch": "x86_64"}
    if params.get("machine_type"):
        attrs["machine"] = params["machine_type"]
    _sub(os_el, "type", "hvm", **attrs)
    if params.get("kernel_path"):
        _sub(os_el, "kernel", params["kernel_path"])
        if params.get("initrd_path"):
            _sub(os_el, "initrd", params["initrd_path"])
        args = []
        if params.get("root_path"):
            args.append("root=%s" % params["root_path"])
        if params.get("kernel_args"):
            args.append(str(params["kernel_args"]))
        if params.get("serial_console", True):
            args.append("console=ttyS0,%d" % int(params.get("serial_speed", 38400)))
        _sub(os_el, "cmdline", " ".join(args))
    else:
        _sub(os_el, "boot", dev=BOOT_DEV[params.get("boot_order", "disk")])


def _disks(devs: ET.Element, params: dict[str, Any], disks: list[DiskSpec],
           domain_type: str) -> None:
    bus, prefix = DISK_BUS[params.get("disk_type", "paravirtual")]
    if len(disks) > 26:
        raise errors.HypervisorError("At most 26 disks are supported")
    for idx, disk in enumerate(disks):
        block = disk.dev_type in _BLOCK_TYPES or disk.path.startswith("/dev/")
        if domain_type == "lxc":
            fs = _sub(devs, "filesystem", type_="block" if block else "file",
                      accessmode="passthrough")
            if not block:
                _sub(fs, "driver", type_="loop", format="raw")
            _sub(fs, "source", **({"dev": disk.path} if block else {"file": disk.path}))
            _sub(fs, "target", dir="/" if idx == 0 else "/mnt/disk%d" % idx)
            continue
        el = _sub(devs, "disk", type_="block" if block else "file", device="disk")
        if domain_type in ("kvm", "qemu"):
            drv = {"name": "qemu", "type": "raw"}
            if params.get("disk_cache", "default") != "default":
                drv["cache"] = params["disk_cache"]
            _sub(el, "driver", **drv)
        _sub(el, "source", **({"dev": disk.path} if block else {"file": disk.path}))
        _sub(el, "target", dev=prefix + chr(ord("a") + idx), bus=bus)
        if disk.mode == "ro":
            _sub(el, "readonly")
    if params.get("cdrom_image_path") and domain_type != "lxc":
        el = _sub(devs, "disk", type_="file", device="cdrom")
        _sub(el, "source", file=params["cdrom_image_path"])
        _sub(el, "target", dev="hdc", bus="ide")
        _sub(el, "readonly")


def _nic(devs: ET.Element, nic: NicSpec, params: dict[str, Any], domain_type: str) -> None:
    if nic.mode not in ("bridged", "openvswitch"):
        raise errors.HypervisorError("NIC mode %r is not supported by the libvirt hypervisor "
                                     "(use bridged or openvswitch)" % nic.mode)
    if not nic.link:
        raise errors.HypervisorError("NIC %s has no link (bridge) set" % nic.mac)
    el = _sub(devs, "interface", type_="bridge")
    _sub(el, "mac", address=nic.mac)
    _sub(el, "source", bridge=nic.link)
    if nic.mode == "openvswitch":
        _sub(el, "virtualport", type_="openvswitch")
        vlan = (nic.vlan or "").lstrip(".:")
        if vlan:
            _sub(_sub(el, "vlan"), "tag", id=vlan)
    if domain_type in ("kvm", "qemu"):
        _sub(el, "model", type_=NIC_MODEL[params.get("nic_type", "paravirtual")])


def _devices(dom: ET.Element, inst: InstanceSpec, disks: list[DiskSpec], domain_type: str,
             paths: DomainPaths, vnc_listen: str | None) -> None:
    params = inst.hvparams
    devs = _sub(dom, "devices")
    _disks(devs, params, disks, domain_type)
    for nic in inst.nics:
        _nic(devs, nic, params, domain_type)
    if domain_type == "lxc":
        _sub(devs, "console", type_="pty")     # LXC has no unix-socket serial
    elif params.get("serial_console", True):
        serial = _sub(devs, "serial", type_="unix")
        _sub(serial, "source", mode="bind", path=paths.serial_socket)
        _sub(serial, "log", file=paths.serial_log, append="on")
        _sub(serial, "target", port="0")
    if vnc_listen:
        attrs = {"type": "vnc", "listen": vnc_listen}
        if inst.network_port:
            attrs.update(port=str(inst.network_port), autoport="no")
        else:
            attrs.update(autoport="yes")
        _sub(devs, "graphics", **attrs)
    if domain_type in ("kvm", "qemu"):
        _sub(devs, "memballoon", model="virtio")


def build_domain_xml(inst: InstanceSpec, disks: list[DiskSpec], domain_type: str,
                     paths: DomainPaths, vnc_listen: str | None = None) -> str:
    """The domain XML; ``vnc_listen`` is the resolved VNC address (None: no VNC)."""
    params = inst.hvparams
    dom = ET.Element("domain", {"type": domain_type})
    _sub(dom, "name", inst.name)
    if inst.uuid:
        _sub(dom, "uuid", inst.uuid)
    meta = _sub(_sub(dom, "metadata"), "{%s}instance" % CORRAL_NS)
    _sub(meta, "{%s}name" % CORRAL_NS, inst.name)
    if domain_type == "qemu":  # TCG: see common.tcg_ram_kib
        ram = str(common.tcg_ram_kib(inst.memory))
        _sub(dom, "memory", ram, unit="KiB")
        _sub(dom, "currentMemory", ram, unit="KiB")
    else:
        _sub(dom, "memory", str(inst.memory), unit="MiB")
        _sub(dom, "currentMemory", str(inst.memory), unit="MiB")
    _sub(dom, "vcpu", str(inst.vcpus))
    _os(dom, params, domain_type)
    features = _sub(dom, "features")
    if params.get("acpi", True) and domain_type != "lxc":
        _sub(features, "acpi")
        _sub(features, "apic")
    if params.get("cpu_mode") and domain_type in ("kvm", "qemu"):
        _sub(dom, "cpu", mode=params["cpu_mode"])
    _sub(dom, "clock", offset="localtime" if params.get("use_localtime") else "utc")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "destroy" if params.get("reboot_behavior") == "exit"
         else "restart")
    _sub(dom, "on_crash", "destroy")
    _devices(dom, inst, disks, domain_type, paths, vnc_listen)
    ET.indent(dom, "  ")
    return ET.tostring(dom, encoding="unicode") + "\n"


def is_corral_domain(xml_text: str) -> bool:
    """Whether a domain's XML carries Corral's metadata element."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError:
        return False
    return root.find("metadata/{%s}instance" % CORRAL_NS) is not None


def serial_socket_of(xml_text: str) -> str | None:
    """The path of the first unix serial socket in a (live) domain XML."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError:
        return None
    src = root.find("devices/serial[@type='unix']/source")
    return src.get("path") if src is not None else None


def with_serial_socket(xml_text: str, path: str) -> str:
    """``xml_text`` with the unix serial socket moved to ``path`` (migration dest XML).

    The destination QEMU must not bind the source's socket path: the source
    QEMU unlinks it when it exits (PLATFORM.md §4 pitfall c).
    """
    root = ET.fromstring(xml_text)
    for src in root.findall("devices/serial[@type='unix']/source") + \
            root.findall("devices/console[@type='unix']/source"):
        src.set("path", path)
    return ET.tostring(root, encoding="unicode")
