"""gnt-debug: testing and debugging commands (spec/cli.md §9)."""

import argparse
import sys
import time

from corral import constants, errors, opcodes, serializer
from corral.client import base
from corral.client.base import Command, opt


def delay(opts: argparse.Namespace, args: list[str]) -> int:
    try:
        duration = float(args[0])
    except ValueError:
        raise errors.OpPrereqError("Invalid duration '%s' (seconds, a number)" % args[0],
                                   errors.ECODE_INVAL) from None
    op = opcodes.OpTestDelay(duration=duration, on_master=opts.on_master,
                             on_nodes=opts.on_nodes or [], repeat=opts.repeat,
                             interruptible=opts.interruptible, no_locks=opts.no_locks)
    base.submit_or_send([op], opts)
    return 0


def submit_job(opts: argparse.Namespace, args: list[str]) -> int:
    client = base.get_client()
    jobs = []
    for path in args:
        with open(path) as fh:
            data = serializer.loads(fh.read())
        if not isinstance(data, list):
            raise errors.OpPrereqError("%s: expected a JSON list of opcodes" % path,
                                       errors.ECODE_INVAL)
        ops = [opcodes.from_dict(d) for d in data] * opts.op_repeat
        jobs.extend([[op.to_dict() for op in ops]] * opts.job_repeat)
    start = time.monotonic()
    if opts.each:
        results = []
        for job in jobs:
            results.append([True, client.submit_job(job)])
    else:
        results = client.submit_many_jobs(jobs)
    submitted = time.monotonic()
    ok = True
    for success, value in results:
        if success:
            print("Submitted job ID %s" % value)
        else:
            sys.stderr.write("Failed to submit job: %s\n" % (value,))
            ok = False
    if opts.timing_stats:
        for success, value in results:
            if success:
                base.wait_job(value, client, None)
        done = time.monotonic()
        print("Timing stats: submission %.3fs, execution %.3fs, total %.3fs" %
              (submitted - start, done - submitted, done - start))
    return constants.EXIT_SUCCESS if ok else constants.EXIT_FAILURE


def test_jobqueue(opts: argparse.Namespace, args: list[str]) -> int:
    """Self-test of job semantics: success with log messages, and a failing opcode."""
    client = base.get_client()
    job_id = client.submit_job([opcodes.OpTestJqueue(log_messages=["hello", "world"]).to_dict()])
    status, _st, result = base.wait_job(job_id, client, None)
    if status != constants.JOB_STATUS_SUCCESS or result != [True]:
        sys.stderr.write("Job %s: expected success, got %s %s\n" % (job_id, status, result))
        return constants.EXIT_FAILURE
    job_id = client.submit_job([opcodes.OpTestJqueue(fail=True).to_dict(),
                                opcodes.OpTestJqueue().to_dict()])
    status, opstatus, _res = base.wait_job(job_id, client, None)
    if status != constants.JOB_STATUS_ERROR or opstatus != ["error", "error"]:
        sys.stderr.write("Job %s: expected two errors, got %s %s\n" % (job_id, status, opstatus))
        return constants.EXIT_FAILURE
    print("Job queue test passed")
    return constants.EXIT_SUCCESS


COMMANDS = {
    "delay": Command(delay, "<duration>", base.SUBMIT_OPTS + [
        opt("--no-master", dest="on_master", action="store_false", default=True,
            help="Do not sleep in the master code"),
        opt("-n", dest="on_nodes", action="append", default=None,
            help="Select nodes to sleep on (repeatable)"),
        opt("-r", "--repeat", type=int, default=0, help="Number of times to repeat the sleep"),
        opt("-i", "--interruptible", action="store_true", default=False,
            help="Allows the opcode to be interrupted"),
        opt("-l", "--no-locks", dest="no_locks", action="store_true", default=False,
            help="Don't take locks while sleeping"),
    ], "Executes a TestDelay OpCode", 1, 1),
    "submit-job": Command(submit_job, "<job-file>...", [
        opt("--op-repeat", type=int, default=1, help="Repeat each opcode N times"),
        opt("--job-repeat", type=int, default=1, help="Repeat each job N times"),
        opt("--timing-stats", action="store_true", default=False, help="Show timing statistics"),
        opt("--each", action="store_true", default=False, help="Submit each job separately"),
    ], "Submits jobs built from JSON files of opcodes", 1, None),
    "test-jobqueue": Command(test_jobqueue, "", [], "Test a few aspects of the job queue"),
}


def main(argv: list[str] | None = None) -> int:
    return base.generic_main("gnt-debug", COMMANDS, argv, "Debugging commands")
