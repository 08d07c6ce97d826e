"""gnt-backup: instance exports and imports (spec/cli.md §8).

``export`` writes an instance's configuration and disk images to a node's
export directory (OP_BACKUP_EXPORT); ``import`` creates an instance from such
an export (OP_INSTANCE_CREATE mode "import", with gnt-instance add's creation
options); ``list`` shows the exports each node holds (the "export" query
resource); ``remove`` deletes an instance's exports (OP_BACKUP_REMOVE).
"""

import argparse
import sys

from corral import constants, errors, opcodes
from corral.client import base, gnt_instance, query_fields
from corral.client.base import Command, opt

# The transfer compressions the node daemons implement (backend/disk_transfer.py).
COMPRESSIONS = ("none", "gzip", "gzip-fast", "gzip-slow")


def export_failure_message(result: object) -> str | None:
    """Why an OP_BACKUP_EXPORT result ``[fin_ok, [disk_ok...]]`` is a failure, or None.

    A result of any other shape is a failure too: the export cannot be
    trusted if the client cannot tell whether it is complete.
    """
    if (not isinstance(result, (list, tuple)) or len(result) != 2
            or not isinstance(result[1], (list, tuple))):
        return "Cannot parse the export result: %r" % (result,)
    fin_ok, disks = result
    bad = [str(idx) for idx, ok in enumerate(disks) if not ok]
    parts = []
    if not fin_ok:
        parts.append("finalize export")
    if bad:
        parts.append("disk(s) %s" % ", ".join(bad))
    if not parts:
        return None
    return "Export failed, errors in %s" % " and ".join(parts)


def build_export_op(opts: argparse.Namespace, instance: str) -> opcodes.OpBackupExport:
    if not opts.node:
        raise errors.OpPrereqError("Target node must be specified (-n)", errors.ECODE_INVAL)
    return opcodes.OpBackupExport(
        instance_name=instance, target_node=opts.node, mode="local",
        shutdown=opts.shutdown, shutdown_timeout=opts.shutdown_timeout,
        remove_instance=opts.remove_instance,
        ignore_remove_failures=opts.ignore_remove_failures,
        compress=opts.transport_compression, zero_free_space=opts.zero_free_space,
        zeroing_timeout_fixed=opts.zeroing_timeout_fixed,
        zeroing_timeout_per_mib=opts.zeroing_timeout_per_mib, long_sleep=opts.long_sleep)


def export(opts: argparse.Namespace, args: list[str]) -> int:
    """Exit 1 (message on stderr) unless config.ini and every disk were exported."""
    result = base.submit_or_send([build_export_op(opts, args[0])], opts)
    if result is None or result[0] is None:  # --submit, --dry-run
        return constants.EXIT_SUCCESS
    message = export_failure_message(result[0])
    if message is not None:
        sys.stdout.flush()
        sys.stderr.write(message + "\n")
        return constants.EXIT_FAILURE
    return constants.EXIT_SUCCESS


def build_import_op(opts: argparse.Namespace, instance: str) -> opcodes.OpInstanceCreate:
    """gnt-instance add's opcode in mode "import"; like Ganeti, the instance is not started."""
    return gnt_instance.build_create_op(
        opts, instance, mode="import", start=False, src_node=opts.src_node,
        src_path=opts.src_dir, compress=opts.compress)


def import_instance(opts: argparse.Namespace, args: list[str]) -> int:
    base.submit_or_send([build_import_op(opts, args[0])], opts)
    return constants.EXIT_SUCCESS


def list_exports(opts: argparse.Namespace, args: list[str]) -> int:
    return base.generic_list(query_fields.RESOURCE_EXPORT, opts, opts.nodes or [],
                             query_fields.DEFAULT_EXPORT_FIELDS)


def list_fields(opts: argparse.Namespace, args: list[str]) -> int:
    return base.list_fields(query_fields.RESOURCE_EXPORT, opts, args)


def remove(opts: argparse.Namespace, args: list[str]) -> int:
    base.submit_or_send([opcodes.OpBackupRemove(instance_name=args[0])], opts)
    return constants.EXIT_SUCCESS


_EXPORT_OPTS = base.SUBMIT_OPTS + [
    opt("-n", "--node", default=None, help="Target node for the export (required)"),
    opt("--noshutdown", dest="shutdown", action="store_false", default=True,
        help="Don't shut the instance down before exporting its disks (the images are then"
             " not even crash-consistent)"),
    opt("--shutdown-timeout", type=int, default=120,
        help="Maximum seconds to wait for the instance to shut down"),
    opt("--remove-instance", action="store_true", default=False,
        help="Remove the instance from the cluster after a successful export"),
    opt("--ignore-remove-failures", action="store_true", default=False,
        help="With --remove-instance, remove the instance from the configuration even if"
             " removing its disks fails"),
    opt("--transport-compression", default="none", choices=list(COMPRESSIONS),
        help="Compression of the disk data on its way to the target node (default none)"),
    opt("--zero-free-space", action="store_true", default=False,
        help="Zero the free space of the instance's disks before the export; needs"
             " instance communication, which Corral does not provide, so it is refused"),
    opt("--zeroing-timeout-fixed", type=int, default=None,
        help="Fixed part of the timeout for zeroing free space (seconds)"),
    opt("--zeroing-timeout-per-mib", type=float, default=None,
        help="Per-MiB part of the timeout for zeroing free space (seconds)"),
    opt("--long-sleep", action="store_true", default=False,
        help="Allow a long shutdown of the instance while zeroing (only with"
             " --zero-free-space)"),
]

_IMPORT_OPTS = [o for o in gnt_instance.CREATE_OPTS
                if not set(o.flags) & set(gnt_instance.ADD_ONLY_FLAGS)] + [
    opt("--src-node", default=None,
        help="Node holding the export (default: search every node)"),
    opt("--src-dir", default=None,
        help="Directory of the export on the source node (default: the instance's export in"
             " the node's export directory)"),
    opt("--compress", default="none", choices=list(COMPRESSIONS),
        help="Compression of the disk data on its way from the source node (default none)"),
]

_LIST_OPTS = [
    opt("-n", "--node", dest="nodes", action="append", default=None,
        help="List only the exports of this node (repeatable)"),
    base.NOHDR_OPT, base.SEP_OPT, base.UNITS_OPT, base.FIELDS_OPT, base.VERBOSE_OPT,
]

COMMANDS = {
    "export": Command(export, "<instance>", _EXPORT_OPTS,
                      "Export an instance's configuration and disk images to a node", 1, 1),
    "import": Command(import_instance, "<instance>", _IMPORT_OPTS,
                      "Create an instance from an export (OS, disks and NICs from the export"
                      " unless given)", 1, 1),
    "list": Command(list_exports, "", _LIST_OPTS, "List the exports on the nodes"),
    "list-fields": Command(list_fields, "[<field>...]", [base.NOHDR_OPT, base.SEP_OPT],
                           "List the fields available for 'list'", 0, None),
    "remove": Command(remove, "<instance>", base.SUBMIT_OPTS,
                      "Remove the exports of an instance from all nodes", 1, 1),
}


def main(argv: list[str] | None = None) -> int:
    return base.generic_main("gnt-backup", COMMANDS, argv, "Instance exports and imports"
                             " for Corral")
