"""HTTPS POSTs to node daemons over kept-alive connections (the RPC client's transport).

The standard library's http.client over ssl, not httpx: a node call costs the
master about a third of the CPU (0.4 ms instead of 1.2 ms per call, measured
on the vcluster), and the job queue replicates every job change to each
master candidate, several calls per job.  Same reasoning as luxi.Client.

A connection serves one request at a time; idle ones are kept per address
for ``KEEPALIVE_EXPIRY`` seconds (below the node daemon's 30 s) and dropped
before reuse if the node closed them meanwhile (a restarted daemon).
Every connection watches its peer at the TCP level (keepalive probes and
TCP_USER_TIMEOUT, ``DEAD_PEER_TIMEOUT``): a procedure may legitimately run for
its whole timeout (15 minutes for hooks), but a node that vanished (powered
off, cut off the network) stops acknowledging packets, and that ends the
call within seconds instead.  Without it a kept-alive connection to such a
node skipped the connect timeout and waited out the procedure's.

Failures raise ``TransportError`` carrying the phase (connect or request) and
the original exception, which ``client.describe_transport_error`` turns into
one precise line.
"""

import errno
import http.client
import select
import socket
import ssl
import struct
import threading
import time

_TCP_CLOSE = 7  # tcp_info.tcpi_state, linux/tcp_states.h
_TCPI_LAST_ACK_RECV = 56  # offset of tcp_info.tcpi_last_ack_recv (ms), linux/tcp.h
KEEPALIVE_EXPIRY = 20.0
MAX_IDLE_PER_NODE = 8
# A live node's kernel acknowledges within milliseconds, however busy its daemon.
DEAD_PEER_TIMEOUT = 15


def watch_peer(sock: socket.socket) -> None:
    """Make ``sock`` fail with ETIMEDOUT once the peer has acknowledged nothing
    (data or keepalive probes) for about ``DEAD_PEER_TIMEOUT`` seconds."""
    dead_after = DEAD_PEER_TIMEOUT
    probe = max(1, dead_after // 3)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, probe)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, probe)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, dead_after * 1000)


class TransportError(Exception):
    """A request failed before an HTTP answer arrived.

    ``connecting`` tells whether the connection (TCP or TLS handshake) was
    being set up; ``cause`` is the underlying exception.
    """

    def __init__(self, connecting: bool, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.connecting = connecting
        self.cause = cause


def _closed_by_peer(sock: socket.socket | None) -> bool:
    """An idle connection the node closed (or wrote to unasked) is not reusable."""
    if sock is None:
        return True
    try:
        readable, _w, _x = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class _Connection(http.client.HTTPSConnection):
    """Remembers the TCP state its socket had when closed, and for how long the
    peer had acknowledged nothing (see _gave_up_on_peer)."""

    tcp_state: int | None = None
    silent_ms = 0

    def close(self) -> None:
        if self.sock is not None:
            try:
                info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 60)
                self.tcp_state = info[0]
                self.silent_ms = struct.unpack_from("=I", info, _TCPI_LAST_ACK_RECV)[0]
            except OSError:
                pass
        super().close()


def _gave_up_on_peer(conn: _Connection, err: BaseException) -> bool:
    """Whether an end-of-stream ``err`` really is the kernel giving up on a silent
    peer: TLS hides the ETIMEDOUT behind an EOF.  A peer that closed leaves the
    socket in CLOSE_WAIT, one that reset it in CLOSE but recently heard from."""
    eof = isinstance(err, (http.client.RemoteDisconnected, http.client.IncompleteRead,
                           ssl.SSLEOFError))
    return (eof and conn.tcp_state == _TCP_CLOSE
            and conn.silent_ms >= DEAD_PEER_TIMEOUT * 1000)


class ConnectionPool:
    """Thread-safe keep-alive pool of HTTPS connections, keyed by (host, port)."""

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        self._ctx = ssl_context
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, int], list[tuple[http.client.HTTPSConnection, float]]] = {}
        self._closed = False

    def _take(self, key: tuple[str, int]) -> http.client.HTTPSConnection | None:
        now = time.monotonic()
        while True:
            with self._lock:
                idle = self._idle.get(key)
                if not idle:
                    return None
                conn, since = idle.pop()
            if now - since < KEEPALIVE_EXPIRY and not _closed_by_peer(conn.sock):
                return conn
            conn.close()

    def _give_back(self, key: tuple[str, int], conn: http.client.HTTPSConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if not self._closed and len(idle) < MAX_IDLE_PER_NODE:
                idle.append((conn, time.monotonic()))
                return
        conn.close()

    def post(self, host: str, port: int, path: str, body: bytes, timeout: float,
             connect_timeout: float) -> tuple[int, bytes]:
        """(HTTP status, body) of ``POST path``; TransportError for everything else."""
        key = (host, port)
        conn = self._take(key)
        if conn is None:
            conn = _Connection(host, port, timeout=connect_timeout,
                                               context=self._ctx)
            try:
                conn.connect()
                watch_peer(conn.sock)
            except (OSError, http.client.HTTPException) as err:
                conn.close()
                raise TransportError(True, err) from err
        try:
            conn.sock.settimeout(timeout)
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            content = resp.read()
        except (OSError, http.client.HTTPException) as err:
            conn.close()
            if _gave_up_on_peer(conn, err):
                err = TimeoutError(errno.ETIMEDOUT, "the peer stopped acknowledging")
            raise TransportError(False, err) from err
        if resp.will_close:
            conn.close()
        else:
            self._give_back(key, conn)
        return resp.status, content

    def close(self) -> None:
        """Close the idle connections; connections in use close when their request ends."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn, _since in conns:
                conn.close()
