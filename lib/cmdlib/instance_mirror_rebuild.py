"""Master side of changing a ``mirror`` instance's copies (doc/design-mirror.md,
"Rebuilding, resizing, converting").

Building blocks of replace-disks -s/-n (instance_replace_disks), template
conversion (instance_convert), grow-disk (instance_storage) and adding disks
(instance_set_params).  The rule they share: the primary's image is always
the current data; a secondary image that is new (or grown while exported) is
only trusted again after a whole copy (stopped guest: ``sync_offline``) or
once the running guest's QEMU reports it in sync (``instance_mirror.resync``),
and the secondary's consistency marker says so only then.
"""

from typing import Any, Callable

from corral import constants, errors, objects
from corral.cmdlib import instance_mirror
from corral.cmdlib import instance_storage as ist
from corral.cmdlib import instance_utils as iu

Feedback = Callable[[str], None]


def indices_of(inst: objects.Instance, disks: list[objects.Disk]) -> list[int]:
    """Positions of ``disks`` in the instance (by uuid), as QEMU numbers them."""
    uuids = [d.uuid for d in inst.disks]
    return [uuids.index(d.uuid) for d in disks]


def images(disks: list[objects.Disk]) -> list[objects.Disk]:
    """The image (file child) of each mirror disk."""
    return [d.children[0] for d in disks]


def without_image(disk: objects.Disk) -> objects.Disk:
    """A copy of mirror ``disk`` without its image: removing it on a node stops the
    disk's processes and drops its run directory but leaves the image file."""
    out = objects.Disk.from_dict(disk.to_dict())
    out.children = []
    return out


def call(lu: Any, proc: str, node_uuid: str, args: dict, what: str) -> Any:
    """One RPC; OpExecError naming ``what`` and the node if it failed."""
    res = lu.rpc.call_one(proc, iu.node_name(lu.cfg, node_uuid), args)
    if res.failed:
        raise errors.OpExecError("%s on node %s failed: %s" % (what, res.node, res.fail_msg))
    return res.data


def try_call(lu: Any, proc: str, node_uuid: str, args: dict, what: str) -> bool:
    """One RPC whose failure is only a warning (offline nodes are skipped, warned)."""
    node = lu.cfg.get_node_info(node_uuid)
    if node is None or node.offline:
        lu.log_warning("%s: node %s is offline, skipped (clean up there by hand)" %
                       (what, iu.node_name(lu.cfg, node_uuid)))
        return False
    res = lu.rpc.call_one(proc, node.name, args)
    if res.failed:
        lu.log_warning("%s on node %s failed: %s" % (what, res.node, res.fail_msg))
        return False
    return True


def check_images(lu: Any, node_uuid: str, disks: list[objects.Disk]) -> list[bool]:
    """Whether each disk's image exists on the node (its processes need not run)."""
    sizes = list(call(lu, "blockdev_getsize", node_uuid,
                      {"disks": ist._rpc_disks(lu, images(disks))},
                      "Looking for the images") or [])
    return [idx < len(sizes) and sizes[idx] is not None for idx in range(len(disks))]


def stop_replication(lu: Any, inst: objects.Instance, disks: list[objects.Disk]) -> None:
    """Running guest: drop the QEMU jobs replicating ``disks`` (their secondary image
    is about to change); the next ``resync`` copies those disks whole."""
    call(lu, "instance_replication_stop", inst.primary_node,
         {"hypervisor": inst.hypervisor, "name": inst.name,
          "disks": indices_of(inst, disks)}, "Stopping the replication")


def set_disks_consistent(lu: Any, inst: objects.Instance, disks: list[objects.Disk],
                         consistent: bool) -> None:
    """Record on the secondary whether the copies of ``disks`` (only) are complete."""
    snode = instance_mirror.secondary_uuid(inst)
    if disks and snode is not None:
        call(lu, "mirror_set_consistent", snode,
             {"disks": ist._rpc_disks(lu, disks), "consistent": consistent},
             "Recording the mirror state")


def bring_in_sync(lu: Any, inst: objects.Instance, running: bool, feedback: Feedback) -> bool:
    """Make the secondary's copies equal to the primary's; True once they are.

    Running guest: its QEMU resumes or (dropped jobs) restarts replication and
    the job log follows it; stopped: a whole offline copy.
    """
    if running:
        return instance_mirror.resync(lu, inst, feedback)
    instance_mirror.sync_offline(lu, inst, feedback)
    return True


# ---- grow-disk ------------------------------------------------------------------------------

def grow(lu: Any, inst: objects.Instance, disk: objects.Disk, delta: int, running: bool,
         feedback: Feedback) -> None:
    """Grow mirror ``disk`` by ``delta`` MiB on both nodes (the config is the caller's).

    The images grow (sparse, zeroes) on both nodes, checked on both first, so
    equal copies stay equal.  A running export is resized too, which cuts its
    connections: a running guest then resyncs (changed blocks only), with
    progress in the job log; for a stopped one the secondary's marker is put
    back as it was.  If the export cannot be resized it is stopped, so the next
    activation starts it with the new size.
    """
    pnode, snode = disk.logical_id[0], disk.logical_id[1]
    image = ist.disk_rpc(lu.cfg, disk.children[0])
    for dryrun in (True, False):
        for node in (pnode, snode):
            call(lu, "blockdev_grow", node, {"disk": image, "amount": delta, "dryrun": dryrun,
                                             "backingstore": True}, "Growing the image")
    if not (running or inst.disks_active):
        return  # nothing exported: the next activation sees the new size
    before = None if running else _marker(lu, inst, disk)
    if not try_call(lu, "blockdev_grow", snode,
                    {"disk": ist.disk_rpc(lu.cfg, disk), "amount": delta, "dryrun": False,
                     "backingstore": False}, "Resizing the export of %s" % disk.iv_name):
        try_call(lu, "blockdev_shutdown", snode, {"disks": ist._rpc_disks(lu, [disk])},
                 "Stopping the export of %s" % disk.iv_name)
    if running:
        feedback("* resynchronising %s after the resize" % disk.iv_name)
        if not instance_mirror.resync(lu, inst, feedback):
            lu.log_warning("The disks of %s are not in sync yet; check 'gnt-instance info'" %
                           inst.name)
    elif before:
        set_disks_consistent(lu, inst, [disk], True)


def _marker(lu: Any, inst: objects.Instance, disk: objects.Disk) -> bool:
    """Whether the secondary's marker says ``disk``'s copy is complete (False if unknown)."""
    snode = instance_mirror.secondary_uuid(inst)
    res = lu.rpc.call_one("blockdev_sync_status", iu.node_name(lu.cfg, snode),
                          {"disks": ist._rpc_disks(lu, [disk])})
    if res.failed or not res.data or res.data[0] is None:
        return False
    return not res.data[0].get("is_degraded")


# ---- modify --disk add --------------------------------------------------------------------

def after_add(lu: Any, inst: objects.Instance, added: list[objects.Disk]) -> None:
    """New mirror disks were created on both nodes: both images are all zeroes, hence
    equal, so the secondary is marked complete for them; their processes stop again
    unless the instance's disks are active."""
    added = [d for d in added if d.dev_type == constants.DT_MIRROR]
    if not added:
        return
    set_disks_consistent(lu, inst, added, True)
    if not inst.disks_active:
        for node in ist._secondaries(added, inst.primary_node) + [inst.primary_node]:
            try_call(lu, "blockdev_shutdown", node, {"disks": ist._rpc_disks(lu, added)},
                     "Deactivating the new disks")
