"""Instance disks: generating disk objects, creating/removing/activating them, and
the LUs activate-disks, deactivate-disks, grow-disk and recreate-disks.

Templates handled here: diskless, file, sharedfile, blockdev (adoption),
plain, drbd, ext and rbd (doc/design-storage-ops.md).  DRBD disks live on the
primary and the secondary: they are created on the secondary first, removed
and shut down on both, assembled on the secondary (connected, not opened)
before the primary.  Every other template lives on the primary only (or on
storage every node sees, created once through the primary).
"""

import os
import secrets
import threading
from typing import Any, Callable

from corral import config, constants, errors, objects
from corral.cmdlib import cluster as cluster_lu
from corral.cmdlib import instance_mirror, instance_mirror_rebuild
from corral.cmdlib import instance_utils as iu
from corral.cmdlib.base import expand_node
from corral.utils import io

SUPPORTED_TEMPLATES = frozenset([constants.DT_DISKLESS, constants.DT_FILE,
                                 constants.DT_SHARED_FILE, constants.DT_BLOCK,
                                 constants.DT_PLAIN, constants.DT_DRBD8, constants.DT_EXT,
                                 constants.DT_RBD, constants.DT_MIRROR])
# The node storage each template needs (storage.verify_environment types).
TEMPLATE_DEV_TYPES = {constants.DT_PLAIN: ["plain"], constants.DT_DRBD8: ["drbd"],
                      constants.DT_EXT: ["ext"], constants.DT_RBD: ["rbd"],
                      constants.DT_MIRROR: ["mirror"]}
DRBD_SECRET_BYTES = 20
SYNC_POLL_SECONDS = 2.0
GROWABLE_TEMPLATES = frozenset([constants.DT_FILE, constants.DT_SHARED_FILE, constants.DT_PLAIN,
                                constants.DT_DRBD8, constants.DT_RBD, constants.DT_EXT,
                                constants.DT_MIRROR])
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
    base = (cluster.file_storage_dir if template in (constants.DT_FILE, constants.DT_MIRROR)
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


class DrbdAllocator:
    """Minors, ports and secrets for new DRBD disks, reserved for one job.

    Minors and ports are the configuration's job-scoped reservations
    (released at the job's end unless the disks entered the config).
    """

    def __init__(self, cfg: Any, ec_id: Any) -> None:
        self.cfg = cfg
        self.ec_id = ec_id

    def minors(self, node_uuids: list[str]) -> list[int]:
        return self.cfg.allocate_drbd_minors(self.ec_id, node_uuids)

    def port(self) -> int:
        return self.cfg.allocate_port(self.ec_id)

    @staticmethod
    def secret() -> str:
        return secrets.token_hex(DRBD_SECRET_BYTES)


def generate_disks(cluster: objects.Cluster, template: str, inst_name: str, specs: list[dict],
                   pnode_uuid: str, base_index: int = 0, file_subdir: str | None = None,
                   file_driver: str | None = None, snode_uuid: str | None = None,
                   alloc: DrbdAllocator | None = None) -> list[objects.Disk]:
    """New Disk objects for ``specs`` (validated by check_disk_spec); nothing is created.

    DRBD needs ``snode_uuid``; its minors, port and secret stay None until
    ``allocate_drbd_ids`` (done here when ``alloc`` is given: reserving them is
    the only side effect), so prerequisite checks can generate disks freely.
    """
    if template == constants.DT_DISKLESS:
        if specs:
            raise errors.OpPrereqError("Diskless instance but disk information passed",
                                       errors.ECODE_INVAL)
        return []
    if template not in SUPPORTED_TEMPLATES:
        raise errors.OpPrereqError("Disk template '%s' is not supported (supported: %s)" %
                                   (template, ", ".join(sorted(SUPPORTED_TEMPLATES))),
                                   errors.ECODE_INVAL)
    if template == constants.DT_DRBD8:
        if snode_uuid is None or snode_uuid == pnode_uuid:
            raise errors.OpPrereqError("The drbd disk template needs a secondary node"
                                       " different from the primary", errors.ECODE_INVAL)
        disks = [_drbd_disk(cluster, spec, base_index + i, pnode_uuid, snode_uuid)
                 for i, spec in enumerate(specs)]
        if alloc is not None:
            allocate_drbd_ids(disks, alloc)
        return disks
    if template == constants.DT_MIRROR:
        if snode_uuid is None or snode_uuid == pnode_uuid:
            raise errors.OpPrereqError("The mirror disk template needs a secondary node"
                                       " different from the primary", errors.ECODE_INVAL)
        directory = file_storage_dir(cluster, template, inst_name, file_subdir)
        disks = [_mirror_disk(spec, base_index + i, pnode_uuid, snode_uuid, directory,
                              file_driver) for i, spec in enumerate(specs)]
        if alloc is not None:
            allocate_drbd_ids(disks, alloc)
        return disks
    if template in constants.DTS_FILEBASED:
        directory = file_storage_dir(cluster, template, inst_name, file_subdir)
    out = []
    for offset, spec in enumerate(specs):
        idx = base_index + offset
        uuid = config.new_uuid()
        params: dict = {}
        if template in constants.DTS_FILEBASED:
            lid = [file_driver or iu.FILE_DRIVER_DEFAULT,
                   os.path.join(directory, "%s.disk%d" % (uuid, idx))]
        elif template == constants.DT_BLOCK:
            if not spec.get("adopt") or not os.path.isabs(spec["adopt"]):
                raise errors.OpPrereqError("Disk %d: blockdev adoption needs an absolute device"
                                           " path, got '%s'" % (idx, spec.get("adopt")),
                                           errors.ECODE_INVAL)
            lid = ["manual", os.path.normpath(spec["adopt"])]
        elif template == constants.DT_EXT:
            lid, params = _ext_logical_id(spec, uuid, idx)
        elif template == constants.DT_RBD:
            lid = ["rbd", "%s.rbd.disk%d" % (uuid, idx)]
        else:
            lid = [_vg(cluster, spec, idx), spec.get("adopt") or "%s.disk%d" % (uuid, idx)]
        out.append(objects.Disk(uuid=uuid, name=spec.get("name"), dev_type=template,
                                logical_id=lid, iv_name="disk/%d" % idx, size=spec["size"],
                                mode=spec.get("mode", constants.DISK_RDWR), params=params,
                                spindles=spec.get("spindles"), nodes=[pnode_uuid]))
    return out


def _vg(cluster: objects.Cluster, spec: dict, idx: int) -> str:
    vg = spec.get("vg") or cluster.volume_group_name
    if not vg:
        raise errors.OpPrereqError("No volume group given for disk %d and the cluster"
                                   " has none" % idx, errors.ECODE_INVAL)
    return vg


def _ext_logical_id(spec: dict, uuid: str, idx: int) -> tuple[list, dict]:
    """(provider, volume) and the provider parameters (every key Corral does not know)."""
    provider = spec.get("provider")
    if not provider:
        raise errors.OpPrereqError("Disk %d: the ext template needs provider=NAME" % idx,
                                   errors.ECODE_INVAL)
    ext_params = {k: v for k, v in spec.items()
                  if k not in _DISK_KEYS and k not in ("provider",)}
    return [provider, "%s.disk%d" % (uuid, idx)], {"ext_params": ext_params}


def allocate_drbd_ids(disks: list[objects.Disk], alloc: DrbdAllocator) -> None:
    """Fill the port, minors and secret of DRBD disks (the port of mirror disks)
    whose logical_id lacks them."""
    for disk in disks:
        if disk.dev_type == constants.DT_MIRROR and disk.logical_id[2] is None:
            disk.logical_id = list(disk.logical_id[:2]) + [alloc.port()]
            continue
        if disk.dev_type != constants.DT_DRBD8 or disk.logical_id[2] is not None:
            continue
        pnode, snode = disk.logical_id[:2]
        pminor, sminor = alloc.minors([pnode, snode])
        disk.logical_id = [pnode, snode, alloc.port(), pminor, sminor, alloc.secret()]


def _drbd_disk(cluster: objects.Cluster, spec: dict, idx: int, pnode: str,
               snode: str) -> objects.Disk:
    """One DRBD disk: data LV (size) + meta LV (128 MiB) under a minor/port/secret."""
    dparams = cluster_lu.filled_diskparams(cluster)[constants.DT_DRBD8]
    vg = _vg(cluster, spec, idx)
    metavg = spec.get("metavg") or cluster.diskparams.get(constants.DT_DRBD8, {}).get(
        "metavg") or vg
    uuid = config.new_uuid()
    nodes = [pnode, snode]
    data = objects.Disk(uuid=config.new_uuid(), dev_type=constants.DT_PLAIN,
                        logical_id=[vg, "%s.disk%d_data" % (uuid, idx)], size=spec["size"],
                        params={"stripes": int(dparams["data-stripes"])}, nodes=list(nodes))
    meta = objects.Disk(uuid=config.new_uuid(), dev_type=constants.DT_PLAIN,
                        logical_id=[metavg, "%s.disk%d_meta" % (uuid, idx)],
                        size=constants.DRBD_META_SIZE,
                        params={"stripes": int(dparams["meta-stripes"])}, nodes=list(nodes))
    lid = [pnode, snode, None, None, None, None]
    return objects.Disk(uuid=uuid, name=spec.get("name"), dev_type=constants.DT_DRBD8,
                        logical_id=lid, children=[data, meta], iv_name="disk/%d" % idx,
                        size=spec["size"], mode=spec.get("mode", constants.DISK_RDWR),
                        spindles=spec.get("spindles"), nodes=list(nodes))


def _mirror_disk(spec: dict, idx: int, pnode: str, snode: str, directory: str,
                 file_driver: str | None) -> objects.Disk:
    """One mirror disk: a file image (same path on both nodes) under a port."""
    uuid = config.new_uuid()
    nodes = [pnode, snode]
    image = objects.Disk(uuid=config.new_uuid(), dev_type=constants.DT_FILE,
                         logical_id=[file_driver or iu.FILE_DRIVER_DEFAULT,
                                     os.path.join(directory, "%s.disk%d" % (uuid, idx))],
                         size=spec["size"], nodes=list(nodes))
    return objects.Disk(uuid=uuid, name=spec.get("name"), dev_type=constants.DT_MIRROR,
                        logical_id=[pnode, snode, None], children=[image],
                        iv_name="disk/%d" % idx, size=spec["size"],
                        mode=spec.get("mode", constants.DISK_RDWR),
                        spindles=spec.get("spindles"), nodes=list(nodes))


def space_needed(disks: list[objects.Disk]) -> dict[str, int]:
    """MiB each volume group needs on every node of the disks (plain: size; drbd: the
    data and meta volumes)."""
    out: dict[str, int] = {}
    for disk in disks:
        if disk.dev_type == constants.DT_PLAIN and disk.logical_id:
            out[disk.logical_id[0]] = out.get(disk.logical_id[0], 0) + int(disk.size)
        for child in disk.children:
            for vg, size in space_needed([child]).items():
                out[vg] = out.get(vg, 0) + size
    return out


def check_node_storage(lu, node_uuids: list[str], template: str,
                       disks: list[objects.Disk]) -> None:
    """OpPrereqError naming every node that cannot hold ``template`` disks, and why.

    Asks each node (one call, in parallel) whether the storage tools, kernel
    modules, ExtStorage providers and volume group space the disks need are
    there; nothing is changed.
    """
    dev_types = TEMPLATE_DEV_TYPES.get(template)
    if not dev_types:
        return
    params: dict = {}
    if template == constants.DT_EXT:
        providers = sorted({d.logical_id[0] for d in disks if d.logical_id})
        params = {"ext": {"provider": providers[0]}} if len(providers) == 1 else {}
    args = {"dev_types": dev_types, "vgs": space_needed(disks) or None,
            "params": params or None}
    names = [iu.node_name(lu.cfg, u) for u in node_uuids]
    results = lu.rpc.call("storage_check", names, args)
    problems = []
    for name in names:
        res = results[name]
        if res.failed:
            problems.append("node %s: cannot check its storage: %s" % (name, res.fail_msg))
        else:
            problems += ["node %s: %s" % (name, msg) for msg in res.data or []]
    if problems:
        raise errors.OpPrereqError("Disk template %s cannot be used: %s" %
                                   (template, "; ".join(problems)), errors.ECODE_ENVIRON)


def renumber_disks(disks: list[objects.Disk]) -> None:
    for idx, disk in enumerate(disks):
        disk.iv_name = "disk/%d" % idx


# ---- node operations ------------------------------------------------------------------

def _pnode_name(lu, inst: objects.Instance) -> str:
    return iu.node_name(lu.cfg, inst.primary_node)


def disk_rpc(cfg, disk: objects.Disk) -> dict:
    """iu.disk_rpc plus what the node needs to set the disk up: the cluster's disk
    parameters for its template under the disk's own, and for DRBD the two ends
    (``drbd_nodes``: node UUID -> [name, secondary IP]; the node picks its side).
    """
    cluster = cfg.get_cluster_info()
    out = iu.disk_rpc(cluster, disk)
    defaults = cluster_lu.filled_diskparams(cluster).get(disk.dev_type, {})
    out["params"] = objects.fill_dict(defaults, out["params"])
    if disk.dev_type in constants.DTS_INT_MIRROR and disk.logical_id:
        ends = {}
        for uuid in disk.logical_id[:2]:
            node = cfg.get_node_info(uuid)
            ends[uuid] = [node.name if node else uuid,
                          (node.secondary_ip or node.primary_ip) if node else None]
        key = "drbd_nodes" if disk.dev_type == constants.DT_DRBD8 else "mirror_nodes"
        out["params"][key] = ends
        out["children"] = [disk_rpc(cfg, c) for c in disk.children]
    if disk.dev_type == constants.DT_EXT:
        out["params"].update(name=disk.name, uuid=disk.uuid)
    return out


def _rpc_disks(lu, disks: list[objects.Disk]) -> list[dict]:
    return [disk_rpc(lu.cfg, d) for d in disks]


def _secondaries(disks: list[objects.Disk], primary: str) -> list[str]:
    """Nodes other than ``primary`` holding a part of ``disks`` (DRBD and mirror peers)."""
    out: list[str] = []
    for disk in disks:
        if disk.dev_type in constants.DTS_INT_MIRROR and disk.logical_id:
            out += [n for n in disk.logical_id[:2] if n != primary and n not in out]
    return out


def create_disks(lu, inst: objects.Instance, disks: list[objects.Disk] | None = None,
                 node_uuid: str | None = None) -> None:
    """Create ``disks`` (default: all of the instance's) on its primary (or ``node_uuid``),
    DRBD disks on their secondary first.

    All or nothing: on failure the nodes have removed what this call created,
    and OpExecError says why.  Adopted block devices are only checked.
    """
    disks = inst.disks if disks is None else disks
    if not disks:
        return
    primary = node_uuid or inst.primary_node
    done: list[str] = []
    info = "instance %s" % inst.name
    try:
        for node_uuid_ in _secondaries(disks, primary) + [primary]:
            node = iu.node_name(lu.cfg, node_uuid_)
            res = lu.rpc.call_one("blockdev_create", node,
                                  {"disks": _rpc_disks(lu, disks), "info": info,
                                   "on_primary": node_uuid_ == primary})
            if res.failed:
                raise errors.OpExecError("Can't create disks of instance %s on node %s: %s" %
                                         (inst.name, res.node, res.fail_msg))
            done.append(node)
    except errors.OpExecError:
        for node in done:
            res = lu.rpc.call_one("blockdev_remove", node, {"disks": _rpc_disks(lu, disks)})
            if res.failed:
                lu.log_warning("Could not remove the new disks on node %s: %s" %
                               (node, res.fail_msg))
        raise


def remove_disks(lu, inst: objects.Instance, disks: list[objects.Disk] | None = None,
                 ignore_failures: bool = False) -> bool:
    """Remove ``disks`` (default: all) from the primary and DRBD secondaries; False
    (warned) on failure; offline nodes are skipped (warned)."""
    disks = inst.disks if disks is None else disks
    if not disks:
        return True
    ok = True
    for node_uuid in [inst.primary_node] + _secondaries(disks, inst.primary_node):
        node = lu.cfg.get_node_info(node_uuid)
        if node is not None and node.offline and node_uuid != inst.primary_node:
            lu.log_warning("Not removing the disks of %s on offline node %s" %
                           (inst.name, node.name))
            continue
        res = lu.rpc.call_one("blockdev_remove", iu.node_name(lu.cfg, node_uuid),
                              {"disks": _rpc_disks(lu, disks)})
        if res.failed:
            msg = "Could not remove disks of instance %s on node %s: %s" % (
                inst.name, res.node, res.fail_msg)
            if not ignore_failures:
                raise errors.OpExecError(msg)
            lu.log_warning(msg)
            ok = False
    return ok


def assemble_disks(lu, inst: objects.Instance) -> list[list]:
    """Activate all disks (DRBD secondaries first, connected but not opened, then the
    primary); ``[[node, iv_name, path], ...]`` of the primary."""
    if not inst.disks:
        return []
    for node_uuid in _secondaries(inst.disks, inst.primary_node):
        res = lu.rpc.call_one("blockdev_assemble", iu.node_name(lu.cfg, node_uuid),
                              {"disks": _rpc_disks(lu, inst.disks), "as_primary": False})
        if res.failed:
            raise errors.OpExecError("Cannot activate block devices of instance %s on"
                                     " secondary node %s: %s" % (inst.name, res.node,
                                                                  res.fail_msg))
    res = lu.rpc.call_one("blockdev_assemble", _pnode_name(lu, inst),
                          {"disks": _rpc_disks(lu, inst.disks)})
    if res.failed:
        raise errors.OpExecError("Cannot activate block devices of instance %s: %s" %
                                 (inst.name, res.fail_msg))
    return [[res.node, d.iv_name, path] for d, path in zip(inst.disks, res.data)]


def shutdown_disks(lu, inst: objects.Instance, ignore_failures: bool = False) -> None:
    """Deactivate the disks on the primary and DRBD secondaries (warning only with
    ``ignore_failures``)."""
    if not inst.disks:
        return
    for node_uuid in [inst.primary_node] + _secondaries(inst.disks, inst.primary_node):
        node = lu.cfg.get_node_info(node_uuid)
        if node is not None and node.offline:
            continue
        res = lu.rpc.call_one("blockdev_shutdown", iu.node_name(lu.cfg, node_uuid),
                              {"disks": _rpc_disks(lu, inst.disks)})
        if res.failed:
            msg = "Cannot shut down the disks of instance %s on node %s: %s" % (
                inst.name, res.node, res.fail_msg)
            if not ignore_failures:
                raise errors.OpExecError(msg)
            lu.log_warning(msg)


def _format_eta(seconds: int | None) -> str:
    if seconds is None:
        return "unknown"
    minutes, sec = divmod(int(seconds), 60)
    return "%dm %ds" % (minutes, sec) if minutes else "%ds" % sec


def wait_for_sync(lu, inst: objects.Instance, disks: list[objects.Disk] | None = None,
                  oneshot: bool = False, node_uuid: str | None = None) -> bool:
    """Report resync progress in the job log until the mirrors are in sync.

    Returns False if they finished degraded (or, with ``oneshot``, are not yet
    in sync).  Non-mirrored disks return True at once.  DRBD offers no event
    for progress, so the primary's /proc/drbd is sampled every
    SYNC_POLL_SECONDS; a cancel of the job is honoured between samples.
    """
    disks = inst.disks if disks is None else disks
    if any(d.dev_type == constants.DT_MIRROR for d in disks):
        return instance_mirror.wait_for_sync(lu, inst, oneshot=oneshot)
    disks = [d for d in disks if d.dev_type in constants.DTS_INT_MIRROR]
    if not disks:
        return True
    node = iu.node_name(lu.cfg, node_uuid or inst.primary_node)
    waiter = threading.Event()
    while True:
        res = lu.rpc.call_one("blockdev_sync_status", node, {"disks": _rpc_disks(lu, disks)})
        res.raise_if_failed("Cannot get the mirror status of instance %s" % inst.name)
        syncing, degraded = False, False
        for disk, st in zip(disks, res.data):
            if st is None:
                lu.log_warning("Can't compute data for node %s/%s" % (node, disk.iv_name))
                degraded = True
                continue
            if st.get("sync_percent") is not None:
                syncing = True
                lu.log_info("- device %s: %5.2f%% done, %s remaining (estimated)" %
                            (disk.iv_name, st["sync_percent"], _format_eta(st["estimated_time"])))
            elif st.get("is_degraded"):
                degraded = True
        if not syncing or oneshot:
            break
        cbs = getattr(getattr(lu, "proc", None), "cbs", None)
        if cbs is not None and hasattr(cbs, "check_cancel"):
            cbs.check_cancel()
        waiter.wait(SYNC_POLL_SECONDS)
    if not syncing:
        lu.log_info("Instance %s's disks are in sync" % inst.name)
    return not (syncing or degraded)


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
        if self.instance.disk_template == constants.DT_MIRROR and \
                iu.running_on_primary(self, self.instance):
            if not instance_mirror.resync(self, self.instance, feedback_fn) and \
                    self.op.wait_for_sync:
                raise errors.OpExecError("Some disks of the instance are degraded!")
            return result
        if self.op.wait_for_sync and not wait_for_sync(self, self.instance):
            raise errors.OpExecError("Some disks of the instance are degraded!")
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
        inst = self.instance
        if self.disk.dev_type == constants.DT_MIRROR:
            self._grow_mirror(feedback_fn)
            return
        nodes = [iu.node_name(self.cfg, u) for u in
                 [inst.primary_node] + _secondaries([self.disk], inst.primary_node)]
        disk = disk_rpc(self.cfg, self.disk)
        # Every node's storage first (checked, then grown), then the mirror on top.
        steps = [(True, True), (False, True)]
        if self.disk.dev_type == constants.DT_DRBD8:
            steps.append((False, False))
        for dryrun, backingstore in steps:
            for node in nodes[:1] if not backingstore else nodes:
                res = self.rpc.call_one("blockdev_grow", node, {
                    "disk": disk, "amount": self.delta, "dryrun": dryrun,
                    "backingstore": backingstore})
                if res.failed:
                    raise errors.OpExecError("Grow request failed to node %s: %s" %
                                             (node, res.fail_msg))
        self.disk.size += self.delta
        self.cfg.update(inst)
        feedback_fn("Disk %d of instance %s grown by %d MiB to %d MiB" %
                    (self.op.disk, inst.name, self.delta, self.disk.size))
        if self.op.wait_for_sync and not wait_for_sync(self, inst, [self.disk]):
            self.log_warning("Disk syncing has not returned a good status; check the"
                             " instance")

    def _grow_mirror(self, feedback_fn: Callable[[str], None]) -> None:
        """Both nodes' images, then the running export (and a resync of a running
        guest, followed in the job log); see instance_mirror_rebuild.grow."""
        inst = self.instance
        instance_mirror_rebuild.grow(self, inst, self.disk, self.delta,
                                     iu.running_on_primary(self, inst), feedback_fn)
        self.disk.size += self.delta
        for child in self.disk.children:
            child.size += self.delta
        self.cfg.update(inst)
        feedback_fn("Disk %d of instance %s grown by %d MiB to %d MiB" %
                    (self.op.disk, inst.name, self.delta, self.disk.size))


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
            if disk.dev_type != constants.DT_DRBD8:  # DRBD keeps both ends
                disk.nodes = [pnode]
        for idx, changes in self.disk_changes.items():
            for key, value in changes.items():
                setattr(disks[idx], key, value)
        create_disks(self, inst, [disks[i] for i in self.indices], node_uuid=pnode)
        inst.primary_node = pnode
        inst.disks = disks
        self.cfg.update(inst)
