"""config.ini of exports: Corral's writer and reader, and a file in Ganeti's layout."""

import pytest

from corral import errors, objects
from corral.cmdlib import export_ini

GANETI_STYLE = """\
[export]
version = 0
timestamp = 1700000000
source = node1.example.com
os = debootstrap+default
compression = none

[instance]
name = web1.example.com
maxmem = 512
minmem = 256
memory = 512
vcpus = 2
disk_template = plain
hypervisor = kvm
tags = a b
nic_count = 1
nic0_mac = aa:00:00:12:34:56
nic0_ip = None
nic0_network = None
nic0_name = None
nic0_mode = bridged
nic0_link = br0
nic0_vlan =
disk_count = 2
disk0_ivname = disk/0
disk0_dump = 1d2c.disk0_data.snap
disk0_size = 1024
disk0_name = None
disk1_ivname = disk/1
disk1_dump = 5e6f.disk1_data.snap
disk1_size = 2048
disk1_name = data

[hypervisor]
kernel_path = /boot/vmlinuz
acpi = True

[backend]
maxmem = 512
minmem = 256
vcpus = 2
auto_balance = True

[os]
dhcp = yes

[os_private]
"""


def test_reads_a_ganeti_export():
    info = export_ini.parse(GANETI_STYLE, "web1")
    assert (info.os, info.source, info.disk_template, info.hypervisor) == \
        ("debootstrap+default", "node1.example.com", "plain", "kvm")
    assert info.tags == ["a", "b"]
    assert info.disks == [{"size": 1024, "name": None, "dump": "1d2c.disk0_data.snap"},
                          {"size": 2048, "name": "data", "dump": "5e6f.disk1_data.snap"}]
    assert info.nics == [{"mac": "aa:00:00:12:34:56", "mode": "bridged", "link": "br0"}]
    assert info.hvparams == {"kernel_path": "/boot/vmlinuz", "acpi": "True"}
    assert info.beparams == {"maxmem": "512", "minmem": "256", "vcpus": "2",
                             "auto_balance": "True"}
    assert info.osparams == {"dhcp": "yes"} and info.osparams_private == {}


def _instance():
    return objects.Instance(
        uuid="i-1", name="inst1.example", os="busybox", hypervisor="fake",
        disk_template="file", tags=["t1"], osparams_private={"secret": "s"},
        disks=[objects.Disk(uuid="d-0", size=64, dev_type="file"),
               objects.Disk(uuid="d-1", size=32, dev_type="file", name="scratch")])


def test_written_file_reads_back():
    inst = _instance()
    nics = [{"mac": "aa:00:00:00:00:01", "ip": None, "network": None, "name": None,
             "mode": "bridged", "link": "br0", "vlan": ""}]
    text = export_ini.build(inst, "node2", ({"migration_port": 1, "kernel_args": "ro"},
                                            {"maxmem": 128, "minmem": 128, "vcpus": 1},
                                            {"flavour": "tiny"}),
                            nics, ["d-0", "d-1"], now=1234.5)
    assert "timestamp = 1234\n" in text and "memory = 128\n" in text
    assert "nic0_ip = None\n" in text and "migration_port" not in text  # cluster-wide only
    info = export_ini.parse(text, "inst1")
    assert (info.os, info.source, info.disk_template, info.hypervisor) == \
        ("busybox", "node2", "file", "fake")
    assert info.disks == [{"size": 64, "name": None, "dump": "d-0"},
                          {"size": 32, "name": "scratch", "dump": "d-1"}]
    assert info.nics == [{"mac": "aa:00:00:00:00:01", "mode": "bridged", "link": "br0"}]
    assert info.hvparams == {"kernel_args": "ro"} and info.osparams == {"flavour": "tiny"}
    assert info.osparams_private == {"secret": "s"} and info.tags == ["t1"]


@pytest.mark.parametrize("text, message", [
    ("not an ini", "unreadable config.ini"),
    ("[export]\nversion = 0\n", "section 'instance' missing"),
    ("[export]\nversion = 1\n[instance]\n", "Wrong export version 1"),
    ("[export]\nversion = 0\n[instance]\ndisk_count = 1\n", "bad or missing disk/NIC entry"),
    ("[export]\nversion = 0\n[instance]\ndisk_count = 1\ndisk0_size = big\n",
     "bad or missing disk/NIC entry"),
])
def test_bad_files_are_refused_clearly(text, message):
    with pytest.raises(errors.OpPrereqError, match=message):
        export_ini.parse(text, "x")


def test_old_exports_without_backend_section():
    info = export_ini.parse("[export]\nversion = 0\n[instance]\nmemory = 256\nvcpus = 2\n",
                            "old")
    assert info.beparams == {"maxmem": "256", "vcpus": "2"} and info.disks == []
