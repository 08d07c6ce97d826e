"""The opcode processor: runs one opcode through its logical unit.

For each opcode: find its LU (by OP_ID), take the locks it declares in level
order (the opcode is ``waiting`` meanwhile; lock waits are chunked so a cancel
request is noticed), check prerequisites, run pre hooks, execute, run post
hooks, release everything, and drop the job's config reservations.
"""

import importlib
import logging
from typing import Any

from corral import errors, hooksmaster, locking, opcodes
from corral.cmdlib.base import LogicalUnit, ResultWithJobs

# Modules of cmdlib/ holding logical units, imported once to build the table.
_LU_MODULES = ("cluster", "verify", "test", "tags", "node", "group", "masterip", "instance", "os",
               "node_storage", "verify_disks", "instance_replace_disks",
               "instance_migration", "instance_move", "node_migrate",
               "test_allocator", "node_evacuate", "group_evacuate", "instance_change_group",
               "instance_multi_alloc", "backup_query", "backup", "queries")

# Lock waits in chunks of these lengths (then the last, repeatedly) so that a
# cancel request or a priority change is seen without a busy loop.
LOCK_WAIT_CHUNKS = (0.1, 0.5, 1.0, 2.0)


def _lu_name(op_id: str) -> str:
    return "LU" + "".join(part.capitalize() for part in op_id[3:].split("_"))


def build_lu_table() -> dict[str, type[LogicalUnit]]:
    table: dict[str, type[LogicalUnit]] = {}
    for mod_name in _LU_MODULES:
        try:
            mod = importlib.import_module("corral.cmdlib." + mod_name)
        except ModuleNotFoundError as err:
            if err.name == "corral.cmdlib." + mod_name:
                continue
            raise
        for name, obj in vars(mod).items():
            if name.startswith("LU") and isinstance(obj, type) and issubclass(obj, LogicalUnit):
                table[name] = obj
    return {op_id: table[_lu_name(op_id)] for op_id in opcodes.OP_MAPPING
            if _lu_name(op_id) in table}


class Processor:
    """Executes opcodes for the job queue (one call per opcode, on a worker thread)."""

    def __init__(self, context: Any) -> None:
        self.context = context
        self.lu_table = build_lu_table()

    def __call__(self, op: opcodes.OpCode, callbacks: Any) -> Any:
        return _Execution(self, op, callbacks).run()


class _Execution:
    def __init__(self, proc: Processor, op: opcodes.OpCode, callbacks: Any) -> None:
        self.proc = proc
        self.op = op
        self.cbs = callbacks
        self.owner = self  # lock owner: this one opcode execution
        self.glm: locking.LockManager = proc.context.glm

    def feedback(self, msg: Any) -> None:
        logging.info("job %s: %s", self.cbs.job_id, msg)
        self.cbs.feedback(msg)

    def run(self) -> Any:
        lu_class = self.proc.lu_table.get(self.op.OP_ID)
        if lu_class is None:
            raise errors.OpCodeUnknown("Opcode %s has no logical unit" % self.op.OP_ID)
        try:
            lu = lu_class(self, self.op, self.proc.context, self.feedback)
            lu.expand_names()
            self._acquire(locking.LEVEL_CLUSTER, [locking.BGL], shared=not lu.REQ_BGL)
            for level in locking.LEVELS[1:]:
                lu.declare_locks(level)
                if level in lu.needed_locks:
                    names = lu.needed_locks[level]
                    if names is locking.ALL_SET or names:
                        self._acquire(level, names, shared=lu.share_locks.get(level, False))
            self.cbs.notify_start()
            return self._run_lu(lu)
        finally:
            self.glm.release_all(self.owner)
            self.proc.context.cfg.release_reservations(self.cbs.job_id)

    def _acquire(self, level: int, names: Any, shared: bool) -> None:
        chunk = 0
        while True:
            self.cbs.check_cancel()
            timeout = LOCK_WAIT_CHUNKS[min(chunk, len(LOCK_WAIT_CHUNKS) - 1)]
            try:
                self.glm.acquire(self.owner, level, names, shared=shared, timeout=timeout,
                                 priority=self.cbs.current_priority())
                return
            except errors.LockTimeout:
                chunk += 1
            except errors.LockError as err:
                raise errors.OpPrereqError("Cannot lock %s: %s" %
                                           (locking.LEVEL_NAMES[level], err),
                                           errors.ECODE_STATE) from None

    def _run_lu(self, lu: LogicalUnit) -> Any:
        lu.check_prereq()
        hm = self._hooks_master(lu)
        if hm is not None:
            hm.run_pre()
        if self.op.dry_run:
            self.feedback("Dry run: prerequisites checked, nothing executed")
            return None
        result = lu.exec(self.feedback)
        if hm is not None:
            # Node lists are fixed at opcode start, but resolved now: a node the
            # LU added (node-add) is reachable, one it set offline is not.
            hm.post_nodes = self._hook_node_names(self._post_uuids)
            hm.run_post(self.feedback)
        if isinstance(result, ResultWithJobs):
            submitted = self.cbs.submit_many_jobs(
                [[op.to_dict() if isinstance(op, opcodes.OpCode) else op for op in job]
                 for job in result.jobs])
            out = {"jobs": submitted}
            out.update(result.other)
            return out
        return result

    def _hook_node_names(self, uuids: list[str]) -> list[str]:
        """Names of the nodes in ``uuids`` that exist and are online (the others are skipped)."""
        cfg = self.proc.context.cfg
        out = []
        for u in dict.fromkeys(uuids):
            node = cfg.get_node_info(u)
            if node is not None and not node.offline:
                out.append(node.name)
        return out

    def run_post_hooks_on(self, lu: LogicalUnit, nodes: list[str]) -> None:
        """Run ``lu``'s post hooks now on ``nodes`` (names or IPs), e.g. a node being
        removed, which is gone from the configuration by the normal post phase."""
        saved = getattr(self, "_post_uuids", [])
        hm = self._hooks_master(lu)
        self._post_uuids = saved
        if hm is not None and nodes:
            hm.post_nodes = list(nodes)
            hm.run_post(self.feedback)

    def _hooks_master(self, lu: LogicalUnit) -> hooksmaster.HooksMaster | None:
        if lu.HPATH is None:
            return None
        cfg = self.proc.context.cfg
        pre, post = lu.build_hooks_nodes()
        self._post_uuids = post

        def run_rpc(nodes: list[str], hpath: str, phase: str, env: dict[str, str]) -> dict:
            results = self.proc.context.rpc.call("hooks_runner", nodes,
                                                 {"hpath": hpath, "phase": phase, "env": env})
            return {n: (not r.failed, r.fail_msg if r.failed else r.data)
                    for n, r in results.items()}

        return hooksmaster.HooksMaster(
            self.op.OP_ID, lu.HPATH, lu.HTYPE, cfg.get_cluster_name(),
            cfg.get_master_node_name(), lu.hooks_target(), lu.build_hooks_env, run_rpc,
            self._hook_node_names(pre), self._hook_node_names(post))
