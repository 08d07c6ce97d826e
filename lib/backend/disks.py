"""Node side of instance disks: create, remove, assemble, shut down, grow, rename.

The master sends disks as dicts (cmdlib/instance_utils.disk_rpc): dev_type,
logical_id, size (MiB), params (for file-based disks ``allowed_dirs``, the
cluster's storage directories: a path outside them is refused by the driver),
children, uuid, iv_name, mode.  Procedures take lists, so one call handles all
disks of an instance; each says what it leaves behind on failure.
"""

import logging
from typing import Any

from corral import errors, storage
from corral.storage import base as storage_base


def _device(disk: dict) -> storage_base.BlockDev:
    return storage.build_device(disk)


def _desc(disk: dict) -> str:
    return disk.get("iv_name") or "%s %s" % (disk.get("dev_type"), disk.get("logical_id"))


def blockdev_create(disks: list, info: str = "") -> list[str | None]:
    """Create every disk (in order); return their device paths.

    All or nothing: if one fails, the disks this call created are removed
    again and BlockDeviceError names the failing disk.
    """
    created: list[storage_base.BlockDev] = []
    paths: list[str | None] = []
    try:
        for disk in disks:
            children = [_device(c) for c in disk.get("children") or []]
            cls = storage.get_device_class(disk["dev_type"])
            dev = cls.create(disk["logical_id"], children, int(disk["size"]),
                             disk.get("params") or {})
            created.append(dev)
            if info:
                dev.set_info(info)
            paths.append(dev.dev_path)
    except errors.GenericError as err:
        _undo_create(created)
        raise errors.BlockDeviceError("Cannot create disk %s: %s" %
                                      (_desc(disk), err.args[0] if err.args else err)) from err
    except BaseException:
        _undo_create(created)
        raise
    return paths


def _undo_create(created: list[storage_base.BlockDev]) -> None:
    for dev in reversed(created):
        try:
            dev.remove()
        except errors.GenericError as err:
            logging.warning("Cannot remove %r after a failed create: %s", dev, err)


def blockdev_remove(disks: list) -> None:
    """Remove every disk (idempotent); tries all, then raises naming the failures."""
    failures = []
    for disk in disks:
        try:
            dev = _device(disk)
            dev.shutdown()
            dev.remove()
        except errors.GenericError as err:
            failures.append("%s: %s" % (_desc(disk), err.args[0] if err.args else err))
    if failures:
        raise errors.BlockDeviceError("Cannot remove disk(s): " + "; ".join(failures))


def assemble(disks: list) -> list[dict]:
    """Assemble ``disks``; hypervisor DiskSpec dicts (path, mode, uuid, dev_type).

    Used by the instance procedures too.  Raises BlockDeviceError naming the
    first disk that cannot be made usable; already assembled ones stay so
    (assembling is idempotent, the master deactivates on failure).
    """
    out = []
    for disk in disks:
        dev = _device(disk)
        try:
            if not dev.attach():
                dev.assemble()
            dev.open()
        except errors.GenericError as err:
            raise errors.BlockDeviceError("Cannot activate disk %s: %s" %
                                          (_desc(disk), err.args[0] if err.args else err)) from err
        if not dev.dev_path:
            raise errors.BlockDeviceError("Disk %s has no device path after activation" %
                                          _desc(disk))
        out.append({"path": dev.dev_path, "mode": disk.get("mode") or "rw",
                    "uuid": disk.get("uuid") or "", "dev_type": disk["dev_type"],
                    "size": disk.get("size"), "name": disk.get("name")})
    return out


def blockdev_assemble(disks: list) -> list[str]:
    """Activate ``disks`` on this node; their device paths in order."""
    return [d["path"] for d in assemble(disks)]


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
