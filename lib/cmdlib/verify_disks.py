"""gnt-cluster verify-disks and repair-disk-sizes.

OP_CLUSTER_VERIFY_DISKS submits one OP_GROUP_VERIFY_DISKS job per node group.
A group's result is Ganeti's triple ``[{node: error}, [instances needing
activate-disks], {instance: [[node, "vg/lv"], ...] missing}]``: for instances
whose disks should be active, every logical volume the configuration knows is
looked up on its node (missing -> third element, inactive -> second), and
DRBD devices missing or faulty on a node make the instance need activation.
The client then activates those instances' disks (the watcher does the same).

OP_CLUSTER_REPAIR_DISK_SIZES compares recorded disk sizes with what the
primary reports and corrects the configuration.
"""

from typing import Any, Callable

from corral import constants, errors, locking, objects, opcodes
from corral.cmdlib import instance_mirror
from corral.cmdlib import instance_storage as ist
from corral.cmdlib import instance_utils as iu
from corral.cmdlib.base import NoHooksLU, ResultWithJobs, expand_instance
from corral.cmdlib.node_storage import lv_owners


class LUClusterVerifyDisks(NoHooksLU):
    """One OP_GROUP_VERIFY_DISKS job per group (or for ``group_name`` only)."""

    def exec(self, feedback_fn: Callable[[str], None]) -> ResultWithJobs:
        if self.op.group_name:
            uuid = self.cfg.lookup_node_group(self.op.group_name)
            groups = [self.cfg.get_node_group(uuid).name]
        else:
            groups = sorted(g.name for g in self.cfg.get_all_node_groups().values())
        return ResultWithJobs([[opcodes.OpGroupVerifyDisks(group_name=name,
                                                           is_strict=self.op.is_strict,
                                                           priority=self.op.priority)]
                               for name in groups])


class LUGroupVerifyDisks(NoHooksLU):
    """Find the group's instances whose disks need activating, and missing volumes."""

    def expand_names(self) -> None:
        self.group_uuid = self.cfg.lookup_node_group(self.op.group_name)
        self.share_locks = {level: True for level in locking.LEVELS}
        self.needed_locks[locking.LEVEL_NODEGROUP] = [self.group_uuid]
        self.needed_locks[locking.LEVEL_INSTANCE] = locking.ALL_SET
        self.needed_locks[locking.LEVEL_NODE] = locking.ALL_SET

    def exec(self, feedback_fn: Callable[[str], None]) -> list:
        members = set(self.cfg.get_group_members(self.group_uuid))
        instances = [i for i in self.cfg.get_all_instances().values()
                     if i.primary_node in members and i.disks_active and i.disks]
        bad_nodes: dict[str, str] = {}
        need_activation: set[str] = set()
        missing: dict[str, list[list[str]]] = {}
        self._check_lvs(instances, bad_nodes, need_activation, missing)
        self._check_mirrors(instances, bad_nodes, need_activation)
        return [bad_nodes, sorted(need_activation), missing]

    def _usable_nodes(self, uuids: set[str]) -> list[objects.Node]:
        nodes = [self.cfg.get_node_info(u) for u in sorted(uuids)]
        return [n for n in nodes if n is not None and n.vm_capable and not n.offline
                and (self.op.is_strict or not n.drained)]

    def _check_lvs(self, instances: list[objects.Instance], bad_nodes: dict,
                   need_activation: set, missing: dict) -> None:
        wanted = {key: name for key, name in lv_owners(self.cfg).items()
                  if name in {i.name for i in instances}}
        if not wanted:
            return
        nodes = self._usable_nodes({node for node, _lv in wanted})
        results = self.rpc.call("lv_list", [n.name for n in nodes], {})
        for node in nodes:
            res = results[node.name]
            if res.failed:
                bad_nodes[node.name] = res.fail_msg
                continue
            for lv, state in (res.data or {}).items():
                inst = wanted.pop((node.uuid, lv), None)
                if inst is not None and not state.get("active"):
                    need_activation.add(inst)
        checked = {n.uuid for n in nodes}
        for (node_uuid, lv), inst in sorted(wanted.items()):
            name = iu.node_name(self.cfg, node_uuid)
            if node_uuid in checked or name in bad_nodes:
                missing.setdefault(inst, []).append([name, lv])

    def _check_mirrors(self, instances: list[objects.Instance], bad_nodes: dict,
                       need_activation: set) -> None:
        """DRBD devices absent or faulty on one of their nodes need an activate-disks,
        and so do running mirror disks that are degraded (activate-disks resyncs)."""
        for inst in instances:
            if instance_mirror.is_mirror(inst):
                self._check_replication(inst, bad_nodes, need_activation)
                continue
            drbd = [d for d in inst.disks if d.dev_type in constants.DTS_INT_MIRROR]
            if not drbd:
                continue
            for node in self._usable_nodes(set(inst.all_nodes)):
                if node.name in bad_nodes:
                    continue
                res = self.rpc.call_one("blockdev_sync_status", node.name,
                                        {"disks": ist._rpc_disks(self, drbd)})
                if res.failed:
                    bad_nodes[node.name] = res.fail_msg
                elif any(st is None or st.get("ldisk_status") == "faulty"
                         for st in res.data or []):
                    need_activation.add(inst.name)


    def _check_replication(self, inst: objects.Instance, bad_nodes: dict,
                           need_activation: set) -> None:
        """A running mirror instance needs activation unless every disk is in sync; an
        in-sync one gets its secondary marked complete (the copy holds every write)."""
        pnode = self.cfg.get_node_info(inst.primary_node)
        if pnode is None or pnode.offline or pnode.name in bad_nodes or \
                inst.admin_state != constants.ADMINST_UP:
            return
        states = instance_mirror.status(self, inst)
        if all(st is not None and st.get("settled") for st in states):
            try:
                instance_mirror.set_consistent(self, inst, True)
            except errors.GenericError as err:
                self.log_warning("%s" % err)
        elif any(st is None or st.get("is_degraded") for st in states):
            need_activation.add(inst.name)


class LUClusterRepairDiskSizes(NoHooksLU):
    """Correct recorded disk sizes from the primaries' view; the changes made."""

    def expand_names(self) -> None:
        self.share_locks[locking.LEVEL_INSTANCE] = False
        if self.op.instances:
            self.names = [expand_instance(self.cfg, n).name for n in self.op.instances]
            self.needed_locks[locking.LEVEL_INSTANCE] = list(self.names)
        else:
            self.names = None
            self.needed_locks[locking.LEVEL_INSTANCE] = locking.ALL_SET
        self.needed_locks[locking.LEVEL_NODE_RES] = locking.ALL_SET
        self.share_locks[locking.LEVEL_NODE_RES] = True

    def exec(self, feedback_fn: Callable[[str], None]) -> list[list[Any]]:
        insts = [i for i in self.cfg.get_all_instances().values()
                 if self.names is None or i.name in self.names]
        changed: list[list[Any]] = []
        for inst in sorted(insts, key=lambda i: i.name):
            pnode = self.cfg.get_node_info(inst.primary_node)
            if not inst.disks or pnode is None or pnode.offline:
                continue
            res = self.rpc.call_one("blockdev_getsize", pnode.name,
                                    {"disks": ist._rpc_disks(self, inst.disks)})
            if res.failed:
                self.log_warning("Failure in blockdev_getsize call to node %s, ignoring: %s"
                                 % (pnode.name, res.fail_msg))
                continue
            changed += self._repair(inst, res.data or [], feedback_fn)
        return changed

    def _repair(self, inst: objects.Instance, sizes: list, feedback_fn) -> list[list[Any]]:
        out = []
        for idx, (disk, size) in enumerate(zip(inst.disks, sizes)):
            if size is None or disk.dev_type == constants.DT_BLOCK and size == disk.size:
                continue
            if int(size) != disk.size:
                feedback_fn("Disk %d of instance %s has mismatched size, correcting: recorded"
                            " %d, actual %d" % (idx, inst.name, disk.size, int(size)))
                disk.size = int(size)
                if disk.dev_type == constants.DT_DRBD8 and disk.children:
                    disk.children[0].size = int(size)
                out.append([inst.name, idx, "size", int(size)])
        if out:
            self.cfg.update(inst)
        return out


def check_verify_disks_result(result: Any) -> tuple[dict, list, dict]:
    """The group triple from a job result (raises OpResultError on a wrong shape)."""
    if not (isinstance(result, list) and len(result) == 3):
        raise errors.OpResultError("Unexpected verify-disks result %r" % (result,))
    return result[0], result[1], result[2]
