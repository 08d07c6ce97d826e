"""LVM: exact command lines, parsing of recorded outputs, driver flows with a fake runner."""

import os

import pytest

from corral import errors, storage
from corral.storage import lvm
from corral.utils.process import RunResult

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "storage")
REPORT = ["--noheadings", "--units=m", "--nosuffix", "--separator=|"]


def fixture(name):
    with open(os.path.join(DATA, name)) as fh:
        return fh.read()


class FakeRunner:
    """Records argv; answers from a {argv[0] or tuple(argv): (rc, stdout, stderr)} table."""

    def __init__(self, answers=None):
        self.calls = []
        self.answers = answers or {}

    def __call__(self, argv, **kwargs):
        self.calls.append(list(argv))
        ans = self.answers.get(tuple(argv), self.answers.get(argv[0], (0, "", "")))
        if callable(ans):
            ans = ans(argv)
        rc, out, err = ans
        return RunResult(list(argv), rc, None, out, err)


@pytest.fixture
def runner(monkeypatch):
    fake = FakeRunner()
    monkeypatch.setattr(lvm.LogicalVolume, "runner", fake)
    monkeypatch.setattr(lvm.LogicalVolume, "check_environment", classmethod(lambda c, p=None:
                                                                           None))
    return fake


# ----- command generation ----------------------------------------------------
def test_lvcreate_cmd():
    assert lvm.lvcreate_cmd("xenvg", "u.disk0", 1024) == \
        ["lvcreate", "-L", "1024m", "-n", "u.disk0", "xenvg"]
    assert lvm.lvcreate_cmd("xenvg", "u.disk0", 1024, stripes=2, pvs=["/dev/sda3"]) == \
        ["lvcreate", "-L", "1024m", "-n", "u.disk0", "-i", "2", "xenvg", "/dev/sda3"]


def test_other_commands():
    assert lvm.lvremove_cmd("xenvg", "lv1") == ["lvremove", "-f", "xenvg/lv1"]
    assert lvm.lvchange_activate_cmd("xenvg", "lv1") == ["lvchange", "-ay", "xenvg/lv1"]
    assert lvm.lvchange_activate_cmd("xenvg", "lv1", False) == ["lvchange", "-an", "xenvg/lv1"]
    assert lvm.lvresize_cmd("xenvg", "lv1", 512) == ["lvresize", "-L", "+512m", "xenvg/lv1"]
    assert lvm.lvresize_cmd("xenvg", "lv1", 512, dryrun=True) == \
        ["lvresize", "-L", "+512m", "--test", "xenvg/lv1"]
    assert lvm.lvrename_cmd("xenvg", "a", "b") == ["lvrename", "xenvg", "a", "b"]
    assert lvm.lvsnapshot_cmd("xenvg", "lv1", "lv1.snap", 100) == \
        ["lvcreate", "-L", "100m", "-s", "-n", "lv1.snap", "xenvg/lv1"]
    assert lvm.lvchange_tag_cmd("xenvg", "lv1", add=["new"], delete=["old"]) == \
        ["lvchange", "--deltag", "old", "--addtag", "new", "xenvg/lv1"]


def test_report_commands():
    assert lvm.lvs_cmd("xenvg", "lv1") == ["lvs"] + REPORT + [
        "-o", "lv_name,vg_name,lv_size,lv_attr,lv_kernel_major,lv_kernel_minor,stripes,devices",
        "xenvg/lv1"]
    assert lvm.lvs_cmd()[-1].startswith("lv_name")
    assert lvm.vgs_cmd(["xenvg"]) == ["vgs"] + REPORT + [
        "-o", "vg_name,vg_size,vg_free,pv_count,vg_attr", "xenvg"]
    assert lvm.pvs_cmd() == ["pvs"] + REPORT + [
        "-o", "pv_name,vg_name,pv_size,pv_free,pv_attr,pv_used"]


@pytest.mark.parametrize("name", ["", "-lv", "a b", "x/y", ".", "..", "lv_mimage_0",
                                  "mysnapshot", "a" * 128])
def test_bad_lv_names(name):
    with pytest.raises(errors.BlockDeviceError):
        lvm.check_name(name)


def test_good_lv_names():
    lvm.check_name("0b7a5f6e-7c2d-4f0e-9d3a-1f2e3d4c5b6a.disk0_data")
    lvm.check_name("a+b_c.d-e")


# ----- parsing ---------------------------------------------------------------
def test_parse_lvs_fixture():
    lvs = lvm.parse_lvs(fixture("lvs.txt"))
    assert [lv.name for lv in lvs][-3:] == ["inactive-lv", "broken-lv", "lost-origin"]
    disk0 = lvs[0]
    assert (disk0.vg, disk0.size, disk0.major, disk0.minor, disk0.stripes) == \
        ("xenvg", 10240.0, 254, 0, 1)
    assert disk0.active and disk0.is_open and not disk0.degraded
    assert disk0.pvs == ["/dev/sda3"]
    assert lvs[1].pvs == ["/dev/sda3", "/dev/sdb1"] and lvs[1].stripes == 2
    assert not lvs[3].active and lvs[3].major == -1
    assert lvs[4].degraded and lvs[4].pvs == ["[unknown]"]
    assert lvs[5].degraded and lvs[5].devices == []


def test_parse_vgs_pvs_fixture():
    vgs = lvm.parse_vgs(fixture("vgs.txt"))
    assert [(v.name, v.size, v.free, v.pv_count) for v in vgs] == \
        [("xenvg", 409600.0, 102400.0, 2), ("probevg", 196.0, 196.0, 1)]
    pvs = lvm.parse_pvs(fixture("pvs.txt"))
    assert [p.name for p in pvs] == ["/dev/sda3", "/dev/sdb1", "/dev/loop0", "/dev/sdc1"]
    assert pvs[0].allocatable and not pvs[3].allocatable and pvs[3].vg == ""


def test_parse_rejects_garbage():
    with pytest.raises(errors.BlockDeviceError, match="Cannot parse LVM output"):
        lvm.parse_vgs("  xenvg|1.00\n")
    with pytest.raises(errors.BlockDeviceError, match="Cannot parse LVM number"):
        lvm.parse_vgs("  xenvg|abc|1|1|wz--n-\n")
    assert lvm.parse_lvs("") == []


def test_storage_units_and_node_volumes():
    assert lvm.vg_storage_units(lvm.parse_vgs(fixture("vgs.txt")))[0] == \
        {"name": "xenvg", "size": 409600, "used": 307200, "free": 102400, "allocatable": True}
    pv = lvm.pv_storage_units(lvm.parse_pvs(fixture("pvs.txt")))
    assert pv[0] == {"name": "/dev/sda3", "vg": "xenvg", "size": 204800, "used": 153600,
                     "free": 51200, "allocatable": True}
    assert pv[3]["allocatable"] is False
    vols = lvm.node_volumes(lvm.parse_lvs(fixture("lvs.txt")))
    data = [v for v in vols if v["name"].endswith("disk0_data")]
    assert data == [
        {"name": data[0]["name"], "vg": "xenvg", "size": 20480, "dev": "/dev/sda3"},
        {"name": data[0]["name"], "vg": "xenvg", "size": 20480, "dev": "/dev/sdb1"}]
    assert vols[-1]["dev"] == "-"


# ----- driver flows ------------------------------------------------------------
VGS_OUT = "  xenvg|4096.00|2048.00|1|wz--n-\n"
LV_ROW = "  lv1|xenvg|1024.00|-wi-a-----|254|3|1|/dev/sda3(0)\n"


def test_create_runs_vgs_lvcreate_lvs(runner):
    runner.answers = {"vgs": (0, VGS_OUT, ""), "lvs": (0, LV_ROW, "")}
    dev = storage.get_device_class("plain").create(("xenvg", "lv1"), [], 1024, {})
    assert [c[0] for c in runner.calls] == ["vgs", "lvcreate", "lvs"]
    assert runner.calls[1] == ["lvcreate", "-L", "1024m", "-n", "lv1", "xenvg"]
    assert dev.dev_path == "/dev/xenvg/lv1"
    assert dev.get_sync_status() == storage.SyncStatus()


def test_create_with_stripes(runner):
    runner.answers = {"vgs": (0, VGS_OUT, ""), "lvs": (0, LV_ROW, "")}
    lvm.LogicalVolume.create(("xenvg", "lv1"), [], 1024, {"stripes": 2})
    assert runner.calls[1] == ["lvcreate", "-L", "1024m", "-n", "lv1", "-i", "2", "xenvg"]


def test_create_refuses_when_vg_full(runner):
    runner.answers = {"vgs": (0, VGS_OUT, "")}
    with pytest.raises(errors.BlockDeviceError, match="Not enough free space.*need 4096"):
        lvm.LogicalVolume.create(("xenvg", "lv1"), [], 4096, {})
    assert [c[0] for c in runner.calls] == ["vgs"]


def test_create_missing_vg(runner):
    with pytest.raises(errors.BlockDeviceError, match="Volume group xenvg not found"):
        lvm.LogicalVolume.create(("xenvg", "lv1"), [], 1, {})


def test_lvcreate_failure_carries_tool_output(runner):
    runner.answers = {"vgs": (0, VGS_OUT, ""),
                      "lvcreate": (3, "", "  /dev/mapper/control: open failed: No such device")}
    with pytest.raises(errors.BlockDeviceError, match="Creating LV xenvg/lv1 failed.*"
                                                      "mapper/control"):
        lvm.LogicalVolume.create(("xenvg", "lv1"), [], 10, {})


def test_create_on_this_machine_reports_environment():
    problem = lvm.LogicalVolume.check_environment()
    if problem is None:
        pytest.skip("this machine has working LVM")
    with pytest.raises(errors.BlockDeviceError, match="Cannot create xenvg/lv1: .*(lvm2|device"
                                                      "-mapper)"):
        lvm.LogicalVolume.create(("xenvg", "lv1"), [], 10, {})


def test_attach_assemble_remove(runner):
    dev = lvm.LogicalVolume(("xenvg", "lv1"), [], 1024, {})
    assert not dev.attach()
    runner.answers = {"lvs": (0, LV_ROW, "")}
    dev.assemble()
    assert runner.calls[-2] == ["lvchange", "-ay", "xenvg/lv1"]
    assert dev.attached and dev.info.minor == 3
    dev.shutdown()
    dev.remove()
    assert runner.calls[-1] == ["lvremove", "-f", "xenvg/lv1"]
    runner.answers = {"lvs": (5, "", "  Failed to find logical volume \"xenvg/lv1\"")}
    n = len(runner.calls)
    dev.remove()  # already gone: no lvremove
    assert [c[0] for c in runner.calls[n:]] == ["lvs"]


def test_degraded_status(runner):
    runner.answers = {"lvs": (0, "  lv1|xenvg|1.00|-wi-a---p-|254|3|1|[unknown](0)\n", "")}
    st = lvm.LogicalVolume(("xenvg", "lv1"), [], 1, {}).get_sync_status()
    assert st.is_degraded and st.ldisk_status == "faulty"


def test_grow_snapshot_rename_setinfo(runner):
    runner.answers = {"lvs": (0, LV_ROW, ""), "vgs": (0, VGS_OUT, ""),
                      ("lvs",) + tuple(REPORT) + ("-o", "lv_tags", "xenvg/lv1"):
                      (0, "  old1,old2\n", "")}
    dev = lvm.LogicalVolume(("xenvg", "lv1"), [], 1024, {})
    dev.grow(512, dryrun=True, backingstore=True)
    assert runner.calls[-1] == ["lvresize", "-L", "+512m", "--test", "xenvg/lv1"]
    assert dev.size == 1024
    dev.grow(512, dryrun=False, backingstore=False)
    assert runner.calls[-1][0] == "lvresize"  # nothing new for the non-backing layer
    dev.grow(512, dryrun=False, backingstore=True)
    assert runner.calls[-1] == ["lvresize", "-L", "+512m", "xenvg/lv1"] and dev.size == 1536
    assert dev.snapshot(snap_size=100) == ("xenvg", "lv1.snap")
    assert runner.calls[-1] == ["lvcreate", "-L", "100m", "-s", "-n", "lv1.snap", "xenvg/lv1"]
    dev.set_info("inst1.example.com disk/0")
    assert runner.calls[-1] == ["lvchange", "--deltag", "old1", "--deltag", "old2",
                                "--addtag", "inst1.example.com_disk/0", "xenvg/lv1"]
    dev.rename(("xenvg", "lv2"))
    assert ["lvrename", "xenvg", "lv1", "lv2"] in runner.calls
    assert dev.unique_id == ("xenvg", "lv2")
    with pytest.raises(errors.BlockDeviceError, match="another volume group"):
        dev.rename(("othervg", "lv2"))


def test_query_helpers(runner):
    runner.answers = {"vgs": (0, fixture("vgs.txt"), ""), "pvs": (0, fixture("pvs.txt"), ""),
                      "lvs": (0, fixture("lvs.txt"), "")}
    assert lvm.vg_free("xenvg") == 102400.0
    assert len(lvm.list_pvs()) == 4
    assert len(lvm.list_lvs("xenvg")) == 6
    assert runner.calls[-1][-1] == "xenvg"
    runner.answers["vgs"] = (5, "", "  Volume group \"nope\" not found")
    with pytest.raises(errors.BlockDeviceError, match="Listing volume groups failed"):
        lvm.list_vgs(["nope"])
