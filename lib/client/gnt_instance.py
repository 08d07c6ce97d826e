"""gnt-instance: instance administration (spec/cli.md §4)."""

import argparse
import os
import shlex
import sys
from typing import Any

from corral import constants, errors, opcodes
from corral.client import base, params, query_fields
from corral.client.base import Command, opt

_REMOVE_MSG = ("This will remove the volumes of the instance %s (including mirrors), thus"
               " removing all the data of the instance. Continue?")
_REINSTALL_MSG = "This will reinstall the instance %s and remove all data. Continue?"
_MODIFY_NOTE = ("Please don't forget that most parameters take effect only at the next"
                " (re)start of the instance initiated by ganeti; restarting from within the"
                " instance will not be enough.")


def _kv(value: str | None, option: str) -> dict:
    return params.parse_key_value_list(value, option) if value else {}


def _bool_opt(value: str | None, option: str) -> bool | None:
    if value is None:
        return None
    try:
        return params.parse_bool(value)
    except errors.ParameterError:
        raise errors.OpPrereqError("Invalid value '%s' for %s, expected yes or no" %
                                   (value, option), errors.ECODE_INVAL) from None


# ---- add ---------------------------------------------------------------------------------

def _hypervisor(opts: argparse.Namespace) -> tuple[str | None, dict]:
    if not opts.hypervisor:
        return None, {}
    hv_name, hvp = params.parse_hv_option(opts.hypervisor)
    if hv_name not in constants.HYPER_TYPES:
        raise errors.OpPrereqError("Unknown hypervisor '%s' in -H (known: %s)" %
                                   (hv_name, ", ".join(sorted(constants.HYPER_TYPES))),
                                   errors.ECODE_INVAL)
    return hv_name, hvp


def _nodes(value: str | None) -> tuple[str | None, str | None]:
    if not value:
        return None, None
    pnode, _, snode = value.partition(":")
    return pnode, snode or None


def build_create_op(opts: argparse.Namespace, name: str, mode: str = "create",
                    **extra: Any) -> opcodes.OpInstanceCreate:
    """OP_INSTANCE_CREATE from the options of CREATE_OPTS (shared with gnt-backup import).

    ``extra`` sets the fields only one mode has (create: start, no_install,
    forthcoming, commit; import: src_node, src_path, compress...).  On import,
    disks and NICs not given on the command line come from the export.
    """
    hv_name, hvp = _hypervisor(opts)
    pnode, snode = _nodes(opts.node)
    template = opts.disk_template
    if mode == "create" and template is None and not opts.disks and opts.sd_size is None:
        disks: list = []  # the cluster's default template decides (LU checks)
    else:
        disks = params.parse_disk_options(opts.disks, opts.sd_size, template, mode)
    tags = [t for t in (opts.tags or "").split(",") if t]
    return opcodes.OpInstanceCreate(
        instance_name=name, mode=mode, disks=disks,
        nics=params.parse_nic_options(opts.nics, opts.no_nics, mode), disk_template=template,
        os_type=opts.os, osparams=_kv(opts.osparams, "-O"),
        osparams_private=_kv(opts.osparams_private, "--os-parameters-private") or None,
        osparams_secret=_kv(opts.osparams_secret, "--os-parameters-secret") or None,
        pnode=pnode, snode=snode, iallocator=opts.iallocator, group_name=opts.nodegroup,
        hypervisor=hv_name, hvparams=hvp, beparams=_kv(opts.beparams, "-B"),
        ip_check=opts.ip_check, name_check=opts.name_check, conflicts_check=opts.conflicts_check,
        wait_for_sync=opts.wait_for_sync, file_storage_dir=opts.file_storage_dir,
        file_driver=opts.file_driver, identify_defaults=opts.identify_defaults,
        force_variant=opts.force_variant, ignore_ipolicy=opts.ignore_ipolicy,
        opportunistic_locking=opts.opportunistic_locking, tags=tags, **extra)


def add(opts: argparse.Namespace, args: list[str]) -> int:
    op = build_create_op(opts, args[0], start=opts.start, no_install=opts.no_install,
                         forthcoming=opts.forthcoming, commit=opts.commit)
    base.submit_or_send([op], opts)
    return constants.EXIT_SUCCESS


# ---- simple single-instance operations ------------------------------------------------------

def remove(opts: argparse.Namespace, args: list[str]) -> int:
    if not opts.force and not base.ask_user(_REMOVE_MSG % args[0]):
        return constants.EXIT_FAILURE
    op = opcodes.OpInstanceRemove(instance_name=args[0], ignore_failures=opts.ignore_failures,
                                  shutdown_timeout=opts.shutdown_timeout)
    base.submit_or_send([op], opts)
    return constants.EXIT_SUCCESS


def rename(opts: argparse.Namespace, args: list[str]) -> int:
    op = opcodes.OpInstanceRename(instance_name=args[0], new_name=args[1],
                                  ip_check=opts.ip_check, name_check=opts.name_check)
    base.submit_or_send([op], opts)
    return constants.EXIT_SUCCESS


def reinstall(opts: argparse.Namespace, args: list[str]) -> int:
    if not opts.force and not base.ask_user(_REINSTALL_MSG % args[0]):
        return constants.EXIT_FAILURE
    op = opcodes.OpInstanceReinstall(
        instance_name=args[0], os_type=opts.os, force_variant=opts.force_variant,
        osparams=_kv(opts.osparams, "-O") or None,
        osparams_private=_kv(opts.osparams_private, "--os-parameters-private") or None,
        osparams_secret=_kv(opts.osparams_secret, "--os-parameters-secret") or None)
    base.submit_or_send([op], opts)
    return constants.EXIT_SUCCESS


def activate_disks(opts: argparse.Namespace, args: list[str]) -> int:
    op = opcodes.OpInstanceActivateDisks(instance_name=args[0], ignore_size=opts.ignore_size,
                                         wait_for_sync=opts.wait_for_sync)
    result = base.submit_or_send([op], opts)
    if result is not None:
        for node, iv_name, path in result[0]:
            print("%s:%s:%s" % (node, iv_name, path))
    return constants.EXIT_SUCCESS


def deactivate_disks(opts: argparse.Namespace, args: list[str]) -> int:
    base.submit_or_send([opcodes.OpInstanceDeactivateDisks(instance_name=args[0],
                                                          force=opts.force)], opts)
    return constants.EXIT_SUCCESS


def grow_disk(opts: argparse.Namespace, args: list[str]) -> int:
    try:
        disk = int(args[1])
    except ValueError:
        raise errors.OpPrereqError("Invalid disk index passed: '%s', expected a non-negative"
                                   " integer" % args[1], errors.ECODE_INVAL) from None
    amount = params.parse_unit(args[2])
    op = opcodes.OpInstanceGrowDisk(instance_name=args[0], disk=disk, amount=amount,
                                    absolute=opts.absolute, wait_for_sync=opts.wait_for_sync)
    base.submit_or_send([op], opts)
    return constants.EXIT_SUCCESS


def recreate_disks(opts: argparse.Namespace, args: list[str]) -> int:
    disks: list[Any] = []
    for value in opts.disks or []:
        ident, dparams = params.parse_ident_key_value(value, "--disk", parse_prefixes=False)
        try:
            idx = int(ident)
        except ValueError:
            raise errors.OpPrereqError("Invalid disk index '%s' in --disk" % ident,
                                       errors.ECODE_INVAL) from None
        if "size" in dparams:
            dparams["size"] = params.parse_unit(dparams["size"])
        disks.append([idx, dparams] if dparams else idx)
    nodes = [n for n in (opts.node or "").split(":") if n]
    op = opcodes.OpInstanceRecreateDisks(instance_name=args[0], disks=disks, nodes=nodes,
                                         iallocator=opts.iallocator)
    base.submit_or_send([op], opts)
    return constants.EXIT_SUCCESS


def replace_disks(opts: argparse.Namespace, args: list[str]) -> int:
    """One of -p, -s, -a, -n NODE or -I picks the mode (Ganeti's ReplaceDisks)."""
    try:
        disks = [int(i) for i in opts.disks.split(",")] if opts.disks else []
    except ValueError:
        raise errors.OpPrereqError("Invalid disk index passed: '%s'" % opts.disks,
                                   errors.ECODE_INVAL) from None
    chosen = [opts.on_primary, opts.on_secondary, opts.auto, opts.dst_node is not None,
              opts.iallocator is not None].count(True)
    if chosen != 1:
        raise errors.OpPrereqError("One and only one of the -p, -s, -a, -n and -I options"
                                   " must be passed", errors.ECODE_INVAL)
    if opts.on_primary:
        mode = "replace_on_primary"
    elif opts.on_secondary:
        mode = "replace_on_secondary"
    elif opts.auto:
        mode = "replace_auto"
        if disks:
            raise errors.OpPrereqError("Cannot specify disks when using automatic mode",
                                       errors.ECODE_INVAL)
    else:
        mode = "replace_new_secondary"
    op = opcodes.OpInstanceReplaceDisks(instance_name=args[0], disks=disks,
                                        remote_node=opts.dst_node, mode=mode,
                                        iallocator=opts.iallocator,
                                        early_release=opts.early_release,
                                        ignore_ipolicy=opts.ignore_ipolicy)
    base.submit_or_send([op], opts)
    return constants.EXIT_SUCCESS


def modify(opts: argparse.Namespace, args: list[str]) -> int:
    if opts.offline and opts.online:
        raise errors.OpPrereqError("Can't use --online and --offline at the same time",
                                   errors.ECODE_INVAL)
    pnode, snode = _nodes(opts.node)
    op = opcodes.OpInstanceSetParams(
        instance_name=args[0], force=opts.force, nics=params.parse_nic_modifications(opts.nics),
        disks=params.parse_disk_modifications(opts.disks), beparams=_kv(opts.beparams, "-B"),
        hvparams=_kv(opts.hvparams, "-H"), disk_template=opts.disk_template,
        remote_node=snode or pnode, os_name=opts.os,
        osparams=_kv(opts.osparams, "-O") or None,
        osparams_private=_kv(opts.osparams_private, "--os-parameters-private") or None,
        force_variant=opts.force_variant, pnode=opts.new_primary,
        offline=True if opts.offline else (False if opts.online else None),
        runtime_mem=params.parse_unit(opts.runtime_mem) if opts.runtime_mem else None,
        hotplug=opts.hotplug, hotplug_if_possible=opts.hotplug_if_possible,
        wait_for_sync=opts.wait_for_sync)
    result = base.submit_or_send([op], opts)
    if result:
        print("Modified instance %s" % args[0])
        for param, value in result[0]:
            print(" - %-5s -> %s" % (param, value))
        print(_MODIFY_NOTE)
    return constants.EXIT_SUCCESS


# ---- multi-instance operations (startup, shutdown, reboot) --------------------------------

def _select(opts: argparse.Namespace, args: list[str]) -> list[str]:
    """Instance names per the selector options (Ganeti's _ExpandMultiNames)."""
    mode = opts.multi_mode or "instance"
    if mode == "all":
        if args:
            raise errors.OpPrereqError("No arguments expected with --all", errors.ECODE_INVAL)
        return _query_names([])
    if not args:
        raise errors.OpPrereqError("No %s names passed" % mode, errors.ECODE_INVAL)
    if mode == "instance":
        return list(args)
    result = base.get_client().query("instance", ["name", "pnode", "snodes"], [])
    wanted = set(args)
    names = []
    for row in result["data"]:
        name, pnode, snodes = (cell[1] for cell in row)
        snodes = snodes or []
        if (mode in ("node", "primary") and _node_match(pnode, wanted)) or \
                (mode in ("node", "secondary") and any(_node_match(s, wanted) for s in snodes)):
            names.append(name)
    return names


def _node_match(node: str, wanted: set[str]) -> bool:
    return node in wanted or node.split(".", 1)[0] in wanted


def _query_names(names: list[str]) -> list[str]:
    result = base.get_client().query("instance", ["name"], names)
    return [row[0][1] for row in result["data"]]


def _confirm(opts: argparse.Namespace, action: str, names: list[str]) -> bool:
    multi = (opts.multi_mode or "instance") != "instance" or len(names) > 1
    if not multi or opts.force_multiple:
        return True
    if not names:
        sys.stderr.write("Selection resulted in no instances\n")
        return False
    return base.ask_user("The %s will operate on %d instances.\n%s\nDo you want to continue?" %
                         (action, len(names), "\n".join("  %s" % n for n in names)))


def _run_multi(opts: argparse.Namespace, names: list[str], make_op) -> int:
    """One job per instance; with --submit print the job ids, else wait for each."""
    client = base.get_client()
    if len(names) == 1:
        base.submit_or_send([make_op(names[0])], opts, client)
        return constants.EXIT_SUCCESS
    jobs = [(name, base.submit_opcodes([make_op(name)], opts, client)) for name in names]
    if opts.submit:
        for _name, job_id in jobs:
            sys.stderr.write("JobID: %d\n" % job_id)
        return constants.EXIT_SUCCESS
    failed = False
    for name, job_id in jobs:
        try:
            base.poll_job(job_id, client)
        except errors.GenericError as err:
            from corral.client import errfmt
            sys.stderr.write("%s: %s\n" % (name, errfmt.format_error(err)[1]))
            failed = True
    return constants.EXIT_FAILURE if failed else constants.EXIT_SUCCESS


def startup(opts: argparse.Namespace, args: list[str]) -> int:
    names = _select(opts, args)
    if not _confirm(opts, "startup", names):
        return constants.EXIT_FAILURE
    hvp = _kv(opts.hvparams, "-H")
    bep = _kv(opts.beparams, "-B")
    return _run_multi(opts, names, lambda n: opcodes.OpInstanceStartup(
        instance_name=n, force=opts.force, ignore_offline_nodes=opts.ignore_offline,
        hvparams=hvp, beparams=bep, no_remember=opts.no_remember,
        startup_paused=opts.startup_paused))


def shutdown(opts: argparse.Namespace, args: list[str]) -> int:
    names = _select(opts, args)
    if not _confirm(opts, "shutdown", names):
        return constants.EXIT_FAILURE
    return _run_multi(opts, names, lambda n: opcodes.OpInstanceShutdown(
        instance_name=n, timeout=opts.timeout, ignore_offline_nodes=opts.ignore_offline,
        no_remember=opts.no_remember, force=opts.force))


def reboot(opts: argparse.Namespace, args: list[str]) -> int:
    names = _select(opts, args)
    if not _confirm(opts, "reboot", names):
        return constants.EXIT_FAILURE
    return _run_multi(opts, names, lambda n: opcodes.OpInstanceReboot(
        instance_name=n, reboot_type=opts.reboot_type,
        ignore_secondaries=opts.ignore_secondaries,
        shutdown_timeout=opts.shutdown_timeout))


# ---- console --------------------------------------------------------------------------

def console_command(console: dict, local: bool) -> list[str] | None:
    """The argv that attaches to ``console`` (None for kinds without one).

    On the console's own node the unix socket is opened directly with socat;
    elsewhere through ssh to the node (spec/rapi.md §9.7 ssh object).
    """
    if console.get("kind") != "ssh":
        return None
    command = list(console.get("command") or [])
    if local:
        return command
    return ["ssh", "-oEscapeChar=none", "-oBatchMode=yes", "-oCheckHostIp=no",
            "-oUserKnownHostsFile=/dev/null", "-oStrictHostKeyChecking=no", "-t",
            "-p", str(console.get("port", 22)),
            "%s@%s" % (console.get("user", "root"), console["host"]), shlex.join(command)]


def console(opts: argparse.Namespace, args: list[str]) -> int:
    result = base.submit_or_send([opcodes.OpInstanceConsole(instance_name=args[0])],
                                 argparse.Namespace())
    con = result[0]
    kind = con.get("kind")
    if kind == "msg":
        sys.stderr.write("Console not available: %s\n" % con.get("message"))
        return constants.EXIT_FAILURE
    if kind in ("vnc", "spice"):
        print("Instance %s has %s listening on %s:%s%s" % (
            con["instance"], kind.upper(), con["host"], con["port"],
            (" (display %s), URL <vnc://%s:%s/>" % (con.get("display"), con["host"],
                                                   con["port"]) if kind == "vnc" else "")))
        return constants.EXIT_SUCCESS
    from corral import netutils
    argv = console_command(con, con.get("host") == netutils.get_hostname())
    if opts.show_command:
        print(shlex.join(argv))
        return constants.EXIT_SUCCESS
    sys.stdout.flush()
    os.execvp(argv[0], argv)
    return constants.EXIT_FAILURE  # not reached


# ---- info, list, tags ---------------------------------------------------------------------

def list_instances(opts: argparse.Namespace, args: list[str]) -> int:
    return base.generic_list("instance", opts, args, query_fields.DEFAULT_INSTANCE_FIELDS)


def list_fields(opts: argparse.Namespace, args: list[str]) -> int:
    return base.list_fields("instance", opts, args)


def _params_lines(indent: str, custom: dict, actual: dict) -> list[str]:
    """Ganeti's parameter dump: set values plainly, inherited ones as ``default (v)``."""
    return ["%s- %s: %s" % (indent, key, actual[key] if key in custom
                             else "default (%s)" % (actual[key],)) for key in sorted(actual)]


def _size(mib: Any) -> str:
    from corral.client import output
    return output.format_unit(mib, "h") if isinstance(mib, (int, float)) else str(mib)


def _nic_lines(nics: list) -> list[str]:
    lines = ["    - NICs:"]
    for idx, (name, uuid, ip, mac, nicparams, network, _netname) in enumerate(nics):
        lines += ["      - nic/%d: " % idx, "        MAC: %s" % mac, "        IP: %s" % ip,
                  "        mode: %s" % nicparams.get("mode"),
                  "        link: %s" % nicparams.get("link"),
                  "        vlan: %s" % nicparams.get("vlan", ""),
                  "        network: %s" % network, "        UUID: %s" % uuid,
                  "        name: %s" % name]
    return lines


def _sync_text(status: dict) -> str:
    """Ganeti's wording for a mirrored device's state ("" when none was reported)."""
    if "is_degraded" not in status:
        return ""
    if status.get("sync_percent") is not None:
        eta = status.get("estimated_time")
        text = " %.2f%% done, %s" % (status["sync_percent"], "%d estimated seconds remaining"
                                      % eta if eta is not None else "no time estimate")
    elif status.get("is_degraded"):
        text = " *DEGRADED*"
    else:
        text = " in sync"
    ldisk = status.get("ldisk_status")
    return text + (", status ok" if ldisk == "okay" else ", status *%s*" % (ldisk or "unknown"))


def _disk_lines(disks: list, static: bool) -> list[str]:
    lines = ["  Disks:"]
    for disk in disks:
        lines.append("    - %s: %s, size %s" % (disk["iv_name"], disk["dev_type"],
                                               _size(disk["size"])))
        lines.append("      access mode: %s" % disk["mode"])
        lines.append("      logical_id: %s" % " ".join(str(x) for x in disk["logical_id"]))
        if not static and disk.get("pstatus"):
            lines.append("      on primary: %s%s" % (disk["pstatus"].get("dev_path") or "N/A",
                                                    _sync_text(disk["pstatus"])))
        if not static and disk.get("sstatus"):
            lines.append("      on secondary: %s%s" % (disk["sstatus"].get("dev_path") or "N/A",
                                                      _sync_text(disk["sstatus"])))
        lines += ["      name: %s" % disk.get("name"), "      UUID: %s" % disk.get("uuid")]
    return lines


def format_instance(d: dict, static: bool) -> list[str]:
    """``gnt-instance info`` lines for one OP_INSTANCE_QUERY_DATA entry."""
    from corral.client import output
    state = "configured to be %s" % d["config_state"]
    if not static:
        state += ", actual state is %s" % d["run_state"]
    lines = ["Instance name: %s" % d["name"], "UUID: %s" % d["uuid"],
             "Serial number: %s" % d["serial_no"],
             "Creation time: %s" % output.format_timestamp(d["ctime"]),
             "Modification time: %s" % output.format_timestamp(d["mtime"]),
             "State: %s" % state, "  Nodes:", "    - primary: %s" % d["pnode"],
             "      group: %s (UUID %s)" % (d["pnode_group_name"], d["pnode_group_uuid"]),
             "    - secondaries: %s" % ", ".join(d["snodes"]),
             "  Operating system: %s" % d["os"], "  Operating system parameters:"]
    lines += _params_lines("    ", d["os_instance"], d["os_actual"])
    lines += ["  Allocated network port: %s" % d["network_port"],
              "  Hypervisor: %s" % d["hypervisor"]]
    lines += _params_lines("    ", d["hv_instance"], d["hv_actual"])
    lines += ["  Hardware:"]
    lines += _params_lines("    ", d["be_instance"], d["be_actual"])
    lines += _nic_lines(d["nics"])
    lines += ["  Disk template: %s" % d["disk_template"]]
    lines += _disk_lines(d["disks"], static)
    return lines


def show_info(opts: argparse.Namespace, args: list[str]) -> int:
    if not args and not opts.show_all:
        raise errors.OpPrereqError("No instance selected. Please pass in --all if you want to"
                                   " query info for all instances.", errors.ECODE_INVAL)
    if args and opts.show_all:
        raise errors.OpPrereqError("Cannot use --all if you specify instance names.",
                                   errors.ECODE_INVAL)
    op = opcodes.OpInstanceQueryData(instances=list(args), static=opts.static,
                                     use_locking=not opts.static)
    result = base.submit_or_send([op], argparse.Namespace())
    data = result[0]
    for name in sorted(data):
        for line in format_instance(data[name], opts.static):
            print(line)
    return constants.EXIT_SUCCESS


def list_tags(opts, args):
    return base.list_tags(constants.TAG_INSTANCE, args[0], opts)


def add_tags(opts, args):
    return base.add_tags(constants.TAG_INSTANCE, args[0], opts, args[1:])


def remove_tags(opts, args):
    return base.remove_tags(constants.TAG_INSTANCE, args[0], opts, args[1:])


# ---- mobility: migrate, failover, move (spec/cli.md §4) ----------------------------------

_MIGRATE_MSG = ("Instance %s will be migrated. Note that migration might impact the instance"
                " if anything goes wrong (e.g. due to bugs in the hypervisor). Continue?")
_CLEANUP_MSG = ("Instance %s will be recovered from a failed migration. Note that the"
                " migration procedure (including cleanup) might impact the instance if"
                " anything goes wrong (e.g. due to bugs in the hypervisor). Continue?")
_FAILOVER_MSG = ("Failover will happen to image %s. This requires a shutdown of the instance."
                 " Continue?")
_MOVE_MSG = "Instance %s will be moved. This requires a shutdown of the instance. Continue?"


def migrate(opts: argparse.Namespace, args: list[str]) -> int:
    if not opts.force and not base.ask_user((_CLEANUP_MSG if opts.cleanup else _MIGRATE_MSG)
                                            % args[0]):
        return constants.EXIT_FAILURE
    if not opts.live and opts.migration_mode is not None:
        raise errors.OpPrereqError("Only one of the --non-live and --migration-mode options can"
                                   " be passed", errors.ECODE_INVAL)
    mode = "non-live" if not opts.live else opts.migration_mode
    op = opcodes.OpInstanceMigrate(
        instance_name=args[0], mode=mode, cleanup=opts.cleanup, iallocator=opts.iallocator,
        target_node=opts.dst_node, allow_failover=opts.allow_failover,
        allow_runtime_changes=opts.allow_runtime_chgs, ignore_ipolicy=opts.ignore_ipolicy,
        ignore_hvversions=opts.ignore_hvversions)
    base.submit_or_send([op], opts)
    return constants.EXIT_SUCCESS


def failover(opts: argparse.Namespace, args: list[str]) -> int:
    if not opts.force:
        _query_names([args[0]])
        if not base.ask_user(_FAILOVER_MSG % args[0]):
            return constants.EXIT_FAILURE
    op = opcodes.OpInstanceFailover(
        instance_name=args[0], ignore_consistency=opts.ignore_consistency,
        shutdown_timeout=opts.shutdown_timeout, iallocator=opts.iallocator,
        target_node=opts.dst_node, cleanup=opts.cleanup, ignore_ipolicy=opts.ignore_ipolicy)
    base.submit_or_send([op], opts)
    return constants.EXIT_SUCCESS


def move(opts: argparse.Namespace, args: list[str]) -> int:
    if not opts.dst_node:
        raise errors.OpPrereqError("Target node (-n) is required for move", errors.ECODE_INVAL)
    if not opts.force and not base.ask_user(_MOVE_MSG % args[0]):
        return constants.EXIT_FAILURE
    op = opcodes.OpInstanceMove(
        instance_name=args[0], target_node=opts.dst_node, compress=opts.compress,
        shutdown_timeout=opts.shutdown_timeout, ignore_consistency=opts.ignore_consistency,
        ignore_ipolicy=opts.ignore_ipolicy)
    base.submit_or_send([op], opts)
    return constants.EXIT_SUCCESS


# ---- allocation: batch-create, change-group ------------------------------------------------

def _wait_submitted(result: list | None, client: Any) -> int | None:
    """Number of failed jobs among those an opcode submitted; None with --submit."""
    if result is None:
        return None
    jobs = (result[0] or {}).get("jobs", [])  # none with --dry-run
    return sum(1 for job in jobs if not base.wait_for_jobs([job], client))


def _batch_ops(path: str) -> list[dict]:
    """OP_INSTANCE_CREATE dicts from a batch file: a JSON list, or {"instances": [...]}."""
    from corral import serializer
    try:
        with open(path) as fh:
            data = serializer.loads(fh.read())
    except (OSError, ValueError) as err:
        raise errors.OpPrereqError("Can't parse the instance definition file: %s" % err,
                                   errors.ECODE_INVAL) from None
    if isinstance(data, dict):
        data = data.get("instances")
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise errors.OpPrereqError("The instance definition file is not a list of instance"
                                   " dicts (or {\"instances\": [...]})", errors.ECODE_INVAL)
    known = {p.name for p in opcodes.OpInstanceCreate.all_params()}
    ops = []
    for idx, inst in enumerate(data):
        unknown = sorted(set(inst) - known - {"OP_ID"})
        if unknown:
            raise errors.OpPrereqError("Unknown fields in definition %s: %s" %
                                       (idx, ", ".join(unknown)), errors.ECODE_INVAL)
        op = opcodes.from_dict(dict(inst, OP_ID="OP_INSTANCE_CREATE",
                                    mode=inst.get("mode", "create")))
        ops.append({k: v for k, v in op.to_dict().items() if k != "OP_ID"})
    return ops


def batch_create(opts: argparse.Namespace, args: list[str]) -> int:
    client = base.get_client()
    op = opcodes.OpInstanceMultiAlloc(iallocator=opts.iallocator, instances=_batch_ops(args[0]))
    bad = _wait_submitted(base.submit_or_send([op], opts, client), client)
    if bad is None:
        return constants.EXIT_SUCCESS
    if bad == 0:
        print("All instances created successfully.")
        return constants.EXIT_SUCCESS
    print("There were %s errors during the creation." % bad)
    return constants.EXIT_FAILURE


def change_group(opts: argparse.Namespace, args: list[str]) -> int:
    client = base.get_client()
    op = opcodes.OpInstanceChangeGroup(instance_name=args[0], iallocator=opts.iallocator,
                                       target_groups=opts.to, early_release=opts.early_release)
    bad = _wait_submitted(base.submit_or_send([op], opts, client), client)
    if bad is None:
        return constants.EXIT_SUCCESS
    if bad == 0:
        print("Instance '%s' changed group successfully." % args[0])
        return constants.EXIT_SUCCESS
    print("There were %s errors while changing group of instance '%s'." % (bad, args[0]))
    return constants.EXIT_FAILURE


# ---- command table ------------------------------------------------------------------------

_NAME_CHECK_OPTS = [
    opt("--no-ip-check", dest="ip_check", action="store_false", default=True,
        help="Don't check that the instance's IP is alive"),
    opt("--no-name-check", dest="name_check", action="store_false", default=True,
        help="Don't check that the instance's name is resolvable"),
]
_OS_PARAM_OPTS = [
    opt("-O", "--os-parameters", dest="osparams", default=None,
        help="OS parameters: key=val,..."),
    opt("--os-parameters-private", dest="osparams_private", default=None,
        help="Private OS parameters (kept out of logs): key=val,..."),
    opt("--os-parameters-secret", dest="osparams_secret", default=None,
        help="Secret OS parameters (used once, never stored): key=val,..."),
]
_FORCE_VARIANT_OPT = opt("--force-variant", action="store_true", default=False,
                         help="Force an unknown OS variant")
_SHUTDOWN_TIMEOUT_OPT = opt("--shutdown-timeout", type=int, default=120,
                            help="Maximum seconds to wait for the instance to shut down")
_WAIT_SYNC_OPT = opt("--no-wait-for-sync", dest="wait_for_sync", action="store_false",
                     default=True, help="Don't wait for the disks to synchronise")
_SELECT_OPTS = [
    opt("--instance", dest="multi_mode", action="store_const", const="instance",
        default=None, help="Arguments are instance names (default)"),
    opt("--node", dest="multi_mode", action="store_const", const="node",
        help="Arguments are node names: their primary and secondary instances"),
    opt("--primary", dest="multi_mode", action="store_const", const="primary",
        help="Arguments are node names: their primary instances"),
    opt("--secondary", dest="multi_mode", action="store_const", const="secondary",
        help="Arguments are node names: their secondary instances"),
    opt("--all", dest="multi_mode", action="store_const", const="all",
        help="Act on all instances of the cluster"),
    opt("--force-multiple", action="store_true", default=False,
        help="Do not ask for confirmation when acting on several instances"),
    opt("--ignore-offline", action="store_true", default=False,
        help="Ignore an offline primary node (only mark the instance state)"),
    opt("--no-remember", action="store_true", default=False,
        help="Do not remember the state change (the watcher will undo it)"),
]

_ADD_OPTS = base.SUBMIT_OPTS + _NAME_CHECK_OPTS + _OS_PARAM_OPTS + [
    _FORCE_VARIANT_OPT, _WAIT_SYNC_OPT,
    opt("-t", "--disk-template", default=None, choices=sorted(constants.DISK_TEMPLATES),
        help="Disk template (diskless, file, sharedfile, blockdev, plain, ...)"),
    opt("--disk", dest="disks", action="append", default=None,
        help="Disk: N:size=SIZE[,mode=ro|rw][,name=NAME][,adopt=PATH][,vg=VG] (repeat)"),
    opt("-s", "--os-size", dest="sd_size", default=None,
        help="Size of the single disk (shorthand for --disk 0:size=SIZE)"),
    opt("--net", dest="nics", action="append", default=None,
        help="NIC: N:[mac=][,ip=][,mode=][,link=][,name=][,vlan=] (repeat)"),
    opt("--no-nics", action="store_true", default=False, help="Create an instance without NICs"),
    opt("-o", "--os-type", dest="os", default=None, help="OS to install: NAME[+VARIANT]"),
    opt("-n", "--node", default=None, help="Primary node (PNODE[:SNODE])"),
    opt("-I", "--iallocator", default=None,
        help="Instance allocator choosing the nodes when -n is not given ('.' or none: the"
             " cluster's default_iallocator, the built-in 'builtin' while unset)"),
    opt("-g", "--node-group", dest="nodegroup", default=None, help="Node group to allocate in"),
    opt("-H", "--hypervisor-parameters", dest="hypervisor", default=None,
        help="Hypervisor and its parameters: HV[:key=val,...]"),
    opt("-B", "--backend-parameters", dest="beparams", default=None,
        help="Backend parameters: maxmem, minmem, vcpus, auto_balance, always_failover,"
             " spindle_use"),
    opt("--no-start", dest="start", action="store_false", default=True,
        help="Don't start the instance after creation"),
    opt("--no-install", action="store_true", default=False,
        help="Don't install the OS (leave the disks empty)"),
    opt("--no-conflicts-check", dest="conflicts_check", action="store_false", default=True,
        help="Don't check for IP conflicts"),
    opt("--file-storage-dir", default=None,
        help="Subdirectory of the cluster file storage dir for the disk files"),
    opt("--file-driver", default=None, choices=["loop", "blktap", "blktap2"],
        help="Driver for file disks"),
    opt("--tags", default=None, help="Comma separated tags for the new instance"),
    opt("--identify-defaults", action="store_true", default=False,
        help="Store parameters equal to the cluster defaults as defaults"),
    opt("--ignore-ipolicy", action="store_true", default=False,
        help="Ignore the instance policy"),
    opt("--opportunistic-locking", action="store_true", default=False,
        help="Lock only the nodes that are free"),
    opt("--forthcoming", action="store_true", default=False,
        help="Only reserve the resources of the instance"),
    opt("--commit", action="store_true", default=False,
        help="Create a forthcoming instance for real"),
]
# The options of "add"; gnt-backup import takes them too, except ADD_ONLY_FLAGS.
CREATE_OPTS = _ADD_OPTS
ADD_ONLY_FLAGS = ("--no-start", "--no-install", "--forthcoming", "--commit")

_MODIFY_OPTS = base.SUBMIT_OPTS + _OS_PARAM_OPTS + [
    base.FORCE_OPT, _FORCE_VARIANT_OPT, _WAIT_SYNC_OPT,
    opt("-B", "--backend-parameters", dest="beparams", default=None,
        help="Backend parameters: key=val,... (value 'default' resets)"),
    opt("-H", "--hypervisor-parameters", dest="hvparams", default=None,
        help="Hypervisor parameters: key=val,... (value 'default' resets)"),
    opt("--disk", dest="disks", action="append", default=None,
        help="Disk change: add:size=S | N:remove | N:modify,mode=ro (repeat)"),
    opt("--net", dest="nics", action="append", default=None,
        help="NIC change: add:link=br0 | N:remove | N:modify,ip=... (repeat)"),
    opt("-t", "--disk-template", default=None, choices=sorted(constants.DISK_TEMPLATES),
        help="Convert to this disk template"),
    opt("-n", "--node", default=None, help="Secondary node for a disk template conversion"),
    opt("-o", "--os-type", dest="os", default=None, help="Change the OS name"),
    opt("--offline", action="store_true", default=False, help="Mark the instance offline"),
    opt("--online", action="store_true", default=False, help="Mark the instance online"),
    opt("-m", "--runtime-memory", dest="runtime_mem", default=None,
        help="Change the memory of the running instance (ballooning)"),
    opt("--new-primary", default=None, help="Change the primary node"),
    opt("--hotplug", action="store_true", default=False, help="Hotplug devices"),
    opt("--hotplug-if-possible", action="store_true", default=False,
        help="Hotplug devices where possible"),
]

_MOBILITY_OPTS = [
    base.FORCE_OPT,
    opt("-n", "--target-node", dest="dst_node", default=None,
        help="Target node (for shared-storage and local-disk templates)"),
    opt("-I", "--iallocator", default=None, help="Instance allocator to choose the target"),
    opt("--ignore-ipolicy", action="store_true", default=False,
        help="Ignore the instance policy"),
]

COMMANDS = {
    "add": Command(add, "<instance>", _ADD_OPTS, "Create and add a new instance", 1, 1),
    "remove": Command(remove, "<instance>", base.SUBMIT_OPTS + [
        base.FORCE_OPT, _SHUTDOWN_TIMEOUT_OPT,
        opt("--ignore-failures", action="store_true", default=False,
            help="Remove the instance from the configuration even if its shutdown or the"
                 " removal of its disks fails")],
        "Shut down an instance and remove it with all its data", 1, 1),
    "startup": Command(startup, "<instance>...", base.SUBMIT_OPTS + _SELECT_OPTS + [
        base.FORCE_OPT,
        opt("-H", "--hypervisor-parameters", dest="hvparams", default=None,
            help="Temporary hypervisor parameters for this start only"),
        opt("-B", "--backend-parameters", dest="beparams", default=None,
            help="Temporary backend parameters for this start only"),
        opt("--paused", dest="startup_paused", action="store_true", default=False,
            help="Start the instance paused")],
        "Start instances", 0, None, aliases=["start"]),
    "shutdown": Command(shutdown, "<instance>...", base.SUBMIT_OPTS + _SELECT_OPTS + [
        base.FORCE_OPT,
        opt("--timeout", type=int, default=120,
            help="Seconds to wait for a clean shutdown before killing the instance")],
        "Stop instances", 0, None, aliases=["stop"]),
    "reboot": Command(reboot, "<instance>...", base.SUBMIT_OPTS + _SELECT_OPTS + [
        _SHUTDOWN_TIMEOUT_OPT,
        opt("-t", "--type", dest="reboot_type", default="hard", choices=["soft", "hard", "full"],
            help="Reboot type: soft (guest restart), hard (restart the VM, default), full"
                 " (stop and start)"),
        opt("--ignore-secondaries", action="store_true", default=False,
            help="Ignore errors from secondary nodes")],
        "Reboot instances", 0, None),
    "info": Command(show_info, "[<instance>...]", [
        opt("-s", "--static", action="store_true", default=False,
            help="Only show configuration data, not the runtime state"),
        opt("--all", dest="show_all", action="store_true", default=False,
            help="Show information about all instances")],
        "Show information about instances", 0, None, aliases=["show"]),
    "list": Command(list_instances, "[<instance>...]", base.LIST_OPTS,
                    "List instances and their properties", 0, None),
    "list-fields": Command(list_fields, "[<field>...]", [base.NOHDR_OPT, base.SEP_OPT],
                           "List the fields available for 'list'", 0, None),
    "modify": Command(modify, "<instance>", _MODIFY_OPTS,
                      "Change the parameters, disks or NICs of an instance", 1, 1),
    "rename": Command(rename, "<instance> <new_name>", base.SUBMIT_OPTS + _NAME_CHECK_OPTS,
                      "Rename a stopped instance", 2, 2),
    "reinstall": Command(reinstall, "<instance>", base.SUBMIT_OPTS + _OS_PARAM_OPTS + [
        base.FORCE_OPT, _FORCE_VARIANT_OPT,
        opt("-o", "--os-type", dest="os", default=None, help="Install this OS instead")],
        "Reinstall the OS of a stopped instance (all data is lost)", 1, 1),
    "activate-disks": Command(activate_disks, "<instance>", base.SUBMIT_OPTS + [
        opt("--ignore-size", action="store_true", default=False,
            help="Ignore the recorded disk sizes"),
        opt("--wait-for-sync", action="store_true", default=False,
            help="Wait for the disks to synchronise")],
        "Activate the disks of an instance; prints node:disk:device lines", 1, 1),
    "deactivate-disks": Command(deactivate_disks, "<instance>", base.SUBMIT_OPTS + [
        base.FORCE_OPT], "Deactivate the disks of a stopped instance", 1, 1),
    "grow-disk": Command(grow_disk, "<instance> <disk> <amount>", base.SUBMIT_OPTS + [
        _WAIT_SYNC_OPT,
        opt("--absolute", action="store_true", default=False,
            help="The amount is the new size, not the increase")],
        "Grow a disk of an instance", 3, 3),
    "recreate-disks": Command(recreate_disks, "<instance>", base.SUBMIT_OPTS + [
        opt("--disk", dest="disks", action="append", default=None,
            help="Disk to recreate: N[:size=SIZE] (repeat; default all)"),
        opt("-n", "--node", default=None, help="New node(s) for the disks (colon separated)"),
        opt("-I", "--iallocator", default=None, help="Instance allocator for the new nodes")],
        "Recreate missing disks of a stopped instance", 1, 1),
    "replace-disks": Command(replace_disks, "<instance>", base.SUBMIT_OPTS + [
        opt("-p", "--on-primary", action="store_true", default=False,
            help="Replace the disks on the primary node (DRBD)"),
        opt("-s", "--on-secondary", action="store_true", default=False,
            help="Replace the disks on the secondary node (DRBD)"),
        opt("-a", "--auto", action="store_true", default=False,
            help="Replace the disks on whichever node reports them faulty"),
        opt("-n", "--new-secondary", dest="dst_node", default=None,
            help="Move the secondary to this node (all disks)"),
        opt("-I", "--iallocator", default=None,
            help="Choose the new secondary with this instance allocator"),
        opt("--disks", default=None,
            help="Comma separated disk indices to replace (default all)"),
        opt("--early-release", action="store_true", default=False,
            help="Release the locks of the old nodes before waiting for the sync"),
        opt("--ignore-ipolicy", action="store_true", default=False,
            help="Ignore the instance policy")],
        "Replace the disks of a DRBD instance (on a node, or onto a new secondary)", 1, 1),
    "console": Command(console, "<instance>", [
        opt("--show-cmd", dest="show_command", action="store_true", default=False,
            help="Print the command that attaches to the console instead of running it")],
        "Connect to the serial console of an instance", 1, 1),
    "list-tags": Command(list_tags, "<instance>", [], "List the tags of an instance", 1, 1),
    "add-tags": Command(add_tags, "<instance> <tag>...", base.SUBMIT_OPTS + [base.TAG_SRC_OPT],
                        "Add tags to an instance", 1, None),
    "migrate": Command(migrate, "<instance>", base.SUBMIT_OPTS + _MOBILITY_OPTS + [
        opt("--non-live", dest="live", action="store_false", default=True,
            help="Do a non-live migration (this usually means freeze the instance, save the"
                 " state, transfer and only then resume running on the secondary node)"),
        opt("--migration-mode", default=None, choices=["live", "non-live"],
            help="Override the default migration mode (hypervisor parameter"
                 " migration_mode)"),
        opt("--cleanup", action="store_true", default=False,
            help="Instead of performing the migration, try to recover from a failed migration:"
                 " find where the instance really runs and fix the configuration"),
        opt("--allow-failover", action="store_true", default=False,
            help="If migration is not possible fall back to failover"),
        opt("--no-runtime-changes", dest="allow_runtime_chgs", action="store_false",
            default=True, help="Don't allow runtime changes of the instance (memory"
                               " ballooning) during the migration"),
        opt("--ignore-hvversions", action="store_true", default=False,
            help="Ignore differences between the hypervisor versions of source and target")],
        "Migrate an instance to another node without stopping it (live migration); local"
        " disks (file) travel along with -n", 1, 1),
    "failover": Command(failover, "<instance>", base.SUBMIT_OPTS + _MOBILITY_OPTS + [
        _SHUTDOWN_TIMEOUT_OPT,
        opt("--ignore-consistency", action="store_true", default=False,
            help="Ignore the consistency of the disks and a failed shutdown on the source"
                 " (the primary node is down)"),
        opt("--cleanup", action="store_true", default=False,
            help="Recover from a failed migration or failover: find where the instance"
                 " really runs and fix the configuration")],
        "Stop an instance and start it on another node (its secondary, or -n for shared"
        " storage)", 1, 1),
    "move": Command(move, "<instance>", base.SUBMIT_OPTS + [
        base.FORCE_OPT, _SHUTDOWN_TIMEOUT_OPT,
        opt("-n", "--target-node", dest="dst_node", default=None,
            help="Node to move the instance to (required)"),
        opt("--ignore-consistency", action="store_true", default=False,
            help="Continue even if the instance cannot be shut down on the source"),
        opt("--compress", default="none", choices=["none", "gzip", "gzip-fast", "gzip-slow"],
            help="Compression of the disk data between the nodes (default none)"),
        opt("--ignore-ipolicy", action="store_true", default=False,
            help="Ignore the instance policy")],
        "Move an instance with local disks to another node (stops it, copies the disks over"
        " an encrypted stream between the node daemons)", 1, 1),
    "remove-tags": Command(remove_tags, "<instance> <tag>...",
                           base.SUBMIT_OPTS + [base.TAG_SRC_OPT],
                           "Remove tags from an instance", 1, None),
    "batch-create": Command(batch_create, "<instances_file.json>", base.SUBMIT_OPTS + [
        opt("-I", "--iallocator", default=None,
            help="Instance allocator placing the instances that name no nodes (default: the"
                 " cluster's)")],
        "Create many instances from a JSON file (a list of instance creation parameter"
        " dicts, or {\"instances\": [...]}), placed by one allocator run", 1, 1),
    "change-group": Command(change_group, "<instance>", base.SUBMIT_OPTS + [
        opt("--to", action="append", default=None, metavar="GROUP",
            help="Target group (repeatable; default: every other group)"),
        opt("-I", "--iallocator", default=None,
            help="Instance allocator choosing the new nodes (default: the cluster's)"),
        opt("--early-release", action="store_true", default=False,
            help="Release the locks on the old secondaries early (replace-disks)")],
        "Move an instance to another node group", 1, 1),
}


def main(argv: list[str] | None = None) -> int:
    return base.generic_main("gnt-instance", COMMANDS, argv, "Instance administration for"
                             " Corral", env_override={"list": "GNT_INSTANCE_LIST"})
