"""Master -> node daemon calls: parallel HTTPS with mutual TLS, one result per node.

``RpcClient.call`` sends one procedure to many nodes at once (one thread per
node, up to ``max_parallel``; calls to a few nodes run one node on the
caller's thread and the others on reused pool threads), so a dead or slow
node costs one timeout for the whole call, not one per node.  Every node gets an RpcResult; nothing
raises for a node-side or network problem (only programming errors, such as
an unknown procedure or wrong arguments, and a missing local certificate
raise).  Callers decide with ``result.failed`` / ``raise_if_failed()``.

The client is thread-safe and keeps connections alive between calls
(rpc/transport.py); make one per process (masterd) and ``close()`` it at
shutdown.
"""

import errno
import http.client
import queue
import socket
import ssl
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from corral import certs, errors, pathutils, serializer
from corral.rpc import procedures, transport, wire
from corral.rpc.transport import ConnectionPool, TransportError

NodeResolver = Callable[[str], "tuple[str, int] | None"]

OFFLINE_MSG = "Node is marked offline"
# A node that does not even accept the TCP connection is not worth the full
# procedure timeout.
CONNECT_TIMEOUT = 15.0
MAX_PARALLEL = 256
# Calls to a few nodes (job queue and config replication to the candidates,
# several per job) reuse the threads of one pool instead of starting threads
# per call; a call that would have to queue behind others in a full pool (a
# dead node's timeouts) gets threads of its own, as big fan-outs always do.
SHARED_POOL_THREADS = 64
SHARED_POOL_MAX_NODES = 16


@dataclass
class RpcResult:
    """Outcome of one procedure on one node.

    ``data`` is the procedure's result when it succeeded; otherwise
    ``fail_msg`` says why (node error, transport error, offline) and
    ``error_class`` names the Corral error class the node raised, if any.
    """

    node: str
    data: Any = None
    fail_msg: str | None = None
    offline: bool = False
    error_class: str | None = None

    @property
    def failed(self) -> bool:
        return self.offline or self.fail_msg is not None

    def raise_if_failed(self, prefix: str | None = None) -> None:
        """Raise errors.RemoteError("<prefix>: Error from node <node>: <msg>") if failed."""
        if not self.failed:
            return
        msg = "Error from node %s: %s" % (self.node, self.fail_msg or OFFLINE_MSG)
        if prefix:
            msg = "%s: %s" % (prefix, msg)
        raise errors.RemoteError(msg)


def static_resolver(mapping: dict[str, "tuple[str, int] | None"]) -> NodeResolver:
    """A resolver from a fixed map; unknown names resolve like offline nodes' errors."""
    def resolve(node: str) -> tuple[str, int] | None:
        try:
            return mapping[node]
        except KeyError:
            raise errors.RemoteError("Node '%s' is unknown" % node) from None
    return resolve


def _find_ssl_error(exc: BaseException) -> ssl.SSLError | None:
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 10:
        if isinstance(cur, ssl.SSLError):
            return cur
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return None


def _tls_hint(text: str) -> str:
    upper = text.upper()
    if any(k in upper for k in ("CERTIFICATE_REQUIRED", "UNKNOWN_CA", "BAD_CERTIFICATE",
                                "CERTIFICATE_UNKNOWN", "HANDSHAKE_FAILURE")):
        return " (the node refused our client certificate: missing, or not signed by" \
               " this cluster's CA)"
    if "CERTIFICATE_VERIFY_FAILED" in upper:
        return " (the node's certificate is not signed by this cluster's CA)"
    if "WRONG_VERSION_NUMBER" in upper or "RECORD_LAYER_FAILURE" in upper:
        return " (the peer does not speak TLS: not a node daemon?)"
    return ""


def _closed_hint(sent_cert: bool) -> str:
    # asyncio TLS servers drop a refused client without sending an alert, so a
    # close right after the handshake is how a certificate refusal looks.
    if not sent_cert:
        return (" (this client sent no TLS certificate; node daemons refuse clients without"
                " one signed by the cluster CA)")
    return (" (the node closed the connection without answering: it does not trust our"
            " certificate (another cluster's CA?) or it is restarting)")


# The node closed the connection without answering (after the handshake).
_BROKEN = (http.client.RemoteDisconnected, http.client.IncompleteRead, ConnectionResetError,
           BrokenPipeError)


def describe_transport_error(exc: BaseException, where: str, timeout: float,
                             sent_cert: bool = True) -> str:
    """A precise one-line reason for a failed HTTP exchange with ``where``
    (``exc``: a transport.TransportError, or the exception itself)."""
    connecting = isinstance(exc, TransportError) and exc.connecting
    cause = exc.cause if isinstance(exc, TransportError) else exc
    if isinstance(cause, TimeoutError) and cause.errno == errno.ETIMEDOUT:
        return ("No TCP acknowledgement from %s for %d seconds: the node or its network"
                " is down" % (where, transport.DEAD_PEER_TIMEOUT))
    if isinstance(cause, (socket.timeout, TimeoutError)):
        if connecting:
            return "Timeout connecting to %s" % where
        return "No answer from %s within %.1f seconds" % (where, timeout)
    ssl_err = _find_ssl_error(cause)
    text = str(ssl_err if ssl_err is not None else cause)
    if isinstance(ssl_err, ssl.SSLEOFError) or "UNEXPECTED_EOF" in text:
        return "TLS connection to %s closed: %s%s" % (where, text, _closed_hint(sent_cert))
    if ssl_err is not None or "[SSL" in text:
        return "TLS error with %s: %s%s" % (where, text, _tls_hint(text))
    if isinstance(cause, _BROKEN):
        return "Connection to %s broken: %s%s" % (where, str(cause) or type(cause).__name__,
                                                  _closed_hint(sent_cert))
    if connecting and isinstance(cause, OSError):
        return "Cannot connect to %s: %s" % (where, cause)
    return "Communication error with %s: %s: %s" % (where, cause.__class__.__name__, cause)


class _DaemonPool:
    """Up to ``size`` reusable daemon threads running submitted calls.

    Daemon threads, unlike ThreadPoolExecutor's: an idle pool never holds up
    the exit of the process (a daemon refusing to start exits at once).
    Callers bound the work they submit (``RpcClient._reserve_shared``), so a
    task never waits for a thread.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("pool closed")
            if self._idle == 0 and self._threads < self._size:
                self._threads += 1
                threading.Thread(target=self._run, name="rpc", daemon=True).start()
            else:
                self._idle -= 1
        self._tasks.put((future, fn, args))
        return future

    def _run(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            future, fn, args = task
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as err:  # handed to the caller, like an executor
                    future.set_exception(err)
            with self._lock:
                self._idle += 1

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            count = self._threads
        for _ in range(count):
            self._tasks.put(None)


class RpcClient:
    """Calls node daemon procedures (table: rpc/procedures.py).

    ``node_resolver(name)`` gives ``(ip, port)``, or None for an offline node
    (never contacted); it may raise errors.GenericError for unknown nodes,
    which becomes that node's failure.  ``cert_path`` None sends no client
    certificate (node daemons refuse that; used by tests and probes).
    """

    def __init__(self, node_resolver: NodeResolver, cert_path: str | None, ca_path: str,
                 max_parallel: int = MAX_PARALLEL) -> None:
        self._resolver = node_resolver
        self._cert_path = cert_path
        self._ca_path = ca_path
        self._max_parallel = max(1, max_parallel)
        self._lock = threading.Lock()
        self._http: ConnectionPool | None = None
        self._pool: _DaemonPool | None = None
        self._pool_busy = 0

    @classmethod
    def for_this_node(cls, node_resolver: NodeResolver) -> "RpcClient":
        """A client using this node's certificate and the cluster CA (pathutils)."""
        return cls(node_resolver, pathutils.node_cert_file(), pathutils.cluster_ca_file())

    def __enter__(self) -> "RpcClient":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close kept-alive connections (idempotent; the client stays usable).

        The next call reloads the certificates, so call this after renewing them.
        """
        with self._lock:
            http, self._http = self._http, None
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown()
        if http is not None:
            http.close()

    def _client(self) -> ConnectionPool:
        with self._lock:
            if self._http is None:
                ctx = certs.client_ssl_context(self._cert_path, self._ca_path)
                self._http = ConnectionPool(ctx)
            return self._http

    def call(self, procedure: str, nodes: list[str], args: dict,
             timeout: float | None = None) -> dict[str, RpcResult]:
        """Run ``procedure`` on every node in parallel; a result per node, in input order.

        Raises errors.ProgrammerError for an unknown procedure or arguments
        that do not match the table, and errors.CertificateError when this
        node's certificate or the CA cannot be loaded; never for node or
        network failures.
        """
        try:
            proc = procedures.get_procedure(procedure)
            args = procedures.check_args(proc, args)
        except errors.ProtocolError as err:
            raise errors.ProgrammerError(wire.error_text(err)) from err
        if timeout is None:
            timeout = proc.timeout_for(args)
        body = serializer.dumps(args).encode("utf-8")
        http = self._client()
        unique = list(dict.fromkeys(nodes))

        def one(node: str) -> RpcResult:
            return self._call_node(http, procedure, node, body, timeout)

        if len(unique) <= 1:
            results = [one(n) for n in unique]
        else:
            pool = self._reserve_shared(len(unique) - 1)
            futures = None
            if pool is not None:
                try:
                    futures = [pool.submit(one, n) for n in unique[1:]]
                except RuntimeError:  # closed meanwhile: use threads of our own
                    futures = None
                try:
                    if futures is not None:
                        results = [one(unique[0])] + [f.result() for f in futures]
                finally:
                    self._release_shared(len(unique) - 1)
            if futures is None:
                workers = min(len(unique), self._max_parallel)
                with ThreadPoolExecutor(max_workers=workers,
                                        thread_name_prefix="rpc-" + procedure) as own:
                    results = list(own.map(one, unique))
        return {r.node: r for r in results}

    def _reserve_shared(self, count: int) -> "_DaemonPool | None":
        """The shared pool with ``count`` threads reserved, or None (use own threads)."""
        with self._lock:
            if count > SHARED_POOL_MAX_NODES or \
                    self._pool_busy + count > SHARED_POOL_THREADS:
                return None
            if self._pool is None:
                self._pool = _DaemonPool(SHARED_POOL_THREADS)
            self._pool_busy += count
            return self._pool

    def _release_shared(self, count: int) -> None:
        with self._lock:
            self._pool_busy -= count

    def call_one(self, procedure: str, node: str, args: dict,
                 timeout: float | None = None) -> RpcResult:
        """``call`` for a single node."""
        return self.call(procedure, [node], args, timeout)[node]

    def _call_node(self, http: ConnectionPool, procedure: str, node: str, body: bytes,
                   timeout: float) -> RpcResult:
        try:
            address = self._resolver(node)
        except errors.GenericError as err:
            return RpcResult(node, fail_msg=wire.error_text(err))
        if address is None:
            return RpcResult(node, fail_msg=OFFLINE_MSG, offline=True)
        ip, port = address
        where = "node %s (%s:%d)" % (node, ip, port)
        try:
            status, content = http.post(ip, port, "/" + procedure, body, timeout,
                                        min(timeout, CONNECT_TIMEOUT))
        except TransportError as err:
            return RpcResult(node, fail_msg=describe_transport_error(
                err, where, timeout, sent_cert=self._cert_path is not None))
        ok, data, fail_msg, error_class = wire.decode_reply(status, content)
        if ok:
            return RpcResult(node, data=data)
        return RpcResult(node, fail_msg=fail_msg, error_class=error_class)
