"""gnt-os: OS definitions across the cluster (spec/cli.md §6)."""

import argparse

from corral import constants, errors, opcodes
from corral.client import base, params
from corral.client.base import Command, opt


def _diagnose(fields: list[str], opts: argparse.Namespace | None = None) -> list[list]:
    op = opcodes.OpOsDiagnose(output_fields=fields, names=[])
    return base.submit_or_send([op], opts or argparse.Namespace())[0]


def os_names(name: str, variants: list[str]) -> list[str]:
    """``name+variant`` for each variant, or ``name`` for an OS without variants."""
    return ["%s+%s" % (name, v) for v in variants] if variants else [name]


def list_os(opts: argparse.Namespace, args: list[str]) -> int:
    rows = _diagnose(["name", "variants"])
    if not opts.no_headers:
        print("Name")
    for name, variants in rows:
        for full in os_names(name, variants):
            print(full)
    return constants.EXIT_SUCCESS


def _node_status(entries: list) -> str:
    if not entries:
        return "OS not found"
    path, valid, error = entries[0][0], entries[0][1], entries[0][2]
    return "%s (path: %s)" % ("valid" if valid else "invalid - %s" % error, path)


def diagnose(opts: argparse.Namespace, args: list[str]) -> int:
    """Per OS its global status, variants and each node's view; exit 1 if any is bad."""
    rows = _diagnose(["name", "valid", "variants", "node_status", "hidden", "blacklisted"])
    has_bad = False
    for name, _valid, variants, node_status, hidden, blacklisted in rows:
        good = {n: e for n, e in node_status.items() if e and e[0][1]}
        bad = {n: e for n, e in node_status.items() if n not in good}
        status = "valid" if not bad else ("invalid" if not good else "partial valid")
        has_bad = has_bad or bool(bad)
        line = "OS: %s [global status: %s]" % (name, status)
        if hidden:
            line += " [hidden]"
        if blacklisted:
            line += " [blacklisted]"
        print(line)
        if variants:
            print("  Variants: [%s]" % ", ".join(variants))
        for group in (bad, good):
            for node in sorted(group):
                print("  Node: %s, status: %s" % (node, _node_status(group[node])))
        print("")
    return constants.EXIT_FAILURE if has_bad else constants.EXIT_SUCCESS


def show_info(opts: argparse.Namespace, args: list[str]) -> int:
    rows = _diagnose(["name", "valid", "variants", "parameters", "api_versions",
                      "blacklisted", "hidden", "trusted"])
    wanted = set(args)
    for name, valid, variants, parameters, api_versions, blk, hid, trusted in rows:
        if wanted and name not in wanted:
            continue
        print("%s:" % name)
        print("  - valid: %s" % valid)
        print("  - hidden: %s" % hid)
        print("  - blacklisted: %s" % blk)
        if valid:
            print("  - API versions:")
            for version in sorted(api_versions):
                print("    - %s" % version)
            print("  - variants:")
            for variant in variants:
                print("    - %s" % variant)
            print("  - parameters:")
            for pname, pdesc in parameters:
                print("    - %s: %s" % (pname, pdesc))
        print("  - trusted: %s" % trusted)
        print("")
    return constants.EXIT_SUCCESS


def modify(opts: argparse.Namespace, args: list[str]) -> int:
    """Cluster-level settings of one OS through OP_CLUSTER_SET_PARAMS."""
    os_name = args[0]
    hvp = params.parse_hv_options(opts.hvparams or [])
    osp = params.parse_key_value_list(opts.osparams, "-O") if opts.osparams else {}
    osp_priv = (params.parse_key_value_list(opts.osparams_private, "--os-parameters-private")
                if opts.osparams_private else {})
    changes = {}
    if hvp:
        changes["os_hvp"] = {os_name: hvp}
    if osp:
        changes["osparams"] = {os_name: osp}
    if osp_priv:
        changes["osparams_private_cluster"] = {os_name: osp_priv}
    for option, key in ((opts.hidden, "hidden_os"), (opts.blacklisted, "blacklisted_os")):
        if option is not None:
            changes[key] = [["add" if _yes_no(option, key) else "remove", os_name]]
    if not changes:
        raise errors.OpPrereqError("At least one of OS parameters or hypervisor parameters"
                                   " must be passed", errors.ECODE_INVAL)
    base.submit_or_send([opcodes.OpClusterSetParams(**changes)], opts)
    return constants.EXIT_SUCCESS


def _yes_no(value: str, what: str) -> bool:
    try:
        return params.parse_bool(value)
    except errors.ParameterError:
        raise errors.OpPrereqError("Invalid value '%s' for --%s, expected yes or no" %
                                   (value, what.split("_")[0]), errors.ECODE_INVAL) from None


COMMANDS = {
    "list": Command(list_os, "", [base.NOHDR_OPT],
                    "List the valid, visible OSes (variants expanded)"),
    "diagnose": Command(diagnose, "", [], "Show the state of every OS on every node"),
    "info": Command(show_info, "[<os>...]", [], "Show the details of OSes", 0, None,
                    aliases=["show"]),
    "modify": Command(modify, "<os>", base.SUBMIT_OPTS + [
        opt("-H", "--hypervisor-parameters", dest="hvparams", action="append", default=None,
            help="Hypervisor parameters for this OS: hv:key=val,..."),
        opt("-O", "--os-parameters", dest="osparams", default=None,
            help="Cluster-wide OS parameters for this OS: key=val,..."),
        opt("--os-parameters-private", dest="osparams_private", default=None,
            help="Cluster-wide private OS parameters: key=val,..."),
        opt("--hidden", default=None, help="Hide the OS from 'gnt-os list' (yes|no)"),
        opt("--blacklisted", default=None,
            help="Forbid new instances with this OS (yes|no)")],
        "Change the cluster-level settings of an OS", 1, 1),
}


def main(argv: list[str] | None = None) -> int:
    return base.generic_main("gnt-os", COMMANDS, argv, "OS definitions for Corral")
