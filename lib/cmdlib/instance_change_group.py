"""OP_INSTANCE_CHANGE_GROUP (gnt-instance change-group): plan moving one instance to
another node group.

An allocator answers a change-group request (targets: the given groups, or
every group the instance is not in); the LU returns its jobs.  Locks
(shared): the instance, its groups and the targets, the instance's nodes.
"""

from typing import Any, Callable

from corral import constants, errors, iallocator, locking
from corral.cmdlib.base import LogicalUnit, ResultWithJobs, expand_instance
from corral.cmdlib.instance_utils import instance_hook_env


class LUInstanceChangeGroup(LogicalUnit):
    HPATH = "instance-change-group"
    HTYPE = constants.HTYPE_INSTANCE

    def expand_names(self) -> None:
        inst = expand_instance(self.cfg, self.op.instance_name)
        self.inst_name = inst.name
        self.req_targets = [self.cfg.lookup_node_group(g) for g in self.op.target_groups or []]
        current = self._groups(inst)
        if current.intersection(self.req_targets):
            raise errors.OpPrereqError("Can't use group(s) '%s' as targets, they are used by"
                                       " the instance '%s'" %
                                       (", ".join(sorted(current.intersection(
                                           self.req_targets))), inst.name),
                                       errors.ECODE_INVAL)
        groups = sorted(current | set(self.req_targets)) if self.req_targets \
            else locking.ALL_SET
        for level, names in ((locking.LEVEL_INSTANCE, [inst.name]),
                             (locking.LEVEL_NODEGROUP, groups),
                             (locking.LEVEL_NODE, list(inst.all_nodes))):
            self.needed_locks[level] = names
            self.share_locks[level] = True

    def _groups(self, inst) -> set[str]:
        return {self.cfg.get_node_info(u).group for u in inst.all_nodes
                if self.cfg.get_node_info(u) is not None}

    def check_prereq(self) -> None:
        inst = self.cfg.get_instance_by_name(self.inst_name)
        if inst is None:
            raise errors.OpPrereqError("Instance '%s' not known" % self.inst_name,
                                       errors.ECODE_NOENT)
        self.instance = inst
        current = self._groups(inst)
        self.targets = self.req_targets or sorted(
            set(self.cfg.get_all_node_groups()) - current)
        if not self.targets:
            raise errors.OpPrereqError("There are no possible target groups",
                                       errors.ECODE_INVAL)

    def hooks_target(self) -> str:
        return self.inst_name

    def build_hooks_env(self) -> dict[str, Any]:
        env = instance_hook_env(self.cfg, self.instance)
        env["TARGET_GROUPS"] = " ".join(self.targets)
        return env

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        nodes = [self.master_uuid]
        return nodes, list(nodes)

    def exec(self, feedback_fn: Callable[[str], None]) -> ResultWithJobs:
        result = iallocator.run_for_lu(
            self, self.op.iallocator,
            iallocator.ChangeGroupRequest([self.inst_name], self.targets),
            "solution for changing group of instance '%s'" % self.inst_name)
        jobs = iallocator.load_evac_result(self, result, self.op.early_release, False)
        self.log_info("Iallocator returned %s job(s) for changing group of instance %s",
                      len(jobs), self.inst_name)
        return ResultWithJobs(jobs)
