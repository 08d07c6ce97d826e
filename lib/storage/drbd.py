"""DRBD 8.x mirrored disks (disk template ``drbd``).

``logical_id = (nodeA, nodeB, port, minorA, minorB, secret)``; children are
the two LVs on this node: data (the disk's size) and metadata (128 MiB,
external flex metadata).  The device is ``/dev/drbd<minor>``.

``params`` (besides the drbd disk parameters of drbd_cmdgen): ``local_node``
(this node's name, to pick minorA or minorB; or ``local_minor``),
``local_ip`` and ``remote_ip`` (the two nodes' secondary IPs; without them
the device is set up standalone, local disk only).

The kernel's version (first line of /proc/drbd) picks the 8.4 or 8.3
command syntax; a DRBD 9 kernel is refused.  On a node without the module
every operation that needs DRBD raises BlockDeviceError with the message of
``check_environment`` (what to install/load); ``attach`` answers False and
``shutdown`` is a no-op there, since nothing can be set up.
"""

import os
from typing import Any, Sequence

from corral import constants, errors
from corral.storage import base, drbd_cmdgen, drbd_info

PROC_DRBD = "/proc/drbd"
USERMODE_HELPER_FILE = "/sys/module/drbd/parameters/usermode_helper"
DRBD_TOOLS = ("drbdsetup", "drbdmeta")
MSG_NO_MODULE = ("DRBD kernel module not loaded (%s missing); install drbd-utils and load "
                 "the drbd 8.x module")


def read_proc_drbd() -> drbd_info.ProcDrbd:
    """Parsed /proc/drbd; BlockDeviceError naming the fix if the module is absent."""
    try:
        with open(PROC_DRBD) as fh:
            text = fh.read()
    except FileNotFoundError:
        raise errors.BlockDeviceError(MSG_NO_MODULE % PROC_DRBD) from None
    except OSError as err:
        raise errors.BlockDeviceError("Cannot read %s: %s" % (PROC_DRBD, err)) from None
    return drbd_info.parse_proc_drbd(text)


def check_drbd_environment() -> str | None:
    """None if DRBD 8.x can be driven here; else the administrator's to-do."""
    if not os.path.exists(PROC_DRBD):
        return MSG_NO_MODULE % PROC_DRBD
    try:
        proc = read_proc_drbd()
    except errors.BlockDeviceError as err:
        return str(err)
    problem = drbd_info.check_supported(proc.version)
    if problem:
        return problem
    missing = base.missing_tools(DRBD_TOOLS)
    if missing:
        return "DRBD tools not found (%s); install the drbd-utils package" % ", ".join(missing)
    return None


def used_minors() -> list[int]:
    """Minors configured in the kernel (for verify); [] without the module."""
    if not os.path.exists(PROC_DRBD):
        return []
    return read_proc_drbd().used_minors()


def get_usermode_helper() -> str | None:
    """The module's usermode_helper (must match the cluster's drbd helper); None if unknown."""
    try:
        with open(USERMODE_HELPER_FILE) as fh:
            return fh.read().strip()
    except OSError:
        return None


def get_cmdgen() -> drbd_cmdgen.DRBD84CmdGenerator:
    proc = read_proc_drbd()
    problem = drbd_info.check_supported(proc.version)
    if problem:
        raise errors.BlockDeviceError(problem)
    return drbd_cmdgen.get_cmdgen(proc.version.major, proc.version.minor)


class DRBD8Dev(base.BlockDev):
    """One DRBD minor on this node, on top of a data and a metadata LV."""

    DEV_TYPE = "drbd"
    CAN_GROW = True
    CAN_SNAPSHOT = True
    SUPPORTS_SYNC = True

    def __init__(self, unique_id: Sequence[Any], children: Sequence[base.BlockDev] | None,
                 size: int, params: dict[str, Any] | None = None) -> None:
        super().__init__(unique_id, children, size, params)
        if len(self.unique_id) != 6:
            base.raise_bdev("Invalid drbd logical_id %r: expected (nodeA, nodeB, port, "
                            "minorA, minorB, secret)", unique_id)
        node_a, node_b, port, minor_a, minor_b, secret = self.unique_id
        if self.children and len(self.children) != 2:
            base.raise_bdev("A drbd device needs two children (data, meta), got %d",
                            len(self.children))
        self.port, self.secret = int(port), secret
        local_node = self.params.get("local_node")
        if "local_minor" in self.params:
            self.minor = int(self.params["local_minor"])
        elif local_node == node_a:
            self.minor = int(minor_a)
        elif local_node == node_b:
            self.minor = int(minor_b)
        else:
            base.raise_bdev("Node %r is neither end of drbd disk %s/%s", local_node,
                            node_a, node_b)
        lip, rip = self.params.get("local_ip"), self.params.get("remote_ip")
        self.local_addr = drbd_cmdgen.NetAddr(lip, self.port) if lip else None
        self.remote_addr = drbd_cmdgen.NetAddr(rip, self.port) if rip else None

    @property
    def path(self) -> str:
        return "/dev/drbd%d" % self.minor

    @classmethod
    def check_environment(cls, params: dict[str, Any] | None = None) -> str | None:
        return check_drbd_environment()

    def _gen(self) -> drbd_cmdgen.DRBD84CmdGenerator:
        problem = check_drbd_environment()
        if problem:
            raise errors.BlockDeviceError(problem)
        return get_cmdgen()

    def _child_paths(self) -> tuple[str, str]:
        if len(self.children) != 2:
            base.raise_bdev("drbd%d: data and meta children are required", self.minor)
        for child in self.children:
            child._require_attached()
        data, meta = self.children
        assert data.dev_path is not None and meta.dev_path is not None
        return data.dev_path, meta.dev_path

    @classmethod
    def create(cls, unique_id: Sequence[Any], children: Sequence[base.BlockDev], size: int,
               params: dict[str, Any], excl_stor: bool = False) -> "DRBD8Dev":
        """Write fresh metadata on the meta child; the minor must be free.

        The device is not assembled; call ``assemble`` (and ``open(force=True)``
        on the node that becomes primary first).
        """
        dev = cls(unique_id, children, size, params)
        gen = dev._gen()
        _data, meta = dev._child_paths()
        if dev.children[1].size < constants.DRBD_META_SIZE:
            base.raise_bdev("drbd%d: meta device too small (%d MiB < %d MiB)", dev.minor,
                            dev.children[1].size, constants.DRBD_META_SIZE)
        if dev.minor in read_proc_drbd().used_minors():
            base.raise_bdev("drbd minor %d is already in use", dev.minor)
        dev._run(gen.create_md_cmd(dev.minor, meta), "Creating DRBD metadata on %s" % meta)
        return dev

    def attach(self) -> bool:
        """True if our minor is configured on top of our children."""
        self.attached, self.dev_path = False, None
        if check_drbd_environment() or self.minor not in read_proc_drbd().used_minors():
            return False
        info = self._show()
        if info is None or not self._matches_local(info):
            return False
        self.attached, self.dev_path = True, self.path
        return True

    def _show(self) -> drbd_info.ShowInfo | None:
        result = type(self).runner(get_cmdgen().show_cmd(self.minor))
        return None if result.failed else drbd_info.parse_show(result.stdout)

    def _matches_local(self, info: drbd_info.ShowInfo) -> bool:
        if len(self.children) != 2:
            return info.local_dev is None
        data, meta = (c.dev_path for c in self.children)
        return info.local_dev == data and info.meta_dev == meta

    def _matches_net(self, info: drbd_info.ShowInfo) -> bool:
        if self.local_addr is None or self.remote_addr is None:
            return info.remote_addr is None
        return (info.local_addr == (self.local_addr.host, self.port)
                and info.remote_addr == (self.remote_addr.host, self.port))

    def assemble(self) -> None:
        """Bring the minor up on the children and connect it to the peer.

        Idempotent: an already correct minor is left alone, a standalone one is
        reconnected, a minor set up on something else is torn down first.  On
        failure the minor is taken down again.
        """
        gen = self._gen()
        for child in self.children:
            if not child.attach():
                child.assemble()
        if self.minor in read_proc_drbd().used_minors():
            info = self._show()
            if info is not None and self._matches_local(info):
                if not self._matches_net(info):
                    self._connect(gen, dual_pri=False)
                self.attached, self.dev_path = True, self.path
                return
            self._run(gen.down_cmd(self.minor), "Shutting down mismatched drbd%d" % self.minor)
        data, meta = self._child_paths()
        cmds = gen.local_attach_cmds(self.minor, data, meta, self.size, self.params)
        cmds += gen.sync_params_cmds(self.minor, self.params)
        try:
            for cmd in cmds:
                self._run(cmd, "Setting up drbd%d" % self.minor)
            if self.local_addr and self.remote_addr:
                self._connect(gen, dual_pri=False)
        except errors.BlockDeviceError:
            type(self).runner(gen.down_cmd(self.minor))
            raise
        self.attached, self.dev_path = True, self.path

    def _connect(self, gen: drbd_cmdgen.DRBD84CmdGenerator, dual_pri: bool) -> None:
        if self.local_addr is None or self.remote_addr is None:
            base.raise_bdev("drbd%d: local_ip and remote_ip are needed to connect", self.minor)
        for cmd in gen.net_attach_cmds(self.minor, self.local_addr, self.remote_addr,
                                       dual_pri, self.secret, self.params):
            self._run(cmd, "Connecting drbd%d" % self.minor)

    def shutdown(self) -> None:
        """``drbdsetup down``; nothing to do if the minor is not configured."""
        self.attached, self.dev_path = False, None
        if check_drbd_environment() or self.minor not in read_proc_drbd().used_minors():
            return
        self._run(get_cmdgen().down_cmd(self.minor), "Shutting down drbd%d" % self.minor)

    def remove(self) -> None:
        """DRBD holds no data of its own: shut down; the caller removes the children."""
        self.shutdown()

    def open(self, force: bool = False) -> None:
        """Become primary; ``force`` only right after creation (overwrites the peer)."""
        self._run(self._gen().primary_cmd(self.minor, force), "Making drbd%d primary"
                  % self.minor)

    def close(self) -> None:
        self._run(self._gen().secondary_cmd(self.minor), "Making drbd%d secondary"
                  % self.minor)

    def disconnect_net(self) -> None:
        """Go standalone (migration step; the peer keeps running)."""
        if self.local_addr is None or self.remote_addr is None:
            base.raise_bdev("drbd%d: local_ip and remote_ip are needed", self.minor)
        self._run(self._gen().disconnect_cmd(self.minor, self.local_addr, self.remote_addr),
                  "Disconnecting drbd%d" % self.minor)

    def attach_net(self, multimaster: bool) -> None:
        """Reconnect, allowing two primaries only while ``multimaster`` (migration)."""
        self._connect(self._gen(), dual_pri=multimaster)

    def pause_resume_sync(self, pause: bool) -> None:
        gen = self._gen()
        cmd = gen.pause_sync_cmd(self.minor) if pause else gen.resume_sync_cmd(self.minor)
        self._run(cmd, "%s sync of drbd%d" % ("Pausing" if pause else "Resuming", self.minor))

    def set_sync_params(self, params: dict[str, Any]) -> None:
        for cmd in self._gen().sync_params_cmds(self.minor, params):
            self._run(cmd, "Setting sync parameters of drbd%d" % self.minor)

    def get_sync_status(self) -> base.SyncStatus:
        """From /proc/drbd; an unconfigured minor is degraded and faulty."""
        self._gen()
        st = read_proc_drbd().minors.get(self.minor)
        if st is None or not st.is_in_use:
            return base.SyncStatus(is_degraded=True, ldisk_status=base.LDS_FAULTY)
        return st.sync_status()

    def grow(self, amount: int, dryrun: bool, backingstore: bool) -> None:
        """``backingstore``: grow the data LV; else ``drbdsetup resize`` to the new size."""
        if len(self.children) != 2:
            base.raise_bdev("drbd%d: cannot grow without children", self.minor)
        if backingstore:
            self.children[0].grow(amount, dryrun, True)
            return
        if dryrun:
            return
        self._run(self._gen().resize_cmd(self.minor, self.size + amount),
                  "Resizing drbd%d" % self.minor)
        self.size += amount

    def snapshot(self, snap_name: str | None = None, snap_size: int | None = None) -> tuple:
        """A snapshot of the data child (DRBD itself has none)."""
        if not self.children:
            base.raise_bdev("drbd%d: no data child to snapshot", self.minor)
        return self.children[0].snapshot(snap_name, snap_size)

    def set_info(self, text: str) -> None:
        for child in self.children:
            child.set_info(text)
