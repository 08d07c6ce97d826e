"""Node side of storage-unit queries and changes (gnt-node list-storage, volumes,
modify-storage, repair-storage) and the storage checks behind verify and create.

A storage unit is one LVM volume group (``lvm-vg``), one LVM physical volume
(``lvm-pv``) or one storage directory (``file``/``sharedfile``).  Sizes are MiB.
The LVM tools run through ``lvm.LogicalVolume.runner`` so that tests record
the exact command lines; nothing here runs a shell.
"""

from typing import Any

from corral import errors, storage
from corral.storage import drbd, lvm
from corral.utils import process

ST_LVM_VG = "lvm-vg"
ST_LVM_PV = "lvm-pv"
ST_FILE = "file"
ST_SHARED_FILE = "sharedfile"
# What `gnt-node modify-storage` may change, per type (Ganeti: only PV allocatability).
MODIFIABLE = {ST_LVM_PV: frozenset(["allocatable"])}
# What `gnt-node repair-storage` can repair, per type.
REPAIRABLE = frozenset([ST_LVM_VG])


# ---- pure command builders ------------------------------------------------------------

def pvchange_allocatable_cmd(pv: str, allocatable: bool) -> list[str]:
    return ["pvchange", "-x", "y" if allocatable else "n", pv]


def vgreduce_removemissing_cmd(vg: str, force: bool = False) -> list[str]:
    return ["vgreduce", "--removemissing"] + (["--force"] if force else []) + [vg]


def _run(argv: list[str]) -> process.RunResult:
    return lvm.LogicalVolume.runner(argv)


# ---- queries ------------------------------------------------------------------------------

def storage_list(storage_type: str, name: str | None = None,
                 paths: list | None = None) -> list[dict]:
    """The rows (name, size, used, free, allocatable) of ``storage_type`` on this node.

    ``paths`` are the storage directories for ``file``/``sharedfile``; ``name``
    keeps only the unit of that name.  BlockDeviceError with the tool's words if
    the type cannot be queried here (e.g. no LVM).
    """
    rows = storage.list_storage_units(storage_type, [str(p) for p in paths or []])
    out = []
    for row in rows:
        if name is not None and row.get("name") != name:
            continue
        out.append({"name": row["name"], "size": row.get("size"), "used": row.get("used"),
                    "free": row.get("free"), "allocatable": bool(row.get("allocatable", True))})
    return out


def node_volumes(vg: str | None = None) -> list[dict]:
    """``gnt-node volumes`` rows of this node: one per (LV, PV): name, vg, size, dev."""
    return lvm.node_volumes(lvm.list_lvs(vg or None))


def lv_list(vg: str | None = None) -> dict[str, dict]:
    """{"vg/lv": {"size": MiB, "active": bool}} of this node's logical volumes."""
    return {"%s/%s" % (lv.vg, lv.name): {"size": int(lv.size), "active": lv.active}
            for lv in lvm.list_lvs(vg or None)}


# ---- changes --------------------------------------------------------------------------------

def storage_modify(storage_type: str, name: str, changes: dict) -> None:
    """Apply ``changes`` to one unit (only ``allocatable`` of an LVM PV can change).

    Idempotent: setting a PV to its current allocatability is harmless to LVM.
    """
    allowed = MODIFIABLE.get(storage_type, frozenset())
    bad = sorted(set(changes) - allowed)
    if bad:
        raise errors.BlockDeviceError("Storage type %s does not support changing %s (modifiable:"
                                  " %s)" % (storage_type, ", ".join(bad),
                                            ", ".join(sorted(allowed)) or "nothing"))
    if "allocatable" in changes:
        result = _run(pvchange_allocatable_cmd(name, bool(changes["allocatable"])))
        if result.failed:
            raise errors.BlockDeviceError("Changing physical volume %s failed: %s" %
                                      (name, result.describe()))


def storage_repair(storage_type: str, name: str) -> str:
    """Make a volume group consistent again (drop missing PVs); the tools' output.

    ``vgreduce --removemissing`` is retried with ``--force`` when LVM asks for
    it (newer LVM refuses to drop PVs holding LV segments without it).  Older
    LVM exits non-zero even when the VG was already consistent, so success is
    judged by listing the VG afterwards.
    """
    if storage_type not in REPAIRABLE:
        raise errors.BlockDeviceError("Storage type %s cannot be repaired (repairable: %s)" %
                                  (storage_type, ", ".join(sorted(REPAIRABLE))))
    lvm.check_name(name, "volume group")
    first = _run(vgreduce_removemissing_cmd(name))
    output = first.output
    if "Wrote out consistent volume group" not in output or \
            "--removemissing --force" in output:
        forced = _run(vgreduce_removemissing_cmd(name, force=True))
        output += "\n" + forced.output
    check = _run(lvm.vgs_cmd([name]))
    if check.failed or "Couldn't find device with uuid" in check.output:
        raise errors.BlockDeviceError("Volume group %s is still inconsistent after vgreduce: %s"
                                  % (name, check.describe() if check.failed else output))
    return output.strip()


# ---- checks -----------------------------------------------------------------------------------

def storage_check(dev_types: list, vgs: dict | None = None, params: dict | None = None
                  ) -> list[str]:
    """Why disks of ``dev_types`` cannot be created here (empty list: they can).

    ``vgs`` maps a volume group to the MiB the new disks need in it; a missing
    VG or too little free space is a problem too.  Messages say what to install,
    load or free, e.g. "drbd: DRBD kernel module not loaded (...)".
    """
    problems = storage.verify_environment([str(t) for t in dev_types], params)
    if problems or not vgs:
        return problems
    for vg, needed in sorted(vgs.items()):
        try:
            free = lvm.vg_free(vg)
        except errors.GenericError as err:
            problems.append("plain: %s" % (err.args[0] if err.args else err))
            continue
        if free < needed:
            problems.append("plain: not enough free space in volume group %s: %d MiB needed,"
                            " %d MiB free" % (vg, needed, int(free)))
    return problems


def storage_verify(vg_name: str = "", drbd: bool = False, drbd_helper: str = "") -> dict:
    """Facts for cluster verify (ENODELVM, ENODEDRBD, ENODEDRBDHELPER).

    ``lvm``: None when the volume group is usable, else the problem;
    ``vg_size``/``vg_free``; with ``drbd``: ``drbd`` (None or the problem),
    ``drbd_minors`` (minors in use), ``drbd_version`` and ``drbd_helper``
    (the module's usermode helper, compared by the master).
    """
    out: dict[str, Any] = {"lvm": None, "vg_size": None, "vg_free": None}
    if vg_name:
        out.update(_vg_facts(vg_name))
    if drbd:
        out.update(_drbd_facts())
        if drbd_helper and out["drbd"] is None and out["drbd_helper"] != drbd_helper:
            out["drbd_helper_problem"] = (
                "the drbd module's usermode helper is %r, the cluster's is %r" %
                (out["drbd_helper"], drbd_helper))
    return out


def _vg_facts(vg_name: str) -> dict:
    problem = lvm.LogicalVolume.check_environment()
    if problem:
        return {"lvm": problem}
    try:
        found = [v for v in lvm.list_vgs([vg_name]) if v.name == vg_name]
    except errors.GenericError as err:
        return {"lvm": "cannot list volume group %s: %s" % (vg_name, err.args[0])}
    if not found:
        return {"lvm": "volume group %s not found; create it with vgcreate" % vg_name}
    return {"vg_size": int(found[0].size), "vg_free": int(found[0].free)}


def _drbd_facts() -> dict:
    problem = drbd.check_drbd_environment()
    if problem:
        return {"drbd": problem, "drbd_minors": [], "drbd_version": None,
                "drbd_helper": None}
    proc = drbd.read_proc_drbd()
    return {"drbd": None, "drbd_minors": proc.used_minors(), "drbd_version": str(proc.version),
            "drbd_helper": drbd.get_usermode_helper()}
