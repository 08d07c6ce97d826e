"""Adopted block devices (disk template ``blockdev``).

The administrator hands Corral an existing device (``adopt=/dev/...``);
``logical_id = ("manual", path)``.  Corral never creates or destroys such a
device: ``create`` only checks it is there, ``remove`` just forgets it.
"""

import os
import stat
from typing import Any, Sequence

from corral.storage import base

BLOCKDEV_DRIVER_MANUAL = "manual"


def is_block_device(path: str) -> bool:
    """True if ``path`` (following symlinks) is an existing block device."""
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


class PersistentBlockDevice(base.BlockDev):
    """A block device that outlives Corral's use of it."""

    DEV_TYPE = "blockdev"

    def __init__(self, unique_id: Sequence[Any], children: Sequence[base.BlockDev] | None,
                 size: int, params: dict[str, Any] | None = None) -> None:
        super().__init__(unique_id, children, size, params)
        if len(self.unique_id) != 2 or self.unique_id[0] != BLOCKDEV_DRIVER_MANUAL:
            base.raise_bdev("Invalid blockdev logical_id %r: expected ('manual', path)",
                            unique_id)
        self.path = self.unique_id[1]
        if not isinstance(self.path, str) or not os.path.isabs(self.path):
            base.raise_bdev("Adopted device path %r is not absolute", self.path)

    @classmethod
    def create(cls, unique_id: Sequence[Any], children: Sequence[base.BlockDev], size: int,
               params: dict[str, Any], excl_stor: bool = False) -> "PersistentBlockDevice":
        """Adopt: the device must already exist and be a block device.  Changes nothing."""
        dev = cls(unique_id, children, size, params)
        if not dev.attach():
            base.raise_bdev("Cannot adopt %s: not an existing block device", dev.path)
        return dev

    def remove(self) -> None:
        """Forget the device; its data is the administrator's and stays."""
        self.attached = False
        self.dev_path = None

    def attach(self) -> bool:
        self.attached = is_block_device(self.path)
        self.dev_path = self.path if self.attached else None
        return self.attached

    def assemble(self) -> None:
        if not self.attach():
            base.raise_bdev("Adopted device %s is missing or not a block device", self.path)

    def shutdown(self) -> None:
        """Nothing to undo: the device is not Corral's."""
