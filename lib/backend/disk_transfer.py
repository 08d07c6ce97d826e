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

Stream (after TLS): a JSON hello line ``{"id", "sizes": [bytes or null...],
"compress"}``, then per disk frames ``D``+len+data (zlib-compressed per frame
unless ``compress`` is ``none``), ``Z``+len (a run of zero bytes: a hole in a
file, zeros on a block device), ``E``+0 (end of disk), or ``X``+len+why (the
source failed in the middle of a disk).  The target answers the
hello with ``GO\\n`` (or ``ERR <why>\\n`` before any data moves) and the data
with ``OK\\n`` once every disk is written and fsynced, or ``ERR <why>\\n``.

Besides devices, an entry of ``disks`` may name an OS export/import script or
a file of an instance export (gnt-backup): see backend/transfer_endpoints.py.
A stream source (OS export script) has no size in advance: its hello size is
null, the size check applies only when both sides know theirs, and the
status' ``total`` is null until every size is known.
"""

import hmac
import json
import socket
import ssl
import threading
import time
import zlib
from typing import Any

from corral import certs, errors, pathutils
from corral.backend import transfer_endpoints as tep

ACCEPT_TIMEOUT = 120.0
IO_TIMEOUT = 120.0
KEEP_FINISHED = 3600.0
COMPRESS_LEVELS = {"none": None, "gzip": 6, "gzip-fast": 1, "gzip-slow": 9}


class _Transfer:
    """Progress of one side of one transfer; ``cond`` wakes status waiters."""

    def __init__(self, transfer_id: str, role: str, sizes: list[int | None]) -> None:
        self.id = transfer_id
        self.role = role
        self.sizes = list(sizes)
        self.done = 0
        self.status = "running"
        self.error: str | None = None
        self.started = time.monotonic()
        self.finished: float | None = None
        self.cond = threading.Condition()
        self.sock: socket.socket | None = None

    @property
    def total(self) -> int | None:
        """Bytes to move; None while a disk's size is unknown (OS export scripts)."""
        return None if None in self.sizes else sum(self.sizes)  # type: ignore[arg-type]

    def advance(self, count: int) -> None:
        with self.cond:
            self.done += count

    def set_size(self, index: int, size: int) -> None:
        with self.cond:
            if self.sizes[index] is None:
                self.sizes[index] = size

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


# Keyed by (state root, id, role): one node daemon has one root; tests run
# several "nodes" in one process; a node may be both ends of one transfer (an
# export to the instance's own primary).
_transfers: dict[tuple[str, str, str], _Transfer] = {}
_registry_lock = threading.Lock()
_ROLES = ("import", "export")


def _key(transfer_id: str, role: str) -> tuple[str, str, str]:
    return (pathutils.root(), transfer_id, role)


def _register(transfer: _Transfer) -> None:
    now = time.monotonic()
    with _registry_lock:
        for key, old in list(_transfers.items()):
            if old.finished is not None and now - old.finished > KEEP_FINISHED:
                del _transfers[key]
        key = _key(transfer.id, transfer.role)
        if key in _transfers:
            raise errors.OpExecError("Transfer %s already exists on this node" % transfer.id)
        _transfers[key] = transfer


def _get(transfer_id: str) -> list[_Transfer]:
    """This node's sides of a transfer (the import side first); OpExecError if none."""
    with _registry_lock:
        found = [_transfers[_key(transfer_id, role)] for role in _ROLES
                 if _key(transfer_id, role) in _transfers]
    if not found:
        raise errors.OpExecError("No transfer %s on this node" % transfer_id)
    return found


def _check_compress(compress: str) -> int | None:
    if compress not in COMPRESS_LEVELS:
        raise errors.OpExecError("Unsupported transfer compression '%s' (supported: %s)" %
                                 (compress, ", ".join(sorted(COMPRESS_LEVELS))))
    return COMPRESS_LEVELS[compress]


# ---- target ------------------------------------------------------------------------------

def disk_import_start(transfer_id: str, disks: list, bind_ip: str,
                      compress: str = "none") -> int:
    """Listen for the source of ``transfer_id``; returns the TCP port.

    Device disks must exist here (created by the master before); every entry
    receives its data in order (entry kinds: backend/transfer_endpoints.py).
    The listener accepts one authenticated connection within ACCEPT_TIMEOUT
    seconds, then closes.
    """
    _check_compress(compress)
    endpoints = tep.targets(disks)
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
    transfer = _Transfer(transfer_id, "import", [e.size for e in endpoints])
    transfer.sock = listener
    try:
        _register(transfer)
    except errors.GenericError:
        listener.close()
        raise
    threading.Thread(target=_import_thread, args=(transfer, listener, ctx, endpoints),
                     name="import-%s" % transfer_id[:8], daemon=True).start()
    return listener.getsockname()[1]


def _import_thread(transfer: _Transfer, listener: socket.socket, ctx: ssl.SSLContext,
                   endpoints: list) -> None:
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
            _check_disks(hello, [e.size for e in endpoints])
            for idx, size in enumerate(hello["sizes"]):
                if size is not None:
                    transfer.set_size(idx, size)
            stream.write(b"GO\n")
            stream.flush()
            compressed = hello.get("compress", "none") != "none"
            for endpoint, size in zip(endpoints, hello["sizes"]):
                endpoint.receive(stream, compressed, transfer.advance, size)
        except (errors.GenericError, OSError, zlib.error) as err:
            _answer_error(stream, err)
            raise
        stream.write(b"OK\n")
        stream.flush()
        transfer.finish()
    except (errors.GenericError, OSError, ValueError, zlib.error) as err:
        transfer.finish(_describe(err))
    finally:
        if conn is not None:
            conn.close()


def _answer_error(stream: Any, err: BaseException) -> None:
    # Best effort: the source may be gone, and then this node's own error
    # (not the broken pipe of this answer) is the one to report.
    why = _describe(err).replace("\n", "; ")
    try:
        stream.write(b"ERR %s\n" % why.encode("utf-8", "replace")[:4000])
        stream.flush()
    except OSError:
        pass


def _check_disks(hello: dict, sizes: list[int | None]) -> None:
    theirs = hello.get("sizes")
    if not isinstance(theirs, list) or len(theirs) != len(sizes):
        raise errors.OpExecError("The source sends %s disks, this node expects %d" %
                                 (len(theirs) if isinstance(theirs, list) else "no",
                                  len(sizes)))
    for idx, (src, dst) in enumerate(zip(theirs, sizes)):
        if src is None or (isinstance(src, int) and dst is None):
            continue  # a stream source or target: its end checks what arrives
        if not isinstance(src, int) or dst is None or src > dst:
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
    """Connect to the target of ``transfer_id`` and stream ``disks`` (in a thread).

    Entry kinds: backend/transfer_endpoints.py.  A failing source (OS export
    script) makes the target fail too, with the script's log tail.
    """
    level = _check_compress(compress)
    endpoints = tep.sources(disks)
    sizes = [e.size for e in endpoints]
    ctx = certs.client_ssl_context(pathutils.node_cert_file(), pathutils.cluster_ca_file())
    transfer = _Transfer(transfer_id, "export", sizes)
    _register(transfer)
    hello = {"id": transfer_id, "sizes": sizes, "compress": compress}
    threading.Thread(target=_export_thread,
                     args=(transfer, ctx, host, port, endpoints, hello, level),
                     name="export-%s" % transfer_id[:8], daemon=True).start()


def _export_thread(transfer: _Transfer, ctx: ssl.SSLContext, host: str, port: int,
                   endpoints: list, hello: dict, level: int | None) -> None:
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
            _send_all(stream, endpoints, level, transfer)
        except OSError:
            pass  # the target hung up: its answer (below) says why
        answer = stream.readline(8192).decode("utf-8", "replace").strip()
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


def _send_all(stream: Any, endpoints: list, level: int | None, transfer: _Transfer) -> None:
    for idx, endpoint in enumerate(endpoints):
        try:
            endpoint.send(stream, level, transfer.advance,
                          lambda size, idx=idx: transfer.set_size(idx, size))
        except errors.GenericError as err:
            tep.abort_disk(stream, _describe(err))
            raise
        tep.end_disk(stream)
    stream.flush()


# ---- both --------------------------------------------------------------------------------

def disk_transfer_status(transfer_id: str, wait: float = 0.0) -> dict[str, Any]:
    """Progress of this node's side; waits up to ``wait`` seconds for it to end.

    A node that is both ends answers for both at once: failed if either
    failed, done when both are, the bytes and total of the receiving side.
    """
    transfers = _get(transfer_id)
    deadline = time.monotonic() + max(0.0, wait)
    for transfer in transfers:
        with transfer.cond:
            while transfer.status == "running":
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                transfer.cond.wait(remaining)
    states = [t.to_dict() for t in transfers]
    if len(states) == 1:
        return states[0]
    merged = dict(states[0], role="both", elapsed=max(s["elapsed"] for s in states))
    statuses = {s["status"] for s in states}
    merged["status"] = "failed" if "failed" in statuses else \
        ("done" if statuses == {"done"} else "running")
    merged["error"] = next((s["error"] for s in states if s["error"]), None)
    return merged


def disk_transfer_cleanup(transfer_id: str) -> None:
    """Stop this node's sides of a transfer (if running) and forget them.  Idempotent."""
    with _registry_lock:
        transfers = [_transfers.pop(_key(transfer_id, role), None) for role in _ROLES]
    for transfer in transfers:
        if transfer is not None:
            _stop(transfer)


def _stop(transfer: _Transfer) -> None:
    sock = transfer.sock
    transfer.finish("cancelled")
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
