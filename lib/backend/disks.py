"""Node side of instance disks: create, remove, assemble, shut down, grow, rename.

The master sends disks as dicts (cmdlib/instance_utils.disk_rpc): dev_type,
logical_id, size (MiB), params (for file-based disks ``allowed_dirs``, the
cluster's storage directories: a path outside them is refused by the driver),
children, uuid, iv_name, mode.  Procedures take lists, so one call handles all
disks of an instance; each says what it leaves behind on failure.
"""

import logging
from typing import Any

from corral import errors, netutils, storage
from corral.storage import base as storage_base
from corral.storage import drbd as storage_drbd

DRBD = "drbd"
MIRROR = "mirror"


def localize(disk: dict, hostname: str | None = None) -> dict:
    """``disk`` with node-specific parameters filled in for this node (a copy).

    The master describes a DRBD disk once for both ends: ``params["drbd_nodes"]``
    maps each end's node UUID (as in the logical_id) to ``[name, secondary IP]``.
    Here that becomes the driver's ``local_node``, ``local_ip`` and ``remote_ip``
    by matching this node's name; ``params["standalone"]`` leaves the IPs out
    (device set up without networking, as on a new secondary before the switch).
    A ``mirror`` disk is described the same way (``params["mirror_nodes"]``);
    see :func:`_localize_mirror`.  Other disk types are returned unchanged.
    """
    if disk.get("dev_type") == MIRROR and "mirror_nodes" in (disk.get("params") or {}):
        return _localize_mirror(disk, hostname or netutils.get_hostname())
    if disk.get("dev_type") != DRBD or "drbd_nodes" not in (disk.get("params") or {}):
        return disk
    out = dict(disk)
    params = dict(out["params"])
    ends = params.pop("drbd_nodes")
    standalone = params.pop("standalone", False)
    me = hostname or netutils.get_hostname()
    mine = [uuid for uuid, (name, _ip) in ends.items() if name == me]
    if not mine:
        raise errors.BlockDeviceError("Node %s is neither end of DRBD disk %s (%s)" %
                                      (me, _desc(disk), ", ".join(n for n, _ in ends.values())))
    local = mine[0]
    params["local_node"] = local
    if not standalone:
        peers = [ip for uuid, (_name, ip) in ends.items() if uuid != local]
        params["local_ip"] = ends[local][1]
        if peers:
            params["remote_ip"] = peers[0]
    out["params"] = params
    return out


def _localize_mirror(disk: dict, me: str) -> dict:
    """A mirror disk's view from this node: its role and both ends' names and IPs.

    The first node of the logical_id is the primary (the master keeps that
    order when the roles swap), so the role needs no instance lookup here.
    """
    out = dict(disk)
    params = dict(out["params"])
    ends = params.pop("mirror_nodes")
    mine = [uuid for uuid, (name, _ip) in ends.items() if name == me]
    if not mine:
        raise errors.BlockDeviceError("Node %s is neither end of mirror disk %s (%s)" %
                                      (me, _desc(disk), ", ".join(n for n, _ in ends.values())))
    local = mine[0]
    remote = [uuid for uuid in ends if uuid != local]
    params.update(local_node=local, local_name=ends[local][0], local_ip=ends[local][1],
                  role="primary" if disk["logical_id"][0] == local else "secondary",
                  disk_uuid=disk.get("uuid") or "")
    if remote:
        params.update(remote_name=ends[remote[0]][0], remote_ip=ends[remote[0]][1])
    out["params"] = params
    return out


def _device(disk: dict) -> storage_base.BlockDev:
    return storage.build_device(localize(disk))


def _desc(disk: dict) -> str:
    return disk.get("iv_name") or "%s %s" % (disk.get("dev_type"), disk.get("logical_id"))


def blockdev_create(disks: list, info: str = "", on_primary: bool = True,
                    children_exist: bool = False) -> list[str | None]:
    """Create every disk (in order), children first; return their device paths.

    With ``children_exist`` the children are only looked up (template
    conversion puts DRBD on top of an existing volume).  A mirrored device
    (DRBD) is assembled right away on both ends and, on the primary
    (``on_primary``), made primary with force: its data becomes the sync
    source.  All or nothing: if one disk fails, everything this call created
    is removed again and BlockDeviceError names the failing disk.
    """
    created: list[storage_base.BlockDev] = []
    paths: list[str | None] = []
    disk: dict = {}
    try:
        for disk in disks:
            disk = localize(disk)
            if children_exist:
                dev = _create_on_children(disk, created)
            else:
                dev = _create_tree(disk, created, info)
            if dev.SUPPORTS_SYNC:
                dev.assemble()
                if on_primary:
                    dev.open(force=True)
            paths.append(dev.dev_path)
    except errors.GenericError as err:
        _undo_create(created)
        raise errors.BlockDeviceError("Cannot create disk %s: %s" %
                                      (_desc(disk), err.args[0] if err.args else err)) from err
    except BaseException:
        _undo_create(created)
        raise
    return paths


def _create_tree(disk: dict, created: list[storage_base.BlockDev],
                 info: str) -> storage_base.BlockDev:
    """Create ``disk``'s children (depth first) and then the disk; record each in ``created``."""
    children = [_create_tree(c, created, info) for c in disk.get("children") or []]
    cls = storage.get_device_class(disk["dev_type"])
    dev = cls.create(disk["logical_id"], children, int(disk["size"]),
                     disk.get("params") or {})
    created.append(dev)
    if info and not children:
        dev.set_info(info)
    return dev


def _create_on_children(disk: dict, created: list[storage_base.BlockDev]
                        ) -> storage_base.BlockDev:
    """Create ``disk`` on top of children that must already exist on this node."""
    children = [_device(c) for c in disk.get("children") or []]
    for child, desc in zip(children, disk.get("children") or []):
        if not child.attach():
            raise errors.BlockDeviceError("Child device %s of disk %s not found" %
                                          (_desc(desc), _desc(disk)))
    cls = storage.get_device_class(disk["dev_type"])
    dev = cls.create(disk["logical_id"], children, int(disk["size"]),
                     disk.get("params") or {})
    created.append(dev)
    return dev


def _undo_create(created: list[storage_base.BlockDev]) -> None:
    for dev in reversed(created):
        try:
            dev.remove()
        except errors.GenericError as err:
            logging.warning("Cannot remove %r after a failed create: %s", dev, err)


def blockdev_remove(disks: list) -> None:
    """Remove every disk and its children (idempotent); tries all, then raises naming
    the failures."""
    failures = []
    for disk in disks:
        try:
            dev = _device(disk)
            dev.shutdown()
            dev.remove()
            for child in dev.children:  # DRBD: its data and meta volumes
                child.remove()
        except errors.GenericError as err:
            failures.append("%s: %s" % (_desc(disk), err.args[0] if err.args else err))
    if failures:
        raise errors.BlockDeviceError("Cannot remove disk(s): " + "; ".join(failures))


def assemble(disks: list, as_primary: bool = True) -> list[dict]:
    """Assemble ``disks``; hypervisor DiskSpec dicts (path, mode, uuid, dev_type).

    Used by the instance procedures too.  Raises BlockDeviceError naming the
    first disk that cannot be made usable; already assembled ones stay so
    (assembling is idempotent, the master deactivates on failure).  On a
    secondary (``as_primary`` false) mirrored devices are connected but not
    opened.
    """
    out = []
    for disk in disks:
        dev = _device(disk)
        try:
            if not dev.attach():
                dev.assemble()
            if as_primary:
                dev.open()
        except errors.GenericError as err:
            raise errors.BlockDeviceError("Cannot activate disk %s: %s" %
                                          (_desc(disk), err.args[0] if err.args else err)) from err
        if not dev.dev_path:
            raise errors.BlockDeviceError("Disk %s has no device path after activation" %
                                          _desc(disk))
        spec = {"path": dev.dev_path, "mode": disk.get("mode") or "rw",
                "uuid": disk.get("uuid") or "", "dev_type": disk["dev_type"],
                "size": disk.get("size"), "name": disk.get("name")}
        if disk["dev_type"] == MIRROR and dev.params.get("role") == "primary":
            spec["mirror"] = dev.client_socket()  # type: ignore[attr-defined]
        out.append(spec)
    return out


def blockdev_assemble(disks: list, as_primary: bool = True) -> list[str]:
    """Activate ``disks`` on this node; their device paths in order."""
    return [d["path"] for d in assemble(disks, as_primary)]


def blockdev_shutdown(disks: list) -> None:
    """Deactivate ``disks`` (data kept; idempotent); raises naming the failures."""
    failures = []
    for disk in disks:
        try:
            dev = _device(disk)
            dev.close()
            dev.shutdown()
        except errors.GenericError as err:
            failures.append("%s: %s" % (_desc(disk), err.args[0] if err.args else err))
    if failures:
        raise errors.BlockDeviceError("Cannot deactivate disk(s): " + "; ".join(failures))


def blockdev_grow(disk: dict, amount: int, dryrun: bool, backingstore: bool) -> None:
    """Grow one disk by ``amount`` MiB (``dryrun``: only check it can be done)."""
    dev = _device(disk)
    if not dev.CAN_GROW:
        raise errors.BlockDeviceError("Disk %s (%s) cannot be grown" %
                                      (_desc(disk), disk["dev_type"]))
    if not dev.attach():
        raise errors.BlockDeviceError("Disk %s not found on this node" % _desc(disk))
    dev.grow(int(amount), dryrun, backingstore)


def blockdev_rename(renames: list) -> list[list]:
    """Rename disks in place: ``[[disk, new_logical_id], ...]``; returns the new ids.

    Stops at the first failure (BlockDeviceError naming it); earlier renames stand.
    """
    out = []
    for disk, new_id in renames:
        dev = _device(disk)
        if not dev.CAN_RENAME:
            raise errors.BlockDeviceError("Disk %s (%s) cannot be renamed" %
                                          (_desc(disk), disk["dev_type"]))
        if not dev.attach():
            raise errors.BlockDeviceError("Disk %s not found on this node" % _desc(disk))
        dev.rename(new_id)
        out.append(list(dev.unique_id))
    return out


def blockdev_getsize(disks: list) -> list[Any]:
    """Sizes in MiB (rounded down) of the disks present here, None for missing ones."""
    out: list[Any] = []
    for disk in disks:
        dev = _device(disk)
        if not dev.attach():
            out.append(None)
            continue
        out.append(dev.get_actual_size() // (1024 * 1024))
    return out


# ---- mirror state and DRBD reconfiguration (replace-disks, migration) -----------------------

def blockdev_sync_status(disks: list) -> list[dict | None]:
    """Combined sync status (device and children, worst wins) per disk; None if absent.

    Non-mirrored devices are always in sync; changes nothing.
    """
    out: list[dict | None] = []
    for disk in disks:
        dev = _device(disk)
        if not dev.attach():
            out.append(None)
            continue
        out.append(dev.combined_sync_status().to_dict())
    return out


def _drbd_devices(disks: list) -> list[storage_drbd.DRBD8Dev]:
    devs = []
    for disk in disks:
        dev = _device(disk)
        if not isinstance(dev, storage_drbd.DRBD8Dev):
            raise errors.BlockDeviceError("Disk %s is not a DRBD device (%s)" %
                                          (_desc(disk), disk.get("dev_type")))
        devs.append(dev)
    return devs


def drbd_disconnect_net(disks: list) -> None:
    """Put the DRBD devices in standalone mode (their peer is being replaced or moved)."""
    for dev in _drbd_devices(disks):
        dev.disconnect_net()


def drbd_attach_net(disks: list, multimaster: bool = False) -> None:
    """Connect the DRBD devices to the peers named in their logical_id.

    ``multimaster`` allows two primaries (only while migrating).  Devices that
    are not set up yet are assembled first.  Idempotent for connected devices.
    """
    for dev in _drbd_devices(disks):
        if not dev.attach():
            dev.assemble()
            continue
        dev.attach_net(multimaster)


def drbd_remove_children(disks: list) -> None:
    """Detach the local data and meta volumes from the DRBD devices (diskless; the
    peer keeps serving).  Idempotent: a device without local disk is left alone."""
    for dev in _drbd_devices(disks):
        if not dev.attach() and dev.minor not in storage_drbd.read_proc_drbd().used_minors():
            continue
        gen = storage_drbd.get_cmdgen()
        storage_base.check_result(type(dev).runner(gen.detach_cmd(dev.minor)),
                                  "Detaching the local disk of drbd%d" % dev.minor)


def drbd_add_children(disks: list) -> None:
    """Attach new (empty) data and meta volumes to diskless DRBD devices.

    Fresh metadata is written on the new meta volume first, so DRBD resyncs the
    whole device from the peer.  The children must exist (created and renamed
    by the master's earlier calls).
    """
    for dev in _drbd_devices(disks):
        if len(dev.children) != 2:
            raise errors.BlockDeviceError("drbd%d: two children (data, meta) are needed" %
                                          dev.minor)
        for child in dev.children:
            if not child.attach():
                child.assemble()
        data, meta = (c.dev_path for c in dev.children)
        assert data is not None and meta is not None
        gen = storage_drbd.get_cmdgen()
        cmds = [gen.create_md_cmd(dev.minor, meta)]
        local = gen.local_attach_cmds(dev.minor, data, meta, dev.size, dev.params)
        # 8.4: the resource and minor exist already; only apply-al and attach remain.
        cmds += local[-2:] if len(local) > 1 else local
        for cmd in cmds:
            storage_base.check_result(type(dev).runner(cmd),
                                      "Attaching new local disk to drbd%d" % dev.minor)
