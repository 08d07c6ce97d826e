"""OP_INSTANCE_REPLACE_DISKS (gnt-instance replace-disks) for DRBD and mirror instances.

Modes (spec/opcodes.md, spec/cli.md §4):

* ``replace_on_primary`` / ``replace_on_secondary``: new data and meta volumes
  on that node.  The DRBD device drops its local disk, the old volumes are
  renamed aside (``<name>_replaced-<time>``), the new ones take the old names
  and are attached with fresh metadata, DRBD resyncs them from the peer, and
  the old volumes are removed.  The configuration does not change.
* ``replace_new_secondary`` (``-n NODE``): volumes and a standalone DRBD device
  on the new node (new minor, same port and secret), the old secondary's device
  is shut down, the primary goes standalone, the configuration switches to the
  new logical ids, both ends connect, DRBD resyncs, the old volumes are removed.
  With ``-I ALLOC`` instead of ``-n``, an allocator chooses the new secondary
  (``relocate`` request from the current secondary); every node is locked
  while it runs, then only the instance's nodes and the chosen one stay locked.
* ``replace_auto``: whichever of primary/secondary reports faulty local disks.

The peer of the node being changed must be healthy first (its data is the only
copy during the resync).  Steps are logged as ``STEP n/m <what>`` like Ganeti.
Failures before the configuration changes undo what they created; failures
after it leave the new layout and say what to check.

``mirror`` instances (doc/design-mirror.md) support ``-s`` and ``-n``/``-I``
(:class:`MirrorReplaceOnSecondary`, :class:`MirrorReplaceSecondary`): a new
empty image on the secondary (same or new node), its export started, then a
whole copy from the primary (running guest: its QEMU, with the old jobs
dropped first; stopped: an offline copy).  ``-p`` and ``-a`` are refused:
the primary's image is the only current copy and a running QEMU holds it.
"""

import time
from typing import Any, Callable

from corral import config, constants, errors, locking, objects
from corral.cmdlib import instance_mirror_rebuild as imr
from corral.cmdlib import instance_storage as ist
from corral.cmdlib import instance_utils as iu
from corral.cmdlib.base import expand_node

REPLACE_ON_PRIMARY = "replace_on_primary"
REPLACE_ON_SECONDARY = "replace_on_secondary"
REPLACE_NEW_SECONDARY = "replace_new_secondary"
REPLACE_AUTO = "replace_auto"
Feedback = Callable[[str], None]


def new_lv_names(disk: objects.Disk, idx: int) -> tuple[str, str]:
    """Fresh (data, meta) LV names for disk ``idx`` (a new unique prefix)."""
    prefix = config.new_uuid()
    return "%s.disk%d_data" % (prefix, idx), "%s.disk%d_meta" % (prefix, idx)


def new_children(disk: objects.Disk, idx: int, nodes: list[str]) -> list[objects.Disk]:
    """New data/meta LV objects like ``disk``'s children, on the same VGs, new names."""
    data_name, meta_name = new_lv_names(disk, idx)
    out = []
    for child, name in zip(disk.children, (data_name, meta_name)):
        out.append(objects.Disk(uuid=config.new_uuid(), dev_type=constants.DT_PLAIN,
                                logical_id=[child.logical_id[0], name], size=child.size,
                                params=dict(child.params), nodes=list(nodes)))
    return out


def local_minor(disk: objects.Disk, node_uuid: str) -> int:
    """``node_uuid``'s minor in a DRBD logical_id."""
    node_a, node_b, _port, minor_a, minor_b, _secret = disk.logical_id
    if node_uuid == node_a:
        return minor_a
    if node_uuid == node_b:
        return minor_b
    raise errors.ProgrammerError("Node %s is not an end of %s" % (node_uuid, disk.logical_id))


def new_secondary_id(disk: objects.Disk, pnode: str, new_node: str, new_minor: int) -> list:
    """The DRBD logical_id after moving the secondary to ``new_node`` (same port/secret)."""
    _a, _b, port, _ma, _mb, secret = disk.logical_id
    return [pnode, new_node, port, local_minor(disk, pnode), new_minor, secret]


class LUInstanceReplaceDisks(iu.InstanceLU):
    HPATH = "mirrors-replace"
    LOCK_NODE_RES = True

    def check_arguments(self) -> None:
        op = self.op
        if op.mode == REPLACE_NEW_SECONDARY:
            if bool(op.remote_node) == bool(op.iallocator):
                raise errors.OpPrereqError("Give either a new secondary node (-n) or an"
                                           " iallocator (-I) when changing the secondary",
                                           errors.ECODE_INVAL)
        elif op.remote_node or op.iallocator:
            raise errors.OpPrereqError("The new secondary node (-n) and an iallocator (-I)"
                                       " only go with changing the secondary",
                                       errors.ECODE_INVAL)
        if len(set(op.disks)) != len(op.disks):
            raise errors.OpPrereqError("Disk indices given twice: %s" % op.disks,
                                       errors.ECODE_INVAL)

    def expand_names(self) -> None:
        super().expand_names()
        self.new_node = expand_node(self.cfg, self.op.remote_node) \
            if self.op.remote_node else None

    def lock_node_uuids(self, inst: objects.Instance) -> list[str]:
        nodes = list(inst.all_nodes)
        if self.new_node is not None and self.new_node.uuid not in nodes:
            nodes.append(self.new_node.uuid)
        return nodes

    def declare_locks(self, level: int) -> None:
        if self.op.iallocator and level in (locking.LEVEL_NODE, locking.LEVEL_NODE_RES):
            self.needed_locks[level] = locking.ALL_SET  # any node may be chosen
            return
        super().declare_locks(level)

    # ---- prerequisites ---------------------------------------------------------------

    def check_prereq(self) -> None:
        super().check_prereq()
        inst = self.instance
        if inst.disk_template not in constants.DTS_INT_MIRROR:
            raise errors.OpPrereqError("Can only run replace disks for DRBD8-based and mirror"
                                       " instances (instance %s uses %s)" %
                                       (inst.name, inst.disk_template), errors.ECODE_INVAL)
        if inst.disk_template == constants.DT_MIRROR:
            _check_mirror_mode(inst, self.op.mode)
        if len(inst.secondary_nodes) != 1:
            raise errors.OpPrereqError("The instance has a strange layout, expected one"
                                       " secondary but found %d" % len(inst.secondary_nodes),
                                       errors.ECODE_FAULT)
        bad = [i for i in self.op.disks if not 0 <= i < len(inst.disks)]
        if bad:
            raise errors.OpPrereqError("Invalid disk index %d (instance has %d disks)" %
                                       (bad[0], len(inst.disks)), errors.ECODE_INVAL)
        self.pnode_uuid = inst.primary_node
        self.snode_uuid = inst.secondary_nodes[0]
        self.mode = self.op.mode
        self.indices = sorted(self.op.disks) or list(range(len(inst.disks)))
        if self.mode == REPLACE_AUTO:
            self._choose_auto()
        if self.mode == REPLACE_NEW_SECONDARY:
            if self.op.iallocator:
                self.new_node = self._allocate()
            self._check_new_secondary()
            self.target, self.other = self.new_node.uuid, self.pnode_uuid
        elif self.mode == REPLACE_ON_PRIMARY:
            self.target, self.other = self.pnode_uuid, self.snode_uuid
        elif self.mode == REPLACE_ON_SECONDARY:
            self.target, self.other = self.snode_uuid, self.pnode_uuid
        else:
            self.target = self.other = None
            return
        for uuid in (self.target, self.other):
            iu.check_node_online(self.cfg, uuid, "for replacing disks")
        ist.check_node_storage(self, [self.target], inst.disk_template, self._disks())

    def _disks(self) -> list[objects.Disk]:
        return [self.instance.disks[i] for i in self.indices]

    def _allocate(self) -> objects.Node:
        """The allocator's new secondary (relocate request), then keep only the locks
        of the instance's nodes and that one (Ganeti's _RunAllocator)."""
        from corral import iallocator
        inst = self.instance
        old = iu.node_name(self.cfg, self.snode_uuid)
        result = iallocator.run_for_lu(self, self.op.iallocator,
                                       iallocator.RelocRequest(inst.name, [old]), "nodes")
        node = self.cfg.get_node_by_name(result[0])
        self.log_info("Selected new secondary for instance '%s': %s", inst.name, node.name)
        self.op.remote_node = node.name
        keep = set(inst.all_nodes) | {node.uuid}
        for level in (locking.LEVEL_NODE, locking.LEVEL_NODE_RES):
            extra = sorted(set(self.owned(level)) - keep)
            if extra:
                self.context.glm.release(self.proc.owner, level, extra)
        return node

    def _check_new_secondary(self) -> None:
        new = self.new_node
        if new.uuid == self.pnode_uuid:
            raise errors.OpPrereqError("The specified node is the primary node of the"
                                       " instance", errors.ECODE_INVAL)
        if new.uuid == self.snode_uuid:
            raise errors.OpPrereqError("The specified node is already the secondary node of"
                                       " the instance", errors.ECODE_INVAL)
        if new.drained or not new.vm_capable:
            raise errors.OpPrereqError("Cannot use %s node %s as the new secondary" %
                                       ("drained" if new.drained else "non-vm-capable",
                                        new.name), errors.ECODE_STATE)
        if self.op.disks and sorted(self.op.disks) != list(range(len(self.instance.disks))):
            raise errors.OpPrereqError("Changing the secondary replaces all disks; do not"
                                       " select disks", errors.ECODE_INVAL)

    def _faulty(self, node_uuid: str) -> list[int]:
        """Indices of disks whose local storage on ``node_uuid`` is faulty or missing."""
        res = self.rpc.call_one("blockdev_sync_status", iu.node_name(self.cfg, node_uuid),
                                {"disks": ist._rpc_disks(self, self.instance.disks)})
        res.raise_if_failed("Can't check the disks of instance %s" % self.instance.name)
        return [i for i, st in enumerate(res.data or [])
                if st is None or st.get("ldisk_status") == "faulty"]

    def _choose_auto(self) -> None:
        on_primary = self._faulty(self.pnode_uuid)
        on_secondary = self._faulty(self.snode_uuid)
        if on_primary and on_secondary:
            raise errors.OpPrereqError("Instance %s has faulty disks on more than one node,"
                                       " can't replace them automatically" %
                                       self.instance.name, errors.ECODE_STATE)
        if on_primary:
            self.mode, self.indices = REPLACE_ON_PRIMARY, on_primary
        elif on_secondary:
            self.mode, self.indices = REPLACE_ON_SECONDARY, on_secondary
        else:
            self.mode, self.indices = None, []

    # ---- hooks --------------------------------------------------------------------------

    def extra_hooks_env(self) -> dict[str, Any]:
        return {"MODE": self.op.mode,
                "NEW_SECONDARY": self.new_node.name if self.new_node else "",
                "OLD_SECONDARY": iu.node_name(self.cfg, self.instance.secondary_nodes[0])
                if self.instance.secondary_nodes else ""}

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        nodes = [self.master_uuid, self.instance.primary_node]
        if self.new_node is not None:
            nodes.append(self.new_node.uuid)
        return nodes, list(nodes)

    # ---- execution ----------------------------------------------------------------------

    def exec(self, feedback_fn: Feedback) -> None:
        inst = self.instance
        if self.mode is None:
            feedback_fn("No disks need replacement for instance '%s'" % inst.name)
            return
        feedback_fn("Replacing disk(s) %s for instance '%s'" %
                    (", ".join(str(i) for i in self.indices), inst.name))
        feedback_fn("Current primary node: %s" % iu.node_name(self.cfg, self.pnode_uuid))
        feedback_fn("Current secondary node: %s" % iu.node_name(self.cfg, self.snode_uuid))
        if inst.disk_template == constants.DT_MIRROR:
            if self.mode == REPLACE_NEW_SECONDARY:
                MirrorReplaceSecondary(self, feedback_fn).run()
            else:
                MirrorReplaceOnSecondary(self, feedback_fn).run()
            return
        activated = False
        if not inst.disks_active:
            feedback_fn("Activating the disks of the stopped instance")
            ist.assemble_disks(self, inst)
            activated = True
        try:
            if self.mode == REPLACE_NEW_SECONDARY:
                ReplaceSecondary(self, feedback_fn).run()
            else:
                ReplaceOnNode(self, feedback_fn).run()
        finally:
            if activated:
                ist.shutdown_disks(self, self.cfg.get_instance_by_name(inst.name) or inst,
                                   ignore_failures=True)


def _check_mirror_mode(inst: objects.Instance, mode: str) -> None:
    """Only the secondary of a mirror instance can be rebuilt (-s, -n/-I)."""
    if mode == REPLACE_ON_PRIMARY:
        raise errors.OpPrereqError(
            "Cannot replace the primary's disks of mirror instance %s: its images are the"
            " only current copy and a running QEMU holds them open; migrate or fail over"
            " to the secondary first, then rebuild the other node's copy with -s" %
            inst.name, errors.ECODE_INVAL)
    if mode == REPLACE_AUTO:
        raise errors.OpPrereqError(
            "Automatic replacement (-a) is not supported for mirror instance %s: use"
            " 'gnt-instance activate-disks' to resync a degraded secondary, or -s/-n to"
            " rebuild it" % inst.name, errors.ECODE_INVAL)


class _Replacer:
    """Shared steps of both replacement flows (a tasklet of the LU)."""

    STEPS = 6

    def __init__(self, lu: LUInstanceReplaceDisks, feedback_fn: Feedback) -> None:
        self.lu = lu
        self.cfg = lu.cfg
        self.rpc = lu.rpc
        self.inst = lu.instance
        self.feedback = feedback_fn
        self.step = 0

    def log_step(self, what: str) -> None:
        self.step += 1
        self.feedback("STEP %d/%d %s" % (self.step, self.STEPS, what))

    def name(self, node_uuid: str) -> str:
        return iu.node_name(self.cfg, node_uuid)

    def rpc_disks(self, disks: list[objects.Disk]) -> list[dict]:
        return ist._rpc_disks(self.lu, disks)

    def call(self, proc: str, node_uuid: str, args: dict, what: str) -> Any:
        res = self.rpc.call_one(proc, self.name(node_uuid), args)
        if res.failed:
            raise errors.OpExecError("%s on node %s failed: %s" % (what, res.node, res.fail_msg))
        return res.data

    def check_existence(self, disks: list[objects.Disk], nodes: list[str]) -> None:
        self.log_step("Check device existence")
        for node in nodes:
            self.feedback("Checking disks on node %s" % self.name(node))
            found = self.call("blockdev_sync_status", node, {"disks": self.rpc_disks(disks)},
                              "Checking the disks")
            for disk, st in zip(disks, found or []):
                if st is None:
                    raise errors.OpExecError("Can't find disk %s on node %s" %
                                             (disk.iv_name, self.name(node)))

    def check_peer(self, disks: list[objects.Disk], node: str) -> None:
        self.log_step("Check peer consistency")
        self.feedback("Checking disk/%s consistency on node %s" %
                      (",".join(d.iv_name.split("/")[-1] for d in disks), self.name(node)))
        found = self.call("blockdev_sync_status", node, {"disks": self.rpc_disks(disks)},
                          "Checking the peer's disks")
        for disk, st in zip(disks, found or []):
            if st is None or st.get("ldisk_status") == "faulty" or \
                    st.get("sync_percent") is not None:
                raise errors.OpExecError("Node %s has degraded storage, unsafe to replace disks"
                                         " for instance %s (%s)" %
                                         (self.name(node), self.inst.name, disk.iv_name))

    def sync(self) -> None:
        self.log_step("Sync devices")
        if self.lu.op.early_release:  # the nodes' resources are settled; others may go on
            iu.release_node_res(self.lu)
        if not ist.wait_for_sync(self.lu, self.inst, self.lu._disks()):
            raise errors.OpExecError("DRBD device(s) of instance %s are degraded after the"
                                     " replacement; check 'gnt-instance info'" % self.inst.name)

    def remove_old(self, node: str, old_lvs: list[objects.Disk]) -> None:
        self.log_step("Removing old storage")
        node_obj = self.cfg.get_node_info(node)
        if node_obj is None or node_obj.offline:
            self.lu.log_warning("Node %s is offline: remove the old volumes %s there by hand"
                                % (self.name(node), ", ".join("/".join(lv.logical_id)
                                                             for lv in old_lvs)))
            return
        res = self.rpc.call_one("blockdev_remove", self.name(node),
                                {"disks": self.rpc_disks(old_lvs)})
        if res.failed:
            self.lu.log_warning("Can't remove old LVs on node %s: %s\nHint: remove unused LVs"
                                " manually" % (res.node, res.fail_msg))


class ReplaceOnNode(_Replacer):
    """New volumes on the primary or the secondary; the configuration is unchanged."""

    def run(self) -> None:
        lu = self.lu
        target, other = lu.target, lu.other
        disks = lu._disks()
        self.check_existence(disks, [other, target])
        self.check_peer(disks, other)
        self.log_step("Allocate new storage")
        pairs = [(disk, new_children(disk, idx, disk.nodes or self.inst.all_nodes))
                 for idx, disk in zip(lu.indices, disks)]
        fresh = [lv for _disk, new in pairs for lv in new]
        self.feedback("Adding storage on %s for %s" %
                      (self.name(target), ", ".join(d.iv_name for d in disks)))
        self.call("blockdev_create", target, {"disks": self.rpc_disks(fresh),
                                              "info": "instance %s" % self.inst.name,
                                              "on_primary": False}, "Creating new volumes")
        self.log_step("Changing drbd configuration")
        try:
            old = self._swap(target, pairs)
        except errors.OpExecError:
            self._cleanup_new(target, fresh)
            raise
        self.sync()
        self.remove_old(target, old)

    def _swap(self, target: str, pairs: list[tuple[objects.Disk, list[objects.Disk]]]
              ) -> list[objects.Disk]:
        """Detach, rename old volumes aside, give the new ones the old names, attach.

        Returns the old volumes under their temporary names.
        """
        disks = [d for d, _new in pairs]
        self.call("drbd_remove_children", target, {"disks": self.rpc_disks(disks)},
                  "Detaching the old volumes")
        suffix = "_replaced-%d" % int(time.time())
        renames, old_aside = [], []
        for disk, new in pairs:
            for child, new_lv in zip(disk.children, new):
                aside = objects.Disk.from_dict(child.to_dict())
                aside.logical_id = [child.logical_id[0], child.logical_id[1] + suffix]
                renames.append([child, list(aside.logical_id)])
                old_aside.append(aside)
                renames.append([new_lv, list(child.logical_id)])
        self.feedback("Renaming the old volumes aside and the new ones into place")
        self.call("blockdev_rename", target,
                  {"renames": [[ist.disk_rpc(self.cfg, d), lid] for d, lid in renames]},
                  "Renaming volumes")
        self.call("drbd_add_children", target, {"disks": self.rpc_disks(disks)},
                  "Attaching the new volumes")
        return old_aside

    def _cleanup_new(self, target: str, fresh: list[objects.Disk]) -> None:
        res = self.rpc.call_one("blockdev_remove", self.name(target),
                                {"disks": self.rpc_disks(fresh)})
        if res.failed:
            self.lu.log_warning("Could not remove the new volumes on %s: %s" %
                                (res.node, res.fail_msg))


class ReplaceSecondary(_Replacer):
    """Move the secondary to a new node (all disks)."""

    def run(self) -> None:
        lu = self.lu
        inst = self.inst
        pnode, old_snode, new_node = lu.pnode_uuid, lu.snode_uuid, lu.new_node.uuid
        disks = [objects.Disk.from_dict(d.to_dict()) for d in inst.disks]  # the old layout
        self.check_existence(disks, [pnode])
        self.check_peer(disks, pnode)
        self.log_step("Allocate new storage")
        minors = self.cfg.allocate_drbd_minors(iu.ec_id(lu), [new_node] * len(disks))
        new_disks = []
        for idx, (disk, minor) in enumerate(zip(disks, minors)):
            new = objects.Disk.from_dict(disk.to_dict())
            new.logical_id = new_secondary_id(disk, pnode, new_node, minor)
            new.children = new_children(disk, idx, [pnode, new_node])
            new.nodes = [pnode, new_node]
            new_disks.append(new)
        standalone = self.rpc_disks(new_disks)
        for d in standalone:
            d["params"]["standalone"] = True
        self.feedback("Creating new DRBD devices and volumes on %s" % self.name(new_node))
        self.call("blockdev_create", new_node, {"disks": standalone, "on_primary": False,
                                                "info": "instance %s" % inst.name},
                  "Creating the new secondary's disks")
        self.log_step("Changing drbd configuration")
        self._switch(disks, new_disks, pnode, old_snode, new_node)
        self.sync()
        self.remove_old(old_snode, [c for d in disks for c in d.children])

    def _switch(self, old: list[objects.Disk], new: list[objects.Disk], pnode: str,
                old_snode: str, new_node: str) -> None:
        """Old secondary down, primary standalone, config to the new ids, reconnect."""
        inst = self.inst
        if not self.cfg.get_node_info(old_snode).offline:
            res = self.rpc.call_one("blockdev_shutdown", self.name(old_snode),
                                    {"disks": self.rpc_disks(old)})
            if res.failed:
                self.lu.log_warning("Failed to shut down the DRBD devices on the old"
                                    " secondary %s: %s" % (res.node, res.fail_msg))
        res = self.rpc.call_one("drbd_disconnect_net", self.name(pnode),
                                {"disks": self.rpc_disks(old)})
        if res.failed:
            cleanup = self.rpc.call_one("blockdev_remove", self.name(new_node),
                                        {"disks": self.rpc_disks(new)})
            if cleanup.failed:
                self.lu.log_warning("Could not remove the new disks on %s: %s" %
                                    (cleanup.node, cleanup.fail_msg))
            raise errors.OpExecError("Can't detach the disks from the network on the primary"
                                     " %s: %s" % (res.node, res.fail_msg))
        self.feedback("Updating instance configuration")
        for disk, new_disk in zip(inst.disks, new):
            disk.logical_id, disk.children, disk.nodes = (new_disk.logical_id,
                                                          new_disk.children, new_disk.nodes)
        inst.secondary_nodes = [new_node]
        self.cfg.update(inst)
        self.feedback("Attaching primary drbds to new secondary (standalone => connected)")
        for node in (pnode, new_node):
            res = self.rpc.call_one("drbd_attach_net", self.name(node),
                                    {"disks": self.rpc_disks(inst.disks), "multimaster": False})
            if res.failed:
                self.lu.log_warning("Can't attach drbd disks on node %s: %s\nHint: check"
                                    " 'gnt-instance info %s' for the disk status" %
                                    (res.node, res.fail_msg, inst.name))


class _MirrorReplacer(_Replacer):
    """Shared steps of rebuilding a mirror secondary (same node or a new one)."""

    STEPS = 5

    def __init__(self, lu: LUInstanceReplaceDisks, feedback_fn: Feedback) -> None:
        super().__init__(lu, feedback_fn)
        self.running = iu.running_on_primary(lu, self.inst)
        self.was_active = self.inst.disks_active

    def check_primary(self, disks: list[objects.Disk]) -> None:
        """The primary's images are the source of the copy: they must exist."""
        self.log_step("Check device existence")
        self.feedback("Checking the images on the primary node %s" %
                      self.name(self.lu.pnode_uuid))
        for disk, found in zip(disks, imr.check_images(self.lu, self.lu.pnode_uuid, disks)):
            if not found:
                raise errors.OpExecError("Can't find the image of disk %s on the primary"
                                         " node %s" % (disk.iv_name,
                                                       self.name(self.lu.pnode_uuid)))

    def create(self, node: str, disks: list[objects.Disk]) -> None:
        """New empty images on ``node`` (exported at once); all or nothing on the node."""
        self.feedback("Creating new images on %s for %s" %
                      (self.name(node), ", ".join(d.iv_name for d in disks)))
        self.call("blockdev_create", node, {"disks": self.rpc_disks(disks),
                                            "info": "instance %s" % self.inst.name,
                                            "on_primary": False},
                  "Creating the new secondary images")

    def copy(self) -> None:
        self.log_step("Sync devices")
        if self.lu.op.early_release:
            iu.release_node_res(self.lu)
        if not imr.bring_in_sync(self.lu, self.inst, self.running, self.feedback):
            raise errors.OpExecError("The mirror disks of %s are degraded after the"
                                     " replacement; check 'gnt-instance info'" % self.inst.name)

    def remove_images(self, node: str, disks: list[objects.Disk], what: str) -> None:
        self.log_step("Removing old storage")
        if disks and not imr.try_call(self.lu, "blockdev_remove", node,
                                      {"disks": self.rpc_disks(disks)}, "Removing %s" % what):
            self.lu.log_warning("Hint: remove %s on node %s by hand" % (what, self.name(node)))

    def finish(self) -> None:
        """A stopped instance whose disks were not active leaves nothing running."""
        if not self.was_active and not self.running:
            ist.shutdown_disks(self.lu, self.inst, ignore_failures=True)


class MirrorReplaceOnSecondary(_MirrorReplacer):
    """A new empty image on the same secondary; the old one is kept aside (renamed)
    until the copy is complete.  The configuration does not change."""

    def run(self) -> None:
        lu = self.lu
        snode, disks = lu.snode_uuid, lu._disks()
        self.check_primary(disks)
        self.log_step("Check the secondary's images")
        present = imr.check_images(lu, snode, disks)
        self.log_step("Allocate new storage")
        if self.running:
            imr.stop_replication(lu, self.inst, disks)
        self.call("blockdev_shutdown", snode, {"disks": self.rpc_disks(disks)},
                  "Stopping the exports")
        aside = self._set_aside(snode, [d for d, p in zip(disks, present) if p])
        try:
            self.create(snode, disks)
        except errors.OpExecError:
            self._put_back(snode, aside)
            raise
        self.copy()
        self.remove_images(snode, [new for _old, new in aside], "the old images")
        self.finish()

    def _set_aside(self, node: str, disks: list[objects.Disk]
                   ) -> list[tuple[objects.Disk, objects.Disk]]:
        """Rename the old images to ``<path>_replaced-<time>``; (image, renamed) pairs."""
        suffix = "_replaced-%d" % int(time.time())
        pairs = []
        for image in imr.images(disks):
            renamed = objects.Disk.from_dict(image.to_dict())
            renamed.logical_id = [image.logical_id[0], image.logical_id[1] + suffix]
            pairs.append((image, renamed))
        if pairs:
            self.feedback("Renaming the old images aside on %s" % self.name(node))
            self.call("blockdev_rename", node,
                      {"renames": [[ist.disk_rpc(self.cfg, old), list(new.logical_id)]
                                   for old, new in pairs]}, "Renaming the old images")
        return pairs

    def _put_back(self, node: str, pairs: list[tuple[objects.Disk, objects.Disk]]) -> None:
        res = self.rpc.call_one("blockdev_rename", self.name(node),
                                {"renames": [[ist.disk_rpc(self.cfg, new), list(old.logical_id)]
                                             for old, new in pairs]})
        if res.failed:
            self.lu.log_warning("Could not rename the old images back on %s: %s" %
                                (res.node, res.fail_msg))
        self.lu.log_warning("The secondary's copies of %s are not replicated; run"
                            " 'gnt-instance activate-disks' to resync them" % self.inst.name)


class MirrorReplaceSecondary(_MirrorReplacer):
    """Move the secondary to a new node: images and export there, the primary's
    tunnel switched to it, a whole copy, then the old node's images removed."""

    def run(self) -> None:
        lu, inst = self.lu, self.inst
        pnode, old_snode, new_node = lu.pnode_uuid, lu.snode_uuid, lu.new_node.uuid
        old = [objects.Disk.from_dict(d.to_dict()) for d in inst.disks]
        self.check_primary(old)
        self.log_step("Allocate new storage")
        new = [self._moved(disk, pnode, new_node) for disk in old]
        self.create(new_node, new)
        self.log_step("Changing mirror configuration")
        try:
            if self.running:
                imr.stop_replication(lu, inst, old)
            self.call("blockdev_shutdown", pnode, {"disks": self.rpc_disks(old)},
                      "Stopping the tunnels to the old secondary")
        except errors.OpExecError:
            imr.try_call(lu, "blockdev_remove", new_node, {"disks": self.rpc_disks(new)},
                         "Removing the new images")
            raise
        imr.try_call(lu, "blockdev_shutdown", old_snode, {"disks": self.rpc_disks(old)},
                     "Stopping the old secondary's exports")
        self.feedback("Updating instance configuration")
        for disk, moved in zip(inst.disks, new):
            disk.logical_id, disk.nodes, disk.children = (moved.logical_id, moved.nodes,
                                                          moved.children)
        inst.secondary_nodes = [new_node]
        self.cfg.update(inst)
        self.copy()
        self.remove_images(old_snode, old, "the old secondary's images")
        self.finish()

    @staticmethod
    def _moved(disk: objects.Disk, pnode: str, new_node: str) -> objects.Disk:
        """``disk`` with ``new_node`` as its secondary: same port (the export binds the
        new node's own address), same image path and disk uuid."""
        out = objects.Disk.from_dict(disk.to_dict())
        out.logical_id = [pnode, new_node] + list(disk.logical_id[2:])
        out.nodes = [pnode, new_node]
        for child in out.children:
            child.nodes = [pnode, new_node]
        return out
