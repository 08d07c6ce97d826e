"""LVM logical volumes (disk template ``plain``; also DRBD's children).

``logical_id = (vg_name, lv_name)``; the device is ``/dev/<vg>/<lv>``.

Three layers, kept apart so tests check each without device-mapper:
command generation (``*_cmd`` functions: pure argv lists), output parsing
(``parse_*``: text of ``lvs``/``vgs``/``pvs`` with ``--noheadings
--units=m --nosuffix --separator=|``), and execution (``LogicalVolume`` and
the ``list_*``/``*_storage_units`` query helpers, which run through
``base.BlockDev.runner``).
"""

import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from corral.storage import base
from corral.utils import process

LVM_TOOLS = ("lvcreate", "lvremove", "lvs", "vgs", "pvs", "lvchange", "lvresize", "lvrename")
DM_CONTROL = "/dev/mapper/control"
_REPORT_OPTS = ["--noheadings", "--units=m", "--nosuffix", "--separator=|"]
LVS_FIELDS = "lv_name,vg_name,lv_size,lv_attr,lv_kernel_major,lv_kernel_minor,stripes,devices"
VGS_FIELDS = "vg_name,vg_size,vg_free,pv_count,vg_attr"
PVS_FIELDS = "pv_name,vg_name,pv_size,pv_free,pv_attr,pv_used"
# LVM's own rules for names, plus the suffixes it reserves for internal volumes.
_VALID_NAME = re.compile(r"^[a-zA-Z0-9+_.][a-zA-Z0-9+_.-]*$")
_RESERVED = ("_mlog", "_mimage", "_rimage", "_rmeta", "_tdata", "_tmeta", "_cdata",
             "_cmeta", "_vorigin", "snapshot", "pvmove")
_TAG_CLEAN = re.compile(r"[^A-Za-z0-9_+.\-/=!:&#]")


# ----- command generation (pure) -----------------------------------------
def check_name(name: str, what: str = "logical volume") -> None:
    """BlockDeviceError unless ``name`` is usable as an LVM VG/LV name."""
    if (not isinstance(name, str) or not _VALID_NAME.match(name) or name in (".", "..")
            or len(name) > 127):
        base.raise_bdev("Invalid %s name %r", what, name)
    if what == "logical volume" and any(r in name for r in _RESERVED):
        base.raise_bdev("Logical volume name %r contains a name reserved by LVM", name)


def lvcreate_cmd(vg: str, name: str, size: int, stripes: int = 1,
                 pvs: Sequence[str] = ()) -> list[str]:
    cmd = ["lvcreate", "-L", "%dm" % size, "-n", name]
    if stripes > 1:
        cmd += ["-i", str(stripes)]
    return cmd + [vg] + list(pvs)


def lvremove_cmd(vg: str, name: str) -> list[str]:
    return ["lvremove", "-f", "%s/%s" % (vg, name)]


def lvchange_activate_cmd(vg: str, name: str, active: bool = True) -> list[str]:
    return ["lvchange", "-ay" if active else "-an", "%s/%s" % (vg, name)]


def lvchange_tag_cmd(vg: str, name: str, add: Sequence[str] = (),
                     delete: Sequence[str] = ()) -> list[str]:
    cmd = ["lvchange"]
    for tag in delete:
        cmd += ["--deltag", tag]
    for tag in add:
        cmd += ["--addtag", tag]
    return cmd + ["%s/%s" % (vg, name)]


def lvresize_cmd(vg: str, name: str, amount: int, dryrun: bool = False) -> list[str]:
    cmd = ["lvresize", "-L", "+%dm" % amount]
    if dryrun:
        cmd.append("--test")
    return cmd + ["%s/%s" % (vg, name)]


def lvrename_cmd(vg: str, old: str, new: str) -> list[str]:
    return ["lvrename", vg, old, new]


def lvsnapshot_cmd(vg: str, name: str, snap_name: str, size: int) -> list[str]:
    return ["lvcreate", "-L", "%dm" % size, "-s", "-n", snap_name, "%s/%s" % (vg, name)]


def lvs_cmd(vg: str | None = None, name: str | None = None,
            fields: str = LVS_FIELDS) -> list[str]:
    cmd = ["lvs"] + _REPORT_OPTS + ["-o", fields]
    if vg and name:
        cmd.append("%s/%s" % (vg, name))
    elif vg:
        cmd.append(vg)
    return cmd


def vgs_cmd(vgs: Sequence[str] = (), fields: str = VGS_FIELDS) -> list[str]:
    return ["vgs"] + _REPORT_OPTS + ["-o", fields] + list(vgs)


def pvs_cmd(fields: str = PVS_FIELDS) -> list[str]:
    return ["pvs"] + _REPORT_OPTS + ["-o", fields]


# ----- parsing (pure) ----------------------------------------------------
@dataclass
class LvInfo:
    name: str
    vg: str
    size: float
    attr: str
    major: int
    minor: int
    stripes: int
    devices: list[str] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return len(self.attr) > 4 and self.attr[4] == "a"

    @property
    def is_open(self) -> bool:
        return len(self.attr) > 5 and self.attr[5] == "o"

    @property
    def degraded(self) -> bool:
        """Data lost or at risk: a virtual (origin lost) LV or a partial one."""
        return self.attr[:1] == "v" or (len(self.attr) > 8 and self.attr[8] == "p")

    @property
    def pvs(self) -> list[str]:
        """Physical volumes holding the LV (``/dev/sda1(0)`` -> ``/dev/sda1``)."""
        return [re.sub(r"\(\d+\)$", "", d) for d in self.devices]


@dataclass
class VgInfo:
    name: str
    size: float
    free: float
    pv_count: int
    attr: str = ""


@dataclass
class PvInfo:
    name: str
    vg: str
    size: float
    free: float
    attr: str
    used: float

    @property
    def allocatable(self) -> bool:
        return self.attr[:1] == "a"


def _rows(text: str, nfields: int) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) != nfields:
            base.raise_bdev("Cannot parse LVM output line %r (expected %d fields)",
                            line, nfields)
        rows.append(parts)
    return rows


def _num(value: str) -> float:
    try:
        return float(value) if value else 0.0
    except ValueError:
        base.raise_bdev("Cannot parse LVM number %r", value)


def parse_lvs(text: str) -> list[LvInfo]:
    """Rows of ``lvs_cmd()`` output (fields LVS_FIELDS, in that order)."""
    return [LvInfo(r[0], r[1], _num(r[2]), r[3], int(_num(r[4] or "-1")),
                   int(_num(r[5] or "-1")), int(_num(r[6] or "1")),
                   [d for d in r[7].split(",") if d])
            for r in _rows(text, 8)]


def parse_vgs(text: str) -> list[VgInfo]:
    return [VgInfo(r[0], _num(r[1]), _num(r[2]), int(_num(r[3])), r[4])
            for r in _rows(text, 5)]


def parse_pvs(text: str) -> list[PvInfo]:
    return [PvInfo(r[0], r[1], _num(r[2]), _num(r[3]), r[4], _num(r[5]))
            for r in _rows(text, 6)]


def vg_storage_units(vgs: Sequence[VgInfo]) -> list[dict[str, Any]]:
    """``gnt-node list-storage -t lvm-vg`` rows (MiB)."""
    return [{"name": v.name, "size": int(v.size), "used": int(v.size - v.free),
             "free": int(v.free), "allocatable": True} for v in vgs]


def pv_storage_units(pvs: Sequence[PvInfo]) -> list[dict[str, Any]]:
    """``gnt-node list-storage -t lvm-pv`` rows (MiB); PVs outside any VG included."""
    return [{"name": p.name, "vg": p.vg, "size": int(p.size), "used": int(p.used),
             "free": int(p.free), "allocatable": p.allocatable} for p in pvs]


def node_volumes(lvs: Sequence[LvInfo]) -> list[dict[str, Any]]:
    """``gnt-node volumes`` node-side rows: one per (LV, PV) with ``dev`` the PV.

    The master adds ``node`` and ``instance``.
    """
    rows = []
    for lv in lvs:
        for pv in lv.pvs or ["-"]:
            rows.append({"name": lv.name, "vg": lv.vg, "size": int(lv.size), "dev": pv})
    return rows


# ----- execution ---------------------------------------------------------
def _query(argv: list[str], what: str) -> str:
    run: Callable[..., process.RunResult] = LogicalVolume.runner
    return base.check_result(run(argv), what).stdout


def list_vgs(names: Sequence[str] = ()) -> list[VgInfo]:
    return parse_vgs(_query(vgs_cmd(names), "Listing volume groups"))


def list_pvs() -> list[PvInfo]:
    return parse_pvs(_query(pvs_cmd(), "Listing physical volumes"))


def list_lvs(vg: str | None = None) -> list[LvInfo]:
    return parse_lvs(_query(lvs_cmd(vg), "Listing logical volumes"))


def vg_free(vg: str) -> float:
    """Free MiB in ``vg``; BlockDeviceError if the VG does not exist."""
    found = [v for v in list_vgs([vg]) if v.name == vg]
    if not found:
        base.raise_bdev("Volume group %s not found", vg)
    return found[0].free


def check_device_mapper() -> str | None:
    """None if the kernel's device-mapper answers on DM_CONTROL.

    The node alone is not enough: installing lvm2 creates it even on kernels
    without the driver, where opening it fails with ENODEV.
    """
    if not os.path.exists(DM_CONTROL):
        return ("device-mapper not available (%s missing); LVM volumes cannot be "
                "activated on this machine (load the dm_mod kernel module)" % DM_CONTROL)
    try:
        os.close(os.open(DM_CONTROL, os.O_RDWR))
    except OSError as err:
        return ("device-mapper not available (opening %s failed: %s); the kernel has no "
                "device-mapper driver (load the dm_mod kernel module)"
                % (DM_CONTROL, err.strerror))
    return None


class LogicalVolume(base.BlockDev):
    """One LV.  ``params``: ``stripes`` (default 1)."""

    DEV_TYPE = "plain"
    CAN_GROW = True
    CAN_SNAPSHOT = True
    CAN_RENAME = True

    def __init__(self, unique_id: Sequence[Any], children: Sequence[base.BlockDev] | None,
                 size: int, params: dict[str, Any] | None = None) -> None:
        super().__init__(unique_id, children, size, params)
        if len(self.unique_id) != 2:
            base.raise_bdev("Invalid plain logical_id %r: expected (vg, lv)", unique_id)
        self.vg, self.lv = self.unique_id
        check_name(self.vg, "volume group")
        check_name(self.lv)
        self.info: LvInfo | None = None

    @property
    def path(self) -> str:
        return os.path.join("/dev", self.vg, self.lv)

    @classmethod
    def check_environment(cls, params: dict[str, Any] | None = None) -> str | None:
        missing = base.missing_tools(LVM_TOOLS)
        if missing:
            return "lvm2 tools not found (%s); install the lvm2 package" % ", ".join(missing)
        return check_device_mapper()

    @classmethod
    def create(cls, unique_id: Sequence[Any], children: Sequence[base.BlockDev], size: int,
               params: dict[str, Any], excl_stor: bool = False) -> "LogicalVolume":
        """lvcreate after checking the VG has room; LVM itself leaves nothing on failure."""
        dev = cls(unique_id, children, size, params)
        problem = cls.check_environment()
        if problem:
            base.raise_bdev("Cannot create %s/%s: %s", dev.vg, dev.lv, problem)
        stripes = int(dev.params.get("stripes", 1) or 1)
        free = vg_free(dev.vg)
        if free < size:
            base.raise_bdev("Not enough free space in volume group %s: need %d MiB, "
                            "have %d MiB", dev.vg, size, int(free))
        dev._run(lvcreate_cmd(dev.vg, dev.lv, size, stripes), "Creating LV %s/%s"
                 % (dev.vg, dev.lv))
        if not dev.attach():
            base.raise_bdev("LV %s/%s was created but cannot be found", dev.vg, dev.lv)
        return dev

    def remove(self) -> None:
        if not self.attach():
            return
        self._run(lvremove_cmd(self.vg, self.lv), "Removing LV %s/%s" % (self.vg, self.lv))
        self.attached = False
        self.dev_path = None

    def attach(self) -> bool:
        result = type(self).runner(lvs_cmd(self.vg, self.lv))
        found = [lv for lv in parse_lvs(result.stdout) if lv.name == self.lv
                 and lv.vg == self.vg] if not result.failed else []
        self.info = found[0] if found else None
        self.attached = bool(found)
        self.dev_path = self.path if found else None
        return self.attached

    def assemble(self) -> None:
        """Activate the LV (``lvchange -ay``); fine if already active."""
        self._run(lvchange_activate_cmd(self.vg, self.lv), "Activating LV %s/%s"
                  % (self.vg, self.lv))
        if not self.attach():
            base.raise_bdev("LV %s/%s not found after activation", self.vg, self.lv)

    def shutdown(self) -> None:
        """LVs stay active (other nodes' DRBD peers may need them); nothing to do."""

    def get_sync_status(self) -> base.SyncStatus:
        if self.info is None:
            self.attach()
        degraded = self.info is None or self.info.degraded
        return base.SyncStatus(is_degraded=degraded,
                               ldisk_status=base.LDS_FAULTY if degraded else base.LDS_OKAY)

    def grow(self, amount: int, dryrun: bool, backingstore: bool) -> None:
        """``lvresize -L +<amount>m`` (``--test`` for a dry run)."""
        if not backingstore:
            return
        self._run(lvresize_cmd(self.vg, self.lv, amount, dryrun), "Growing LV %s/%s"
                  % (self.vg, self.lv))
        if not dryrun:
            self.size += amount

    def snapshot(self, snap_name: str | None = None, snap_size: int | None = None) -> tuple:
        """Snapshot of the size of the LV (or ``snap_size``); returns (vg, snap_name)."""
        snap_name = snap_name or self.lv + ".snap"
        check_name(snap_name)
        size = snap_size or self.size
        if vg_free(self.vg) < size:
            base.raise_bdev("Not enough free space in %s for a %d MiB snapshot", self.vg, size)
        self._run(lvsnapshot_cmd(self.vg, self.lv, snap_name, size),
                  "Snapshotting LV %s/%s" % (self.vg, self.lv))
        return (self.vg, snap_name)

    def rename(self, new_id: Sequence[Any]) -> None:
        new_vg, new_lv = tuple(new_id)
        if new_vg != self.vg:
            base.raise_bdev("Cannot move LV %s to another volume group (%s)", self.lv, new_vg)
        check_name(new_lv)
        self._run(lvrename_cmd(self.vg, self.lv, new_lv), "Renaming LV %s/%s"
                  % (self.vg, self.lv))
        self.unique_id = (self.vg, new_lv)
        self.lv = new_lv
        self.attach()

    def set_info(self, text: str) -> None:
        """Store ``text`` as the LV's only tag (sanitized to LVM's tag alphabet)."""
        tag = _TAG_CLEAN.sub("_", text)[:128]
        if tag[:1] in ("-", ""):
            tag = "_" + tag[1:]
        self._run(lvchange_tag_cmd(self.vg, self.lv, add=[tag], delete=self._tags()),
                  "Tagging LV %s/%s" % (self.vg, self.lv))

    def _tags(self) -> list[str]:
        result = type(self).runner(lvs_cmd(self.vg, self.lv, fields="lv_tags"))
        if result.failed:
            return []
        return [t for t in result.stdout.strip().split(",") if t]
