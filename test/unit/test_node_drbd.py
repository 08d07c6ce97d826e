"""gnt-node list-drbd's rows: computed on the master from the configuration alone."""

import pytest

from corral import constants, errors, objects
from corral.cmdlib.node_drbd import node_drbd_rows
from test_config import new_config


def _drbd(idx: int, node_a: str, node_b: str, minor_a: int, minor_b: int) -> objects.Disk:
    """A DRBD disk laid out as instance_storage._drbd_disk + allocate_drbd_ids make it."""
    lvs = [objects.Disk(uuid="lv%d%s" % (idx, kind), dev_type=constants.DT_PLAIN,
                        logical_id=["xenvg", "x.disk%d_%s" % (idx, kind)], size=128,
                        nodes=[node_a, node_b]) for kind in ("data", "meta")]
    return objects.Disk(uuid="drbd%d%s%s" % (idx, node_a, minor_a), dev_type=constants.DT_DRBD8,
                        logical_id=[node_a, node_b, 11000 + idx, minor_a, minor_b, "secret"],
                        children=lvs, iv_name="disk/%d" % idx, size=1024,
                        nodes=[node_a, node_b])


@pytest.fixture
def cfg(tmp_path):
    writer = new_config(tmp_path)
    for uuid, name, ip in (("n2", "node2.example.com", "10.0.0.2"),
                           ("n3", "node3.example.com", "10.0.0.3")):
        writer.add_node(objects.Node(uuid=uuid, name=name, primary_ip=ip, group="g1"))
    # web: primary n1, secondary n2, two disks; db: primary n3, secondary n1 (reversed
    # minors so that sorting is visible); plain: LVs only, ignored.
    writer.add_instance(objects.Instance(
        name="web.example.com", primary_node="n1", secondary_nodes=["n2"],
        disk_template=constants.DT_DRBD8, disks=[_drbd(0, "n1", "n2", 2, 0),
                                                 _drbd(1, "n1", "n2", 0, 1)]))
    writer.add_instance(objects.Instance(
        name="db.example.com", primary_node="n3", secondary_nodes=["n1"],
        disk_template=constants.DT_DRBD8, disks=[_drbd(0, "n3", "n1", 0, 1)]))
    writer.add_instance(objects.Instance(
        name="plain.example.com", primary_node="n2", disk_template=constants.DT_PLAIN,
        disks=[objects.Disk(uuid="p0", dev_type=constants.DT_PLAIN, iv_name="disk/0",
                            logical_id=["xenvg", "p.disk0"], size=512, nodes=["n2"])]))
    return writer


def test_rows_sorted_by_minor_with_roles_and_peers(cfg):
    assert node_drbd_rows(cfg, "node1.example.com") == [
        ["node1.example.com", 0, "web.example.com", "disk/1", "primary", "node2.example.com"],
        ["node1.example.com", 1, "db.example.com", "disk/0", "secondary", "node3.example.com"],
        ["node1.example.com", 2, "web.example.com", "disk/0", "primary", "node2.example.com"],
    ]


def test_secondary_node_and_non_drbd_instance_ignored(cfg):
    # node2 is primary of the plain instance: its LV does not show up.
    assert node_drbd_rows(cfg, "node2") == [
        ["node2.example.com", 0, "web.example.com", "disk/0", "secondary", "node1.example.com"],
        ["node2.example.com", 1, "web.example.com", "disk/1", "secondary", "node1.example.com"],
    ]
    assert node_drbd_rows(cfg, "n3") == [
        ["node3.example.com", 0, "db.example.com", "disk/0", "primary", "node1.example.com"]]


def test_node_without_drbd_disks_has_no_rows(cfg):
    cfg.add_node(objects.Node(uuid="n4", name="node4.example.com", primary_ip="10.0.0.4",
                              group="g1"))
    assert node_drbd_rows(cfg, "node4.example.com") == []


def test_unallocated_minors_are_skipped(cfg):
    inst = cfg.get_instance_by_name("db.example.com")
    inst.disks.append(objects.Disk(uuid="new", dev_type=constants.DT_DRBD8, iv_name="disk/1",
                                   logical_id=["n3", "n1", None, None, None, None], size=1))
    assert [r[3] for r in node_drbd_rows(cfg, "node3")] == ["disk/0"]


def test_unknown_node(cfg):
    with pytest.raises(errors.OpPrereqError, match="Node 'nosuch' not known") as err:
        node_drbd_rows(cfg, "nosuch")
    assert err.value.args[1] == errors.ECODE_NOENT
