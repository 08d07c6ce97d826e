"""gnt-job: inspect and control jobs (spec/cli.md §5)."""

import argparse
import sys
import time

from corral import constants, errors
from corral.client import base, errfmt, output, params, query_fields
from corral.client.base import Command, opt

_STATUS_FILTERS = {
    "pending": (constants.JOB_STATUS_QUEUED, constants.JOB_STATUS_WAITING),
    "running": (constants.JOB_STATUS_RUNNING,),
    "error": (constants.JOB_STATUS_ERROR,),
    "finished": (constants.JOB_STATUS_CANCELED, constants.JOB_STATUS_SUCCESS,
                 constants.JOB_STATUS_ERROR),
}


def _job_ids(args: list[str]) -> list[int]:
    out = []
    for arg in args:
        try:
            out.append(int(arg))
        except ValueError:
            raise errors.OpPrereqError("Invalid job ID '%s' (must be a number)" % arg,
                                       errors.ECODE_INVAL) from None
    return out


def list_jobs(opts: argparse.Namespace, args: list[str]) -> int:
    default = list(query_fields.DEFAULT_JOB_FIELDS)
    if opts.archived and "archived" not in default:
        default.append("archived")
    fields = output.parse_field_list(opts.output, default)
    fdefs = [query_fields.lookup_field("job", f) or query_fields.unknown_field(f) for f in fields]
    known = [f for f, d in zip(fields, fdefs) if d.kind != output.QFT_UNKNOWN]
    wanted_status: set[str] = set()
    for name, statuses in _STATUS_FILTERS.items():
        if getattr(opts, "status_" + name):
            wanted_status.update(statuses)
    client = base.get_client()
    query = list(known) + ["status"]
    rows_raw = client.query_jobs(_job_ids(args), query, archived=opts.archived)
    rows = []
    for row in rows_raw:
        if row is None:
            continue
        values = dict(zip(query, row))
        if wanted_status and values["status"] not in wanted_status:
            continue
        rows.append([(constants.RS_NORMAL, values[f]) if f in values
                     else (constants.RS_UNKNOWN, None) for f in fields])
    warning = output.unknown_fields_warning(fdefs)
    if warning:
        sys.stderr.write(warning + "\n")
    for line in output.format_table(fdefs, rows, headers=not opts.no_headers,
                                    separator=opts.separator, units=opts.units,
                                    verbose=bool(opts.verbose)):
        print(line)
    return output.table_exit_code(fdefs, rows)


def list_job_fields(opts: argparse.Namespace, args: list[str]) -> int:
    fdefs = query_fields.all_fields("job") if not args else \
        [query_fields.lookup_field("job", a) or query_fields.unknown_field(a) for a in args]
    for line in output.list_fields_table(fdefs, headers=not opts.no_headers,
                                         separator=opts.separator):
        print(line)
    return 0


def _ts(value) -> str:
    if not value:
        return "N/A"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value[0])) + ".%06d" % value[1]


def show_job(opts: argparse.Namespace, args: list[str]) -> int:
    fields = ["id", "status", "received_ts", "start_ts", "end_ts", "ops", "opstatus",
              "opresult", "oplog", "opstart", "opexec", "opend"]
    client = base.get_client()
    rows = client.query_jobs(_job_ids(args), fields, archived=True)
    for job_id, row in zip(_job_ids(args), rows):
        if row is None:
            print("Job ID %s not found" % job_id)
            continue
        v = dict(zip(fields, row))
        print("- Job ID: %s" % v["id"])
        print("  Status: %s" % v["status"])
        print("  Received:         %s" % _ts(v["received_ts"]))
        print("  Processing start: %s" % _ts(v["start_ts"]))
        print("  Processing end:   %s" % _ts(v["end_ts"]))
        if v["start_ts"] and v["end_ts"]:
            total = (v["end_ts"][0] + v["end_ts"][1] / 1e6) - \
                (v["start_ts"][0] + v["start_ts"][1] / 1e6)
            print("  Total processing time: %.6f seconds" % total)
        else:
            print("  Total processing time: N/A")
        print("  Opcodes:")
        for op, st, res, log, start, execd, end in zip(v["ops"], v["opstatus"], v["opresult"],
                                                        v["oplog"], v["opstart"], v["opexec"],
                                                        v["opend"]):
            print("  - Opcode: %s" % op["OP_ID"])
            print("    Status: %s" % st)
            print("    Processing start: %s" % _ts(start))
            print("    Execution start:  %s" % _ts(execd))
            print("    Processing end:   %s" % _ts(end))
            print("    Input fields:")
            for key, value in sorted(op.items()):
                if key != "OP_ID":
                    print("      %s: %s" % (key, value))
            print("    Result: %s" % (res,))
            print("    Execution log:")
            for serial, ts, log_type, msg in log:
                print("      - Time: %s" % _ts(ts))
                print("        Content: (%s, %s, %s)" % (serial, log_type, msg))
    return 0


def watch_job(opts: argparse.Namespace, args: list[str]) -> int:
    job_id = _job_ids(args)[0]
    client = base.get_client()
    rows = client.query_jobs([job_id], ["id"])
    if not rows or rows[0] is None:
        raise errors.JobLost("Job with id %s not found" % job_id)
    print("Output from job %s follows" % job_id)
    print("-" * 27)
    try:
        base.poll_job(job_id, client)
    except errors.GenericError as err:
        _code, msg = errfmt.format_error(err)
        sys.stderr.write("Job %s failed: %s\n" % (job_id, msg))
        return constants.EXIT_FAILURE
    return constants.EXIT_SUCCESS


def wait_job(opts: argparse.Namespace, args: list[str]) -> int:
    job_id = _job_ids(args)[0]
    client = base.get_client()
    status, _opstatus, _opresult = base.wait_job(job_id, client, None)
    return constants.EXIT_SUCCESS if status == constants.JOB_STATUS_SUCCESS \
        else constants.EXIT_FAILURE


def _select_pending(client, opts: argparse.Namespace, args: list[str]) -> list[int]:
    wanted = set()
    if opts.pending:
        wanted |= {constants.JOB_STATUS_QUEUED, constants.JOB_STATUS_WAITING}
    if opts.queued:
        wanted.add(constants.JOB_STATUS_QUEUED)
    if opts.waiting:
        wanted.add(constants.JOB_STATUS_WAITING)
    if not wanted:
        if not args:
            raise errors.OpPrereqError("No job IDs given (or use --pending, --queued, --waiting)",
                                       errors.ECODE_INVAL)
        return _job_ids(args)
    if args:
        raise errors.OpPrereqError("Can't combine job IDs with a status selection",
                                   errors.ECODE_INVAL)
    rows = client.query_jobs(None, ["id", "status"])
    ids = [r[0] for r in rows if r is not None and r[1] in wanted]
    if ids and not opts.force and not base.ask_user(
            "Affect %d job(s) (%s)?" % (len(ids), ", ".join(str(i) for i in ids))):
        sys.exit(constants.EXIT_CONFIRMATION)
    return ids


def cancel_jobs(opts: argparse.Namespace, args: list[str]) -> int:
    client = base.get_client()
    code = constants.EXIT_SUCCESS
    for job_id in _select_pending(client, opts, args):
        success, msg = client.cancel_job(job_id)
        print(msg)
        if not success:
            code = constants.EXIT_FAILURE
    return code


def change_priority(opts: argparse.Namespace, args: list[str]) -> int:
    if not opts.priority:
        raise errors.OpPrereqError("Missing --priority (low, normal or high)", errors.ECODE_INVAL)
    prio = params.parse_priority(opts.priority)
    client = base.get_client()
    code = constants.EXIT_SUCCESS
    for job_id in _select_pending(client, opts, args):
        success, msg = client.change_job_priority(job_id, prio)
        print(msg)
        if not success:
            code = constants.EXIT_FAILURE
    return code


def archive_jobs(opts: argparse.Namespace, args: list[str]) -> int:
    client = base.get_client()
    code = constants.EXIT_SUCCESS
    for job_id in _job_ids(args):
        if not client.archive_job(job_id):
            sys.stderr.write("Failed to archive job %s\n" % job_id)
            code = constants.EXIT_FAILURE
    return code


def autoarchive(opts: argparse.Namespace, args: list[str]) -> int:
    age = -1 if args[0] == "all" else params.parse_timespec(args[0])
    archived, left = base.get_client().auto_archive_jobs(age)
    print("Archived %s jobs, %s unchecked left" % (archived, left))
    return 0


_SELECT_OPTS = [
    opt("--pending", action="store_true", default=False, help="Select pending jobs"),
    opt("--queued", action="store_true", default=False, help="Select queued jobs"),
    opt("--waiting", action="store_true", default=False, help="Select waiting jobs"),
    base.FORCE_OPT,
]

COMMANDS = {
    "list": Command(list_jobs, "[<job-id>...]", base.LIST_OPTS + [
        opt("--archived", action="store_true", default=False, help="Include archived jobs"),
        opt("--pending", dest="status_pending", action="store_true", default=False,
            help="Only pending jobs"),
        opt("--running", dest="status_running", action="store_true", default=False,
            help="Only running jobs"),
        opt("--error", dest="status_error", action="store_true", default=False,
            help="Only failed jobs"),
        opt("--finished", dest="status_finished", action="store_true", default=False,
            help="Only finished jobs"),
    ], "Lists the jobs and their status", 0, None),
    "list-fields": Command(list_job_fields, "[<field>...]", [base.NOHDR_OPT, base.SEP_OPT],
                           "Lists all available fields for jobs", 0, None),
    "info": Command(show_job, "<job-id>...", [], "Show detailed information about jobs", 1,
                    None, aliases=["show"]),
    "watch": Command(watch_job, "<job-id>", [], "Follows a job and prints its output", 1, 1),
    "wait": Command(wait_job, "<job-id>", [], "Wait for a job to finish", 1, 1),
    "cancel": Command(cancel_jobs, "{<job-id>... | --pending | --queued | --waiting}",
                      _SELECT_OPTS, "Cancel jobs", 0, None),
    "change-priority": Command(change_priority, "{<job-id>... | --pending | --queued |"
                               " --waiting}", _SELECT_OPTS + [base.PRIORITY_OPT],
                               "Change the priority of pending jobs", 0, None),
    "archive": Command(archive_jobs, "<job-id>...", [], "Archive finished jobs", 1, None),
    "autoarchive": Command(autoarchive, "<age>|all", [],
                           "Archive finished jobs older than the given age", 1, 1),
}


def main(argv: list[str] | None = None) -> int:
    return base.generic_main("gnt-job", COMMANDS, argv, "Job queue inspection and control")
