"""The Xen drivers (xen-pvm, xen-hvm): xl run on a dom0.

Flow (doc/design-xen-libvirt.md): start = check the node is a dom0, write
the generated config to ``<hv_dir>/<name>.cfg``, ``xl create``; stop =
``xl shutdown -w`` bounded by the timeout, then ``xl destroy``; the config
file goes with the domain.  ``xl list``/``xl info`` are the only source of
truth about what runs.  On a node without a Xen dom0 every operation that
would change something raises HypervisorError with the reason before
touching anything; queries answer "nothing runs" and verify()/node info say
why.
"""

import abc
import os
import shutil
import socket
import threading
from typing import Any

from corral import errors, pathutils
from corral.hypervisor import base, common
from corral.hypervisor.xen import config, xl
from corral.hypervisor.xen.migration import XenMigrationMixin
from corral.utils import io, process

XEN_CAPS_FILE = "/proc/xen/capabilities"
SYS_HYPERVISOR_TYPE = "/sys/hypervisor/type"
PRIVCMD = "/dev/xen/privcmd"
XL_TIMEOUT = 120


def hv_dir() -> str:
    """Config files and migration logs of both Xen flavours."""
    return pathutils.hypervisor_run_dir("xen")


def check_name(name: str) -> str:
    if name == xl.DOM0_NAME:
        raise errors.HypervisorError("Invalid instance name %r (the dom0's)" % (name,))
    return common.check_name(name)


def cfg_path(name: str) -> str:
    return os.path.join(hv_dir(), check_name(name) + ".cfg")


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def dom0_problem() -> str | None:
    """Why this node cannot run Xen domains, or None (no command is run)."""
    if shutil.which(xl.XL) is None:
        return "xl not found: this node has no Xen toolstack (install xen-utils)"
    if "control_d" in _read(XEN_CAPS_FILE):
        return None
    if _read(SYS_HYPERVISOR_TYPE).strip() == "xen" and os.path.exists(PRIVCMD):
        return None
    return ("this node is not running as a Xen dom0 (no %s with control_d, no %s): Xen "
            "instances cannot run here" % (XEN_CAPS_FILE, SYS_HYPERVISOR_TYPE))


def run_xl(argv: list[str], timeout: float = XL_TIMEOUT) -> process.RunResult:
    return process.run_cmd(argv, timeout=timeout)


def check_xl(argv: list[str], timeout: float = XL_TIMEOUT) -> process.RunResult:
    """Run xl; HypervisorError with xl's words (or the no-dom0 reason) on failure."""
    res = run_xl(argv, timeout)
    if res.failed:
        raise errors.HypervisorError(xl.no_dom0_reason(res.output) or res.describe())
    return res


class XenHypervisor(XenMigrationMixin, base.BaseHypervisor):
    """What both Xen flavours share; subclasses generate their config."""

    NAME = ""
    CAN_MIGRATE = True
    CAN_BALLOON = True
    # HEAD defaults naming xm-era files; skipped when absent so xl uses its own.
    _OPTIONAL_DEFAULT_PATHS: tuple[str, ...] = ()
    _FILE_PARAMS: tuple[str, ...] = ()
    _lock = threading.Lock()

    @abc.abstractmethod
    def build_config(self, inst: base.InstanceSpec, disks: list[base.DiskSpec]) -> str:
        """The xl.cfg text (pure, from :mod:`.config`)."""

    def effective_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """hvparams with absent HEAD default paths cleared (documented fallback)."""
        out = dict(params)
        from corral.hypervisor import hvparams as hvp
        table = hvp.hv_table(self.NAME)
        for key in self._OPTIONAL_DEFAULT_PATHS:
            if out.get(key) == table[key].default and not os.path.exists(out[key]):
                out[key] = ""
        return out

    def _require_dom0(self) -> None:
        problem = dom0_problem()
        if problem:
            raise errors.HypervisorError(problem)

    # --- queries -------------------------------------------------------------
    def _domains(self) -> list[xl.Domain]:
        if dom0_problem():
            return []
        return xl.parse_list(check_xl(xl.list_argv()).stdout)

    def _domain(self, name: str) -> xl.Domain | None:
        if dom0_problem():
            return None
        res = run_xl(xl.list_argv(check_name(name)))
        if res.failed:
            return None   # "... is an invalid domain identifier"
        rows = [d for d in xl.parse_list(res.stdout) if d.name == name]
        return rows[0] if rows and rows[0].state != "dying" else None

    def list_instances(self) -> list[str]:
        return sorted(d.name for d in self._domains()
                      if d.domid != 0 and d.name != xl.DOM0_NAME and d.state != "dying")

    def get_instance_info(self, name: str) -> dict[str, Any] | None:
        dom = self._domain(name)
        if dom is None:
            return None
        state = {"paused": base.STATE_PAUSED, "shutdown": base.STATE_SHUTDOWN,
                 "crashed": base.STATE_SHUTDOWN}.get(dom.state, base.STATE_RUNNING)
        return {"name": name, "state": state, "memory": dom.memory, "vcpus": dom.vcpus,
                "time": dom.time, "domid": dom.domid}

    def get_node_info(self) -> dict[str, Any]:
        """xl info facts; without a dom0: zero memory and ``hv_error`` saying why."""
        problem = dom0_problem()
        if not problem:
            res = run_xl(xl.info_argv())
            if res.failed:
                problem = xl.no_dom0_reason(res.output) or res.describe()
            else:
                return xl.node_info(xl.parse_info(res.stdout), self._domains())
        return {"memory_total": 0, "memory_free": 0, "memory_dom0": 0,
                "cpu_total": os.cpu_count() or 1, "hv_version": [], "hv_error": problem}

    def verify(self) -> str | None:
        problem = dom0_problem()
        if problem:
            return problem
        res = run_xl(xl.info_argv(), timeout=60)
        if res.failed:
            return xl.no_dom0_reason(res.output) or "xl info failed: %s" % res.describe()
        return None

    def get_console(self, inst: base.InstanceSpec, node_name: str = "",
                    ssh_port: int = 22) -> dict[str, Any]:
        return {"instance": inst.name, "kind": "ssh",
                "host": node_name or socket.gethostname(), "port": ssh_port, "user": "root",
                "command": xl.console_argv(inst.name)}

    def validate_parameters(self, hvparams: dict[str, Any]) -> None:
        """Can an instance with these hvparams run on this node?

        Syntax, then the files the parameters name must exist here, then this
        node must be a Xen dom0 (as libvirt's check connects to its URI): the
        node checks of instance creation and migration run this before
        anything is made, so a node without Xen fails them with the reason
        rather than later, or with a misleading "no free memory".
        """
        self.check_parameters(hvparams)
        params = self.effective_params(hvparams)
        for key in self._FILE_PARAMS:
            if params.get(key) and not os.path.exists(params[key]):
                raise errors.HypervisorError("Parameter '%s': file %s does not exist" %
                                             (key, params[key]))
        self._require_dom0()

    # --- lifecycle -------------------------------------------------------------
    def start_instance(self, inst: base.InstanceSpec, block_devices: list[base.DiskSpec],
                       startup_paused: bool = False) -> None:
        """Checks (dom0 first), then config file + ``xl create``; the file goes on failure."""
        self.check_parameters(inst.hvparams)
        self._require_dom0()
        with self._lock:
            if self._domain(inst.name) is not None:
                raise errors.HypervisorError("Instance %s is already running" % inst.name)
            self._create(inst, block_devices, startup_paused)

    def _create(self, inst: base.InstanceSpec, disks: list[base.DiskSpec],
                paused: bool = False) -> None:
        for disk in disks:
            if not os.path.exists(disk.path):
                raise errors.HypervisorError("Disk %s of %s does not exist" %
                                             (disk.path, inst.name))
        spec = base.InstanceSpec.from_dict(inst.to_dict())
        spec.hvparams = self.effective_params(inst.hvparams)
        text = self.build_config(spec, disks)
        path = cfg_path(inst.name)
        os.makedirs(hv_dir(), mode=0o750, exist_ok=True)
        io.write_file_atomic(path, text, mode=0o600)
        res = run_xl(xl.create_argv(path, paused))
        if res.failed:
            io.remove_file(path)
            raise errors.HypervisorError("Cannot start %s: %s" % (
                inst.name, xl.no_dom0_reason(res.output) or res.describe()))

    def stop_instance(self, name: str, force: bool = False, timeout: int = 120) -> None:
        """Idempotent; clean shutdown bounded by ``timeout``, then destroy."""
        check_name(name)
        if self._domain(name) is not None and not force:
            # xl waits for the domain's death itself; a timeout or a guest
            # without PV shutdown support ends in destroy below.
            run_xl(xl.shutdown_argv(name), timeout=max(timeout, 1))
        if self._domain(name) is not None:
            check_xl(xl.destroy_argv(name))
        io.remove_file(cfg_path(name))

    def reboot_instance(self, inst: base.InstanceSpec, block_devices: list[base.DiskSpec],
                        reboot_type: str = "soft", timeout: int = 120) -> None:
        """soft: ``xl reboot`` (the guest reboots itself); hard: destroy + create."""
        if self._domain(inst.name) is None:
            raise errors.HypervisorError("Instance %s is not running" % inst.name)
        if reboot_type == "soft":
            check_xl(xl.reboot_argv(inst.name), timeout=timeout)
            return
        check_xl(xl.destroy_argv(inst.name))
        self._create(inst, block_devices)

    def cleanup_instance(self, name: str) -> None:
        if self._domain(name) is not None:
            raise errors.HypervisorError("Instance %s is still running" % name)
        io.remove_file(cfg_path(name))
        self._forget_migration(name)

    def balloon_instance_memory(self, inst: base.InstanceSpec, mem_mib: int) -> None:
        if self._domain(inst.name) is None:
            raise errors.HypervisorError("Instance %s is not running" % inst.name)
        check_xl(xl.mem_set_argv(inst.name, mem_mib))

    def pause_instance(self, name: str, paused: bool) -> None:
        check_xl(xl.pause_argv(check_name(name), paused))


class XenPvmHypervisor(XenHypervisor):
    """Paravirtual guests: a Xen-aware kernel booted directly or by a bootloader."""

    NAME = "xen-pvm"
    _FILE_PARAMS = ("kernel_path", "initrd_path", "bootloader_path", "vif_script")

    def build_config(self, inst: base.InstanceSpec, disks: list[base.DiskSpec]) -> str:
        return config.build_pvm_config(inst, disks)


class XenHvmHypervisor(XenHypervisor):
    """Fully virtualised guests: emulated firmware, disks and NICs (qemu-xen)."""

    NAME = "xen-hvm"
    _OPTIONAL_DEFAULT_PATHS = ("kernel_path", "device_model")
    _FILE_PARAMS = ("kernel_path", "device_model", "cdrom_image_path", "vnc_password_file",
                    "vif_script")

    def build_config(self, inst: base.InstanceSpec, disks: list[base.DiskSpec]) -> str:
        password = None
        pwfile = inst.hvparams.get("vnc_password_file")
        if inst.hvparams.get("vnc_bind_address") and pwfile:
            try:
                password = io.read_file(pwfile).strip().splitlines()[0]
            except (OSError, IndexError) as err:
                raise errors.HypervisorError("Cannot read VNC password file %s: %s" %
                                             (pwfile, err))
        return config.build_hvm_config(inst, disks, password)


