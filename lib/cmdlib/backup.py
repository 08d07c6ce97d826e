"""Instance exports: OP_BACKUP_PREPARE, OP_BACKUP_EXPORT, OP_BACKUP_REMOVE (gnt-backup).

An export is the directory ``<export dir>/<instance name>`` on the target node:
config.ini (export_ini.py) and, per disk, the output of the OS definition's
``export`` script for it, in a file named by the disk's UUID.  The data goes
node daemon to node daemon (backend/disk_transfer.py) into ``<name>.new``; only
when every disk and config.ini are written does that directory replace the
previous export, so an interrupted export never destroys a good one.  Older
exports of the instance on other nodes are removed afterwards, as Ganeti does.

Without LVM snapshots the instance stays shut down while its disks are read
(``--noshutdown`` reads them live: not even crash-consistent, the job log says
so), then starts again if it is marked up.  Only mode ``local`` (an export
inside this cluster) exists here; the inter-cluster ``remote`` mode, with its
X509 handshake, is refused with a clear error rather than half done.
"""

from typing import Any, Callable

from corral import constants, errors, locking, objects
from corral.cmdlib import export_ini
from corral.cmdlib import instance_storage as ist
from corral.cmdlib import instance_utils as iu
from corral.cmdlib.base import NoHooksLU, expand_target_node
from corral.cmdlib.instance_import import export_names_by_node, online_node_names
from corral.cmdlib.instance_migration_live import transfer_data
from corral.cmdlib.instance_move import check_compress
from corral.cmdlib.instance_ops import remove_stopped_instance

Feedback = Callable[[str], None]
STAGING_SUFFIX = ".new"


def check_local_mode(mode: str) -> None:
    if mode != "local":
        raise errors.OpPrereqError("Export mode '%s' is not supported: this cluster only"
                                   " exports to its own nodes (mode 'local')" % mode,
                                   errors.ECODE_INVAL)


class LUBackupPrepare(iu.InstanceLU):
    """Nothing to prepare for a local export (Ganeti returns None too)."""

    HPATH = None
    LOCK_NODES = False

    def check_arguments(self) -> None:
        check_local_mode(self.op.mode)

    def exec(self, feedback_fn: Feedback) -> None:
        return None


class LUBackupExport(iu.InstanceLU):
    HPATH = "instance-export"
    NODES_SHARED = True

    def check_arguments(self) -> None:
        check_local_mode(self.op.mode)
        if not isinstance(self.op.target_node, str):
            raise errors.OpPrereqError("A local export needs one target node name, not %r" %
                                       (self.op.target_node,), errors.ECODE_INVAL)
        check_compress(self.op.compress)
        if self.op.zero_free_space:
            raise errors.OpPrereqError("Zeroing free space needs instance communication,"
                                       " which this cluster does not provide",
                                       errors.ECODE_INVAL)

    def expand_names(self) -> None:
        super().expand_names()
        self.target = expand_target_node(self)

    def lock_node_uuids(self, inst: objects.Instance) -> list[str]:
        # Shared locks on every node: older exports of the instance are removed anywhere.
        return sorted(self.cfg.get_all_nodes())

    def check_prereq(self) -> None:
        super().check_prereq()
        inst = self.instance
        iu.check_node_online(self.cfg, self.target.uuid, "as export target")
        iu.check_node_online(self.cfg, inst.primary_node)
        if not inst.os:
            raise errors.OpPrereqError("Instance %s has no OS, so its disks cannot be"
                                       " exported" % inst.name, errors.ECODE_STATE)
        if self.op.remove_instance and inst.admin_state == constants.ADMINST_UP \
                and not self.op.shutdown:
            raise errors.OpPrereqError("Can not remove instance without shutting it down"
                                       " before", errors.ECODE_STATE)

    def extra_hooks_env(self) -> dict[str, Any]:
        return {"EXPORT_MODE": self.op.mode, "EXPORT_NODE": self.target.name,
                "EXPORT_DO_SHUTDOWN": self.op.shutdown,
                "REMOVE_INSTANCE": bool(self.op.remove_instance)}

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        nodes = list(dict.fromkeys([self.master_uuid, self.instance.primary_node,
                                    self.target.uuid]))
        return nodes, list(nodes)

    def exec(self, feedback_fn: Feedback) -> list:
        inst = self.instance
        restart = inst.admin_state == constants.ADMINST_UP and not self.op.remove_instance
        if self.op.shutdown:
            self._shutdown(inst, feedback_fn)
        else:
            self.log_warning("Exporting the disks of instance %s while it may be running:"
                             " the copy may be inconsistent", inst.name)
        try:
            self._export(inst, feedback_fn)
        except BaseException:
            if self.op.shutdown and restart:
                try:
                    self._start(inst, feedback_fn)
                except errors.OpExecError as err:  # the export's error is the one to report
                    self.log_warning("%s", err)
            raise
        if self.op.shutdown and restart:
            self._start(inst, feedback_fn)
        self._remove_older_exports(inst.name, feedback_fn)
        if self.op.remove_instance:
            feedback_fn("Removing instance %s" % inst.name)
            remove_stopped_instance(self, inst, self.op.ignore_remove_failures, feedback_fn)
        return [True, [True] * len(inst.disks)]

    def _shutdown(self, inst: objects.Instance, feedback_fn: Feedback) -> None:
        feedback_fn("Shutting down instance %s" % inst.name)
        res = self.rpc.call_one("instance_shutdown", self.pnode.name,
                                {"hypervisor": inst.hypervisor, "name": inst.name,
                                 "timeout": int(self.op.shutdown_timeout)})
        if res.failed:
            raise errors.OpExecError("Could not shutdown instance %s on node %s: %s" %
                                     (inst.name, self.pnode.name, res.fail_msg))

    def _start(self, inst: objects.Instance, feedback_fn: Feedback) -> None:
        feedback_fn("Starting instance %s" % inst.name)
        res = self.rpc.call_one("instance_start", self.pnode.name,
                                {"instance": iu.instance_rpc(self.cfg, inst),
                                 "disks": ist._rpc_disks(self, inst.disks)})
        if res.failed:
            raise errors.OpExecError("Could not start instance %s again after the export: %s"
                                     % (inst.name, res.fail_msg))
        ist.set_disks_active(self, inst, bool(inst.disks))

    def _export(self, inst: objects.Instance, feedback_fn: Feedback) -> None:
        """Disks into ``<name>.new`` on the target, then config.ini and the rename."""
        target, staging = self.target.name, inst.name + STAGING_SUFFIX
        dumps = [disk.uuid for disk in inst.disks]
        activated = bool(inst.disks) and not inst.disks_active
        try:
            if inst.disks:
                if activated:
                    ist.assemble_disks(self, inst)
                args = iu.os_install_args(self.cfg, inst, debug=self.op.debug_level or 0)
                feedback_fn("Exporting %d disk(s) of instance %s to node %s" %
                            (len(inst.disks), inst.name, target))
                transfer_data(self, self.pnode, self.target,
                              [{"kind": "os-export", "os_args": args, "disk_index": i}
                               for i in range(len(inst.disks))],
                              [{"kind": "export-file", "path": "%s/%s" % (staging, dump)}
                               for dump in dumps], self.op.compress, feedback_fn)
            feedback_fn("Finalizing the export of instance %s on node %s" % (inst.name, target))
            res = self.rpc.call_one("export_finalize", target,
                                    {"name": inst.name, "config_text": self._config(inst,
                                                                                    dumps)})
            res.raise_if_failed("Cannot finalize the export on node %s" % target)
        except errors.RemoteError as err:
            self._discard(staging)
            raise errors.OpExecError(str(err)) from err
        except BaseException:
            self._discard(staging)
            raise
        finally:
            if activated:
                ist.shutdown_disks(self, inst, ignore_failures=True)

    def _config(self, inst: objects.Instance, dumps: list[str]) -> str:
        cluster = self.cfg.get_cluster_info()
        nics = [{key: value for key, value in iu.nic_rpc(cluster, nic).items()
                 if key in export_ini.NIC_KEYS} for nic in inst.nics]
        return export_ini.build(inst, self.pnode.name, iu.instance_params(self.cfg, inst),
                                nics, dumps)

    def _discard(self, staging: str) -> None:
        res = self.rpc.call_one("export_remove", self.target.name, {"name": staging})
        if res.failed:
            self.log_warning("Could not remove the unfinished export %s on node %s: %s",
                             staging, self.target.name, res.fail_msg)

    def _remove_older_exports(self, name: str, feedback_fn: Feedback) -> None:
        others = [n for n in online_node_names(self.cfg) if n != self.target.name]
        for node, names in export_names_by_node(self, others).items():
            if names is None or name not in names:
                continue
            feedback_fn("Removing the older export of %s on node %s" % (name, node))
            res = self.rpc.call_one("export_remove", node, {"name": name})
            if res.failed:
                self.log_warning("Could not remove older export for instance %s on node %s:"
                                 " %s", name, node, res.fail_msg)


class LUBackupRemove(NoHooksLU):
    """Remove every export of an instance; the instance itself need not exist any more."""

    def expand_names(self) -> None:
        inst = self.cfg.expand_instance_name(self.op.instance_name) \
            if self.op.instance_name else None
        self.export_name = inst.name if inst is not None else self.op.instance_name
        self.fqdn_warn = inst is None
        self.needed_locks[locking.LEVEL_NODE] = locking.ALL_SET
        self.share_locks[locking.LEVEL_NODE] = True

    def exec(self, feedback_fn: Feedback) -> None:
        found = False
        for node, names in sorted(export_names_by_node(self, online_node_names(self.cfg))
                                  .items()):
            if names is None:
                self.log_warning("Failed to query node %s (continuing)", node)
                continue
            if self.export_name not in names:
                continue
            found = True
            res = self.rpc.call_one("export_remove", node, {"name": self.export_name})
            if res.failed:
                self.log_warning("Could not remove export for instance %s on node %s: %s",
                                 self.export_name, node, res.fail_msg)
        if self.fqdn_warn and not found:
            feedback_fn("Export not found. If trying to remove an export belonging to a"
                        " deleted instance please use its Fully Qualified Domain Name.")
