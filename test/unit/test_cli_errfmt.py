"""The exception -> (exit code, stderr text) mapping of the gnt-* tools."""

import socket

import pytest

from corral import constants, errors
from corral.client.errfmt import format_error, format_job_error

FAIL = constants.EXIT_FAILURE


def test_prereq_with_ecode():
    err = errors.OpPrereqError("Instance 'x' not known", errors.ECODE_NOENT)
    assert format_error(err) == (FAIL, (
        "Failure: prerequisites not met for this operation:\n"
        "error type: unknown_entity, error details:\n"
        "Instance 'x' not known"))


def test_prereq_without_ecode_and_list_args():
    assert format_error(errors.OpPrereqError("bad")) == (
        FAIL, "Failure: prerequisites not met for this operation:\nbad")
    assert format_error(errors.OpPrereqError(["bad", "wrong_input"])) == (
        FAIL, "Failure: prerequisites not met for this operation:\n"
              "error type: wrong_input, error details:\nbad")


def test_decoded_job_errors():
    code, text = format_job_error(["OpPrereqError", ["Node busy", "wrong_state"]])
    assert code == FAIL
    assert text.endswith("error type: wrong_state, error details:\nNode busy")
    assert format_job_error(["OpExecError", ["Preceding opcode failed"]]) == (
        FAIL, "Failure: command execution error:\nPreceding opcode failed")
    assert format_job_error(["NoSuchClass", ["boom"]]) == (
        FAIL, "Unhandled Ganeti error: boom")


def test_exec_error():
    assert format_error(errors.OpExecError("Could not start instance")) == (
        FAIL, "Failure: command execution error:\nCould not start instance")


def test_hooks_abort_tuples_and_decoded_lists():
    expected = (FAIL, "Failure: hooks execution failed:\n"
                      "  node: n1, script: 10-check, output: disk full\n"
                      "  node: n2, script: 20-x (no output)")
    err = errors.HooksAbort([("n1", "10-check", "disk full"), ("n2", "20-x", "")])
    assert format_error(err) == expected
    assert format_job_error(["HooksAbort", [[["n1", "10-check", "disk full"],
                                             ["n2", "20-x", ""]]]]) == expected


def test_hooks_abort_malformed_and_hooks_failure():
    code, text = format_error(errors.HooksAbort("just text"))
    assert code == FAIL and text == "Failure: hooks execution failed:\njust text"
    assert format_error(errors.HooksFailure("no hooks dir")) == (
        FAIL, "Failure: hooks general failure: no hooks dir")


def test_queue_errors():
    assert format_error(errors.JobQueueDrainError("drained")) == (
        FAIL, "Failure: the job queue is marked for drain and doesn't accept new requests")
    code, text = format_error(errors.JobQueueFull())
    assert code == FAIL and text.startswith("Failure: the job queue is full ")
    assert format_error(errors.JobLost("Job 5 not found")) == (
        FAIL, "Error checking job status: Job 5 not found")


def test_no_master():
    assert format_error(errors.NoMasterError("/run/corral/master.sock")) == (
        FAIL, "Cannot communicate with the master daemon.\n"
              "Is the process running and listening for connections?")
    assert format_error(errors.ProtocolError("bad reply")) == (
        FAIL, "Unhandled protocol error while talking to the master daemon:\nbad reply")


def test_configuration_error_exit_2():
    assert format_error(errors.ConfigurationError("bad serial")) == (
        constants.EXIT_CONFIG_ERROR, "Corrupt configuration file: bad serial\nAborting.")
    assert format_error(errors.ConfigVersionMismatch("v1"))[0] == constants.EXIT_CONFIG_ERROR


def test_parameter_errors():
    assert format_error(errors.ParameterError("vcpus")) == (
        FAIL, "Failure: unknown/wrong parameter name 'vcpus'")
    assert format_error(errors.ParameterError("Invalid boolean value 'x'")) == (
        FAIL, "Failure: invalid parameter: Invalid boolean value 'x'")
    assert format_error(errors.TypeEnforcementError("Unknown parameter 'foo'")) == (
        FAIL, "Parameter Error: Unknown parameter 'foo'")
    assert format_error(errors.UnitParseError("Invalid size 'x'")) == (
        FAIL, "Failure: invalid size or time value:\nInvalid size 'x'")
    assert format_error(errors.CommandError("Command needs a name")) == (
        FAIL, "Error: Command needs a name")
    assert format_error(errors.TagError("Tag too long")) == (
        FAIL, "Failure: invalid tag(s) given:\nTag too long")


def test_resolver_error():
    assert format_error(errors.ResolverError("nohost.example", 0, "not found")) == (
        FAIL, "Failure: can't resolve hostname 'nohost.example'")
    me = socket.gethostname()
    assert format_error(errors.ResolverError(me, 0, "x")) == (
        FAIL, "Failure: can't resolve my own hostname ('%s')" % me)
    assert format_error(errors.ResolverError("Name or service not known")) == (
        FAIL, "Failure: can't resolve hostname: Name or service not known")


def test_generic_and_foreign_errors():
    assert format_error(errors.HypervisorError("qemu died")) == (
        FAIL, "Unhandled Ganeti error: qemu died")
    assert format_error(errors.OpRetryError("later")) == (FAIL, "Unhandled Ganeti error: later")
    assert format_error(ValueError("oops")) == (FAIL, "Unhandled exception: oops")
    assert format_error(errors.GenericError("a", "b")) == (
        FAIL, "Unhandled Ganeti error: ('a', 'b')")


def test_timeout_and_interrupt():
    code, text = format_error(TimeoutError("read timed out"))
    assert code == FAIL
    assert text.startswith("Timeout while talking to the master daemon.")
    assert text.endswith("Error:\nread timed out")
    assert format_error(KeyboardInterrupt()) == (FAIL, (
        "Aborted. Note that if the operation created any jobs, they might have been"
        " submitted and will continue to run in the background."))


def test_no_trailing_newline():
    assert not format_error(errors.OpExecError("msg\n\n"))[1].endswith("\n")


@pytest.mark.parametrize("cls", [c for c in vars(errors).values()
                                 if isinstance(c, type) and issubclass(c, errors.GenericError)])
def test_every_error_class_formats(cls):
    for args in ((), ("msg",), ("msg", "wrong_input"), (["a", "b"],)):
        code, text = format_error(cls(*args))
        assert code in (constants.EXIT_FAILURE, constants.EXIT_CONFIG_ERROR)
        assert isinstance(text, str) and text
