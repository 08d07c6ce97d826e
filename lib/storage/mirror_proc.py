"""Processes of the ``mirror`` disks (storage/mirror.py): start, find, stop, talk to.

The daemons a mirror disk needs outlive the node daemon that started them:
each runs in its own session, is found again through its pid file (checked
against /proc/PID/cmdline, so a reused pid is never taken for ours), and is
stopped by SIGTERM, a wait on a pidfd, then SIGKILL.  Readiness is an event
(socat's "listening on" log line seen through inotify, qemu-storage-daemon's
parent exiting after --daemonize), never a timer.
"""

import json
import logging
import os
import re
import select
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Callable

from inotify_simple import INotify, flags

from corral.storage import base
from corral.utils import io, process

TCP_RETRIES2_FILE = "/proc/sys/net/ipv4/tcp_retries2"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
LOG_ROTATE_BYTES = 1024 * 1024
_PROGRESS = re.compile(r"\((\d+(?:\.\d+)?)/100%\)")


def parse_progress(text: str) -> float | None:
    """The last percentage in qemu-img's ``-p`` output (``    (12.50/100%)``), or None."""
    found = _PROGRESS.findall(text)
    return float(found[-1]) if found else None


def limit_tcp_retries2(limit: int, path: str = TCP_RETRIES2_FILE) -> int | None:
    """Lower this network namespace's net.ipv4.tcp_retries2 to ``limit``; the old value
    if it was changed, None if it was low enough already.

    A peer that vanishes without a reset is only given up when TCP's
    retransmissions run out (default 15: about 15 minutes of a frozen guest).
    The setting is per namespace and affects every TCP connection in it, which
    is why it is only ever lowered.  Failing to write it is logged, not fatal.
    """
    try:
        current = int(io.read_file(path).strip())
    except (OSError, ValueError) as err:
        logging.warning("Cannot read %s: %s", path, err)
        return None
    if current <= limit:
        return None
    try:
        with open(path, "w") as fh:
            fh.write("%d\n" % limit)
    except OSError as err:
        logging.warning("Cannot lower %s from %d to %d (a dead mirror peer may block "
                        "guest I/O for minutes): %s", path, current, limit, err)
        return None
    logging.info("Lowered net.ipv4.tcp_retries2 from %d to %d for mirror disks", current, limit)
    return current


@dataclass(frozen=True)
class Proc:
    name: str            # "qsd", "listen", "client"
    pid_file: str
    log_file: str
    sockets: tuple[str, ...]
    group: bool          # socat: kill its whole process group (the forked children)


def live_pid(pid_file: str, token: str) -> int:
    """The pid in ``pid_file`` if that process is alive and has ``token`` on its command
    line (it is ours, not a reused pid); else 0.  Reaps it if it is our dead child."""
    pid = process.read_pid_file(pid_file)
    if pid <= 0:
        return 0
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    if not process.is_process_alive(pid):
        return 0
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as fh:
            cmdline = fh.read()
    except OSError:
        return 0
    return pid if token.encode() in cmdline else 0


def stop_proc(proc: Proc, token: str, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM (socat: its whole group), wait for the exit (pidfd), then SIGKILL; remove
    the pid file and sockets.  Idempotent; BlockDeviceError if it survives SIGKILL."""
    pid = live_pid(proc.pid_file, token)
    if pid:
        group = proc.group and _pgid(pid) == pid
        _signal(pid, signal.SIGTERM, group)
        if not _wait_exit(pid, timeout):
            _signal(pid, signal.SIGKILL, group)
            if not _wait_exit(pid, 5.0):
                base.raise_bdev("Mirror %s process %d does not die", proc.name, pid)
    for path in (proc.pid_file,) + proc.sockets:
        io.remove_file(path)


def _pgid(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return -1


def _signal(pid: int, sig: int, group: bool) -> None:
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_exit(pid: int, timeout: float) -> bool:
    """Block on a pidfd until ``pid`` exits (reaping it if it is our child)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    return not process.is_process_alive(pid)


def _open_log(path: str) -> int:
    try:
        if os.path.getsize(path) > LOG_ROTATE_BYTES:
            os.replace(path, path + ".old")
    except FileNotFoundError:
        pass
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)


def _log_tail(path: str, offset: int, lines: int = 8) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return " | ".join(text.strip().splitlines()[-lines:])


def _watch_file(path: str) -> INotify:
    """An inotify descriptor that becomes readable when ``path`` is written."""
    try:
        watch = INotify(nonblocking=True)
    except OSError as err:
        base.raise_bdev("Cannot create an inotify instance: %s", err)
    try:
        watch.add_watch(path, flags.MODIFY)
    except OSError as err:
        watch.close()
        base.raise_bdev("Cannot watch %s: %s", path, err)
    return watch


def spawn_socat(argv: list[str], proc: Proc, timeout: float = START_TIMEOUT) -> int:
    """Start socat in its own session, stderr appended to its log, and return its pid once
    it logs that it listens.  Woken by inotify on the log and a pidfd on socat, never by a
    timer.  On failure nothing is left running and the log's words are in the error."""
    log_fd = _open_log(proc.log_file)
    offset = os.fstat(log_fd).st_size
    watch = _watch_file(proc.log_file)
    try:
        with open(os.devnull, "rb") as null:
            pid = os.posix_spawnp(argv[0], argv, dict(os.environ), setsid=True, file_actions=[
                (os.POSIX_SPAWN_DUP2, null.fileno(), 0), (os.POSIX_SPAWN_DUP2, null.fileno(), 1),
                (os.POSIX_SPAWN_DUP2, log_fd, 2)])
    except OSError as err:
        watch.close()
        os.close(log_fd)
        base.raise_bdev("Cannot run %s: %s", argv[0], err)
    os.close(log_fd)
    io.write_file_atomic(proc.pid_file, "%d\n" % pid, mode=0o600, fsync=False)
    try:
        _wait_listening(pid, proc, offset, watch, timeout)
    except BaseException:
        _signal(pid, signal.SIGKILL, True)
        _wait_exit(pid, 5.0)
        io.remove_file(proc.pid_file)
        raise
    finally:
        watch.close()
    return pid


def _wait_listening(pid: int, proc: Proc, offset: int, watch: INotify,
                    timeout: float) -> None:
    ready = ("socat[%d] N listening on" % pid).encode()
    pidfd = os.pidfd_open(pid)
    deadline = time.monotonic() + timeout
    try:
        with open(proc.log_file, "rb") as log:
            log.seek(offset)
            seen = b""
            while True:
                seen += log.read()
                if ready in seen:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    base.raise_bdev("Mirror %s (socat) did not start listening within %.0f s: %s",
                                    proc.name, timeout, _log_tail(proc.log_file, offset))
                readable, _, _ = select.select([watch.fileno(), pidfd], [], [], left)
                if pidfd in readable:
                    seen += log.read()
                    if ready not in seen:
                        base.raise_bdev("Mirror %s (socat) exited at start: %s", proc.name,
                                        _log_tail(proc.log_file, offset))
                watch.read(timeout=0)
    finally:
        os.close(pidfd)


def launch_qsd(argv: list[str], proc: Proc, timeout: float = START_TIMEOUT) -> int:
    """Run the daemonizing qemu-storage-daemon; its parent exits once the export is set up.

    Its start-up output goes to its log.  Returns the daemon's pid (from its pid
    file); BlockDeviceError with its own words if it fails.
    """
    log_fd = _open_log(proc.log_file)
    try:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd,
                                 start_new_session=True, close_fds=True)
    except OSError as err:
        os.close(log_fd)
        base.raise_bdev("Cannot run %s: %s", argv[0], err)
    offset = os.fstat(log_fd).st_size
    os.close(log_fd)
    try:
        rc = child.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        rc = None
    pid = process.read_pid_file(proc.pid_file)
    if rc != 0 or not pid:
        if pid:
            _signal(pid, signal.SIGKILL, False)
            _wait_exit(pid, 5.0)
        for path in (proc.pid_file,) + proc.sockets:
            io.remove_file(path)
        base.raise_bdev("qemu-storage-daemon failed to start (%s): %s",
                        "timed out" if rc is None else "exit code %d" % rc,
                        _log_tail(proc.log_file, max(offset - 4096, 0)))
    return pid


class QmpSession:
    """A QMP monitor connection (qemu-storage-daemon's): commands and awaited events.

    Used as a context manager; every failure is a BlockDeviceError naming the
    command.  Events that arrive while waiting for a reply are kept for
    :meth:`wait_event`, so none is missed between a command and its event.
    """

    def __init__(self, sock_path: str, timeout: float = 10.0) -> None:
        self.path = sock_path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.events: list[dict[str, Any]] = []
        try:
            self.sock.connect(sock_path)
            self.fh = self.sock.makefile("rwb")
            self._read(greeting=True)
        except (OSError, ValueError) as err:
            self.sock.close()
            base.raise_bdev("Cannot open QMP monitor %s: %s", sock_path, err)
        self.cmd("qmp_capabilities")

    def __enter__(self) -> "QmpSession":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.sock.close()

    def cmd(self, command: str, **arguments: Any) -> Any:
        """Run ``command``; its ``return`` value."""
        try:
            self.fh.write(json.dumps({"execute": command, "arguments": arguments}).encode()
                          + b"\n")
            self.fh.flush()
            return self._read()
        except (OSError, ValueError) as err:
            base.raise_bdev("QMP %s on %s failed: %s", command, self.path, err)

    def wait_event(self, name: str) -> dict[str, Any]:
        """The first (kept or new) event ``name``; BlockDeviceError on the socket timeout."""
        try:
            while True:
                for ev in self.events:
                    if ev.get("event") == name:
                        self.events.remove(ev)
                        return ev
                self._read(event_only=True)
        except (OSError, ValueError) as err:
            base.raise_bdev("Waiting for QMP event %s on %s failed: %s", name, self.path, err)

    def _read(self, greeting: bool = False, event_only: bool = False) -> Any:
        while True:
            line = self.fh.readline()
            if not line:
                raise ValueError("monitor closed the connection")
            msg = json.loads(line)
            if greeting and "QMP" in msg:
                return msg
            if "event" in msg:
                self.events.append(msg)
                if event_only:
                    return None
            elif "error" in msg:
                raise ValueError(msg["error"].get("desc", msg["error"]))
            elif "return" in msg:
                return msg["return"]


def run_with_progress(argv: list[str], progress: Callable[[float], None] | None) -> None:
    """Run ``argv`` (qemu-img -p), calling ``progress`` with each new percentage.

    BlockDeviceError with the tool's last words if it fails.
    """
    try:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as err:
        base.raise_bdev("Cannot run %s: %s", argv[0], err)
    assert child.stdout is not None
    tail, last = "", None
    with child.stdout:
        while True:
            chunk = child.stdout.read1(4096).decode("utf-8", "replace")
            if not chunk:
                break
            tail = (tail + chunk)[-4096:]
            pct = parse_progress(tail)
            if pct is not None and pct != last and progress is not None:
                progress(pct)
            last = pct if pct is not None else last
    if child.wait() != 0:
        text = " ".join(_PROGRESS.sub("", tail).split())
        base.raise_bdev("command '%s' exited with exit code %s: %s", " ".join(argv),
                        child.returncode, text[-1000:])
    if progress is not None and last != 100.0:
        progress(100.0)
