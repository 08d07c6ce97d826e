"""The job queue's write-ahead journal: one cheap fdatasync per durable batch.

Replacing job files atomically (temp file, fsync, rename, directory fsync)
costs two filesystem journal commits per batch, several milliseconds each on
a busy disk: more than all the Python work of a short job.  So a batch (job
files, serial, drain flag) becomes durable as **one record appended** to
``<queue>/journal`` and fdatasynced; the files themselves are then
overwritten without waiting for the disk.  Whoever opens the queue
directory next replays the journal first (``replay``), which makes every
file named in it durable with its last journaled content and empties the
journal.  A checkpoint does the same while running: when the journal grows
past ``limit``, or before job files are moved into the archive (a move must
never carry a file whose data is not on disk yet).

Record: ``CJ1 <length> <crc32 hex>\\n<payload>\\n``, the payload a JSON object
``{name: text or null}`` (null removes the file).  Files are overwritten in
place (see ``_apply``).  A torn or corrupt record
(crash in the middle of an append) ends the journal: it was never
acknowledged, since acknowledgement waits for the fdatasync.

Only the names ``job-<N>``, ``serial`` and ``drain`` are ever written, so a
journal cannot name a path outside the queue directory.  Used by the master
(jqueue.JobQueue, on its writer thread) and by master candidates
(backend/queue.py, under its lock); one writer per directory at a time.
See doc/design-jobqueue.md, "Durability".
"""

import json
import logging
import os
import re
import zlib

from corral import constants, errors
from corral.utils import io

JOURNAL = "journal"
# Past this size the journal is checkpointed.  Large on purpose: by then the
# kernel has written most of the files back, so the checkpoint's fsyncs find
# little to do, and replaying this much after a crash takes well under a second.
DEFAULT_LIMIT = 16 << 20
_NAME = re.compile(r"^(job-[0-9]{1,18}|serial|drain)$")
_HEADER = re.compile(rb"^CJ1 ([0-9]{1,10}) ([0-9a-f]{8})\n")


def check_name(name: str) -> str:
    """``name`` if the journal may write it; errors.ParameterError otherwise."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise errors.ParameterError("Invalid job queue file name %r" % (name,))
    return name


def encode_record(files: dict[str, str | None]) -> bytes:
    payload = json.dumps(files, separators=(",", ":")).encode("utf-8")
    return b"CJ1 %d %08x\n" % (len(payload), zlib.crc32(payload)) + payload + b"\n"


def read_records(path: str) -> list[dict[str, str | None]]:
    """The complete records of the journal at ``path``, oldest first (none if missing)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return []
    records, pos = [], 0
    while pos < len(data):
        match = _HEADER.match(data[pos:pos + 32])
        if match is None:
            break
        length, crc = int(match.group(1)), int(match.group(2), 16)
        start = pos + match.end()
        payload = data[start:start + length]
        if len(payload) != length or zlib.crc32(payload) != crc \
                or data[start + length:start + length + 1] != b"\n":
            break
        try:
            record = json.loads(payload)
        except ValueError:
            break
        records.append({check_name(k): v for k, v in record.items()})
        pos = start + length + 1
    if pos < len(data):
        logging.warning("Job queue journal %s: ignoring %d bytes of an incomplete record",
                        path, len(data) - pos)
    return records


def _apply(directory: str, files: dict[str, str | None]) -> None:
    """Write (or remove) the files, without waiting for the disk.

    In place, not by temp file and rename: on ext4 replacing a file (rename
    over it, or truncating it to zero) forces its data out and waits, more
    than a millisecond each, while an overwrite costs microseconds.  A crash
    in the middle leaves a torn file, which the journal still covers (it is
    emptied only after a checkpoint synced the files), and the queue's files
    are read only by the one process writing them, between writes.
    """
    for name, text in files.items():
        path = os.path.join(directory, name)
        if text is None:
            io.remove_file(path)
            continue
        data = text.encode("utf-8")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, data, 0)
            if os.fstat(fd).st_size > len(data):
                os.ftruncate(fd, len(data))
        finally:
            os.close(fd)


def _sync_files(directory: str, names: set[str]) -> None:
    for name in sorted(names):
        try:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    io.fsync_dir(directory)


def _archived(directory: str, name: str) -> bool:
    if not name.startswith("job-"):
        return False
    job_id = int(name[4:])
    return os.path.exists(os.path.join(directory, "archive",
                                       str(job_id // constants.JOB_QUEUE_ARCHIVE_DIR_DIVIDER),
                                       name))


def replay(directory: str) -> int:
    """Make the state the journal describes durable in the files, then empty it.

    Idempotent; call before reading the queue directory after a possible
    crash.  Jobs found in the archive are not brought back.  Returns the
    number of records applied.
    """
    path = os.path.join(directory, JOURNAL)
    records = read_records(path)
    if not records:
        if os.path.exists(path) and os.path.getsize(path):
            _truncate(path)
        return 0
    latest: dict[str, str | None] = {}
    for record in records:
        latest.update(record)
    for name in [n for n in latest if _archived(directory, n)]:
        del latest[name]
    _apply(directory, latest)
    _sync_files(directory, set(latest))
    _truncate(path)
    return len(records)


def _truncate(path: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, 0)
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """Appends batches to ``<directory>/journal``; not thread-safe (one writer).

    Opening does not replay: the owner calls ``replay`` first.
    """

    def __init__(self, directory: str, limit: int = DEFAULT_LIMIT) -> None:
        self._dir = directory
        self._path = os.path.join(directory, JOURNAL)
        self._limit = limit
        self._fd: int | None = None

    def _open(self) -> int:
        """The journal's descriptor; reopened when the file was removed or replaced
        behind our back (queue copy purged when a node leaves, directory recreated)."""
        if self._fd is not None:
            try:
                st, fst = os.stat(self._path), os.fstat(self._fd)
                if (st.st_ino, st.st_dev) == (fst.st_ino, fst.st_dev):
                    return self._fd
            except FileNotFoundError:
                pass
            self.close()
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        io.fsync_dir(self._dir)  # the journal's own name must survive a crash
        return self._fd

    def commit(self, files: dict[str, str | None]) -> None:
        """Durable on return: the record is on disk; the files are replaced too."""
        if not files:
            return
        for name in files:
            check_name(name)
        fd = self._open()
        os.write(fd, encode_record(files))
        os.fdatasync(fd)
        _apply(self._dir, files)
        if os.fstat(fd).st_size > self._limit:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Make every file the journal names durable, then empty the journal."""
        if self._fd is None and not os.path.exists(self._path):
            return
        names: set[str] = set()
        for record in read_records(self._path):
            names.update(record)
        if names:
            _sync_files(self._dir, names)
        fd = self._open()
        if os.fstat(fd).st_size:
            os.ftruncate(fd, 0)
            os.fsync(fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
