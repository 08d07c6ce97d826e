"""Storage units of nodes: OP_NODE_QUERYVOLS (gnt-node volumes), OP_NODE_QUERY_STORAGE
(list-storage), OP_NODE_MODIFY_STORAGE (modify-storage), OP_REPAIR_NODE_STORAGE
(repair-storage).

The node answers with its units (backend/storage_units.py); the master adds the
node name, the storage type and the instance owning each logical volume, and
returns Ganeti's rows: one list of values per unit, in the requested field
order, sorted by node and unit name.
"""

from typing import Any, Callable

from corral import constants, errors, locking, objects
from corral.cmdlib import instance_storage as ist
from corral.cmdlib import instance_utils as iu
from corral.cmdlib.base import NoHooksLU, expand_node

VOLS_FIELDS = ("node", "phys", "vg", "name", "size", "instance")
STORAGE_FIELDS = ("node", "type", "name", "size", "used", "free", "allocatable")
ST_LVM_VG, ST_LVM_PV, ST_FILE, ST_SHARED_FILE = "lvm-vg", "lvm-pv", "file", "sharedfile"
QUERYABLE_TYPES = (ST_LVM_VG, ST_LVM_PV, ST_FILE, ST_SHARED_FILE)
MODIFIABLE = {ST_LVM_PV: frozenset(["allocatable"])}
REPAIRABLE = frozenset([ST_LVM_VG])
# The storage type behind each disk template (the default of list-storage).
TEMPLATE_STORAGE = {constants.DT_PLAIN: ST_LVM_VG, constants.DT_DRBD8: ST_LVM_VG,
                    constants.DT_FILE: ST_FILE, constants.DT_SHARED_FILE: ST_SHARED_FILE}


def check_fields(requested: list[str], valid: tuple[str, ...]) -> None:
    unknown = [f for f in requested if f not in valid]
    if unknown:
        raise errors.OpPrereqError("Unknown output fields selected: %s" % ", ".join(unknown),
                                   errors.ECODE_INVAL)


def default_storage_type(cluster: objects.Cluster) -> str:
    """The storage type of the first enabled template that has one (Ganeti's rule)."""
    for template in cluster.enabled_disk_templates:
        if template in TEMPLATE_STORAGE:
            return TEMPLATE_STORAGE[template]
    raise errors.OpPrereqError("No storage type given and none of the enabled disk templates"
                               " (%s) has one; use -t lvm-vg|lvm-pv|file" %
                               ", ".join(cluster.enabled_disk_templates), errors.ECODE_INVAL)


def lv_owners(cfg) -> dict[tuple[str, str], str]:
    """{(node uuid, "vg/lv"): instance name} for every LV the configuration knows."""
    out: dict[tuple[str, str], str] = {}

    def walk(inst: objects.Instance, disk: objects.Disk, nodes: list[str]) -> None:
        if disk.dev_type == constants.DT_PLAIN and disk.logical_id:
            for node in nodes:
                out[(node, "%s/%s" % tuple(disk.logical_id[:2]))] = inst.name
        for child in disk.children:
            walk(inst, child, nodes)

    for inst in cfg.get_all_instances().values():
        for disk in inst.disks:
            nodes = list(disk.logical_id[:2]) if disk.dev_type == constants.DT_DRBD8 \
                else [inst.primary_node]
            walk(inst, disk, nodes)
    return out


def storage_warnings(lu, node_name: str) -> list[str]:
    """What the enabled disk templates would lack on ``node_name`` (for node add).

    One ``storage_check`` call for the templates that need node support (plain,
    drbd, rbd); an unreachable node gives one message saying so.  Changes nothing.
    """
    cluster = lu.cfg.get_cluster_info()
    dev_types = sorted({t for tmpl in cluster.enabled_disk_templates
                        for t in ist.TEMPLATE_DEV_TYPES.get(tmpl, []) if t != "ext"})
    if not dev_types:
        return []
    res = lu.rpc.call_one("storage_check", node_name, {"dev_types": dev_types})
    if res.failed:
        return ["cannot check the storage of node %s: %s" % (node_name, res.fail_msg)]
    return ["node %s cannot host %s disks: %s" % (node_name, msg.split(":", 1)[0], msg)
            for msg in res.data or []]


class _NodesQueryLU(NoHooksLU):
    """Shared: the nodes named in ``op.nodes`` (default all), locked shared."""

    def expand_names(self) -> None:
        if self.op.nodes:
            self.node_uuids = [expand_node(self.cfg, n).uuid for n in self.op.nodes]
        else:
            self.node_uuids = sorted(self.cfg.get_node_list(),
                                     key=lambda u: self.cfg.get_node_info(u).name)
        self.needed_locks[locking.LEVEL_NODE] = list(self.node_uuids)
        self.share_locks[locking.LEVEL_NODE] = True

    def _query_nodes(self) -> list[objects.Node]:
        nodes = [self.cfg.get_node_info(u) for u in self.node_uuids]
        return sorted([n for n in nodes if n is not None and n.vm_capable and not n.offline],
                      key=lambda n: n.name)


class LUNodeQueryvols(_NodesQueryLU):
    """``gnt-node volumes``: rows of ``node phys vg name size instance``."""

    def check_arguments(self) -> None:
        check_fields(self.op.output_fields, VOLS_FIELDS)

    def exec(self, feedback_fn: Callable[[str], None]) -> list[list]:
        nodes = self._query_nodes()
        results = self.rpc.call("node_volumes", [n.name for n in nodes], {})
        owners = lv_owners(self.cfg)
        rows = []
        for node in nodes:
            res = results[node.name]
            if res.failed:
                self.log_warning("Can't compute volume data on node %s: %s" %
                                 (node.name, res.fail_msg))
                continue
            for vol in sorted(res.data or [], key=lambda v: (v["dev"], v["name"])):
                values = {"node": node.name, "phys": vol["dev"], "vg": vol["vg"],
                          "name": vol["name"], "size": vol["size"],
                          "instance": owners.get((node.uuid, "%s/%s" % (vol["vg"], vol["name"])),
                                                 "-")}
                rows.append([values[f] for f in self.op.output_fields])
        return rows


class LUNodeQueryStorage(_NodesQueryLU):
    """``gnt-node list-storage``: rows of the requested STORAGE_FIELDS."""

    def check_arguments(self) -> None:
        check_fields(self.op.output_fields, STORAGE_FIELDS)
        if self.op.storage_type is not None and self.op.storage_type not in QUERYABLE_TYPES:
            raise errors.OpPrereqError("Storage type %s cannot be listed (listable: %s)" %
                                       (self.op.storage_type, ", ".join(QUERYABLE_TYPES)),
                                       errors.ECODE_INVAL)

    def exec(self, feedback_fn: Callable[[str], None]) -> list[list]:
        cluster = self.cfg.get_cluster_info()
        stype = self.op.storage_type or default_storage_type(cluster)
        paths = {ST_FILE: [cluster.file_storage_dir],
                 ST_SHARED_FILE: [cluster.shared_file_storage_dir]}.get(stype, [])
        nodes = self._query_nodes()
        results = self.rpc.call("storage_list", [n.name for n in nodes],
                                {"storage_type": stype, "name": self.op.name,
                                 "paths": [p for p in paths if p]})
        rows = []
        for node in nodes:
            res = results[node.name]
            if res.failed:
                self.log_warning("Can't get storage data from node %s: %s" %
                                 (node.name, res.fail_msg))
                continue
            for unit in sorted(res.data or [], key=lambda u: u["name"]):
                values = dict(unit, node=node.name, type=stype)
                rows.append([values.get(f) for f in self.op.output_fields])
        return rows


class _NodeStorageChangeLU(NoHooksLU):
    """One storage unit of one node, which is locked exclusively."""

    def expand_names(self) -> None:
        self.node = expand_node(self.cfg, self.op.node_name)
        self.needed_locks[locking.LEVEL_NODE] = [self.node.uuid]

    def _name(self) -> str:
        if not self.op.name:
            raise errors.OpPrereqError("The name of the storage unit is required",
                                       errors.ECODE_INVAL)
        return self.op.name


class LUNodeModifyStorage(_NodeStorageChangeLU):
    """``gnt-node modify-storage NODE TYPE NAME --allocatable=yes|no``."""

    def check_arguments(self) -> None:
        allowed = MODIFIABLE.get(self.op.storage_type, frozenset())
        bad = sorted(set(self.op.changes) - allowed)
        if bad:
            raise errors.OpPrereqError("Storage units of type '%s' can not be modified in"
                                       " the fields %s (modifiable: %s)" %
                                       (self.op.storage_type, ", ".join(bad),
                                        ", ".join(sorted(allowed)) or "none"),
                                       errors.ECODE_INVAL)
        for key, value in self.op.changes.items():
            if not isinstance(value, bool):
                raise errors.OpPrereqError("Invalid value %r for %s (expected a boolean)" %
                                           (value, key), errors.ECODE_INVAL)

    def exec(self, feedback_fn: Callable[[str], None]) -> None:
        iu.check_node_online(self.cfg, self.node.uuid)
        res = self.rpc.call_one("storage_modify", self.node.name,
                                {"storage_type": self.op.storage_type, "name": self._name(),
                                 "changes": dict(self.op.changes)})
        res.raise_if_failed("Failed to modify storage unit '%s' on %s" %
                            (self.op.name, self.node.name))


class LURepairNodeStorage(_NodeStorageChangeLU):
    """``gnt-node repair-storage NODE lvm-vg VG``: drop missing PVs from the VG.

    Unless ``ignore_consistency``, refused while an instance with disks on the
    node has faulty disks on its other node (the repair could lose its last copy).
    """

    def check_arguments(self) -> None:
        if self.op.storage_type not in REPAIRABLE:
            raise errors.OpPrereqError("Storage units of type '%s' can not be repaired" %
                                       self.op.storage_type, errors.ECODE_INVAL)

    def expand_names(self) -> None:
        super().expand_names()
        self.share_locks[locking.LEVEL_INSTANCE] = True
        self.needed_locks[locking.LEVEL_INSTANCE] = locking.ALL_SET

    def check_prereq(self) -> None:
        iu.check_node_online(self.cfg, self.node.uuid)
        self._name()
        if self.op.ignore_consistency:
            return
        for inst in self.cfg.get_all_instances().values():
            if self.node.uuid not in inst.all_nodes or not inst.disks_active:
                continue
            for other in inst.all_nodes:
                if other != self.node.uuid and not self._consistent(inst, other):
                    raise errors.OpPrereqError(
                        "Instance '%s' has faulty disks on node '%s'" %
                        (inst.name, iu.node_name(self.cfg, other)), errors.ECODE_STATE)

    def _consistent(self, inst: objects.Instance, node_uuid: str) -> bool:
        res = self.rpc.call_one("blockdev_sync_status", iu.node_name(self.cfg, node_uuid),
                                {"disks": ist._rpc_disks(self, inst.disks)})
        if res.failed:
            return False
        return all(st is not None and st.get("ldisk_status") != "faulty" for st in res.data)

    def exec(self, feedback_fn: Callable[[str], None]) -> Any:
        res = self.rpc.call_one("storage_repair", self.node.name,
                                {"storage_type": self.op.storage_type, "name": self._name()})
        res.raise_if_failed("Failed to repair storage unit '%s' on %s" %
                            (self.op.name, self.node.name))
        if res.data:
            feedback_fn(res.data)
