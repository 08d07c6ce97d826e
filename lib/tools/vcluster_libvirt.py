"""A private libvirtd per simulated node (tools/vcluster, test_libvirt_boot).

libvirtd runs without systemd once user ``libvirt-qemu`` exists and it has
config files of its own (PLATFORM.md §4).  Several of them on one machine need
separate state, so each runs in its node's network namespace and in a mount
namespace of its own (the one ``ip netns exec`` makes, with slave
propagation: nothing leaks back to the machine), where the node's directory
``LVDIR`` is bind-mounted over libvirt's five directories:

    LVDIR/etc   -> /etc/libvirt       libvirtd.conf, qemu.conf (written here)
    LVDIR/run   -> /run/libvirt       sockets, pid file, domain status
    LVDIR/lib   -> /var/lib/libvirt   persistent domain definitions
    LVDIR/log   -> /var/log/libvirt   libvirtd.log, per-domain QEMU logs
    LVDIR/cache -> /var/cache/libvirt QEMU capability probe (8 s, cached)

The node's processes reach it through ``libvirt_uri(LVDIR)`` (the unix socket
seen from outside the mount namespace); the peer libvirtds reach it over TCP
on the node address, which is also its migration address, so peer-to-peer
migration never advertises a host name (PLATFORM.md §4 pitfall b).  Killing
every process of the network namespace stops libvirtd and its QEMUs, and the
mounts vanish with the last process of their mount namespace.
"""

import os
import shutil
import subprocess
import sys

URI_ENV = "CORRAL_LIBVIRT_URI"   # read by corral.hypervisor.libvirt.driver
USER = "libvirt-qemu"
MOUNTS = (("etc", "/etc/libvirt"), ("run", "/run/libvirt"), ("lib", "/var/lib/libvirt"),
          ("log", "/var/log/libvirt"), ("cache", "/var/cache/libvirt"))
PID_FILE = "/run/libvirt/libvirtd.pid"   # as seen inside the mount namespace
START_TIMEOUT = 120.0
# Keepalive of libvirt connections, the peer-to-peer migration one included:
# the default (5 x 5 s) drops a connection when a busy 2-core machine stalls
# the peer daemon, which is a failure of the machine, not of the migration.
KEEPALIVE_INTERVAL = 10
KEEPALIVE_COUNT = 12


class LibvirtSetupError(Exception):
    """A private libvirtd could not be set up; the message says why."""


def libvirt_uri(lvdir: str) -> str:
    """The URI of the libvirtd whose state is ``lvdir``, usable outside its namespaces."""
    return "qemu+unix:///system?socket=%s" % os.path.join(lvdir, "run", "libvirt-sock")


def libvirtd_conf(ip: str) -> str:
    """libvirtd.conf: TCP without auth on the node address only (test networks)."""
    return "\n".join([
        "listen_tls = 0", "listen_tcp = 1", 'listen_addr = "%s"' % ip, 'auth_tcp = "none"',
        'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"',
        "keepalive_interval = %d" % KEEPALIVE_INTERVAL,
        "keepalive_count = %d" % KEEPALIVE_COUNT, ""])


def qemu_conf(ip: str) -> str:
    """qemu.conf: QEMU as root without relabelling, migration on the node address."""
    return "\n".join([
        'user = "root"', 'group = "root"', "dynamic_ownership = 0", "remember_owner = 0",
        'security_driver = "none"', 'stdio_handler = "file"',
        'migration_address = "%s"' % ip, 'migration_host = "%s"' % ip,
        "keepalive_interval = %d" % KEEPALIVE_INTERVAL,
        "keepalive_count = %d" % KEEPALIVE_COUNT, ""])


def check_host() -> None:
    """libvirtd and QEMU are installed (LibvirtSetupError naming the packages)."""
    missing = [tool for tool in ("libvirtd", "qemu-system-x86_64")
               if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin") is None]
    if missing:
        raise LibvirtSetupError("%s not installed (Debian packages libvirt-daemon "
                                "libvirt-daemon-driver-qemu qemu-system-x86; make deps)"
                                % " and ".join(missing))
    try:
        import libvirt  # noqa: F401 - the node daemons' driver needs it
    except ImportError:
        raise LibvirtSetupError("libvirt-python is missing in %s (make deps)" %
                                sys.executable) from None


def ensure_user() -> None:
    """Create system user/group ``libvirt-qemu`` if missing (idempotent).

    The privileged QEMU driver refuses to start without it ("Failed to parse
    user 'libvirt-qemu'"), before it even reads qemu.conf; Debian creates it
    only in libvirt-daemon-system, which Corral does not install.
    """
    if subprocess.run(["id", USER], capture_output=True).returncode == 0:
        return
    for argv in (["groupadd", "--system", "-f", USER],
                 ["useradd", "--system", "-g", USER, "-d", "/var/lib/libvirt",
                  "-s", "/usr/sbin/nologin", USER]):
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0 and \
                subprocess.run(["id", USER], capture_output=True).returncode != 0:
            raise LibvirtSetupError("%s failed: %s" % (" ".join(argv), proc.stderr.strip()))


def prepare(lvdir: str, ip: str) -> None:
    """The state directories and config files of a libvirtd on ``ip`` (idempotent)."""
    for sub, target in MOUNTS:
        os.makedirs(os.path.join(lvdir, sub), mode=0o755, exist_ok=True)
        os.makedirs(target, exist_ok=True)   # the mount point must exist
    for name, text in (("libvirtd.conf", libvirtd_conf(ip)), ("qemu.conf", qemu_conf(ip))):
        with open(os.path.join(lvdir, "etc", name), "w") as fh:
            fh.write(text)


def start_argv(ns: str, lvdir: str, binds: tuple[str, ...] = ()) -> list[str]:
    """``libvirtd -d --listen`` in netns ``ns`` behind the bind mounts of ``lvdir``.

    ``binds`` (SRC:DST) come first: the node's other private mounts (its file
    storage dir), so its QEMUs see the same paths as its node daemon.
    """
    argv = ["ip", "netns", "exec", ns, sys.executable, "-m", "corral.tools.vcluster", "_enter"]
    for bind in tuple(binds) + tuple("%s:%s" % (os.path.join(lvdir, sub), target)
                                     for sub, target in MOUNTS):
        argv += ["--bind", bind]
    return argv + ["--", "libvirtd", "-d", "--listen", "--pid-file", PID_FILE]


def pid_of(lvdir: str) -> int | None:
    """The pid of ``lvdir``'s libvirtd if it runs."""
    try:
        with open(os.path.join(lvdir, "run", "libvirtd.pid")) as fh:
            pid = int(fh.read().strip() or 0)
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return None
    return pid or None


def start(ns: str, lvdir: str, ip: str, env: dict[str, str] | None = None,
          binds: tuple[str, ...] = ()) -> int:
    """Start the libvirtd of ``lvdir`` in ``ns`` and return its pid.

    Writes the config first (so a changed address is picked up) and makes
    the user.  ``libvirtd -d`` returns only once the daemon is set up (its
    status pipe), so the socket answers when this returns; its first API call
    still takes seconds (capability probe, then cached in LVDIR/cache).  The
    caller stops it by killing the namespace's processes or the pid.
    """
    ensure_user()
    prepare(lvdir, ip)
    env = dict(env if env is not None else os.environ)
    env["PATH"] = env.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
    proc = subprocess.run(start_argv(ns, lvdir, binds), env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=START_TIMEOUT)
    pid = pid_of(lvdir)
    if proc.returncode != 0 or pid is None:
        log = os.path.join(lvdir, "log", "libvirtd.log")
        raise LibvirtSetupError("libvirtd in %s did not start (exit %d): %s (see %s)" %
                                (ns, proc.returncode, proc.stdout.strip(), log))
    return pid
