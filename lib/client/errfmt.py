"""The one place that turns an exception into a gnt-* exit code and stderr text.

Texts follow Ganeti's command line tools (spec/cli.md §1 "Error output")
because users and wrapper scripts match on them.  Errors often arrive
decoded from a job result (``errors.decode_exception``), so their args may
be lists instead of tuples; every branch copes with that and with missing
or malformed args (a formatter that raises would hide the real error).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from corral import constants, errors

ABORTED_TEXT = ("Aborted. Note that if the operation created any jobs, they might have"
                " been submitted and will continue to run in the background.")
NO_MASTER_TEXT = ("Cannot communicate with the master daemon.\nIs the process running"
                  " and listening for connections?")
TIMEOUT_TEXT = ("Timeout while talking to the master daemon. Jobs might have been"
                " submitted and will continue to run even if the call timed out."
                " Useful commands in this situation are \"gnt-job list\","
                " \"gnt-job cancel\" and \"gnt-job watch\". Error:\n")


def _message(err: BaseException) -> str:
    """str(err) as Ganeti prints it: the single argument itself, else the tuple."""
    if len(err.args) == 1:
        return str(err.args[0])
    return str(err)


def _prereq(err: BaseException) -> str:
    args = list(err.args)
    if len(args) == 1 and isinstance(args[0], (list, tuple)) and len(args[0]) == 2:
        args = list(args[0])
    if len(args) == 2:
        return ("Failure: prerequisites not met for this operation:\nerror type: %s,"
                " error details:\n%s" % (args[1], args[0]))
    return "Failure: prerequisites not met for this operation:\n%s" % _message(err)


def _hooks_abort(err: BaseException) -> str:
    lines = ["Failure: hooks execution failed:"]
    results = err.args[0] if err.args else []
    try:
        for node, script, output in results:
            if output:
                lines.append("  node: %s, script: %s, output: %s" % (node, script, output))
            else:
                lines.append("  node: %s, script: %s (no output)" % (node, script))
    except (TypeError, ValueError):
        lines = ["Failure: hooks execution failed:", _message(err)]
    return "\n".join(lines)


def _resolver(err: BaseException) -> str:
    host = str(err.args[0]) if err.args else ""
    if not host or any(ch.isspace() for ch in host):
        # not Ganeti's (hostname, errno, reason) form: a plain message
        return "Failure: can't resolve hostname: %s" % _message(err)
    if host == socket.gethostname():
        return "Failure: can't resolve my own hostname ('%s')" % host
    return "Failure: can't resolve hostname '%s'" % host


def _parameter(err: BaseException) -> str:
    msg = _message(err)
    if msg and not any(ch.isspace() for ch in msg):
        # Ganeti raises ParameterError(<parameter name>)
        return "Failure: unknown/wrong parameter name '%s'" % msg
    return "Failure: invalid parameter: %s" % msg


def _configuration(err: BaseException) -> str:
    return "Corrupt configuration file: %s\nAborting." % _message(err)


# Most specific classes first: HooksAbort before HooksFailure, NoMasterError
# before ProtocolError, and GenericError last.
_FORMATTERS: list[tuple[type[BaseException], Callable[[BaseException], str], int]] = [
    (errors.ConfigurationError, _configuration, constants.EXIT_CONFIG_ERROR),
    (errors.HooksAbort, _hooks_abort, constants.EXIT_FAILURE),
    (errors.HooksFailure,
     lambda e: "Failure: hooks general failure: %s" % _message(e), constants.EXIT_FAILURE),
    (errors.ResolverError, _resolver, constants.EXIT_FAILURE),
    (errors.OpPrereqError, _prereq, constants.EXIT_FAILURE),
    (errors.OpExecError,
     lambda e: "Failure: command execution error:\n%s" % _message(e), constants.EXIT_FAILURE),
    (errors.TagError,
     lambda e: "Failure: invalid tag(s) given:\n%s" % _message(e), constants.EXIT_FAILURE),
    (errors.JobQueueDrainError,
     lambda e: ("Failure: the job queue is marked for drain and doesn't accept new"
                " requests"), constants.EXIT_FAILURE),
    (errors.JobQueueFull,
     lambda e: ("Failure: the job queue is full and doesn't accept new job submissions"
                " until old jobs are archived"), constants.EXIT_FAILURE),
    (errors.JobLost,
     lambda e: "Error checking job status: %s" % _message(e), constants.EXIT_FAILURE),
    (errors.TypeEnforcementError,
     lambda e: "Parameter Error: %s" % _message(e), constants.EXIT_FAILURE),
    (errors.ParameterError, _parameter, constants.EXIT_FAILURE),
    (errors.UnitParseError,
     lambda e: "Failure: invalid size or time value:\n%s" % _message(e), constants.EXIT_FAILURE),
    (errors.CommandError, lambda e: "Error: %s" % _message(e), constants.EXIT_FAILURE),
    (errors.NoMasterError, lambda e: NO_MASTER_TEXT, constants.EXIT_FAILURE),
    (errors.ProtocolError,
     lambda e: ("Unhandled protocol error while talking to the master daemon:\n%s"
                % _message(e)), constants.EXIT_FAILURE),
    (errors.GenericError,
     lambda e: "Unhandled Ganeti error: %s" % _message(e), constants.EXIT_FAILURE),
    (TimeoutError, lambda e: TIMEOUT_TEXT + _message(e), constants.EXIT_FAILURE),
    (KeyboardInterrupt, lambda e: ABORTED_TEXT, constants.EXIT_FAILURE),
]


def format_error(err: BaseException) -> tuple[int, str]:
    """Exit code and stderr text (no trailing newline) for ``err``.

    Never raises: unknown exception types give ``Unhandled exception: <msg>``
    with EXIT_FAILURE.
    """
    for cls, formatter, code in _FORMATTERS:
        if isinstance(err, cls):
            try:
                text = formatter(err)
            except Exception:  # a malformed error must not hide itself
                text = "Unhandled Ganeti error: %r" % (err.args,)
            return code, text.rstrip("\n")
    return constants.EXIT_FAILURE, ("Unhandled exception: %s" % _message(err)).rstrip("\n")


def format_job_error(data: Any) -> tuple[int, str]:
    """Like format_error for an encoded ``[ClassName, [args]]`` job result."""
    return format_error(errors.decode_exception(data))
