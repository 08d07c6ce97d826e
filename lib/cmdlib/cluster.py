"""Logical units for the cluster as a whole: init hooks, query, modify, destroy, redist."""

import copy
import functools
import platform
from typing import Any, Callable

from corral import constants, errors, locking, objects
from corral.cmdlib.base import LogicalUnit, NoHooksLU
from corral.hypervisor import hvparams


@functools.lru_cache(maxsize=1)
def _architecture() -> tuple[str, str]:
    """Ganeti's (bits, machine) pair; computed once (platform.architecture() runs
    ``file`` on the interpreter each call)."""
    return ("64bit" if platform.architecture()[0] == "64bit" else "32bit", platform.machine())


def cluster_info(cfg) -> dict[str, Any]:
    """The cluster description returned by OP_CLUSTER_QUERY and RAPI /2/info (spec §6)."""
    c: objects.Cluster = cfg.get_cluster_info()
    beparams = {"default": dict(_filled_beparams(c))}
    beparams["default"]["memory"] = beparams["default"].get("maxmem")
    return {
        "software_version": constants.RELEASE_VERSION,
        "protocol_version": constants.PROTOCOL_VERSION,
        "config_version": constants.CONFIG_VERSION,
        "os_api_version": max(constants.OS_API_VERSIONS),
        "export_version": constants.EXPORT_VERSION,
        "vcs_version": constants.VCS_VERSION,
        "architecture": list(_architecture()),
        "name": c.cluster_name,
        "master": cfg.get_master_node_name(),
        "default_hypervisor": c.primary_hypervisor,
        "enabled_hypervisors": list(c.enabled_hypervisors),
        "hvparams": {hv: filled_hvparams(c, hv) for hv in c.enabled_hypervisors},
        "os_hvp": copy.deepcopy(c.os_hvp),
        "beparams": beparams,
        "osparams": copy.deepcopy(c.osparams),
        "ipolicy": filled_ipolicy(c),
        "nicparams": {"default": filled_nicparams(c)},
        "ndparams": filled_ndparams(c),
        "diskparams": filled_diskparams(c),
        "candidate_pool_size": c.candidate_pool_size,
        "max_running_jobs": c.max_running_jobs,
        "max_tracked_jobs": c.max_tracked_jobs,
        "mac_prefix": c.mac_prefix,
        "master_netdev": c.master_netdev,
        "master_netmask": c.master_netmask,
        "use_external_mip_script": c.use_external_mip_script,
        "volume_group_name": c.volume_group_name,
        "vg_name": c.volume_group_name,
        "drbd_usermode_helper": c.drbd_usermode_helper,
        "drbd_helper": c.drbd_usermode_helper,
        "file_storage_dir": c.file_storage_dir,
        "shared_file_storage_dir": c.shared_file_storage_dir,
        "gluster_storage_dir": c.gluster_storage_dir,
        "maintain_node_health": c.maintain_node_health,
        "ctime": c.ctime,
        "mtime": c.mtime,
        "uuid": c.uuid,
        "tags": list(c.tags),
        "uid_pool": list(c.uid_pool),
        "default_iallocator": c.default_iallocator,
        "default_iallocator_params": dict(c.default_iallocator_params),
        "reserved_lvs": list(c.reserved_lvs),
        "primary_ip_version": 4 if c.primary_ip_family == 2 else 6,
        "prealloc_wipe_disks": c.prealloc_wipe_disks,
        "hidden_os": list(c.hidden_os),
        "blacklisted_os": list(c.blacklisted_os),
        "enabled_disk_templates": list(c.enabled_disk_templates),
        "install_image": c.install_image,
        "instance_communication_network": c.instance_communication_network,
        "zeroing_image": c.zeroing_image,
        "compression_tools": list(c.compression_tools),
        "enabled_user_shutdown": c.enabled_user_shutdown,
        "enabled_data_collectors": dict(c.enabled_data_collectors),
        "data_collector_interval": dict(c.data_collector_interval),
        "modify_ssh_setup": c.modify_ssh_setup,
        "ssh_key_type": c.ssh_key_type,
        "ssh_key_bits": c.ssh_key_bits,
    }


# ---- parameter defaults (spec/hypervisors-storage.md §1-3, §6) -------------------------

NDPARAMS_DEFAULTS = {"oob_program": "", "spindle_count": 1, "exclusive_storage": False,
                     "ovs": False, "ovs_name": "switch1", "ovs_link": "", "ssh_port": 22,
                     "cpu_speed": 1.0}
NICPARAMS_DEFAULTS = {"mode": constants.NIC_MODE_BRIDGED, "link": constants.DEFAULT_BRIDGE,
                      "vlan": ""}
IPOLICY_DEFAULTS = {
    "minmax": [{"min": {"memory-size": 128, "cpu-count": 1, "disk-count": 1, "disk-size": 1024,
                        "nic-count": 1, "spindle-use": 1},
                "max": {"memory-size": 32768, "cpu-count": 8, "disk-count": 16,
                        "disk-size": 1048576, "nic-count": 8, "spindle-use": 12}}],
    "std": {"memory-size": 128, "cpu-count": 1, "disk-count": 1, "disk-size": 1024,
            "nic-count": 1, "spindle-use": 1},
    "disk-templates": sorted(constants.DISK_TEMPLATES - {constants.DT_MIRROR}),
    "vcpu-ratio": 4.0,
    "spindle-ratio": 32.0,
}
DISKPARAMS_DEFAULTS = {
    constants.DT_PLAIN: {"stripes": 1},
    constants.DT_DRBD8: {"resync-rate": 61440, "dynamic-resync": False, "c-plan-ahead": 20,
                         "c-fill-target": 0, "c-delay-target": 1, "c-max-rate": 61440,
                         "c-min-rate": 4096, "disk-barriers": "n", "meta-barriers": False,
                         "metavg": constants.DEFAULT_VG, "data-stripes": 1, "meta-stripes": 1,
                         "protocol": "C", "disk-custom": "", "net-custom": ""},
    constants.DT_FILE: {}, constants.DT_SHARED_FILE: {}, constants.DT_BLOCK: {},
    constants.DT_DISKLESS: {},
    constants.DT_RBD: {"pool": "rbd", "access": "kernelspace"},
    constants.DT_EXT: {"access": "kernelspace"},
    constants.DT_GLUSTER: {"host": "127.0.0.1", "port": 24007, "volume": "gv0",
                           "access": "kernelspace"},
    # storage/mirror.py: TCP give-up and keepalive of the replication links (seconds).
    constants.DT_MIRROR: {"tcp-retries2": 4, "keepalive-idle": 5, "keepalive-interval": 2,
                          "keepalive-count": 3, "connect-timeout": 5},
}


def _hv_defaults(hv: str) -> dict:
    return hvparams.hv_defaults(hv) if hv in hvparams.HV_PARAMS else {}


def _be_defaults() -> dict:
    return hvparams.be_defaults()


def filled_hvparams(c: objects.Cluster, hv: str) -> dict:
    return objects.fill_dict(_hv_defaults(hv), c.hvparams.get(hv, {}))


def _filled_beparams(c: objects.Cluster) -> dict:
    return objects.fill_dict(_be_defaults(), c.beparams.get("default", {}))


def filled_nicparams(c: objects.Cluster) -> dict:
    return objects.fill_dict(NICPARAMS_DEFAULTS, c.nicparams.get("default", {}))


def filled_ndparams(c: objects.Cluster) -> dict:
    return objects.fill_dict(NDPARAMS_DEFAULTS, c.ndparams)


def filled_ipolicy(c: objects.Cluster) -> dict:
    return objects.fill_dict(IPOLICY_DEFAULTS, c.ipolicy)


def filled_diskparams(c: objects.Cluster) -> dict:
    return {t: objects.fill_dict(d, c.diskparams.get(t, {}))
            for t, d in DISKPARAMS_DEFAULTS.items()}


# ---- logical units -------------------------------------------------------------------

class LUClusterPostInit(LogicalUnit):
    HPATH = "cluster-init"
    HTYPE = constants.HTYPE_CLUSTER
    REQ_BGL = True

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        return [], [self.master_uuid]

    def hooks_target(self) -> str:
        return self.cfg.get_cluster_name()

    def exec(self, feedback_fn: Callable[[str], None]) -> bool:
        return True


class LUClusterQuery(NoHooksLU):
    def exec(self, feedback_fn: Callable[[str], None]) -> dict:
        return cluster_info(self.cfg)


class LUClusterDestroy(LogicalUnit):
    """Checks the cluster is empty; the caller (gnt-cluster destroy) then stops the daemons."""

    HPATH = "cluster-destroy"
    HTYPE = constants.HTYPE_CLUSTER
    REQ_BGL = True

    def hooks_target(self) -> str:
        return self.cfg.get_cluster_name()

    def check_prereq(self) -> None:
        nodes = self.cfg.get_all_nodes()
        if len(nodes) != 1:
            raise errors.OpPrereqError("There are still %d node(s) in this cluster." %
                                       (len(nodes) - 1), errors.ECODE_INVAL)
        instances = self.cfg.get_all_instances()
        if instances:
            raise errors.OpPrereqError("There are still %d instance(s) in this cluster." %
                                       len(instances), errors.ECODE_INVAL)

    def exec(self, feedback_fn: Callable[[str], None]) -> str:
        master = self.cfg.get_master_node_name()
        results = self.rpc.call("hooks_runner", [master], {
            "hpath": self.HPATH, "phase": constants.HOOKS_PHASE_POST,
            "env": {"GANETI_HOOKS_VERSION": str(constants.HOOKS_VERSION),
                    "GANETI_HOOKS_PHASE": constants.HOOKS_PHASE_POST,
                    "GANETI_HOOKS_PATH": self.HPATH, "GANETI_OP_CODE": self.op.OP_ID,
                    "GANETI_OBJECT_TYPE": self.HTYPE,
                    "GANETI_CLUSTER": self.cfg.get_cluster_name(), "GANETI_MASTER": master,
                    "GANETI_DATA_DIR": constants.GANETI_DATA_DIR_FOR_HOOKS}})
        for node, res in results.items():
            if res.failed:
                feedback_fn("Could not run cluster-destroy hooks on %s: %s" % (node, res.fail_msg))
        self.context.cluster_destroyed = True
        return self.cfg.get_master_node()


class LUClusterRedistConf(NoHooksLU):
    """Push the configuration and ssconf files to every online node again."""

    def expand_names(self) -> None:
        self.needed_locks[locking.LEVEL_NODE] = locking.ALL_SET
        self.share_locks[locking.LEVEL_NODE] = True

    def exec(self, feedback_fn: Callable[[str], None]) -> None:
        failed = self.context.redistribute_config()
        for node, msg in sorted(failed.items()):
            feedback_fn("Copy of the configuration to node %s failed: %s" % (node, msg))


class LUClusterRename(LogicalUnit):
    HPATH = "cluster-rename"
    HTYPE = constants.HTYPE_CLUSTER
    REQ_BGL = True

    def hooks_target(self) -> str:
        return self.cfg.get_cluster_name()

    def build_hooks_env(self) -> dict:
        return {"OP_TARGET": self.cfg.get_cluster_name(), "NEW_NAME": self.op.name}

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        return [self.master_uuid], [self.master_uuid]

    def check_prereq(self) -> None:
        if self.op.name == self.cfg.get_cluster_name():
            raise errors.OpPrereqError("Neither the name nor the IP address of the cluster"
                                       " has changed", errors.ECODE_INVAL)

    def exec(self, feedback_fn: Callable[[str], None]) -> str:
        cluster = self.cfg.get_cluster_info()
        cluster.cluster_name = self.op.name
        self.cfg.update(cluster)
        return self.op.name


class LUClusterSetParams(LogicalUnit):
    HPATH = "cluster-modify"
    HTYPE = constants.HTYPE_CLUSTER

    def hooks_target(self) -> str:
        return self.cfg.get_cluster_name()

    def build_hooks_env(self) -> dict:
        return {"OP_TARGET": self.cfg.get_cluster_name(),
                "NEW_VG_NAME": self.op.vg_name if self.op.vg_name is not None else ""}

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        return [self.master_uuid], [self.master_uuid]

    def expand_names(self) -> None:
        self.needed_locks[locking.LEVEL_NODE] = locking.ALL_SET
        self.share_locks[locking.LEVEL_NODE] = True

    def check_prereq(self) -> None:
        self.changes = _cluster_param_changes(self.cfg.get_cluster_info(), self.op)

    def exec(self, feedback_fn: Callable[[str], None]) -> None:
        cluster = self.cfg.get_cluster_info()
        for attr, value in self.changes.items():
            setattr(cluster, attr, value)
        self.cfg.update(cluster)
        if "max_running_jobs" in self.changes:
            self.context.jqueue.set_workers(cluster.max_running_jobs)


_SIMPLE_PARAMS = {
    # opcode parameter -> cluster attribute
    "vg_name": "volume_group_name", "candidate_pool_size": "candidate_pool_size",
    "max_running_jobs": "max_running_jobs", "max_tracked_jobs": "max_tracked_jobs",
    "maintain_node_health": "maintain_node_health", "prealloc_wipe_disks": "prealloc_wipe_disks",
    "drbd_helper": "drbd_usermode_helper", "default_iallocator": "default_iallocator",
    "default_iallocator_params": "default_iallocator_params", "mac_prefix": "mac_prefix",
    "master_netdev": "master_netdev", "master_netmask": "master_netmask",
    "reserved_lvs": "reserved_lvs", "use_external_mip_script": "use_external_mip_script",
    "modify_etc_hosts": "modify_etc_hosts", "file_storage_dir": "file_storage_dir",
    "shared_file_storage_dir": "shared_file_storage_dir",
    "gluster_storage_dir": "gluster_storage_dir", "install_image": "install_image",
    "instance_communication_network": "instance_communication_network",
    "zeroing_image": "zeroing_image", "compression_tools": "compression_tools",
    "enabled_user_shutdown": "enabled_user_shutdown",
    "enabled_data_collectors": "enabled_data_collectors",
    "data_collector_interval": "data_collector_interval",
}


def _merge_params(old: dict, new: dict) -> dict:
    """Apply ``new`` over ``old``; the value "default" (or None) removes an override."""
    out = dict(old)
    for key, value in new.items():
        if value in ("default", None):
            out.pop(key, None)
        else:
            out[key] = value
    return out


def _cluster_param_changes(c: objects.Cluster, op) -> dict[str, Any]:
    """Validate every requested change; return attribute -> new value (changes nothing)."""
    changes: dict[str, Any] = {}
    for param, attr in _SIMPLE_PARAMS.items():
        value = getattr(op, param)
        if value is not None:
            changes[attr] = value
    if op.enabled_hypervisors is not None:
        if not op.enabled_hypervisors:
            raise errors.OpPrereqError("At least one hypervisor must be enabled",
                                       errors.ECODE_INVAL)
        changes["enabled_hypervisors"] = list(op.enabled_hypervisors)
    if op.enabled_disk_templates is not None:
        if not op.enabled_disk_templates:
            raise errors.OpPrereqError("At least one disk template must be enabled",
                                       errors.ECODE_INVAL)
        changes["enabled_disk_templates"] = list(op.enabled_disk_templates)
    if op.hvparams:
        new_hvp = copy.deepcopy(c.hvparams)
        for hv, params in op.hvparams.items():
            if hv not in constants.HYPER_TYPES:
                raise errors.OpPrereqError("Unknown hypervisor '%s' (known: %s)" %
                                           (hv, ", ".join(sorted(constants.HYPER_TYPES))),
                                           errors.ECODE_INVAL)
            typed = check_hv_params(hv, params, cluster_level=True)
            new_hvp[hv] = _merge_params(new_hvp.get(hv, {}), typed)
        changes["hvparams"] = new_hvp
    if op.beparams:
        typed = check_be_params(op.beparams)
        changes["beparams"] = {"default": _merge_params(c.beparams.get("default", {}), typed)}
    if op.nicparams:
        merged = _merge_params(c.nicparams.get("default", {}), op.nicparams)
        unknown = set(merged) - set(NICPARAMS_DEFAULTS)
        if unknown:
            raise errors.OpPrereqError("Unknown NIC parameters: %s (known: %s)" %
                                       (", ".join(sorted(unknown)),
                                        ", ".join(sorted(NICPARAMS_DEFAULTS))), errors.ECODE_INVAL)
        if merged.get("mode", constants.NIC_MODE_BRIDGED) not in constants.NIC_VALID_MODES:
            raise errors.OpPrereqError("Invalid NIC mode '%s' (allowed: %s)" %
                                       (merged["mode"], ", ".join(sorted(constants.NIC_VALID_MODES))),
                                       errors.ECODE_INVAL)
        changes["nicparams"] = {"default": merged}
    if op.ndparams:
        merged = _merge_params(c.ndparams, op.ndparams)
        unknown = set(merged) - set(NDPARAMS_DEFAULTS)
        if unknown:
            raise errors.OpPrereqError("Unknown node parameters: %s (known: %s)" %
                                       (", ".join(sorted(unknown)),
                                        ", ".join(sorted(NDPARAMS_DEFAULTS))), errors.ECODE_INVAL)
        changes["ndparams"] = merged
    if op.diskparams:
        new_dp = copy.deepcopy(c.diskparams)
        for tmpl, params in op.diskparams.items():
            if tmpl not in DISKPARAMS_DEFAULTS:
                raise errors.OpPrereqError("Unknown disk template '%s'" % tmpl, errors.ECODE_INVAL)
            unknown = set(params) - set(DISKPARAMS_DEFAULTS[tmpl])
            if unknown:
                raise errors.OpPrereqError("Unknown disk parameters for %s: %s" %
                                           (tmpl, ", ".join(sorted(unknown))), errors.ECODE_INVAL)
            new_dp[tmpl] = _merge_params(new_dp.get(tmpl, {}), params)
        changes["diskparams"] = new_dp
    if op.ipolicy:
        unknown = set(op.ipolicy) - set(IPOLICY_DEFAULTS)
        if unknown:
            raise errors.OpPrereqError("Unknown instance policy keys: %s" %
                                       ", ".join(sorted(unknown)), errors.ECODE_INVAL)
        changes["ipolicy"] = _merge_params(c.ipolicy, op.ipolicy)
    for param, attr in (("hidden_os", "hidden_os"), ("blacklisted_os", "blacklisted_os")):
        mods = getattr(op, param)
        if mods:
            current = list(getattr(c, attr))
            for action, name in mods:
                if action == "add" and name not in current:
                    current.append(name)
                elif action == "remove" and name in current:
                    current.remove(name)
            changes[attr] = current
    if op.os_hvp:
        new = copy.deepcopy(c.os_hvp)
        for os_name, hvs in op.os_hvp.items():
            for hv, params in hvs.items():
                new.setdefault(os_name, {})[hv] = _merge_params(new.get(os_name, {}).get(hv, {}),
                                                                params)
        changes["os_hvp"] = new
    for param in ("osparams", "osparams_private_cluster"):
        mods = getattr(op, param)
        if mods:
            new = copy.deepcopy(getattr(c, param))
            for os_name, params in mods.items():
                new[os_name] = _merge_params(new.get(os_name, {}), params)
            changes[param] = new
    return changes


def check_hv_params(hv: str, params: dict, cluster_level: bool = False) -> dict:
    """Typed and validated hypervisor parameters (CLI strings converted); raises on error."""
    typed = hvparams.parse_hvparams(hv, params)
    hvparams.check_hvparams(hv, {k: v for k, v in typed.items() if v != "default"},
                            level="cluster" if cluster_level else "instance")
    return typed


def check_be_params(params: dict) -> dict:
    """Typed and validated backend parameters (legacy ``memory`` expanded)."""
    typed = hvparams.parse_beparams(hvparams.upgrade_beparams(params))
    hvparams.check_beparams({k: v for k, v in typed.items() if v != "default"})
    return typed
