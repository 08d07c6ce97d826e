"""Creating and destroying a cluster on the node the command runs on.

``init_cluster`` is the only code that writes a configuration without a
master daemon: it runs on the future master, creates certificates, the
first config and ssconf, starts the daemons and submits OP_CLUSTER_POST_INIT.
Failures before the daemons start leave nothing behind.
"""

import os
import shutil
from dataclasses import dataclass, field
from typing import Callable

from corral import certs, config, constants, errors, netutils, objects, pathutils, ssconf
from corral.utils import io, process


@dataclass
class InitParams:
    cluster_name: str
    secondary_ip: str | None = None
    enabled_hypervisors: list[str] = field(default_factory=lambda: [constants.HT_KVM])
    enabled_disk_templates: list[str] = field(
        default_factory=lambda: list(constants.DEFAULT_ENABLED_DISK_TEMPLATES))
    hvparams: dict[str, dict] = field(default_factory=dict)
    beparams: dict = field(default_factory=dict)
    nicparams: dict = field(default_factory=dict)
    ndparams: dict = field(default_factory=dict)
    diskparams: dict[str, dict] = field(default_factory=dict)
    ipolicy: dict = field(default_factory=dict)
    vg_name: str | None = None
    master_netdev: str | None = None
    master_netmask: int | None = None
    file_storage_dir: str | None = None
    shared_file_storage_dir: str | None = None
    drbd_helper: str | None = None
    default_iallocator: str = ""
    default_iallocator_params: dict = field(default_factory=dict)
    candidate_pool_size: int = constants.DEFAULT_CANDIDATE_POOL_SIZE
    mac_prefix: str = constants.DEFAULT_MAC_PREFIX
    modify_etc_hosts: bool = True
    maintain_node_health: bool = False
    prealloc_wipe_disks: bool = False
    uid_pool: list = field(default_factory=list)
    noded_port: int = constants.DEFAULT_NODED_PORT


def _validate(p: InitParams) -> None:
    from corral.cmdlib import cluster as cl
    for hv in p.enabled_hypervisors:
        if hv not in constants.HYPER_TYPES:
            raise errors.OpPrereqError("Unknown hypervisor '%s' (known: %s)" %
                                       (hv, ", ".join(sorted(constants.HYPER_TYPES))),
                                       errors.ECODE_INVAL)
    if not p.enabled_hypervisors:
        raise errors.OpPrereqError("At least one hypervisor must be enabled", errors.ECODE_INVAL)
    for tmpl in p.enabled_disk_templates:
        if tmpl not in constants.DISK_TEMPLATES:
            raise errors.OpPrereqError("Unknown disk template '%s' (known: %s)" %
                                       (tmpl, ", ".join(sorted(constants.DISK_TEMPLATES))),
                                       errors.ECODE_INVAL)
    for hv, params in p.hvparams.items():
        if hv not in p.enabled_hypervisors:
            raise errors.OpPrereqError("Parameters given for hypervisor '%s', which is not"
                                       " enabled" % hv, errors.ECODE_INVAL)
        p.hvparams[hv] = cl.check_hv_params(hv, params, cluster_level=True)
    p.beparams = cl.check_be_params(p.beparams)
    if p.candidate_pool_size < 1:
        raise errors.OpPrereqError("The candidate pool size must be at least 1",
                                   errors.ECODE_INVAL)
    import re
    if not re.match(r"^[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}$", p.mac_prefix):
        raise errors.OpPrereqError("Invalid MAC prefix '%s' (expected three hex octets like"
                                   " aa:00:00)" % p.mac_prefix, errors.ECODE_INVAL)
    if constants.DTS_LVM & set(p.enabled_disk_templates) and not (p.vg_name or "").strip():
        raise errors.OpPrereqError("A volume group name (--vg-name) is needed for the lvm-based"
                                   " templates %s; disable them with --enabled-disk-templates" %
                                   ", ".join(sorted(constants.DTS_LVM &
                                                    set(p.enabled_disk_templates))),
                                   errors.ECODE_INVAL)


def init_cluster(p: InitParams, feedback: Callable[[str], None]) -> None:
    """Make this node the master of a new one-node cluster and start its daemons."""
    if os.path.exists(pathutils.config_file()):
        raise errors.OpPrereqError("Cluster is already initialised", errors.ECODE_STATE)
    _validate(p)
    hostname = netutils.get_hostname()
    node_fqdn, node_ip = netutils.resolve(hostname)
    cluster_fqdn, cluster_ip = netutils.resolve(p.cluster_name)
    if cluster_ip != node_ip and netutils.tcp_ping(cluster_ip, p.noded_port, 1.0):
        raise errors.OpPrereqError("Cluster IP %s is already in use (it answers on port %d)" %
                                   (cluster_ip, p.noded_port), errors.ECODE_NOTUNIQUE)
    secondary_ip = p.secondary_ip or node_ip
    if not netutils.is_valid_ip4(secondary_ip):
        raise errors.OpPrereqError("Invalid secondary IP '%s'" % secondary_ip, errors.ECODE_INVAL)
    pathutils.ensure_dirs()
    try:
        _create_files(p, node_fqdn, node_ip, secondary_ip, cluster_fqdn, cluster_ip, feedback)
    except BaseException:
        _remove_state()
        raise


def _create_files(p: InitParams, node_fqdn: str, node_ip: str, secondary_ip: str,
                  cluster_fqdn: str, cluster_ip: str, feedback: Callable[[str], None]) -> None:
    feedback("Generating cluster certificates")
    certs.generate_cluster_ca(pathutils.cluster_ca_file(), cluster_fqdn)
    certs.generate_node_cert(pathutils.cluster_ca_file(), pathutils.node_cert_file(), node_fqdn)
    certs.generate_self_signed(pathutils.rapi_cert_file(), cluster_fqdn)
    cluster = objects.Cluster(
        uuid=config.new_uuid(), cluster_name=cluster_fqdn, master_ip=cluster_ip,
        master_netdev=p.master_netdev or "", master_netmask=p.master_netmask or 32,
        volume_group_name=p.vg_name or "",
        drbd_usermode_helper=p.drbd_helper or constants.DEFAULT_DRBD_HELPER,
        file_storage_dir=p.file_storage_dir or constants.DEFAULT_FILE_STORAGE_DIR,
        shared_file_storage_dir=p.shared_file_storage_dir or
        constants.DEFAULT_SHARED_FILE_STORAGE_DIR,
        enabled_hypervisors=list(p.enabled_hypervisors), hvparams=dict(p.hvparams),
        beparams={"default": dict(p.beparams)}, nicparams={"default": dict(p.nicparams)},
        ndparams=dict(p.ndparams), diskparams=dict(p.diskparams), ipolicy=dict(p.ipolicy),
        candidate_pool_size=p.candidate_pool_size, mac_prefix=p.mac_prefix,
        default_iallocator=p.default_iallocator,
        default_iallocator_params=dict(p.default_iallocator_params),
        enabled_disk_templates=list(p.enabled_disk_templates),
        modify_etc_hosts=p.modify_etc_hosts, maintain_node_health=p.maintain_node_health,
        prealloc_wipe_disks=p.prealloc_wipe_disks, uid_pool=list(p.uid_pool),
        noded_port=p.noded_port)
    group = objects.NodeGroup(uuid=config.new_uuid(), name=constants.INITIAL_NODE_GROUP_NAME)
    master = objects.Node(uuid=config.new_uuid(), name=node_fqdn, primary_ip=node_ip,
                          secondary_ip=secondary_ip, master_candidate=True)
    feedback("Writing the configuration")
    cfg = config.ConfigWriter.create(pathutils.config_file(), cluster, master, group)
    ssconf.write_ssconf(cfg.get_ssconf_values())
    _write_file_storage_paths(cfg.get_ssconf_values())
    feedback("Starting the daemons")
    start_daemons()


def _write_file_storage_paths(values: dict[str, str]) -> None:
    from corral.backend import cluster_membership
    cluster_membership.prepare_storage_dirs(values)


def start_daemons() -> None:
    process.check_cmd(["corral-daemon-util", "start-all"], errors.OpExecError)


def stop_daemons() -> None:
    process.check_cmd(["corral-daemon-util", "stop-all"], errors.OpExecError)


def _remove_state() -> None:
    """Remove every file of this node's cluster membership (config, queue, certs, ssconf)."""
    for directory in (pathutils.data_dir(), pathutils.run_dir()):
        if os.path.isdir(directory):
            for name in os.listdir(directory):
                path = os.path.join(directory, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    io.remove_file(path)
    io.remove_file(pathutils.file_storage_paths_file())


def destroy_local_cluster() -> None:
    """After OP_CLUSTER_DESTROY succeeded: stop the daemons and remove all state."""
    stop_daemons()
    _remove_state()

