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


def test_allocator(opts: argparse.Namespace, args: list[str]) -> int:
    """OP_TEST_ALLOCATOR: print an allocator's input (--dir in) or its answer (--dir out)."""
    from corral.client import params
    disks = []
    for idx, value in enumerate(v for v in opts.disks.split(",") if v):
        try:
            disks.append({"size": params.parse_unit(value), "mode": constants.DISK_RDWR})
        except errors.GenericError as err:
            raise errors.OpPrereqError("Invalid disk size for disk %d: %s" % (idx, err),
                                       errors.ECODE_INVAL) from None
    nics = []
    for value in (v for v in opts.nics.split(",") if v):
        row = (value.split("/") + [None, None, None])[:3]
        nics.append({"mac": row[0], "ip": row[1] or None, "bridge": row[2] or None})
    op = opcodes.OpTestAllocator(
        mode=opts.mode, name=args[0], instances=list(args), memory=params.parse_unit(
            opts.memory), disks=disks, disk_template=opts.disk_template, nics=nics,
        os=opts.os, vcpus=opts.vcpus, tags=[t for t in (opts.tags or "").split(",") if t],
        direction=opts.direction, iallocator=opts.iallocator, evac_mode=opts.evac_mode,
        target_groups=opts.target_groups or [], spindle_use=opts.spindle_use,
        count=opts.count)
    result = base.submit_or_send([op], opts)
    if result is not None:
        print(result[0])
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
    "iallocator": Command(test_allocator, "<instance>...", [
        base.DRY_RUN_OPT, base.PRIORITY_OPT,
        opt("--dir", dest="direction", default="in", choices=["in", "out"],
            help="Show the allocator input (in, nothing is run) or the allocator's answer"
                 " (out)"),
        opt("-I", "--iallocator", default=None,
            help="Allocator to run with --dir out (default: the cluster's)"),
        opt("-m", "--mode", default="relocate",
            choices=["allocate", "relocate", "node-evacuate", "change-group",
                     "multi-allocate"], help="Request type"),
        opt("--memory", default="128", help="Memory size for the instance (MiB)"),
        opt("--disks", default="4096,4096", help="Comma separated list of disk sizes (MiB)"),
        opt("-t", "--disk-template", default=None, help="Disk template of the instance"),
        opt("--nics", default="00:11:22:33:44:55",
            help="Comma separated list of nics, each mac/ip/bridge (missing parts: none)"),
        opt("-o", "--os-type", dest="os", default=None, help="OS of the instance"),
        opt("-p", "--vcpus", type=int, default=1, help="Number of VCPUs of the instance"),
        opt("--tags", default=None, help="Comma separated list of tags"),
        opt("--evac-mode", default="all", choices=["primary-only", "secondary-only", "all"],
            help="Node evacuation mode"),
        opt("--target-groups", action="append", default=None,
            help="Target group for change-group (repeatable)"),
        opt("--spindle-use", type=int, default=1, help="How many spindles to use"),
        opt("--count", type=int, default=2, help="How many instances to allocate"),
    ], "Executes a TestAllocator OpCode", 1, None, aliases=["allocator"]),
}


def main(argv: list[str] | None = None) -> int:
    return base.generic_main("gnt-debug", COMMANDS, argv, "Debugging commands")
