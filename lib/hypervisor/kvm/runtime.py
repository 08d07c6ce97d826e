"""The KVM driver's contact with the machine: probing, files, processes.

Layout under ``pathutils.hypervisor_run_dir("kvm")`` (doc/design-kvm.md):
``<name>/{pid,qmp.sock,serial.sock,qga.sock,runtime.json,chroot/}`` per
instance (removed by cleanup) and ``log/<name>.serial.log`` (kept, so the
admin can read what the guest printed after it stopped).
"""

import os
import shutil
import signal
import select
import subprocess
import time
from typing import Any

from corral import errors, pathutils, serializer
from corral.hypervisor import common
from corral.hypervisor.kvm import params as kp
from corral.utils import io, process

UNIX_PATH_MAX = 107
SERIAL_LOG_ROTATE_BYTES = 1 << 20
_facts_cache: dict[tuple[str, float], kp.QemuFacts] = {}
def instance_lock(name: str):
    """The lock serializing this process's operations (and QMP use) on ``name``."""
    return common.instance_lock("kvm", name)


check_name = common.check_name


def hv_dir() -> str:
    return pathutils.hypervisor_run_dir("kvm")


def paths_for(name: str) -> kp.InstancePaths:
    return kp.instance_paths(hv_dir(), check_name(name))


def check_socket_paths(paths: kp.InstancePaths) -> None:
    """HypervisorError if a socket path exceeds the unix limit (QEMU could not bind)."""
    for sock in (paths.qmp, paths.serial, paths.qga):
        if len(sock.encode()) > UNIX_PATH_MAX:
            raise errors.HypervisorError(
                "Socket path %s is longer than %d bytes (unix socket limit): use a shorter "
                "CORRAL_ROOT or instance name" % (sock, UNIX_PATH_MAX))


def resolve_binary(kvm_path: str) -> str:
    """``kvm_path`` if executable, else qemu-system-x86_64 from PATH (documented fallback)."""
    if kvm_path and os.access(kvm_path, os.X_OK):
        return kvm_path
    fallback = shutil.which(kp.FALLBACK_BINARY)
    if fallback:
        return fallback
    raise errors.HypervisorError("QEMU binary %s not found and no %s on PATH "
                                 "(apt-get install qemu-system-x86)" %
                                 (kvm_path, kp.FALLBACK_BINARY))


def kvm_usable() -> bool:
    """Whether "" (auto) kvm_flag may use KVM here.

    /dev/kvm must open; a kvm_pvm host module (as on these build machines) is
    known to hang ordinary guests (PLATFORM.md), so it counts as unusable.
    """
    if os.path.exists("/sys/module/kvm_pvm"):
        return False
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


def probe_facts(binary: str) -> kp.QemuFacts:
    """Version and -help text of ``binary`` plus host facts (cached per mtime)."""
    try:
        key = (binary, os.stat(binary).st_mtime)
    except OSError as err:
        raise errors.HypervisorError("Cannot stat QEMU binary %s: %s" % (binary, err))
    if key not in _facts_cache:
        ver = process.run_cmd([binary, "-version"], timeout=30)
        if ver.failed:
            raise errors.HypervisorError("Cannot probe QEMU: %s" % ver.describe())
        helptext = process.run_cmd([binary, "-help"], timeout=30)
        _facts_cache[key] = kp.QemuFacts(
            binary=binary, version=kp.parse_version(ver.stdout),
            version_text=ver.stdout.strip().splitlines()[0] if ver.stdout.strip() else "",
            help_text=helptext.stdout, kvm_usable=kvm_usable(),
            vhost_net=os.path.exists("/dev/vhost-net"))
    return _facts_cache[key]


def load_runtime(paths: kp.InstancePaths) -> dict[str, Any] | None:
    try:
        return serializer.loads(io.read_file(paths.runtime))
    except FileNotFoundError:
        return None
    except ValueError as err:
        raise errors.HypervisorError("Corrupt runtime file %s: %s" % (paths.runtime, err))


def save_runtime(paths: kp.InstancePaths, data: dict[str, Any]) -> None:
    io.write_file_atomic(paths.runtime, serializer.dumps(data, pretty=True), mode=0o600)


def _cmdline_matches(pid: int, name: str) -> bool:
    """Guard against pid reuse: the process must be a QEMU named ``name``."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as fh:
            args = fh.read().split(b"\x00")
    except OSError:
        return False
    for idx, arg in enumerate(args[:-1]):
        if arg == b"-name" and args[idx + 1] == name.encode():
            return True
    return False


def running_pid(paths: kp.InstancePaths, name: str) -> int:
    """PID of the instance's live QEMU, or 0 (dead, killed behind our back, never ran)."""
    pid = process.read_pid_file(paths.pidfile)
    if not pid:
        rt = load_runtime(paths) or {}
        pid = int(rt.get("pid") or 0)
    if pid and process.is_process_alive(pid) and _cmdline_matches(pid, name):
        return pid
    return 0


def wait_pid_exit(pid: int, timeout: float) -> bool:
    """Block (pidfd, no polling) until ``pid`` exits or ``timeout``; True if gone."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        select.select([fd], [], [], max(timeout, 0))
    finally:
        os.close(fd)
    return not process.is_process_alive(pid)


def kill_qemu(pid: int) -> None:
    """SIGTERM (QEMU quits at once), SIGKILL if it lingers; HypervisorError if it survives."""
    if not process.kill_and_wait(pid, timeout=10, sig=signal.SIGTERM):
        raise errors.HypervisorError("QEMU process %d does not die" % pid)


def cpu_time(pid: int) -> float:
    try:
        with open("/proc/%d/stat" % pid) as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)
    except (OSError, IndexError, ValueError):
        return 0.0


def prepare_dirs(paths: kp.InstancePaths) -> None:
    """Create the instance dir and rotate a large serial log (idempotent)."""
    os.makedirs(paths.dir, mode=0o700, exist_ok=True)
    os.makedirs(os.path.dirname(paths.serial_log), mode=0o750, exist_ok=True)
    try:
        if os.path.getsize(paths.serial_log) > SERIAL_LOG_ROTATE_BYTES:
            os.replace(paths.serial_log, paths.serial_log + ".old")
    except FileNotFoundError:
        pass


def remove_instance_dir(paths: kp.InstancePaths) -> None:
    shutil.rmtree(paths.dir, ignore_errors=True)


def launch(argv: list[str], pass_fds: list[int], timeout: float = 60.0) -> None:
    """Run the daemonizing QEMU and wait for its parent to return.

    QEMU's parent exits once the guest is set up (pidfile written), so a zero
    exit means started; otherwise HypervisorError carries QEMU's own words.
    """
    start = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, pass_fds=pass_fds,
                                start_new_session=True)
    except OSError as err:
        raise errors.HypervisorError("Cannot run %s: %s" % (argv[0], err))
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise errors.HypervisorError("QEMU did not daemonize within %.0f s" % timeout)
    if proc.returncode != 0:
        text = (err or out or b"").decode("utf-8", "replace").strip()
        raise errors.HypervisorError("QEMU failed to start (exit %s after %.1f s): %s" %
                                     (proc.returncode, time.monotonic() - start, text))
