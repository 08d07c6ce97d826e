"""Disk template conversion of a stopped instance (gnt-instance modify -t).

Supported, as in Ganeti: ``plain`` -> ``drbd`` (``-n SECONDARY``) and
``drbd`` -> ``plain``; and ``file`` -> ``mirror`` (``-n SECONDARY``) and
``mirror`` -> ``file`` (doc/design-mirror.md).  Called from
LUInstanceSetParams: ``check`` in its check_prereq (changes nothing), ``run``
in its exec, before any other change.

plain -> drbd: the meta volumes are created on the primary, data and meta on
the secondary; the existing volumes are renamed to the DRBD data names; DRBD
is created on both nodes (the primary's data is the sync source); the
configuration switches; the resync is waited for (or only checked).  If DRBD
cannot be set up, the volumes are renamed back and the new ones removed.

drbd -> plain: the configuration switches to the primary's data volumes first
(ports go back to the pool), then the secondary's volumes and the primary's
meta volumes are removed (failures there are warnings: the instance is fine).

file -> mirror: each file image becomes the image of a mirror disk (same
path, same disk uuid); empty images are created and exported on the
secondary; the configuration switches; the images are copied whole to the
secondary (offline copy), which is then marked complete.  Should the copy
fail, the instance is a mirror instance whose secondary is marked incomplete:
its next start copies the disks whole.

mirror -> file: the configuration switches to the primary's images (ports
back to the pool), then the secondary's images and processes are removed
and the primary's processes stopped (failures: warnings).
"""

from typing import Callable

from corral import config, constants, errors, objects
from corral.cmdlib import instance_mirror
from corral.cmdlib import instance_mirror_rebuild as imr
from corral.cmdlib import instance_storage as ist
from corral.cmdlib import instance_utils as iu

CONVERSIONS = frozenset([(constants.DT_PLAIN, constants.DT_DRBD8),
                         (constants.DT_DRBD8, constants.DT_PLAIN),
                         (constants.DT_FILE, constants.DT_MIRROR),
                         (constants.DT_MIRROR, constants.DT_FILE)])
Feedback = Callable[[str], None]


def mirror_of(disk: objects.Disk, pnode: str, snode: str) -> objects.Disk:
    """The mirror disk around file ``disk``: the file becomes its image (same path on
    both nodes) and the mirror disk keeps the file disk's uuid, so the image name
    stays ``<disk uuid>.diskN``; the port is not allocated yet."""
    image = objects.Disk(uuid=config.new_uuid(), dev_type=constants.DT_FILE,
                         logical_id=list(disk.logical_id), size=disk.size,
                         nodes=[pnode, snode])
    return objects.Disk(uuid=disk.uuid, name=disk.name, dev_type=constants.DT_MIRROR,
                        logical_id=[pnode, snode, None], children=[image],
                        iv_name=disk.iv_name, size=disk.size, mode=disk.mode,
                        spindles=disk.spindles, nodes=[pnode, snode])


def file_of(disk: objects.Disk) -> objects.Disk:
    """The primary's image of mirror ``disk`` as a file disk (the disk's uuid kept)."""
    image = disk.children[0]
    return objects.Disk(uuid=disk.uuid, name=disk.name, dev_type=constants.DT_FILE,
                        logical_id=list(image.logical_id), iv_name=disk.iv_name,
                        size=disk.size, mode=disk.mode, spindles=disk.spindles,
                        nodes=[disk.logical_id[0]])


class TemplateConversion:
    """One conversion of ``lu.instance`` to ``new_template`` (a tasklet of set-params)."""

    def __init__(self, lu, new_template: str, snode_uuid: str | None) -> None:
        self.lu = lu
        self.cfg = lu.cfg
        self.inst: objects.Instance = lu.instance
        self.new_template = new_template
        self.snode_uuid = snode_uuid

    # ---- prerequisites ----------------------------------------------------------------

    def check(self) -> None:
        inst = self.inst
        old = inst.disk_template
        if old == self.new_template:
            raise errors.OpPrereqError("Instance already has disk template %s" % old,
                                       errors.ECODE_INVAL)
        if (old, self.new_template) not in CONVERSIONS:
            raise errors.OpPrereqError("Unsupported disk template conversion from %s to %s"
                                       " (supported: plain to drbd, drbd to plain, file to"
                                       " mirror, mirror to file)" %
                                       (old, self.new_template), errors.ECODE_INVAL)
        cluster = self.cfg.get_cluster_info()
        if self.new_template not in cluster.enabled_disk_templates:
            raise errors.OpPrereqError("Disk template '%s' is not enabled in cluster" %
                                       self.new_template, errors.ECODE_STATE)
        iu.check_instance_down(self.lu, "change its disk template")
        if self.new_template == constants.DT_DRBD8:
            self._check_secondary()
            self._check_to_drbd()
        elif self.new_template == constants.DT_MIRROR:
            self._check_secondary()
            self._check_to_mirror()
        elif self.snode_uuid is not None:
            raise errors.OpPrereqError("A secondary node is only used when converting to"
                                       " drbd or mirror", errors.ECODE_INVAL)

    def _check_secondary(self) -> None:
        inst = self.inst
        if self.snode_uuid is None:
            raise errors.OpPrereqError("Changing the disk template to a mirrored one"
                                       " requires specifying a secondary node (-n)",
                                       errors.ECODE_INVAL)
        if self.snode_uuid == inst.primary_node:
            raise errors.OpPrereqError("Given new secondary node %s is the same as the"
                                       " primary node of the instance" %
                                       iu.node_name(self.cfg, self.snode_uuid),
                                       errors.ECODE_STATE)
        snode = iu.check_node_online(self.cfg, self.snode_uuid, "as secondary node")
        if snode.drained or not snode.vm_capable:
            raise errors.OpPrereqError("Cannot use %s node %s as secondary" %
                                       ("drained" if snode.drained else "non-vm-capable",
                                        snode.name), errors.ECODE_STATE)

    def _check_to_drbd(self) -> None:
        inst = self.inst
        self.new_disks = self._drbd_disks()
        meta_only = [objects.Disk.from_dict(d.children[1].to_dict()) for d in self.new_disks]
        ist.check_node_storage(self.lu, [inst.primary_node], constants.DT_DRBD8, meta_only)
        ist.check_node_storage(self.lu, [self.snode_uuid], constants.DT_DRBD8, self.new_disks)

    def _drbd_disks(self) -> list[objects.Disk]:
        """DRBD disks mirroring the current plain disks (ids not yet allocated)."""
        cluster = self.cfg.get_cluster_info()
        specs = [{"size": d.size, "mode": d.mode, "name": d.name, "vg": d.logical_id[0],
                  "spindles": d.spindles} for d in self.inst.disks]
        return ist.generate_disks(cluster, constants.DT_DRBD8, self.inst.name, specs,
                                  self.inst.primary_node, snode_uuid=self.snode_uuid)

    def _check_to_mirror(self) -> None:
        from corral.hypervisor import HYPERVISORS
        inst = self.inst
        if not getattr(HYPERVISORS.get(inst.hypervisor), "CAN_REPLICATE", False):
            raise errors.OpPrereqError("The mirror disk template needs a hypervisor that"
                                       " replicates disks (kvm), not %s" % inst.hypervisor,
                                       errors.ECODE_INVAL)
        self.new_disks = [mirror_of(d, inst.primary_node, self.snode_uuid)
                          for d in inst.disks]
        ist.check_node_storage(self.lu, [inst.primary_node, self.snode_uuid],
                               constants.DT_MIRROR, self.new_disks)

    # ---- execution ----------------------------------------------------------------------

    def run(self, feedback_fn: Feedback, wait_for_sync: bool) -> None:
        """Convert; the instance's disks end up deactivated (it is stopped)."""
        ist.shutdown_disks(self.lu, self.inst, ignore_failures=True)
        self.inst.disks_active = False
        if self.new_template == constants.DT_DRBD8:
            self._to_drbd(feedback_fn, wait_for_sync)
        elif self.new_template == constants.DT_MIRROR:
            self._to_mirror(feedback_fn, wait_for_sync)
        elif self.inst.disk_template == constants.DT_MIRROR:
            self._to_file(feedback_fn)
        else:
            self._to_plain(feedback_fn)

    def _to_drbd(self, feedback_fn: Feedback, wait_for_sync: bool) -> None:
        inst, lu = self.inst, self.lu
        pnode = iu.node_name(self.cfg, inst.primary_node)
        snode = iu.node_name(self.cfg, self.snode_uuid)
        new = self.new_disks
        ist.allocate_drbd_ids(new, ist.DrbdAllocator(self.cfg, iu.ec_id(lu)))
        info = "instance %s" % inst.name
        feedback_fn("Creating additional volumes...")
        metas = [d.children[1] for d in new]
        self._call("blockdev_create", pnode, {"disks": ist._rpc_disks(lu, metas), "info": info,
                                              "on_primary": False}, "Creating meta volumes")
        try:
            self._call("blockdev_create", snode, {"disks": ist._rpc_disks(lu, new),
                                                  "info": info, "on_primary": False},
                       "Creating the secondary's volumes")
        except errors.OpExecError:
            self._remove(pnode, metas)
            raise
        feedback_fn("Renaming original volumes...")
        renames = [[ist.disk_rpc(self.cfg, old), list(n.children[0].logical_id)]
                   for old, n in zip(inst.disks, new)]
        self._call("blockdev_rename", pnode, {"renames": renames}, "Renaming the volumes")
        feedback_fn("Initializing DRBD devices...")
        try:
            self._call("blockdev_create", pnode, {"disks": ist._rpc_disks(lu, new),
                                                  "on_primary": True, "children_exist": True},
                       "Initializing DRBD on the primary")
        except errors.OpExecError:
            feedback_fn("Initializing of DRBD devices failed; renaming back original"
                        " volumes...")
            back = [[ist.disk_rpc(self.cfg, n.children[0]), list(old.logical_id)]
                    for old, n in zip(inst.disks, new)]
            self._call("blockdev_rename", pnode, {"renames": back}, "Renaming the volumes back")
            self._remove(pnode, metas)
            self._remove(snode, new)
            raise
        inst.disk_template = constants.DT_DRBD8
        inst.disks = new
        inst.secondary_nodes = [self.snode_uuid]
        self.cfg.update(inst)
        iu.release_node_res(lu)
        in_sync = ist.wait_for_sync(lu, inst, oneshot=not wait_for_sync)
        ist.shutdown_disks(lu, inst, ignore_failures=True)  # the instance is stopped
        if not in_sync:
            raise errors.OpExecError("There are some degraded disks for this instance,"
                                     " please cleanup manually")

    def _to_mirror(self, feedback_fn: Feedback, wait_for_sync: bool) -> None:
        inst, lu = self.inst, self.lu
        new = self.new_disks
        ist.allocate_drbd_ids(new, ist.DrbdAllocator(self.cfg, iu.ec_id(lu)))
        feedback_fn("Creating the images on the secondary node %s..." %
                    iu.node_name(self.cfg, self.snode_uuid))
        self._call("blockdev_create", iu.node_name(self.cfg, self.snode_uuid),
                   {"disks": ist._rpc_disks(lu, new), "info": "instance %s" % inst.name,
                    "on_primary": False}, "Creating the secondary's images")
        inst.disk_template = constants.DT_MIRROR
        inst.disks = new
        inst.secondary_nodes = [self.snode_uuid]
        self.cfg.update(inst)
        iu.release_node_res(lu)
        try:
            if wait_for_sync:
                instance_mirror.sync_offline(lu, inst, feedback_fn)
            else:
                lu.log_warning("Not copying the disks: the secondary's copy is incomplete"
                               " until the next start of %s resyncs it" % inst.name)
        finally:
            ist.shutdown_disks(lu, inst, ignore_failures=True)  # the instance is stopped

    def _to_file(self, feedback_fn: Feedback) -> None:
        inst, lu = self.inst, self.lu
        old = [objects.Disk.from_dict(d.to_dict()) for d in inst.disks]
        snode_uuid = instance_mirror.secondary_uuid(inst)
        new = [file_of(d) for d in old]
        self._release_ports(old)
        inst.disks, inst.disk_template, inst.secondary_nodes = new, constants.DT_FILE, []
        self.cfg.update(inst)
        iu.release_node_res(lu)
        if snode_uuid is not None:
            feedback_fn("Removing the images on the secondary node...")
            imr.try_call(lu, "blockdev_remove", snode_uuid, {"disks": ist._rpc_disks(lu, old)},
                         "Removing the secondary's images")
        feedback_fn("Removing the mirror state on the primary node...")
        imr.try_call(lu, "blockdev_remove", inst.primary_node,
                     {"disks": ist._rpc_disks(lu, [imr.without_image(d) for d in old])},
                     "Removing the primary's mirror state")

    def _release_ports(self, old: list[objects.Disk]) -> None:
        cluster = self.cfg.get_cluster_info()
        for disk in old:
            port = disk.logical_id[2]
            if isinstance(port, int) and port not in cluster.tcpudp_port_pool:
                cluster.tcpudp_port_pool.append(port)
        self.cfg.update(cluster)

    def _to_plain(self, feedback_fn: Feedback) -> None:
        inst, lu = self.inst, self.lu
        old = [objects.Disk.from_dict(d.to_dict()) for d in inst.disks]
        snode_uuid = inst.secondary_nodes[0] if inst.secondary_nodes else None
        new = []
        for disk in old:
            data = objects.Disk.from_dict(disk.children[0].to_dict())
            data.size, data.mode, data.name = disk.size, disk.mode, disk.name
            data.spindles, data.nodes = disk.spindles, [inst.primary_node]
            new.append(data)
        ist.renumber_disks(new)
        self._release_ports(old)
        inst.disks, inst.disk_template, inst.secondary_nodes = new, constants.DT_PLAIN, []
        self.cfg.update(inst)
        iu.release_node_res(lu)
        if snode_uuid is not None:
            feedback_fn("Removing volumes on the secondary node...")
            self._remove(iu.node_name(self.cfg, snode_uuid), old, warn_only=True)
        feedback_fn("Removing unneeded volumes on the primary node...")
        self._remove(iu.node_name(self.cfg, inst.primary_node), [d.children[1] for d in old],
                     warn_only=True)

    # ---- helpers ----------------------------------------------------------------------------

    def _call(self, proc: str, node: str, args: dict, what: str) -> None:
        res = self.lu.rpc.call_one(proc, node, args)
        if res.failed:
            raise errors.OpExecError("%s on node %s failed: %s" % (what, res.node, res.fail_msg))

    def _remove(self, node: str, disks: list[objects.Disk], warn_only: bool = True) -> None:
        res = self.lu.rpc.call_one("blockdev_remove", node,
                                   {"disks": ist._rpc_disks(self.lu, disks)})
        if res.failed:
            self.lu.log_warning("Could not remove block devices on node %s, continuing"
                                " anyway: %s" % (res.node, res.fail_msg))
