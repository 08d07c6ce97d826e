"""corral-rapi: the Ganeti-compatible REST API daemon (spec/rapi.md), run on the master.

HTTPS on port 5080 by default (``-p``, else ``$CORRAL_RAPI_PORT``, else
constants.DEFAULT_RAPI_PORT) with the certificate made at cluster init
(pathutils.rapi_cert_file(); ``-C``/``-K`` override, ``--no-ssl`` serves plain
HTTP).  Clients are not asked for certificates.  Users come from
pathutils.rapi_users_file(), re-read when it changes or on SIGHUP.  The
daemon is stateless: every request is a masterd query or job (rapi/app.py).
"""

import json
import logging
import os
import signal
import socket
import ssl
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

from corral import constants, errors, pathutils
from corral.rapi import app as rapi_app
from corral.rapi.users import UsersFile
from corral.server import daemon
from corral.utils import process

NAME = "rapi"


def default_port() -> int:
    env = os.environ.get("CORRAL_RAPI_PORT")
    if env:
        try:
            return int(env)
        except ValueError:
            raise errors.GenericError("Invalid CORRAL_RAPI_PORT %r" % env) from None
    return constants.DEFAULT_RAPI_PORT


def interface_address(iface: str) -> str:
    """First IPv4 address of network interface ``iface`` (for ``-i``)."""
    result = process.run_cmd(["ip", "-j", "-4", "addr", "show", "dev", iface])
    if result.failed:
        raise errors.GenericError("Cannot read the addresses of interface %s: %s"
                                  % (iface, result.output.strip()))
    for link in json.loads(result.stdout or "[]"):
        for addr in link.get("addr_info", []):
            if addr.get("local"):
                return addr["local"]
    raise errors.GenericError("Interface %s has no IPv4 address" % iface)


def ssl_context(cert: str, key: str | None, chain: str | None) -> ssl.SSLContext:
    """Server TLS context; no client certificates requested (spec/rapi.md §1)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if chain:
            _load_with_chain(ctx, cert, key, chain)
        else:
            ctx.load_cert_chain(cert, key or None)
    except FileNotFoundError as err:
        raise errors.CertificateError("RAPI certificate file %s does not exist"
                                      % (err.filename or cert)) from err
    except (ssl.SSLError, OSError) as err:
        raise errors.CertificateError("Cannot load the RAPI certificate %s: %s"
                                      % (cert, err)) from err
    ctx.verify_mode = ssl.CERT_NONE
    # No TLS 1.3 session tickets: clients open one connection per request and
    # never resume, and the post-handshake ticket write costs a delayed-ACK
    # round (~40 ms) before the first response byte.
    ctx.num_tickets = 0
    return ctx


def _load_with_chain(ctx: ssl.SSLContext, cert: str, key: str | None, chain: str) -> None:
    """Present ``cert`` followed by the intermediates of ``chain`` (a private temp file)."""
    with open(cert, "rb") as fh:
        pem = fh.read()
    with open(chain, "rb") as fh:
        pem += b"\n" + fh.read()
    fd, path = tempfile.mkstemp(prefix="rapi-chain-", dir=pathutils.run_dir())
    try:
        os.write(fd, pem)
        os.close(fd)
        ctx.load_cert_chain(path, key or None)
    finally:
        os.unlink(path)


@dataclass
class _State:
    sock: socket.socket
    ssl_context: Any
    app: rapi_app.RapiApp


def _prepare(ctx: daemon.DaemonContext) -> _State:
    opts = ctx.options
    context = None if opts.no_ssl else ssl_context(opts.ssl_cert or pathutils.rapi_cert_file(),
                                                   opts.ssl_key, opts.ssl_chain)
    bind = interface_address(opts.interface) if opts.interface else opts.bind
    port = opts.port if opts.port is not None else default_port()
    users = UsersFile()
    users.users()
    signal.signal(signal.SIGHUP, lambda *_: users.reload())
    sock = ctx.listen_tcp(bind, port)
    # Accepted sockets inherit this on Linux.  asyncio sets it only on sockets
    # whose proto is IPPROTO_TCP, which a socket(AF_INET, SOCK_STREAM) is not,
    # and without it the body segment waits a delayed ACK (~40 ms) behind the
    # header segment.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    logging.info("Listening on %s port %d (%s%s)", bind, port,
                 "plain HTTP" if context is None else "HTTPS",
                 ", authentication required" if opts.require_authentication else "")
    app = rapi_app.RapiApp(users, require_auth=opts.require_authentication,
                           max_clients=opts.max_clients)
    return _State(sock, context, app)


def _serve(ctx: daemon.DaemonContext, state: _State) -> None:
    daemon.serve_asgi(ctx, state.app, [state.sock], state.ssl_context)


def make_parser():
    parser = daemon.make_parser(NAME, "Corral remote API daemon: the Ganeti-compatible REST"
                                " API (HTTPS, port %d by default)" % constants.DEFAULT_RAPI_PORT,
                                default_bind="0.0.0.0")
    parser.add_argument("-i", "--interface", default=None,
                        help="listen on the IPv4 address of this network interface")
    parser.add_argument("--no-ssl", action="store_true",
                        help="serve plain HTTP instead of HTTPS")
    parser.add_argument("-C", "--ssl-cert", default=None, metavar="FILE",
                        help="SSL certificate (default: %s)" % pathutils.rapi_cert_file())
    parser.add_argument("-K", "--ssl-key", default=None, metavar="FILE",
                        help="SSL private key (default: in the certificate file)")
    parser.add_argument("--ssl-chain", default=None, metavar="FILE",
                        help="SSL certificate chain file")
    parser.add_argument("--require-authentication", action="store_true",
                        help="require authentication for every request, reads included")
    parser.add_argument("--max-clients", type=int, default=rapi_app.DEFAULT_MAX_CLIENTS,
                        help="requests served at once; more wait (default: %(default)s)")
    return parser


build_parser = make_parser


def main(argv: list[str] | None = None) -> int:
    return daemon.run_daemon(NAME, make_parser(), _prepare, _serve, argv)


if __name__ == "__main__":
    sys.exit(main())
