"""HTTP errors of the RAPI and the one place Corral errors become HTTP status codes.

Error bodies are ``{"code", "message", "explain"}`` (spec/rapi.md §3 Errors):
``message`` is the HTML-escaped detail (or the reason phrase), ``explain`` the
standard long description of the status.  Clients print
``"<code> <message>: <explain>"``.
"""

import html
import http
from typing import Any

from corral import errors, luxi


class HttpError(Exception):
    """Raised by handlers to answer with an error status; ``headers`` are added."""

    def __init__(self, code: int, message: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.headers = headers or {}


def bad_request(message: str) -> HttpError:
    return HttpError(400, message)


def not_found(message: str | None = None) -> HttpError:
    return HttpError(404, message)


def error_body(code: int, message: str | None) -> dict[str, Any]:
    try:
        status = http.HTTPStatus(code)
        phrase, explain = status.phrase, status.description
    except ValueError:
        phrase, explain = "Error", ""
    return {"code": code, "message": html.escape(message) if message else phrase,
            "explain": explain}


def _text(err: errors.GenericError) -> str:
    if err.args and isinstance(err.args[0], str):
        return err.args[0]
    return str(err)


def from_corral_error(err: errors.GenericError, lookup: bool = False,
                      query: bool = False) -> HttpError:
    """The HTTP answer for an error raised by masterd while serving a request.

    ``lookup`` marks requests that name one object (single GET, tags, wait):
    there an unknown entity is 404 instead of the generic 500 a failing
    synchronous query gives in Ganeti (``query``).  Validation failures at
    submission are 400: the job was refused and nothing was queued.
    """
    text = _text(err)
    if isinstance(err, (errors.JobQueueDrainError, errors.JobQueueFull)):
        return HttpError(503, text)
    if isinstance(err, errors.JobLost):
        return HttpError(404, text)
    if isinstance(err, errors.NoMasterError):
        return HttpError(502, text)
    if isinstance(err, errors.ProtocolError):
        timeout = len(err.args) > 1 and err.args[1] == luxi.TIMEOUT_MARK
        return HttpError(504 if timeout else 502, text)
    if isinstance(err, errors.OpPrereqError):
        ecode = err.args[1] if len(err.args) > 1 else None
        if ecode == errors.ECODE_NOENT and lookup:
            return HttpError(404, text)
        return HttpError(500 if query else 400, text)
    if isinstance(err, (errors.ParameterError, errors.TypeEnforcementError, errors.TagError,
                        errors.OpCodeUnknown)):
        return HttpError(400, text)
    return HttpError(500, text)
