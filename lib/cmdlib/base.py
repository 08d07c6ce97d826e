"""Base classes of logical units (one LU per opcode, spec STYLE.md §1).

Every LU goes through the same steps, driven by mcpu.Processor:

1. ``check_arguments`` — pure checks of the opcode values (no config access).
2. ``expand_names`` — resolve names to objects, fill ``needed_locks``.
3. ``declare_locks(level)`` — per level, refine ``needed_locks`` (e.g. the
   nodes of an instance once the instance lock is held).
4. ``check_prereq`` — verify the cluster state; changes nothing.
5. pre hooks, ``exec``, post hooks.

Locks are declared only in steps 2-3.  LUs never spawn processes: node work
goes through ``self.rpc``.
"""

from typing import Any, Callable, ClassVar

from corral import constants, errors, locking, opcodes
from corral.config import ConfigWriter


class ResultWithJobs:
    """An LU result that asks the processor to submit more jobs.

    The opcode's result becomes ``{"jobs": [[true, id] | [false, msg], ...]}``
    plus any ``other`` keys.
    """

    def __init__(self, jobs: list[list[opcodes.OpCode]], **other: Any) -> None:
        self.jobs = jobs
        self.other = other


class LogicalUnit:
    """Base of every logical unit."""

    HPATH: ClassVar[str | None] = None
    HTYPE: ClassVar[str | None] = None
    REQ_BGL: ClassVar[bool] = False

    def __init__(self, processor: Any, op: opcodes.OpCode, context: Any, feedback) -> None:
        self.proc = processor
        self.op = op
        self.context = context
        self.cfg: ConfigWriter = context.cfg
        self.rpc = context.rpc
        self.feedback_fn: Callable[[str], None] = feedback
        self.needed_locks: dict[int, Any] = {}
        self.share_locks: dict[int, bool] = {level: False for level in locking.LEVELS}
        self.check_arguments()

    # ---- steps ------------------------------------------------------------------------

    def check_arguments(self) -> None:
        """Pure validation of opcode values."""

    def expand_names(self) -> None:
        """Resolve names and declare ``needed_locks``; default: no locks beyond the BGL."""

    def declare_locks(self, level: int) -> None:
        """Refine ``needed_locks[level]`` once the locks of lower levels are held."""

    def check_prereq(self) -> None:
        """Check the cluster state; must not change anything."""

    def exec(self, feedback_fn: Callable[[str], None]) -> Any:
        raise errors.ProgrammerError("%s has no exec" % type(self).__name__)

    # ---- hooks ------------------------------------------------------------------------

    def build_hooks_env(self) -> dict[str, Any]:
        """Variables (without ``GANETI_``) for this LU's hooks."""
        return {}

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        """(pre nodes, post nodes) as node UUIDs."""
        return [], []

    def hooks_target(self) -> str | None:
        return getattr(self.op, self.op.OP_DSC_FIELD, None) if self.op.OP_DSC_FIELD else None

    # ---- helpers ----------------------------------------------------------------------

    def log_info(self, msg: str, *args: Any) -> None:
        self.feedback_fn(msg % args if args else msg)

    def log_warning(self, msg: str, *args: Any) -> None:
        self.feedback_fn("WARNING: " + (msg % args if args else msg))

    def owned(self, level: int) -> set[str]:
        return self.context.glm.owned(self.proc.owner, level)

    @property
    def master_uuid(self) -> str:
        return self.cfg.get_master_node()


class NoHooksLU(LogicalUnit):
    """An LU without hooks."""

    HPATH = None
    HTYPE = None


def lock_all_nodes(lu: LogicalUnit, shared: bool = True) -> None:
    lu.needed_locks[locking.LEVEL_NODE] = locking.ALL_SET
    lu.share_locks[locking.LEVEL_NODE] = shared


def expand_node(cfg: ConfigWriter, name: str):
    node = cfg.expand_node_name(name)
    if node is None:
        raise errors.OpPrereqError("Node '%s' not known" % name, errors.ECODE_NOENT)
    return node


def expand_target_node(lu: "LogicalUnit"):
    """The node of ``op.target_node``, its full name and UUID written back into the opcode."""
    node = expand_node(lu.cfg, lu.op.target_node)
    lu.op.target_node, lu.op.target_node_uuid = node.name, node.uuid
    return node


def expand_instance(cfg: ConfigWriter, name: str):
    inst = cfg.expand_instance_name(name)
    if inst is None:
        raise errors.OpPrereqError("Instance '%s' not known" % name, errors.ECODE_NOENT)
    return inst


def check_tags(tags: list[str]) -> None:
    """Tags: at most 128 characters of [\\w.+*/:@-] each (spec/opcodes.md §4)."""
    import re
    rx = re.compile(r"^[\w.+*/:@-]+$")
    for tag in tags:
        if not isinstance(tag, str) or not tag:
            raise errors.TagError("Invalid tag %r: tags must be non-empty strings" % (tag,))
        if len(tag) > constants.MAX_TAG_LEN:
            raise errors.TagError("Tag too long (%d > %d characters)" %
                                  (len(tag), constants.MAX_TAG_LEN))
        if not rx.match(tag):
            raise errors.TagError("Tag contains invalid characters: %r (allowed: letters, digits,"
                                  " and . + * / : @ - _)" % tag)
