"""Queries as opcodes: OP_QUERY, OP_QUERY_FIELDS, OP_CLUSTER_CONFIG_QUERY.

gnt-* commands and RAPI ask the master daemon directly (luxi ``Query``,
``QueryFields``, ``QueryConfigValues``); these logical units give the same
answers to a query submitted inside a job (``gnt-debug submit-job``, scripts
that build opcodes), as Ganeti's do.  They read the in-memory configuration
and take no locks (``use_locking`` is accepted and, as in Ganeti's current
code, answered without locks).
"""

from typing import Any, Callable

from corral import query
from corral.cmdlib.base import NoHooksLU

Feedback = Callable[[str], None]


class LUQuery(NoHooksLU):
    def exec(self, feedback_fn: Feedback) -> dict[str, Any]:
        return query.query(self.context, self.op.what, list(self.op.fields), [],
                           self.op.qfilter)


class LUQueryFields(NoHooksLU):
    def exec(self, feedback_fn: Feedback) -> dict[str, Any]:
        return query.query_fields(self.op.what, self.op.fields)


class LUClusterConfigQuery(NoHooksLU):
    def exec(self, feedback_fn: Feedback) -> list:
        return query.config_values(self.context, list(self.op.output_fields))
