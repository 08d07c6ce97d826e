"""Replicated disks without kernel modules: the node side of disk template ``mirror``.

Data path (doc/design-mirror.md)::

    guest QEMU (primary) --NBD, unix socket--> client tunnel (socat, primary)
        ==TLS, both ends authenticated by the cluster CA==>
    TLS listener (socat, secondary) --unix socket--> qemu-storage-daemon (NBD export "disk")
        --> the secondary's local image

QEMU mirrors every guest write synchronously (``blockdev-mirror
copy-mode=write-blocking``; the hypervisor's business) into the NBD export.
QEMU speaks plain NBD to a local socket because its own NBD-over-TLS does not
reconnect after a connection loss; socat carries the TLS.  The listener binds
the secondary IP, accepts only the primary's address (``range=``) and only a
certificate of this cluster whose common name is the primary's node name; the
tunnel only talks to a server whose certificate names the secondary.

``logical_id = (nodeA_uuid, nodeB_uuid, port)``; one child, the local image
(a ``file`` device, same path on both nodes).  ``params`` after the backend's
``localize``: ``local_node``, ``role`` (``primary``/``secondary``),
``local_ip``, ``remote_ip``, ``local_name``, ``remote_name``, ``disk_uuid``,
plus the tunables of :data:`PARAM_DEFAULTS` (cluster diskparams of ``mirror``).

Per-disk state lives in ``pathutils.mirror_run_dir(disk_uuid)``: pid files,
sockets and logs of the processes, and the consistency marker.  The processes
run in their own sessions, so they survive a node daemon restart, which finds
them again through the pid files (checked against /proc/PID/cmdline, so a
reused pid is never taken for ours).

Consistency marker (secondary only): present = the local copy holds every
write the guest saw completed, as far as the master knows.  The master sets it
once QEMU reports the mirror in sync (or after ``sync_offline``) and clears it
before a resync; ``assemble`` clears it whenever it (re)starts a process, as
replication was interrupted.  It records the kernel's boot id: a marker from
before a reboot of this node counts as absent, since nobody can tell whether
the primary wrote on alone while this node was down (stricter than DRBD
without fencing; a forced failover still works).
"""

import ipaddress
import json
import os
import re
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from corral import errors, pathutils
from corral.storage import base, mirror_proc
from corral.utils import io

ROLE_PRIMARY = "primary"
ROLE_SECONDARY = "secondary"
ROLES = frozenset([ROLE_PRIMARY, ROLE_SECONDARY])
EXPORT_NAME = "disk"
TOOLS = ("qemu-storage-daemon", "socat", "qemu-img")
_TOOL_PACKAGES = {"qemu-storage-daemon": "qemu-system-common", "socat": "socat",
                  "qemu-img": "qemu-utils"}

# Cluster diskparams of the template, with their defaults and allowed ranges.
# A peer that stops answering is noticed after about tcp-retries2 retransmissions
# (4: ~7 s) with data in flight, after keepalive-idle + interval * count seconds
# when idle; connect-timeout bounds a connection attempt.
PARAM_DEFAULTS: dict[str, int] = {"tcp-retries2": 4, "keepalive-idle": 5,
                                  "keepalive-interval": 2, "keepalive-count": 3,
                                  "connect-timeout": 5}
_PARAM_RANGES = {"tcp-retries2": (1, 15), "keepalive-idle": (1, 7200),
                 "keepalive-interval": (1, 600), "keepalive-count": (1, 127),
                 "connect-timeout": (1, 600)}

BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
SOCAT_BUFFER = 131072
_MAX_SOCKET_PATH = 107
# socat splits addresses at , : ! and option values at =; keep its arguments plain.
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./+@-]+$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_SAFE_UUID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# ----- parameters and paths -------------------------------------------------------------

def check_params(params: dict[str, Any]) -> dict[str, int]:
    """The tunables of ``params`` (PARAM_DEFAULTS filled in) as ints; BlockDeviceError
    naming the first bad value.  Other keys are ignored."""
    out = dict(PARAM_DEFAULTS)
    for key, (low, high) in _PARAM_RANGES.items():
        if params.get(key) is None:
            continue
        value = params[key]
        try:
            if isinstance(value, bool) or int(value) != float(value):
                raise ValueError
            out[key] = int(value)
        except (TypeError, ValueError):
            base.raise_bdev("Mirror parameter %s must be an integer, not %r", key, value)
        if not low <= out[key] <= high:
            base.raise_bdev("Mirror parameter %s=%d is outside %d..%d", key, out[key], low, high)
    return out


@dataclass(frozen=True)
class MirrorPaths:
    """The files of one mirror disk on this node (all inside ``dir``)."""

    dir: str

    def _f(self, name: str) -> str:
        return os.path.join(self.dir, name)

    export_sock = property(lambda self: self._f("export.sock"))
    qsd_pid = property(lambda self: self._f("qsd.pid"))
    qsd_qmp = property(lambda self: self._f("qsd.qmp"))
    qsd_log = property(lambda self: self._f("qsd.log"))
    listen_pid = property(lambda self: self._f("listen.pid"))
    listen_log = property(lambda self: self._f("listen.log"))
    client_sock = property(lambda self: self._f("client.sock"))
    client_pid = property(lambda self: self._f("client.pid"))
    client_log = property(lambda self: self._f("client.log"))
    marker = property(lambda self: self._f("consistent"))


def mirror_paths(disk_uuid: Any) -> MirrorPaths:
    """The paths of disk ``disk_uuid`` (BlockDeviceError if it cannot name a directory)."""
    if not isinstance(disk_uuid, str) or not _SAFE_UUID.match(disk_uuid):
        base.raise_bdev("Invalid mirror disk uuid %r", disk_uuid)
    return MirrorPaths(pathutils.mirror_run_dir(disk_uuid))


def _check_path(path: str, what: str, socket_path: bool = False) -> str:
    if not _SAFE_PATH.match(path):
        base.raise_bdev("The %s path %r contains characters socat/QEMU options cannot carry",
                        what, path)
    if socket_path and len(path.encode()) > _MAX_SOCKET_PATH:
        base.raise_bdev("The %s path %s is longer than a unix socket allows (%d bytes)",
                        what, path, _MAX_SOCKET_PATH)
    return path


def _ip(value: Any, what: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        base.raise_bdev("Invalid %s %r for a mirror disk", what, value)


def _socat_host(ip: str) -> str:
    return "[%s]" % ip if ":" in ip else ip


def _pf(ip: str) -> str:
    return "ip6" if ":" in ip else "ip4"


# ----- command lines (pure) ---------------------------------------------------------------

def qsd_argv(image: str, paths: MirrorPaths) -> list[str]:
    """qemu-storage-daemon exporting ``image`` writable as NBD export "disk" on a unix socket.

    O_DIRECT so an acknowledged write is on the device, not in this node's page
    cache; no image locking (the daemon is the image's only user on this node).
    """
    blk_file = {"driver": "file", "node-name": "file0", "filename": image,
                "cache": {"direct": True}, "locking": "off"}
    blk_raw = {"driver": "raw", "node-name": "disk0", "file": "file0"}
    server = {"addr": {"type": "unix", "path": paths.export_sock}}
    return ["qemu-storage-daemon", "--daemonize", "--pidfile", paths.qsd_pid,
            "--blockdev", json.dumps(blk_file), "--blockdev", json.dumps(blk_raw),
            "--nbd-server", json.dumps(server), "--export", json.dumps(export_args()),
            "--chardev", "socket,id=qmp0,path=%s,server=on,wait=off"
            % paths.qsd_qmp.replace(",", ",,"),
            "--monitor", "chardev=qmp0"]


def export_args() -> dict[str, Any]:
    """The NBD export of the image (qemu-storage-daemon --export, QMP block-export-add)."""
    return {"type": "nbd", "id": "export0", "node-name": "disk0", "name": EXPORT_NAME,
            "writable": True}


def _tls_opts(tun: dict[str, int], peer_name: str) -> str:
    return ("cert=%s,cafile=%s,verify=1,commonname=%s,keepalive,keepidle=%d,keepintvl=%d,"
            "keepcnt=%d,nodelay" % (pathutils.node_cert_file(), pathutils.cluster_ca_file(),
                                   peer_name, tun["keepalive-idle"],
                                   tun["keepalive-interval"], tun["keepalive-count"]))


def listener_argv(paths: MirrorPaths, local_ip: str, remote_ip: str, port: int,
                  remote_name: str, tun: dict[str, int]) -> list[str]:
    """Secondary: accept TLS from the primary (address and certificate name) on the
    secondary IP, one forked child per connection, each relayed to the export."""
    listen = ("OPENSSL-LISTEN:%d,pf=%s,bind=%s,range=%s/%d,fork,reuseaddr,%s"
              % (port, _pf(local_ip), _socat_host(local_ip), _socat_host(remote_ip),
                 128 if ":" in remote_ip else 32, _tls_opts(tun, remote_name)))
    return ["socat", "-d", "-d", "-b", str(SOCAT_BUFFER), listen,
            "UNIX-CONNECT:%s" % paths.export_sock]


def client_argv(paths: MirrorPaths, remote_ip: str, port: int, remote_name: str,
                tun: dict[str, int]) -> list[str]:
    """Primary: a unix socket for QEMU; each connection becomes a TLS connection to the
    secondary, which must present a cluster certificate naming ``remote_name``."""
    connect = ("OPENSSL:%s:%d,pf=%s,connect-timeout=%d,%s"
               % (_socat_host(remote_ip), port, _pf(remote_ip), tun["connect-timeout"],
                  _tls_opts(tun, remote_name)))
    return ["socat", "-d", "-d", "-b", str(SOCAT_BUFFER),
            "UNIX-LISTEN:%s,fork,unlink-early,mode=600" % paths.client_sock, connect]


def nbd_uri(sock: str) -> str:
    """The NBD URI of export "disk" behind unix socket ``sock`` (qemu-img, qemu-io)."""
    return "nbd+unix:///%s?socket=%s" % (EXPORT_NAME, urllib.parse.quote(sock, safe="/"))


def sync_argv(image: str, sock: str) -> list[str]:
    """Copy all of ``image`` onto the existing remote export (no create, holes as zeroes)."""
    return ["qemu-img", "convert", "-p", "-n", "-W", "-f", "raw", "-O", "raw", image,
            nbd_uri(sock)]


def procs(paths: MirrorPaths) -> dict[str, mirror_proc.Proc]:
    """The processes a mirror disk may run on a node, by name."""
    P = mirror_proc.Proc
    return {"qsd": P("qsd", paths.qsd_pid, paths.qsd_log, (paths.export_sock, paths.qsd_qmp),
                     False),
            "listen": P("listen", paths.listen_pid, paths.listen_log, (), True),
            "client": P("client", paths.client_pid, paths.client_log, (paths.client_sock,),
                        True)}


def boot_id() -> str:
    try:
        return io.read_file(BOOT_ID_FILE).strip()
    except OSError:
        return ""


# ----- the driver -----------------------------------------------------------------------

class MirrorDev(base.BlockDev):
    """One mirror disk on this node: its local image plus the role's processes.

    Primary: the client tunnel socat (QEMU connects to :meth:`client_socket`).
    Secondary: qemu-storage-daemon exporting the image and the TLS listener.
    A role switch is ``shutdown`` then ``assemble`` with the new role;
    ``assemble`` never stops the other role's processes by itself.
    """

    DEV_TYPE = "mirror"
    CAN_GROW = True
    SUPPORTS_SYNC = True

    def __init__(self, unique_id: Sequence[Any], children: Sequence[base.BlockDev] | None,
                 size: int, params: dict[str, Any] | None = None) -> None:
        super().__init__(unique_id, children, size, params)
        if len(self.unique_id) != 3:
            base.raise_bdev("Invalid mirror logical_id %r: expected (nodeA, nodeB, port)",
                            unique_id)
        node_a, node_b, port = self.unique_id
        try:
            self.port = int(port)
        except (TypeError, ValueError):
            self.port = 0
        if not 0 < self.port < 65536:
            base.raise_bdev("Invalid mirror port %r", port)
        if len(self.children) > 1:
            base.raise_bdev("A mirror disk has one child (its image), got %d",
                            len(self.children))
        self.role = self.params.get("role")
        if self.role not in ROLES:
            base.raise_bdev("Mirror disk role must be primary or secondary, not %r", self.role)
        if self.params.get("local_node") not in (node_a, node_b):
            base.raise_bdev("Node %r is neither end of mirror disk %s/%s",
                            self.params.get("local_node"), node_a, node_b)
        self.paths = mirror_paths(self.params.get("disk_uuid"))
        self.tunables = check_params(self.params)

    # ----- helpers -----
    @property
    def _token(self) -> str:
        return self.paths.dir + "/"

    def _child(self) -> base.BlockDev:
        if len(self.children) != 1:
            base.raise_bdev("Mirror disk %s has no image child", self.paths.dir)
        return self.children[0]

    def _image(self) -> str:
        """The local image's path; BlockDeviceError if it does not exist."""
        child = self._child()
        if not child.attach():
            base.raise_bdev("The local image of mirror disk %s is missing (%r)",
                            self.params.get("disk_uuid"), child.unique_id)
        assert child.dev_path is not None
        return child.dev_path

    def _role_procs(self) -> list[mirror_proc.Proc]:
        all_procs = procs(self.paths)
        if self.role == ROLE_PRIMARY:
            return [all_procs["client"]]
        return [all_procs["qsd"], all_procs["listen"]]

    def _peer(self) -> tuple[str, str, str]:
        """(local_ip, remote_ip, remote_name), validated; needed to start processes."""
        p = self.params
        for key in ("local_ip", "remote_ip", "remote_name"):
            if not p.get(key):
                base.raise_bdev("Mirror disk %s: parameter %s is missing", p.get("disk_uuid"),
                                key)
        if not _SAFE_NAME.match(str(p["remote_name"])):
            base.raise_bdev("Invalid peer node name %r", p["remote_name"])
        return _ip(p["local_ip"], "local_ip"), _ip(p["remote_ip"], "remote_ip"), \
            str(p["remote_name"])

    def _is_running(self, proc: mirror_proc.Proc) -> bool:
        return mirror_proc.live_pid(proc.pid_file, self._token) > 0

    # ----- required core -----
    @classmethod
    def create(cls, unique_id: Sequence[Any], children: Sequence[base.BlockDev], size: int,
               params: dict[str, Any], excl_stor: bool = False) -> "MirrorDev":
        """Validate, and create the image child if it does not exist yet (removed again if
        this fails later).  Starts nothing: ``assemble`` does (the backend calls it right
        away, as SUPPORTS_SYNC is set)."""
        dev = cls(unique_id, children, size, params)
        child = dev._child()
        made = False
        if not child.attach():
            child = type(child).create(child.unique_id, child.children, child.size or size,
                                       child.params)
            dev.children[0] = child
            made = True
        try:
            dev._image()
            for path in (dev.paths.export_sock, dev.paths.client_sock):
                _check_path(path, "mirror socket", socket_path=True)
        except errors.GenericError:
            if made:
                child.remove()
            raise
        dev.attach()
        return dev

    def attach(self) -> bool:
        """True iff the image exists and this role's processes run; sets ``dev_path``."""
        child = self._child()
        ok = child.attach() and all(self._is_running(p) for p in self._role_procs())
        self.attached = bool(ok)
        self.dev_path = child.dev_path if ok else None
        return self.attached

    def assemble(self) -> None:
        """Start what this role needs and is not running (idempotent).

        Secondary: the export, then the listener; the consistency marker is
        cleared first if anything has to be (re)started.  Both roles lower
        tcp_retries2.  If a start fails, what this call started is stopped again.
        """
        image = self._image()
        missing = [p for p in self._role_procs() if not self._is_running(p)]
        if missing:
            local_ip, remote_ip, remote_name = self._peer()
            for path in (self.paths.export_sock, self.paths.client_sock):
                _check_path(path, "mirror socket", socket_path=True)
            _check_path(image, "image")
            os.makedirs(self.paths.dir, mode=0o700, exist_ok=True)
            if self.role == ROLE_SECONDARY:
                self.set_consistent(False)
            mirror_proc.limit_tcp_retries2(self.tunables["tcp-retries2"])
            started: list[mirror_proc.Proc] = []
            try:
                for proc in missing:
                    mirror_proc.stop_proc(proc, self._token)  # stale pid file and sockets
                    self._start(proc, image, local_ip, remote_ip, remote_name)
                    started.append(proc)
            except BaseException:
                for proc in reversed(started):
                    mirror_proc.stop_proc(proc, self._token)
                raise
        if not self.attach():
            base.raise_bdev("Mirror disk %s did not come up (see the logs in %s)",
                            self.params.get("disk_uuid"), self.paths.dir)

    def _start(self, proc: mirror_proc.Proc, image: str, local_ip: str, remote_ip: str,
               remote_name: str) -> None:
        if proc.name == "qsd":
            mirror_proc.launch_qsd(qsd_argv(image, self.paths), proc)
        elif proc.name == "listen":
            mirror_proc.spawn_socat(listener_argv(self.paths, local_ip, remote_ip, self.port,
                                                  remote_name, self.tunables), proc)
        else:
            mirror_proc.spawn_socat(client_argv(self.paths, remote_ip, self.port, remote_name,
                                                self.tunables), proc)

    def shutdown(self) -> None:
        """Stop every process of this disk on this node, whatever the role (tunnel first,
        then listener, then export); pid files and sockets go, data, logs and the marker
        stay.  Idempotent."""
        self.attached, self.dev_path = False, None
        if not os.path.isdir(self.paths.dir):
            return
        all_procs = procs(self.paths)
        for name in ("client", "listen", "qsd"):
            mirror_proc.stop_proc(all_procs[name], self._token)

    def remove(self) -> None:
        """``shutdown`` and drop the per-disk run dir with the marker and logs.  The image
        child is removed by the caller (backend loop over children).  Idempotent."""
        self.shutdown()
        if not os.path.isdir(self.paths.dir):
            return
        for name in os.listdir(self.paths.dir):
            io.remove_file(os.path.join(self.paths.dir, name))
        try:
            os.rmdir(self.paths.dir)
        except OSError as err:
            base.raise_bdev("Cannot remove %s: %s", self.paths.dir, err)

    # ----- replication state -----
    def is_consistent(self) -> bool:
        """The marker exists and was written since this node booted."""
        try:
            data = json.loads(io.read_file(self.paths.marker))
        except (OSError, ValueError):
            return False
        return isinstance(data, dict) and data.get("boot_id") == boot_id()

    def set_consistent(self, flag: bool) -> None:
        """Write (atomically, fsynced) or remove the consistency marker.  Idempotent."""
        if flag:
            os.makedirs(self.paths.dir, mode=0o700, exist_ok=True)
            data = {"disk_uuid": self.params.get("disk_uuid"), "boot_id": boot_id(),
                    "since": time.time()}
            io.write_file_atomic(self.paths.marker, json.dumps(data) + "\n", mode=0o600)
        elif os.path.exists(self.paths.marker):
            io.remove_file(self.paths.marker)
            io.fsync_dir(self.paths.dir)

    def get_sync_status(self) -> base.SyncStatus:
        """Secondary: in sync iff the marker says so, else degraded and syncing.  Primary:
        in sync (the master asks the running QEMU for the live state instead)."""
        if self.role == ROLE_SECONDARY and not self.is_consistent():
            return base.SyncStatus(is_degraded=True, ldisk_status=base.LDS_SYNC)
        return base.SyncStatus()

    def client_socket(self) -> str:
        """Primary: the unix socket QEMU connects to (NBD, export ``disk``)."""
        return self.paths.client_sock

    def sync_offline(self, progress: Callable[[float], None] | None = None) -> None:
        """Primary, guest stopped: copy the whole image to the secondary through the tunnel
        (zeroes sent as such, not as data), flushed there when this returns.

        ``progress`` receives percentages (0..100).  The tunnel must be assembled and
        the secondary's export reachable; BlockDeviceError otherwise.
        """
        if self.role != ROLE_PRIMARY:
            base.raise_bdev("sync_offline runs on the primary, this node is the %s", self.role)
        image = self._image()
        if not self._is_running(procs(self.paths)["client"]):
            base.raise_bdev("The mirror tunnel of %s is not running; assemble the disk first",
                            self.params.get("disk_uuid"))
        mirror_proc.run_with_progress(sync_argv(image, self.paths.client_sock), progress)

    def grow(self, amount: int, dryrun: bool, backingstore: bool) -> None:
        """``backingstore``: grow the image on this node.  Otherwise a running export
        (secondary) is given the new size (see ``_resize_export``); NBD clients see it
        when they reconnect."""
        if backingstore:
            self._child().grow(amount, dryrun, True)
            return
        if dryrun:
            return
        if self._is_running(procs(self.paths)["qsd"]):
            self._resize_export(base.device_size_bytes(self._image()))
        self.size += amount

    def _resize_export(self, size: int) -> None:
        """Show a running export the image's new size.  QEMU 7.2 cannot resize an
        exported node, so the export is removed (cutting its NBD clients: a running
        mirror job fails and the disk needs a resync, hence the marker goes), the node
        resized and the export added back; the processes keep running."""
        self.set_consistent(False)
        with mirror_proc.QmpSession(self.paths.qsd_qmp) as qmp:
            qmp.cmd("block-export-del", id="export0", mode="hard")
            qmp.wait_event("BLOCK_EXPORT_DELETED")
            qmp.cmd("block_resize", **{"node-name": "disk0", "size": size})
            qmp.cmd("block-export-add", **export_args())

    @classmethod
    def check_environment(cls, params: dict[str, Any] | None = None) -> str | None:
        missing = base.missing_tools(TOOLS)
        if not missing:
            return None
        return "missing %s (install the Debian package(s) %s)" % (
            ", ".join(missing), ", ".join(sorted({_TOOL_PACKAGES[t] for t in missing})))
