"""Running external commands: always an argument list, never a shell."""

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field

from corral import errors


@dataclass
class RunResult:
    """Outcome of one command; ``output`` is stdout followed by stderr."""

    argv: list[str]
    exit_code: int | None
    signal: int | None
    stdout: str
    stderr: str
    duration: float = 0.0
    timed_out: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.timed_out or self.exit_code != 0

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def fail_reason(self) -> str:
        if self.timed_out:
            return "timed out"
        if self.signal is not None:
            return "killed by signal %d" % self.signal
        return "exited with exit code %s" % self.exit_code

    def describe(self, tail_lines: int = 20) -> str:
        """One message for an error: the command, why it failed, its last lines."""
        lines = self.output.strip().splitlines()[-tail_lines:]
        msg = "command '%s' %s" % (" ".join(self.argv), self.fail_reason)
        if lines:
            msg += ": " + "\n".join(lines)
        return msg


def run_cmd(argv: list[str], env: dict[str, str] | None = None, reset_env: bool = False,
            cwd: str | None = None, timeout: float | None = None,
            input_data: str | bytes | None = None, output_file: str | None = None) -> RunResult:
    """Run ``argv`` and wait for it.

    ``env`` is added to the current environment, or replaces it when
    ``reset_env`` is true.  With ``output_file`` stdout and stderr both go to
    that file (appended) and the result carries no text.  A missing program is
    reported as exit code 127, like a shell would, instead of raising.
    """
    if isinstance(argv, str):
        raise errors.ProgrammerError("run_cmd needs an argument list, got a string")
    argv = [str(a) for a in argv]
    if reset_env:
        full_env = dict(env or {})
    else:
        full_env = dict(os.environ)
        full_env.update(env or {})
    start = time.monotonic()
    out_fh = None
    try:
        if output_file:
            out_fh = open(output_file, "ab")
            stdout = stderr = out_fh
        else:
            stdout = stderr = subprocess.PIPE
        data = input_data.encode() if isinstance(input_data, str) else input_data
        proc = subprocess.Popen(argv, env=full_env, cwd=cwd, stdout=stdout, stderr=stderr,
                                stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
                                start_new_session=True, close_fds=True)
    except FileNotFoundError as err:
        if out_fh:
            out_fh.close()
        return RunResult(argv, 127, None, "", "%s: %s" % (argv[0], err.strerror),
                         time.monotonic() - start)
    except PermissionError as err:
        if out_fh:
            out_fh.close()
        return RunResult(argv, 126, None, "", "%s: %s" % (argv[0], err.strerror),
                         time.monotonic() - start)
    timed_out = False
    try:
        out, err = proc.communicate(data, timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc.pid)
        out, err = proc.communicate()
    finally:
        if out_fh:
            out_fh.close()
    rc = proc.returncode
    sig = -rc if rc is not None and rc < 0 else None
    return RunResult(argv, rc if sig is None else None, sig,
                     (out or b"").decode("utf-8", "replace"),
                     (err or b"").decode("utf-8", "replace"),
                     time.monotonic() - start, timed_out)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def check_cmd(argv: list[str], error_class: type = errors.OpExecError, **kwargs) -> RunResult:
    """Run ``argv``; raise ``error_class`` with the command's own words if it fails."""
    result = run_cmd(argv, **kwargs)
    if result.failed:
        raise error_class(result.describe())
    return result


def is_process_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    if pid <= 0:
        return False
    try:
        with open("/proc/%d/stat" % pid) as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def read_pid_file(path: str) -> int:
    """PID in ``path``, or 0 if missing or unreadable."""
    try:
        with open(path) as fh:
            return int(fh.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def kill_and_wait(pid: int, timeout: float = 10.0, sig: int = signal.SIGTERM) -> bool:
    """Send ``sig``, escalate to SIGKILL after ``timeout``; True if the process is gone."""
    if not is_process_alive(pid):
        return True
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return True
    if _wait_gone(pid, timeout):
        return True
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    return _wait_gone(pid, 5.0)


def _wait_gone(pid: int, timeout: float) -> bool:
    # A process that is not our child cannot be waited for; pidfd_open gives an
    # event (readable on exit) instead of a sleep loop.
    import select
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.poll(timeout * 1000)
    finally:
        os.close(fd)
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    return not is_process_alive(pid)
