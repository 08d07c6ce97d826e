"""The one table of node daemon procedures.

Each entry names a procedure, the backend function that implements it on
the node (``"<module>.<function>"`` inside ``corral.backend``), its
arguments (name, accepted types, optional default), its default timeout
and what it does.  The client (rpc/client.py) checks calls against it and
takes the timeout from it; the node daemon (server/noded.py) dispatches
through it and checks arguments again.  Adding a procedure = one entry here
plus the backend function.

Timeout classes (seconds; a caller may pass a shorter or longer one):

  ==========  =====  =====================================================
  URGENT         60  answers from memory or /proc (version, node_info)
  FAST          120  small local writes (files, ssconf, daemon restarts)
  NORMAL        900  ordinary work (hooks, verify, instance start/stop)
  SLOW         3600  long work (disk creation, OS install)
  4HRS        14400  very long work (disk wipe, large export/import)
  1DAY        86400  the longest (migration of huge instances)
  ==========  =====  =====================================================

``timeout`` may also be a function of the arguments (test_delay).
"""

import copy
from dataclasses import dataclass, field
from typing import Any, Callable

from corral import errors

TMO_URGENT = 60.0
TMO_FAST = 120.0
TMO_NORMAL = 900.0
TMO_SLOW = 3600.0
TMO_4HRS = 4 * 3600.0
TMO_1DAY = 86400.0

_REQUIRED = object()


@dataclass(frozen=True)
class Arg:
    """One argument: its name, the JSON types it accepts, and its default."""

    name: str
    types: tuple[type, ...]
    default: Any = _REQUIRED

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


@dataclass(frozen=True)
class Procedure:
    name: str
    backend: str
    timeout: float | Callable[[dict], float]
    doc: str
    args: tuple[Arg, ...] = field(default_factory=tuple)

    def timeout_for(self, args: dict) -> float:
        return self.timeout(args) if callable(self.timeout) else self.timeout


_STR = (str,)
_NUM = (int, float)
_LIST = (list,)
_DICT = (dict,)

PROCEDURES: dict[str, Procedure] = {p.name: p for p in [
    Procedure("version", "node.version", TMO_URGENT,
              "Protocol version of the node daemon (constants.PROTOCOL_VERSION)."),
    Procedure("node_info", "node.node_info", TMO_URGENT,
              "Memory, CPU, boot id and per-hypervisor facts of the node.",
              (Arg("hv_names", _LIST), Arg("storage_units", _LIST, []))),
    Procedure("test_delay", "node.test_delay", lambda a: float(a["duration"]) + 10.0,
              "Sleep for 'duration' seconds (tests, OpTestDelay).",
              (Arg("duration", _NUM),)),
    Procedure("get_master_info", "node.get_master_info", TMO_URGENT,
              "Cluster name, master node, IP, netdev, netmask, IP family from ssconf."),
    Procedure("node_verify", "node.node_verify", TMO_NORMAL,
              "Node self-checks requested by cluster verify.",
              (Arg("checks", _DICT, {}),)),
    Procedure("upload_file", "files.upload_file", TMO_FAST,
              "Replace one allow-listed cluster file (by symbolic name) atomically.",
              (Arg("name", _STR), Arg("data", _STR), Arg("mode", (int,)))),
    Procedure("write_ssconf", "files.write_ssconf", TMO_FAST,
              "Replace the node's ssconf files with the given values.",
              (Arg("values", _DICT),)),
    Procedure("hooks_runner", "hooks.hooks_runner", TMO_NORMAL,
              "Run the hook scripts of <hpath>-<phase>.d with the given GANETI_* env.",
              (Arg("hpath", _STR), Arg("phase", _STR), Arg("env", _DICT))),
    Procedure("restart_daemon", "daemons.restart_daemon", TMO_FAST,
              "Restart a Corral daemon on the node (noded re-executes after replying).",
              (Arg("name", _STR),)),
]}


def get_procedure(name: str) -> Procedure:
    """The table entry for ``name``; errors.ProtocolError if there is none."""
    try:
        return PROCEDURES[name]
    except KeyError:
        raise errors.ProtocolError("Unknown procedure '%s'" % name) from None


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


def check_args(proc: Procedure, args: Any) -> dict:
    """``args`` with defaults filled in; errors.ProtocolError naming the first problem.

    Refuses missing and unknown arguments and wrong JSON types, so a backend
    function never sees a call it was not written for.
    """
    if not isinstance(args, dict):
        raise errors.ProtocolError("Arguments of '%s' must be a JSON object, not %s"
                                   % (proc.name, type(args).__name__))
    known = {a.name for a in proc.args}
    unknown = sorted(set(args) - known)
    if unknown:
        raise errors.ProtocolError("Unknown argument(s) for '%s': %s"
                                   % (proc.name, ", ".join(unknown)))
    out = {}
    for arg in proc.args:
        if arg.name not in args:
            if arg.required:
                raise errors.ProtocolError("Missing argument '%s' for '%s'"
                                           % (arg.name, proc.name))
            out[arg.name] = copy.deepcopy(arg.default)
            continue
        value = args[arg.name]
        if not _type_ok(value, arg.types):
            raise errors.ProtocolError(
                "Argument '%s' of '%s' must be %s, not %s"
                % (arg.name, proc.name, "/".join(t.__name__ for t in arg.types),
                   type(value).__name__))
        out[arg.name] = value
    return out
