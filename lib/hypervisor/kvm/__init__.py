"""The KVM driver: QEMU processes driven through QMP.

Flow (doc/design-kvm.md): start = probe QEMU, open taps, build argv (pure,
:mod:`.cmdline`), save the runtime file, run QEMU ``-daemonize``; stop = QMP
``system_powerdown``, wait for the process to exit (pidfd) up to the timeout,
then kill; cleanup removes the instance's runtime dir (the serial log stays).
A QEMU killed behind our back is simply "not running" (pid dead); the next
start removes its stale files.  Operations on one instance are serialized by
a per-instance lock, which also keeps QMP (one client at a time) uncontended.
"""

import logging
import os
import socket
import time
from typing import Any

from corral import errors
from corral.hypervisor import base, common
from corral.utils import io
from corral.hypervisor import hvparams as hvp
from corral.hypervisor.kvm import cmdline, netdev, qmp, replication, runtime
from corral.hypervisor.kvm import params as kp
from corral.hypervisor.kvm.migration import KvmMigrationMixin
from corral.hypervisor.kvm.replication import KvmReplicationMixin

SOCAT = "socat"
# Seconds between ACPI power button presses during a graceful shutdown.
POWERDOWN_REPEAT = 5.0

_lock = runtime.instance_lock
_check_name = runtime.check_name


class KvmHypervisor(KvmMigrationMixin, KvmReplicationMixin, base.BaseHypervisor):
    """QEMU/KVM (TCG when kvm_flag=disabled or KVM is unusable)."""

    NAME = "kvm"
    CAN_MIGRATE = True
    CAN_REPLICATE = True
    CAN_BALLOON = True
    CAN_HOTPLUG = False

    # --- start -------------------------------------------------------------
    def start_instance(self, inst: base.InstanceSpec, block_devices: list[base.DiskSpec],
                       startup_paused: bool = False) -> None:
        with _lock(_check_name(inst.name)):
            paths = runtime.paths_for(inst.name)
            if runtime.running_pid(paths, inst.name):
                raise errors.HypervisorError("Instance %s is already running" % inst.name)
            self._cleanup(inst.name, paths)
            self._start(inst, block_devices, paths, paused=startup_paused)

    def _start(self, inst: base.InstanceSpec, disks: list[base.DiskSpec],
               paths: kp.InstancePaths, paused: bool = False,
               incoming: str | None = None) -> None:
        """Start QEMU; on any failure nothing is left behind but the serial log."""
        self.check_parameters(inst.hvparams)
        runtime.check_socket_paths(paths)
        for disk in disks:
            if not os.path.exists(disk.path):
                raise errors.HypervisorError("Disk %s of %s does not exist" %
                                             (disk.path, inst.name))
        facts = runtime.probe_facts(runtime.resolve_binary(inst.hvparams.get("kvm_path", "")))
        runtime.prepare_dirs(paths)
        if inst.hvparams.get("use_chroot"):
            os.makedirs(paths.chroot, mode=0o755, exist_ok=True)
        taps: list[kp.TapInfo] = []
        try:
            for nic in inst.nics:
                fd, ifname = netdev.open_tap(vnet_hdr=bool(inst.hvparams.get("vnet_hdr", True)))
                taps.append(kp.TapInfo(ifname, fd))
                netdev.configure_tap(ifname, nic)
            argv = cmdline.build_argv(inst, disks, facts, paths, taps, incoming=incoming,
                                      paused=paused, vnc_host=self._vnc_host(inst.hvparams))
            state = {"spec": inst.to_dict(), "disks": [d.to_dict() for d in disks],
                     "argv": argv, "taps": [t.ifname for t in taps],
                     "paused": paused or bool(incoming), "memory": inst.memory,
                     "qemu_version": list(facts.version), "start_time": time.time()}
            runtime.save_runtime(paths, state)
            runtime.launch(argv, [t.fd for t in taps])
            state["pid"] = runtime.running_pid(paths, inst.name)
            if not state["pid"]:
                raise errors.HypervisorError("QEMU for %s exited right after start; see %s" %
                                             (inst.name, paths.serial_log))
            runtime.save_runtime(paths, state)
            if not incoming:
                for problem in self._start_replication(inst.name, disks):
                    logging.warning("Instance %s runs without replication: %s",
                                    inst.name, problem)
        except BaseException:
            pid = runtime.running_pid(paths, inst.name)
            if pid:
                runtime.kill_qemu(pid)
            self._cleanup(inst.name, paths, [t.ifname for t in taps])
            raise
        finally:
            for tap in taps:
                os.close(tap.fd)

    @staticmethod
    def _vnc_host(params: dict[str, Any]) -> str | None:
        return common.vnc_bind_ip(params)

    # --- stop / reboot / cleanup -----------------------------------------
    def stop_instance(self, name: str, force: bool = False, timeout: int = 120) -> None:
        with _lock(_check_name(name)):
            paths = runtime.paths_for(name)
            pid = runtime.running_pid(paths, name)
            if pid and not force:
                self._powerdown(paths, pid, timeout)
            pid = runtime.running_pid(paths, name)
            if pid:
                runtime.kill_qemu(pid)
            self._cleanup(name, paths)

    @staticmethod
    def _powerdown(paths: kp.InstancePaths, pid: int, timeout: float) -> None:
        """ACPI power button, then wait (event-driven) for QEMU to exit.

        A press while the guest is still booting (before its ACPI daemon runs)
        is lost, so the button is pressed again every POWERDOWN_REPEAT seconds
        until QEMU exits or ``timeout`` passes; the caller then kills it.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                with qmp.QmpClient(paths.qmp, timeout=min(10.0, max(timeout, 1))) as mon:
                    mon.execute("system_powerdown")
            except qmp.QmpError:
                return  # no monitor (QEMU gone or wedged): the caller kills
            remaining = deadline - time.monotonic()
            if runtime.wait_pid_exit(pid, min(POWERDOWN_REPEAT, max(remaining, 0))):
                return
            if time.monotonic() >= deadline:
                return

    def reboot_instance(self, inst: base.InstanceSpec, block_devices: list[base.DiskSpec],
                        reboot_type: str = "soft", timeout: int = 120) -> None:
        """Restart QEMU from the saved runtime; soft lets the guest shut down first."""
        with _lock(_check_name(inst.name)):
            paths = runtime.paths_for(inst.name)
            pid = runtime.running_pid(paths, inst.name)
            saved = runtime.load_runtime(paths)
            if not pid or saved is None:
                raise errors.HypervisorError("Instance %s is not running" % inst.name)
            if reboot_type == "soft":
                self._powerdown(paths, pid, timeout)
            pid = runtime.running_pid(paths, inst.name)
            if pid:
                runtime.kill_qemu(pid)
            self._cleanup(inst.name, paths)
            spec = base.InstanceSpec.from_dict(saved["spec"])
            disks = [base.DiskSpec.from_dict(d) for d in saved["disks"]]
            self._start(spec, disks, paths)

    def forget_instance(self, name: str) -> None:
        """Remove the kept serial console log of a removed instance."""
        with _lock(_check_name(name)):
            paths = runtime.paths_for(name)
            for path in (paths.serial_log, paths.serial_log + ".old"):
                io.remove_file(path)

    def cleanup_instance(self, name: str) -> None:
        with _lock(_check_name(name)):
            paths = runtime.paths_for(name)
            if runtime.running_pid(paths, name):
                raise errors.HypervisorError("Instance %s is still running" % name)
            self._cleanup(name, paths)

    @staticmethod
    def _cleanup(name: str, paths: kp.InstancePaths, taps: list[str] | None = None) -> None:
        saved = None
        try:
            saved = runtime.load_runtime(paths)
        except errors.HypervisorError:
            pass
        for tap in (taps or []) + list((saved or {}).get("taps", [])):
            netdev.remove_tap(tap)
        runtime.remove_instance_dir(paths)

    # --- queries -----------------------------------------------------------
    def list_instances(self) -> list[str]:
        try:
            names = sorted(os.listdir(runtime.hv_dir()))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            if name == "log" or name.startswith(".") or not os.path.isdir(
                    os.path.join(runtime.hv_dir(), name)):
                continue
            if runtime.running_pid(kp.instance_paths(runtime.hv_dir(), name), name):
                out.append(name)
        return out

    def get_instance_info(self, name: str) -> dict[str, Any] | None:
        paths = kp.instance_paths(runtime.hv_dir(), _check_name(name))
        pid = runtime.running_pid(paths, name)
        if not pid:
            return None
        saved = runtime.load_runtime(paths) or {}
        spec = saved.get("spec", {})
        info = {"name": name,
                "state": base.STATE_PAUSED if saved.get("paused") else base.STATE_RUNNING,
                "memory": int(saved.get("memory", spec.get("beparams", {}).get("maxmem", 0))),
                "vcpus": int(spec.get("beparams", {}).get("vcpus", 1)),
                "time": runtime.cpu_time(pid), "pid": pid}
        if any(d.get("dev_type") == "mirror" for d in saved.get("disks", [])):
            info["replication"] = replication.snapshot(paths, saved)
        return info

    def get_node_info(self) -> dict[str, Any]:
        try:
            facts = runtime.probe_facts(runtime.resolve_binary(
                hvp.HV_PARAMS["kvm"]["kvm_path"].default))
            version: Any = list(facts.version)
        except errors.HypervisorError:
            version = []
        return base.host_node_info(version)

    def get_console(self, inst: base.InstanceSpec, node_name: str = "",
                    ssh_port: int = 22) -> dict[str, Any]:
        host = node_name or socket.gethostname()
        params = inst.hvparams
        if params.get("serial_console", True):
            path = kp.instance_paths(runtime.hv_dir(), inst.name).serial
            return {"instance": inst.name, "kind": "ssh", "host": host, "port": ssh_port,
                    "user": "root", "socket": path,
                    "command": [SOCAT, "STDIO,raw,echo=0,escape=0x1d",
                                "UNIX-CONNECT:%s" % path]}
        if params.get("vnc_bind_address") and inst.network_port:
            return {"instance": inst.name, "kind": "vnc", "host": host,
                    "port": inst.network_port, "display": inst.network_port - 5900}
        return {"instance": inst.name, "kind": "msg",
                "message": "No serial console or VNC configured for %s" % inst.name}

    def verify(self) -> str | None:
        try:
            runtime.resolve_binary(hvp.HV_PARAMS["kvm"]["kvm_path"].default)
        except errors.HypervisorError as err:
            return str(err)
        if not os.path.exists("/dev/net/tun"):
            return "/dev/net/tun is missing: instances with NICs cannot start"
        directory = runtime.hv_dir()
        if os.path.exists(directory) and not os.access(directory, os.W_OK):
            return "KVM runtime directory %s is not writable" % directory
        return None

    def validate_parameters(self, hvparams: dict[str, Any]) -> None:
        """Syntax, then node facts: files exist, binary found, user exists."""
        self.check_parameters(hvparams)
        for key in ("kernel_path", "initrd_path", "cdrom_image_path", "cdrom2_image_path",
                    "floppy_image_path", "vnc_password_file", "spice_password_file"):
            if hvparams.get(key) and not os.path.isfile(hvparams[key]):
                raise errors.HypervisorError("Parameter '%s': file %s does not exist" %
                                             (key, hvparams[key]))
        for key in ("vnc_x509_path", "mem_path"):
            if hvparams.get(key) and not os.path.isdir(hvparams[key]):
                raise errors.HypervisorError("Parameter '%s': directory %s does not exist" %
                                             (key, hvparams[key]))
        if "kvm_path" in hvparams:
            runtime.resolve_binary(hvparams["kvm_path"])
        if hvparams.get("security_model") == "user" and hvparams.get("security_domain"):
            import pwd
            try:
                pwd.getpwnam(hvparams["security_domain"])
            except KeyError:
                raise errors.HypervisorError("Parameter 'security_domain': no user %s" %
                                             hvparams["security_domain"])
        if hvparams.get("vnc_bind_address"):
            self._vnc_host(hvparams)

    # --- balloon / QMP helpers ----------------------------------------------
    def _qmp(self, name: str, command: str, arguments: dict | None = None) -> Any:
        paths = runtime.paths_for(name)
        if not runtime.running_pid(paths, name):
            raise errors.HypervisorError("Instance %s is not running" % name)
        with qmp.QmpClient(paths.qmp) as mon:
            return mon.execute(command, arguments)

    def _update_runtime(self, name: str, **changes: Any) -> None:
        paths = runtime.paths_for(name)
        saved = runtime.load_runtime(paths)
        if saved is not None:
            saved.update(changes)
            runtime.save_runtime(paths, saved)

    def balloon_instance_memory(self, inst: base.InstanceSpec, mem_mib: int) -> None:
        with _lock(_check_name(inst.name)):
            self._qmp(inst.name, "balloon", {"value": int(mem_mib) << 20})
            self._update_runtime(inst.name, memory=int(mem_mib))

    def pause_instance(self, name: str, paused: bool) -> None:
        """QMP stop/cont (e.g. to release a startup_paused instance)."""
        with _lock(_check_name(name)):
            self._qmp(name, "stop" if paused else "cont")
            self._update_runtime(name, paused=paused)
