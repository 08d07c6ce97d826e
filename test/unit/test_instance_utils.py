"""Pure helpers of the instance LUs: names, parameter layering, hook environment."""

import pytest

from corral import errors, objects
from corral.cmdlib import instance_utils as iu


@pytest.mark.parametrize("name", ["inst1", "inst1.example.com", "a-b.c-d", "x" * 63])
def test_valid_instance_names(name):
    assert iu.check_instance_name(name) == name.lower()


@pytest.mark.parametrize("name", ["", "bad_name", "-lead", "trail-", "a..b", "a b", "x" * 64,
                                  "ok.-bad", "semi;colon", "dot.", "ümlaut"])
def test_invalid_instance_names(name):
    with pytest.raises(errors.OpPrereqError, match="Invalid instance name") as err:
        iu.check_instance_name(name)
    assert err.value.args[1] == errors.ECODE_INVAL


def test_resolve_requires_prefix(monkeypatch):
    monkeypatch.setattr(iu.netutils, "resolve", lambda name: ("other.example.com", "192.0.2.1"))
    with pytest.raises(errors.OpPrereqError, match="does not look the same"):
        iu.resolve_instance_name("inst1")
    monkeypatch.setattr(iu.netutils, "resolve", lambda name: ("inst1.example.com.", "192.0.2.1"))
    assert iu.resolve_instance_name("inst1") == ("inst1.example.com", "192.0.2.1")


def test_unresolvable_name_says_how_to_skip(monkeypatch):
    def fail(name):
        raise errors.ResolverError("Cannot resolve host name '%s': nope" % name)
    monkeypatch.setattr(iu.netutils, "resolve", fail)
    with pytest.raises(errors.OpPrereqError, match="--no-name-check") as err:
        iu.resolve_instance_name("ghost")
    assert err.value.args[1] == errors.ECODE_RESOLVER


def _cluster(**kw):
    return objects.Cluster(cluster_name="c", enabled_hypervisors=["kvm", "fake"], **kw)


def test_hvparams_layering_cluster_os_variant_instance():
    cluster = _cluster(hvparams={"kvm": {"acpi": False, "kernel_args": "c"}},
                       os_hvp={"deb": {"kvm": {"kernel_args": "os"}},
                               "deb+v1": {"kvm": {"kernel_args": "variant"}}})
    assert iu.filled_hvparams(cluster, "kvm", "deb", {})["kernel_args"] == "os"
    assert iu.filled_hvparams(cluster, "kvm", "deb+v1", {})["kernel_args"] == "variant"
    filled = iu.filled_hvparams(cluster, "kvm", "deb+v1", {"kernel_args": "inst"})
    assert filled["kernel_args"] == "inst" and filled["acpi"] is False
    assert iu.filled_hvparams(cluster, "kvm", None, None)["kernel_args"] == "c"


def test_beparams_and_osparams_layering():
    cluster = _cluster(beparams={"default": {"maxmem": 256, "minmem": 256}},
                       osparams={"deb": {"a": "1", "b": "1"}, "deb+v": {"b": "2"}})
    be = iu.filled_beparams(cluster, {"memory": 512})
    assert be["maxmem"] == 512 and be["minmem"] == 512 and be["vcpus"] == 1
    assert iu.filled_osparams(cluster, "deb+v", {"c": "3"}) == {"a": "1", "b": "2", "c": "3"}


def test_disk_rpc_adds_allowed_dirs_for_file_disks_only():
    cluster = _cluster(file_storage_dir="/srv/f", shared_file_storage_dir="/srv/s")
    fdisk = objects.Disk(dev_type="file", logical_id=["loop", "/srv/f/i/d0"], size=10)
    bdisk = objects.Disk(dev_type="blockdev", logical_id=["manual", "/dev/sdb"], size=10)
    assert iu.disk_rpc(cluster, fdisk)["params"]["allowed_dirs"] == ["/srv/f", "/srv/s"]
    assert "allowed_dirs" not in iu.disk_rpc(cluster, bdisk)["params"]
    assert fdisk.params == {}


def test_hook_env_matches_spec_names():
    env = iu.build_instance_hook_env(
        "inst1", "node1", ["node2", "node3"], "busybox", "up",
        [{"mac": "aa:00:00:00:00:01", "ip": None, "mode": "bridged", "link": "br0",
          "vlan": "", "uuid": "n0", "name": "eth"},
         {"mac": "aa:00:00:00:00:02", "ip": "10.0.0.2", "mode": "routed", "link": "",
          "vlan": "", "uuid": "n1", "name": None}],
        "file", [{"size": 1024, "mode": "rw", "uuid": "d0", "name": None,
                  "dev_type": "file", "logical_id": ["loop", "/srv/f/inst1/d0"]}],
        {"maxmem": 512, "minmem": 256, "vcpus": 2, "auto_balance": True},
        {"acpi": True}, "kvm", ["t1", "t2"])
    assert env["INSTANCE_NAME"] == "inst1" and env["INSTANCE_PRIMARY"] == "node1"
    assert env["INSTANCE_SECONDARIES"] == "node2 node3"
    assert env["INSTANCE_STATUS"] == "up" and env["INSTANCE_OS_TYPE"] == "busybox"
    assert (env["INSTANCE_MINMEM"], env["INSTANCE_MAXMEM"], env["INSTANCE_MEMORY"]) == \
        (256, 512, 512)
    assert env["INSTANCE_VCPUS"] == 2 and env["INSTANCE_HYPERVISOR"] == "kvm"
    assert env["INSTANCE_NIC_COUNT"] == 2 and env["INSTANCE_NIC0_BRIDGE"] == "br0"
    assert env["INSTANCE_NIC0_IP"] == "" and env["INSTANCE_NIC0_NAME"] == "eth"
    assert "INSTANCE_NIC1_BRIDGE" not in env and "INSTANCE_NIC1_NAME" not in env
    assert env["INSTANCE_NIC1_IP"] == "10.0.0.2" and env["INSTANCE_NIC1_MODE"] == "routed"
    assert env["INSTANCE_DISK_COUNT"] == 1 and env["INSTANCE_DISK0_SIZE"] == 1024
    assert env["INSTANCE_DISK0_DRIVER"] == "loop"
    assert env["INSTANCE_DISK0_ID"] == "/srv/f/inst1/d0"
    assert env["INSTANCE_BE_auto_balance"] is True and env["INSTANCE_HV_acpi"] is True
    assert env["INSTANCE_TAGS"] == "t1 t2"
    assert env["INSTANCE_DISK_TEMPLATE"] == "file"


def test_hook_env_plain_disk_has_vg():
    env = iu.build_instance_hook_env("i", "n", [], "", "down", [], "plain",
                                     [{"size": 1, "dev_type": "plain",
                                       "logical_id": ["xenvg", "u.disk0"]}], {}, {}, "kvm", [])
    assert env["INSTANCE_DISK0_VG"] == "xenvg" and env["INSTANCE_DISK0_ID"] == "u.disk0"
    assert env["INSTANCE_DISK0_MODE"] == "rw"


def test_instance_hook_env_from_config_object():
    class Cfg:
        def get_cluster_info(self):
            return _cluster()

        def get_node_info(self, uuid):
            return objects.Node(uuid=uuid, name="node-" + uuid)

    inst = objects.Instance(name="i1", primary_node="p", hypervisor="fake", os="busybox",
                            admin_state="down",
                            nics=[objects.NIC(mac="aa:00:00:00:00:09", nicparams={"link": "br9"})])
    env = iu.instance_hook_env(Cfg(), inst)
    assert env["INSTANCE_PRIMARY"] == "node-p" and env["INSTANCE_NIC0_BRIDGE"] == "br9"
    assert env["INSTANCE_NIC0_MODE"] == "bridged" and env["INSTANCE_STATUS"] == "down"
    assert env["INSTANCE_HV_migration_mode"] == "live"
