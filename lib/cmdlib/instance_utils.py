"""Helpers shared by the instance logical units.

Pure builders (hook environment, filled parameters, the RPC shapes of an
instance and its disks) and the common base class of LUs that act on one
existing instance.  Nothing here changes the configuration.
"""

import re
from typing import Any

from corral import constants, errors, locking, netutils, objects
from corral.cmdlib import cluster as cluster_lu
from corral.cmdlib.base import LogicalUnit, expand_instance
from corral.hypervisor import hvparams

# Instance names are host names (spec/opcodes.md §4: resolvable FQDNs).
_NAME_RE = re.compile(r"^(?=.{1,255}$)[a-z0-9](?:[a-z0-9-]{0,62})"
                      r"(?:\.[a-z0-9](?:[a-z0-9-]{0,62}))*$", re.I)
FILE_DRIVER_DEFAULT = "loop"


# ---- names ----------------------------------------------------------------------------

def check_instance_name(name: str) -> str:
    """``name`` lower-cased if it is a valid host name; OpPrereqError(ECODE_INVAL) otherwise."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or name.endswith("-") \
            or any(part.endswith("-") for part in name.split(".")):
        raise errors.OpPrereqError(
            "Invalid instance name '%s': expected a host name (letters, digits and '-'"
            " in dot separated labels of at most 63 characters)" % (name,), errors.ECODE_INVAL)
    return name.lower()


def resolve_instance_name(name: str) -> tuple[str, str]:
    """(full name, IPv4) of an instance name through the resolver (name_check).

    Like Ganeti, the resolved name must begin with the given one, so a typo
    cannot silently pick another host's name.
    """
    try:
        full, ip = netutils.resolve(name)
    except errors.ResolverError as err:
        raise errors.OpPrereqError("%s (use --no-name-check to skip the name check)" %
                                   err.args[0], errors.ECODE_RESOLVER) from None
    full = full.rstrip(".").lower()
    if full != name and not full.startswith(name + "."):
        raise errors.OpPrereqError("Resolved hostname '%s' does not look the same as given"
                                   " hostname '%s'" % (full, name), errors.ECODE_INVAL)
    return full, ip


def ec_id(lu: LogicalUnit) -> Any:
    """The execution context id (the job id) reservations are held under."""
    return lu.proc.cbs.job_id


# ---- parameters -----------------------------------------------------------------------

def filled_hvparams(cluster: objects.Cluster, hv: str, os_name: str | None,
                    custom: dict | None) -> dict:
    """cluster ← OS (os_hvp, base name then name+variant) ← instance (spec §1)."""
    os_hvp: dict = {}
    if os_name:
        base = os_name.split("+", 1)[0]
        os_hvp.update(cluster.os_hvp.get(base, {}).get(hv, {}))
        if base != os_name:
            os_hvp.update(cluster.os_hvp.get(os_name, {}).get(hv, {}))
    return hvparams.fill_hvparams(hv, cluster.hvparams.get(hv, {}), os_hvp, custom or {})


def filled_beparams(cluster: objects.Cluster, custom: dict | None) -> dict:
    return hvparams.fill_beparams(cluster.beparams.get("default", {}), custom or {})


def filled_osparams(cluster: objects.Cluster, os_name: str | None, custom: dict | None) -> dict:
    """cluster osparams[base] ← osparams[name+variant] ← instance."""
    out: dict = {}
    if os_name:
        base = os_name.split("+", 1)[0]
        out.update(cluster.osparams.get(base, {}))
        if base != os_name:
            out.update(cluster.osparams.get(os_name, {}))
    out.update(custom or {})
    return out


def filled_nicparams(cluster: objects.Cluster, nic: objects.NIC) -> dict:
    return objects.fill_dict(cluster_lu.filled_nicparams(cluster), nic.nicparams)


def instance_params(cfg, inst: objects.Instance) -> tuple[dict, dict, dict]:
    """(filled hvparams, filled beparams, filled osparams) of ``inst``."""
    cluster = cfg.get_cluster_info()
    return (filled_hvparams(cluster, inst.hypervisor, inst.os, inst.hvparams),
            filled_beparams(cluster, inst.beparams),
            filled_osparams(cluster, inst.os, inst.osparams))


# ---- RPC shapes ---------------------------------------------------------------------------

def storage_dirs(cluster: objects.Cluster) -> list[str]:
    """Directories file-based disks may live in (passed to the node's file driver)."""
    return [d for d in (cluster.file_storage_dir, cluster.shared_file_storage_dir) if d]


def disk_rpc(cluster: objects.Cluster, disk: objects.Disk) -> dict:
    """A disk as the node's storage layer needs it (backend/disks.py)."""
    params = dict(disk.params)
    if disk.dev_type in constants.DTS_FILEBASED:
        params["allowed_dirs"] = storage_dirs(cluster)
    return {"dev_type": disk.dev_type, "logical_id": list(disk.logical_id or []),
            "size": disk.size, "params": params, "uuid": disk.uuid, "name": disk.name,
            "mode": disk.mode, "iv_name": disk.iv_name,
            "children": [disk_rpc(cluster, c) for c in disk.children]}


def nic_rpc(cluster: objects.Cluster, nic: objects.NIC) -> dict:
    """A NIC with filled nicparams (hypervisor NicSpec keys; OS env keys)."""
    params = filled_nicparams(cluster, nic)
    return {"mac": nic.mac, "ip": nic.ip, "mode": params.get("mode"),
            "link": params.get("link", ""), "vlan": params.get("vlan", ""),
            "uuid": nic.uuid or "", "name": nic.name, "network": nic.network}


def instance_rpc(cfg, inst: objects.Instance, hvp: dict | None = None,
                 bep: dict | None = None) -> dict:
    """The InstanceSpec dict the node's hypervisor receives (params filled).

    ``hvp``/``bep`` are one-shot overrides (startup -H/-B), applied on top.
    """
    cluster = cfg.get_cluster_info()
    hv, be, _os = instance_params(cfg, inst)
    if hvp:
        hv.update(hvp)
    if bep:
        be.update(hvparams.upgrade_beparams(bep))
    return {"name": inst.name, "uuid": inst.uuid, "hvparams": hv, "beparams": be,
            "nics": [nic_rpc(cluster, n) for n in inst.nics],
            "network_port": inst.network_port, "hypervisor": inst.hypervisor}


def os_instance_rpc(cfg, inst: objects.Instance) -> dict:
    """The instance dict osdef's environment builders take (node names, not UUIDs)."""
    return {"name": inst.name, "uuid": inst.uuid, "os": inst.os,
            "primary_node": node_name(cfg, inst.primary_node),
            "secondary_nodes": [node_name(cfg, n) for n in inst.secondary_nodes],
            "ctime": inst.ctime, "mtime": inst.mtime}


def os_install_args(cfg, inst: objects.Instance, osparams_extra: dict | None = None,
                    reinstall: bool = False, debug: int = 0) -> dict:
    """Arguments of the ``instance_os_add`` procedure for ``inst``."""
    from corral.cmdlib import instance_storage as ist  # builds on this module
    cluster = cfg.get_cluster_info()
    hv, be, osp = instance_params(cfg, inst)
    osp.update(inst.osparams_private or {})
    osp.update(osparams_extra or {})
    return {"instance": os_instance_rpc(cfg, inst),
            "disks": [ist.disk_rpc(cfg, d) for d in inst.disks],
            "nics": [nic_rpc(cluster, n) for n in inst.nics],
            "hypervisor": inst.hypervisor, "hvparams": hv, "beparams": be,
            "osparams": osp, "reinstall": reinstall, "debug": debug}


def node_name(cfg, uuid: str) -> str:
    node = cfg.get_node_info(uuid)
    return node.name if node is not None else uuid


# ---- hooks ------------------------------------------------------------------------------

def _logical_id_env(pre: str, disk: dict) -> dict[str, Any]:
    lid = list(disk.get("logical_id") or [])
    dev_type = disk.get("dev_type")
    if len(lid) != 2:
        return {}
    if dev_type == constants.DT_PLAIN:
        return {pre + "VG": lid[0], pre + "ID": lid[1]}
    if dev_type in (constants.DT_FILE, constants.DT_SHARED_FILE, constants.DT_BLOCK,
                    constants.DT_RBD, constants.DT_EXT, constants.DT_GLUSTER):
        return {pre + "DRIVER": lid[0], pre + "ID": lid[1]}
    return {}


def build_instance_hook_env(name: str, primary: str, secondaries: list[str], os_type: str,
                            status: str, nics: list[dict], disk_template: str,
                            disks: list[dict], bep: dict, hvp: dict, hypervisor: str,
                            tags: list[str]) -> dict[str, Any]:
    """The instance variables of spec/hooks.md §2.2 (without the GANETI_ prefix).

    Pure: ``nics`` are dicts with mac/ip/mode/link/vlan/uuid/name (filled
    nicparams), ``disks`` with size/mode/uuid/name/dev_type/logical_id,
    ``bep``/``hvp`` filled.
    """
    env: dict[str, Any] = {
        "INSTANCE_NAME": name, "INSTANCE_PRIMARY": primary,
        "INSTANCE_SECONDARIES": " ".join(secondaries), "INSTANCE_OS_TYPE": os_type or "",
        "INSTANCE_STATUS": status, "INSTANCE_MINMEM": bep.get("minmem"),
        "INSTANCE_MAXMEM": bep.get("maxmem"), "INSTANCE_MEMORY": bep.get("maxmem"),
        "INSTANCE_VCPUS": bep.get("vcpus"), "INSTANCE_DISK_TEMPLATE": disk_template,
        "INSTANCE_HYPERVISOR": hypervisor, "INSTANCE_NIC_COUNT": len(nics),
        "INSTANCE_DISK_COUNT": len(disks), "INSTANCE_TAGS": " ".join(tags),
    }
    for idx, nic in enumerate(nics):
        pre = "INSTANCE_NIC%d_" % idx
        env[pre + "UUID"] = nic.get("uuid") or ""
        env[pre + "IP"] = nic.get("ip") or ""
        env[pre + "MAC"] = nic.get("mac") or ""
        env[pre + "MODE"] = nic.get("mode") or ""
        env[pre + "LINK"] = nic.get("link") or ""
        env[pre + "VLAN"] = nic.get("vlan") or ""
        if nic.get("name"):
            env[pre + "NAME"] = nic["name"]
        if nic.get("mode") in (constants.NIC_MODE_BRIDGED, constants.NIC_MODE_OVS):
            env[pre + "BRIDGE"] = nic.get("link") or ""
    for idx, disk in enumerate(disks):
        pre = "INSTANCE_DISK%d_" % idx
        env[pre + "SIZE"] = disk.get("size")
        env[pre + "MODE"] = disk.get("mode") or constants.DISK_RDWR
        env[pre + "UUID"] = disk.get("uuid") or ""
        if disk.get("name"):
            env[pre + "NAME"] = disk["name"]
        env.update(_logical_id_env(pre, disk))
    for key, value in bep.items():
        env["INSTANCE_BE_%s" % key] = value
    for key, value in hvp.items():
        env["INSTANCE_HV_%s" % key] = value
    return env


def instance_hook_env(cfg, inst: objects.Instance) -> dict[str, Any]:
    """build_instance_hook_env for a configuration instance."""
    cluster = cfg.get_cluster_info()
    hv, be, _os = instance_params(cfg, inst)
    return build_instance_hook_env(
        inst.name, node_name(cfg, inst.primary_node),
        [node_name(cfg, n) for n in inst.secondary_nodes], inst.os or "", inst.admin_state,
        [nic_rpc(cluster, n) for n in inst.nics], inst.disk_template,
        [disk_rpc(cluster, d) for d in inst.disks], be, hv, inst.hypervisor, list(inst.tags))


# ---- checks -----------------------------------------------------------------------------

def check_node_online(cfg, node_uuid: str, what: str = "") -> objects.Node:
    node = cfg.get_node_info(node_uuid)
    if node is None:
        raise errors.OpPrereqError("Node %s not known" % node_uuid, errors.ECODE_NOENT)
    if node.offline:
        raise errors.OpPrereqError("Can't use offline node %s%s" %
                                   (node.name, (" " + what) if what else ""), errors.ECODE_STATE)
    return node


def check_instance_down(lu: "InstanceLU", reason: str) -> None:
    """OpPrereqError unless the instance is stopped (admin and actual state)."""
    inst = lu.instance
    if inst.admin_state == constants.ADMINST_UP:
        raise errors.OpPrereqError("Instance %s is marked to be up, cannot %s" %
                                   (inst.name, reason), errors.ECODE_STATE)
    if running_on_primary(lu, inst):
        raise errors.OpPrereqError("Instance %s is running, cannot %s" % (inst.name, reason),
                                   errors.ECODE_STATE)


def running_on_primary(lu: LogicalUnit, inst: objects.Instance) -> bool:
    """Whether the hypervisor on the primary reports ``inst`` running (RPC)."""
    node = lu.cfg.get_node_info(inst.primary_node)
    if node is None or node.offline:
        return False
    res = lu.rpc.call_one("instance_info", node.name,
                          {"hypervisor": inst.hypervisor, "name": inst.name})
    res.raise_if_failed("Cannot get the state of instance %s" % inst.name)
    return res.data is not None


def node_checks(lu: LogicalUnit, node: str, hv: str, hvparams: dict | None = None,
                os_name: str = "", nics: list[dict] | None = None, memory: int | None = None,
                reason: str = "") -> dict | None:
    """Node facts for hosting an instance, in one RPC; OpPrereqError naming each problem.

    ``hvparams`` (filled) are validated node-side, the bridges of bridged
    ``nics`` must exist, ``memory`` MiB must be free.  Returns the OS
    definition dict when ``os_name`` is given (the caller checks it).
    """
    bridges = sorted({n["link"] for n in nics or [] if n.get("mode") == constants.NIC_MODE_BRIDGED})
    res = lu.rpc.call_one("instance_node_checks", node, {
        "hypervisor": hv, "hvparams": hvparams, "os_name": os_name or "", "bridges": bridges,
        "memory": memory is not None})
    res.raise_if_failed("Cannot check node %s" % node)
    data = res.data or {}
    if data.get("hv_error"):
        raise errors.OpPrereqError("Hypervisor parameter validation failed on node %s: %s" %
                                   (node, data["hv_error"]), errors.ECODE_INVAL)
    if data.get("missing_bridges"):
        raise errors.OpPrereqError("One or more target bridges %s does not exist on"
                                   " destination node '%s'" %
                                   (", ".join(data["missing_bridges"]), node),
                                   errors.ECODE_ENVIRON)
    if memory is not None:
        free = data.get("memory_free")
        if not isinstance(free, int):
            raise errors.OpPrereqError("Can't compute free memory on node %s, result was '%s'"
                                       % (node, free), errors.ECODE_ENVIRON)
        node_obj = lu.cfg.get_node_by_name(node)
        lu.cfg.reserve_node_memory(ec_id(lu), node_obj.uuid if node_obj else node, memory,
                                   free, node, reason)
    return data.get("os")


def check_free_memory(lu: LogicalUnit, node: str, hv: str, needed: int, reason: str) -> None:
    """OpPrereqError(ECODE_NORES) if ``node`` has less than ``needed`` MiB free."""
    node_checks(lu, node, hv, memory=needed, reason=reason)


def release_node_res(lu: LogicalUnit) -> None:
    """Give back the node-res locks early, once the resources are accounted for."""
    if lu.owned(locking.LEVEL_NODE_RES):
        lu.context.glm.release(lu.proc.owner, locking.LEVEL_NODE_RES)


# ---- base class -------------------------------------------------------------------------

class InstanceLU(LogicalUnit):
    """An LU acting on one existing instance.

    Locks: the instance (exclusive, by name), then its nodes (exclusive unless
    ``NODES_SHARED``) and, with ``LOCK_NODE_RES``, their node-res locks.
    ``check_prereq`` sets ``self.instance`` (the live configuration object).
    Hooks run on the master, the primary and the secondaries (spec/hooks.md §3).
    """

    HTYPE = constants.HTYPE_INSTANCE
    LOCK_NODES = True
    LOCK_NODE_RES = False
    NODES_SHARED = False
    instance: objects.Instance

    def expand_names(self) -> None:
        inst = expand_instance(self.cfg, self.op.instance_name)
        self.inst_name = inst.name
        self.needed_locks[locking.LEVEL_INSTANCE] = [inst.name]
        if self.LOCK_NODES:
            self.needed_locks[locking.LEVEL_NODE] = []
            self.share_locks[locking.LEVEL_NODE] = self.NODES_SHARED
        if self.LOCK_NODE_RES:
            self.needed_locks[locking.LEVEL_NODE_RES] = []

    def lock_node_uuids(self, inst: objects.Instance) -> list[str]:
        """Nodes locked once the instance lock is held (default: all its nodes)."""
        return list(inst.all_nodes)

    def declare_locks(self, level: int) -> None:
        if level not in (locking.LEVEL_NODE, locking.LEVEL_NODE_RES):
            return
        if level not in self.needed_locks:
            return
        inst = self.cfg.get_instance_by_name(self.inst_name)
        if inst is not None:
            self.needed_locks[level] = self.lock_node_uuids(inst)

    def check_prereq(self) -> None:
        inst = self.cfg.get_instance_by_name(self.inst_name)
        if inst is None:
            raise errors.OpPrereqError("Instance '%s' not known" % self.inst_name,
                                       errors.ECODE_NOENT)
        self.instance = inst
        self.pnode = self.cfg.get_node_info(inst.primary_node)

    def hooks_target(self) -> str:
        return self.inst_name

    def extra_hooks_env(self) -> dict[str, Any]:
        return {}

    def build_hooks_env(self) -> dict[str, Any]:
        env = instance_hook_env(self.cfg, self.instance)
        env.update(self.extra_hooks_env())
        return env

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        nodes = [self.master_uuid] + list(self.instance.all_nodes)
        return nodes, list(nodes)
