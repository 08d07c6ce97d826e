"""gnt-node: node administration (spec/cli.md §3)."""

import argparse
import sys

from corral import constants, opcodes
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
                "role", "tags"]


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
    "list-tags": Command(list_tags, "<node_name>", [], "List the tags of a node", 1, 1),
    "add-tags": Command(add_tags, "<node_name> <tag>...", base.SUBMIT_OPTS + [base.TAG_SRC_OPT],
                        "Add tags to a node", 1, None),
    "remove-tags": Command(remove_tags, "<node_name> <tag>...",
                           base.SUBMIT_OPTS + [base.TAG_SRC_OPT],
                           "Remove tags from a node", 1, None),
}


def main(argv: list[str] | None = None) -> int:
    return base.generic_main("gnt-node", COMMANDS, argv, "Node administration for Corral")
