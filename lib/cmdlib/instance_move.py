"""OP_INSTANCE_MOVE: move an instance with local disks to another node (spec §8).

Shut down, create the disks on the target, copy the data node daemon to node
daemon (TLS with the cluster certificates, backend/disk_transfer.py), switch
the primary, remove the old disks, start again if the instance is marked up.
The configuration changes only once every disk was copied; a failed copy
removes the new disks and leaves the instance where it was (stopped: start it
again or retry).
"""

from typing import Any, Callable

from corral import constants, errors, objects
from corral.cmdlib import instance_storage as ist
from corral.cmdlib import instance_utils as iu
from corral.cmdlib.base import expand_target_node
from corral.cmdlib.instance_migration_live import copy_disks, set_primary

Feedback = Callable[[str], None]
# Templates whose data can be copied by reading the device on one node and
# writing a new device on the other (Ganeti's DTS_COPYABLE, plus diskless).
MOVABLE_TEMPLATES = frozenset([constants.DT_FILE, constants.DT_PLAIN,
                               constants.DT_DISKLESS])
# What the node daemons' transfer stream understands (backend/disk_transfer.py).
COMPRESS_LEVELS = ("none", "gzip", "gzip-fast", "gzip-slow")


def check_compress(compress: str) -> None:
    """OpPrereqError unless the node daemons' transfer stream knows ``compress``."""
    if compress not in COMPRESS_LEVELS:
        raise errors.OpPrereqError("Unsupported compression tool '%s' (supported: %s)" %
                                   (compress, ", ".join(sorted(COMPRESS_LEVELS))),
                                   errors.ECODE_INVAL)


class LUInstanceMove(iu.InstanceLU):
    HPATH = "instance-move"
    LOCK_NODE_RES = True

    def check_arguments(self) -> None:
        check_compress(self.op.compress)

    def expand_names(self) -> None:
        super().expand_names()
        self.target = expand_target_node(self)

    def lock_node_uuids(self, inst: objects.Instance) -> list[str]:
        return list(dict.fromkeys(list(inst.all_nodes) + [self.target.uuid]))

    def check_prereq(self) -> None:
        super().check_prereq()
        inst, target = self.instance, self.target
        if inst.disk_template not in MOVABLE_TEMPLATES:
            raise errors.OpPrereqError("Disk template %s not suitable for copying" %
                                       inst.disk_template, errors.ECODE_STATE)
        if target.uuid == inst.primary_node:
            raise errors.OpPrereqError("Instance %s is already on the node %s" %
                                       (inst.name, target.name), errors.ECODE_STATE)
        iu.check_node_online(self.cfg, target.uuid, "as target")
        iu.check_node_online(self.cfg, inst.primary_node)
        if target.drained:
            raise errors.OpPrereqError("Can't use drained node %s as target" % target.name,
                                       errors.ECODE_STATE)
        if not target.vm_capable:
            raise errors.OpPrereqError("Can't use non-vm_capable node %s as target" %
                                       target.name, errors.ECODE_STATE)
        if inst.admin_state == constants.ADMINST_UP:
            cluster = self.cfg.get_cluster_info()
            be = iu.filled_beparams(cluster, inst.beparams)
            iu.node_checks(self, target.name, inst.hypervisor,
                           nics=[iu.nic_rpc(cluster, n) for n in inst.nics],
                           memory=be["maxmem"], reason="starting instance %s" % inst.name)

    def extra_hooks_env(self) -> dict[str, Any]:
        return {"TARGET_NODE": self.target.name, "SHUTDOWN_TIMEOUT": self.op.shutdown_timeout}

    def build_hooks_env(self) -> dict[str, Any]:
        if not hasattr(self, "_hooks_env"):
            self._hooks_env = super().build_hooks_env()
        return dict(self._hooks_env)

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        nodes = list(dict.fromkeys([self.master_uuid, self.instance.primary_node,
                                    self.target.uuid]))
        return nodes, list(nodes)

    def exec(self, feedback_fn: Feedback) -> None:
        inst, source, target = self.instance, self.pnode, self.target
        feedback_fn("Shutting down instance %s on source node %s" % (inst.name, source.name))
        res = self.rpc.call_one("instance_shutdown", source.name,
                                {"hypervisor": inst.hypervisor, "name": inst.name,
                                 "timeout": int(self.op.shutdown_timeout)})
        if res.failed:
            if not self.op.ignore_consistency:
                raise errors.OpExecError("Could not shutdown instance %s on node %s: %s" %
                                         (inst.name, source.name, res.fail_msg))
            self.log_warning("Could not shutdown instance %s on node %s. Proceeding anyway."
                             " Please make sure node %s is down. Error details: %s",
                             inst.name, source.name, source.name, res.fail_msg)
        new_disks = [objects.Disk.from_dict(d.to_dict()) for d in inst.disks]
        for disk in new_disks:
            disk.nodes = [target.uuid]
        if new_disks:
            feedback_fn("Creating the disks of instance %s on node %s" % (inst.name,
                                                                           target.name))
            ist.create_disks(self, inst, new_disks, node_uuid=target.uuid)
            try:
                feedback_fn("Copying the data of %d disk(s) to node %s" %
                            (len(new_disks), target.name))
                copy_disks(self, inst.disks, source, target, new_disks, self.op.compress,
                           feedback_fn)
            except errors.GenericError:
                self._remove(target.name, new_disks)
                raise
        old_disks = list(inst.disks)
        set_primary(inst, source.uuid, target.uuid)
        inst.disks = new_disks
        inst.disks_active = False
        self.cfg.update(inst)
        if old_disks:
            feedback_fn("Removing the disks on the original node %s" % source.name)
            if not self._remove(source.name, old_disks):
                self.log_warning("Could not remove the old disks of instance %s on node %s;"
                                 " remove them manually", inst.name, source.name)
        if inst.admin_state == constants.ADMINST_UP:
            self._start(inst, target, feedback_fn)

    def _remove(self, node: str, disks: list[objects.Disk]) -> bool:
        res = self.rpc.call_one("blockdev_remove", node, {"disks": ist._rpc_disks(self, disks)})
        if res.failed:
            self.log_warning("Could not remove disks on node %s: %s", node, res.fail_msg)
        return not res.failed

    def _start(self, inst: objects.Instance, target: objects.Node, feedback_fn: Feedback) -> None:
        feedback_fn("Starting instance %s on node %s" % (inst.name, target.name))
        res = self.rpc.call_one("instance_start", target.name,
                                {"instance": iu.instance_rpc(self.cfg, inst),
                                 "disks": ist._rpc_disks(self, inst.disks)})
        if res.failed:
            ist.shutdown_disks(self, inst, ignore_failures=True)
            raise errors.OpExecError("Could not start instance %s on node %s: %s" %
                                     (inst.name, target.name, res.fail_msg))
        ist.set_disks_active(self, inst, bool(inst.disks))
