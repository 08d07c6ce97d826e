"""Disk data from one node daemon to another (instance move, fake storage migration).

The master gives both ends the same random ``transfer_id``.  The target
(``disk_import_start``) listens on its secondary IP, on a port the kernel
picks, with the node certificate; TLS requires a client certificate signed by
the cluster CA, and the first line the client sends must carry the transfer
id, so only a node daemon of this cluster that the master told about this
transfer can write into the disks.  The source (``disk_export_start``)
connects with its own node certificate and streams every disk in order.
Both return at once; the work runs in a thread of the node daemon and
``disk_transfer_status`` reports progress, waking on completion (no polling).

Stream (after TLS): a JSON hello line ``{"id", "sizes": [bytes...],
"compress"}``, then per disk frames ``D``+len+data (zlib-compressed per frame
unless ``compress`` is ``none``), ``Z``+len (a run of zero bytes: a hole in a
file, zeros on a block device), ``E``+0 (end of disk).  The target answers the
hello with ``GO\\n`` (or ``ERR <why>\\n`` before any data moves) and the data
with ``OK\\n`` once every disk is written and fsynced, or ``ERR <why>\\n``.
"""

import hmac
import json
import os
import socket
import ssl
import stat
import struct
import threading
import time
import zlib
from typing import Any, BinaryIO

from corral import certs, errors, pathutils
from corral.backend import disks as bdisks

CHUNK = 1 << 20
ACCEPT_TIMEOUT = 120.0
IO_TIMEOUT = 120.0
KEEP_FINISHED = 3600.0
COMPRESS_LEVELS = {"none": None, "gzip": 6, "gzip-fast": 1, "gzip-slow": 9}
_FRAME = struct.Struct("!cI")
_ZEROS = bytes(CHUNK)


class _Transfer:
    """Progress of one side of one transfer; ``cond`` wakes status waiters."""

    def __init__(self, transfer_id: str, role: str, total: int) -> None:
        self.id = transfer_id
        self.role = role
        self.total = total
        self.done = 0
        self.status = "running"
        self.error: str | None = None
        self.started = time.monotonic()
        self.finished: float | None = None
        self.cond = threading.Condition()
        self.sock: socket.socket | None = None

    def advance(self, count: int) -> None:
        with self.cond:
            self.done += count

    def finish(self, error: str | None = None) -> None:
        with self.cond:
            if self.status == "running":
                self.status = "failed" if error else "done"
                self.error = error
                self.finished = time.monotonic()
            self.cond.notify_all()

    def to_dict(self) -> dict[str, Any]:
        end = self.finished if self.finished is not None else time.monotonic()
        return {"status": self.status, "done": self.done, "total": self.total,
                "error": self.error, "elapsed": round(end - self.started, 3),
                "role": self.role}


# Keyed by (state root, id): one node daemon has one root; tests run several
# "nodes" in one process.
_transfers: dict[tuple[str, str], _Transfer] = {}
_registry_lock = threading.Lock()


def _key(transfer_id: str) -> tuple[str, str]:
    return (pathutils.root(), transfer_id)


def _register(transfer: _Transfer) -> None:
    now = time.monotonic()
    with _registry_lock:
        for key, old in list(_transfers.items()):
            if old.finished is not None and now - old.finished > KEEP_FINISHED:
                del _transfers[key]
        if _key(transfer.id) in _transfers:
            raise errors.OpExecError("Transfer %s already exists on this node" % transfer.id)
        _transfers[_key(transfer.id)] = transfer


def _get(transfer_id: str) -> _Transfer:
    with _registry_lock:
        transfer = _transfers.get(_key(transfer_id))
    if transfer is None:
        raise errors.OpExecError("No transfer %s on this node" % transfer_id)
    return transfer


def _check_compress(compress: str) -> int | None:
    if compress not in COMPRESS_LEVELS:
        raise errors.OpExecError("Unsupported transfer compression '%s' (supported: %s)" %
                                 (compress, ", ".join(sorted(COMPRESS_LEVELS))))
    return COMPRESS_LEVELS[compress]


def _device_paths(disks: list) -> list[str]:
    return [d["path"] for d in bdisks.assemble(disks)]


def _size(path: str) -> int:
    with open(path, "rb") as fh:
        return fh.seek(0, os.SEEK_END)


# ---- streams ---------------------------------------------------------------------------

def _read_exact(stream: BinaryIO, count: int) -> bytes:
    data = stream.read(count)
    if len(data) != count:
        raise errors.OpExecError("Connection closed by the source in the middle of the data")
    return data


def _send_disk(out: BinaryIO, path: str, level: int | None, transfer: _Transfer) -> None:
    with open(path, "rb") as src:
        while True:
            chunk = src.read(CHUNK)
            if not chunk:
                break
            if chunk == _ZEROS[:len(chunk)]:
                out.write(_FRAME.pack(b"Z", len(chunk)))
            else:
                payload = chunk if level is None else zlib.compress(chunk, level)
                out.write(_FRAME.pack(b"D", len(payload)) + payload)
            transfer.advance(len(chunk))
    out.write(_FRAME.pack(b"E", 0))


def _receive_disk(stream: BinaryIO, path: str, size: int, compressed: bool,
                  transfer: _Transfer) -> None:
    st = os.stat(path)
    is_file = stat.S_ISREG(st.st_mode)
    if is_file:  # start from an all-zero file (same size) so holes read as zeros
        os.truncate(path, 0)
        os.truncate(path, st.st_size)
    written = 0
    with open(path, "r+b") as dst:
        while True:
            kind, length = _FRAME.unpack(_read_exact(stream, _FRAME.size))
            if kind == b"E":
                break
            if kind == b"Z":
                data = b""
                if is_file:
                    dst.seek(length, os.SEEK_CUR)
                else:
                    data = _ZEROS[:length]
            elif kind == b"D":
                data = _read_exact(stream, length)
                if compressed:
                    data = zlib.decompress(data)
            else:
                raise errors.OpExecError("Corrupt transfer stream (frame %r)" % kind)
            step = length if kind == b"Z" else len(data)
            if written + step > size:
                raise errors.OpExecError("Data for %s exceeds its size of %d bytes" %
                                         (path, size))
            if data:
                dst.write(data)
            written += step
            transfer.advance(step)
        dst.flush()
        os.fsync(dst.fileno())


# ---- target ------------------------------------------------------------------------------

def disk_import_start(transfer_id: str, disks: list, bind_ip: str,
                      compress: str = "none") -> int:
    """Listen for the source of ``transfer_id``; returns the TCP port.

    The disks must exist here (created by the master before); they receive
    the data in order.  The listener accepts one authenticated connection
    within ACCEPT_TIMEOUT seconds, then closes.
    """
    _check_compress(compress)
    paths = _device_paths(disks)
    sizes = [_size(p) for p in paths]
    ctx = certs.server_ssl_context(pathutils.node_cert_file(), pathutils.cluster_ca_file())
    family = socket.AF_INET6 if ":" in bind_ip else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.bind((bind_ip, 0))
        listener.listen(1)
    except OSError as err:
        listener.close()
        raise errors.OpExecError("Cannot listen on %s for the disk transfer: %s" %
                                 (bind_ip, err))
    transfer = _Transfer(transfer_id, "import", sum(sizes))
    transfer.sock = listener
    _register(transfer)
    threading.Thread(target=_import_thread, args=(transfer, listener, ctx, paths, sizes),
                     name="import-%s" % transfer_id[:8], daemon=True).start()
    return listener.getsockname()[1]


def _import_thread(transfer: _Transfer, listener: socket.socket, ctx: ssl.SSLContext,
                   paths: list[str], sizes: list[int]) -> None:
    conn = None
    try:
        listener.settimeout(ACCEPT_TIMEOUT)
        try:
            raw, _addr = listener.accept()
        except socket.timeout:
            raise errors.OpExecError("No source connected within %d seconds" % ACCEPT_TIMEOUT)
        finally:
            listener.close()
        raw.settimeout(IO_TIMEOUT)
        conn = ctx.wrap_socket(raw, server_side=True)
        transfer.sock = conn
        stream = conn.makefile("rwb")
        hello = json.loads(stream.readline(65536) or b"{}")
        if not hmac.compare_digest(str(hello.get("id", "")), transfer.id):
            raise errors.OpExecError("A peer connected with the wrong transfer id")
        try:
            _check_disks(hello, sizes)
            stream.write(b"GO\n")
            stream.flush()
            for path, size in zip(paths, hello["sizes"]):
                _receive_disk(stream, path, size, hello.get("compress", "none") != "none",
                              transfer)
        except (errors.GenericError, OSError, zlib.error) as err:
            stream.write(b"ERR %s\n" % str(err).encode("utf-8", "replace")[:1000])
            stream.flush()
            raise
        stream.write(b"OK\n")
        stream.flush()
        transfer.finish()
    except (errors.GenericError, OSError, ValueError, zlib.error) as err:
        transfer.finish(_describe(err))
    finally:
        if conn is not None:
            conn.close()


def _check_disks(hello: dict, sizes: list[int]) -> None:
    theirs = hello.get("sizes")
    if not isinstance(theirs, list) or len(theirs) != len(sizes):
        raise errors.OpExecError("The source sends %s disks, this node expects %d" %
                                 (len(theirs) if isinstance(theirs, list) else "no",
                                  len(sizes)))
    for idx, (src, dst) in enumerate(zip(theirs, sizes)):
        if not isinstance(src, int) or src > dst:
            raise errors.OpExecError("Disk %d: %s bytes do not fit into %d bytes here" %
                                     (idx, src, dst))


def _describe(err: BaseException) -> str:
    if isinstance(err, errors.GenericError) and err.args:
        return str(err.args[0])
    if isinstance(err, ssl.SSLError):
        return "TLS error: %s" % err
    return "%s: %s" % (type(err).__name__, err)


# ---- source ------------------------------------------------------------------------------

def disk_export_start(transfer_id: str, disks: list, host: str, port: int,
                      compress: str = "none") -> None:
    """Connect to the target of ``transfer_id`` and stream ``disks`` (in a thread)."""
    level = _check_compress(compress)
    paths = _device_paths(disks)
    sizes = [_size(p) for p in paths]
    ctx = certs.client_ssl_context(pathutils.node_cert_file(), pathutils.cluster_ca_file())
    transfer = _Transfer(transfer_id, "export", sum(sizes))
    _register(transfer)
    hello = {"id": transfer_id, "sizes": sizes, "compress": compress}
    threading.Thread(target=_export_thread,
                     args=(transfer, ctx, host, port, paths, hello, level),
                     name="export-%s" % transfer_id[:8], daemon=True).start()


def _export_thread(transfer: _Transfer, ctx: ssl.SSLContext, host: str, port: int,
                   paths: list[str], hello: dict, level: int | None) -> None:
    conn = None
    try:
        raw = socket.create_connection((host, port), timeout=IO_TIMEOUT)
        conn = ctx.wrap_socket(raw)
        transfer.sock = conn
        stream = conn.makefile("rwb")
        stream.write(json.dumps(hello).encode() + b"\n")
        stream.flush()
        answer = stream.readline(2048).decode("utf-8", "replace").strip()
        if answer != "GO":
            raise errors.OpExecError("The target refused the data: %s" %
                                     (answer[4:] if answer.startswith("ERR ")
                                      else answer or "connection closed"))
        try:
            for path in paths:
                _send_disk(stream, path, level, transfer)
            stream.flush()
        except OSError:
            pass  # the target hung up: its answer (below) says why
        answer = stream.readline(2048).decode("utf-8", "replace").strip()
        if answer != "OK":
            raise errors.OpExecError("The target refused the data: %s" %
                                     (answer[4:] if answer.startswith("ERR ")
                                      else answer or "connection closed"))
        transfer.finish()
    except (errors.GenericError, OSError, ValueError) as err:
        transfer.finish(_describe(err))
    finally:
        if conn is not None:
            conn.close()


# ---- both --------------------------------------------------------------------------------

def disk_transfer_status(transfer_id: str, wait: float = 0.0) -> dict[str, Any]:
    """Progress of this side; waits up to ``wait`` seconds for the transfer to end."""
    transfer = _get(transfer_id)
    deadline = time.monotonic() + max(0.0, wait)
    with transfer.cond:
        while transfer.status == "running":
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            transfer.cond.wait(remaining)
    return transfer.to_dict()


def disk_transfer_cleanup(transfer_id: str) -> None:
    """Stop this side of a transfer (if running) and forget it.  Idempotent."""
    with _registry_lock:
        transfer = _transfers.pop(_key(transfer_id), None)
    if transfer is None:
        return
    sock = transfer.sock
    transfer.finish("cancelled")
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
