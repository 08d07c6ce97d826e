"""corral-noded: the node daemon.

Serves the procedures of rpc/procedures.py over HTTPS with mutual TLS: the
server certificate is pathutils.node_cert_file(), and only clients with a
certificate signed by pathutils.cluster_ca_file() complete the handshake.
Each call runs its backend function in a worker thread, so a slow call
(disk creation, test_delay) does not hold up the others.  The daemon never
decides anything; it does what it is asked and answers (rpc/wire.py).
"""

import importlib
import logging
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from corral import certs, constants, errors, pathutils, serializer, ssconf
from corral.backend import daemons as backend_daemons
from corral.rpc import procedures, wire
from corral.server import daemon

NAME = "noded"
_JSON = "application/json"


def _backend_function(proc: procedures.Procedure) -> Callable[..., Any]:
    module_name, _, func_name = proc.backend.rpartition(".")
    module = importlib.import_module("corral.backend." + module_name)
    return getattr(module, func_name)


def _reply(ok: bool, payload: Any, status: int = 200) -> Response:
    return Response(wire.encode_reply(ok, payload), status_code=status, media_type=_JSON)


def _log_failure(name: str, err: BaseException) -> None:
    if isinstance(err, errors.GenericError):
        logging.error("%s failed: %s: %s", name, err.__class__.__name__, wire.error_text(err))
    else:
        logging.error("%s failed with an unexpected error", name, exc_info=err)


async def _dispatch(request: Request) -> Response:
    name = request.path_params["procedure"]
    try:
        proc = procedures.get_procedure(name)
    except errors.ProtocolError:
        return _reply(False, "Unknown procedure '%s'" % name, 404)
    try:
        args = procedures.check_args(proc, serializer.loads(await request.body()))
    except (serializer.JSONDecodeError, UnicodeDecodeError, ValueError) as err:
        return _reply(False, "Request body of '%s' is not valid JSON: %s" % (name, err), 400)
    except errors.ProtocolError as err:
        return _reply(False, wire.failure_payload(err), 400)
    start = time.monotonic()
    try:
        func = _backend_function(proc)
        result = await run_in_threadpool(func, **args)
    except Exception as err:  # every failure becomes an answer; bugs are logged in full
        _log_failure(name, err)
        return _reply(False, wire.failure_payload(err))
    logging.debug("%s done in %.3fs", name, time.monotonic() - start)
    return _reply(True, result)


async def _not_post(request: Request) -> Response:
    return _reply(False, "Node daemon procedures are called with POST", 405)


def make_app() -> Starlette:
    """The ASGI application (no TLS of its own; serve it with a server_ssl_context)."""
    return Starlette(routes=[
        Route("/{procedure:str}", _dispatch, methods=["POST"]),
        Route("/{procedure:str}", _not_post, methods=["GET", "PUT", "DELETE", "HEAD"]),
    ])


def default_port() -> int:
    """The cluster's noded port from ssconf, or the built-in default off-cluster."""
    try:
        return ssconf.SimpleStore().get_noded_port()
    except errors.ConfigurationError:
        return constants.DEFAULT_NODED_PORT


@dataclass
class _State:
    sock: socket.socket
    ssl_context: Any


def _prepare(ctx: daemon.DaemonContext) -> _State:
    ssl_context = certs.server_ssl_context(pathutils.node_cert_file(),
                                           pathutils.cluster_ca_file())
    port = ctx.options.port if ctx.options.port is not None else default_port()
    sock = ctx.listen_tcp(ctx.options.bind, port)
    logging.info("Listening on %s port %d", ctx.options.bind, port)
    return _State(sock, ssl_context)


def _serve(ctx: daemon.DaemonContext, state: _State) -> None:
    backend_daemons.set_self_restart_hook(NAME, ctx.request_reexec)
    try:
        daemon.serve_asgi(ctx, make_app(), [state.sock], state.ssl_context)
    finally:
        backend_daemons.set_self_restart_hook(NAME, None)


def build_parser():
    return daemon.make_parser(NAME, "Corral node daemon: runs what the master asks",
                              default_bind="0.0.0.0")


def main(argv: list[str] | None = None) -> int:
    return daemon.run_daemon(NAME, build_parser(), _prepare, _serve, argv)


if __name__ == "__main__":
    sys.exit(main())
