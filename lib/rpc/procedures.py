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
              "Write job files (by id), the serial and the drain flag into the queue copy"
              " as one journal record, then apply archive moves (id -> null or archived"
              " text).",
              (Arg("files", _DICT), Arg("serial", (int, type(None)), None),
               Arg("archive", _DICT, {}), Arg("drain", (bool, type(None)), None))),
    Procedure("jobqueue_list", "queue.jobqueue_list", TMO_URGENT,
              "Live job ids, serial and drain flag of the node's queue copy (for a"
              " catch-up); with versions, each live job's version (master failover).",
              (Arg("versions", (bool,), False),)),
    Procedure("jobqueue_fetch", "queue.jobqueue_fetch", TMO_FAST,
              "Texts of the given jobs in the node's queue copy, live or archived"
              " (master failover takes the newest copy of each job).",
              (Arg("ids", _LIST),)),
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
    Procedure("instance_forget", "instance.instance_forget", TMO_URGENT,
              "Remove what the hypervisor keeps of a removed instance (console log); idempotent.",
              (Arg("hypervisor", _STR), Arg("name", _STR))),
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
              "Create disks and their children (all or nothing); their device paths."
              " Mirrored ones are assembled, and opened with force when on_primary.",
              (Arg("disks", _LIST), Arg("info", _STR, ""), Arg("on_primary", (bool,), True),
               Arg("children_exist", (bool,), False))),
    Procedure("blockdev_remove", "disks.blockdev_remove", TMO_NORMAL,
              "Remove disks (idempotent).", (Arg("disks", _LIST),)),
    Procedure("blockdev_assemble", "disks.blockdev_assemble", TMO_NORMAL,
              "Activate disks (opened unless as_primary is false); their device paths.",
              (Arg("disks", _LIST), Arg("as_primary", (bool,), True))),
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
    Procedure("blockdev_sync_status", "disks.blockdev_sync_status", TMO_URGENT,
              "Combined mirror status per disk (null if missing here).",
              (Arg("disks", _LIST),)),
    Procedure("drbd_disconnect_net", "disks.drbd_disconnect_net", TMO_NORMAL,
              "Put DRBD devices in standalone mode.", (Arg("disks", _LIST),)),
    Procedure("drbd_attach_net", "disks.drbd_attach_net", TMO_NORMAL,
              "Connect DRBD devices to their peers (two primaries only with multimaster).",
              (Arg("disks", _LIST), Arg("multimaster", (bool,), False))),
    Procedure("drbd_remove_children", "disks.drbd_remove_children", TMO_NORMAL,
              "Detach the local data/meta volumes of DRBD devices.", (Arg("disks", _LIST),)),
    Procedure("drbd_add_children", "disks.drbd_add_children", TMO_NORMAL,
              "Attach new data/meta volumes (fresh metadata) to diskless DRBD devices.",
              (Arg("disks", _LIST),)),
    # ---- mirror disks (backend/mirror.py) ----
    Procedure("mirror_set_consistent", "mirror.mirror_set_consistent", TMO_FAST,
              "Record on a mirror secondary whether its copies are complete.",
              (Arg("disks", _LIST), Arg("consistent", (bool,)))),
    Procedure("mirror_sync_offline", "mirror.mirror_sync_offline", TMO_4HRS,
              "Copy whole mirror disks of a stopped instance to the secondary; bytes.",
              (Arg("disks", _LIST),)),
    Procedure("instance_replication_start", "mirror.instance_replication_start",
              TMO_NORMAL, "Make a running instance replicate its mirror disks; problems.",
              (Arg("instance", _DICT), Arg("disks", _LIST))),
    Procedure("instance_replication_status", "mirror.instance_replication_status",
              TMO_URGENT, "Live replication state per disk (null if not running); waits"
              " up to 'wait' seconds for a change while a disk is not in sync.",
              (Arg("hypervisor", _STR), Arg("name", _STR), Arg("wait", (int, float), 0.0))),
    Procedure("instance_replication_stop", "mirror.instance_replication_stop",
              TMO_NORMAL, "Drop the replication jobs of the given mirror disk indices of a"
              " running instance (its secondary image is being replaced); false if not"
              " running.",
              (Arg("hypervisor", _STR), Arg("name", _STR), Arg("disks", _LIST))),
    # ---- storage units (backend/storage_units.py) ----
    Procedure("storage_list", "storage_units.storage_list", TMO_URGENT,
              "Storage units of a type (name, size, used, free, allocatable; MiB).",
              (Arg("storage_type", _STR), Arg("name", (str, type(None)), None),
               Arg("paths", _LIST, []))),
    Procedure("node_volumes", "storage_units.node_volumes", TMO_URGENT,
              "Logical volumes of the node (name, vg, size, dev).",
              (Arg("vg", (str, type(None)), None),)),
    Procedure("lv_list", "storage_units.lv_list", TMO_URGENT,
              "{vg/lv: {size, active}} of the node's logical volumes.",
              (Arg("vg", (str, type(None)), None),)),
    Procedure("storage_modify", "storage_units.storage_modify", TMO_FAST,
              "Change a storage unit (lvm-pv: allocatable).",
              (Arg("storage_type", _STR), Arg("name", _STR), Arg("changes", _DICT))),
    Procedure("storage_repair", "storage_units.storage_repair", TMO_NORMAL,
              "Repair a storage unit (lvm-vg: remove missing PVs); the tools' output.",
              (Arg("storage_type", _STR), Arg("name", _STR))),
    Procedure("storage_check", "storage_units.storage_check", TMO_URGENT,
              "Why disks of the given types cannot be created here (VG free space too).",
              (Arg("dev_types", _LIST), Arg("vgs", (dict, type(None)), None),
               Arg("params", (dict, type(None)), None))),
    Procedure("storage_verify", "storage_units.storage_verify", TMO_FAST,
              "LVM and DRBD facts for cluster verify.",
              (Arg("vg_name", _STR, ""), Arg("drbd", (bool,), False),
               Arg("drbd_helper", _STR, ""))),
    # ---- OS definitions (backend/os.py) ----
    Procedure("os_diagnose", "os.os_diagnose", TMO_FAST,
              "Every OS definition on this node, valid or not."),
    Procedure("os_get", "os.os_get", TMO_URGENT,
              "One OS definition as found on this node.", (Arg("name", _STR),)),
    Procedure("os_validate", "os.os_validate", TMO_FAST,
              "Run the OS 'verify parameters' check.",
              (Arg("name", _STR), Arg("osparams", _DICT), Arg("debug", (int,), 0))),
    Procedure("set_watcher_pause", "watcher.set_watcher_pause", TMO_FAST,
              "Pause the node's watcher until 'until' (epoch seconds); null resumes it.",
              (Arg("until", (int, float, type(None))),)),
    Procedure("node_role", "watcher.node_role", TMO_URGENT,
              "A master candidate's view of a node (offline?) and maintain_node_health,"
              " with its config serial (the node's watcher asks).",
              (Arg("node_name", _STR),)),
    # ---- instance allocators (backend/iallocator.py) ----
    Procedure("iallocator_runner", "iallocator.iallocator_runner", TMO_NORMAL,
              "Run the iallocator plugin 'name' (search path) on the JSON input 'idata',"
              " with --key=value arguments from 'params'; its standard output.",
              (Arg("name", _STR), Arg("idata", _STR), Arg("params", _DICT, {}))),
    # ---- migration (backend/migration.py) and disk transfers (backend/disk_transfer.py) ----
    Procedure("migration_info", "migration.migration_info", TMO_NORMAL,
              "Source: what the migration target needs (opaque), current memory and"
              " hypervisor version.", (Arg("instance", _DICT),)),
    Procedure("accept_instance", "migration.accept_instance", TMO_NORMAL,
              "Target: activate disks and wait for the incoming instance on target_ip"
              " ('storage': empty disks exported for the source's mirror); refuses another"
              " hypervisor version than the source's unless ignore_hvversions.",
              (Arg("instance", _DICT), Arg("info", _STR), Arg("target_ip", _STR),
               Arg("disks", _LIST), Arg("storage", (bool,), False),
               Arg("source_hv_version", (str, list, type(None)), None),
               Arg("ignore_hvversions", (bool,), False))),
    Procedure("instance_mirror_disks", "migration.instance_mirror_disks", TMO_NORMAL,
              "Source: start mirroring the disks into the target's NBD exports.",
              (Arg("instance", _DICT), Arg("target_ip", _STR), Arg("count", (int,)))),
    Procedure("instance_migrate", "migration.instance_migrate", TMO_NORMAL,
              "Source: start sending the instance to target_ip; the status after at most"
              " 'wait' seconds.",
              (Arg("instance", _DICT), Arg("target_ip", _STR), Arg("live", (bool,)),
               Arg("wait", _NUM, 0.0))),
    Procedure("instance_migration_wait", "migration.instance_migration_wait",
              lambda a: float(a.get("wait", 1.0)) + TMO_URGENT,
              "Source: migration/mirror status after at most 'wait' seconds (earlier on"
              " QEMU events).",
              (Arg("instance", _DICT), Arg("wait", _NUM, 1.0),
               Arg("start_postcopy", (bool,), False))),
    Procedure("instance_mirror_stop", "migration.instance_mirror_stop", TMO_NORMAL,
              "Source: complete (force: drop) the disk mirror jobs.",
              (Arg("instance", _DICT), Arg("force", (bool,), False))),
    Procedure("instance_migration_abort", "migration.instance_migration_abort", TMO_NORMAL,
              "Source: cancel the migration; the guest keeps running here.",
              (Arg("instance", _DICT),)),
    Procedure("finalize_migration_src", "migration.finalize_migration_src", TMO_NORMAL,
              "Source: remove the local copy and deactivate 'disks' (success) or resume it"
              " (failure); returns a disk warning or null.",
              (Arg("instance", _DICT), Arg("success", (bool,)), Arg("live", (bool,)),
               Arg("disks", _LIST, []))),
    Procedure("finalize_migration_dst", "migration.finalize_migration_dst", TMO_NORMAL,
              "Target: run and record the instance (success) or stop and clean up.",
              (Arg("instance", _DICT), Arg("info", _STR), Arg("success", (bool,)))),
    Procedure("instance_migration_state", "migration.instance_migration_state", TMO_URGENT,
              "Whether the instance runs here and QEMU's run state (inmigrate/postmigrate).",
              (Arg("hypervisor", _STR), Arg("name", _STR))),
    Procedure("blockdev_close", "migration.blockdev_close", TMO_NORMAL,
              "Make mirrored disks secondary here (DRBD; around a migration).",
              (Arg("disks", _LIST),)),
    Procedure("instance_balloon_memory", "migration.instance_balloon_memory", TMO_NORMAL,
              "Set a running instance's memory (MiB) by ballooning.",
              (Arg("instance", _DICT), Arg("memory", (int,)))),
    Procedure("disk_import_start", "disk_transfer.disk_import_start", TMO_NORMAL,
              "Target: listen (TLS, cluster certificates) for a transfer's data into the"
              " disks; returns the port.",
              (Arg("transfer_id", _STR), Arg("disks", _LIST), Arg("bind_ip", _STR),
               Arg("compress", _STR, "none"))),
    Procedure("disk_export_start", "disk_transfer.disk_export_start", TMO_NORMAL,
              "Source: stream the disks to the target of a transfer (in the background).",
              (Arg("transfer_id", _STR), Arg("disks", _LIST), Arg("host", _STR),
               Arg("port", (int,)), Arg("compress", _STR, "none"))),
    Procedure("disk_transfer_status", "disk_transfer.disk_transfer_status",
              lambda a: float(a.get("wait", 0)) + TMO_URGENT,
              "Progress of a transfer, after at most 'wait' seconds (earlier when it ends).",
              (Arg("transfer_id", _STR), Arg("wait", _NUM, 0.0))),
    Procedure("disk_transfer_cleanup", "disk_transfer.disk_transfer_cleanup", TMO_FAST,
              "Stop and forget a transfer (idempotent).", (Arg("transfer_id", _STR),)),
    # ---- instance exports kept on the node (backend/exports.py, gnt-backup) ----
    Procedure("export_list", "exports.export_list", TMO_FAST,
              "Sorted names of the complete exports in the node's export directory."),
    Procedure("export_info", "exports.export_info", TMO_FAST,
              "Text of an export's config.ini.", (Arg("name", _STR),)),
    Procedure("export_finalize", "exports.export_finalize", TMO_FAST,
              "Write config.ini into '<name>.new' and rename it to '<name>' (replacing"
              " an older export atomically).",
              (Arg("name", _STR), Arg("config_text", _STR))),
    Procedure("export_remove", "exports.export_remove", TMO_FAST,
              "Remove an export or a '<name>.new' staging directory (idempotent).",
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
