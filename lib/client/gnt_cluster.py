"""gnt-cluster: cluster-wide administration (spec/cli.md §2)."""

import argparse
import sys
import time

from corral import bootstrap, constants, errors, opcodes
from corral.client import base, params
from corral.client.base import Command, opt


def _hv_params(values: list[str] | None) -> dict[str, dict]:
    return params.parse_hv_options(values or [])


def _kv(value: str | None, option: str) -> dict:
    return params.parse_key_value_list(value, option) if value else {}


def init(opts: argparse.Namespace, args: list[str]) -> int:
    hvs = opts.enabled_hypervisors.split(",") if opts.enabled_hypervisors else [constants.HT_KVM]
    dts = (opts.enabled_disk_templates.split(",") if opts.enabled_disk_templates
           else list(constants.DEFAULT_ENABLED_DISK_TEMPLATES))
    p = bootstrap.InitParams(
        cluster_name=args[0], secondary_ip=opts.secondary_ip, enabled_hypervisors=hvs,
        enabled_disk_templates=dts, hvparams=_hv_params(opts.hvparams),
        beparams=_kv(opts.beparams, "-B"), nicparams=_kv(opts.nicparams, "-N"),
        ndparams=_kv(opts.ndparams, "--node-parameters"),
        diskparams=params.parse_hv_options(opts.diskparams or []),
        vg_name=opts.vg_name, master_netdev=opts.master_netdev,
        master_netmask=opts.master_netmask, file_storage_dir=opts.file_storage_dir,
        shared_file_storage_dir=opts.shared_file_storage_dir, drbd_helper=opts.drbd_helper,
        default_iallocator=opts.default_iallocator or "",
        default_iallocator_params=_kv(opts.default_iallocator_params,
                                      "--default-iallocator-params"),
        candidate_pool_size=opts.candidate_pool_size,
        mac_prefix=opts.mac_prefix or constants.DEFAULT_MAC_PREFIX,
        modify_etc_hosts=not opts.no_etc_hosts,
        maintain_node_health=params.parse_bool(opts.maintain_node_health)
        if opts.maintain_node_health else False,
        prealloc_wipe_disks=params.parse_bool(opts.prealloc_wipe_disks)
        if opts.prealloc_wipe_disks else False,
        noded_port=_noded_port())
    bootstrap.init_cluster(p, lambda msg: None)
    base.submit_or_send([opcodes.OpClusterPostInit()], argparse.Namespace())
    return constants.EXIT_SUCCESS


def _noded_port() -> int:
    import os
    value = os.environ.get("CORRAL_NODED_PORT")
    if not value:
        return constants.DEFAULT_NODED_PORT
    try:
        port = int(value)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise errors.OpPrereqError("Invalid CORRAL_NODED_PORT '%s' (a TCP port, 1-65535)" % value,
                                   errors.ECODE_INVAL)
    return port


def destroy(opts: argparse.Namespace, args: list[str]) -> int:
    if not opts.yes_do_it:
        sys.stderr.write("Destroying a cluster is irreversible. If you really want to destroy"
                         " this cluster, supply the --yes-do-it option.\n")
        return constants.EXIT_FAILURE
    base.submit_or_send([opcodes.OpClusterDestroy()], argparse.Namespace())
    bootstrap.destroy_local_cluster()
    return constants.EXIT_SUCCESS


def getmaster(opts: argparse.Namespace, args: list[str]) -> int:
    print(base.get_client().query_config_values(["master_node"])[0])
    return 0


def master_ping(opts: argparse.Namespace, args: list[str]) -> int:
    try:
        base.get_client().query_config_values(["master_node"])
    except errors.GenericError:
        return constants.EXIT_FAILURE
    return constants.EXIT_SUCCESS


def version(opts: argparse.Namespace, args: list[str]) -> int:
    info = base.get_client().query_cluster_info()
    print("Software version: %s" % info["software_version"])
    print("Internode protocol: %s" % info["protocol_version"])
    print("Configuration format: %s" % info["config_version"])
    print("OS api version: %s" % info["os_api_version"])
    print("Export interface: %s" % info["export_version"])
    print("VCS version: %s" % info["vcs_version"])
    return 0


def print_generic_info(data: list, indent: int = 0) -> None:
    """Nested ``key: value`` output in the style of Ganeti's info commands."""
    pad = "  " * indent
    for key, value in data:
        if isinstance(value, dict):
            print("%s%s:" % (pad, key))
            print_generic_info(sorted(value.items()), indent + 1)
        elif isinstance(value, list) and value and isinstance(value[0], tuple):
            print("%s%s:" % (pad, key))
            print_generic_info(value, indent + 1)
        else:
            if isinstance(value, list):
                value = ", ".join(str(v) for v in value) if value else "(none)"
            print("%s%s: %s" % (pad, key, value))


def show_info(opts: argparse.Namespace, args: list[str]) -> int:
    info = base.get_client().query_cluster_info()
    fmt_time = lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))  # noqa: E731
    print_generic_info([
        ("Cluster name", info["name"]),
        ("Cluster UUID", info["uuid"]),
        ("Creation time", fmt_time(info["ctime"])),
        ("Modification time", fmt_time(info["mtime"])),
        ("Master node", info["master"]),
        ("Architecture (this node)", "%s (%s)" % tuple(info["architecture"])),
        ("Tags", sorted(info["tags"])),
        ("Default hypervisor", info["default_hypervisor"]),
        ("Enabled hypervisors", info["enabled_hypervisors"]),
        ("Hypervisor parameters", info["hvparams"]),
        ("OS-specific hypervisor parameters", info["os_hvp"]),
        ("OS parameters", info["osparams"]),
        ("Hidden OSes", info["hidden_os"]),
        ("Blacklisted OSes", info["blacklisted_os"]),
        ("Cluster parameters", [
            ("candidate pool size", info["candidate_pool_size"]),
            ("maximal number of jobs running simultaneously", info["max_running_jobs"]),
            ("maximal number of jobs simultaneously tracked by the scheduler",
             info["max_tracked_jobs"]),
            ("master netdev", info["master_netdev"]),
            ("master netmask", info["master_netmask"]),
            ("use external master IP address setup script", info["use_external_mip_script"]),
            ("lvm volume group", info["volume_group_name"]),
            ("drbd usermode helper", info["drbd_usermode_helper"]),
            ("file storage path", info["file_storage_dir"]),
            ("shared file storage path", info["shared_file_storage_dir"]),
            ("maintenance of node health", info["maintain_node_health"]),
            ("uid pool", info["uid_pool"]),
            ("default instance allocator", info["default_iallocator"]),
            ("primary ip version", info["primary_ip_version"]),
            ("preallocation wipe disks", info["prealloc_wipe_disks"]),
            ("OS search path", _os_search_path()),
            ("enabled disk templates", info["enabled_disk_templates"]),
            ("enabled user shutdown", info["enabled_user_shutdown"]),
        ]),
        ("Default node parameters", info["ndparams"]),
        ("Default instance parameters", info["beparams"]),
        ("Default nic parameters", info["nicparams"]),
        ("Default disk parameters", info["diskparams"]),
        ("Instance policy - limits for instances", info["ipolicy"]),
    ])
    return 0


def _os_search_path() -> list[str]:
    from corral import pathutils
    return pathutils.os_search_path()


def verify(opts: argparse.Namespace, args: list[str]) -> int:
    skip = ["nplusone_mem"] if opts.no_nplus1_mem else []
    op = opcodes.OpClusterVerify(verbose=bool(opts.verbose), error_codes=opts.error_codes,
                                 ignore_errors=opts.ignore_errors or [],
                                 skip_checks=skip, group_name=opts.nodegroup,
                                 verify_clutter=opts.verify_ssh_clutter)
    client = base.get_client()
    result = base.submit_or_send([op], opts, client)
    if result is None:
        return 0
    ok = base.wait_for_jobs(result[0]["jobs"], client)
    return constants.EXIT_SUCCESS if ok else constants.EXIT_FAILURE


def verify_disks(opts: argparse.Namespace, args: list[str]) -> int:
    """Ganeti's VerifyDisks: per group job, activate what needs it, report missing LVs."""
    client = base.get_client()
    result = base.submit_or_send([opcodes.OpClusterVerifyDisks(group_name=opts.nodegroup)],
                                 opts, client)
    if result is None:
        return constants.EXIT_SUCCESS
    code = constants.EXIT_SUCCESS
    for ok, job_id in result[0]["jobs"]:
        if not ok:
            print("Job failed: %s" % job_id)
            code = constants.EXIT_FAILURE
            continue
        try:
            group_result = base.poll_job(job_id, client, feedback=print)[0]
        except errors.GenericError as err:
            print("Job failed: %s" % err)
            code = constants.EXIT_FAILURE
            continue
        code |= _verify_disks_group(opts, client, *group_result)
    return code


def _verify_disks_group(opts: argparse.Namespace, client, bad_nodes: dict, instances: list,
                        missing: dict) -> int:
    code = constants.EXIT_SUCCESS
    for node, text in sorted(bad_nodes.items()):
        print("Error gathering data on node %s: %s" % (node, str(text)[-400:]))
        print("You need to fix these nodes first before fixing instances")
        code = constants.EXIT_FAILURE
    for name in instances:
        if name in missing:
            continue
        print("Activating disks for instance '%s'" % name)
        try:
            base.submit_or_send([opcodes.OpInstanceActivateDisks(instance_name=name)],
                                opts, client)
        except errors.GenericError as err:
            from corral.client import errfmt
            nret, msg = errfmt.format_error(err)
            code |= nret
            sys.stderr.write("Error activating disks for instance %s: %s\n" % (name, msg))
    for name, vols in sorted(missing.items()):
        if all(node in bad_nodes for node, _vol in vols):
            print("Instance %s cannot be verified as it lives on broken nodes" % name)
            continue
        print("Instance %s has missing logical volumes:" % name)
        for node, vol in sorted(vols):
            print("\t%s%s /dev/%s" % ("broken node " if node in bad_nodes else "", node, vol))
    if missing:
        print("You need to replace or recreate disks for all the above instances if this"
              " message persists after fixing broken nodes.")
        code = constants.EXIT_FAILURE
    elif not instances:
        print("No disks need to be activated.")
    return code


def repair_disk_sizes(opts: argparse.Namespace, args: list[str]) -> int:
    op = opcodes.OpClusterRepairDiskSizes(instances=list(args))
    base.submit_or_send([op], opts)
    return constants.EXIT_SUCCESS


def modify(opts: argparse.Namespace, args: list[str]) -> int:
    kwargs = {}
    if opts.enabled_hypervisors:
        kwargs["enabled_hypervisors"] = opts.enabled_hypervisors.split(",")
    if opts.enabled_disk_templates:
        kwargs["enabled_disk_templates"] = opts.enabled_disk_templates.split(",")
    if opts.hvparams:
        kwargs["hvparams"] = _hv_params(opts.hvparams)
    for attr, option in (("beparams", "-B"), ("nicparams", "-N"),
                         ("ndparams", "--node-parameters")):
        if getattr(opts, attr):
            kwargs[attr] = _kv(getattr(opts, attr), option)
    if opts.diskparams:
        kwargs["diskparams"] = params.parse_hv_options(opts.diskparams)
    if opts.default_iallocator_params is not None:
        kwargs["default_iallocator_params"] = _kv(opts.default_iallocator_params,
                                                  "--default-iallocator-params")
    simple = {"vg_name": "vg_name", "candidate_pool_size": "candidate_pool_size",
              "max_running_jobs": "max_running_jobs", "max_tracked_jobs": "max_tracked_jobs",
              "mac_prefix": "mac_prefix", "master_netdev": "master_netdev",
              "master_netmask": "master_netmask", "drbd_helper": "drbd_helper",
              "default_iallocator": "default_iallocator",
              "file_storage_dir": "file_storage_dir",
              "shared_file_storage_dir": "shared_file_storage_dir"}
    for attr, param in simple.items():
        value = getattr(opts, attr)
        if value is not None:
            kwargs[param] = value
    for attr in ("maintain_node_health", "prealloc_wipe_disks", "enabled_user_shutdown"):
        value = getattr(opts, attr)
        if value is not None:
            kwargs[attr] = params.parse_bool(value)
    if opts.reserved_lvs is not None:
        kwargs["reserved_lvs"] = [x for x in opts.reserved_lvs.split(",") if x]
    if not kwargs:
        sys.stderr.write("Please give at least one of the parameters.\n")
        return constants.EXIT_FAILURE
    base.submit_or_send([opcodes.OpClusterSetParams(**kwargs)], opts)
    return 0


def redist_conf(opts: argparse.Namespace, args: list[str]) -> int:
    base.submit_or_send([opcodes.OpClusterRedistConf()], opts)
    return 0


def master_failover(opts: argparse.Namespace, args: list[str]) -> int:
    from corral import masterfailover
    if opts.no_voting and not opts.yes_do_it:
        if not base.ask_user("This will perform the failover even if most other nodes are down,"
                             " or if this node is outdated. This is dangerous as it can lead"
                             " to a non-consistent cluster. Check the gnt-cluster(8) man page"
                             " before proceeding. Continue?"):
            return constants.EXIT_FAILURE
    old = masterfailover.master_failover(no_voting=opts.no_voting,
                                         feedback=lambda msg: sys.stderr.write(msg + "\n"))
    print("Master failover done: %s is no longer the master" % old)
    return constants.EXIT_SUCCESS


def activate_master_ip(opts: argparse.Namespace, args: list[str]) -> int:
    base.submit_or_send([opcodes.OpClusterActivateMasterIp()], opts)
    return constants.EXIT_SUCCESS


def deactivate_master_ip(opts: argparse.Namespace, args: list[str]) -> int:
    if not opts.yes_do_it and not base.ask_user("This will disable the master IP. All the"
                                                 " RAPI and LUXI clients using it will stop"
                                                 " working. Continue?"):
        return constants.EXIT_FAILURE
    base.submit_or_send([opcodes.OpClusterDeactivateMasterIp()], opts)
    return constants.EXIT_SUCCESS


def rename(opts: argparse.Namespace, args: list[str]) -> int:
    if not opts.force and not base.ask_user("This will rename the cluster from '%s' to '%s'."
                                            " Continue?" % (_cluster_name(), args[0])):
        return constants.EXIT_FAILURE
    base.submit_or_send([opcodes.OpClusterRename(name=args[0])], opts)
    return 0


def _cluster_name() -> str:
    return base.get_client().query_config_values(["cluster_name"])[0]


def queue_ops(opts: argparse.Namespace, args: list[str]) -> int:
    command = args[0]
    client = base.get_client()
    if command == "drain":
        client.set_drain_flag(True)
    elif command == "undrain":
        client.set_drain_flag(False)
    elif command == "info":
        drained = client.query_config_values(["drain_flag"])[0]
        print("The drain flag is %s" % ("set" if drained else "unset"))
    else:
        raise errors.CommandError("Unknown queue command '%s' (use drain, undrain or info)" %
                                  command)
    return 0


def watcher_ops(opts: argparse.Namespace, args: list[str]) -> int:
    command = args[0]
    client = base.get_client()
    if command == "continue":
        client.set_watcher_pause(None)
        print("The watcher is no longer paused.")
    elif command == "pause":
        if len(args) < 2:
            raise errors.CommandError("Missing duration for 'watcher pause' (e.g. 30m, 1h)")
        until = time.time() + params.parse_timespec(args[1])
        client.set_watcher_pause(until)
        print("The watcher is paused until %s." % time.ctime(until))
    elif command == "info":
        until = client.query_config_values(["watcher_pause"])[0]
        if until is None:
            print("The watcher is not paused.")
        else:
            print("The watcher is paused until %s." % time.ctime(until))
    else:
        raise errors.CommandError("Unknown watcher command '%s' (use pause, continue or info)" %
                                  command)
    return 0


def list_tags(opts, args):
    return base.list_tags(constants.TAG_CLUSTER, None, opts)


def add_tags(opts, args):
    return base.add_tags(constants.TAG_CLUSTER, None, opts, args)


def remove_tags(opts, args):
    return base.remove_tags(constants.TAG_CLUSTER, None, opts, args)


def search_tags(opts: argparse.Namespace, args: list[str]) -> int:
    result = base.submit_or_send([opcodes.OpTagsSearch(pattern=args[0])], opts)
    if result is None:
        return 0
    for path, tag in result[0]:
        print("%s %s" % (path, tag))
    return 0


_INIT_MODIFY_OPTS = [
    opt("--enabled-hypervisors", default=None, help="Comma-separated list of hypervisors"),
    opt("--enabled-disk-templates", default=None, help="Comma-separated list of disk templates"),
    opt("-H", "--hypervisor-parameters", dest="hvparams", action="append", default=None,
        help="Hypervisor parameters: hv:key=val,..."),
    opt("-B", "--backend-parameters", dest="beparams", default=None,
        help="Backend parameters: key=val,..."),
    opt("-N", "--nic-parameters", dest="nicparams", default=None,
        help="NIC parameters: key=val,..."),
    opt("--node-parameters", dest="ndparams", default=None, help="Node parameters"),
    opt("-D", "--disk-parameters", dest="diskparams", action="append", default=None,
        help="Disk parameters: template:key=val,..."),
    opt("--vg-name", default=None, help="Volume group name"),
    opt("--master-netdev", default=None, help="Master network device"),
    opt("--master-netmask", type=int, default=None, help="Master IP netmask (prefix length)"),
    opt("--file-storage-dir", default=None, help="File storage directory"),
    opt("--shared-file-storage-dir", default=None, help="Shared file storage directory"),
    opt("--drbd-usermode-helper", dest="drbd_helper", default=None, help="DRBD usermode helper"),
    opt("-I", "--default-iallocator", default=None, help="Default instance allocator"),
    opt("--default-iallocator-params", default=None, help="Default iallocator parameters"),
    opt("-m", "--mac-prefix", default=None, help="MAC address prefix (three octets)"),
    opt("--maintain-node-health", default=None, help="yes|no"),
    opt("--prealloc-wipe-disks", default=None, help="yes|no"),
]

COMMANDS = {
    "init": Command(init, "<cluster-name>", _INIT_MODIFY_OPTS + [
        opt("-s", "--secondary-ip", default=None, help="Secondary IP of this node"),
        opt("-C", "--candidate-pool-size", type=int,
            default=constants.DEFAULT_CANDIDATE_POOL_SIZE, help="Master candidate pool size"),
        opt("--no-etc-hosts", action="store_true", default=False,
            help="Don't modify /etc/hosts"),
        opt("--no-ssh-init", action="store_true", default=False, help="Don't set up SSH"),
        opt("--primary-ip-version", type=int, choices=[4], default=4,
            help="Primary IP version (only 4)"),
        opt("--uid-pool", default=None, help="User-id pool"),
    ], "Initialises a new cluster with this node as master", 1, 1),
    "destroy": Command(destroy, "", [base.YES_DOIT_OPT],
                       "Destroy the cluster (the last node); irreversible"),
    "getmaster": Command(getmaster, "", [], "Prints the master node name"),
    "master-ping": Command(master_ping, "", [], "Exit 0 if the master daemon answers"),
    "version": Command(version, "", [], "Shows the cluster version"),
    "info": Command(show_info, "", [opt("--roman", action="store_true", default=False,
                                        help=argparse.SUPPRESS)],
                    "Show cluster configuration", aliases=["show"]),
    "verify-disks": Command(verify_disks, "", base.SUBMIT_OPTS + [
        opt("-g", "--node-group", dest="nodegroup", default=None,
            help="Verify only the disks of this node group's instances")],
        "Activate the disks of instances with inactive or degraded disks and report"
        " missing logical volumes"),
    "repair-disk-sizes": Command(repair_disk_sizes, "[<instance>...]", base.SUBMIT_OPTS,
                                 "Correct the recorded disk sizes from the nodes' view",
                                 0, None),
    "verify": Command(verify, "", base.SUBMIT_OPTS + [
        base.VERBOSE_OPT,
        opt("--error-codes", action="store_true", default=False, help="Report error codes"),
        opt("-I", "--ignore-errors", action="append", default=None,
            help="Error code to ignore (repeatable)"),
        opt("--no-nplus1-mem", action="store_true", default=False, help="Skip N+1 memory check"),
        opt("-g", "--node-group", dest="nodegroup", default=None, help="Verify only this group"),
        opt("--verify-ssh-clutter", action="store_true", default=False,
            help="Check authorized_keys for clutter"),
        opt("--no-hv-param-assessment", action="store_true", default=False,
            help="Skip hypervisor parameter assessment"),
    ], "Verify the cluster configuration and state"),
    "modify": Command(modify, "", base.SUBMIT_OPTS + _INIT_MODIFY_OPTS + [
        opt("-C", "--candidate-pool-size", type=int, default=None, help="Candidate pool size"),
        opt("--max-running-jobs", type=int, default=None, help="Maximum running jobs"),
        opt("--max-tracked-jobs", type=int, default=None, help="Maximum tracked jobs"),
        opt("--reserved-lvs", default=None, help="Comma-separated reserved LVs"),
        opt("--enabled-user-shutdown", default=None, help="yes|no"),
    ], "Alters the parameters of the cluster"),
    "master-failover": Command(master_failover, "", [
        opt("--no-voting", action="store_true", default=False,
            help="Skip the vote of the other nodes (needed when most of them are down)"),
        base.YES_DOIT_OPT,
    ], "Make this node (a master candidate) the master", aliases=["masterfailover"]),
    "activate-master-ip": Command(activate_master_ip, "", base.SUBMIT_OPTS,
                                  "Activate the master IP on the master node"),
    "deactivate-master-ip": Command(deactivate_master_ip, "", base.SUBMIT_OPTS + [
        opt("--yes", dest="yes_do_it", action="store_true", default=False,
            help="Do not ask for confirmation")],
        "Deactivate the master IP on the master node"),
    "redist-conf": Command(redist_conf, "", base.SUBMIT_OPTS,
                           "Forces a push of the configuration file and ssconf files"),
    "rename": Command(rename, "<new-name>", base.SUBMIT_OPTS + [base.FORCE_OPT],
                      "Renames the cluster", 1, 1),
    "queue": Command(queue_ops, "drain|undrain|info", [], "Change queue properties", 1, 1),
    "watcher": Command(watcher_ops, "{pause <timespec>|continue|info}", [],
                       "Change watcher properties", 1, 2),
    "list-tags": Command(list_tags, "", [], "List the tags of the cluster"),
    "add-tags": Command(add_tags, "<tag>...", base.SUBMIT_OPTS + [base.TAG_SRC_OPT],
                        "Add tags to the cluster", 0, None),
    "remove-tags": Command(remove_tags, "<tag>...", base.SUBMIT_OPTS + [base.TAG_SRC_OPT],
                           "Remove tags from the cluster", 0, None),
    "search-tags": Command(search_tags, "<regex>", [], "Searches the tags of all objects", 1, 1),
}


def main(argv: list[str] | None = None) -> int:
    return base.generic_main("gnt-cluster", COMMANDS, argv,
                             "Cluster administration for Corral (Ganeti-compatible)")
