"""Master -> node daemon calls: parallel HTTPS with mutual TLS, one result per node.

``RpcClient.call`` sends one procedure to many nodes at once (one thread per
node, up to ``max_parallel``), so a dead or slow node costs one timeout for
the whole call, not one per node.  Every node gets an RpcResult; nothing
raises for a node-side or network problem (only programming errors, such as
an unknown procedure or wrong arguments, and a missing local certificate
raise).  Callers decide with ``result.failed`` / ``raise_if_failed()``.

The client is thread-safe and keeps connections alive between calls; make
one per process (masterd) and ``close()`` it at shutdown.
"""

import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import httpx

from corral import certs, errors, pathutils, serializer
from corral.rpc import procedures, wire

NodeResolver = Callable[[str], "tuple[str, int] | None"]

OFFLINE_MSG = "Node is marked offline"
# A node that does not even accept the TCP connection is not worth the full
# procedure timeout.
CONNECT_TIMEOUT = 15.0
MAX_PARALLEL = 256


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


def describe_transport_error(exc: BaseException, where: str, timeout: float,
                             sent_cert: bool = True) -> str:
    """A precise one-line reason for a failed HTTP exchange with ``where``."""
    if isinstance(exc, httpx.ConnectTimeout):
        return "Timeout connecting to %s" % where
    if isinstance(exc, httpx.TimeoutException):
        return "No answer from %s within %.1f seconds" % (where, timeout)
    ssl_err = _find_ssl_error(exc)
    text = str(ssl_err if ssl_err is not None else exc)
    if isinstance(ssl_err, ssl.SSLEOFError) or "UNEXPECTED_EOF" in text:
        return "TLS connection to %s closed: %s%s" % (where, text, _closed_hint(sent_cert))
    if ssl_err is not None or "[SSL" in text:
        return "TLS error with %s: %s%s" % (where, text, _tls_hint(text))
    if isinstance(exc, httpx.ConnectError):
        return "Cannot connect to %s: %s" % (where, exc)
    if isinstance(exc, httpx.RemoteProtocolError):
        return "Connection to %s broken: %s%s" % (where, exc, _closed_hint(sent_cert))
    return "Communication error with %s: %s: %s" % (where, exc.__class__.__name__, exc)


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
        self._http: httpx.Client | None = None

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
        if http is not None:
            http.close()

    def _client(self) -> httpx.Client:
        with self._lock:
            if self._http is None:
                ctx = certs.client_ssl_context(self._cert_path, self._ca_path)
                self._http = httpx.Client(
                    verify=ctx, trust_env=False, http2=False,
                    limits=httpx.Limits(max_connections=None, max_keepalive_connections=64,
                                        keepalive_expiry=20.0))
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
        if len(unique) <= 1:
            results = [self._call_node(http, procedure, n, body, timeout) for n in unique]
        else:
            workers = min(len(unique), self._max_parallel)
            with ThreadPoolExecutor(max_workers=workers,
                                    thread_name_prefix="rpc-" + procedure) as pool:
                results = list(pool.map(
                    lambda n: self._call_node(http, procedure, n, body, timeout), unique))
        return {r.node: r for r in results}

    def call_one(self, procedure: str, node: str, args: dict,
                 timeout: float | None = None) -> RpcResult:
        """``call`` for a single node."""
        return self.call(procedure, [node], args, timeout)[node]

    def _call_node(self, http: httpx.Client, procedure: str, node: str, body: bytes,
                   timeout: float) -> RpcResult:
        try:
            address = self._resolver(node)
        except errors.GenericError as err:
            return RpcResult(node, fail_msg=wire.error_text(err))
        if address is None:
            return RpcResult(node, fail_msg=OFFLINE_MSG, offline=True)
        ip, port = address
        host = "[%s]" % ip if ":" in ip else ip
        where = "node %s (%s:%d)" % (node, ip, port)
        try:
            resp = http.post("https://%s:%d/%s" % (host, port, procedure), content=body,
                             headers={"Content-Type": "application/json"},
                             timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)))
        except (httpx.HTTPError, OSError) as err:
            return RpcResult(node, fail_msg=describe_transport_error(
                err, where, timeout, sent_cert=self._cert_path is not None))
        ok, data, fail_msg, error_class = wire.decode_reply(resp.status_code, resp.content)
        if ok:
            return RpcResult(node, data=data)
        return RpcResult(node, fail_msg=fail_msg, error_class=error_class)
