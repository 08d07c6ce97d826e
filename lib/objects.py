"""Configuration objects: cluster, node groups, nodes, instances, disks, NICs.

Each object declares its fields once (``FIELDS``: name -> default factory);
serialization is generic and validated: unknown keys in a loaded config are an
error (a newer config must go through tools/cfgupgrade), missing keys take
their defaults.  The on-disk format is Corral's own (spec/README.md: not an
interface), versioned by ``ConfigData.version``.
"""

import copy
import time
from typing import Any, Callable, ClassVar

from corral import constants, errors


def _empty_dict() -> dict:
    return {}


def _empty_list() -> list:
    return []


class ConfigObject:
    """Base: fields with defaults, dict round trip, deep copies."""

    FIELDS: ClassVar[dict[str, Callable[[], Any]]] = {}
    # Fields holding lists of child objects: name -> class
    CHILDREN: ClassVar[dict[str, type]] = {}

    def __init__(self, **kwargs: Any) -> None:
        for name, factory in self.FIELDS.items():
            setattr(self, name, kwargs.pop(name) if name in kwargs else factory())
        if kwargs:
            raise errors.ConfigurationError("%s: unknown fields %s" % (
                self.__class__.__name__, ", ".join(sorted(kwargs))))

    def to_dict(self) -> dict:
        out = {}
        for name in self.FIELDS:
            value = getattr(self, name)
            child_cls = self.CHILDREN.get(name)
            if child_cls is not None and value is not None:
                value = [c.to_dict() for c in value]
            elif isinstance(value, (dict, list)):
                value = copy.deepcopy(value)
            out[name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "ConfigObject":
        if not isinstance(data, dict):
            raise errors.ConfigurationError("%s: expected a dict, got %r" % (cls.__name__, type(data)))
        kwargs = dict(data)
        for name, child_cls in cls.CHILDREN.items():
            if kwargs.get(name) is not None:
                kwargs[name] = [child_cls.from_dict(c) for c in kwargs[name]]
        return cls(**kwargs)

    def copy(self) -> "ConfigObject":
        return self.__class__.from_dict(self.to_dict())

    def __repr__(self) -> str:
        ident = getattr(self, "name", None) or getattr(self, "uuid", None)
        return "<%s %s>" % (self.__class__.__name__, ident)


def _common_fields() -> dict[str, Callable[[], Any]]:
    return {"uuid": lambda: None, "ctime": lambda: 0.0, "mtime": lambda: 0.0,
            "serial_no": lambda: 1, "tags": _empty_list}


class NIC(ConfigObject):
    FIELDS = {"uuid": lambda: None, "name": lambda: None, "mac": lambda: None, "ip": lambda: None,
              "network": lambda: None, "nicparams": _empty_dict}

    @property
    def mode(self) -> str:
        return self.nicparams.get("mode", constants.NIC_MODE_BRIDGED)

    @property
    def link(self) -> str:
        return self.nicparams.get("link", "")

    @property
    def vlan(self) -> str:
        return self.nicparams.get("vlan", "")


class Disk(ConfigObject):
    FIELDS = {"uuid": lambda: None, "name": lambda: None, "dev_type": lambda: None,
              "logical_id": lambda: None, "children": _empty_list, "iv_name": lambda: "",
              "size": lambda: 0, "mode": lambda: constants.DISK_RDWR, "params": _empty_dict,
              "spindles": lambda: None, "nodes": _empty_list}

    def to_dict(self) -> dict:
        out = super().to_dict()
        out["children"] = [c.to_dict() for c in self.children]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Disk":
        kwargs = dict(data)
        kwargs["children"] = [Disk.from_dict(c) for c in kwargs.get("children") or []]
        if isinstance(kwargs.get("logical_id"), tuple):
            kwargs["logical_id"] = list(kwargs["logical_id"])
        return cls(**kwargs)


class Instance(ConfigObject):
    FIELDS = dict(_common_fields(), **{
        "name": lambda: None, "primary_node": lambda: None, "secondary_nodes": _empty_list,
        "os": lambda: None, "hypervisor": lambda: None, "hvparams": _empty_dict,
        "beparams": _empty_dict, "osparams": _empty_dict, "osparams_private": _empty_dict,
        "admin_state": lambda: constants.ADMINST_DOWN,
        "admin_state_source": lambda: constants.ADMIN_SOURCE,
        "nics": _empty_list, "disks": _empty_list, "disk_template": lambda: constants.DT_DISKLESS,
        "disks_active": lambda: False, "network_port": lambda: None, "forthcoming": lambda: False})
    CHILDREN = {"nics": NIC, "disks": Disk}

    @property
    def all_nodes(self) -> list[str]:
        return [self.primary_node] + [n for n in self.secondary_nodes if n != self.primary_node]


class Node(ConfigObject):
    FIELDS = dict(_common_fields(), **{
        "name": lambda: None, "primary_ip": lambda: None, "secondary_ip": lambda: None,
        "master_candidate": lambda: False, "offline": lambda: False, "drained": lambda: False,
        "group": lambda: None, "master_capable": lambda: True, "vm_capable": lambda: True,
        "ndparams": _empty_dict, "powered": lambda: True, "hv_state_static": _empty_dict,
        "disk_state_static": _empty_dict})


class NodeGroup(ConfigObject):
    FIELDS = dict(_common_fields(), **{
        "name": lambda: None, "ndparams": _empty_dict, "diskparams": _empty_dict,
        "ipolicy": _empty_dict, "alloc_policy": lambda: constants.ALLOC_POLICY_PREFERRED,
        "hv_state_static": _empty_dict, "disk_state_static": _empty_dict,
        "networks": _empty_dict})


class Cluster(ConfigObject):
    FIELDS = dict(_common_fields(), **{
        "cluster_name": lambda: None, "master_node": lambda: None, "master_ip": lambda: None,
        "master_netdev": lambda: "", "master_netmask": lambda: 32,
        "use_external_mip_script": lambda: False, "volume_group_name": lambda: "",
        "drbd_usermode_helper": lambda: constants.DEFAULT_DRBD_HELPER,
        "file_storage_dir": lambda: constants.DEFAULT_FILE_STORAGE_DIR,
        "shared_file_storage_dir": lambda: constants.DEFAULT_SHARED_FILE_STORAGE_DIR,
        "gluster_storage_dir": lambda: "/var/run/ganeti/gluster",
        "enabled_hypervisors": lambda: [constants.HT_KVM], "hvparams": _empty_dict,
        "os_hvp": _empty_dict, "beparams": _empty_dict, "osparams": _empty_dict,
        "osparams_private_cluster": _empty_dict, "nicparams": _empty_dict,
        "ndparams": _empty_dict, "diskparams": _empty_dict, "ipolicy": _empty_dict,
        "candidate_pool_size": lambda: constants.DEFAULT_CANDIDATE_POOL_SIZE,
        "max_running_jobs": lambda: constants.DEFAULT_MAX_RUNNING_JOBS,
        "max_tracked_jobs": lambda: constants.DEFAULT_MAX_TRACKED_JOBS,
        "mac_prefix": lambda: constants.DEFAULT_MAC_PREFIX,
        "tcpudp_port_pool": _empty_list, "highest_used_port": lambda: constants.FIRST_DRBD_PORT - 1,
        "default_iallocator": lambda: "", "default_iallocator_params": _empty_dict,
        "reserved_lvs": _empty_list, "primary_ip_family": lambda: 2,
        "prealloc_wipe_disks": lambda: False, "hidden_os": _empty_list,
        "blacklisted_os": _empty_list,
        "enabled_disk_templates": lambda: list(constants.DEFAULT_ENABLED_DISK_TEMPLATES),
        "modify_etc_hosts": lambda: True, "modify_ssh_setup": lambda: True,
        "maintain_node_health": lambda: False, "uid_pool": _empty_list,
        "install_image": lambda: "", "instance_communication_network": lambda: "",
        "zeroing_image": lambda: "", "compression_tools": lambda: ["gzip", "gzip-fast", "gzip-slow"],
        "enabled_user_shutdown": lambda: False,
        "enabled_data_collectors": _empty_dict, "data_collector_interval": _empty_dict,
        "ssh_key_type": lambda: "rsa", "ssh_key_bits": lambda: 2048,
        "noded_port": lambda: constants.DEFAULT_NODED_PORT, "rapi_port": lambda: constants.DEFAULT_RAPI_PORT})

    @property
    def primary_hypervisor(self) -> str | None:
        return self.enabled_hypervisors[0] if self.enabled_hypervisors else None


class ConfigData(ConfigObject):
    """The whole configuration, as written to config.data."""

    FIELDS = {"version": lambda: constants.CONFIG_VERSION, "cluster": lambda: None,
              "nodes": _empty_dict, "nodegroups": _empty_dict, "instances": _empty_dict,
              "networks": _empty_dict, "serial_no": lambda: 1, "ctime": time.time,
              "mtime": time.time}

    def to_dict(self) -> dict:
        return {"version": self.version, "cluster": self.cluster.to_dict(),
                "nodes": {k: v.to_dict() for k, v in self.nodes.items()},
                "nodegroups": {k: v.to_dict() for k, v in self.nodegroups.items()},
                "instances": {k: v.to_dict() for k, v in self.instances.items()},
                "networks": copy.deepcopy(self.networks), "serial_no": self.serial_no,
                "ctime": self.ctime, "mtime": self.mtime}

    @classmethod
    def from_dict(cls, data: dict) -> "ConfigData":
        if not isinstance(data, dict):
            raise errors.ConfigurationError("configuration is not a JSON object")
        version = data.get("version")
        if version != constants.CONFIG_VERSION:
            raise errors.ConfigVersionMismatch(
                "configuration version %s, this Corral needs %s (run tools/cfgupgrade)" %
                (version, constants.CONFIG_VERSION))
        try:
            return cls(version=version, cluster=Cluster.from_dict(data["cluster"]),
                       nodes={k: Node.from_dict(v) for k, v in data.get("nodes", {}).items()},
                       nodegroups={k: NodeGroup.from_dict(v)
                                   for k, v in data.get("nodegroups", {}).items()},
                       instances={k: Instance.from_dict(v)
                                  for k, v in data.get("instances", {}).items()},
                       networks=data.get("networks", {}), serial_no=data["serial_no"],
                       ctime=data.get("ctime", 0.0), mtime=data.get("mtime", 0.0))
        except KeyError as err:
            raise errors.ConfigurationError("configuration lacks key %s" % err) from None


def fill_dict(defaults: dict, custom: dict, skip_keys: list[str] | None = None) -> dict:
    """Defaults overridden by custom values (parameter layering, spec §1)."""
    out = copy.deepcopy(defaults)
    out.update(copy.deepcopy(custom))
    for key in skip_keys or []:
        out.pop(key, None)
    return out
