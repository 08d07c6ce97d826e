"""OP_NODE_MIGRATE: one OP_INSTANCE_MIGRATE job per primary instance of a node.

The LU decides nothing about the instances: each job checks its own
prerequisites (spec/opcodes.md: result is the list of submitted jobs), so one
instance that cannot move does not stop the others.  Hooks ``node-migrate``
run on the master.  ``gnt-node failover`` is a client-side loop of
OP_INSTANCE_FAILOVER jobs, as in Ganeti (client/gnt_node.py).
"""

from typing import Any, Callable

from corral import constants, errors, locking, opcodes
from corral.cmdlib.base import LogicalUnit, ResultWithJobs, expand_node


class LUNodeMigrate(LogicalUnit):
    HPATH = "node-migrate"
    HTYPE = constants.HTYPE_NODE

    def expand_names(self) -> None:
        node = expand_node(self.cfg, self.op.node_name)
        self.op.node_name, self.op.node_uuid = node.name, node.uuid
        if self.op.target_node:
            target = expand_node(self.cfg, self.op.target_node)
            if target.uuid == node.uuid:
                raise errors.OpPrereqError("Can not migrate node %s to itself" % node.name,
                                           errors.ECODE_INVAL)
            self.op.target_node, self.op.target_node_uuid = target.name, target.uuid
        if self.op.live is not None and self.op.mode is not None:
            raise errors.OpPrereqError("Only one of the 'live' and 'mode' parameters can be"
                                       " given", errors.ECODE_INVAL)
        self.needed_locks[locking.LEVEL_NODE] = [node.uuid]
        self.share_locks[locking.LEVEL_NODE] = True

    def build_hooks_env(self) -> dict[str, Any]:
        return {"NODE_NAME": self.op.node_name,
                "ALLOW_RUNTIME_CHANGES": self.op.allow_runtime_changes}

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        return [self.master_uuid], [self.master_uuid]

    def exec(self, feedback_fn: Callable[[str], None]) -> ResultWithJobs:
        primaries, _secondaries = self.cfg.get_node_instances(self.op.node_uuid)
        names = sorted(self.cfg.get_instance_info(u).name for u in primaries)
        jobs = [[opcodes.OpInstanceMigrate(
            instance_name=name, mode=self.op.mode, live=self.op.live,
            iallocator=self.op.iallocator, target_node=self.op.target_node,
            allow_runtime_changes=self.op.allow_runtime_changes,
            ignore_ipolicy=self.op.ignore_ipolicy)] for name in names]
        return ResultWithJobs(jobs)
