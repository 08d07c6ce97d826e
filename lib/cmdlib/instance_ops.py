"""Instance lifecycle: startup, shutdown, reboot, remove, rename, reinstall, console.

Each LU holds the instance lock exclusively and its nodes (spec/opcodes.md §5);
startup also holds the primary's node-res lock (memory).  Configuration
writes happen after the node did its part, one write per operation where
Ganeti's outcome allows it.
"""

from typing import Any, Callable

from corral import constants, errors, locking, netutils, objects, osdef
from corral.cmdlib import instance_mirror
from corral.cmdlib import instance_storage as ist
from corral.cmdlib import instance_utils as iu
from corral.cmdlib.instance_create import reserve_instance_name
from corral.hypervisor import hvparams

Feedback = Callable[[str], None]


def _start(lu: iu.InstanceLU, inst: objects.Instance, hvp: dict | None = None,
           bep: dict | None = None, paused: bool = False) -> str | None:
    """Start ``inst`` on its primary (disks activated by the node); the error or None.

    Internally mirrored disks are assembled first, so the secondaries are
    connected before the primary opens its side.
    """
    if inst.disk_template in constants.DTS_INT_MIRROR:
        ist.assemble_disks(lu, inst)
    res = lu.rpc.call_one("instance_start", iu.node_name(lu.cfg, inst.primary_node),
                          {"instance": iu.instance_rpc(lu.cfg, inst, hvp, bep),
                           "disks": ist._rpc_disks(lu, inst.disks), "startup_paused": paused})
    if res.failed:
        return res.fail_msg
    if instance_mirror.is_mirror(inst) and not instance_mirror.wait_for_sync(lu, inst):
        lu.log_warning("Instance %s runs with degraded disks" % inst.name)
    return None


def _stop(lu: iu.InstanceLU, inst: objects.Instance, timeout: int) -> str | None:
    res = lu.rpc.call_one("instance_shutdown", iu.node_name(lu.cfg, inst.primary_node),
                          {"hypervisor": inst.hypervisor, "name": inst.name,
                           "timeout": int(timeout)})
    return res.fail_msg if res.failed else None


def _set_state(lu: iu.InstanceLU, inst: objects.Instance, admin_state: str | None,
               disks_active: bool | None, source: str | None = None) -> None:
    """One configuration write for the admin state and/or disks_active (None: unchanged)."""
    changed = False
    if admin_state is not None and inst.admin_state != admin_state:
        inst.admin_state = admin_state
        changed = True
    if source is not None and inst.admin_state_source != source:
        inst.admin_state_source = source
        changed = True
    if disks_active is not None and inst.disks_active != disks_active:
        inst.disks_active = disks_active
        changed = True
    if changed:
        lu.cfg.update(inst)


def _check_not_offline(inst: objects.Instance) -> None:
    if inst.admin_state == constants.ADMINST_OFFLINE:
        raise errors.OpPrereqError("Instance '%s' is marked offline" % inst.name,
                                   errors.ECODE_STATE)


class LUInstanceStartup(iu.InstanceLU):
    HPATH = "instance-start"
    NODES_SHARED = True
    LOCK_NODE_RES = True

    def lock_node_uuids(self, inst: objects.Instance) -> list[str]:
        return [inst.primary_node]

    def check_prereq(self) -> None:
        super().check_prereq()
        inst = self.instance
        _check_not_offline(inst)
        self.hvp = hvparams.parse_hvparams(inst.hypervisor, dict(self.op.hvparams))
        hvparams.check_hvparams(inst.hypervisor, self.hvp, level="instance")
        self.bep = hvparams.parse_beparams(hvparams.upgrade_beparams(dict(self.op.beparams)))
        hvparams.check_beparams(self.bep)
        self.node_offline = self.pnode.offline
        if self.node_offline:
            if not self.op.ignore_offline_nodes:
                raise errors.OpPrereqError("Can't use offline node %s as primary node" %
                                           self.pnode.name, errors.ECODE_STATE)
            return
        self.running = iu.running_on_primary(self, inst)
        if not self.running:
            maxmem = iu.filled_beparams(self.cfg.get_cluster_info(),
                                        dict(inst.beparams, **self.bep))["maxmem"]
            iu.check_free_memory(self, self.pnode.name, inst.hypervisor, maxmem,
                                 "starting instance %s" % inst.name)

    def extra_hooks_env(self) -> dict:
        return {"FORCE": self.op.force}

    def exec(self, feedback_fn: Feedback) -> None:
        inst = self.instance
        up = None if self.op.no_remember else constants.ADMINST_UP
        source = None if self.op.no_remember else constants.ADMIN_SOURCE
        if self.node_offline:
            feedback_fn("Primary node offline, marked instance as started")
            _set_state(self, inst, up, None, source)
            return
        if self.running:
            feedback_fn("Instance %s is already running" % inst.name)
            _set_state(self, inst, up, None, source)
            return
        error = _start(self, inst, self.hvp, self.bep, self.op.startup_paused)
        if error is not None:
            ist.shutdown_disks(self, inst, ignore_failures=True)
            _set_state(self, inst, up, False, source)
            raise errors.OpExecError("Could not start instance: %s" % error)
        _set_state(self, inst, up, bool(inst.disks), source)


class LUInstanceShutdown(iu.InstanceLU):
    HPATH = "instance-stop"

    def lock_node_uuids(self, inst: objects.Instance) -> list[str]:
        return [inst.primary_node]

    def check_prereq(self) -> None:
        super().check_prereq()
        if self.pnode.offline and not self.op.ignore_offline_nodes:
            raise errors.OpPrereqError("Can't use offline node %s as primary node" %
                                       self.pnode.name, errors.ECODE_STATE)
        if self.instance.admin_state == constants.ADMINST_OFFLINE and not self.op.force:
            raise errors.OpPrereqError("Instance '%s' is marked offline" % self.instance.name,
                                       errors.ECODE_STATE)

    def extra_hooks_env(self) -> dict:
        return {"TIMEOUT": self.op.timeout}

    def exec(self, feedback_fn: Feedback) -> None:
        inst = self.instance
        down = None if self.op.no_remember else constants.ADMINST_DOWN
        source = None if self.op.no_remember else (self.op.admin_state_source or
                                                   constants.ADMIN_SOURCE)
        if self.pnode.offline:
            feedback_fn("Primary node offline, marked instance as stopped")
            _set_state(self, inst, down, None, source)
            return
        error = _stop(self, inst, self.op.timeout)
        if error is not None:
            self.log_warning("Could not shutdown instance: %s", error)
        ist.shutdown_disks(self, inst, ignore_failures=True)
        _set_state(self, inst, down, False, source)


class LUInstanceReboot(iu.InstanceLU):
    HPATH = "instance-reboot"

    def check_prereq(self) -> None:
        super().check_prereq()
        _check_not_offline(self.instance)
        iu.check_node_online(self.cfg, self.instance.primary_node)

    def extra_hooks_env(self) -> dict:
        return {"IGNORE_SECONDARIES": self.op.ignore_secondaries,
                "REBOOT_TYPE": self.op.reboot_type,
                "SHUTDOWN_TIMEOUT": self.op.shutdown_timeout}

    def exec(self, feedback_fn: Feedback) -> None:
        inst = self.instance
        running = iu.running_on_primary(self, inst)
        if running and self.op.reboot_type in ("soft", "hard"):
            res = self.rpc.call_one("instance_reboot", self.pnode.name,
                                    {"instance": iu.instance_rpc(self.cfg, inst),
                                     "disks": ist._rpc_disks(self, inst.disks),
                                     "reboot_type": self.op.reboot_type,
                                     "shutdown_timeout": int(self.op.shutdown_timeout)})
            res.raise_if_failed("Could not reboot instance")
        else:
            if running:
                error = _stop(self, inst, self.op.shutdown_timeout)
                if error is not None:
                    raise errors.OpExecError("Could not shutdown instance for full reboot: %s"
                                             % error)
                ist.shutdown_disks(self, inst, ignore_failures=True)
            error = _start(self, inst)
            if error is not None:
                ist.shutdown_disks(self, inst, ignore_failures=True)
                raise errors.OpExecError("Could not start instance for full reboot: %s" % error)
        _set_state(self, inst, constants.ADMINST_UP, bool(inst.disks))


class LUInstanceRemove(iu.InstanceLU):
    HPATH = "instance-remove"
    LOCK_NODE_RES = True

    def extra_hooks_env(self) -> dict:
        return {"SHUTDOWN_TIMEOUT": self.op.shutdown_timeout}

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        return [self.master_uuid], [self.master_uuid] + list(self.instance.all_nodes)

    def exec(self, feedback_fn: Feedback) -> None:
        inst = self.instance
        feedback_fn("Shutting down instance %s on node %s" % (inst.name, self.pnode.name))
        error = None if self.pnode.offline else _stop(self, inst, self.op.shutdown_timeout)
        if error is not None:
            msg = "Could not shutdown instance %s on node %s: %s" % (inst.name,
                                                                     self.pnode.name, error)
            if not self.op.ignore_failures:
                raise errors.OpExecError(msg)
            self.log_warning("%s; proceeding anyway", msg)
        remove_stopped_instance(self, inst, self.op.ignore_failures, feedback_fn)


def remove_stopped_instance(lu: iu.InstanceLU, inst: objects.Instance, ignore_failures: bool,
                            feedback_fn: Feedback) -> None:
    """Remove a stopped instance's disks, hypervisor files and configuration entry.

    A failed disk removal stops here (the instance stays in the configuration)
    unless ``ignore_failures``; the caller holds the instance and node locks.
    """
    pnode = lu.cfg.get_node_info(inst.primary_node)
    feedback_fn("Removing block devices for instance %s" % inst.name)
    if not pnode.offline and not ist.remove_disks(lu, inst, ignore_failures=True):
        if not ignore_failures:
            raise errors.OpExecError("Can't remove instance's disks")
    if not pnode.offline:
        res = lu.rpc.call_one("instance_forget", pnode.name,
                              {"hypervisor": inst.hypervisor, "name": inst.name})
        if res.failed:
            lu.log_warning("Could not remove the hypervisor files of %s on %s: %s",
                           inst.name, pnode.name, res.fail_msg)
    feedback_fn("Removing instance %s out of cluster config" % inst.name)
    lu.cfg.remove_instance(inst.uuid)


class LUInstanceRename(iu.InstanceLU):
    HPATH = "instance-rename"

    def check_arguments(self) -> None:
        self.new_name = iu.check_instance_name(self.op.new_name)
        if self.op.ip_check and not self.op.name_check:
            raise errors.OpPrereqError("IP address check requires a name check",
                                       errors.ECODE_INVAL)

    def expand_names(self) -> None:
        super().expand_names()
        new_ip = None
        if self.op.name_check:
            self.new_name, new_ip = iu.resolve_instance_name(self.new_name)
        if self.new_name == self.inst_name:
            raise errors.OpPrereqError("Instance '%s' is already named so" % self.new_name,
                                       errors.ECODE_INVAL)
        if self.op.ip_check and new_ip and netutils.tcp_ping(new_ip, constants.DEFAULT_NODED_PORT,
                                                            timeout=2.0):
            raise errors.OpPrereqError("IP %s of instance %s already in use" %
                                       (new_ip, self.new_name), errors.ECODE_NOTUNIQUE)
        reserve_instance_name(self, self.new_name)

    def check_prereq(self) -> None:
        super().check_prereq()
        iu.check_node_online(self.cfg, self.instance.primary_node)
        iu.check_instance_down(self, "rename")
        cluster = self.cfg.get_cluster_info()
        self.renames = []
        for disk in self.instance.disks:
            if disk.dev_type in constants.DTS_FILEBASED:
                new_dir = ist.file_storage_dir(cluster, disk.dev_type, self.new_name, None)
                old_dir = ist.file_storage_dir(cluster, disk.dev_type, self.inst_name, None)
                path = disk.logical_id[1]
                rel = path[len(old_dir) + 1:] if path.startswith(old_dir + "/") else \
                    path.rsplit("/", 1)[-1]
                self.renames.append((disk, [disk.logical_id[0], new_dir + "/" + rel]))

    def extra_hooks_env(self) -> dict:
        return {"INSTANCE_NEW_NAME": self.new_name}

    def exec(self, feedback_fn: Feedback) -> str:
        inst = self.instance
        old_name = inst.name
        if self.renames:
            res = self.rpc.call_one("blockdev_rename", self.pnode.name, {
                "renames": [[ist.disk_rpc(self.cfg, d), lid] for d, lid in self.renames]})
            res.raise_if_failed("Could not rename the disks of instance %s" % old_name)
            for (disk, _lid), new_lid in zip(self.renames, res.data):
                disk.logical_id = list(new_lid)
        self.cfg.rename_instance(inst.uuid, self.new_name)
        if inst.os:
            self._run_os_rename(inst, old_name)
        return self.new_name

    def _run_os_rename(self, inst: objects.Instance, old_name: str) -> None:
        args = iu.os_install_args(self.cfg, inst)
        del args["reinstall"]
        args["old_name"] = old_name
        res = self.rpc.call_one("instance_run_rename", self.pnode.name, args)
        if res.failed:
            self.log_warning("Could not run OS rename script for instance %s on node %s"
                             " (but the instance has been renamed in Corral): %s",
                             inst.name, self.pnode.name, res.fail_msg)
        if not inst.disks_active:
            ist.shutdown_disks(self, inst, ignore_failures=True)


class LUInstanceReinstall(iu.InstanceLU):
    HPATH = "instance-reinstall"

    def check_prereq(self) -> None:
        super().check_prereq()
        inst = self.instance
        iu.check_node_online(self.cfg, inst.primary_node)
        iu.check_instance_down(self, "reinstall")
        self.os_name = self.op.os_type or inst.os
        if not self.os_name:
            raise errors.OpPrereqError("Instance %s has no OS; give one with -o" % inst.name,
                                       errors.ECODE_INVAL)
        self.osparams = dict(inst.osparams)
        self.osparams.update(self.op.osparams or {})
        self.osparams_private = dict(inst.osparams_private)
        self.osparams_private.update(self.op.osparams_private or {})
        res = self.rpc.call_one("os_get", self.pnode.name, {"name": self.os_name})
        res.raise_if_failed("Cannot get OS %s" % self.os_name)
        os_def = osdef.OSDefinition.from_dict(res.data)
        if not os_def.valid:
            raise errors.OpPrereqError("OS '%s' not in supported OS list for node %s: %s" %
                                       (os_def.name, self.pnode.name, os_def.error),
                                       errors.ECODE_INVAL)
        osdef.check_variant(os_def, osdef.split_os_name(self.os_name)[1], self.op.force_variant)
        merged = iu.filled_osparams(self.cfg.get_cluster_info(), self.os_name, self.osparams)
        merged.update(self.osparams_private)
        osdef.check_os_params(os_def, merged)

    def exec(self, feedback_fn: Feedback) -> None:
        inst = self.instance
        if (inst.os, inst.osparams, inst.osparams_private) != \
                (self.os_name, self.osparams, self.osparams_private):
            inst.os = self.os_name
            inst.osparams = self.osparams
            inst.osparams_private = self.osparams_private
            self.cfg.update(inst)
        feedback_fn("Running the instance OS create scripts...")
        args = iu.os_install_args(self.cfg, inst, self.op.osparams_secret, reinstall=True,
                                  debug=self.op.debug_level or 0)
        if instance_mirror.is_mirror(inst):
            ist.assemble_disks(self, inst)  # the secondary's export, for the copy below
        res = self.rpc.call_one("instance_os_add", self.pnode.name, args)
        if not res.failed:
            instance_mirror.sync_offline(self, inst, feedback_fn)
        if not inst.disks_active:
            ist.shutdown_disks(self, inst, ignore_failures=True)
        if res.failed:
            raise errors.OpExecError("Could not install OS for instance %s on node %s: %s" %
                                     (inst.name, self.pnode.name, res.fail_msg))


class LUInstanceConsole(iu.InstanceLU):
    """The console object of a running instance (spec/rapi.md §9.7); read-only."""

    HPATH = None
    LOCK_NODES = False

    def expand_names(self) -> None:
        super().expand_names()
        self.share_locks[locking.LEVEL_INSTANCE] = True

    def exec(self, feedback_fn: Feedback) -> dict[str, Any]:
        inst = self.instance
        iu.check_node_online(self.cfg, inst.primary_node)
        if not iu.running_on_primary(self, inst):
            state = (constants.INSTST_ERRORDOWN if inst.admin_state == constants.ADMINST_UP
                     else constants.INSTST_ADMINDOWN)
            raise errors.OpExecError("Instance %s is not running (state %s)" %
                                     (inst.name, state))
        return console_info(self, inst)


def console_info(lu, inst: objects.Instance) -> dict[str, Any]:
    """Ask the primary for the console object (paths are node-local)."""
    node = lu.cfg.get_node_info(inst.primary_node)
    ssh_port = int(node.ndparams.get("ssh_port") or
                   lu.cfg.get_cluster_info().ndparams.get("ssh_port") or 22)
    res = lu.rpc.call_one("instance_console", node.name,
                          {"instance": iu.instance_rpc(lu.cfg, inst), "node_name": node.name,
                           "ssh_port": ssh_port})
    res.raise_if_failed("Cannot get the console of instance %s" % inst.name)
    return res.data
