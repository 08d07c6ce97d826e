"""OP_GROUP_EVACUATE (gnt-group evacuate): plan moving every instance out of a node group.

Like node evacuation, the LU only plans: an allocator answers a
change-group request for all instances with a node in the group, and the
resulting jobs are returned for submission.  ``sequential`` makes each job
wait for the previous one; ``force_failover`` turns migrations into
failovers.  Locks (shared): the group's instances, the group and the
target groups, and the group's nodes.
"""

from typing import Any, Callable

from corral import constants, errors, iallocator, locking, opcodes
from corral.cmdlib.base import LogicalUnit, ResultWithJobs


def group_instances(cfg, group_uuid: str) -> list[str]:
    """Names of the instances with at least one node in the group, sorted."""
    members = set(cfg.get_group_members(group_uuid))
    return sorted(i.name for i in cfg.get_all_instances().values()
                  if members.intersection(i.all_nodes))


def _as_failover(op: opcodes.OpCode) -> opcodes.OpCode:
    if not isinstance(op, opcodes.OpInstanceMigrate):
        return op
    return opcodes.OpInstanceFailover(instance_name=op.instance_name,
                                      target_node=op.target_node, iallocator=op.iallocator,
                                      ignore_ipolicy=op.ignore_ipolicy)


def finish_jobs(jobs: list[list[opcodes.OpCode]], sequential: bool, force_failover: bool
                ) -> list[list[opcodes.OpCode]]:
    """Apply ``force_failover`` and ``sequential`` (relative dependencies) to planned jobs."""
    out = [[_as_failover(op) for op in job] if force_failover else list(job) for job in jobs]
    if sequential:
        for job in out[1:]:
            job[0].depends = list(job[0].depends or []) + [[-1, []]]
    return out


class LUGroupEvacuate(LogicalUnit):
    HPATH = "group-evacuate"
    HTYPE = constants.HTYPE_GROUP

    def expand_names(self) -> None:
        self.group_uuid = self.cfg.lookup_node_group(self.op.group_name)
        self.req_targets = [self.cfg.lookup_node_group(g) for g in self.op.target_groups or []]
        if self.group_uuid in self.req_targets:
            raise errors.OpPrereqError("Group to be evacuated (%s) can not be used as a target"
                                       " group (targets are %s)" %
                                       (self.op.group_name, ", ".join(self.op.target_groups)),
                                       errors.ECODE_INVAL)
        self.instance_names = group_instances(self.cfg, self.group_uuid)
        groups = [self.group_uuid] + self.req_targets if self.req_targets else locking.ALL_SET
        for level, names in ((locking.LEVEL_INSTANCE, list(self.instance_names)),
                             (locking.LEVEL_NODEGROUP, groups),
                             (locking.LEVEL_NODE, self.cfg.get_group_members(self.group_uuid))):
            self.needed_locks[level] = names
            self.share_locks[level] = True

    def check_prereq(self) -> None:
        current = group_instances(self.cfg, self.group_uuid)
        if current != self.instance_names:
            raise errors.OpPrereqError("Instances in node group '%s' changed since locks were"
                                       " acquired, retry the operation" % self.op.group_name,
                                       errors.ECODE_STATE)
        self.targets = self.req_targets or sorted(
            u for u in self.cfg.get_all_node_groups() if u != self.group_uuid)
        if not self.targets:
            raise errors.OpPrereqError("There are no possible target groups",
                                       errors.ECODE_INVAL)

    def build_hooks_env(self) -> dict[str, Any]:
        return {"GROUP_NAME": self.op.group_name, "TARGET_GROUPS": " ".join(self.targets)}

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        nodes = [self.master_uuid] + self.cfg.get_group_members(self.group_uuid)
        return nodes, list(nodes)

    def exec(self, feedback_fn: Callable[[str], None]) -> ResultWithJobs:
        if not self.instance_names:
            return ResultWithJobs([])
        result = iallocator.run_for_lu(
            self, self.op.iallocator,
            iallocator.ChangeGroupRequest(self.instance_names, self.targets), "group evacuation")
        jobs = iallocator.load_evac_result(self, result, self.op.early_release, False)
        self.log_info("Iallocator returned %s job(s) for evacuating node group %s",
                      len(jobs), self.op.group_name)
        return ResultWithJobs(finish_jobs(jobs, self.op.sequential, self.op.force_failover))
