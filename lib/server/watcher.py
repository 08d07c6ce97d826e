"""corral-watcher: keep a node's daemons and the cluster's instances as they should be.

Run from cron (``corral-watcher``, or ``--once``) or as a loop
(``--interval SECONDS``).  One run (spec/hypervisors-storage.md §11):

* every node: stop here if the watcher is paused (``gnt-cluster watcher
  pause``; the pause file is pushed to every node) unless ``--ignore-pause``;
  start the Corral daemons that belong on the node but do not run; run the
  scripts in ``<hooks dir>/watcher/``; with the cluster's
  ``maintain_node_health``, a node the master candidates consider offline
  stops its instances and DRBD devices (watcher_health.py);
* the master, in addition: make sure masterd answers (restart it once
  otherwise) and the RAPI daemon answers ``GET /version``; archive finished
  jobs older than ``--job-age`` (default 6 h); then per node group
  (watcher_groups.py): restart ERROR_down instances, re-activate disks
  after node reboots, verify disks.

Runs never overlap (a lock file); a second one started meanwhile exits at
once.  Everything done is logged to ``<log dir>/watcher.log``.
"""

import argparse
import fcntl
import logging
import os
import re
import shlex
import signal
import sys
import threading
import time
from typing import Any

from corral import constants, errors, pathutils, ssconf, watcher_groups, watcher_health
from corral.tools import daemon_util
from corral.utils import io, process
from corral.watcher_groups import InstanceInfo, NodeInfo

DEFAULT_JOB_AGE = 6 * 3600
HOOK_TIMEOUT = 300.0
ARCHIVE_TIMEOUT = 40.0
_HOOK_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def _timespec(value: str) -> int:
    from corral.client import params
    try:
        return params.parse_timespec(value)
    except errors.GenericError as err:
        raise argparse.ArgumentTypeError(str(err.args[0] if err.args else err)) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="corral-watcher", description=(
        "Restart the daemons of this node and, on the master, the instances that should"
        " run; re-activate disks after node reboots; archive old jobs. Run it from cron"
        " (every 5 minutes) or with --interval."))
    p.add_argument("-d", "--debug", action="store_true", help="log debug messages to stderr")
    p.add_argument("--once", action="store_true",
                   help="run once and exit (the default without --interval)")
    p.add_argument("--interval", type=_timespec, default=None, metavar="SECONDS",
                   help="run every SECONDS (or a timespec such as 5m) until SIGTERM")
    p.add_argument("-A", "--job-age", type=_timespec, default=DEFAULT_JOB_AGE,
                   metavar="AGE", help="archive finished jobs older than AGE (seconds or a"
                                       " timespec such as 6h; default 6h)")
    p.add_argument("--ignore-pause", action="store_true",
                   help="run even if the watcher is paused (gnt-cluster watcher pause)")
    p.add_argument("--rapi-ip", default=None,
                   help="address to check the RAPI daemon on (default 127.0.0.1)")
    p.add_argument("--no-verify-disks", dest="verify_disks", action="store_false",
                   default=True, help="do not run verify-disks on the node groups")
    p.add_argument("--no-strict", dest="strict", action="store_false", default=True,
                   help="non-strict verify-disks (skip offline and drained nodes)")
    p.add_argument("--wait-children", action="store_true", default=True,
                   help="accepted for compatibility (groups are checked in turn)")
    p.add_argument("--no-wait-children", dest="wait_children", action="store_false",
                   help="accepted for compatibility")
    p.add_argument("-g", "--node-group", dest="group", default=None,
                   help="check only this node group (name or UUID)")
    return p


# ---- every node ------------------------------------------------------------------------------

def paused_until() -> float | None:
    """The end of the current pause, or None if the watcher is not paused."""
    try:
        until = float(io.read_file(pathutils.watcher_pause_file()).strip())
    except (FileNotFoundError, ValueError):
        return None
    return until if until > time.time() else None


def ensure_daemons() -> list[str]:
    """Start the daemons that belong here but do not run; the names started."""
    started = []
    for name in daemon_util.missing_daemons():
        logging.warning("corral-%s is not running, starting it", name)
        try:
            daemon_util.start(name)
            started.append(name)
        except errors.GenericError as err:
            logging.error("Cannot start corral-%s: %s", name, err)
    return started


def run_hooks() -> None:
    """Run the executables of ``<hooks dir>/watcher/`` in name order (failures logged)."""
    directory = os.path.join(pathutils.hooks_base_dir(), "watcher")
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return
    for name in names:
        path = os.path.join(directory, name)
        if not _HOOK_NAME_RE.match(name) or not os.path.isfile(path) \
                or not os.access(path, os.X_OK):
            continue
        result = process.run_cmd([path], timeout=HOOK_TIMEOUT)
        if result.failed:
            logging.error("Watcher hook %s failed: %s", name, result.describe())
        else:
            logging.debug("Watcher hook %s succeeded", name)


def node_health() -> None:
    """The ``maintain_node_health`` duty (watcher_health.py); never fails the run."""
    try:
        watcher_health.maintain(watcher_health.ask_candidates, watcher_health.real_actions())
    except errors.GenericError as err:
        logging.error("Node health maintenance failed: %s", err)


# ---- master ------------------------------------------------------------------------------

def _master_client() -> Any:
    """A luxi client to a masterd that answers; restarts masterd once if it does not."""
    from corral import luxi
    for attempt in (1, 2):
        client = luxi.Client()
        try:
            client.query_config_values(["cluster_name"])
            return client
        except errors.GenericError as err:
            if attempt == 2:
                raise
            logging.error("Master daemon does not answer (%s), restarting it", err)
            daemon_util.restart("masterd")
    raise errors.ProgrammerError("unreachable")


def _rapi_address(opts: argparse.Namespace) -> str:
    if opts.rapi_ip:
        return opts.rapi_ip
    args = shlex.split(os.environ.get("CORRAL_RAPI_ARGS", ""))
    for flag in ("-b", "--bind"):
        if flag in args[:-1]:
            bind = args[args.index(flag) + 1]
            if bind not in ("0.0.0.0", "::"):
                return bind
    return "127.0.0.1"


def rapi_answers(address: str, port: int) -> bool:
    """True if ``GET /version`` answers on HTTPS (or plain HTTP for --no-ssl daemons)."""
    import httpx
    for scheme in ("https", "http"):
        try:
            reply = httpx.get("%s://%s:%d/version" % (scheme, address, port), verify=False,
                              timeout=10.0)
            return reply.status_code == 200
        except httpx.HTTPError:
            continue
    return False


def check_rapi(opts: argparse.Namespace) -> None:
    if daemon_util.executable("rapi") is None or not daemon_util.running_pid("rapi"):
        return
    from corral.server.rapi import default_port
    if not rapi_answers(_rapi_address(opts), default_port()):
        logging.error("RAPI daemon does not answer GET /version, restarting it")
        try:
            daemon_util.restart("rapi")
        except errors.GenericError as err:
            logging.error("Cannot restart corral-rapi: %s", err)


def _cells(row: list) -> list:
    return [cell[1] if cell[0] == constants.RS_NORMAL else None for cell in row]


def fetch_state(client: Any) -> tuple[dict, dict, dict]:
    """({group uuid: name}, {uuid: {name: InstanceInfo}}, {uuid: {name: NodeInfo}})."""
    groups = {uuid: name for uuid, name in
              (_cells(r) for r in client.query("group", ["uuid", "name"])["data"])}
    nodes: dict[str, dict] = {g: {} for g in groups}
    for name, bootid, offline, group in (_cells(r) for r in client.query(
            "node", ["name", "bootid", "offline", "group.uuid"])["data"]):
        nodes.setdefault(group, {})[name] = NodeInfo(name, bootid, bool(offline))
    instances: dict[str, dict] = {g: {} for g in groups}
    fields = ["name", "status", "pnode", "snodes", "disks_active", "admin_state",
              "pnode.group.uuid"]
    for name, status, pnode, snodes, active, admin, group in (
            _cells(r) for r in client.query("instance", fields)["data"]):
        instances.setdefault(group, {})[name] = InstanceInfo(
            name, status or "", pnode or "", list(snodes or []), bool(active),
            admin == constants.ADMINST_UP)
    return groups, instances, nodes


def master_duties(opts: argparse.Namespace) -> None:
    client = _master_client()
    check_rapi(opts)
    archived, left = client.auto_archive_jobs(float(opts.job_age), ARCHIVE_TIMEOUT)
    logging.info("Archived %s jobs, left %s", archived, left)
    groups, instances, nodes = fetch_state(client)
    runner = watcher_groups.LuxiRunner(client)
    wanted = [u for u, n in sorted(groups.items(), key=lambda kv: kv[1])
              if opts.group in (None, u, n)]
    if opts.group is not None and not wanted:
        raise errors.OpPrereqError("Node group '%s' not found" % opts.group,
                                   errors.ECODE_NOENT)
    for uuid in wanted:
        logging.debug("Checking node group %s (%s)", groups[uuid], uuid)
        watcher_groups.check_group(runner, uuid, instances.get(uuid, {}), nodes.get(uuid, {}),
                                   verify=opts.verify_disks, strict=opts.strict)
    from corral.watcher_state import merge_instance_status
    merge_instance_status(sorted(groups))


# ---- one run, and the loop ---------------------------------------------------------------

def _lock() -> int | None:
    """The run lock's fd, or None if another watcher holds it."""
    os.makedirs(pathutils.data_dir(), exist_ok=True)
    fd = os.open(os.path.join(pathutils.data_dir(), "watcher.lock"),
                 os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def run_once(opts: argparse.Namespace) -> int:
    """One watcher run; the exit code (0, or 5 off-cluster, 1 on a master failure)."""
    try:
        ssconf.SimpleStore().get_master_node()
    except errors.ConfigurationError as err:
        logging.error("This node is not part of a cluster: %s", err)
        return constants.EXIT_NOTCLUSTER
    until = paused_until()
    if until is not None and not opts.ignore_pause:
        logging.info("Watcher is paused until %s, exiting", time.ctime(until))
        return constants.EXIT_SUCCESS
    fd = _lock()
    if fd is None:
        logging.info("Another watcher run is in progress, exiting")
        return constants.EXIT_SUCCESS
    try:
        ensure_daemons()
        run_hooks()
        node_health()
        if daemon_util.is_master():
            master_duties(opts)
    except errors.GenericError as err:
        logging.error("Watcher run failed: %s", err)
        return constants.EXIT_FAILURE
    finally:
        os.close(fd)
    logging.info("Watcher run finished")
    return constants.EXIT_SUCCESS


def _setup_logging(debug: bool) -> None:
    handlers: list[logging.Handler] = []
    try:
        os.makedirs(pathutils.log_dir(), exist_ok=True)
        handlers.append(logging.FileHandler(pathutils.daemon_log_file("watcher")))
    except OSError:
        pass
    if debug or not handlers:
        handlers.append(logging.StreamHandler(sys.stderr))
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, handlers=handlers,
                        format="%(asctime)s watcher[%(process)d] %(levelname)s %(message)s",
                        force=True)
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    opts = build_parser().parse_args(argv)
    _setup_logging(opts.debug)
    if opts.interval is None or opts.once:
        return run_once(opts)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_args: stop.set())
    code = constants.EXIT_SUCCESS
    while not stop.is_set():
        code = run_once(opts)
        stop.wait(max(opts.interval, 1))  # woken at once by SIGTERM/SIGINT
    return code
