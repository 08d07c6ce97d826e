"""Ceph RBD images through the ``rbd`` CLI (disk template ``rbd``).

``logical_id = ("rbd", image name)``; ``params``: ``pool`` (default ``rbd``),
``access`` (``kernelspace``: mapped to /dev/rbdN; ``userspace`` is QEMU's job
and needs no mapping).  Command generation is pure (``*_cmd``); the JSON of
``rbd showmapped --format json`` is parsed in both shapes rbd has printed
(a list of objects, and the older object keyed by id).
"""

import json
import os
import re
from typing import Any, Sequence

from corral import errors
from corral.storage import base

RBD_CMD = "rbd"
RBD_SYSFS = "/sys/bus/rbd"
DEFAULT_POOL = "rbd"
ACCESS_KERNEL = "kernelspace"
ACCESS_USER = "userspace"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def create_cmd(pool: str, name: str, size: int) -> list[str]:
    return [RBD_CMD, "create", "-p", pool, name, "--size", str(size)]


def map_cmd(pool: str, name: str) -> list[str]:
    return [RBD_CMD, "map", "-p", pool, name]


def showmapped_cmd(pool: str) -> list[str]:
    return [RBD_CMD, "showmapped", "-p", pool, "--format", "json"]


def unmap_cmd(device: str) -> list[str]:
    return [RBD_CMD, "unmap", device]


def remove_cmd(pool: str, name: str) -> list[str]:
    return [RBD_CMD, "rm", "-p", pool, name]


def resize_cmd(pool: str, name: str, new_size: int) -> list[str]:
    return [RBD_CMD, "resize", "-p", pool, name, "--size", str(new_size)]


def info_cmd(pool: str, name: str) -> list[str]:
    return [RBD_CMD, "info", "-p", pool, name, "--format", "json"]


def snap_create_cmd(pool: str, name: str, snap: str) -> list[str]:
    return [RBD_CMD, "snap", "create", "-p", pool, "--snap", snap, name]


def parse_showmapped(text: str) -> list[dict[str, str]]:
    """Mappings as dicts with ``pool``, ``name``, ``snap``, ``device``."""
    if not text.strip():
        return []
    try:
        data = json.loads(text)
    except ValueError as err:
        raise errors.BlockDeviceError("Cannot parse rbd showmapped output: %s" % err)
    entries = data if isinstance(data, list) else list(data.values())
    return [{"pool": str(e.get("pool", "")), "name": str(e.get("name", "")),
             "snap": str(e.get("snap", "-")), "device": str(e.get("device", ""))}
            for e in entries]


def find_mapping(text: str, pool: str, name: str) -> str | None:
    """Device of the (non-snapshot) mapping of ``pool/name``; None if unmapped."""
    devices = [m["device"] for m in parse_showmapped(text)
               if m["pool"] == pool and m["name"] == name and m["snap"] in ("-", "")]
    if len(devices) > 1:
        base.raise_bdev("RBD image %s/%s is mapped more than once: %s", pool, name,
                        ", ".join(devices))
    return devices[0] if devices else None


class RADOSBlockDevice(base.BlockDev):
    """One RBD image, mapped through the kernel rbd driver when assembled."""

    DEV_TYPE = "rbd"
    CAN_GROW = True
    CAN_SNAPSHOT = True

    def __init__(self, unique_id: Sequence[Any], children: Sequence[base.BlockDev] | None,
                 size: int, params: dict[str, Any] | None = None) -> None:
        super().__init__(unique_id, children, size, params)
        if len(self.unique_id) != 2:
            base.raise_bdev("Invalid rbd logical_id %r: expected ('rbd', name)", unique_id)
        self.name = self.unique_id[1]
        self.pool = self.params.get("pool") or DEFAULT_POOL
        for value, what in ((self.name, "image"), (self.pool, "pool")):
            if not isinstance(value, str) or not _NAME_RE.match(value):
                base.raise_bdev("Invalid RBD %s name %r", what, value)

    @classmethod
    def check_environment(cls, params: dict[str, Any] | None = None) -> str | None:
        if base.missing_tools([RBD_CMD]):
            return "rbd command not found; install the ceph-common package"
        access = (params or {}).get("access", ACCESS_KERNEL)
        if access == ACCESS_KERNEL and not os.path.isdir(RBD_SYSFS):
            return "rbd kernel module not loaded (%s missing); load the rbd module" % RBD_SYSFS
        return None

    def _ensure_env(self) -> None:
        problem = self.check_environment(self.params)
        if problem:
            raise errors.BlockDeviceError(problem)

    @classmethod
    def create(cls, unique_id: Sequence[Any], children: Sequence[base.BlockDev], size: int,
               params: dict[str, Any], excl_stor: bool = False) -> "RADOSBlockDevice":
        dev = cls(unique_id, children, size, params)
        problem = cls.check_environment({"access": ACCESS_USER})
        if problem:
            raise errors.BlockDeviceError(problem)
        dev._run(create_cmd(dev.pool, dev.name, size), "Creating RBD image %s" % dev.name)
        return dev

    def _mapped_device(self) -> str | None:
        result = type(self).runner(showmapped_cmd(self.pool))
        if result.failed:
            return None
        return find_mapping(result.stdout, self.pool, self.name)

    def attach(self) -> bool:
        if base.missing_tools([RBD_CMD]):
            return False
        device = self._mapped_device()
        self.attached, self.dev_path = device is not None, device
        return self.attached

    def assemble(self) -> None:
        """Map the image (once) for kernel access; userspace access needs nothing."""
        if self.params.get("access", ACCESS_KERNEL) == ACCESS_USER:
            return
        self._ensure_env()
        if self.attach():
            return
        self._run(map_cmd(self.pool, self.name), "Mapping RBD image %s" % self.name)
        if not self.attach():
            base.raise_bdev("RBD image %s/%s was mapped but is not in showmapped",
                            self.pool, self.name)

    def shutdown(self) -> None:
        """Unmap if mapped (idempotent)."""
        if self.attach():
            assert self.dev_path is not None
            self._run(unmap_cmd(self.dev_path), "Unmapping %s" % self.dev_path)
        self.attached, self.dev_path = False, None

    def remove(self) -> None:
        """Unmap, then delete the image; an image already gone is fine."""
        self.shutdown()
        result = type(self).runner(remove_cmd(self.pool, self.name))
        if result.failed and "No such file" not in result.output:
            base.check_result(result, "Removing RBD image %s" % self.name)

    def grow(self, amount: int, dryrun: bool, backingstore: bool) -> None:
        if not backingstore or dryrun:
            return
        self._run(resize_cmd(self.pool, self.name, self.size + amount),
                  "Resizing RBD image %s" % self.name)
        self.size += amount

    def snapshot(self, snap_name: str | None = None, snap_size: int | None = None) -> tuple:
        snap = snap_name or "snap"
        self._run(snap_create_cmd(self.pool, self.name, snap), "Snapshotting %s" % self.name)
        return ("rbd", "%s@%s" % (self.name, snap))
