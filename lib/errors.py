"""The one error hierarchy of Corral.

Errors cross process boundaries (node daemon -> master -> job result -> CLI or
RAPI client), so each is identified by its class name and its ``args``; clients
of Ganeti parse the encoded form ``[ClassName, [args...]]`` (spec/rapi.md §7.2).

::

  GenericError
   +-- ProgrammerError          a bug: an impossible state reached
   +-- ConfigurationError       config file corrupt or inconsistent (exit 2)
   |    +-- ConfigVersionMismatch
   +-- OpPrereqError(msg, ecode) a precondition failed, nothing was changed
   +-- OpExecError              execution failed part-way
   +-- OpRetryError             transient, retry later
   +-- OpResultError            a result did not have the expected shape
   +-- OpCodeUnknown            no such OP_ID
   +-- ParameterError           a parameter value is invalid (field, reason)
   +-- TypeEnforcementError     a parameter has the wrong type
   +-- TagError                 bad tag, or too many tags
   +-- UnitParseError           a size or time string could not be parsed
   +-- ResolverError            a host name does not resolve
   +-- HooksFailure             hooks could not be run at all
   +-- HooksAbort               a pre hook failed (list of (node, script, output))
   +-- HypervisorError          the hypervisor refused or failed an operation
   +-- BlockDeviceError         a storage driver operation failed
   +-- RemoteError              the node daemon reported an error or is unreachable
   +-- CertificateError         certificate missing, invalid or not trusted
   +-- CommandError             a command-line argument is wrong (CLI only)
   +-- LockError                lock misuse (wrong level order, not held)
   |    +-- LockTimeout
   +-- JobQueueError
   |    +-- JobQueueDrainError   queue drained, submission refused
   |    +-- JobQueueFull         too many non-archived jobs
   |    +-- JobLost              job id unknown
   +-- ProtocolError            malformed request or answer between Corral processes
   +-- NoMasterError            master daemon unreachable
   +-- QuitGanetiException      orderly daemon shutdown

User errors carry a Ganeti error code (``wrong_input``, ``wrong_state``...) as
their second argument.  The CLI maps classes to messages and exit codes in one
place (client/base.py); RAPI maps them to HTTP codes in one place (rapi/).
"""

from typing import Any

from corral import constants

ECODE_RESOLVER = constants.ERRORS_ECODE_RESOLVER
ECODE_NORES = constants.ERRORS_ECODE_NORES
ECODE_TEMP_NORES = constants.ERRORS_ECODE_TEMP_NORES
ECODE_INVAL = constants.ERRORS_ECODE_INVAL
ECODE_STATE = constants.ERRORS_ECODE_STATE
ECODE_NOENT = constants.ERRORS_ECODE_NOENT
ECODE_EXISTS = constants.ERRORS_ECODE_EXISTS
ECODE_NOTUNIQUE = constants.ERRORS_ECODE_NOTUNIQUE
ECODE_FAULT = constants.ERRORS_ECODE_FAULT
ECODE_ENVIRON = constants.ERRORS_ECODE_ENVIRON


class GenericError(Exception):
    """Base of every Corral error."""


class ProgrammerError(GenericError):
    pass


class ConfigurationError(GenericError):
    pass


class ConfigVersionMismatch(ConfigurationError):
    pass


class OpPrereqError(GenericError):
    """A precondition failed; args are (message, ecode)."""


class OpExecError(GenericError):
    pass


class OpRetryError(GenericError):
    pass


class OpResultError(GenericError):
    pass


class OpCodeUnknown(GenericError):
    pass


class ParameterError(GenericError):
    pass


class TypeEnforcementError(GenericError):
    pass


class TagError(GenericError):
    pass


class UnitParseError(GenericError):
    pass


class ResolverError(GenericError):
    pass


class HooksFailure(GenericError):
    pass


class HooksAbort(HooksFailure):
    """A pre hook failed; args[0] is a list of (node, script, output)."""


class HypervisorError(GenericError):
    pass


class BlockDeviceError(GenericError):
    pass


class RemoteError(GenericError):
    pass


class CertificateError(GenericError):
    pass


class CommandError(GenericError):
    pass


class LockError(GenericError):
    pass


class LockTimeout(LockError):
    pass


class JobQueueError(GenericError):
    pass


class JobQueueDrainError(JobQueueError):
    pass


class JobQueueFull(JobQueueError):
    pass


class JobLost(JobQueueError):
    pass


class ProtocolError(GenericError):
    pass


class NoMasterError(ProtocolError):
    pass


class QuitGanetiException(GenericError):
    pass


def _all_classes() -> dict[str, type]:
    found: dict[str, type] = {}
    todo: list[type] = [GenericError]
    while todo:
        cls = todo.pop()
        found[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return found


def get_error_class(name: str) -> type | None:
    return _all_classes().get(name)


def encode_exception(err: BaseException) -> list[Any]:
    """Encode an exception as ``[ClassName, [args]]`` for job results and RPC."""
    if isinstance(err, GenericError):
        return [err.__class__.__name__, list(_jsonable_args(err.args))]
    return ["OpExecError", ["%s: %s" % (err.__class__.__name__, err)]]


def _jsonable_args(args: tuple) -> list:
    out = []
    for a in args:
        if isinstance(a, (str, int, float, bool)) or a is None:
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.append(_jsonable_args(tuple(a)))
        elif isinstance(a, dict):
            out.append({str(k): v for k, v in a.items()})
        else:
            out.append(str(a))
    return out


def decode_exception(data: Any) -> GenericError:
    """Inverse of encode_exception; unknown classes become GenericError."""
    try:
        name, args = data
    except (TypeError, ValueError):
        return GenericError(str(data))
    cls = get_error_class(name) or GenericError
    if not isinstance(args, (list, tuple)):
        args = [args]
    return cls(*args)


def maybe_raise(data: Any) -> None:
    """Raise the encoded error in ``data`` if it is one."""
    if (isinstance(data, (list, tuple)) and len(data) == 2 and isinstance(data[0], str)
            and get_error_class(data[0]) is not None):
        raise decode_exception(data)


def prereq(msg: str, ecode: str = ECODE_INVAL) -> OpPrereqError:
    """Shorthand used by logical units: ``raise errors.prereq("...", ECODE_STATE)``."""
    return OpPrereqError(msg, ecode)
