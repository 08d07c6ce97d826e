"""Node side of the storage issue: the exact LVM and DRBD command lines behind
list-storage, modify-storage, repair-storage, the create/replace procedures,
and the environment checks, against recorded tool output."""

import os

import pytest

from corral import errors
from corral.backend import disks as bdisks
from corral.backend import storage_units
from corral.storage import base, drbd, lvm
from corral.utils.process import RunResult

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "storage")
SECRET = "d9a5f0c2b9e14c8e8f0a2b3c4d5e6f708192a3b4"
PROC_84 = ("version: 8.4.11 (api:1/proto:86-101)\nsrcversion: X\n"
           " 0: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----\n")


def load(name):
    with open(os.path.join(DATA, name)) as fh:
        return fh.read()


class Recorder:
    """A tool runner answering by the first two argv words (rc, stdout, stderr)."""

    def __init__(self, answers=None):
        self.calls, self.answers = [], answers or {}

    def __call__(self, argv, **kwargs):
        self.calls.append(list(argv))
        answer = self.answers.get(tuple(argv[:2])) or self.answers.get(argv[0]) or (0, "", "")
        rc, out, err = answer(argv) if callable(answer) else answer
        return RunResult(list(argv), rc, None, out, err)


@pytest.fixture
def lvm_runner(monkeypatch):
    runner = Recorder({"vgs": (0, load("vgs.txt"), ""), "pvs": (0, load("pvs.txt"), ""),
                       "lvs": (0, load("lvs.txt"), "")})
    monkeypatch.setattr(lvm.LogicalVolume, "runner", runner)
    return runner


def test_list_storage_lvm_rows(lvm_runner):
    vgs = storage_units.storage_list("lvm-vg")
    assert vgs and set(vgs[0]) == {"name", "size", "used", "free", "allocatable"}
    assert vgs[0]["size"] == vgs[0]["used"] + vgs[0]["free"]
    assert lvm_runner.calls[0] == ["vgs", "--noheadings", "--units=m", "--nosuffix",
                                   "--separator=|", "-o", lvm.VGS_FIELDS]
    pvs = storage_units.storage_list("lvm-pv")
    assert all(isinstance(p["allocatable"], bool) for p in pvs)
    only = storage_units.storage_list("lvm-vg", name=vgs[0]["name"])
    assert only == vgs[:1]
    assert storage_units.storage_list("lvm-vg", name="nosuch") == []


def test_list_storage_file(tmp_path):
    (tmp_path / "inst").mkdir()
    (tmp_path / "inst" / "d0").write_bytes(b"x" * 2 * 1024 * 1024)
    rows = storage_units.storage_list("file", paths=[str(tmp_path)])
    assert rows[0]["name"] == str(tmp_path) and rows[0]["used"] == 2
    assert rows[0]["allocatable"] is True


def test_volumes_and_lv_list(lvm_runner):
    rows = storage_units.node_volumes()
    assert rows and set(rows[0]) == {"name", "vg", "size", "dev"}
    states = storage_units.lv_list()
    first = lvm.parse_lvs(load("lvs.txt"))[0]
    assert states["%s/%s" % (first.vg, first.name)] == {"size": int(first.size),
                                                       "active": first.active}


def test_modify_storage_pvchange(lvm_runner):
    storage_units.storage_modify("lvm-pv", "/dev/loop7", {"allocatable": False})
    assert lvm_runner.calls[-1] == ["pvchange", "-x", "n", "/dev/loop7"]
    storage_units.storage_modify("lvm-pv", "/dev/loop7", {"allocatable": True})
    assert lvm_runner.calls[-1] == ["pvchange", "-x", "y", "/dev/loop7"]
    with pytest.raises(errors.BlockDeviceError, match="does not support changing allocatable"):
        storage_units.storage_modify("lvm-vg", "xenvg", {"allocatable": False})
    lvm_runner.answers["pvchange"] = (5, "", "  Failed to find physical volume \"/dev/x\".")
    with pytest.raises(errors.BlockDeviceError, match="Failed to find physical volume"):
        storage_units.storage_modify("lvm-pv", "/dev/x", {"allocatable": True})


def test_repair_storage_retries_with_force(lvm_runner):
    lvm_runner.answers["vgreduce"] = lambda argv: (
        (5, "", "  WARNING: Couldn't find device. Use vgreduce --removemissing --force")
        if "--force" not in argv else (0, "  Wrote out consistent volume group xenvg.", ""))
    out = storage_units.storage_repair("lvm-vg", "xenvg")
    assert [c for c in lvm_runner.calls if c[0] == "vgreduce"] == [
        ["vgreduce", "--removemissing", "xenvg"],
        ["vgreduce", "--removemissing", "--force", "xenvg"]]
    assert "consistent volume group" in out
    lvm_runner.answers["vgreduce"] = (0, "  Wrote out consistent volume group xenvg.", "")
    lvm_runner.calls.clear()
    storage_units.storage_repair("lvm-vg", "xenvg")
    assert [c[0] for c in lvm_runner.calls] == ["vgreduce", "vgs"]
    lvm_runner.answers["vgs"] = (0, "  Couldn't find device with uuid abc.\n", "")
    with pytest.raises(errors.BlockDeviceError, match="still inconsistent"):
        storage_units.storage_repair("lvm-vg", "xenvg")
    with pytest.raises(errors.BlockDeviceError, match="cannot be repaired"):
        storage_units.storage_repair("lvm-pv", "/dev/sda")


def test_storage_check_says_what_is_missing(monkeypatch, lvm_runner):
    monkeypatch.setattr(drbd, "PROC_DRBD", "/nonexistent/proc_drbd")
    problems = storage_units.storage_check(["drbd"])
    assert any("drbd: DRBD kernel module not loaded" in p and "install drbd-utils" in p
               for p in problems)
    monkeypatch.setattr(lvm, "check_device_mapper", lambda: None)
    monkeypatch.setattr(base, "missing_tools", lambda tools: [])
    vg = lvm.parse_vgs(load("vgs.txt"))[0]
    assert storage_units.storage_check(["plain"], {vg.name: 1}) == []
    problems = storage_units.storage_check(["plain"], {vg.name: int(vg.free) + 1})
    assert problems == ["plain: not enough free space in volume group %s: %d MiB needed, %d"
                        " MiB free" % (vg.name, int(vg.free) + 1, int(vg.free))]


def test_storage_verify_facts(monkeypatch, lvm_runner):
    monkeypatch.setattr(drbd, "PROC_DRBD", "/nonexistent/proc_drbd")
    monkeypatch.setattr(lvm.LogicalVolume, "check_environment",
                        classmethod(lambda cls, params=None: None))
    facts = storage_units.storage_verify("nosuchvg", drbd=True)
    assert facts["lvm"] == "volume group nosuchvg not found; create it with vgcreate"
    assert facts["drbd"].startswith("DRBD kernel module not loaded")


# ---- DRBD procedures ---------------------------------------------------------------------

def _drbd_disk(standalone=False):
    children = [{"dev_type": "plain", "logical_id": ["xenvg", "a.disk0_%s" % kind],
                 "size": size, "params": {}, "children": []}
                for kind, size in (("data", 1024), ("meta", 128))]
    params = {"drbd_nodes": {"u1": ["node1", "192.0.2.1"], "u2": ["node2", "192.0.2.2"]},
              "resync-rate": 61440}
    if standalone:
        params["standalone"] = True
    return {"dev_type": "drbd", "logical_id": ["u1", "u2", 11000, 0, 3, SECRET],
            "size": 1024, "params": params, "children": children, "iv_name": "disk/0"}


@pytest.fixture
def drbd_node(tmp_path, monkeypatch):
    """node1 with a fake 8.4 /proc/drbd and LVM, tools present, one recorder for all."""
    proc = tmp_path / "proc_drbd"
    proc.write_text(PROC_84)
    monkeypatch.setattr(drbd, "PROC_DRBD", str(proc))
    monkeypatch.setattr(base, "missing_tools", lambda tools: [])
    monkeypatch.setattr(lvm, "check_device_mapper", lambda: None)
    monkeypatch.setenv("CORRAL_HOSTNAME", "node1")
    lvs = ("  a.disk0_data|xenvg|1024.00|-wi-a-----|254|0|1|/dev/loop0(0)\n"
           "  a.disk0_meta|xenvg|128.00|-wi-a-----|254|1|1|/dev/loop0(256)\n")
    runner = Recorder({"lvs": (0, lvs, ""), "vgs": (0, load("vgs.txt"), ""),
                       ("drbdsetup", "show"): (0, "", "")})
    monkeypatch.setattr(base.BlockDev, "runner", runner)
    monkeypatch.setattr(lvm.LogicalVolume, "runner", runner)
    monkeypatch.setattr(drbd.DRBD8Dev, "runner", runner)
    return runner


def test_drbd_add_and_remove_children_commands(drbd_node):
    bdisks.drbd_remove_children([_drbd_disk()])
    assert drbd_node.calls[-1] == ["drbdsetup", "detach", "0"]
    drbd_node.calls.clear()
    bdisks.drbd_add_children([_drbd_disk()])
    cmds = [c for c in drbd_node.calls if c[0] in ("drbdsetup", "drbdmeta")]
    assert cmds == [
        ["drbdmeta", "--force", "/dev/drbd0", "v08", "/dev/xenvg/a.disk0_meta",
         "flex-external", "create-md"],
        ["drbdmeta", "/dev/drbd0", "v08", "/dev/xenvg/a.disk0_meta", "flex-external",
         "apply-al"],
        ["drbdsetup", "attach", "0", "/dev/xenvg/a.disk0_data", "/dev/xenvg/a.disk0_meta",
         "flexible", "--on-io-error=detach", "--size", "1024m"]]


def test_drbd_net_commands(drbd_node):
    bdisks.drbd_disconnect_net([_drbd_disk()])
    assert drbd_node.calls[-1] == ["drbdsetup", "disconnect", "ipv4:192.0.2.1:11000",
                                   "ipv4:192.0.2.2:11000"]
    with pytest.raises(errors.BlockDeviceError, match="not a DRBD device"):
        bdisks.drbd_attach_net([{"dev_type": "plain", "logical_id": ["xenvg", "x"],
                                 "size": 1, "params": {}}])


def test_drbd_sync_status_from_proc(drbd_node, monkeypatch):
    monkeypatch.setattr(drbd.DRBD8Dev, "attach", lambda self: True)
    status = bdisks.blockdev_sync_status([_drbd_disk()])[0]
    assert status == {"sync_percent": None, "estimated_time": None, "is_degraded": False,
                      "ldisk_status": "okay"}


def test_create_drbd_tree_on_the_primary(drbd_node, monkeypatch):
    """LVs first, then metadata, then the minor set up and forced primary."""
    created_lvs = []
    monkeypatch.setattr(lvm.LogicalVolume, "create", classmethod(
        lambda cls, lid, ch, size, params, excl_stor=False:
        created_lvs.append(tuple(lid)) or cls(lid, ch, size, params)))
    monkeypatch.setattr(lvm.LogicalVolume, "set_info", lambda self, text: None)
    monkeypatch.setattr(drbd.DRBD8Dev, "create", classmethod(
        lambda cls, lid, ch, size, params, excl_stor=False: cls(lid, ch, size, params)))
    calls = []
    monkeypatch.setattr(drbd.DRBD8Dev, "assemble", lambda self: calls.append(
        ("assemble", self.minor, self.local_addr is not None)))
    monkeypatch.setattr(drbd.DRBD8Dev, "open", lambda self, force=False: calls.append(
        ("open", self.minor, force)))
    bdisks.blockdev_create([_drbd_disk()], info="instance i1", on_primary=True)
    assert created_lvs == [("xenvg", "a.disk0_data"), ("xenvg", "a.disk0_meta")]
    assert calls == [("assemble", 0, True), ("open", 0, True)]
    calls.clear()
    bdisks.blockdev_create([_drbd_disk(standalone=True)], on_primary=False)
    assert calls == [("assemble", 0, False)]
