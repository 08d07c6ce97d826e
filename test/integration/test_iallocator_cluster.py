"""Allocators on a one-node cluster (fake hypervisor): builtin, hail, plugins, gnt-debug."""

import json
import os
import stat

import pytest

from test_instances import ADD, config, listing

HAIL = "/usr/lib/ganeti/iallocators/hail"
DISKLESS = ("-t", "diskless", "-o", "busybox", "--no-install", "--no-nics")


def _primary(cluster, name: str) -> str:
    return listing(cluster, name, fields="name,pnode")[name][0]


def test_builtin_and_default_allocator(cluster):
    cluster.run(*ADD, *DISKLESS, "plain1")  # no -n, no default: the only node
    out = cluster.run(*ADD, *DISKLESS, "-I", "builtin", "alloc1").stdout
    assert "Selected nodes for instance alloc1 via iallocator builtin: localhost" in out
    out = cluster.run(*ADD, *DISKLESS, "-I", ".", "alloc2").stdout
    assert "via iallocator builtin" in out
    assert {_primary(cluster, n) for n in ("plain1", "alloc1", "alloc2")} == {"localhost"}
    proc = cluster.run(*ADD, *DISKLESS, "-I", "builtin", "-n", "localhost", "both", check=False)
    assert proc.returncode == 1 and "Do not specify both, iallocator and node" in proc.stderr


def test_failed_allocation_says_why(cluster):
    proc = cluster.run(*ADD, *DISKLESS, "-B", "maxmem=%d" % (1 << 24), "-I", "builtin", "huge",
                       check=False)
    assert proc.returncode == 1
    assert "Can't compute nodes using iallocator 'builtin'" in proc.stderr
    assert "localhost: not enough memory" in proc.stderr
    assert "huge" not in [i["name"] for i in config(cluster)["instances"].values()]


def test_plugin_from_the_search_path(cluster):
    plugins = cluster.path("usr", "lib", "corral", "iallocators")
    os.makedirs(plugins)
    path = os.path.join(plugins, "echo-local")
    with open(path, "w") as fh:
        fh.write("#!/bin/sh\ncp \"$1\" %s\n"
                 "echo '{\"success\": true, \"info\": \"fine\", \"result\": [\"localhost\"]}'\n"
                 % cluster.path("last-input"))
    os.chmod(path, stat.S_IRWXU)
    cluster.run(*ADD, *DISKLESS, "-I", "echo-local", "viaplugin")
    with open(cluster.path("last-input")) as fh:
        data = json.load(fh)
    assert data["request"]["type"] == "allocate" and data["request"]["name"] == "viaplugin"
    assert data["nodes"]["localhost"]["total_memory"] > 0
    proc = cluster.run(*ADD, *DISKLESS, "-I", "nosuch", "nothere", check=False)
    assert proc.returncode == 1
    assert "iallocator module 'nosuch' not found in the search path" in proc.stderr


@pytest.mark.skipif(not os.path.exists(HAIL), reason="ganeti-htools (hail) not installed")
def test_hail_places_an_instance(cluster):
    # One node cannot be N+1 redundant: tell hail not to insist (a bare --flag).
    cluster.run("gnt-cluster", "modify", "--default-iallocator-params", "no-capacity-checks")
    os.makedirs(cluster.path("srv", "file"), exist_ok=True)
    out = cluster.run(*ADD, "-t", "file", "--disk", "0:size=1g", "-o", "busybox",
                      "--no-install", "--no-nics", "-I", "hail", "byhail").stdout
    assert "via iallocator hail: localhost" in out
    assert listing(cluster, "byhail") == {"byhail": ["running"]}


def test_gnt_debug_iallocator(cluster):
    cluster.run(*ADD, *DISKLESS, "web1")
    os.makedirs(cluster.path("srv", "file"), exist_ok=True)  # so the node reports its space
    text = cluster.run("gnt-debug", "iallocator", "--dir", "in", "-m", "allocate",
                       "--memory", "256", "--disks", "1024", "-t", "file", "-o", "busybox",
                       "new1").stdout
    data = json.loads(text)
    assert data["version"] == 2 and data["request"]["type"] == "allocate"
    assert data["request"]["memory"] == 256 and data["request"]["disk_space_total"] == 1024
    assert data["instances"]["web1"]["nodes"] == ["localhost"]
    text = cluster.run("gnt-debug", "iallocator", "--dir", "in", "web1").stdout
    assert json.loads(text)["request"]["type"] == "relocate"
    out = json.loads(cluster.run("gnt-debug", "iallocator", "--dir", "out", "-I", "builtin",
                                 "-m", "allocate", "--disks", "1024", "-t", "file",
                                 "new1").stdout)
    assert out == {"success": True, "info": "Request successful: new1 on localhost",
                   "result": ["localhost"]}
    text = cluster.run("gnt-debug", "allocator", "--dir", "in", "-m", "node-evacuate",
                       "--evac-mode", "primary-only", "web1").stdout
    assert json.loads(text)["request"] == {"type": "node-evacuate", "instances": ["web1"],
                                           "evac_mode": "primary-only"}


def test_batch_create(cluster, tmp_path):
    spec = [{"instance_name": "b%d" % i, "disk_template": "diskless", "os_type": "busybox",
             "no_install": True, "nics": [], "disks": [], "name_check": False,
             "ip_check": False}
            for i in range(3)]
    path = tmp_path / "batch.json"
    path.write_text(json.dumps({"instances": spec}))
    out = cluster.run("gnt-instance", "batch-create", str(path)).stdout
    assert "All instances created successfully." in out
    assert listing(cluster) == {"b0": ["running"], "b1": ["running"], "b2": ["running"]}
    path.write_text(json.dumps([dict(spec[0], instance_name="x", bogus=1)]))
    proc = cluster.run("gnt-instance", "batch-create", str(path), check=False)
    assert proc.returncode == 1 and "Unknown fields in definition 0: bogus" in proc.stderr
