"""The frame every gnt-* command shares: options, command tables, job submission.

A tool is a table of ``Command`` entries (name -> function, positional args,
options, help); ``generic_main`` parses, runs, and maps any error to its
message and exit code through errfmt.format_error (the one place that does).
Job-submitting commands go through ``submit_or_send``: with ``--submit`` print
``JobID: N`` on stderr; otherwise follow the job, printing its log lines as
``<ctime> <message>`` on stdout (spec/cli.md §1).
"""

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from corral import constants, errors, luxi, opcodes, pathutils
from corral.client import errfmt, output, params


@dataclass
class Command:
    func: Callable[[argparse.Namespace, list[str]], int]
    args: str  # usage text of the positional arguments, e.g. "<instance>"
    options: list["Opt"]
    help: str
    min_args: int = 0
    max_args: int | None = 0
    aliases: list[str] = field(default_factory=list)


@dataclass
class Opt:
    flags: tuple[str, ...]
    kwargs: dict


def opt(*flags: str, **kwargs: Any) -> Opt:
    return Opt(flags, kwargs)


# ---- common options (spec/cli.md §1) --------------------------------------------------

DEBUG_OPT = opt("-d", "--debug", action="count", default=0, help="Turn debugging on")
SUBMIT_OPT = opt("--submit", action="store_true", default=False,
                 help="Submit the job and return the job ID, but don't wait for it to finish")
PRINT_JOBID_OPT = opt("--print-jobid", action="store_true", default=False,
                      help="Additionally print the job id as the first line on stdout")
DRY_RUN_OPT = opt("--dry-run", action="store_true", default=False,
                  help="Only check prerequisites, do not execute")
PRIORITY_OPT = opt("--priority", default=None, choices=sorted(constants.PRIORITY_NAMES),
                   help="Priority for opcode processing")
REASON_OPT = opt("--reason", default=None, help="The reason for executing the command")
FORCE_OPT = opt("-f", "--force", action="store_true", default=False,
                help="Force the operation")
YES_DOIT_OPT = opt("--yes-do-it", "--ya-rly", dest="yes_do_it", action="store_true",
                   default=False, help="Really do it (dangerous operation)")
NOHDR_OPT = opt("--no-headers", action="store_true", default=False,
                help="Don't display column headers")
SEP_OPT = opt("--separator", default=None, help="Separator between output fields")
UNITS_OPT = opt("--units", default=None, choices=list(output.UNITS),
                help="Units for unit fields (h=human, m=MiB, g=GiB, t=TiB)")
FIELDS_OPT = opt("-o", "--output", dest="output", default=None,
                 help="Comma separated list of output fields (prefix with + to add to"
                      " the default list)")
VERBOSE_OPT = opt("-v", "--verbose", action="count", default=0, help="Increase verbosity")
FILTER_OPT = opt("-F", "--filter", dest="force_filter", action="store_true", default=False,
                 help="Treat the argument as a filter")
TAG_SRC_OPT = opt("--from", dest="tags_source", default=None,
                  help="File with tag names ('-' for stdin)")

SUBMIT_OPTS = [DRY_RUN_OPT, PRIORITY_OPT, REASON_OPT, SUBMIT_OPT, PRINT_JOBID_OPT]
LIST_OPTS = [NOHDR_OPT, SEP_OPT, UNITS_OPT, FIELDS_OPT, VERBOSE_OPT, FILTER_OPT]


# ---- parsing ------------------------------------------------------------------------

def _build_parser(prog: str, commands: dict[str, Command], description: str
                  ) -> tuple[argparse.ArgumentParser, dict[str, str]]:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--version", action="version",
                        version="%s (corral) %s" % (prog, constants.RELEASE_VERSION))
    subs = parser.add_subparsers(dest="command", metavar="<command>")
    names: dict[str, str] = {}
    for name, cmd in sorted(commands.items()):
        sub = subs.add_parser(name, aliases=cmd.aliases, help=cmd.help, description=cmd.help,
                              usage="%s %s [options] %s" % (prog, name, cmd.args))
        names[name] = name
        for alias in cmd.aliases:
            names[alias] = name
        seen: set[str] = set()
        for o in cmd.options + [DEBUG_OPT]:
            if o.flags[0] in seen:
                continue
            seen.add(o.flags[0])
            sub.add_argument(*o.flags, **o.kwargs)
        sub.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    return parser, names


def generic_main(prog: str, commands: dict[str, Command], argv: list[str] | None = None,
                 description: str = "", env_override: dict[str, str] | None = None) -> int:
    """Parse ``argv``, run the command, turn errors into messages and exit codes."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, names = _build_parser(prog, commands, description)
    if env_override and argv and names.get(argv[0]) in env_override:
        import shlex
        extra = os.environ.get(env_override[names[argv[0]]], "")
        argv = argv[:1] + shlex.split(extra) + argv[1:]
    if not argv:
        parser.print_help()
        return constants.EXIT_FAILURE
    opts = parser.parse_args(argv)
    cmd = commands[names[opts.command]]
    args = opts.args
    if len(args) < cmd.min_args or (cmd.max_args is not None and len(args) > cmd.max_args):
        sys.stderr.write("Error: wrong number of arguments\nUsage: %s %s [options] %s\n" %
                         (prog, opts.command, cmd.args))
        return constants.EXIT_FAILURE
    _log_command(prog, argv)
    try:
        return cmd.func(opts, args) or 0
    except BrokenPipeError:
        # Output cut short by the reader (e.g. `| head`): not an error of ours.
        sys.stderr.close()
        return constants.EXIT_SUCCESS
    except KeyboardInterrupt as err:
        code, msg = errfmt.format_error(err)
    except Exception as err:  # every error becomes a message and an exit code, never a trace
        if isinstance(err, OSError):
            err = errors.OpExecError(str(err))
        code, msg = errfmt.format_error(err)
        if getattr(opts, "debug", 0) or not isinstance(err, errors.GenericError):
            import traceback
            traceback.print_exc(file=_debug_stream(opts))
    sys.stdout.flush()
    sys.stderr.write(msg.rstrip("\n") + "\n")
    return code


def _debug_stream(opts: argparse.Namespace):
    """Tracebacks go to stderr with --debug, else only to commands.log (for bug reports)."""
    if getattr(opts, "debug", 0):
        return sys.stderr
    try:
        return open(pathutils.commands_log_file(), "a")
    except OSError:
        import io
        return io.StringIO()


def _log_command(prog: str, argv: list[str]) -> None:
    """Append the command to commands.log (best effort: a CLI must work read-only too)."""
    try:
        with open(pathutils.commands_log_file(), "a") as fh:
            fh.write("%s pid=%d %s %s\n" % (time.strftime("%Y-%m-%d %H:%M:%S"), os.getpid(),
                                           prog, " ".join(argv)))
    except OSError:
        pass


# ---- opcodes and jobs -----------------------------------------------------------------

def set_generic_opcode_opts(ops: list[opcodes.OpCode], opts: argparse.Namespace) -> None:
    """Copy dry-run, priority and reason from the command line into every opcode."""
    for op in ops:
        if getattr(opts, "dry_run", False):
            op.dry_run = True
        if getattr(opts, "priority", None):
            op.priority = params.parse_priority(opts.priority)
        op.reason = list(op.reason or [])
        op.reason.append(["gnt:client:%s" % os.path.basename(sys.argv[0] or "gnt"),
                          " ".join(sys.argv[1:2]), time.time_ns()])
        if getattr(opts, "reason", None):
            op.reason.append(["gnt:user", opts.reason, time.time_ns()])


def get_client() -> luxi.Client:
    return luxi.Client()


def submit_opcodes(ops: list[opcodes.OpCode], opts: argparse.Namespace | None = None,
                   client: luxi.Client | None = None) -> int:
    if opts is not None:
        set_generic_opcode_opts(ops, opts)
    for op in ops:
        op.validate()
    client = client or get_client()
    return client.submit_job([op.to_dict() for op in ops])


def submit_or_send(ops: list[opcodes.OpCode], opts: argparse.Namespace,
                   client: luxi.Client | None = None,
                   feedback: Callable[[str], None] | None = None) -> list | None:
    """Submit ``ops`` as one job; with --submit print ``JobID: N`` and return None.

    Otherwise wait for the job, stream its log, and return the opcode results
    (raising the job's error if it failed).
    """
    client = client or get_client()
    job_id = submit_opcodes(ops, opts, client)
    if getattr(opts, "print_jobid", False):
        sys.stdout.write("%d\n" % job_id)
        sys.stdout.flush()
    if getattr(opts, "submit", False):
        sys.stderr.write("JobID: %d\n" % job_id)
        return None
    return poll_job(job_id, client, feedback)


def format_log_message(entry: list) -> str:
    _serial, ts, _log_type, msg = entry
    when = time.ctime(ts[0] + ts[1] / 1e6) if isinstance(ts, list) else time.ctime(ts)
    if not isinstance(msg, str):
        msg = str(msg)
    return "%s %s" % (when, msg)


def _default_feedback(entry: list) -> None:
    sys.stdout.write(format_log_message(entry) + "\n")
    sys.stdout.flush()


def wait_job(job_id: int, client: luxi.Client, on_log: Callable[[list], None] | None,
             on_status: Callable[[str], None] | None = None) -> tuple[str, list, list]:
    """Follow a job until it is final; returns (status, opstatus, opresult).

    ``on_status(status)`` is called when a whole long poll passed without any
    change (Ganeti's "not changed" report): the job really sits queued or
    waiting for locks, and anything said then comes before its next log line.
    """
    prev_info = None
    prev_serial = None
    while True:
        change = client.wait_for_job_change(job_id, ["status"], prev_info, prev_serial)
        if change is None:
            if on_status is not None and prev_info is not None:
                on_status(prev_info[0])
            continue
        for entry in change["log_entries"]:
            if on_log is not None:
                on_log(entry)
            prev_serial = max(prev_serial or 0, entry[0])
        status = change["job_info"][0]
        prev_info = change["job_info"]
        if status in constants.JOBS_FINALIZED:
            break
    rows = client.query_jobs([job_id], ["status", "opstatus", "opresult"])
    if not rows or rows[0] is None:
        raise errors.JobLost("Job with id %s lost" % job_id)
    return rows[0][0], rows[0][1], rows[0][2]


def poll_job(job_id: int, client: luxi.Client, feedback: Callable[[str], None] | None = None
             ) -> list:
    """Follow a job as Ganeti's CLI does; return results or raise the job's error.

    "Job N is waiting in queue" / "... is trying to acquire all necessary
    locks" go to stderr once each, only when the job stayed in that state for
    a whole long poll (not for a job that takes its locks at once), so never
    after log lines of the same wait.
    """
    notified = set()

    def on_status(status: str) -> None:
        if status == constants.JOB_STATUS_QUEUED and "queued" not in notified:
            sys.stderr.write("Job %s is waiting in queue\n" % job_id)
            notified.add("queued")
        elif status == constants.JOB_STATUS_WAITING and "waiting" not in notified:
            sys.stderr.write("Job %s is trying to acquire all necessary locks\n" % job_id)
            notified.add("waiting")

    on_log = (lambda e: feedback(format_log_message(e))) if feedback else _default_feedback
    status, opstatus, opresult = wait_job(job_id, client, on_log, on_status)
    if status == constants.JOB_STATUS_SUCCESS:
        return opresult
    if status in (constants.JOB_STATUS_CANCELING, constants.JOB_STATUS_CANCELED):
        raise errors.OpExecError("Job was canceled")
    for st, res in zip(opstatus, opresult):
        if st == constants.OP_STATUS_ERROR:
            if isinstance(res, list) and len(res) == 2 and isinstance(res[0], str):
                raise errors.decode_exception(res)
            raise errors.OpExecError(str(res))
    raise errors.OpExecError("Job %s ended in status %s" % (job_id, status))


def wait_for_jobs(results: list[list], client: luxi.Client) -> bool:
    """Follow jobs submitted by another job (``{"jobs": [...]}``); True if all succeeded."""
    ok = True
    for success, payload in results:
        if not success:
            _code, msg = errfmt.format_job_error(payload)
            sys.stderr.write(msg + "\n")
            ok = False
            continue
        try:
            result = poll_job(payload, client)
            if result and result[-1] is False:
                ok = False
        except errors.GenericError as err:
            _code, msg = errfmt.format_error(err)
            sys.stderr.write(msg + "\n")
            ok = False
    return ok


def run_evacuation(op: opcodes.OpCode, opts: argparse.Namespace, client: luxi.Client) -> int:
    """Submit a node/group evacuation, follow the jobs it creates, report as Ganeti."""
    result = submit_or_send([op], opts, client)
    if result is None:
        return constants.EXIT_SUCCESS
    jobs = (result[0] or {}).get("jobs", [])  # none with --dry-run
    bad = sum(1 for job in jobs if not wait_for_jobs([job], client))
    if bad == 0:
        print("All instances evacuated successfully.")
        return constants.EXIT_SUCCESS
    print("There were %s errors during the evacuation." % bad)
    return constants.EXIT_FAILURE


# ---- listing ----------------------------------------------------------------------------

def generic_list(resource: str, opts: argparse.Namespace, names: list[str],
                 default_fields: list[str], client: luxi.Client | None = None) -> int:
    """Query ``resource`` and print it in the Ganeti list format (spec/cli.md §1)."""
    from corral.client import query_fields
    fields = output.parse_field_list(opts.output, default_fields)
    client = client or get_client()
    result = client.query(resource, fields, names)
    fdefs = [query_fields.lookup_field(resource, f) or
             output.FieldDef(f, f, output.QFT_UNKNOWN, "Unknown field") for f in fields]
    rows = [[tuple(cell) for cell in row] for row in result["data"]]
    warning = output.unknown_fields_warning(fdefs)
    if warning:
        sys.stderr.write(warning + "\n")
    for line in output.format_table(fdefs, rows, headers=not opts.no_headers,
                                    separator=opts.separator, units=opts.units,
                                    verbose=bool(opts.verbose)):
        sys.stdout.write(line + "\n")
    return output.table_exit_code(fdefs, rows)


def list_fields(resource: str, opts: argparse.Namespace, names: list[str]) -> int:
    from corral.client import query_fields
    client = get_client()
    result = client.query_fields(resource, names or None)
    fdefs = [query_fields.lookup_field(resource, f["name"]) or
             output.FieldDef(f["name"], f["title"], f["kind"], f["doc"])
             for f in result["fields"]]
    for line in output.list_fields_table(fdefs, headers=not opts.no_headers,
                                         separator=opts.separator):
        sys.stdout.write(line + "\n")
    return constants.EXIT_SUCCESS


def ask_user(question: str) -> bool:
    """Ask a y/n question on the terminal; anything but 'y' (or no terminal) means no."""
    if not sys.stdin.isatty():
        return False
    sys.stdout.write(question + " y/[n]: ")
    sys.stdout.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


# ---- tags (shared by gnt-cluster/node/instance/group) ---------------------------------

def _tags_from(opts: argparse.Namespace, args: list[str]) -> list[str]:
    tags = list(args)
    if getattr(opts, "tags_source", None):
        src = sys.stdin if opts.tags_source == "-" else open(opts.tags_source)
        with src:
            tags.extend(line.strip() for line in src if line.strip())
    if not tags:
        raise errors.OpPrereqError("No tags to add/remove", errors.ECODE_INVAL)
    return tags


def list_tags(kind: str, name: str | None, opts: argparse.Namespace) -> int:
    op = opcodes.OpTagsGet(kind=kind, name=name)
    result = submit_or_send([op], opts)
    if result is not None:
        for tag in sorted(result[0]):
            print(tag)
    return 0


def add_tags(kind: str, name: str | None, opts: argparse.Namespace, tags: list[str]) -> int:
    submit_or_send([opcodes.OpTagsSet(kind=kind, name=name, tags=_tags_from(opts, tags))], opts)
    return 0


def remove_tags(kind: str, name: str | None, opts: argparse.Namespace, tags: list[str]) -> int:
    submit_or_send([opcodes.OpTagsDel(kind=kind, name=name, tags=_tags_from(opts, tags))], opts)
    return 0
