"""Wire format between the master's RPC client and the node daemon.

Request: HTTPS ``POST /<procedure>``, body = JSON object of the arguments.
Reply: JSON ``[true, <result>]`` or ``[false, <failure>]`` where the failure
is a human-readable string, or ``[ClassName, [args...]]`` (errors.encode_
exception) when the backend raised a Corral error, so the master can tell
an ``HypervisorError`` from a crash.  The HTTP status is 200 for every
reply the daemon produced on purpose (success or failure); clients look at
the body, and treat anything that does not have this shape as a transport
failure.
"""

from typing import Any

from corral import errors, serializer


def error_text(err: BaseException) -> str:
    """The message of an error, without the tuple noise of multi-argument errors."""
    if err.args and isinstance(err.args[0], str):
        return err.args[0]
    return str(err) or err.__class__.__name__


def failure_payload(err: BaseException) -> Any:
    """What goes after ``false`` for ``err``."""
    if isinstance(err, errors.GenericError):
        return errors.encode_exception(err)
    return "%s: %s" % (err.__class__.__name__, err)


def encode_reply(ok: bool, payload: Any) -> bytes:
    """The reply body; a result that is not JSON-serialisable becomes a failure.
    A serializer.RawJSON result is sent as it is (the backend encoded it)."""
    if ok and isinstance(payload, serializer.RawJSON):
        return b"[true,%s]" % payload.text.encode("utf-8")
    try:
        return serializer.dumps([ok, payload]).encode("utf-8")
    except (TypeError, ValueError) as err:
        return serializer.dumps([False, "Result is not JSON-serialisable: %s" % err]).encode()


def decode_reply(status: int, body: bytes) -> tuple[bool, Any, str | None, str | None]:
    """(ok, data, fail_msg, error_class) from an HTTP answer.

    Never raises: malformed answers become a failure with a precise message.
    """
    try:
        reply = serializer.loads(body)
    except (serializer.JSONDecodeError, UnicodeDecodeError, ValueError):
        text = body[:200].decode("utf-8", "replace")
        return False, None, "Invalid answer (HTTP %d, not JSON): %r" % (status, text), None
    if not (isinstance(reply, list) and len(reply) == 2 and isinstance(reply[0], bool)):
        return False, None, "Malformed answer (HTTP %d): %r" % (status, reply), None
    ok, payload = reply
    if ok and status == 200:
        return True, payload, None, None
    if ok:
        return False, None, "Unexpected HTTP status %d with a success answer" % status, None
    if (isinstance(payload, list) and len(payload) == 2 and isinstance(payload[0], str)
            and errors.get_error_class(payload[0]) is not None):
        err = errors.decode_exception(payload)
        return False, None, error_text(err), payload[0]
    if isinstance(payload, str):
        return False, None, payload, None
    return False, None, str(payload), None
