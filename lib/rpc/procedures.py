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
    Procedure("node_join", "cluster_membership.node_join", TMO_FAST,
              "On the master: install the cluster files on a new node over SSH and start"
              " its node daemon.",
              (Arg("node_name", _STR), Arg("node_ip", _STR), Arg("ssh_port", (int,)),
               Arg("ssh_key_check", (bool,)), Arg("readd", (bool,)))),
    Procedure("node_leave", "cluster_membership.node_leave", TMO_FAST,
              "Forget the cluster (config, ssconf, certificates) and stop the daemons."),
    Procedure("demote_from_mc", "cluster_membership.demote_from_mc", TMO_FAST,
              "Drop the local configuration copy (no longer a master candidate)."),
    Procedure("config_info", "cluster_membership.config_info", TMO_URGENT,
              "Serial number and master of the local config copy, and the ssconf master."),
    Procedure("get_config", "cluster_membership.get_config", TMO_URGENT,
              "The text of the local configuration copy."),
    Procedure("master_ip_up", "cluster_membership.master_ip_up", TMO_FAST,
              "Configure the master IP on the master netdev (idempotent).",
              (Arg("ip", _STR), Arg("netmask", (int,)), Arg("netdev", _STR))),
    Procedure("master_ip_down", "cluster_membership.master_ip_down", TMO_FAST,
              "Remove the master IP from the master netdev (idempotent).",
              (Arg("ip", _STR), Arg("netmask", (int,)), Arg("netdev", _STR))),
    Procedure("master_stop", "cluster_membership.master_stop", TMO_FAST,
              "Stop the master daemons and remove the master IP (old master on failover).",
              (Arg("ip", _STR), Arg("netmask", (int,)), Arg("netdev", _STR))),
    # ---- job queue replication to master candidates (backend/queue.py) ----
    Procedure("jobqueue_update", "queue.jobqueue_update", TMO_FAST,
              "Write job files (by id) and the serial into the queue copy with one group"
              " commit, then apply archive moves (id -> null or archived text).",
              (Arg("files", _DICT), Arg("serial", (int, type(None)), None),
               Arg("archive", _DICT, {}))),
    Procedure("jobqueue_list", "queue.jobqueue_list", TMO_URGENT,
              "Live job ids and serial of the node's queue copy (for a catch-up)."),
    Procedure("jobqueue_purge", "queue.jobqueue_purge", TMO_FAST,
              "Remove the node's queue copy (node leaving the cluster)."),
    # ---- instances (backend/instance.py) ----
    Procedure("instance_start", "instance.instance_start", TMO_NORMAL,
              "Activate the disks and start an instance (InstanceSpec dict, disk dicts).",
              (Arg("instance", _DICT), Arg("disks", _LIST),
               Arg("startup_paused", (bool,), False))),
    Procedure("instance_shutdown", "instance.instance_shutdown",
              lambda a: float(a.get("timeout", 120)) + TMO_URGENT,
              "Stop an instance (powerdown, killed after 'timeout' seconds); idempotent.",
              (Arg("hypervisor", _STR), Arg("name", _STR), Arg("timeout", (int,), 120),
               Arg("force", (bool,), False))),
    Procedure("instance_reboot", "instance.instance_reboot", TMO_NORMAL,
              "Soft or hard reboot of a running instance through its hypervisor.",
              (Arg("instance", _DICT), Arg("disks", _LIST), Arg("reboot_type", _STR),
               Arg("shutdown_timeout", (int,), 120))),
    Procedure("instance_info", "instance.instance_info", TMO_URGENT,
              "Hypervisor facts of one instance, null if it is not running here.",
              (Arg("hypervisor", _STR), Arg("name", _STR))),
    Procedure("all_instances_info", "instance.all_instances_info", TMO_URGENT,
              "{name: facts} of every instance running here (one call per query).",
              (Arg("hypervisors", _LIST),)),
    Procedure("instance_list", "instance.instance_list", TMO_URGENT,
              "Names of the instances running here.", (Arg("hypervisors", _LIST),)),
    Procedure("instance_console", "instance.instance_console", TMO_URGENT,
              "Console object (spec/rapi.md 9.7) of a running instance.",
              (Arg("instance", _DICT), Arg("node_name", _STR), Arg("ssh_port", (int,), 22))),
    Procedure("hypervisor_validate_params", "instance.hypervisor_validate_params",
              TMO_URGENT, "Node-side check of filled hypervisor parameters.",
              (Arg("hypervisor", _STR), Arg("hvparams", _DICT))),
    Procedure("instance_node_checks", "instance.instance_node_checks", TMO_URGENT,
              "Facts deciding whether the node can host an instance: OS definition,"
              " hvparams validity, missing bridges, free memory (one round trip).",
              (Arg("hypervisor", _STR), Arg("hvparams", (dict, type(None)), None),
               Arg("os_name", _STR, ""), Arg("bridges", _LIST, []),
               Arg("memory", (bool,), False))),
    Procedure("bridges_exist", "instance.bridges_exist", TMO_URGENT,
              "The given names that are not bridges on this node.", (Arg("bridges", _LIST),)),
    Procedure("instance_os_add", "instance.instance_os_add", TMO_SLOW,
              "Activate the disks and run the OS create script.",
              (Arg("instance", _DICT), Arg("disks", _LIST), Arg("nics", _LIST),
               Arg("hypervisor", _STR), Arg("hvparams", _DICT), Arg("beparams", _DICT),
               Arg("osparams", _DICT), Arg("reinstall", (bool,), False),
               Arg("debug", (int,), 0))),
    Procedure("instance_run_rename", "instance.instance_run_rename", TMO_SLOW,
              "Activate the disks and run the OS rename script.",
              (Arg("instance", _DICT), Arg("disks", _LIST), Arg("nics", _LIST),
               Arg("hypervisor", _STR), Arg("hvparams", _DICT), Arg("beparams", _DICT),
               Arg("osparams", _DICT), Arg("old_name", _STR), Arg("debug", (int,), 0))),
    # ---- instance disks (backend/disks.py) ----
    Procedure("blockdev_create", "disks.blockdev_create", TMO_SLOW,
              "Create disks (all or nothing); their device paths.",
              (Arg("disks", _LIST), Arg("info", _STR, ""))),
    Procedure("blockdev_remove", "disks.blockdev_remove", TMO_NORMAL,
              "Remove disks (idempotent).", (Arg("disks", _LIST),)),
    Procedure("blockdev_assemble", "disks.blockdev_assemble", TMO_NORMAL,
              "Activate disks; their device paths.", (Arg("disks", _LIST),)),
    Procedure("blockdev_shutdown", "disks.blockdev_shutdown", TMO_NORMAL,
              "Deactivate disks (data kept; idempotent).", (Arg("disks", _LIST),)),
    Procedure("blockdev_grow", "disks.blockdev_grow", TMO_NORMAL,
              "Grow one disk by 'amount' MiB (or only check, with dryrun).",
              (Arg("disk", _DICT), Arg("amount", (int,)), Arg("dryrun", (bool,)),
               Arg("backingstore", (bool,)))),
    Procedure("blockdev_rename", "disks.blockdev_rename", TMO_NORMAL,
              "Rename disks in place: [[disk, new_logical_id], ...].",
              (Arg("renames", _LIST),)),
    Procedure("blockdev_getsize", "disks.blockdev_getsize", TMO_URGENT,
              "Sizes in MiB of disks present here (null if missing).", (Arg("disks", _LIST),)),
    # ---- OS definitions (backend/os.py) ----
    Procedure("os_diagnose", "os.os_diagnose", TMO_FAST,
              "Every OS definition on this node, valid or not."),
    Procedure("os_get", "os.os_get", TMO_URGENT,
              "One OS definition as found on this node.", (Arg("name", _STR),)),
    Procedure("os_validate", "os.os_validate", TMO_FAST,
              "Run the OS 'verify parameters' check.",
              (Arg("name", _STR), Arg("osparams", _DICT), Arg("debug", (int,), 0))),
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
