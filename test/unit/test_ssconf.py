"""ssconf files: write, read back, stale keys, missing cluster."""

import os

import pytest

from corral import errors, pathutils, ssconf


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_ROOT", str(tmp_path))
    return tmp_path


VALUES = {
    "cluster_name": "cluster.example.com",
    "cluster_uuid": "0b3c7a4e-1111-2222-3333-444455556666",
    "master_node": "node1.example.com",
    "master_ip": "192.0.2.1",
    "master_netdev": "eth0",
    "master_netmask": "24",
    "node_list": ssconf.format_list(["node1.example.com", "node2.example.com"]),
    "node_primary_ips": ssconf.format_pairs({"node2.example.com": "192.0.2.12",
                                             "node1.example.com": "192.0.2.11"}),
    "node_secondary_ips": ssconf.format_pairs({"node1.example.com": "198.51.100.11"}),
    "master_candidates": "node1.example.com",
    "online_nodes": ssconf.format_list(["node1.example.com"]),
    "noded_port": "1811",
    "primary_ip_family": "2",
    "release_version": "3.1.0",
    "file_storage_dir": "/srv/ganeti/file-storage",
    "shared_file_storage_dir": "/srv/ganeti/shared-file-storage",
    "hypervisor_list": "kvm\nfake",
    "enabled_disk_templates": "file\nplain",
}


def test_round_trip(root):
    ssconf.write_ssconf(VALUES)
    ss = ssconf.SimpleStore()
    assert ss.get_cluster_name() == "cluster.example.com"
    assert ss.get_cluster_uuid() == VALUES["cluster_uuid"]
    assert ss.get_master_node() == "node1.example.com"
    assert ss.get_master_ip() == "192.0.2.1"
    assert ss.get_master_netdev() == "eth0"
    assert ss.get_master_netmask() == 24
    assert ss.get_node_list() == ["node1.example.com", "node2.example.com"]
    assert ss.get_node_primary_ips() == {"node1.example.com": "192.0.2.11",
                                         "node2.example.com": "192.0.2.12"}
    assert ss.get_node_secondary_ips() == {"node1.example.com": "198.51.100.11"}
    assert ss.get_master_candidates() == ["node1.example.com"]
    assert ss.get_online_nodes() == ["node1.example.com"]
    assert ss.get_noded_port() == 1811
    assert ss.get_primary_ip_family() == 2
    assert ss.get_release_version() == "3.1.0"
    assert ss.get_file_storage_dir() == "/srv/ganeti/file-storage"
    assert ss.get_shared_file_storage_dir() == "/srv/ganeti/shared-file-storage"
    assert ss.get_hypervisor_list() == ["kvm", "fake"]
    assert ss.get_enabled_disk_templates() == ["file", "plain"]
    assert ss.read_all() == {k: v for k, v in VALUES.items()}


def test_files_are_plain_text_one_per_key(root):
    ssconf.write_ssconf(VALUES)
    with open(pathutils.ssconf_file("node_list")) as fh:
        assert fh.read() == "node1.example.com\nnode2.example.com\n"
    names = sorted(n for n in os.listdir(pathutils.data_dir()) if n.startswith("ssconf_"))
    assert names == sorted("ssconf_" + k for k in VALUES)


def test_stale_keys_removed_and_rewrite_idempotent(root):
    ssconf.write_ssconf(VALUES)
    smaller = {k: v for k, v in VALUES.items() if k != "master_netdev"}
    smaller["master_node"] = "node2.example.com"
    ssconf.write_ssconf(smaller)
    ssconf.write_ssconf(smaller)
    ss = ssconf.SimpleStore()
    assert ss.get_master_node() == "node2.example.com"
    assert not os.path.exists(pathutils.ssconf_file("master_netdev"))
    with pytest.raises(errors.ConfigurationError):
        ss.get_master_netdev()


def test_missing_means_not_in_cluster(root):
    with pytest.raises(errors.ConfigurationError, match="not part of a cluster"):
        ssconf.SimpleStore().get_master_node()
    assert ssconf.SimpleStore().read_all() == {}


def test_bad_values_refused_before_writing(root):
    with pytest.raises(errors.ProgrammerError, match="Unknown ssconf key"):
        ssconf.write_ssconf({"cluster_name": "c", "../etc/passwd": "x"})
    with pytest.raises(errors.ProgrammerError, match="must be a string"):
        ssconf.write_ssconf({"cluster_name": "c", "noded_port": 1811})
    assert not os.path.exists(pathutils.ssconf_file("cluster_name"))


def test_malformed_values_reported(root):
    ssconf.write_ssconf({"noded_port": "eighteen", "node_primary_ips": "node1"})
    ss = ssconf.SimpleStore()
    with pytest.raises(errors.ConfigurationError, match="not an integer"):
        ss.get_noded_port()
    with pytest.raises(errors.ConfigurationError, match="Malformed"):
        ss.get_node_primary_ips()
