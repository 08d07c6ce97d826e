"""The RAPI ASGI application: routing, authentication, body checks, error answers.

Order of checks for every request (each failure is a JSON error body):

1. the path matches a resource (anchored regexes of the rlib_* tables) — 404;
2. the resource implements the method — 501 for GET/PUT/POST/DELETE (as
   Ganeti), 405 with ``Allow`` for any other method;
3. access (spec/rapi.md §2) — 401 with ``WWW-Authenticate``, or 403;
4. the body: at most ``MAX_BODY_SIZE`` bytes (413), ``application/json`` if
   non-empty (415), valid JSON (400);
5. the handler, at most ``max_clients`` at once (others wait their turn).

Every answer is ``application/json`` and closes the connection.  The app
holds no state besides the users file cache and a connection pool to masterd.
"""

import asyncio
import base64
import binascii
import logging
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from corral import errors, luxi, serializer
from corral.rapi import params, rlib_cluster, rlib_groups, rlib_instances, rlib_jobs, rlib_nodes
from corral.rapi.base import RawJSON, Req, Route
from corral.rapi.status import HttpError, error_body, from_corral_error
from corral.rapi.users import REALM, User, UsersFile

MAX_BODY_SIZE = 1024 * 1024
DEFAULT_MAX_CLIENTS = 20
KNOWN_METHODS = ("GET", "PUT", "POST", "DELETE")
JSON = "application/json"
ROUTES: list[Route] = (rlib_cluster.ROUTES + rlib_instances.ROUTES + rlib_nodes.ROUTES
                       + rlib_groups.ROUTES + rlib_jobs.ROUTES)
_AUTH_HEADERS = {"WWW-Authenticate": 'Basic realm="%s"' % REALM}


def match_route(path: str, routes: list[Route] | None = None
                ) -> tuple[Route, dict[str, str]] | tuple[None, None]:
    for rte in routes if routes is not None else ROUTES:
        m = rte.pattern.match(path)
        if m is not None:
            return rte, m.groupdict()
    return None, None


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, cred = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        text = base64.b64decode(cred.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = text.partition(":")
    return (user, password) if sep else None


class RapiApp:
    """ASGI app; ``master_socket`` None means pathutils.master_socket().

    ``master`` replaces the masterd client (anything with luxi.AsyncClient's
    ``call``), for tests.
    """

    def __init__(self, users: UsersFile, require_auth: bool = False,
                 max_clients: int = DEFAULT_MAX_CLIENTS, master_socket: str | None = None,
                 routes: list[Route] | None = None, master: Any = None) -> None:
        self.users = users
        self.require_auth = require_auth
        self.max_clients = max_clients
        self.routes = routes if routes is not None else ROUTES
        self._master_socket = master_socket
        self._master: Any = master
        self._slots: asyncio.Semaphore | None = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        start = time.monotonic()
        code, payload, headers, user = await self._handle(request)
        headers["Connection"] = "close"
        body = payload.data if isinstance(payload, RawJSON) else \
            serializer.dumps(payload).encode("utf-8")
        response = Response(body, status_code=code, media_type=JSON, headers=headers)
        await response(scope, receive, send)
        logging.info("%s %s %s %d user=%s %.1fms", request.client.host if request.client
                     else "-", request.method, request.url.path, code,
                     user.name if user else "-", (time.monotonic() - start) * 1000)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if isinstance(self._master, luxi.AsyncClient):
                    await self._master.aclose()
                self._master = None
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _handle(self, request: Request) -> tuple[int, Any, dict, User | None]:
        user = None
        try:
            user, req, handler = await self._prepare(request)
            if self._slots is None:
                self._slots = asyncio.Semaphore(self.max_clients)
            async with self._slots:
                return 200, await handler(req), {}, user
        except HttpError as err:
            return err.code, error_body(err.code, err.message), dict(err.headers), user
        except errors.GenericError as err:
            http_err = from_corral_error(err)
            return http_err.code, error_body(http_err.code, http_err.message), {}, user
        except Exception as err:  # a bug must not kill the server, and must be visible
            logging.exception("Internal error serving %s %s", request.method, request.url.path)
            return 500, error_body(500, "%s: %s" % (err.__class__.__name__, err)), {}, user

    async def _prepare(self, request: Request) -> tuple[User | None, Req, Any]:
        path = request.url.path
        rte, args = match_route(path, self.routes)
        if rte is None:
            raise HttpError(404)
        method = request.method
        entry = rte.methods.get(method)
        if entry is None:
            if method in KNOWN_METHODS:
                raise HttpError(501, "Method %s is unsupported for path %s" % (method, path))
            raise HttpError(405, "Method %s is not allowed" % method,
                            {"Allow": ", ".join(sorted(rte.methods))})
        handler, access = entry
        user = self._authorize(request, access)
        body = await self._read_body(request)
        req = Req(method, args or {}, params.QueryArgs(request.query_params.multi_items()),
                  body, user, self._master_client(), rte.name)
        return user, req, handler

    def _master_client(self) -> Any:
        if self._master is None:
            self._master = luxi.AsyncClient(self._master_socket)
        return self._master

    def _authorize(self, request: Request, access: tuple[str, ...]) -> User | None:
        """The authenticated user (None = anonymous) or 401/403 (spec/rapi.md §2)."""
        header = request.headers.get("authorization")
        if header is None:
            if not access and not self.require_auth:
                return None
            raise HttpError(401, "Authentication required", dict(_AUTH_HEADERS))
        creds = _basic_credentials(header)
        user = self.users.authenticate(*creds) if creds else None
        if user is None:
            raise HttpError(401, "Authentication failed", dict(_AUTH_HEADERS))
        if access and not user.options.intersection(access):
            raise HttpError(403, "Permission denied: user %s lacks %s access"
                            % (user.name, "/".join(access)))
        return user

    async def _read_body(self, request: Request) -> Any:
        length = request.headers.get("content-length")
        if length is not None:
            try:
                if int(length) > MAX_BODY_SIZE:
                    raise HttpError(413, "Request body larger than %d bytes" % MAX_BODY_SIZE)
            except ValueError:
                raise HttpError(400, "Invalid Content-Length header") from None
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_SIZE:
                raise HttpError(413, "Request body larger than %d bytes" % MAX_BODY_SIZE)
            chunks.append(chunk)
        raw = b"".join(chunks)
        if not raw.strip():
            return None
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != JSON:
            raise HttpError(415, "Unsupported media type %r: the body must be %s"
                            % (ctype or "(none)", JSON))
        try:
            return serializer.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as err:
            raise HttpError(400, "Unable to parse JSON data: %s" % err) from None
