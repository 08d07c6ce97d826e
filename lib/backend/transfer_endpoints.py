"""What a disk transfer reads from and writes into (see backend/disk_transfer.py).

Each entry of a transfer's ``disks`` list becomes one endpoint, built when
the transfer starts (so a bad entry fails the RPC call at once, before any
data moves):

* no ``kind``: a device dict (backend/disks.py), assembled; read whole or
  written in place (its size bounds what it accepts).
* ``os-export`` (source): the OS ``export`` script's stdout for disk
  ``disk_index`` of the instance in ``os_args`` (instance_utils.os_install_args);
  size unknown (the script's EXP_SIZE_FD prediction only feeds progress).
* ``os-import`` (target): the stream goes to the OS ``import`` script's stdin.
* ``export-file``: ``"<export>/<file>"`` under the export dir (backend/exports.py):
  read from a finished export, or written (targets only into ``<name>.new/``).

Frames on the wire: ``D``+len+data, ``Z``+len (zeros, at most CHUNK), ``E``
(end of disk), and ``X``+len+message: the source failed (its script broke)
and the target must fail with that message instead of taking a short disk
as complete.
"""

import os
import stat
import struct
import threading
import zlib
from collections.abc import Callable
from typing import Any, BinaryIO

from corral import errors, osdef
from corral.backend import disks as bdisks
from corral.backend import exports
from corral.backend import instance as binstance

CHUNK = 1 << 20
SCRIPT_GRACE = 60.0   # seconds a script may take to exit once its pipe is closed
FRAME = struct.Struct("!cI")
_ZEROS = bytes(CHUNK)
_OS_ARGS = ("instance", "disks", "nics", "hypervisor", "hvparams", "beparams", "osparams")

Advance = Callable[[int], None]


def _read_exact(stream: BinaryIO, count: int) -> bytes:
    data = stream.read(count)
    if len(data) != count:
        raise errors.OpExecError("Connection closed by the source in the middle of the data")
    return data


def send_data(out: BinaryIO, src: BinaryIO, level: int | None, advance: Advance) -> None:
    """Frame everything ``src`` yields until EOF (runs of zeros become ``Z``)."""
    while True:
        chunk = src.read(CHUNK)
        if not chunk:
            return
        if chunk == _ZEROS[:len(chunk)]:
            out.write(FRAME.pack(b"Z", len(chunk)))
        else:
            payload = chunk if level is None else zlib.compress(chunk, level)
            out.write(FRAME.pack(b"D", len(payload)) + payload)
        advance(len(chunk))


def end_disk(out: BinaryIO) -> None:
    out.write(FRAME.pack(b"E", 0))


def abort_disk(out: BinaryIO, message: str) -> None:
    """Tell the target this disk's data is broken (never raises: best effort)."""
    data = message.encode("utf-8", "replace")[:16384]
    try:
        out.write(FRAME.pack(b"X", len(data)) + data)
        out.flush()
    except OSError:
        pass


def receive_into(stream: BinaryIO, dst: BinaryIO, sparse: bool, limit: int | None,
                 compressed: bool, advance: Advance, what: str) -> int:
    """Write one disk's frames into ``dst``; returns the byte count.

    ``sparse``: zero runs are skipped with seek (``dst`` must read back zeros
    there); otherwise zeros are written.  More than ``limit`` bytes fail.
    """
    written = 0
    while True:
        kind, length = FRAME.unpack(_read_exact(stream, FRAME.size))
        if kind == b"E":
            return written
        if kind == b"X":
            raise errors.OpExecError("The source failed: %s" %
                                     _read_exact(stream, length).decode("utf-8", "replace"))
        if kind == b"Z" and length <= CHUNK:
            data = b"" if sparse else _ZEROS[:length]
            if sparse:
                dst.seek(length, os.SEEK_CUR)
        elif kind == b"D":
            data = _read_exact(stream, length)
            if compressed:
                data = zlib.decompress(data)
            length = len(data)
        else:
            raise errors.OpExecError("Corrupt transfer stream (frame %r, %d bytes)" %
                                     (kind, length))
        if limit is not None and written + length > limit:
            raise errors.OpExecError("Data for %s exceeds its size of %d bytes" % (what, limit))
        if data:
            dst.write(data)
        written += length
        advance(length)


# ---- plain files and devices ---------------------------------------------------------------

def _size(path: str) -> int:
    with open(path, "rb") as fh:
        return fh.seek(0, os.SEEK_END)


class PathSource:
    """A device or an export file, read whole; its size is known."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.size: int | None = _size(path)

    def send(self, out: BinaryIO, level: int | None, advance: Advance,
             on_size: Callable[[int], None]) -> None:
        with open(self.path, "rb") as src:
            send_data(out, src, level, advance)


class DeviceTarget:
    """An existing disk, written in place; holds at most its own size."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.size: int | None = _size(path)

    def receive(self, stream: BinaryIO, compressed: bool, advance: Advance,
                limit: int | None) -> None:
        st = os.stat(self.path)
        is_file = stat.S_ISREG(st.st_mode)
        if is_file:  # start from an all-zero file (same size) so holes read as zeros
            os.truncate(self.path, 0)
            os.truncate(self.path, st.st_size)
        with open(self.path, "r+b") as dst:
            receive_into(stream, dst, is_file, limit if limit is not None else self.size,
                         compressed, advance, self.path)
            dst.flush()
            os.fsync(dst.fileno())


class FileTarget:
    """A disk file of a staged export (``<name>.new/<file>``), created or replaced."""

    size: int | None = None

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            os.makedirs(os.path.dirname(path), mode=0o750, exist_ok=True)
        except OSError as err:
            raise errors.OpExecError("Cannot create the export directory %s: %s" %
                                     (os.path.dirname(path), err)) from err

    def receive(self, stream: BinaryIO, compressed: bool, advance: Advance,
                limit: int | None) -> None:
        with open(self.path, "wb") as dst:
            written = receive_into(stream, dst, True, limit, compressed, advance, self.path)
            dst.truncate(written)  # a trailing hole still counts
            dst.flush()
            os.fsync(dst.fileno())


# ---- OS scripts ----------------------------------------------------------------------------

class _ScriptRun:
    """One OS export/import script in a thread; closes our end of its pipe when it exits."""

    def __init__(self, func: Callable[[], Any], fd: int) -> None:
        self.error: errors.GenericError | None = None
        self._func, self._fd = func, fd
        self._thread = threading.Thread(target=self._run, daemon=True, name="os-stream")

    def start(self) -> "_ScriptRun":
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._func()
        except errors.GenericError as err:
            self.error = err
        except Exception as err:  # noqa: BLE001 - any failure must fail the transfer
            self.error = errors.OpExecError("OS script failed: %s" % err)
        finally:
            os.close(self._fd)

    def wait(self, timeout: float | None = None) -> None:
        """Join the script; raise its error.  With ``timeout`` a hung script is left."""
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error


class _OsEntry:
    """The checked ``os_args``/``disk_index`` of an os-export/os-import entry."""

    def __init__(self, entry: dict) -> None:
        args = entry.get("os_args")
        if not isinstance(args, dict) or any(k not in args for k in _OS_ARGS):
            raise errors.OpExecError("Transfer entry of kind %s needs os_args with %s" %
                                     (entry.get("kind"), ", ".join(_OS_ARGS)))
        index = entry.get("disk_index")
        if not isinstance(index, int) or not 0 <= index < len(args["disks"]):
            raise errors.OpExecError("Invalid disk_index %r (instance has %d disks)" %
                                     (index, len(args["disks"])))
        self.index = index
        self.os_def = osdef.require_os(args["instance"]["os"])
        self.call_args = (self.os_def, args["instance"], binstance._os_disks(args["disks"]),
                          args["nics"], args["hypervisor"], args["hvparams"],
                          args["beparams"], args["osparams"], int(args.get("debug") or 0))


class OsExportSource:
    """The OS export script's stdout for one disk; its size is unknown in advance."""

    size: int | None = None

    def __init__(self, entry: dict) -> None:
        self.os = _OsEntry(entry)

    def send(self, out: BinaryIO, level: int | None, advance: Advance,
             on_size: Callable[[int], None]) -> None:
        """Stream the script's output; raise its error (log tail) if it fails."""
        read_fd, write_fd = os.pipe()
        run = _ScriptRun(lambda: osdef.run_export(*self.os.call_args, disk_index=self.os.index,
                                                  out_fh=write_fd, size_cb=on_size),
                         write_fd).start()
        try:
            with open(read_fd, "rb") as src:  # closing it stops a script we stop reading
                send_data(out, src, level, advance)
        except BaseException:
            _wait_quietly(run)
            raise
        run.wait()


class OsImportTarget:
    """Feeds the stream to the OS import script of one disk through a pipe."""

    size: int | None = None

    def __init__(self, entry: dict) -> None:
        self.os = _OsEntry(entry)

    def receive(self, stream: BinaryIO, compressed: bool, advance: Advance,
                limit: int | None) -> None:
        """The script's failure wins over a broken pipe; a stream error closes its stdin."""
        read_fd, write_fd = os.pipe()
        run = _ScriptRun(lambda: osdef.run_import(*self.os.call_args, disk_index=self.os.index,
                                                  in_fh=read_fd), read_fd).start()
        try:
            with open(write_fd, "wb") as dst:
                receive_into(stream, dst, False, limit, compressed, advance,
                             "disk %d" % self.os.index)
        except BrokenPipeError:
            run.wait()
            raise errors.OpExecError("The OS import script for disk %d exited before reading"
                                     " all its input" % self.os.index) from None
        except BaseException:
            _wait_quietly(run)
            raise
        run.wait()


def _wait_quietly(run: _ScriptRun) -> None:
    # The transfer already fails for another reason; the pipe is closed, so the
    # script sees EOF/EPIPE and exits.  Its own error would hide the real one.
    try:
        run.wait(SCRIPT_GRACE)
    except errors.GenericError:
        pass


# ---- building endpoints from the master's entries ---------------------------------------------

def _kind(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        raise errors.OpExecError("Invalid transfer entry %r" % (entry,))
    return entry.get("kind")


def _endpoints(entries: list, side: str, device: Callable[[str], Any],
               kinds: dict[str, Callable[[dict], Any]]) -> list:
    """One endpoint per entry, in order; device entries are assembled in one call."""
    devices = [e for e in entries if _kind(e) is None]
    paths = iter(d["path"] for d in bdisks.assemble(devices))
    out: list = []
    for entry in entries:
        kind = _kind(entry)
        if kind is None:
            out.append(device(next(paths)))
        elif kind in kinds:
            out.append(kinds[kind](entry))
        else:
            raise errors.OpExecError("Unknown transfer %s kind %r" % (side, kind))
    return out


def sources(entries: list) -> list:
    """Endpoints to read ``entries`` from (source side), in order."""
    return _endpoints(entries, "source", PathSource, {
        "os-export": OsExportSource,
        "export-file": lambda e: PathSource(_existing(exports.file_path(e.get("path"))))})


def targets(entries: list) -> list:
    """Endpoints to write ``entries`` into (target side), in order."""
    return _endpoints(entries, "target", DeviceTarget, {
        "os-import": OsImportTarget,
        "export-file": lambda e: FileTarget(exports.file_path(e.get("path"), staging=True))})


def _existing(path: str) -> str:
    if not os.path.isfile(path):
        raise errors.OpExecError("Export file %s does not exist on this node" % path)
    return path
