"""The QEMU command line: a PURE function of the instance and probed facts.

``build_argv`` looks at nothing on the machine (no file checks, no probes, no
clock); everything it needs comes in as arguments, so golden files under
test/data/kvm/ pin its output.  Execution lives in :mod:`.runtime`.
"""

import shlex

from corral import errors
from corral.hypervisor import common
from corral.hypervisor.base import DiskSpec, InstanceSpec, NicSpec
from corral.hypervisor.kvm import params as kp


def accel(hvp: dict, facts: kp.QemuFacts) -> str:
    """``kvm`` or ``tcg``: enabled/disabled as asked; "" = kvm only if usable here."""
    flag = hvp.get("kvm_flag", "")
    if flag == "enabled":
        return "kvm"
    if flag == "disabled":
        return "tcg"
    return "kvm" if facts.kvm_usable else "tcg"


def kernel_cmdline(hvp: dict) -> str:
    parts = []
    if hvp.get("root_path"):
        parts.append("root=%s" % hvp["root_path"])
    if hvp.get("serial_console"):
        parts.append("console=ttyS0,%s" % hvp.get("serial_speed", 38400))
    if hvp.get("kernel_args"):
        parts.append(hvp["kernel_args"])
    return " ".join(parts)


def memory_arg(memory: int, hvp: dict, facts: kp.QemuFacts) -> str:
    """The ``-m`` value: ``memory`` MiB, padded under TCG (common.tcg_ram_kib says why).
    ``mem_path`` RAM is rounded up to the (huge) page size by QEMU, which would undo
    the pad, so it gets none."""
    if accel(hvp, facts) != "tcg" or hvp.get("mem_path"):
        return str(memory)
    return "%dk" % common.tcg_ram_kib(memory)


def _machine_args(inst: InstanceSpec, facts: kp.QemuFacts) -> list[str]:
    hvp = inst.hvparams
    machine = "%s,accel=%s" % (hvp.get("machine_version") or kp.DEFAULT_MACHINE,
                               accel(hvp, facts))
    args = ["-machine", machine]
    if not hvp.get("acpi", True):
        if facts.supports("-no-acpi"):
            args += ["-no-acpi"]
        else:
            args[1] += ",acpi=off"
    if hvp.get("cpu_type"):
        args += ["-cpu", hvp["cpu_type"]]
    smp = str(inst.vcpus)
    for key in ("cores", "threads", "sockets"):
        if hvp.get("cpu_" + key):
            smp += ",%s=%d" % (key, hvp["cpu_" + key])
    args += ["-m", memory_arg(inst.memory, hvp, facts), "-smp", smp]
    if hvp.get("mem_path"):
        args += ["-mem-path", hvp["mem_path"], "-mem-prealloc"]
    return args


def _boot_args(hvp: dict) -> list[str]:
    if hvp.get("kernel_path"):
        args = ["-kernel", hvp["kernel_path"]]
        if hvp.get("initrd_path"):
            args += ["-initrd", hvp["initrd_path"]]
        return args + ["-append", kernel_cmdline(hvp)]
    return ["-boot", "order=%s" % kp.BOOT_ORDER[hvp.get("boot_order", "disk")]]


def _drive_opts(disk: DiskSpec, hvp: dict, node_id: str, interface: str = "none") -> str:
    """One -drive; ``mirror`` disks bypass the page cache and take no image lock.

    A mirror image is also open in the secondary's export (and, during a
    migration, in the incoming QEMU), which QEMU's file locks would refuse;
    direct I/O keeps every process's view the data on disk.  Their format node
    is named ``<id>-local`` so the replication job can address it.
    """
    cache = hvp.get("disk_cache", "default")
    if disk.dev_type == "mirror":
        cache = "none"
    opts = ["file=%s" % disk.path.replace(",", ",,"), "format=raw", "if=%s" % interface,
            "cache=%s" % ("writeback" if cache == "default" else cache),
            "aio=%s" % hvp.get("disk_aio", "threads"),
            "discard=%s" % hvp.get("disk_discard", "ignore")]
    if interface == "none":
        opts.insert(3, "id=%s" % node_id)
    if disk.dev_type == "mirror":
        opts += ["node-name=%s-local" % node_id, "file.locking=off"]
    if disk.mode == "ro":
        opts.append("readonly=on")
    return ",".join(opts)


def _disk_args(disks: list[DiskSpec], hvp: dict) -> list[str]:
    disk_type = hvp.get("disk_type", "paravirtual")
    if disk_type not in kp.DISK_DEVICES:
        raise errors.HypervisorError("Unsupported disk_type %r" % disk_type)
    device = kp.DISK_DEVICES[disk_type]
    args: list[str] = []
    if device and device.startswith("scsi-") and disks:
        ctrl = kp.SCSI_CONTROLLERS[hvp.get("scsi_controller_type", "lsi")]
        args += ["-device", "%s,id=scsi" % ctrl]
    if device == "ide-hd" and len(disks) > 4:
        raise errors.HypervisorError("disk_type ide allows at most 4 disks, got %d" %
                                     len(disks))
    for idx, disk in enumerate(disks):
        node_id = "disk%d" % idx
        if device is None:
            args += ["-drive", _drive_opts(disk, hvp, node_id, interface=disk_type)]
            continue
        if device == "ide-hd" and disk.mode == "ro":
            raise errors.HypervisorError("disk_type ide cannot attach read-only disk %d "
                                         "(QEMU's ide-hd needs write access)" % idx)
        args += ["-drive", _drive_opts(disk, hvp, node_id)]
        dev = "%s,drive=%s,id=%s-dev" % (device, node_id, node_id)
        if device == "ide-hd":
            dev += ",bus=ide.%d,unit=%d" % (idx // 2, idx % 2)
        elif device.startswith("scsi-"):
            dev += ",bus=scsi.0,scsi-id=%d" % idx
        if idx == 0 and not hvp.get("kernel_path") and hvp.get("boot_order", "disk") == "disk":
            dev += ",bootindex=1"
        args += ["-device", dev]
    return args


def _media_args(hvp: dict, ndisks: int) -> list[str]:
    """CD-ROMs and floppy; IDE CD-ROMs take the IDE units after IDE disks."""
    args: list[str] = []
    cd_type = hvp.get("cdrom_disk_type") or hvp.get("disk_type", "paravirtual")
    cd_if = {"paravirtual": "virtio"}.get(cd_type, "scsi" if cd_type.startswith("scsi")
                                          else "ide")
    index = ndisks if cd_if == "ide" and hvp.get("disk_type") == "ide" else 0
    for key in ("cdrom_image_path", "cdrom2_image_path"):
        if hvp.get(key):
            if cd_if == "ide" and index > 3:
                raise errors.HypervisorError("No IDE unit left for %s (4 IDE devices max)" %
                                             key)
            args += ["-drive", "file=%s,format=raw,media=cdrom,readonly=on,if=%s,index=%d" %
                     (hvp[key].replace(",", ",,"), cd_if, index)]
            index += 1
    if hvp.get("floppy_image_path"):
        args += ["-drive", "file=%s,format=raw,if=floppy,index=0" %
                 hvp["floppy_image_path"].replace(",", ",,")]
    return args


def _nic_args(nics: list[NicSpec], taps: list[kp.TapInfo], hvp: dict,
              facts: kp.QemuFacts) -> list[str]:
    if len(taps) != len(nics):
        raise errors.ProgrammerError("%d NICs but %d taps" % (len(nics), len(taps)))
    model = kp.NIC_MODELS[hvp.get("nic_type", "paravirtual")]
    args: list[str] = []
    for idx, (nic, tap) in enumerate(zip(nics, taps)):
        netdev = "tap,id=net%d,fd=%d" % (idx, tap.fd)
        if model == "virtio-net-pci" and hvp.get("vhost_net") and facts.vhost_net:
            netdev += ",vhost=on"
        args += ["-netdev", netdev,
                 "-device", "%s,netdev=net%d,mac=%s,id=nic%d" % (model, idx, nic.mac, idx)]
    return args


def _display_args(inst: InstanceSpec, vnc_host: str | None) -> list[str]:
    hvp = inst.hvparams
    args: list[str] = []
    bind = vnc_host if vnc_host is not None else hvp.get("vnc_bind_address", "")
    if bind:
        if inst.network_port is None or inst.network_port < 5900:
            raise errors.HypervisorError("VNC needs a network_port >= 5900 for %s" % inst.name)
        vnc = "%s:%d" % (bind if ":" not in bind else "[%s]" % bind, inst.network_port - 5900)
        if hvp.get("vnc_tls"):
            vnc += ",tls=on"
            if hvp.get("vnc_x509_path"):
                vnc += ",x509%s=%s" % ("verify" if hvp.get("vnc_x509_verify") else "",
                                       hvp["vnc_x509_path"])
        if hvp.get("vnc_password_file"):
            vnc += ",password=on"
        args += ["-vnc", vnc, "-vga", hvp.get("vga") or "std"]
        if hvp.get("keymap"):
            args += ["-k", hvp["keymap"]]
    else:
        args += ["-display", "none", "-vga", hvp.get("vga") or "none"]
    if hvp.get("usb_mouse"):
        args += ["-usb", "-device", "usb-%s" % hvp["usb_mouse"]]
    return args


def _chardev_args(inst: InstanceSpec, paths: kp.InstancePaths) -> list[str]:
    hvp = inst.hvparams
    args: list[str] = []
    if hvp.get("serial_console", True):
        args += ["-chardev", "socket,id=serial0,path=%s,server=on,wait=off,logfile=%s,"
                 "logappend=on" % (paths.serial, paths.serial_log),
                 "-serial", "chardev:serial0"]
    else:
        args += ["-serial", "none"]
    args += ["-qmp", "unix:%s,server=on,wait=off" % paths.qmp]
    if hvp.get("use_guest_agent"):
        args += ["-chardev", "socket,id=qga0,path=%s,server=on,wait=off" % paths.qga,
                 "-device", "virtio-serial,id=vserial0",
                 "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"]
    return args


def _misc_args(hvp: dict, paths: kp.InstancePaths) -> list[str]:
    args = ["-device", "virtio-balloon-pci,id=balloon0"]
    if hvp.get("use_localtime"):
        args += ["-rtc", "base=localtime"]
    if hvp.get("reboot_behavior") == "exit":
        args += ["-no-reboot"]
    if hvp.get("soundhw"):
        args += ["-device", hvp["soundhw"]]
    for dev in (hvp.get("usb_devices") or "").replace(",", " ").split():
        vendor, _, product = dev.partition(":")
        args += ["-device", "usb-host,vendorid=0x%s,productid=0x%s" % (vendor, product)]
    if hvp.get("security_model") == "user" and hvp.get("security_domain"):
        args += ["-runas", hvp["security_domain"]]
    if hvp.get("use_chroot"):
        args += ["-chroot", paths.chroot]
    return args


def build_argv(inst: InstanceSpec, disks: list[DiskSpec], facts: kp.QemuFacts,
               paths: kp.InstancePaths, taps: list[kp.TapInfo],
               incoming: str | None = None, paused: bool = False,
               vnc_host: str | None = None) -> list[str]:
    """The complete argv starting QEMU daemonized for ``inst``.

    ``taps`` are open tap fds (one per NIC, in order) passed to QEMU;
    ``incoming`` is ``tcp:IP:PORT`` on a migration target; ``vnc_host`` is
    the resolved address when vnc_bind_address names an interface.
    """
    hvp = inst.hvparams
    argv = [facts.binary, "-name", inst.name, "-uuid", inst.uuid, "-nodefaults"]
    argv += _machine_args(inst, facts)
    argv += _boot_args(hvp)
    argv += _disk_args(disks, hvp)
    argv += _media_args(hvp, len(disks))
    argv += _nic_args(inst.nics, taps, hvp, facts)
    argv += _display_args(inst, vnc_host)
    argv += _chardev_args(inst, paths)
    argv += _misc_args(hvp, paths)
    if paused:
        argv += ["-S"]
    if incoming:
        argv += ["-incoming", incoming]
    argv += ["-pidfile", paths.pidfile, "-daemonize"]
    if hvp.get("kvm_extra"):
        argv += shlex.split(hvp["kvm_extra"])
    return argv
