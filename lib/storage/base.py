"""The storage driver interface every disk type implements.

A ``BlockDev`` is one node-local view of one disk component: a file, an LVM
volume, a DRBD device, an adopted block device, an ExtStorage volume...  It is
built from the disk's ``logical_id`` (the tuple stored in the configuration),
its children (already constructed ``BlockDev`` objects, e.g. the two LVs under
a DRBD device), its size in MiB and a parameter dict.

Required core (every driver implements it, abstract here):
``create`` (classmethod), ``remove``, ``attach``, ``assemble``, ``shutdown``.

Optional abilities are class flags the caller checks first (``CAN_GROW``,
``CAN_SNAPSHOT``, ``CAN_RENAME``, ``SUPPORTS_SYNC``).  Calling an ability a
driver lacks raises ``errors.BlockDeviceError`` with a sentence saying so,
never ``NotImplementedError``.

Errors: every failure of an external tool or of the OS becomes
``errors.BlockDeviceError`` carrying the tool's own words.
"""

import abc
import fcntl
import os
import shutil
import stat
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, NoReturn, Sequence

from corral import errors
from corral.utils import process

# Local disk status values (spec/hypervisors-storage.md §7, "ldisk")
LDS_OKAY = "okay"
LDS_FAULTY = "faulty"
LDS_SYNC = "syncing"
LDS_UNKNOWN = "unknown"
LDS_ALL = frozenset([LDS_OKAY, LDS_FAULTY, LDS_SYNC, LDS_UNKNOWN])

_BLKGETSIZE64 = 0x80081272
_COPY_CHUNK = 1024 * 1024

Runner = Callable[..., process.RunResult]


@dataclass
class SyncStatus:
    """Mirror state of one device as reported to the master.

    ``sync_percent`` is None when in sync (or not mirrored), 0..100 while
    resyncing; ``estimated_time`` is seconds left, None if unknown.
    """

    sync_percent: float | None = None
    estimated_time: int | None = None
    is_degraded: bool = False
    ldisk_status: str = LDS_OKAY

    def to_dict(self) -> dict[str, Any]:
        return {"sync_percent": self.sync_percent, "estimated_time": self.estimated_time,
                "is_degraded": self.is_degraded, "ldisk_status": self.ldisk_status}


def combine_sync_status(statuses: Sequence[SyncStatus]) -> SyncStatus:
    """Worst-of merge (a DRBD device with its children, a disk tree).

    Lowest percentage, longest estimate, degraded if any is, and the most
    severe local disk state (faulty > syncing > unknown > okay).
    """
    rank = {LDS_OKAY: 0, LDS_UNKNOWN: 1, LDS_SYNC: 2, LDS_FAULTY: 3}
    result = SyncStatus()
    for st in statuses:
        if st.sync_percent is not None:
            result.sync_percent = (st.sync_percent if result.sync_percent is None
                                   else min(result.sync_percent, st.sync_percent))
        if st.estimated_time is not None:
            result.estimated_time = max(result.estimated_time or 0, st.estimated_time)
        result.is_degraded = result.is_degraded or st.is_degraded
        if rank[st.ldisk_status] > rank[result.ldisk_status]:
            result.ldisk_status = st.ldisk_status
    return result


def raise_bdev(msg: str, *args: Any) -> NoReturn:
    """Raise BlockDeviceError(msg % args): the one way drivers report failure."""
    raise errors.BlockDeviceError(msg % args if args else msg)


def check_result(result: process.RunResult, what: str) -> process.RunResult:
    """Turn a failed command into BlockDeviceError naming ``what`` was attempted."""
    if result.failed:
        raise_bdev("%s failed: %s", what, result.describe())
    return result


def missing_tools(tools: Sequence[str]) -> list[str]:
    """The names in ``tools`` that are not found in $PATH (or /sbin, /usr/sbin)."""
    path = os.environ.get("PATH", "") + ":/sbin:/usr/sbin"
    return [t for t in tools if shutil.which(t, path=path) is None]


def device_size_bytes(path: str) -> int:
    """Size of a block device or regular file in bytes (BLKGETSIZE64 for devices)."""
    st = os.stat(path)
    if stat.S_ISBLK(st.st_mode):
        fd = os.open(path, os.O_RDONLY)
        try:
            buf = fcntl.ioctl(fd, _BLKGETSIZE64, b"\0" * 8)
        finally:
            os.close(fd)
        return struct.unpack("Q", buf)[0]
    return st.st_size


class BlockDev(abc.ABC):
    """One disk component on this node.  See the module docstring for the contract.

    Instances are cheap: constructing one touches nothing; ``attach`` looks the
    device up, ``assemble`` makes it usable, ``dev_path`` is what hypervisors
    and OS scripts open once attached.
    """

    DEV_TYPE: str = ""
    CAN_GROW = False
    CAN_SNAPSHOT = False
    CAN_RENAME = False
    SUPPORTS_SYNC = False
    # Tools run through this (tests substitute a recorder); argv lists only.
    runner: Runner = staticmethod(process.run_cmd)

    def __init__(self, unique_id: Sequence[Any], children: Sequence["BlockDev"] | None,
                 size: int, params: dict[str, Any] | None = None) -> None:
        self.unique_id = tuple(unique_id)
        self.children = list(children or [])
        self.size = int(size)
        self.params = dict(params or {})
        self.dev_path: str | None = None
        self.attached = False

    def __repr__(self) -> str:
        return "<%s %r size=%dm dev=%s>" % (type(self).__name__, self.unique_id,
                                           self.size, self.dev_path)

    # ----- required core -------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def create(cls, unique_id: Sequence[Any], children: Sequence["BlockDev"], size: int,
               params: dict[str, Any], excl_stor: bool = False) -> "BlockDev":
        """Make a new device and return it; nothing is left behind on failure."""

    @abc.abstractmethod
    def remove(self) -> None:
        """Destroy the device's data.  Idempotent: a missing device is not an error."""

    @abc.abstractmethod
    def attach(self) -> bool:
        """Find an existing device; set ``dev_path``; False if it is not there.  No changes."""

    @abc.abstractmethod
    def assemble(self) -> None:
        """Make the device usable on this node (activate, set up).  Idempotent."""

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Undo ``assemble`` (data kept).  Idempotent."""

    # ----- optional, with safe defaults ---------------------------------
    @classmethod
    def check_environment(cls, params: dict[str, Any] | None = None) -> str | None:
        """None if this node can run the driver, else what to install or load."""
        return None

    def open(self, force: bool = False) -> None:
        """Make the device writable by the instance (DRBD: primary).  Default: nothing."""

    def close(self) -> None:
        """Undo ``open`` (DRBD: secondary).  Default: nothing."""

    def set_info(self, text: str) -> None:
        """Attach free-form metadata (instance name) where the backend can hold it."""

    def get_sync_status(self) -> SyncStatus:
        """Non-mirrored devices are always in sync and healthy."""
        return SyncStatus()

    def combined_sync_status(self) -> SyncStatus:
        """This device's status merged with its children's (worst wins)."""
        return combine_sync_status([self.get_sync_status()] +
                                   [c.combined_sync_status() for c in self.children])

    def grow(self, amount: int, dryrun: bool, backingstore: bool) -> None:
        """Grow by ``amount`` MiB.  ``dryrun`` only checks; ``backingstore`` selects
        the layer (storage vs. the device on top of it).  Requires ``CAN_GROW``."""
        raise_bdev("%s devices cannot be grown", self.DEV_TYPE)

    def snapshot(self, snap_name: str | None = None, snap_size: int | None = None) -> tuple:
        """Make a snapshot; returns its logical_id.  Requires ``CAN_SNAPSHOT``."""
        raise_bdev("%s devices do not support snapshots", self.DEV_TYPE)

    def rename(self, new_id: Sequence[Any]) -> None:
        """Rename in place to ``new_id``.  Requires ``CAN_RENAME``."""
        raise_bdev("%s devices cannot be renamed", self.DEV_TYPE)

    def get_actual_size(self) -> int:
        """Current size in bytes as seen by the OS (device must be attached)."""
        self._require_attached()
        assert self.dev_path is not None
        try:
            return device_size_bytes(self.dev_path)
        except OSError as err:
            raise errors.BlockDeviceError("Cannot get size of %s: %s" % (self.dev_path, err))

    # ----- raw data streams (instance move / export) ---------------------
    def export_stream(self) -> BinaryIO:
        """Open the device's raw data for reading; the caller closes the stream."""
        self._require_attached()
        assert self.dev_path is not None
        try:
            return open(self.dev_path, "rb")
        except OSError as err:
            raise errors.BlockDeviceError("Cannot open %s: %s" % (self.dev_path, err))

    def import_stream(self, source: BinaryIO) -> int:
        """Copy ``source`` onto the device from offset 0; returns bytes written.

        Refuses (BlockDeviceError) data larger than the device; the device is
        flushed to stable storage before returning.
        """
        self._require_attached()
        assert self.dev_path is not None
        limit = self.get_actual_size()
        written = 0
        try:
            with open(self.dev_path, "r+b") as out:
                while True:
                    chunk = source.read(_COPY_CHUNK)
                    if not chunk:
                        break
                    if written + len(chunk) > limit:
                        raise_bdev("Data for %s exceeds its size of %d bytes",
                                   self.dev_path, limit)
                    out.write(chunk)
                    written += len(chunk)
                out.flush()
                os.fsync(out.fileno())
        except OSError as err:
            raise errors.BlockDeviceError("Writing to %s failed: %s" % (self.dev_path, err))
        return written

    # ----- helpers -------------------------------------------------------
    def _require_attached(self) -> None:
        if not self.attached and not self.attach():
            raise_bdev("%s device %r is not attached", self.DEV_TYPE, self.unique_id)

    def _run(self, argv: list[str], what: str, **kwargs: Any) -> process.RunResult:
        """Run a tool; BlockDeviceError with its output if it fails."""
        return check_result(type(self).runner(argv, **kwargs), what)
