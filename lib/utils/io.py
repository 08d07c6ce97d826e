"""File helpers whose guarantees the rest of Corral relies on."""

import os
import tempfile


def write_file_atomic(path: str, data: str | bytes, mode: int = 0o644,
                      fsync: bool = True, sync_dir: bool = True) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never a mix.

    Writes a temporary file in the same directory, fsyncs it, renames it over
    ``path`` and fsyncs the directory, so the new content survives a crash once
    this returns.
    """
    directory = os.path.dirname(path) or "."
    if isinstance(data, str):
        data = data.encode("utf-8")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if fsync and sync_dir:
        fsync_dir(directory)


def write_files_group_commit(directory: str, files: dict[str, str | bytes],
                             mode: int = 0o644) -> None:
    """Atomically replace several files of one directory with one group commit.

    All contents are written first, then fsynced (after the first fsync the
    journal commit is usually already done, so the others are cheap), then
    renamed into place, then the directory is fsynced once.  Each file is
    replaced atomically; the set as a whole is durable when this returns.
    """
    pending = []
    try:
        for path, data in files.items():
            if isinstance(data, str):
                data = data.encode("utf-8")
            fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".")
            pending.append((fd, tmp, path))
            os.write(fd, data)
            os.fchmod(fd, mode)
        for fd, _tmp, _path in pending:
            os.fsync(fd)
        for fd, tmp, path in pending:
            os.close(fd)
            os.rename(tmp, path)
        pending = []
    finally:
        for fd, tmp, _path in pending:
            try:
                os.close(fd)
            except OSError:
                pass
            remove_file(tmp)
    fsync_dir(directory)


def fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_file(path: str, default: str | None = None) -> str:
    """Content of ``path``; ``default`` if given and the file does not exist."""
    try:
        with open(path) as fh:
            return fh.read()
    except FileNotFoundError:
        if default is None:
            raise
        return default


def remove_file(path: str) -> None:
    """Remove ``path`` if it exists (idempotent)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def is_below_dir(root: str, path: str) -> bool:
    """True if ``path`` (after resolving symlinks and '..') is strictly inside ``root``."""
    root_r = os.path.realpath(root)
    path_r = os.path.realpath(path)
    return path_r != root_r and os.path.commonpath([root_r, path_r]) == root_r
