"""corral-daemon-util: start, stop and check the Corral daemons of this node.

Which daemons belong here: corral-noded on every node; corral-masterd and
corral-rapi where ssconf's master_node is this node (netutils.get_hostname).
A daemon whose executable is not on PATH is left out (not installed here).
Extra options for a daemon come from $CORRAL_<NAME>_ARGS (e.g.
CORRAL_NODED_ARGS="-b 10.0.0.1"), like Ganeti's /etc/default/ganeti.

A daemon "runs" when its pid file names a live process that holds the
file's lock.  Every command is idempotent: starting a running daemon and
stopping a stopped one succeed without doing anything.
"""

import argparse
import fcntl
import os
import shlex
import shutil
import signal
import sys

from corral import errors, netutils, pathutils, ssconf
from corral.utils import process

# In start order; stopped in reverse.
DAEMONS = ("noded", "masterd", "rapi")
MASTER_DAEMONS = ("masterd", "rapi")
STOP_TIMEOUT = 60.0
START_TIMEOUT = 120.0


def executable(name: str) -> str | None:
    """Path of corral-<name> on PATH, or None."""
    return shutil.which("corral-" + name)


def is_master() -> bool:
    """True if ssconf names this node as master (False off-cluster)."""
    try:
        return ssconf.SimpleStore().get_master_node() == netutils.get_hostname()
    except errors.ConfigurationError:
        return False


def wanted_daemons() -> list[str]:
    """The daemons that should run on this node, in start order."""
    master = is_master()
    return [d for d in DAEMONS
            if (d not in MASTER_DAEMONS or master) and executable(d) is not None]


def running_pid(name: str) -> int:
    """PID of the running daemon ``name``, or 0.

    The pid file's lock (flock, held by the daemon) is what counts, so a
    stale pid file or a recycled pid never looks like a running daemon.
    """
    path = pathutils.pid_file(name)
    pid = process.read_pid_file(path)
    if pid <= 0 or not process.is_process_alive(pid):
        return 0
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return 0
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return pid  # locked: the daemon holds it
    finally:
        os.close(fd)
    return 0


def start(name: str) -> None:
    """Start ``name`` unless it runs; returns once it serves (errors.OpExecError if not)."""
    if running_pid(name):
        return
    path = executable(name)
    if path is None:
        raise errors.OpExecError("corral-%s is not installed (not on PATH)" % name)
    argv = [path] + shlex.split(os.environ.get("CORRAL_%s_ARGS" % name.upper(), ""))
    # The daemon's starting process exits only once the daemon serves (or failed).
    result = process.run_cmd(argv, timeout=START_TIMEOUT)
    if result.timed_out:
        raise errors.OpExecError("corral-%s did not report ready within %d seconds"
                                 % (name, START_TIMEOUT))
    if result.failed:
        raise errors.OpExecError("Starting corral-%s failed: %s"
                                 % (name, result.output.strip() or result.fail_reason))


def stop(name: str) -> None:
    """Stop ``name`` if it runs and wait until its process is gone (pidfd, no polling)."""
    pid = running_pid(name)
    if not pid:
        return
    if not process.kill_and_wait(pid, timeout=STOP_TIMEOUT, sig=signal.SIGTERM):
        raise errors.OpExecError("corral-%s (pid %d) did not stop" % (name, pid))


def restart(name: str) -> None:
    stop(name)
    start(name)


def start_all() -> None:
    for name in wanted_daemons():
        start(name)


def stop_all() -> None:
    """Stop every Corral daemon running here, master role or not."""
    for name in reversed(DAEMONS):
        stop(name)


def missing_daemons() -> list[str]:
    """Daemons that should run here but do not."""
    return [name for name in wanted_daemons() if not running_pid(name)]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="corral-daemon-util",
                                     description="Start, stop and check Corral daemons")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("start-all", help="start every daemon that belongs on this node")
    sub.add_parser("stop-all", help="stop every Corral daemon and wait until gone")
    sub.add_parser("check", help="exit 0 if every daemon that belongs here runs")
    for cmd in ("start", "stop", "restart"):
        one = sub.add_parser(cmd, help="%s one daemon" % cmd)
        one.add_argument("name", choices=DAEMONS)
    return parser


def build_parser():
    return _parser()


def main(argv: list[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    try:
        if options.command == "check":
            missing = missing_daemons()
            if missing:
                print("Not running: %s" % " ".join("corral-" + n for n in missing))
                return 1
            return 0
        if options.command == "start-all":
            start_all()
        elif options.command == "stop-all":
            stop_all()
        else:
            {"start": start, "stop": stop, "restart": restart}[options.command](options.name)
    except errors.GenericError as err:
        msg = err.args[0] if err.args else str(err)
        sys.stderr.write("corral-daemon-util: %s\n" % msg)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
