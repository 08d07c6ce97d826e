"""Plumbing shared by every Corral daemon (noded, masterd, rapi).

A daemon's entry point is::

    def main(argv=None) -> int:
        parser = daemon.make_parser("noded", "Corral node daemon", default_bind="0.0.0.0")
        return daemon.run_daemon("noded", parser, prepare, serve, argv)

    def prepare(ctx: daemon.DaemonContext) -> State:
        # checks, certificates, and the listening socket(s):
        return State(sock=ctx.listen_tcp(ctx.options.bind, port), ...)

    def serve(ctx: daemon.DaemonContext, state: State) -> None:
        daemon.serve_asgi(ctx, app, [state.sock], ssl_context)   # blocks until stopped

What ``run_daemon`` guarantees:

- Options ``-f/--foreground``, ``-d/--debug`` (and ``-b``/``-p`` with
  ``make_parser(network=True)``) are parsed first; usage errors exit 2.
- Without ``-f`` it double-forks.  The starting process waits on a pipe and
  exits 0 only when the daemon called ``ctx.ready()`` (``serve_asgi`` does
  that once uvicorn serves the bound sockets), or 1 printing the daemon's
  error (pid file locked, port in use, certificate missing...) once that
  daemon has exited, so a refused start leaves nothing running.  No polling:
  the pipe closes when the daemon dies.
- The daemon holds ``pathutils.pid_file(name)`` locked (flock) for its
  lifetime, so a second copy fails with "already running (pid N)".
- Logging goes to ``pathutils.daemon_log_file(name)`` (plus stderr with -f);
  a detached daemon's stdout/stderr go to the same file, stdin /dev/null.
- SIGTERM/SIGINT stop it cleanly (in-flight requests finish, up to the
  graceful timeout); the pid file is removed at exit.
- ``ctx.request_reexec()`` (any thread) stops accepting at once, lets calls
  in flight finish, then re-executes the same command line in the same
  process (same pid, pid file kept).  Sockets made with ``ctx.listen_*`` are
  handed over, so clients connecting meanwhile wait in the listen queue
  instead of being refused.
"""

import argparse
import asyncio
import fcntl
import logging
import logging.handlers
import os
import select
import signal
import socket
import sys
import threading
import time
from typing import Any, Callable, TypeVar

import uvicorn

from corral import constants, errors, pathutils

# Private environment of a re-executed daemon.
_ENV_DETACHED = "_CORRAL_DAEMON_DETACHED"
_ENV_FDS = "_CORRAL_DAEMON_FDS"
LISTEN_BACKLOG = 128
# Seconds the starting process waits for a daemon that failed to start to exit.
EXIT_WAIT = 30.0

T = TypeVar("T")


def make_parser(name: str, description: str, network: bool = True,
                default_bind: str | None = None) -> argparse.ArgumentParser:
    """Argument parser with the options every daemon shares; add your own to it."""
    parser = argparse.ArgumentParser(prog="corral-" + name, description=description)
    parser.add_argument("-f", "--foreground", action="store_true",
                        help="do not detach; log to stderr as well")
    parser.add_argument("-d", "--debug", action="store_true", help="log debug messages")
    parser.add_argument("--version", action="version", version=constants.VCS_VERSION)
    if network:
        parser.add_argument("-b", "--bind", metavar="ADDRESS", default=default_bind,
                            help="address to listen on (default: %(default)s)")
        parser.add_argument("-p", "--port", metavar="PORT", type=int, default=None,
                            help="port to listen on")
    return parser


class DaemonContext:
    """What prepare/serve functions get: options, readiness, stop and re-exec."""

    def __init__(self, name: str, options: argparse.Namespace, ready_fd: int | None) -> None:
        self.name = name
        self.options = options
        self.stop_event = threading.Event()
        self.reexec_requested = False
        self._ready_fd = ready_fd
        self._is_ready = False
        self._lock = threading.Lock()
        self._stop_callbacks: list[Callable[[], None]] = []
        self._stop_accepting: list[Callable[[], None]] = []
        self._kept_fds: dict[str, int] = {}
        self._inherited = _parse_fds(os.environ.pop(_ENV_FDS, ""))

    @property
    def is_ready(self) -> bool:
        return self._is_ready

    def ready(self) -> None:
        """Tell the starting process the daemon serves (idempotent)."""
        with self._lock:
            if self._is_ready:
                return
            self._is_ready = True
            for fd in self._inherited.values():
                _close_quietly(fd)
            self._inherited.clear()
            _report(self._ready_fd, b"OK\n")
            self._ready_fd = None
        logging.info("corral-%s ready (pid %d)", self.name, os.getpid())

    def fail(self, message: str) -> None:
        """Report a startup failure to the starting process (no-op once ready).

        The pipe stays open until this process exits: the starting process
        returns only then, so a failed start leaves no daemon behind.
        """
        with self._lock:
            if self._ready_fd is not None:
                try:
                    os.write(self._ready_fd,
                             ("ERR %s\n" % message.replace("\n", " ")).encode())
                except OSError:
                    pass
            self._ready_fd = None  # deliberately not closed (see above)

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (must be signal-safe: set a flag) when asked to stop."""
        self._stop_callbacks.append(callback)
        if self.stop_event.is_set():
            callback()

    def on_stop_accepting(self, callback: Callable[[], None]) -> None:
        """Register how to stop accepting connections synchronously (before re-exec)."""
        self._stop_accepting.append(callback)

    def request_stop(self) -> None:
        self.stop_event.set()
        for callback in list(self._stop_callbacks):
            callback()

    def request_reexec(self) -> None:
        """Stop accepting now, finish calls in flight, then re-exec (see module doc)."""
        logging.info("Re-executing corral-%s on request", self.name)
        self.reexec_requested = True
        for callback in list(self._stop_accepting):
            callback()
        self.request_stop()

    def listen_tcp(self, address: str, port: int) -> socket.socket:
        """A listening TCP socket (taken over from before a re-exec when there is one)."""
        key = "tcp:%s:%d" % (address, port)
        sock = self._take_inherited(key)
        if sock is None:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Small request/response exchanges: no Nagle delay on accepted sockets.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                sock.bind((address, port))
                sock.listen(LISTEN_BACKLOG)
            except OSError as err:
                sock.close()
                raise errors.GenericError("Cannot listen on %s port %d: %s"
                                          % (address, port, err.strerror)) from err
        self._kept_fds[key] = os.dup(sock.fileno())
        return sock

    def listen_unix(self, path: str, mode: int = 0o660) -> socket.socket:
        """A listening unix socket at ``path`` (a stale socket file is replaced)."""
        key = "unix:" + path
        sock = self._take_inherited(key)
        if sock is None:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if os.path.exists(path) and not os.path.isdir(path):
                os.unlink(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(path)
                os.chmod(path, mode)
                sock.listen(LISTEN_BACKLOG)
            except OSError as err:
                sock.close()
                raise errors.GenericError("Cannot listen on %s: %s"
                                          % (path, err.strerror)) from err
        self._kept_fds[key] = os.dup(sock.fileno())
        return sock

    def _take_inherited(self, key: str) -> socket.socket | None:
        fd = self._inherited.pop(key, None)
        return socket.socket(fileno=fd) if fd is not None else None

    def reexec_env(self) -> dict[str, str]:
        """Environment for the re-executed image: sockets to take over."""
        for fd in self._kept_fds.values():
            os.set_inheritable(fd, True)
        env = dict(os.environ)
        env[_ENV_FDS] = ";".join("%s=%d" % kv for kv in self._kept_fds.items())
        if not self.options.foreground:
            env[_ENV_DETACHED] = "1"
        return env


def _parse_fds(text: str) -> dict[str, int]:
    out = {}
    for item in filter(None, text.split(";")):
        key, _, fd = item.rpartition("=")
        if key and fd.isdigit():
            out[key] = int(fd)
    return out


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _report(fd: int | None, message: bytes) -> None:
    if fd is None:
        return
    try:
        os.write(fd, message)
    except OSError:
        pass
    _close_quietly(fd)


def setup_logging(name: str, debug: bool, to_stderr: bool) -> None:
    """Log to the daemon's log file (reopened when rotated), and to stderr if asked."""
    os.makedirs(pathutils.log_dir(), exist_ok=True)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    fmt = logging.Formatter("%%(asctime)s: corral-%s pid=%%(process)d %%(threadName)s "
                            "%%(levelname)s %%(message)s" % name)
    handlers: list[logging.Handler] = [
        logging.handlers.WatchedFileHandler(pathutils.daemon_log_file(name))]
    if to_stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)


class PidFile:
    """The daemon's pid file, flock-ed while the daemon lives."""

    def __init__(self, name: str) -> None:
        self.path = pathutils.pid_file(name)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.read(self._fd, 32).decode("ascii", "replace").strip()
            self.close(remove=False)
            raise errors.GenericError("corral-%s is already running (pid %s)"
                                      % (name, other or "unknown")) from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, b"%d\n" % os.getpid())

    def close(self, remove: bool) -> None:
        """Release the lock; remove the file first if ``remove`` (we still own it then)."""
        if self._fd is None:
            return
        if remove:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        os.close(self._fd)
        self._fd = None


def _fork_daemon(name: str) -> tuple[int, int]:
    """Double fork.  Returns (first child pid, read end) in the starting process and
    (0, write end) in the daemon, whose stdio then point at /dev/null and the log."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_fd)
        return pid, read_fd
    os.close(read_fd)
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        os.chdir("/")
        os.umask(0o022)
        os.makedirs(pathutils.log_dir(), exist_ok=True)
        null = os.open(os.devnull, os.O_RDWR)
        log = os.open(pathutils.daemon_log_file(name), os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                      0o640)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
    except OSError as err:
        _report(write_fd, ("ERR cannot detach: %s\n" % err).encode())
        os._exit(1)
    return 0, write_fd


def _wait_for_daemon(name: str, pid: int, read_fd: int) -> int:
    os.waitpid(pid, 0)
    data = b""
    while b"\n" not in data:
        chunk = os.read(read_fd, 4096)
        if not chunk:
            break
        data += chunk
    line = data.decode("utf-8", "replace").strip()
    if line.startswith("ERR "):
        _wait_for_eof(read_fd, EXIT_WAIT)
    os.close(read_fd)
    if line == "OK":
        return 0
    if line.startswith("ERR "):
        sys.stderr.write("corral-%s: %s\n" % (name, line[4:]))
    else:
        sys.stderr.write("corral-%s: exited during startup, see %s\n"
                         % (name, pathutils.daemon_log_file(name)))
    return 1


def _wait_for_eof(fd: int, timeout: float) -> None:
    """Until the daemon that failed has exited (its end of the pipe closes), bounded."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            return
        if not os.read(fd, 4096):
            return


def _reexec_argv() -> list[str]:
    """Interpreter + original arguments, with a relative script path made absolute."""
    args = list(sys.orig_argv[1:])
    if sys.argv and sys.argv[0] in args and os.path.exists(sys.argv[0]):
        args[args.index(sys.argv[0])] = os.path.abspath(sys.argv[0])
    return [sys.executable] + args


def run_daemon(name: str, parser: argparse.ArgumentParser,
               prepare_fn: Callable[[DaemonContext], T],
               serve_fn: Callable[[DaemonContext, T], None],
               argv: list[str] | None = None) -> int:
    """Run daemon ``name`` (see module doc); the exit code for the executable."""
    options = parser.parse_args(argv)
    reexec_argv = _reexec_argv()
    detached = os.environ.pop(_ENV_DETACHED, None) == "1"
    ready_fd = None
    if not options.foreground and not detached:
        pid, fd = _fork_daemon(name)
        if pid:
            return _wait_for_daemon(name, pid, fd)
        ready_fd = fd
    ctx = DaemonContext(name, options, ready_fd)
    code = _run_in_daemon(ctx, prepare_fn, serve_fn)
    if code == 0 and ctx.reexec_requested:
        logging.shutdown()
        os.execve(reexec_argv[0], reexec_argv, ctx.reexec_env())
    return code


def _run_in_daemon(ctx: DaemonContext, prepare_fn: Callable[[DaemonContext], Any],
                   serve_fn: Callable[[DaemonContext, Any], None]) -> int:
    pid_file: PidFile | None = None
    try:
        setup_logging(ctx.name, ctx.options.debug, ctx.options.foreground)
        pid_file = PidFile(ctx.name)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: ctx.request_stop())
        logging.info("corral-%s %s starting", ctx.name, constants.RELEASE_VERSION)
        state = prepare_fn(ctx)
        if not ctx.stop_event.is_set():
            serve_fn(ctx, state)
        if not ctx.is_ready and not ctx.stop_event.is_set():
            raise errors.GenericError("stopped before it was ready")
        logging.info("corral-%s stopped", ctx.name)
        return 0
    except (errors.GenericError, OSError) as err:
        msg = err.args[0] if err.args and isinstance(err.args[0], str) else str(err)
        logging.error("corral-%s: %s", ctx.name, msg)
        ctx.fail(msg)
        return 1
    except Exception as err:  # a bug: keep the traceback in the log
        logging.exception("corral-%s crashed", ctx.name)
        ctx.fail("internal error (%s: %s), see %s" % (err.__class__.__name__, err,
                                                      pathutils.daemon_log_file(ctx.name)))
        return 1
    finally:
        if pid_file is not None:
            pid_file.close(remove=not ctx.reexec_requested)


class _Server(uvicorn.Server):
    """uvicorn server that reports readiness and can stop accepting from any thread."""

    def __init__(self, config: uvicorn.Config, ctx: DaemonContext) -> None:
        super().__init__(config)
        self._ctx = ctx
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._loop = asyncio.get_running_loop()
            self._ctx.ready()

    def stop_accepting(self) -> None:
        """Close the listeners (the daemon keeps the sockets for a re-exec); returns when done."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def close() -> None:
            for server in getattr(self, "servers", []):
                server.close()
        try:
            in_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            in_loop = False
        if in_loop:
            close()
            return
        done = threading.Event()
        loop.call_soon_threadsafe(lambda: (close(), done.set()))
        done.wait(10.0)


def serve_asgi(ctx: DaemonContext, app: Any, sockets: list[socket.socket],
               ssl_context: Any = None, graceful_timeout: float = 30.0) -> None:
    """Serve ``app`` on ``sockets`` with uvicorn until stopped; reports readiness.

    ``ssl_context`` (an ssl.SSLContext) wraps every connection; with a
    server_ssl_context clients without a valid certificate fail the TLS
    handshake and never reach ``app``.  Calls still running after
    ``graceful_timeout`` seconds of a stop are abandoned.
    """
    config = uvicorn.Config(app, log_config=None, access_log=ctx.options.debug,
                            lifespan="off", timeout_keep_alive=30,
                            timeout_graceful_shutdown=graceful_timeout)
    config.load()
    config.ssl = ssl_context
    server = _Server(config, ctx)
    ctx.on_stop(lambda: setattr(server, "should_exit", True))
    ctx.on_stop_accepting(server.stop_accepting)
    server.run(sockets=sockets)
