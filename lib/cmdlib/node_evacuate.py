"""OP_NODE_EVACUATE (gnt-node evacuate): plan moving instances off a node, as jobs.

The LU changes nothing itself: it asks an allocator (``-I``, default the
cluster's) for a node-evacuate plan, or, with ``remote_node``, builds one
replace-disks job per secondary instance, and returns the jobs
(``{"jobs": [...]}``); the migrate/failover/replace-disks LUs do the moves.
Locks (all shared): the instances concerned and the node (plus the new
secondary).  The instance list is read before locking and checked again
once the locks are held; a change means "retry".
"""

from typing import Callable

from corral import errors, iallocator, locking, opcodes
from corral.cmdlib.base import NoHooksLU, ResultWithJobs, expand_node

MODE_PRIMARY, MODE_SECONDARY, MODE_ALL = "primary-only", "secondary-only", "all"


def evacuated_instances(cfg, node_uuid: str, mode: str) -> list[str]:
    """Names of the instances ``mode`` moves off ``node_uuid``, sorted."""
    pri, sec = cfg.get_node_instances(node_uuid)
    uuids = {MODE_PRIMARY: pri, MODE_SECONDARY: sec}.get(mode, pri + sec)
    return sorted(cfg.get_instance_info(u).name for u in uuids)


class LUNodeEvacuate(NoHooksLU):
    def check_arguments(self) -> None:
        if self.op.remote_node is not None and self.op.iallocator is not None:
            raise errors.OpPrereqError("Do not specify both, iallocator and node",
                                       errors.ECODE_INVAL)
        if self.op.remote_node is not None and self.op.mode != MODE_SECONDARY:
            raise errors.OpPrereqError("Without the use of an iallocator only secondary"
                                       " instances can be evacuated", errors.ECODE_INVAL)

    def expand_names(self) -> None:
        self.node = expand_node(self.cfg, self.op.node_name)
        uuids = [self.node.uuid]
        self.remote = None
        if self.op.remote_node is not None:
            self.remote = expand_node(self.cfg, self.op.remote_node)
            if self.remote.uuid == self.node.uuid:
                raise errors.OpPrereqError("Can not use evacuated node as a new secondary node",
                                           errors.ECODE_INVAL)
            uuids.append(self.remote.uuid)
        self.instance_names = evacuated_instances(self.cfg, self.node.uuid, self.op.mode)
        self.needed_locks[locking.LEVEL_INSTANCE] = list(self.instance_names)
        self.share_locks[locking.LEVEL_INSTANCE] = True
        self.needed_locks[locking.LEVEL_NODE] = uuids
        self.share_locks[locking.LEVEL_NODE] = True

    def check_prereq(self) -> None:
        current = evacuated_instances(self.cfg, self.node.uuid, self.op.mode)
        if current != self.instance_names:
            raise errors.OpPrereqError(
                "Instances on node '%s' changed since locks were acquired, current instances"
                " are '%s', used to be '%s'; retry the operation" %
                (self.node.name, ", ".join(current), ", ".join(self.instance_names)),
                errors.ECODE_STATE)

    def exec(self, feedback_fn: Callable[[str], None]) -> ResultWithJobs:
        if not self.instance_names:
            return ResultWithJobs([])
        if self.remote is not None:
            return ResultWithJobs([[opcodes.OpInstanceReplaceDisks(
                instance_name=name, mode="replace_new_secondary", remote_node=self.remote.name,
                disks=[], early_release=self.op.early_release)]
                for name in self.instance_names])
        extra = {"ignore-soft-errors": None} if self.op.ignore_soft_errors else None
        result = iallocator.run_for_lu(
            self, self.op.iallocator, iallocator.NodeEvacRequest(self.instance_names,
                                                                 self.op.mode),
            "node evacuation", extra)
        return ResultWithJobs(iallocator.load_evac_result(self, result, self.op.early_release,
                                                          True))
