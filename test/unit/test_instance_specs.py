"""Validation of disk and NIC specifications and disk generation (pure, before anything exists)."""

import os

import pytest

from corral import errors, objects
from corral.cmdlib import instance_create as ic
from corral.cmdlib import instance_set_params as isp
from corral.cmdlib import instance_storage as ist


@pytest.mark.parametrize("spec,match", [
    ({"size": 0}, "must be a positive"),
    ({"size": -4}, "must be a positive"),
    ({"size": "garbage"}, "Invalid disk size 'garbage'"),
    ({"size": 1.5}, "Invalid disk size"),
    ({"size": True}, "Invalid disk size"),
    ({}, "Missing disk size"),
    ({"size": 10, "mode": "rx"}, "Invalid disk access mode 'rx'"),
    ({"size": 10, "frob": 1}, "Unknown parameter"),
])
def test_bad_disk_specs(spec, match):
    with pytest.raises(errors.OpPrereqError, match=match):
        ist.check_disk_spec(spec, 0, "file")


def test_disk_spec_defaults_and_adoption():
    assert ist.check_disk_spec({"size": "64"}, 0, "file") == {"size": 64, "mode": "rw"}
    assert ist.check_disk_spec({"adopt": "/dev/sdb"}, 0, "blockdev")["size"] == 0
    with pytest.raises(errors.OpPrereqError, match="requires disk adoption"):
        ist.check_disk_spec({"size": 10}, 0, "blockdev")
    with pytest.raises(errors.OpPrereqError, match="not supported for the 'file'"):
        ist.check_disk_spec({"adopt": "/dev/sdb"}, 0, "file")


def _cluster(tmp_path):
    return objects.Cluster(file_storage_dir=str(tmp_path / "file"),
                           shared_file_storage_dir=str(tmp_path / "shared"),
                           volume_group_name="xenvg")


def test_file_disks_live_in_the_instance_dir(tmp_path):
    disks = ist.generate_disks(_cluster(tmp_path), "file", "inst1.example.com",
                               [{"size": 64, "mode": "rw"}, {"size": 32, "mode": "ro"}], "pn")
    assert [d.iv_name for d in disks] == ["disk/0", "disk/1"]
    for disk in disks:
        driver, path = disk.logical_id
        assert driver == "loop" and disk.nodes == ["pn"] and disk.dev_type == "file"
        assert os.path.dirname(path) == str(tmp_path / "file" / "inst1.example.com")
    assert disks[1].mode == "ro" and disks[1].size == 32
    assert len({d.logical_id[1] for d in disks}) == 2
    shared = ist.generate_disks(_cluster(tmp_path), "sharedfile", "i", [{"size": 1}], "pn",
                                file_subdir="sub")
    assert shared[0].logical_id[1].startswith(str(tmp_path / "shared" / "sub" / "i") + "/")


@pytest.mark.parametrize("subdir", ["../../etc", "/etc", "a/../../x"])
def test_file_dir_cannot_leave_the_storage_dir(tmp_path, subdir):
    with pytest.raises(errors.OpPrereqError, match="not inside the cluster's file storage"):
        ist.generate_disks(_cluster(tmp_path), "file", "i", [{"size": 1}], "pn",
                           file_subdir=subdir)


def test_other_templates(tmp_path):
    cluster = _cluster(tmp_path)
    assert ist.generate_disks(cluster, "diskless", "i", [], "pn") == []
    with pytest.raises(errors.OpPrereqError, match="Diskless instance but disk"):
        ist.generate_disks(cluster, "diskless", "i", [{"size": 1}], "pn")
    block = ist.generate_disks(cluster, "blockdev", "i", [{"adopt": "/dev/sdz", "size": 0}], "p")
    assert block[0].logical_id == ["manual", "/dev/sdz"]
    plain = ist.generate_disks(cluster, "plain", "i", [{"size": 4}], "p", base_index=2)
    assert plain[0].logical_id[0] == "xenvg" and plain[0].logical_id[1].endswith(".disk2")
    assert plain[0].iv_name == "disk/2"
    with pytest.raises(errors.OpPrereqError, match="needs a secondary node"):
        ist.generate_disks(cluster, "drbd", "i", [{"size": 4}], "p")


def test_nic_specs():
    assert ic.check_nic_spec({"bridge": "br0"}, 0) == {"link": "br0"}
    with pytest.raises(errors.OpPrereqError, match="Unknown parameter"):
        ic.check_nic_spec({"colour": "red"}, 0)
    with pytest.raises(errors.OpPrereqError, match="Invalid NIC mode 'bent'"):
        ic.check_nic_spec({"mode": "bent"}, 1)
    assert ic.nic_ip("none", 0, None) is None and ic.nic_ip(None, 0, None) is None
    assert ic.nic_ip("auto", 0, "192.0.2.4") == "192.0.2.4"
    with pytest.raises(errors.OpPrereqError, match="name checks have been skipped"):
        ic.nic_ip("auto", 0, None)
    with pytest.raises(errors.OpPrereqError, match="Invalid IP address '10.1'"):
        ic.nic_ip("10.1", 0, None)


def test_nic_params_checks():
    cluster = objects.Cluster()
    assert ic.check_nic_params(cluster, {}, None, 0)["link"] == "xen-br0"
    with pytest.raises(errors.OpPrereqError, match="Routed nic mode requires an ip"):
        ic.check_nic_params(cluster, {"mode": "routed"}, None, 0)
    assert ic.check_nic_params(cluster, {"mode": "routed"}, "10.0.0.1", 0)["mode"] == "routed"


def test_modification_lists():
    assert isp.normalize_mods([["add", {"size": 1}], [0, {"mode": "ro"}], ["remove", {}]],
                              "disk") == [("add", -1, {"size": 1}), ("modify", 0, {"mode": "ro"}),
                                          ("remove", -1, {})]
    with pytest.raises(errors.OpPrereqError, match="No parameters accepted"):
        isp.normalize_mods([["remove", 0, {"size": 1}]], "disk")
    with pytest.raises(errors.OpPrereqError, match="Unsupported disk operation 'attach'"):
        isp.normalize_mods([["attach", 0, {}]], "disk")


def test_find_item():
    items = [objects.Disk(name="a", uuid="u0"), objects.Disk(name="b", uuid="u1")]
    assert isp.find_item(items, -1, "disk") == 1
    assert isp.find_item(items, -1, "disk", for_add=True) == 2
    assert isp.find_item(items, "b", "disk") == 1 and isp.find_item(items, "u0", "disk") == 0
    assert isp.find_item(items, "1", "disk") == 1
    with pytest.raises(errors.OpPrereqError, match="Invalid disk index 5"):
        isp.find_item(items, 5, "disk")
    with pytest.raises(errors.OpPrereqError, match="Cannot find disk 'zz'"):
        isp.find_item(items, "zz", "disk")


def test_merge_params_default_removes():
    assert isp.merge_params({"a": 1, "b": 2}, {"a": "default", "b": None, "c": 3}) == {"c": 3}
