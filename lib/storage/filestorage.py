"""File-backed disks: ``file`` (node-local) and ``sharedfile`` (on a shared FS).

A disk is a raw, sparse image file ``<storage dir>/<instance>/<disk name>``;
``logical_id = (driver, path)`` with driver ``loop``/``blktap``/``blktap2``
(the driver only matters to Xen; KVM opens the file).

Path safety: every path is checked before anything is created, renamed or
removed.  It must be absolute, contain no ``..`` component, and resolve
(symlinks included) strictly inside one of the allowed directories given in
``params["allowed_dirs"]`` (the cluster's file / shared-file storage dir).
When ``pathutils.file_storage_paths_file()`` exists, the path must also lie
inside one of the directories listed there (one per line, ``#`` comments).
"""

import errno
import os
from typing import Any, Sequence

from corral import errors, pathutils
from corral.storage import base
from corral.utils import io

FILE_DRIVERS = frozenset(["loop", "blktap", "blktap2"])

# Directories that may never hold instance disks even if listed (a typo in
# file-storage-paths must not let Corral write into the OS).
_FORBIDDEN_DIRS = frozenset(["/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib64",
                             "/proc", "/root", "/run", "/sbin", "/sys", "/usr",
                             "/usr/bin", "/usr/lib", "/usr/sbin", "/var"])


def read_file_storage_paths(path: str | None = None) -> list[str] | None:
    """Allowed dirs from the file-storage-paths file; None if the file is absent."""
    path = path or pathutils.file_storage_paths_file()
    try:
        text = io.read_file(path)
    except FileNotFoundError:
        return None
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            result.append(os.path.normpath(line))
    return result


def check_file_storage_path(path: str, allowed_dirs: Sequence[str]) -> str:
    """Validate ``path`` for a disk file; return it normalized or raise.

    Raises BlockDeviceError naming the rule that was broken.  Pure check: it
    creates nothing.
    """
    if not isinstance(path, str) or not os.path.isabs(path):
        base.raise_bdev("File storage path %r is not absolute", path)
    if ".." in path.split(os.sep):
        base.raise_bdev("File storage path %s must not contain '..'", path)
    allowed = [os.path.normpath(d) for d in allowed_dirs if d]
    if not allowed:
        base.raise_bdev("No file storage directory is configured; cannot use %s", path)
    if not any(io.is_below_dir(d, path) for d in allowed):
        base.raise_bdev("Path %s is not inside the allowed file storage directories (%s)",
                        path, ", ".join(allowed))
    listed = read_file_storage_paths()
    if listed is not None:
        good = [d for d in listed if os.path.realpath(d) not in _FORBIDDEN_DIRS]
        if not any(io.is_below_dir(d, path) for d in good):
            base.raise_bdev("Path %s is not below any directory allowed in %s (%s)",
                            path, pathutils.file_storage_paths_file(),
                            ", ".join(good) or "none listed")
    return os.path.normpath(path)


def storage_unit_info(path: str) -> dict[str, Any]:
    """``gnt-node list-storage -t file`` row for one storage dir (sizes in MiB).

    ``used`` is what the files under ``path`` occupy on disk (sparse-aware).
    """
    try:
        st = os.statvfs(path)
    except OSError as err:
        raise errors.BlockDeviceError("Cannot query file storage dir %s: %s" % (path, err))
    size = st.f_blocks * st.f_frsize // (1024 * 1024)
    free = st.f_bavail * st.f_frsize // (1024 * 1024)
    used = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                used += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                continue
    return {"name": path, "size": size, "used": used // (1024 * 1024), "free": free,
            "allocatable": True}


class FileStorage(base.BlockDev):
    """A raw image file on node-local storage.  Growable and renamable."""

    DEV_TYPE = "file"
    CAN_GROW = True
    CAN_RENAME = True

    def __init__(self, unique_id: Sequence[Any], children: Sequence[base.BlockDev] | None,
                 size: int, params: dict[str, Any] | None = None) -> None:
        super().__init__(unique_id, children, size, params)
        if len(self.unique_id) != 2:
            base.raise_bdev("Invalid %s logical_id %r: expected (driver, path)",
                            self.DEV_TYPE, unique_id)
        self.driver, self.path = self.unique_id
        if self.driver not in FILE_DRIVERS:
            base.raise_bdev("Unknown file driver %r (expected one of %s)",
                            self.driver, ", ".join(sorted(FILE_DRIVERS)))

    @property
    def allowed_dirs(self) -> list[str]:
        return list(self.params.get("allowed_dirs") or [])

    @classmethod
    def create(cls, unique_id: Sequence[Any], children: Sequence[base.BlockDev], size: int,
               params: dict[str, Any], excl_stor: bool = False) -> "FileStorage":
        """Create a sparse file of ``size`` MiB (and the instance dir).

        Fails if the file exists; on failure the new file is removed again.
        """
        dev = cls(unique_id, children, size, params)
        path = check_file_storage_path(dev.path, dev.allowed_dirs)
        if size <= 0:
            base.raise_bdev("Invalid size %s for %s", size, path)
        os.makedirs(os.path.dirname(path), mode=0o750, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            base.raise_bdev("File %s already exists", path)
        except OSError as err:
            base.raise_bdev("Cannot create file %s: %s", path, err)
        try:
            os.ftruncate(fd, size * 1024 * 1024)
        except OSError as err:
            os.close(fd)
            io.remove_file(path)
            base.raise_bdev("Cannot size file %s to %d MiB: %s", path, size, err)
        os.close(fd)
        dev.attach()
        return dev

    def remove(self) -> None:
        """Delete the file, then the instance dir if it became empty (never the base dir)."""
        path = check_file_storage_path(self.path, self.allowed_dirs)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as err:
            base.raise_bdev("Cannot remove file %s: %s", path, err)
        self.attached = False
        self.dev_path = None
        self._remove_empty_dir(os.path.dirname(path))

    def attach(self) -> bool:
        self.attached = os.path.isfile(self.path)
        self.dev_path = self.path if self.attached else None
        return self.attached

    def assemble(self) -> None:
        if not self.attach():
            base.raise_bdev("File %s does not exist", self.path)

    def shutdown(self) -> None:
        """Nothing to undo for a plain file."""

    def grow(self, amount: int, dryrun: bool, backingstore: bool) -> None:
        """Extend the file by ``amount`` MiB (sparse).  Only the backing store layer."""
        if not backingstore:
            return
        if amount < 0:
            base.raise_bdev("Cannot shrink %s", self.path)
        self._require_attached()
        if dryrun:
            return
        try:
            current = os.stat(self.path).st_size
            os.truncate(self.path, current + amount * 1024 * 1024)
        except OSError as err:
            base.raise_bdev("Cannot grow %s: %s", self.path, err)
        self.size += amount

    def rename(self, new_id: Sequence[Any]) -> None:
        """Move the file to ``new_id``'s path (same rules as create); keeps the data."""
        new_driver, new_path = tuple(new_id)
        if new_driver not in FILE_DRIVERS:
            base.raise_bdev("Unknown file driver %r", new_driver)
        new_path = check_file_storage_path(new_path, self.allowed_dirs)
        if os.path.exists(new_path):
            base.raise_bdev("Cannot rename %s: %s already exists", self.path, new_path)
        os.makedirs(os.path.dirname(new_path), mode=0o750, exist_ok=True)
        try:
            os.rename(self.path, new_path)
        except OSError as err:
            base.raise_bdev("Cannot rename %s to %s: %s", self.path, new_path, err)
        old_parent = os.path.dirname(self.path)
        self.unique_id = (new_driver, new_path)
        self.driver, self.path = new_driver, new_path
        self.attach()
        self._remove_empty_dir(old_parent)

    def _remove_empty_dir(self, directory: str) -> None:
        """rmdir ``directory`` if empty and strictly inside an allowed dir."""
        if not any(io.is_below_dir(d, directory) for d in self.allowed_dirs):
            return
        try:
            os.rmdir(directory)
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                base.raise_bdev("Cannot remove directory %s: %s", directory, err)


class SharedFileStorage(FileStorage):
    """Same files, but on a filesystem every node mounts: any node may attach them."""

    DEV_TYPE = "sharedfile"
