"""Instance disks: generating disk objects, creating/removing/activating them, and
the LUs activate-disks, deactivate-disks, grow-disk and recreate-disks.

Templates handled here: diskless, file, sharedfile, blockdev (adoption) and
plain.  A template whose generator is missing is refused with a message naming
it (drbd, rbd, ext... come with their storage issue).  Disks of these templates
live on the primary node only (or on storage every node sees), so every node
operation goes to the primary.
"""

import os
from typing import Any, Callable

from corral import config, constants, errors, objects
from corral.cmdlib import instance_utils as iu
from corral.cmdlib.base import expand_node
from corral.utils import io

SUPPORTED_TEMPLATES = frozenset([constants.DT_DISKLESS, constants.DT_FILE,
                                 constants.DT_SHARED_FILE, constants.DT_BLOCK,
                                 constants.DT_PLAIN])
GROWABLE_TEMPLATES = frozenset([constants.DT_FILE, constants.DT_SHARED_FILE, constants.DT_PLAIN,
                                constants.DT_DRBD8, constants.DT_RBD, constants.DT_EXT])
_DISK_KEYS = frozenset(["size", "mode", "adopt", "name", "vg", "metavg", "spindles",
                        "provider", "access"])


# ---- disk specifications (opcode input) -------------------------------------------------

def check_disk_spec(spec: Any, idx: Any, template: str | None, allow_any_key: bool = False
                    ) -> dict:
    """A validated copy of one disk dict of an opcode; OpPrereqError naming the problem.

    ``size`` must be a positive integer (MiB) unless the disk is adopted; the
    mode ``rw`` or ``ro``.  Pure.
    """
    if not isinstance(spec, dict):
        raise errors.OpPrereqError("Invalid disk %s specification %r: expected a dict" %
                                   (idx, spec), errors.ECODE_INVAL)
    out = dict(spec)
    unknown = sorted(set(out) - _DISK_KEYS)
    if unknown and template != constants.DT_EXT and not allow_any_key:
        raise errors.OpPrereqError("Unknown parameter(s) %s for disk %s (known: %s)" %
                                   (", ".join(unknown), idx, ", ".join(sorted(_DISK_KEYS))),
                                   errors.ECODE_INVAL)
    mode = out.setdefault("mode", constants.DISK_RDWR)
    if mode not in constants.DISK_ACCESS_SET:
        raise errors.OpPrereqError("Invalid disk access mode '%s' for disk %s (expected rw"
                                   " or ro)" % (mode, idx), errors.ECODE_INVAL)
    if out.get("adopt"):
        if template not in (None, constants.DT_BLOCK, constants.DT_PLAIN):
            raise errors.OpPrereqError("Disk adoption is not supported for the '%s' disk"
                                       " template" % template, errors.ECODE_INVAL)
        out["size"] = _int_size(out.get("size", 0), idx, allow_zero=True)
        return out
    if template == constants.DT_BLOCK:
        raise errors.OpPrereqError("Disk template blockdev requires disk adoption (adopt=PATH)"
                                   " for disk %s" % idx, errors.ECODE_INVAL)
    if "size" not in out:
        raise errors.OpPrereqError("Missing disk size for disk %s" % idx, errors.ECODE_INVAL)
    out["size"] = _int_size(out["size"], idx)
    return out


def _int_size(value: Any, idx: Any, allow_zero: bool = False) -> int:
    try:
        size = int(value)
        if isinstance(value, bool) or isinstance(value, float) and value != size:
            raise ValueError
    except (TypeError, ValueError):
        raise errors.OpPrereqError("Invalid disk size '%s' for disk %s: expected a number of"
                                   " MiB" % (value, idx), errors.ECODE_INVAL) from None
    if size < 0 or (size == 0 and not allow_zero):
        raise errors.OpPrereqError("Invalid disk size %s for disk %s: must be a positive number"
                                   " of MiB" % (value, idx), errors.ECODE_INVAL)
    return size


# ---- generation (pure) -------------------------------------------------------------------

def file_storage_dir(cluster: objects.Cluster, template: str, inst_name: str,
                     subdir: str | None) -> str:
    """``<storage dir>[/<subdir>]/<instance>``; OpPrereqError if it leaves the storage dir."""
    base = (cluster.file_storage_dir if template == constants.DT_FILE
            else cluster.shared_file_storage_dir)
    if not base:
        raise errors.OpPrereqError("No %s storage directory is configured for the cluster" %
                                   template, errors.ECODE_ENVIRON)
    path = os.path.normpath(os.path.join(base, subdir or "", inst_name))
    if not io.is_below_dir(base, path) or ".." in (subdir or "").split("/"):
        raise errors.OpPrereqError("File storage directory '%s' is not inside the cluster's %s"
                                   " storage directory %s" % (subdir or path, template, base),
                                   errors.ECODE_INVAL)
    return path


def generate_disks(cluster: objects.Cluster, template: str, inst_name: str, specs: list[dict],
                   pnode_uuid: str, base_index: int = 0, file_subdir: str | None = None,
                   file_driver: str | None = None) -> list[objects.Disk]:
    """New Disk objects for ``specs`` (validated by check_disk_spec); nothing is created."""
    if template == constants.DT_DISKLESS:
        if specs:
            raise errors.OpPrereqError("Diskless instance but disk information passed",
                                       errors.ECODE_INVAL)
        return []
    if template not in SUPPORTED_TEMPLATES:
        raise errors.OpPrereqError("Disk template '%s' is not supported yet (supported: %s)" %
                                   (template, ", ".join(sorted(SUPPORTED_TEMPLATES))),
                                   errors.ECODE_INVAL)
    if template in constants.DTS_FILEBASED:
        directory = file_storage_dir(cluster, template, inst_name, file_subdir)
    out = []
    for offset, spec in enumerate(specs):
        idx = base_index + offset
        uuid = config.new_uuid()
        if template in constants.DTS_FILEBASED:
            lid = [file_driver or iu.FILE_DRIVER_DEFAULT,
                   os.path.join(directory, "%s.disk%d" % (uuid, idx))]
        elif template == constants.DT_BLOCK:
            if not spec.get("adopt") or not os.path.isabs(spec["adopt"]):
                raise errors.OpPrereqError("Disk %d: blockdev adoption needs an absolute device"
                                           " path, got '%s'" % (idx, spec.get("adopt")),
                                           errors.ECODE_INVAL)
            lid = ["manual", os.path.normpath(spec["adopt"])]
        else:
            vg = spec.get("vg") or cluster.volume_group_name
            if not vg:
                raise errors.OpPrereqError("No volume group given for disk %d and the cluster"
                                           " has none" % idx, errors.ECODE_INVAL)
            lid = [vg, spec.get("adopt") or "%s.disk%d" % (uuid, idx)]
        out.append(objects.Disk(uuid=uuid, name=spec.get("name"), dev_type=template,
                                logical_id=lid, iv_name="disk/%d" % idx, size=spec["size"],
                                mode=spec.get("mode", constants.DISK_RDWR),
                                spindles=spec.get("spindles"), nodes=[pnode_uuid]))
    return out


def renumber_disks(disks: list[objects.Disk]) -> None:
    for idx, disk in enumerate(disks):
        disk.iv_name = "disk/%d" % idx


# ---- node operations ------------------------------------------------------------------

def _pnode_name(lu, inst: objects.Instance) -> str:
    return iu.node_name(lu.cfg, inst.primary_node)


def _rpc_disks(lu, disks: list[objects.Disk]) -> list[dict]:
    cluster = lu.cfg.get_cluster_info()
    return [iu.disk_rpc(cluster, d) for d in disks]


def create_disks(lu, inst: objects.Instance, disks: list[objects.Disk] | None = None,
                 node_uuid: str | None = None) -> None:
    """Create ``disks`` (default: all of the instance's) on its primary (or ``node_uuid``).

    All or nothing: on failure the node has removed what this call created, and
    OpExecError says why.  Adopted block devices are only checked.
    """
    disks = inst.disks if disks is None else disks
    if not disks:
        return
    node = iu.node_name(lu.cfg, node_uuid or inst.primary_node)
    res = lu.rpc.call_one("blockdev_create", node,
                          {"disks": _rpc_disks(lu, disks), "info": "instance %s" % inst.name})
    if res.failed:
        raise errors.OpExecError("Can't create disks of instance %s on node %s: %s" %
                                 (inst.name, res.node, res.fail_msg))


def remove_disks(lu, inst: objects.Instance, disks: list[objects.Disk] | None = None,
                 ignore_failures: bool = False) -> bool:
    """Remove ``disks`` (default: all) from the primary; False (warned) on failure."""
    disks = inst.disks if disks is None else disks
    if not disks:
        return True
    res = lu.rpc.call_one("blockdev_remove", _pnode_name(lu, inst),
                          {"disks": _rpc_disks(lu, disks)})
    if res.failed:
        msg = "Could not remove disks of instance %s on node %s: %s" % (
            inst.name, res.node, res.fail_msg)
        if not ignore_failures:
            raise errors.OpExecError(msg)
        lu.log_warning(msg)
        return False
    return True


def assemble_disks(lu, inst: objects.Instance) -> list[list]:
    """Activate all disks on the primary; ``[[node, iv_name, path], ...]``."""
    if not inst.disks:
        return []
    res = lu.rpc.call_one("blockdev_assemble", _pnode_name(lu, inst),
                          {"disks": _rpc_disks(lu, inst.disks)})
    if res.failed:
        raise errors.OpExecError("Cannot activate block devices of instance %s: %s" %
                                 (inst.name, res.fail_msg))
    return [[res.node, d.iv_name, path] for d, path in zip(inst.disks, res.data)]


def shutdown_disks(lu, inst: objects.Instance, ignore_failures: bool = False) -> None:
    """Deactivate the disks on the primary (warning only with ``ignore_failures``)."""
    if not inst.disks:
        return
    res = lu.rpc.call_one("blockdev_shutdown", _pnode_name(lu, inst),
                          {"disks": _rpc_disks(lu, inst.disks)})
    if res.failed:
        msg = "Cannot shut down the disks of instance %s: %s" % (inst.name, res.fail_msg)
        if not ignore_failures:
            raise errors.OpExecError(msg)
        lu.log_warning(msg)


def set_disks_active(lu, inst: objects.Instance, active: bool) -> None:
    if inst.disks_active != active:
        inst.disks_active = active
        lu.cfg.update(inst)


def adopted_sizes(lu, node: str, disks: list[objects.Disk]) -> None:
    """Fill the size of adopted block devices from the node; OpPrereqError if missing."""
    adopted = [d for d in disks if d.dev_type == constants.DT_BLOCK]
    if not adopted:
        return
    cluster = lu.cfg.get_cluster_info()
    res = lu.rpc.call_one("blockdev_getsize", node,
                          {"disks": [iu.disk_rpc(cluster, d) for d in adopted]})
    res.raise_if_failed("Cannot get the size of the adopted devices")
    for disk, size in zip(adopted, res.data):
        if size is None:
            raise errors.OpPrereqError("Adopted device %s not found on node %s (or not a block"
                                       " device)" % (disk.logical_id[1], node),
                                       errors.ECODE_NOENT)
        disk.size = int(size)


# ---- logical units -----------------------------------------------------------------------

class LUInstanceActivateDisks(iu.InstanceLU):
    """Activate the instance's disks; result ``[[node, iv_name, path], ...]``."""

    HPATH = None

    def exec(self, feedback_fn: Callable[[str], None]) -> list[list]:
        iu.check_node_online(self.cfg, self.instance.primary_node, "for activating disks")
        result = assemble_disks(self, self.instance)
        set_disks_active(self, self.instance, True)
        return result


class LUInstanceDeactivateDisks(iu.InstanceLU):
    """Deactivate the disks; refused while the instance runs unless ``force``."""

    HPATH = None

    def check_prereq(self) -> None:
        super().check_prereq()
        if not self.op.force and iu.running_on_primary(self, self.instance):
            raise errors.OpPrereqError("Instance %s is running, can't shutdown disks" %
                                       self.instance.name, errors.ECODE_STATE)

    def exec(self, feedback_fn: Callable[[str], None]) -> None:
        shutdown_disks(self, self.instance, ignore_failures=self.op.force)
        set_disks_active(self, self.instance, False)


class LUInstanceGrowDisk(iu.InstanceLU):
    """Grow one disk; the new size is recorded once the node has grown it."""

    HPATH = "disk-grow"
    LOCK_NODE_RES = True

    def check_prereq(self) -> None:
        super().check_prereq()
        inst = self.instance
        iu.check_node_online(self.cfg, inst.primary_node)
        if inst.disk_template not in GROWABLE_TEMPLATES:
            raise errors.OpPrereqError("Instance's disk layout '%s' does not support growing" %
                                       inst.disk_template, errors.ECODE_INVAL)
        if not 0 <= self.op.disk < len(inst.disks):
            raise errors.OpPrereqError("Invalid disk index %d (instance has %d disks)" %
                                       (self.op.disk, len(inst.disks)), errors.ECODE_INVAL)
        self.disk = inst.disks[self.op.disk]
        self.delta = (self.op.amount - self.disk.size if self.op.absolute else self.op.amount)
        if self.delta < 0:
            raise errors.OpPrereqError("Requested size (%s) is smaller than current disk size"
                                       " (%s)" % (self.op.amount, self.disk.size),
                                       errors.ECODE_INVAL)

    def extra_hooks_env(self) -> dict:
        return {"DISK": self.op.disk, "AMOUNT": self.op.amount, "ABSOLUTE": self.op.absolute}

    def exec(self, feedback_fn: Callable[[str], None]) -> None:
        if self.delta == 0:
            feedback_fn("Disk %d already has the requested size" % self.op.disk)
            return
        node = _pnode_name(self, self.instance)
        disk = iu.disk_rpc(self.cfg.get_cluster_info(), self.disk)
        for dryrun in (True, False):
            res = self.rpc.call_one("blockdev_grow", node, {"disk": disk, "amount": self.delta,
                                                            "dryrun": dryrun,
                                                            "backingstore": True})
            if res.failed:
                raise errors.OpExecError("Grow request failed to node %s: %s" %
                                         (node, res.fail_msg))
        self.disk.size += self.delta
        self.cfg.update(self.instance)
        feedback_fn("Disk %d of instance %s grown by %d MiB to %d MiB" %
                    (self.op.disk, self.instance.name, self.delta, self.disk.size))


class LUInstanceRecreateDisks(iu.InstanceLU):
    """Create missing disks again (empty), optionally with new sizes or on a new node."""

    HPATH = "instance-recreate-disks"
    LOCK_NODE_RES = True

    def check_arguments(self) -> None:
        self.disk_changes: dict[int, dict] = {}
        for item in self.op.disks:
            if isinstance(item, int) and not isinstance(item, bool):
                self.disk_changes[item] = {}
            elif isinstance(item, list) and len(item) == 2 and isinstance(item[0], int) \
                    and isinstance(item[1], dict):
                unknown = set(item[1]) - {"size", "mode", "spindles"}
                if unknown:
                    raise errors.OpPrereqError("Cannot change disk parameter(s) %s on"
                                               " recreate" % ", ".join(sorted(unknown)),
                                               errors.ECODE_INVAL)
                self.disk_changes[item[0]] = dict(item[1])
            else:
                raise errors.OpPrereqError("Invalid disk specification %r (index or [index,"
                                           " {params}])" % (item,), errors.ECODE_INVAL)
        if len(self.op.nodes) > 1:
            raise errors.OpPrereqError("Only one node can be given for this disk template",
                                       errors.ECODE_INVAL)

    def expand_names(self) -> None:
        super().expand_names()
        self.new_node = None
        if self.op.nodes:
            self.new_node = expand_node(self.cfg, self.op.nodes[0])

    def lock_node_uuids(self, inst: objects.Instance) -> list[str]:
        nodes = list(inst.all_nodes)
        if self.new_node is not None and self.new_node.uuid not in nodes:
            nodes.append(self.new_node.uuid)
        return nodes

    def check_prereq(self) -> None:
        super().check_prereq()
        inst = self.instance
        iu.check_instance_down(self, "recreate disks")
        bad = [i for i in self.disk_changes if not 0 <= i < len(inst.disks)]
        if bad:
            raise errors.OpPrereqError("Invalid disk index %d (instance has %d disks)" %
                                       (bad[0], len(inst.disks)), errors.ECODE_INVAL)
        for idx, changes in self.disk_changes.items():
            if "size" in changes:
                changes["size"] = _int_size(changes["size"], idx)
        if self.new_node is not None:
            if inst.disk_template not in (constants.DT_FILE, constants.DT_PLAIN,
                                          constants.DT_SHARED_FILE, constants.DT_BLOCK,
                                          constants.DT_DISKLESS):
                raise errors.OpPrereqError("Changing nodes is not supported for template %s"
                                           % inst.disk_template, errors.ECODE_INVAL)
            iu.check_node_online(self.cfg, self.new_node.uuid)
        self.indices = sorted(self.disk_changes) or list(range(len(inst.disks)))

    def exec(self, feedback_fn: Callable[[str], None]) -> None:
        """Create on copies; the configuration changes only once the node succeeded."""
        inst = self.instance
        pnode = inst.primary_node
        if self.new_node is not None:
            pnode = self.new_node.uuid
        disks = [objects.Disk.from_dict(d.to_dict()) for d in inst.disks]
        for disk in disks:
            disk.nodes = [pnode]
        for idx, changes in self.disk_changes.items():
            for key, value in changes.items():
                setattr(disks[idx], key, value)
        create_disks(self, inst, [disks[i] for i in self.indices], node_uuid=pnode)
        inst.primary_node = pnode
        inst.disks = disks
        self.cfg.update(inst)
