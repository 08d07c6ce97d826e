"""gnt-group: node group administration (spec/cli.md §7)."""

import argparse
import sys

from corral import constants, opcodes
from corral.client import base, params, query_fields
from corral.client.base import Command, opt


def _ipolicy(opts: argparse.Namespace) -> dict | None:
    out: dict = {}
    if opts.ipolicy_vcpu_ratio is not None:
        out["vcpu-ratio"] = opts.ipolicy_vcpu_ratio
    if opts.ipolicy_spindle_ratio is not None:
        out["spindle-ratio"] = opts.ipolicy_spindle_ratio
    if opts.ipolicy_disk_templates is not None:
        out["disk-templates"] = [t for t in opts.ipolicy_disk_templates.split(",") if t]
    return out or None


def _group_params(opts: argparse.Namespace) -> dict:
    return {
        "alloc_policy": opts.alloc_policy,
        "ndparams": params.parse_key_value_list(opts.ndparams, "--node-parameters")
        if opts.ndparams else None,
        "diskparams": params.parse_hv_options(opts.diskparams) if opts.diskparams else None,
        "ipolicy": _ipolicy(opts),
    }


def add(opts: argparse.Namespace, args: list[str]) -> int:
    base.submit_or_send([opcodes.OpGroupAdd(group_name=args[0], **_group_params(opts))], opts)
    return constants.EXIT_SUCCESS


def modify(opts: argparse.Namespace, args: list[str]) -> int:
    kwargs = _group_params(opts)
    if all(v is None for v in kwargs.values()):
        sys.stderr.write("Please give at least one of the parameters.\n")
        return constants.EXIT_FAILURE
    result = base.submit_or_send([opcodes.OpGroupSetParams(group_name=args[0], **kwargs)], opts)
    if result and result[0]:
        print("Modified node group %s" % args[0])
        for param, value in result[0]:
            print(" - %-10s -> %s" % (param, value))
    return constants.EXIT_SUCCESS


def remove(opts: argparse.Namespace, args: list[str]) -> int:
    base.submit_or_send([opcodes.OpGroupRemove(group_name=args[0])], opts)
    return constants.EXIT_SUCCESS


def rename(opts: argparse.Namespace, args: list[str]) -> int:
    base.submit_or_send([opcodes.OpGroupRename(group_name=args[0], new_name=args[1])], opts)
    return constants.EXIT_SUCCESS


def assign_nodes(opts: argparse.Namespace, args: list[str]) -> int:
    op = opcodes.OpGroupAssignNodes(group_name=args[0], nodes=args[1:], force=opts.force)
    base.submit_or_send([op], opts)
    return constants.EXIT_SUCCESS


def list_groups(opts: argparse.Namespace, args: list[str]) -> int:
    return base.generic_list("group", opts, args, query_fields.DEFAULT_GROUP_FIELDS)


def list_fields(opts: argparse.Namespace, args: list[str]) -> int:
    return base.list_fields("group", opts, args)


_INFO_FIELDS = ["name", "uuid", "alloc_policy", "node_list", "pinst_list", "ndparams",
                "diskparams", "ipolicy", "tags"]


def show_info(opts: argparse.Namespace, args: list[str]) -> int:
    from corral.client.gnt_cluster import print_generic_info
    result = base.get_client().query("group", _INFO_FIELDS, args)
    for row in result["data"]:
        v = dict(zip(_INFO_FIELDS, (cell[1] for cell in row)))
        print("Group: %s" % v["name"])
        print_generic_info([
            ("UUID", v["uuid"]),
            ("Number of nodes", len(v["node_list"])),
            ("Nodes", v["node_list"]),
            ("Instances", v["pinst_list"]),
            ("Allocation policy", v["alloc_policy"]),
            ("Tags", sorted(v["tags"] or [])),
            ("Node parameters", v["ndparams"]),
            ("Disk parameters", v["diskparams"]),
            ("Instance policy", v["ipolicy"]),
        ], indent=1)
    return constants.EXIT_SUCCESS


def evacuate(opts: argparse.Namespace, args: list[str]) -> int:
    """OP_GROUP_EVACUATE, then wait for every job it submitted."""
    client = base.get_client()
    op = opcodes.OpGroupEvacuate(group_name=args[0], iallocator=opts.iallocator,
                                 target_groups=opts.to, early_release=opts.early_release,
                                 sequential=opts.sequential, force_failover=opts.force_failover)
    return base.run_evacuation(op, opts, client)


def list_tags(opts, args):
    return base.list_tags(constants.TAG_NODEGROUP, args[0], opts)


def add_tags(opts, args):
    return base.add_tags(constants.TAG_NODEGROUP, args[0], opts, args[1:])


def remove_tags(opts, args):
    return base.remove_tags(constants.TAG_NODEGROUP, args[0], opts, args[1:])


_PARAM_OPTS = [
    opt("--alloc-policy", default=None, choices=list(constants.VALID_ALLOC_POLICIES),
        help="Allocation policy of the group"),
    opt("--node-parameters", dest="ndparams", default=None, help="Node parameters: key=val,..."),
    opt("-D", "--disk-parameters", dest="diskparams", action="append", default=None,
        help="Disk parameters: template:key=val,..."),
    opt("--ipolicy-vcpu-ratio", type=float, default=None,
        help="Instance policy: maximum ratio of virtual to physical CPUs"),
    opt("--ipolicy-spindle-ratio", type=float, default=None,
        help="Instance policy: maximum ratio of instances to spindles"),
    opt("--ipolicy-disk-templates", default=None,
        help="Instance policy: comma-separated list of allowed disk templates"),
]

COMMANDS = {
    "add": Command(add, "<group_name>", base.SUBMIT_OPTS + _PARAM_OPTS,
                   "Add a new node group", 1, 1),
    "modify": Command(modify, "<group_name>", base.SUBMIT_OPTS + _PARAM_OPTS,
                      "Change the parameters of a node group", 1, 1),
    "remove": Command(remove, "<group_name>", base.SUBMIT_OPTS,
                      "Remove an empty node group", 1, 1),
    "rename": Command(rename, "<group_name> <new_name>", base.SUBMIT_OPTS,
                      "Rename a node group", 2, 2),
    "assign-nodes": Command(assign_nodes, "<group_name> <node>...",
                            base.SUBMIT_OPTS + [base.FORCE_OPT],
                            "Move nodes into a group (-f allows splitting instances"
                            " across groups)", 2, None),
    "list": Command(list_groups, "[<group_name>...]", base.LIST_OPTS,
                    "List node groups and their properties", 0, None),
    "list-fields": Command(list_fields, "[<field>...]", [base.NOHDR_OPT, base.SEP_OPT],
                           "List the fields available for 'list'", 0, None),
    "info": Command(show_info, "[<group_name>...]", [], "Show information about node groups",
                    0, None, aliases=["show"]),
    "evacuate": Command(evacuate, "<group_name>", base.SUBMIT_OPTS + [
        opt("--to", action="append", default=None, metavar="GROUP",
            help="Target group (repeatable; default: every other group)"),
        opt("-I", "--iallocator", default=None,
            help="Instance allocator planning the moves (default: the cluster's)"),
        opt("--early-release", action="store_true", default=False,
            help="Release the locks on the old secondaries early (replace-disks)"),
        opt("--sequential", action="store_true", default=False,
            help="Run the moves one after the other instead of in parallel"),
        opt("--force-failover", action="store_true", default=False,
            help="Fail the instances over instead of migrating them")],
        "Move all instances out of a node group into other groups", 1, 1),
    "list-tags": Command(list_tags, "<group_name>", [], "List the tags of a group", 1, 1),
    "add-tags": Command(add_tags, "<group_name> <tag>...", base.SUBMIT_OPTS + [base.TAG_SRC_OPT],
                        "Add tags to a group", 1, None),
    "remove-tags": Command(remove_tags, "<group_name> <tag>...",
                           base.SUBMIT_OPTS + [base.TAG_SRC_OPT],
                           "Remove tags from a group", 1, None),
}


def main(argv: list[str] | None = None) -> int:
    return base.generic_main("gnt-group", COMMANDS, argv, "Node group administration for Corral",
                             env_override={"list": "GNT_GROUP_LIST"})
