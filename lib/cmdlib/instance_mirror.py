"""Master side of the ``mirror`` disk template (doc/design-mirror.md).

A mirror disk is a local image on the primary and on the secondary node; the
logical_id is ``[primary uuid, secondary uuid, port]`` and its first node is
always the current primary (:func:`swap_roles` keeps it so), which is how each
node daemon knows its role.

Where the replication state comes from: while the guest runs, the primary's
QEMU knows it exactly (its mirror jobs); while it is stopped nothing changes,
and the secondary's consistency marker says whether its copy is complete.
The master sets that marker only after seeing every disk in sync (or after a
whole offline copy), and clears it before any resync starts.
"""

import time
from typing import Any, Callable

from corral import constants, errors, objects
from corral.cmdlib import instance_storage as ist
from corral.cmdlib import instance_utils as iu

Feedback = Callable[[str], None]
STATUS_WAIT = 2.0        # seconds one status call may wait for a QEMU job event
REPORT_INTERVAL = 2.0    # seconds between progress lines in the job log
PRIMARY_TIMEOUT = 15.0   # a primary that does not answer by then is taken for dead
SETTLE_TRIES = 20        # looks for an in-sync mirror with no write in flight
_IN_SYNC = {"sync_percent": None, "estimated_time": None, "is_degraded": False,
            "ldisk_status": "okay"}


def is_mirror(inst: objects.Instance) -> bool:
    return inst.disk_template == constants.DT_MIRROR


def mirror_disks(inst: objects.Instance) -> list[objects.Disk]:
    return [d for d in inst.disks if d.dev_type == constants.DT_MIRROR]


def secondary_uuid(inst: objects.Instance) -> str | None:
    for disk in mirror_disks(inst):
        if disk.logical_id and len(disk.logical_id) >= 2:
            return disk.logical_id[1]
    return None


def swap_roles(inst: objects.Instance, new_primary: str) -> None:
    """Put ``new_primary`` first in every mirror disk's logical_id (in memory)."""
    for disk in mirror_disks(inst):
        if disk.logical_id and disk.logical_id[0] != new_primary:
            disk.logical_id = [disk.logical_id[1], disk.logical_id[0]] + \
                list(disk.logical_id[2:])


def set_consistent(lu: Any, inst: objects.Instance, consistent: bool) -> None:
    """Record on the secondary whether its copies are complete (OpExecError if it can't)."""
    disks = mirror_disks(inst)
    snode = secondary_uuid(inst)
    if not disks or snode is None:
        return
    res = lu.rpc.call_one("mirror_set_consistent", iu.node_name(lu.cfg, snode),
                          {"disks": ist._rpc_disks(lu, disks), "consistent": consistent})
    res.raise_if_failed("Cannot record the mirror state of %s on its secondary" % inst.name)


def sync_offline(lu: Any, inst: objects.Instance, feedback: Feedback) -> None:
    """Copy a stopped instance's disks whole to the secondary, then mark it complete.

    Ends every offline write (OS install, reinstall, import): the instance is
    only ready once both copies are equal.
    """
    disks = mirror_disks(inst)
    snode = secondary_uuid(inst)
    if not disks or snode is None:
        return
    set_consistent(lu, inst, False)
    feedback("* copying the disks to the secondary node %s" % iu.node_name(lu.cfg, snode))
    started = time.monotonic()
    res = lu.rpc.call_one("mirror_sync_offline", iu.node_name(lu.cfg, inst.primary_node),
                          {"disks": ist._rpc_disks(lu, disks)})
    res.raise_if_failed("Cannot copy the disks of %s to the secondary" % inst.name)
    took = max(time.monotonic() - started, 0.001)
    feedback("* disks copied: %.1f MiB in %.2f s" % (int(res.data or 0) / 1048576.0, took))
    set_consistent(lu, inst, True)


def _status_dict(state: dict | None) -> dict | None:
    """A live replication state as the DRBD-style status dict of the master."""
    if state is None:
        return None
    if state["state"] == "in_sync":
        return dict(_IN_SYNC, settled=bool(state.get("settled")))
    if state["state"] == "syncing":
        return dict(_IN_SYNC, sync_percent=float(state.get("percent") or 0.0))
    return dict(_IN_SYNC, is_degraded=True)


def status(lu: Any, inst: objects.Instance, wait: float = 0.0,
           ask_primary: bool = True) -> list[dict | None]:
    """Per mirror disk its status dict (sync_percent, is_degraded, ldisk_status).

    Running guest: the primary's QEMU (``wait``: up to that long for a job
    event first).  Stopped (or primary not asked): the secondary's marker.
    None for a disk nobody could report on.
    """
    disks = mirror_disks(inst)
    if ask_primary:
        pnode = iu.node_name(lu.cfg, inst.primary_node)
        res = lu.rpc.call_one("instance_replication_status", pnode,
                              {"hypervisor": inst.hypervisor, "name": inst.name,
                               "wait": wait}, timeout=wait + PRIMARY_TIMEOUT)
        if not res.failed and res.data is not None:
            return [_status_dict(s) for d, s in zip(inst.disks, res.data)
                    if d.dev_type == constants.DT_MIRROR]
    snode = secondary_uuid(inst)
    if snode is None:
        return [None] * len(disks)
    res = lu.rpc.call_one("blockdev_sync_status", iu.node_name(lu.cfg, snode),
                          {"disks": ist._rpc_disks(lu, disks)})
    if res.failed:
        return [None] * len(disks)
    return list(res.data)


def wait_for_sync(lu: Any, inst: objects.Instance, oneshot: bool = False) -> bool:
    """Report progress in the job log until every mirror disk is in sync.

    Woken by the QEMU job events (the status call waits for them); True and
    the secondary marked complete once all are in sync, False if a disk is
    degraded (or, with ``oneshot``, not yet in sync).
    """
    disks = mirror_disks(inst)
    pnode = iu.node_name(lu.cfg, inst.primary_node)
    last_report = 0.0
    wait = 0.0
    settle_tries = 0
    unsettled = False
    while True:
        states = status(lu, inst, wait=wait)
        syncing = degraded = False
        report = time.monotonic() - last_report >= REPORT_INTERVAL
        for disk, st in zip(disks, states):
            if st is None:
                lu.log_warning("Can't compute data for node %s/%s" % (pnode, disk.iv_name))
                degraded = True
            elif st.get("sync_percent") is not None:
                syncing = True
                if report:
                    lu.log_info("- device %s: %5.2f%% done, %s remaining (estimated)" %
                                (disk.iv_name, st["sync_percent"],
                                 ist._format_eta(st.get("estimated_time"))))
            elif st.get("is_degraded"):
                degraded = True
                lu.log_warning("- device %s: degraded (the secondary's copy is behind)" %
                               disk.iv_name)
        if report:
            last_report = time.monotonic()
        unsettled = not syncing and not degraded and any(
            st is not None and st.get("settled") is False for st in states)
        if unsettled and settle_tries < SETTLE_TRIES:
            settle_tries += 1  # a copy or guest write was in flight: look again
            wait = 0.0
            continue
        if not syncing or oneshot or degraded:
            break
        cbs = getattr(getattr(lu, "proc", None), "cbs", None)
        if cbs is not None and hasattr(cbs, "check_cancel"):
            cbs.check_cancel()
        wait = STATUS_WAIT
    if not syncing and not degraded:
        if unsettled:
            lu.log_warning("The guest keeps writing: the secondary of %s is in sync but not"
                           " recorded as complete yet (verify-disks will)" % inst.name)
        else:
            set_consistent(lu, inst, True)
        lu.log_info("Instance %s's disks are in sync" % inst.name)
    return not (syncing or degraded)


def resync(lu: Any, inst: objects.Instance, feedback: Feedback) -> bool:
    """Bring a running instance's mirror back in sync; True once it is.

    The secondary's export is (re)started and marked incomplete, the guest's
    QEMU resumes its paused jobs (only changed blocks are copied) or starts
    new ones (whole disks), and the job log follows the progress.
    """
    disks = mirror_disks(inst)
    snode = secondary_uuid(inst)
    if not disks or snode is None:
        return True
    states = status(lu, inst)
    if all(s is not None and s.get("settled") for s in states):
        set_consistent(lu, inst, True)
        return True
    set_consistent(lu, inst, False)
    res = lu.rpc.call_one("instance_replication_start", iu.node_name(lu.cfg, inst.primary_node),
                          {"instance": iu.instance_rpc(lu.cfg, inst),
                           "disks": ist._rpc_disks(lu, inst.disks)})
    res.raise_if_failed("Cannot restart the replication of %s" % inst.name)
    for problem in res.data or []:
        lu.log_warning("Not replicating %s" % problem)
    feedback("* resynchronising the disks with %s" % iu.node_name(lu.cfg, snode))
    return wait_for_sync(lu, inst)


class MirrorRoles:
    """The mirror side of a live migration to the secondary (roles swap).

    Before: the source's QEMU replicates into the target's export, so both
    images are equal; the incoming QEMU on the target opens the target's own
    image (no image locks on mirror disks).  After the memory arrived the
    source's QEMU is gone: the target stops exporting, the source starts, and
    the new primary mirrors back into it (whole disks: QEMU cannot tell that
    they are already equal), followed in the job log.
    """

    def __init__(self, lu: Any, inst: objects.Instance, feedback: Feedback) -> None:
        self.lu, self.inst, self.feedback = lu, inst, feedback

    def check_consistency(self) -> None:
        self.feedback("* checking disk consistency between source and target")
        for disk, st in zip(mirror_disks(self.inst), status(self.lu, self.inst)):
            if st is None or st.get("is_degraded") or st.get("sync_percent") is not None:
                raise errors.OpExecError("Disk %s is degraded or not fully synchronized on"
                                         " target node, aborting migration" % disk.iv_name)

    def after_switch(self, old_disks: list[dict]) -> None:
        """The config names the new primary; move the export and restart replication.

        ``old_disks``: the disks as RPC dicts from before the swap (the
        processes to stop on each node are found by disk, whatever the role).
        """
        lu, inst = self.lu, self.inst
        new_p = iu.node_name(lu.cfg, inst.primary_node)
        new_s = iu.node_name(lu.cfg, inst.secondary_nodes[0])
        self.feedback("* moving the disk export to %s" % new_s)
        for node, res in lu.rpc.call("blockdev_shutdown", [new_p, new_s],
                                     {"disks": old_disks}).items():
            res.raise_if_failed("Cannot stop the old disk roles on node %s" % node)
        ist.assemble_disks(lu, inst)
        self.feedback("* replicating from %s to %s" % (new_p, new_s))
        if not resync(lu, inst, self.feedback):
            lu.log_warning("The disks of %s are not in sync with %s yet" % (inst.name, new_s))
