"""gnt-node: node administration (spec/cli.md §3)."""

import argparse
import sys

from corral import constants, errors, opcodes
from corral.client import base, params, query_fields
from corral.client.base import Command, opt


def _bool_opt(value: str | None) -> bool | None:
    return None if value is None else params.parse_bool(value)


def add(opts: argparse.Namespace, args: list[str]) -> int:
    op = opcodes.OpNodeAdd(
        node_name=args[0], secondary_ip=opts.secondary_ip, readd=opts.readd, group=opts.nodegroup,
        master_capable=_bool_opt(opts.master_capable), vm_capable=_bool_opt(opts.vm_capable),
        ndparams=params.parse_key_value_list(opts.ndparams, "--node-parameters")
        if opts.ndparams else None,
        node_setup=opts.node_setup, ssh_key_check=opts.ssh_key_check)
    base.submit_or_send([op], opts)
    return constants.EXIT_SUCCESS


def remove(opts: argparse.Namespace, args: list[str]) -> int:
    base.submit_or_send([opcodes.OpNodeRemove(node_name=args[0])], opts)
    return constants.EXIT_SUCCESS


def list_nodes(opts: argparse.Namespace, args: list[str]) -> int:
    return base.generic_list("node", opts, args, query_fields.DEFAULT_NODE_FIELDS)


def list_fields(opts: argparse.Namespace, args: list[str]) -> int:
    return base.list_fields("node", opts, args)


_INFO_FIELDS = ["name", "pip", "sip", "master_candidate", "drained", "offline",
                "master_capable", "vm_capable", "pinst_list", "sinst_list", "ndparams", "group",
                "role", "tags", "hv_problems"]


def _print_dict(value: dict, indent: str) -> None:
    for key in sorted(value):
        print("%s%s: %s" % (indent, key, value[key]))


def show_info(opts: argparse.Namespace, args: list[str]) -> int:
    result = base.get_client().query("node", _INFO_FIELDS, args)
    for row in result["data"]:
        v = dict(zip(_INFO_FIELDS, (cell[1] for cell in row)))
        print("Node name: %s" % v["name"])
        print("  primary ip: %s" % v["pip"])
        print("  secondary ip: %s" % v["sip"])
        print("  master candidate: %s" % v["master_candidate"])
        print("  drained: %s" % v["drained"])
        print("  offline: %s" % v["offline"])
        print("  master_capable: %s" % v["master_capable"])
        print("  vm_capable: %s" % v["vm_capable"])
        print("  role: %s" % v["role"])
        print("  node group: %s" % v["group"])
        print("  tags: %s" % (", ".join(sorted(v["tags"] or [])) or "(none)"))
        if v["vm_capable"]:
            for kind, key in (("primary", "pinst_list"), ("secondary", "sinst_list")):
                if v[key]:
                    print("  %s for instances:" % kind)
                    for name in v[key]:
                        print("    - %s" % name)
                else:
                    print("  %s for no instances" % kind)
        print("  node parameters:")
        _print_dict(v["ndparams"] or {}, "    ")
        if v["hv_problems"]:
            print("  hypervisor problems:")
            for problem in v["hv_problems"]:
                print("    - %s" % problem)
    return constants.EXIT_SUCCESS


def modify(opts: argparse.Namespace, args: list[str]) -> int:
    kwargs = {
        "master_candidate": _bool_opt(opts.master_candidate), "drained": _bool_opt(opts.drained),
        "offline": _bool_opt(opts.offline), "master_capable": _bool_opt(opts.master_capable),
        "vm_capable": _bool_opt(opts.vm_capable), "powered": _bool_opt(opts.node_powered),
        "secondary_ip": opts.secondary_ip,
        "ndparams": params.parse_key_value_list(opts.ndparams, "--node-parameters")
        if opts.ndparams else None,
    }
    if all(v is None for v in kwargs.values()):
        sys.stderr.write("Please give at least one of the parameters.\n")
        return constants.EXIT_FAILURE
    op = opcodes.OpNodeSetParams(node_name=args[0], force=opts.force,
                                 auto_promote=opts.auto_promote, **kwargs)
    result = base.submit_or_send([op], opts)
    if result and result[0]:
        print("Modified node %s" % args[0])
        for param, value in result[0]:
            print(" - %-10s -> %s" % (param, value))
    return constants.EXIT_SUCCESS


def _primary_instances(node: str) -> list[str]:
    result = base.get_client().query("node", ["name", "pinst_list"], [node])
    rows = result["data"]
    if not rows:
        raise errors.OpPrereqError("Node '%s' not known" % node, errors.ECODE_NOENT)
    return sorted(rows[0][1][1] or [])


def migrate(opts: argparse.Namespace, args: list[str]) -> int:
    """One migration job per primary instance (OP_NODE_MIGRATE), then wait for them."""
    node = args[0]
    pinst = _primary_instances(node)
    if not pinst:
        sys.stderr.write("No primary instances on node %s, exiting.\n" % node)
        return constants.EXIT_SUCCESS
    if not opts.force and not base.ask_user("Migrate instance(s) %s?" %
                                            ",".join("'%s'" % n for n in pinst)):
        return constants.EXIT_CONFIRMATION
    if not opts.live and opts.migration_mode is not None:
        raise errors.OpPrereqError("Only one of the --non-live and --migration-mode options can"
                                   " be passed", errors.ECODE_INVAL)
    mode = "non-live" if not opts.live else opts.migration_mode
    op = opcodes.OpNodeMigrate(node_name=node, mode=mode, iallocator=opts.iallocator,
                               target_node=opts.dst_node,
                               allow_runtime_changes=opts.allow_runtime_chgs,
                               ignore_ipolicy=opts.ignore_ipolicy)
    client = base.get_client()
    result = base.submit_or_send([op], opts, client)
    if result is None:
        return constants.EXIT_SUCCESS
    jobs = result[0]["jobs"]
    ok = base.wait_for_jobs(jobs, client)
    if ok:
        print("All instances migrated successfully.")
        return constants.EXIT_SUCCESS
    print("There were errors during the node migration.")
    return constants.EXIT_FAILURE


def failover(opts: argparse.Namespace, args: list[str]) -> int:
    """Client-side loop (as Ganeti): one OP_INSTANCE_FAILOVER job per primary instance."""
    node = args[0]
    pinst = _primary_instances(node)
    if not pinst:
        sys.stderr.write("No primary instances on node %s, exiting.\n" % node)
        return constants.EXIT_SUCCESS
    if not opts.force and not base.ask_user("Fail over instance(s) %s?" %
                                            ",".join("'%s'" % n for n in pinst)):
        return 2
    client = base.get_client()
    ops = [opcodes.OpInstanceFailover(instance_name=name,
                                      ignore_consistency=opts.ignore_consistency,
                                      iallocator=opts.iallocator) for name in pinst]
    job_ids = [base.submit_opcodes([op], opts, client) for op in ops]
    if opts.submit:
        for job_id in job_ids:
            sys.stderr.write("JobID: %d\n" % job_id)
        return constants.EXIT_SUCCESS
    bad = 0
    for name, job_id in zip(pinst, job_ids):
        try:
            base.poll_job(job_id, client)
        except errors.GenericError as err:
            from corral.client import errfmt
            sys.stderr.write("%s: %s\n" % (name, errfmt.format_error(err)[1]))
            bad += 1
    if bad == 0:
        print("All %d instance(s) failed over successfully." % len(pinst))
        return constants.EXIT_SUCCESS
    print("There were errors during the failover:\n%d error(s) out of %d instance(s)." %
          (bad, len(pinst)))
    return constants.EXIT_FAILURE


# ---- storage (volumes, list-storage, modify-storage, repair-storage) ------------------------

_STORAGE_TYPES = ("lvm-pv", "lvm-vg", "file", "sharedfile")
_VOLS_DEF_FIELDS = ["node", "phys", "vg", "name", "size", "instance"]
_VOLS_TITLES = {"node": "Node", "phys": "PhysDev", "vg": "VG", "name": "Name", "size": "Size",
                "instance": "Instance"}
_STOR_DEF_FIELDS = ["node", "type", "name", "size", "used", "free", "allocatable"]
_STOR_TITLES = {"node": "Node", "type": "Type", "name": "Name", "size": "Size", "used": "Used",
                "free": "Free", "allocatable": "Allocatable"}
_UNIT_FIELDS = ("size", "used", "free")


def _storage_type(value: str | None) -> str | None:
    if value is not None and value not in _STORAGE_TYPES:
        raise errors.OpPrereqError("Unknown storage type: %s" % value, errors.ECODE_INVAL)
    return value


def _print_rows(opts: argparse.Namespace, fields: list[str], titles: dict[str, str],
                rows: list[list]) -> None:
    """Ganeti's table for the storage listings (units for sizes, Y/N for booleans)."""
    from corral.client import output
    fdefs = [output.FieldDef(f, titles.get(f, f),
                             output.QFT_UNIT if f in _UNIT_FIELDS else
                             output.QFT_BOOL if f == "allocatable" else output.QFT_TEXT, "")
             for f in fields]
    cells = [[(constants.RS_NORMAL, v) for v in row] for row in rows]
    for line in output.format_table(fdefs, cells, headers=not opts.no_headers,
                                    separator=opts.separator, units=opts.units):
        print(line)


def list_volumes(opts: argparse.Namespace, args: list[str]) -> int:
    from corral.client import output
    fields = output.parse_field_list(opts.output, _VOLS_DEF_FIELDS)
    result = base.submit_or_send([opcodes.OpNodeQueryvols(nodes=list(args),
                                                          output_fields=fields)],
                                 argparse.Namespace())
    _print_rows(opts, fields, _VOLS_TITLES, result[0])
    return constants.EXIT_SUCCESS


def list_storage(opts: argparse.Namespace, args: list[str]) -> int:
    from corral.client import output
    fields = output.parse_field_list(opts.output, _STOR_DEF_FIELDS)
    op = opcodes.OpNodeQueryStorage(nodes=list(args), output_fields=fields,
                                    storage_type=_storage_type(opts.user_storage_type))
    result = base.submit_or_send([op], argparse.Namespace())
    _print_rows(opts, fields, _STOR_TITLES, result[0])
    return constants.EXIT_SUCCESS


def modify_storage(opts: argparse.Namespace, args: list[str]) -> int:
    node, stype, name = args
    changes = {}
    if opts.allocatable is not None:
        changes["allocatable"] = params.parse_bool(opts.allocatable)
    if not changes:
        sys.stderr.write("No changes to perform, exiting.\n")
        return constants.EXIT_SUCCESS
    op = opcodes.OpNodeModifyStorage(node_name=node, storage_type=_storage_type(stype),
                                     name=name, changes=changes)
    base.submit_or_send([op], opts)
    return constants.EXIT_SUCCESS


def repair_storage(opts: argparse.Namespace, args: list[str]) -> int:
    node, stype, name = args
    op = opcodes.OpRepairNodeStorage(node_name=node, storage_type=_storage_type(stype),
                                     name=name, ignore_consistency=opts.ignore_consistency)
    base.submit_or_send([op], opts)
    return constants.EXIT_SUCCESS


def evacuate(opts: argparse.Namespace, args: list[str]) -> int:
    """OP_NODE_EVACUATE, then wait for every job it submitted (as Ganeti's EvacuateNode)."""
    if opts.dst_node and opts.iallocator:
        raise errors.OpPrereqError("Give either the iallocator or the new secondary, not both",
                                   errors.ECODE_INVAL)
    if opts.primary_only and opts.secondary_only:
        raise errors.OpPrereqError("Only one of the --primary-only and --secondary-only"
                                   " options can be passed", errors.ECODE_INVAL)
    mode = "primary-only" if opts.primary_only else \
        "secondary-only" if opts.secondary_only else "all"
    fields = [f for f, skip in (("pinst_list", opts.secondary_only),
                                ("sinst_list", opts.primary_only)) if not skip]
    client = base.get_client()
    rows = client.query("node", fields, [args[0]])["data"]
    instances = sorted({name for row in rows for cell in row for name in (cell[1] or [])})
    if not instances:
        sys.stderr.write("No instances to evacuate on node(s) %s, exiting.\n" % args[0])
        return constants.EXIT_SUCCESS
    if not opts.force and not base.ask_user("Relocate instance(s) %s from node(s) %s?" %
                                            (", ".join(instances), args[0])):
        return constants.EXIT_CONFIRMATION
    op = opcodes.OpNodeEvacuate(node_name=args[0], mode=mode, remote_node=opts.dst_node,
                                iallocator=opts.iallocator, early_release=opts.early_release,
                                ignore_soft_errors=opts.ignore_soft_errors)
    return base.run_evacuation(op, opts, client)


# Columns of QueryNodeDrbd's rows (cmdlib/node_drbd.py) and their titles (spec/cli.md §3).
_DRBD_COLUMNS = [("node", "Node"), ("minor", "Minor"), ("instance", "Instance"),
                 ("disk", "Disk"), ("role", "Role"), ("peer", "PeerNode")]


def list_drbd(opts: argparse.Namespace, args: list[str]) -> int:
    """The DRBD minors the configuration gives the node (masterd's QueryNodeDrbd):
    read-only, no job; an unknown node fails with "Node 'x' not known"."""
    from corral.client import output
    rows = base.get_client().query_node_drbd(args[0])
    fdefs = [output.FieldDef(name, title,
                             output.QFT_NUMBER if name == "minor" else output.QFT_TEXT, "")
             for name, title in _DRBD_COLUMNS]
    cells = [[(constants.RS_NORMAL, v) for v in row] for row in rows]
    for line in output.format_table(fdefs, cells, headers=not opts.no_headers,
                                    separator=opts.separator):
        print(line)
    return constants.EXIT_SUCCESS


def list_tags(opts, args):
    return base.list_tags(constants.TAG_NODE, args[0], opts)


def add_tags(opts, args):
    return base.add_tags(constants.TAG_NODE, args[0], opts, args[1:])


def remove_tags(opts, args):
    return base.remove_tags(constants.TAG_NODE, args[0], opts, args[1:])


_YESNO = "yes|no"
_CAPABLE_OPTS = [
    opt("--master-capable", default=None, metavar=_YESNO,
        help="Whether the node may become master candidate and master"),
    opt("--vm-capable", default=None, metavar=_YESNO,
        help="Whether the node may host instances"),
    opt("--node-parameters", dest="ndparams", default=None,
        help="Node parameters: key=val,..."),
]

COMMANDS = {
    "add": Command(add, "<node_name>", base.SUBMIT_OPTS + _CAPABLE_OPTS + [
        opt("-s", "--secondary-ip", default=None, help="Secondary IP of the node"),
        opt("--readd", action="store_true", default=False,
            help="Re-add a node that is still in the configuration (e.g. after a reinstall)"),
        opt("-g", "--node-group", dest="nodegroup", default=None, help="Node group of the node"),
        opt("--no-ssh-key-check", dest="ssh_key_check", action="store_false", default=True,
            help="Accept an SSH host key not yet in the cluster's known_hosts file"),
        opt("--force-join", action="store_true", default=False,
            help="Accepted for compatibility; a node of another cluster is always refused"),
        opt("--no-node-setup", dest="node_setup", action="store_false", default=True,
            help="Do not set the node up over SSH: its node daemon must already run with"
                 " this cluster's certificates"),
    ], "Add a node to the cluster (over SSH)", 1, 1),
    "remove": Command(remove, "<node_name>", base.SUBMIT_OPTS,
                      "Remove a node (without instances) from the cluster", 1, 1),
    "list": Command(list_nodes, "[<node_name>...]", base.LIST_OPTS,
                    "List nodes and their properties", 0, None),
    "list-fields": Command(list_fields, "[<field>...]", [base.NOHDR_OPT, base.SEP_OPT],
                           "List the fields available for 'list'", 0, None),
    "info": Command(show_info, "[<node_name>...]", [], "Show information about nodes", 0, None,
                    aliases=["show"]),
    "modify": Command(modify, "<node_name>", base.SUBMIT_OPTS + _CAPABLE_OPTS + [
        base.FORCE_OPT,
        opt("-C", "--master-candidate", default=None, metavar=_YESNO,
            help="Set the master candidate flag"),
        opt("-D", "--drained", default=None, metavar=_YESNO, help="Set the drained flag"),
        opt("-O", "--offline", default=None, metavar=_YESNO, help="Set the offline flag"),
        opt("-s", "--secondary-ip", default=None, help="Change the secondary IP"),
        opt("--auto-promote", action="store_true", default=False,
            help="Promote another node if this change leaves too few master candidates"),
        opt("--node-powered", default=None, metavar=_YESNO,
            help="Record whether the node is powered"),
    ], "Change a node's role, flags or parameters", 1, 1),
    "migrate": Command(migrate, "<node_name>", base.SUBMIT_OPTS + [
        base.FORCE_OPT,
        opt("--non-live", dest="live", action="store_false", default=True,
            help="Do a non-live migration (freeze, copy the state, resume on the target)"),
        opt("--migration-mode", default=None, choices=["live", "non-live"],
            help="Override the default migration mode (hypervisor parameter"
                 " migration_mode)"),
        opt("-n", "--target-node", dest="dst_node", default=None,
            help="Target node for instances with shared or local-disk storage"),
        opt("-I", "--iallocator", default=None, help="Instance allocator to choose targets"),
        opt("--no-runtime-changes", dest="allow_runtime_chgs", action="store_false",
            default=True, help="Don't allow memory ballooning during the migrations"),
        opt("--ignore-ipolicy", action="store_true", default=False,
            help="Ignore the instance policy")],
        "Migrate all primary instances of a node away (one job each)", 1, 1),
    "failover": Command(failover, "<node_name>", base.SUBMIT_OPTS + [
        base.FORCE_OPT,
        opt("--ignore-consistency", action="store_true", default=False,
            help="Ignore disk consistency and failed shutdowns (the node is down)"),
        opt("-I", "--iallocator", default=None, help="Instance allocator to choose targets")],
        "Fail over all primary instances of a node (one job each)", 1, 1),
    "volumes": Command(list_volumes, "[<node_name>...]", [
        base.NOHDR_OPT, base.SEP_OPT, base.UNITS_OPT, base.FIELDS_OPT],
        "List the logical volumes on nodes (default fields: %s)" %
        " ".join(_VOLS_DEF_FIELDS), 0, None),
    "list-storage": Command(list_storage, "[<node_name>...]", [
        base.NOHDR_OPT, base.SEP_OPT, base.UNITS_OPT, base.FIELDS_OPT,
        opt("-t", "--storage-type", dest="user_storage_type", default=None,
            help="Storage type: lvm-pv, lvm-vg, file or sharedfile (default: that of the"
                 " first enabled disk template)")],
        "List the storage units of nodes (default fields: %s)" %
        " ".join(_STOR_DEF_FIELDS), 0, None),
    "modify-storage": Command(modify_storage, "<node_name> <storage_type> <name>",
                              base.SUBMIT_OPTS + [
        opt("--allocatable", default=None, metavar=_YESNO,
            help="Whether new volumes may be allocated on this physical volume")],
        "Change a storage unit (lvm-pv: allocatable)", 3, 3),
    "repair-storage": Command(repair_storage, "<node_name> <storage_type> <name>",
                              base.SUBMIT_OPTS + [
        opt("--ignore-consistency", action="store_true", default=False,
            help="Repair even if instances have faulty disks on other nodes")],
        "Repair a storage unit (lvm-vg: drop missing physical volumes)", 3, 3),
    "evacuate": Command(evacuate, "<node_name>", base.SUBMIT_OPTS + [
        base.FORCE_OPT,
        opt("-I", "--iallocator", default=None,
            help="Instance allocator choosing the new nodes (default: the cluster's)"),
        opt("-n", "--new-secondary", dest="dst_node", default=None,
            help="New secondary node for the DRBD instances (with --secondary-only)"),
        opt("-p", "--primary-only", action="store_true", default=False,
            help="Evacuate only the instances this node is primary for"),
        opt("-s", "--secondary-only", action="store_true", default=False,
            help="Evacuate only the instances this node is secondary for"),
        opt("--early-release", action="store_true", default=False,
            help="Release the locks on the old secondaries early (replace-disks)"),
        opt("--ignore-soft-errors", action="store_true", default=False,
            help="Ask the allocator to ignore soft errors (e.g. instance policy)")],
        "Relocate the instances of a node (migrate, fail over or replace disks) and wait"
        " for the jobs", 1, 1),
    "list-drbd": Command(list_drbd, "<node_name>", [base.NOHDR_OPT, base.SEP_OPT],
                         "List the DRBD minors the configuration gives a node (columns: %s)"
                         % " ".join(title for _, title in _DRBD_COLUMNS),
                         1, 1),
    "list-tags": Command(list_tags, "<node_name>", [], "List the tags of a node", 1, 1),
    "add-tags": Command(add_tags, "<node_name> <tag>...", base.SUBMIT_OPTS + [base.TAG_SRC_OPT],
                        "Add tags to a node", 1, None),
    "remove-tags": Command(remove_tags, "<node_name> <tag>...",
                           base.SUBMIT_OPTS + [base.TAG_SRC_OPT],
                           "Remove tags from a node", 1, None),
}


def main(argv: list[str] | None = None) -> int:
    return base.generic_main("gnt-node", COMMANDS, argv, "Node administration for Corral")
