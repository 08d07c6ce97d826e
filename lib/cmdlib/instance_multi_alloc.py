"""OP_INSTANCE_MULTI_ALLOC (gnt-instance batch-create, RAPI instances-multi-alloc).

Places many instances with one allocator run (``multi-allocate``), then
returns one OP_INSTANCE_CREATE job per instance that fits, with its nodes
filled in: ``{"jobs": [...], "allocatable": [names], "failed": [names]}``.
Either every instance names its nodes (no allocator is run) or none does.
Locks: every node and node-res lock, shared, while planning; the create
jobs then lock their own nodes.  Nothing is created by this LU itself.
"""

from typing import Any, Callable

from corral import constants, errors, iallocator, locking, opcodes
from corral.cmdlib.base import NoHooksLU, ResultWithJobs


def _create_op(data: Any, idx: int) -> opcodes.OpInstanceCreate:
    if isinstance(data, dict) and data.get("OP_ID", "OP_INSTANCE_CREATE") \
            == "OP_INSTANCE_CREATE":
        op = opcodes.from_dict(dict(data, OP_ID="OP_INSTANCE_CREATE"))
        assert isinstance(op, opcodes.OpInstanceCreate)
        return op
    raise errors.OpPrereqError("Instance %d: expected an OP_INSTANCE_CREATE dict" % idx,
                               errors.ECODE_INVAL)


class LUInstanceMultiAlloc(NoHooksLU):
    def check_arguments(self) -> None:
        self.ops = [_create_op(d, i) for i, d in enumerate(self.op.instances)]
        has_nodes = []
        for op in self.ops:
            if op.iallocator is not None:
                raise errors.OpPrereqError("iallocator are not allowed to be set on instance"
                                           " objects", errors.ECODE_INVAL)
            has_nodes.append(bool(op.pnode))
            if op.disk_template in constants.DTS_INT_MIRROR:
                has_nodes.append(bool(op.snode))
        if any(has_nodes) and not all(has_nodes):
            raise errors.OpPrereqError("There are instance objects providing pnode/snode while"
                                       " others do not", errors.ECODE_INVAL)
        self.use_allocator = not any(has_nodes)
        names = [op.instance_name for op in self.ops]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise errors.OpPrereqError("There are duplicate instance names: %s" %
                                       ", ".join(dups), errors.ECODE_INVAL)

    def expand_names(self) -> None:
        if self.use_allocator:
            nodes: Any = locking.ALL_SET
        else:
            nodes = sorted({self.cfg.get_node_by_name(n).uuid
                            for op in self.ops for n in (op.pnode, op.snode)
                            if n and self.cfg.get_node_by_name(n) is not None})
        for level in (locking.LEVEL_NODE, locking.LEVEL_NODE_RES):
            self.needed_locks[level] = nodes
            self.share_locks[level] = True

    def check_prereq(self) -> None:
        self.allocatable = [op.instance_name for op in self.ops]
        self.failed: list[str] = []
        self.placed: dict[str, list[str]] = {}
        if not self.use_allocator or not self.ops:
            return
        request = iallocator.MultiAllocRequest([iallocator.create_request(self.cfg, op)
                                                for op in self.ops])
        done, failed = iallocator.run_for_lu(self, self.op.iallocator, request, "nodes")
        self.placed = {name: nodes for name, nodes in done}
        self.allocatable = [name for name, _nodes in done]
        self.failed = list(failed)
        missing = set(self.allocatable + self.failed) ^ {op.instance_name for op in self.ops}
        if missing:
            raise errors.OpExecError("Iallocator did return incomplete result: %s" %
                                     ", ".join(sorted(missing)))

    def exec(self, feedback_fn: Callable[[str], None]) -> ResultWithJobs:
        jobs = []
        for op in self.ops:
            if self.use_allocator:
                nodes = self.placed.get(op.instance_name)
                if nodes is None:
                    continue
                op.pnode = nodes[0]
                op.snode = nodes[1] if len(nodes) > 1 else None
            jobs.append([op])
        if self.failed:
            self.log_warning("No nodes for instance(s) %s", ", ".join(self.failed))
        return ResultWithJobs(jobs, allocatable=self.allocatable, failed=self.failed)
