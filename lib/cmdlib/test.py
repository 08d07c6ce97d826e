"""Logical units for testing the job machinery (gnt-debug)."""

import time
from typing import Callable

from corral import errors, locking
from corral.cmdlib.base import NoHooksLU, expand_node


class LUTestDelay(NoHooksLU):
    """Sleep on the master and/or on nodes; locks only the target nodes unless no_locks."""

    def expand_names(self) -> None:
        self.node_names = [expand_node(self.cfg, n).name for n in self.op.on_nodes]
        if self.op.no_locks:
            return
        uuids = [self.cfg.get_node_by_name(n).uuid for n in self.node_names]
        if self.op.on_master:
            uuids.append(self.cfg.get_master_node())
        self.needed_locks[locking.LEVEL_NODE] = sorted(set(uuids))

    def _delay(self, feedback_fn: Callable[[str], None]) -> None:
        if self.op.on_master:
            time.sleep(self.op.duration)
        if self.node_names:
            results = self.rpc.call("test_delay", self.node_names,
                                    {"duration": self.op.duration})
            for node, res in sorted(results.items()):
                res.raise_if_failed("Failure during rpc call to node %s" % node)

    def exec(self, feedback_fn: Callable[[str], None]) -> None:
        if self.op.repeat == 0:
            self._delay(feedback_fn)
            return None
        for i in range(self.op.repeat):
            feedback_fn("Test delay iteration %d/%d" % (i, self.op.repeat))
            self._delay(feedback_fn)
        return None


class LUTestJqueue(NoHooksLU):
    """Exercise job-queue behaviour: log messages of every type, optional failure."""

    def exec(self, feedback_fn: Callable[[str], None]) -> bool:
        for msg in self.op.log_messages:
            feedback_fn(msg)
        if self.op.fail:
            raise errors.OpExecError("Opcode failure was requested")
        return True


