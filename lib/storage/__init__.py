"""Node-side storage drivers: one ``base.BlockDev`` subclass per disk type.

Callers (the node daemon's backend) look drivers up by the configuration's
device type, never import a driver module directly::

    cls = storage.get_device_class("plain")
    dev = cls(logical_id, children, size_mib, params)
    if not dev.attach(): dev.assemble()

``verify_environment`` tells early, in words an administrator can act on,
which of the requested types cannot work on this node.  Drivers do not import
each other; a DRBD device receives its LVM children already constructed
(``build_device`` does that recursively from a disk description).
"""

from typing import Any, Iterable, Sequence

from corral import errors
from corral.storage import base, blockdev, drbd, extstorage, filestorage, lvm, mirror, rbd
from corral.storage.base import BlockDev, SyncStatus

__all__ = ["BlockDev", "SyncStatus", "DEV_TYPES", "get_device_class", "verify_environment",
           "build_device", "find_device", "list_storage_units", "STORAGE_TYPES"]

_REGISTRY: dict[str, type[base.BlockDev]] = {
    "file": filestorage.FileStorage,
    "sharedfile": filestorage.SharedFileStorage,
    "blockdev": blockdev.PersistentBlockDevice,
    "plain": lvm.LogicalVolume,
    "drbd": drbd.DRBD8Dev,
    "ext": extstorage.ExtStorageDevice,
    "rbd": rbd.RADOSBlockDevice,
    "mirror": mirror.MirrorDev,
}
DEV_TYPES = frozenset(_REGISTRY)


def get_device_class(dev_type: str) -> type[base.BlockDev]:
    """The driver class for ``dev_type``; BlockDeviceError for unknown types."""
    try:
        return _REGISTRY[dev_type]
    except KeyError:
        raise errors.BlockDeviceError("Unknown storage type %r (known: %s)"
                                      % (dev_type, ", ".join(sorted(_REGISTRY)))) from None


def verify_environment(dev_types: Iterable[str],
                       params: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """One message per type that cannot work on this node (empty list: all fine).

    DRBD also needs LVM for its children, so asking for ``drbd`` checks both.
    ``params`` optionally maps a type to the parameters its check needs (e.g.
    ``{"ext": {"provider": "p1"}}``).
    """
    wanted: list[str] = []
    for t in dev_types:
        wanted += ["plain", t] if t == "drbd" else [t]
    messages = []
    for t in dict.fromkeys(wanted):
        problem = get_device_class(t).check_environment((params or {}).get(t))
        if problem:
            messages.append("%s: %s" % (t, problem))
    return messages


def build_device(disk: dict[str, Any]) -> base.BlockDev:
    """A BlockDev tree from ``{"dev_type", "logical_id", "size", "params", "children"}``.

    Children are built first (depth first), as DRBD needs its LVs.  Nothing
    is attached or changed.
    """
    children = [build_device(c) for c in disk.get("children") or []]
    cls = get_device_class(disk["dev_type"])
    return cls(disk["logical_id"], children, int(disk.get("size", 0)),
               disk.get("params") or {})


def find_device(dev_type: str, logical_id: Sequence[Any], children: Sequence[base.BlockDev],
                size: int, params: dict[str, Any] | None = None) -> base.BlockDev | None:
    """The device if it is present on this node (``attach`` succeeded), else None."""
    dev = get_device_class(dev_type)(logical_id, children, size, params)
    return dev if dev.attach() else None


STORAGE_TYPES = frozenset(["lvm-vg", "lvm-pv", "file", "sharedfile"])


def list_storage_units(storage_type: str, paths: Sequence[str] = ()) -> list[dict[str, Any]]:
    """``gnt-node list-storage`` rows (MiB: name, size, used, free, allocatable).

    ``paths`` are the storage dirs for the file types.  BlockDeviceError when
    the type is unknown or the tools fail (e.g. no LVM on this node).
    """
    if storage_type == "lvm-vg":
        return lvm.vg_storage_units(lvm.list_vgs())
    if storage_type == "lvm-pv":
        return lvm.pv_storage_units(lvm.list_pvs())
    if storage_type in ("file", "sharedfile"):
        return [filestorage.storage_unit_info(p) for p in paths]
    raise errors.BlockDeviceError("Unknown storage unit type %r (known: %s)"
                                  % (storage_type, ", ".join(sorted(STORAGE_TYPES))))
