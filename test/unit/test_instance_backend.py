"""Node-side instance and disk procedures against the fake hypervisor and file storage."""

import os

import pytest

from corral import errors, serializer
from corral.backend import disks as bdisks
from corral.backend import instance as binst
from corral.backend import node as bnode


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_ROOT", str(tmp_path))
    return tmp_path


def _disk(root, name, size=4, subdir="inst1"):
    base = str(root / "file")
    return {"dev_type": "file", "logical_id": ["loop", os.path.join(base, subdir, name)],
            "size": size, "params": {"allowed_dirs": [base]}, "uuid": name, "iv_name": name,
            "mode": "rw", "children": []}


def _spec(name="inst1"):
    return {"name": name, "uuid": "u-" + name, "hypervisor": "fake", "hvparams": {},
            "beparams": {"maxmem": 128, "vcpus": 1}, "nics": []}


def test_create_is_all_or_nothing(root):
    good = _disk(root, "d0")
    bad = dict(_disk(root, "d1"), logical_id=["loop", "/etc/corral-test-evil"])
    with pytest.raises(errors.BlockDeviceError, match="d1.*not inside the allowed"):
        bdisks.blockdev_create([good, bad])
    assert not os.path.exists(good["logical_id"][1])
    paths = bdisks.blockdev_create([good])
    assert paths == [good["logical_id"][1]] and os.path.getsize(paths[0]) == 4 << 20
    with pytest.raises(errors.BlockDeviceError, match="already exists"):
        bdisks.blockdev_create([good])
    assert bdisks.blockdev_getsize([good, _disk(root, "missing")]) == [4, None]
    bdisks.blockdev_grow(good, 4, dryrun=False, backingstore=True)
    assert os.path.getsize(paths[0]) == 8 << 20
    bdisks.blockdev_remove([good])
    bdisks.blockdev_remove([good])  # idempotent
    assert not os.path.exists(os.path.dirname(paths[0]))


def test_rename_moves_files(root):
    disk = _disk(root, "d0")
    bdisks.blockdev_create([disk])
    new_path = str(root / "file" / "inst2" / "d0")
    assert bdisks.blockdev_rename([[disk, ["loop", new_path]]]) == [["loop", new_path]]
    assert os.path.exists(new_path) and not os.path.exists(str(root / "file" / "inst1"))


def test_start_stop_info_with_fake(root):
    disk = _disk(root, "d0")
    bdisks.blockdev_create([disk])
    binst.instance_start(_spec(), [disk])
    info = binst.instance_info("fake", "inst1")
    assert info["memory"] == 128 and info["state"] == "running"
    running = serializer.loads(binst.all_instances_info(["fake"]).text)
    assert set(running) == {"inst1"} and running["inst1"]["hypervisor"] == "fake"
    assert binst.instance_list(["fake"]) == ["inst1"]
    assert bnode.node_verify({"hypervisors": ["fake"]})["instances"] == ["inst1"]
    with pytest.raises(errors.HypervisorError, match="already running"):
        binst.instance_start(_spec(), [disk])
    binst.instance_reboot(_spec(), [disk], "hard")
    binst.instance_shutdown("fake", "inst1", timeout=5)
    binst.instance_shutdown("fake", "inst1", timeout=5)
    assert binst.instance_info("fake", "inst1") is None
    with pytest.raises(errors.HypervisorError, match="not running"):
        binst.instance_reboot(_spec(), [disk], "soft")


def test_start_with_missing_disk_fails(root):
    with pytest.raises(errors.BlockDeviceError, match="Cannot activate disk d9"):
        binst.instance_start(_spec(), [_disk(root, "d9")])
    assert binst.instance_info("fake", "inst1") is None


def test_node_checks_report_everything(root):
    out = binst.instance_node_checks("fake", {"migration_mode": "sideways"}, "nosuch-os",
                                     ["nosuch-br0"], True)
    assert "migration_mode" in out["hv_error"]
    assert out["os"]["valid"] is False and out["missing_bridges"] == ["nosuch-br0"]
    assert isinstance(out["memory_free"], int)
    quiet = binst.instance_node_checks("fake")
    assert quiet == {"os": None, "hv_error": None, "missing_bridges": [], "memory_free": None}
    assert binst.bridges_exist(["../x", ""]) == ["../x", ""]


def test_os_install_runs_create_with_disk_env(root, tmp_path, monkeypatch):
    osdir = tmp_path / "osdefs" / "recorder"
    osdir.mkdir(parents=True)
    (osdir / "ganeti_api_version").write_text("20\n")
    (osdir / "parameters.list").write_text("")
    for script in ("create", "import", "export", "rename", "verify"):
        (osdir / script).write_text("#!/bin/sh\nenv > \"$DISK_0_PATH.env\"\n"
                                    "[ \"$OSP_FAIL\" = yes ] && { echo boom >&2; exit 3; }\n"
                                    "exit 0\n")
        (osdir / script).chmod(0o755)
    monkeypatch.setenv("CORRAL_OS_SEARCH_PATH", str(tmp_path / "osdefs"))
    disk = _disk(root, "d0")
    bdisks.blockdev_create([disk])
    inst = {"name": "inst1", "uuid": "u1", "os": "recorder", "primary_node": "node1",
            "secondary_nodes": []}
    binst.instance_os_add(inst, [disk], [], "fake", {}, {"maxmem": 128}, {})
    env = open(disk["logical_id"][1] + ".env").read()
    assert "DISK_0_PATH=%s\n" % disk["logical_id"][1] in env
    assert "DISK_0_BACKEND_TYPE=file:loop" in env and "INSTANCE_NAME=inst1" in env
    with pytest.raises(errors.OpExecError, match="(?s)exit code 3.*boom"):
        binst.instance_os_add(inst, [disk], [], "fake", {}, {}, {"fail": "yes"})
