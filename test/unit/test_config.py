"""The configuration writer: persistence, serial numbers, lookups, reservations."""

import json
import os

import pytest

from corral import config, errors, objects


def new_config(tmp_path) -> config.ConfigWriter:
    """A one-node configuration (master n1 in group g1), written under ``tmp_path``."""
    cluster = objects.Cluster(uuid="c-uuid", cluster_name="cluster.example.com",
                              mac_prefix="aa:00:00")
    master = objects.Node(uuid="n1", name="node1.example.com", primary_ip="10.0.0.1",
                          secondary_ip="10.0.0.1", master_candidate=True)
    group = objects.NodeGroup(uuid="g1", name="default")
    return config.ConfigWriter.create(str(tmp_path / "config.data"), cluster, master, group)


@pytest.fixture
def cfg(tmp_path):
    return new_config(tmp_path)


def test_written_atomically_with_serial(cfg, tmp_path):
    path = str(tmp_path / "config.data")
    first = json.load(open(path))["serial_no"]
    cluster = cfg.get_cluster_info()
    cluster.tags.append("x")
    cfg.update(cluster)
    data = json.load(open(path))
    assert data["serial_no"] == first + 1
    assert data["cluster"]["tags"] == ["x"]
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # no temp files left
    again = config.ConfigWriter(path)
    assert again.get_cluster_info().tags == ["x"] and again.serial_no == first + 1


def test_corrupt_or_foreign_config_is_refused(tmp_path):
    path = tmp_path / "config.data"
    path.write_text("{not json")
    with pytest.raises(errors.ConfigurationError, match="corrupt"):
        config.ConfigWriter(str(path))
    path.write_text(json.dumps({"version": 1}))
    with pytest.raises(errors.ConfigVersionMismatch):
        config.ConfigWriter(str(path))
    with pytest.raises(errors.ConfigurationError, match="not part of a cluster"):
        config.ConfigWriter(str(tmp_path / "missing"))


def test_unknown_object_update_refused(cfg):
    with pytest.raises(errors.ConfigurationError):
        cfg.update(objects.Node(uuid="zz", name="x"))


def test_node_lookup_and_short_names(cfg):
    cfg.add_node(objects.Node(name="node2.example.com", primary_ip="10.0.0.2", group="g1"))
    assert cfg.expand_node_name("node2").name == "node2.example.com"
    assert cfg.expand_node_name("node") is None  # ambiguous prefix is not a short name
    with pytest.raises(errors.OpPrereqError):
        cfg.add_node(objects.Node(name="node2.example.com"))


def test_mac_and_port_reservations(cfg):
    macs = {cfg.generate_mac("job1") for _ in range(50)}
    assert len(macs) == 50 and all(m.startswith("aa:00:00:") for m in macs)
    with pytest.raises(errors.OpPrereqError):
        cfg.reserve_mac("job2", next(iter(macs)))
    ports = [cfg.allocate_port("job1"), cfg.allocate_port("job2")]
    assert ports[1] == ports[0] + 1 >= 11001
    cfg.release_reservations("job1")
    cfg.reserve_mac("job2", next(iter(macs)))


def test_drbd_minors_lowest_free(cfg):
    assert cfg.allocate_drbd_minors("j1", ["n1", "n1"]) == [0, 1]
    assert cfg.allocate_drbd_minors("j2", ["n1"]) == [2]
    cfg.release_reservations("j1")
    assert cfg.allocate_drbd_minors("j3", ["n1"]) == [0]


def test_instance_name_claims(cfg):
    cfg.reserve_instance_name("j1", "web.example.com")
    with pytest.raises(errors.OpPrereqError, match="another job"):
        cfg.reserve_instance_name("j2", "web.example.com")
    cfg.release_reservations("j1")
    cfg.reserve_instance_name("j2", "web.example.com")


def test_memory_claims_of_concurrent_jobs_add_up(cfg):
    cfg.reserve_node_memory("j1", "n1", 600, 1000, "node1", "starting a")
    with pytest.raises(errors.OpPrereqError, match="claimed by other running jobs"):
        cfg.reserve_node_memory("j2", "n1", 600, 1000, "node1", "starting b")
    cfg.reserve_node_memory("j2", "n1", 400, 1000, "node1", "starting b")
    cfg.release_reservations("j1")
    cfg.reserve_node_memory("j3", "n1", 500, 1000, "node1", "starting c")


def test_write_listener_sees_each_serial(cfg):
    seen = []
    cfg.add_write_listener(lambda text, serial: seen.append(serial))
    cluster = cfg.get_cluster_info()
    for _ in range(3):
        cfg.update(cluster)
    assert seen == sorted(seen) and len(seen) == 3


def test_cached_instance_text_matches_full_serialization(cfg, tmp_path):
    for i in range(5):
        cfg.add_instance(objects.Instance(name="i%d.example.com" % i, primary_node="n1",
                                          os="busybox", hypervisor="fake"))
    inst = cfg.get_instance_by_name("i2.example.com")
    inst.admin_state = "up"
    cfg.update(inst)
    cfg.rename_instance(inst.uuid, "renamed.example.com")
    cfg.remove_instance(cfg.get_instance_by_name("i0.example.com").uuid)
    on_disk = json.load(open(tmp_path / "config.data"))
    assert on_disk == json.loads(json.dumps(cfg._data.to_dict()))
    assert on_disk["instances"][inst.uuid]["admin_state"] == "up"
    assert on_disk["instances"][inst.uuid]["name"] == "renamed.example.com"
