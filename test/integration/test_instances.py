"""Instances on a one-node cluster (fake hypervisor) driven through gnt-instance and gnt-os."""

import json
import os
import re
import subprocess

import pytest

from conftest import initialised_cluster

ADD = ("gnt-instance", "add", "--no-name-check", "--no-ip-check")


def config(cluster) -> dict:
    with open(cluster.path("var", "lib", "corral", "config.data")) as fh:
        return json.load(fh)


def instance_names(cluster) -> list[str]:
    return sorted(i["name"] for i in config(cluster)["instances"].values())


def listing(cluster, *names, fields="name,status") -> dict[str, list[str]]:
    out = cluster.run("gnt-instance", "list", "--no-headers", "--separator=|", "-o", fields,
                      *names).stdout
    return {line.split("|")[0]: line.split("|")[1:] for line in out.splitlines()}


def fake_record(cluster, name: str) -> str:
    return cluster.path("var", "run", "corral", "fake-hypervisor", name + ".json")


def file_dir(cluster, name: str) -> str:
    return cluster.path("srv", "file", name)


def submit(cluster, *argv) -> int:
    proc = cluster.run(*argv, "--submit")
    match = re.fullmatch(r"JobID: (\d+)\n", proc.stderr)
    assert match, proc.stderr
    return int(match.group(1))


def test_diskless_lifecycle(cluster):
    cluster.run(*ADD, "-t", "diskless", "-o", "busybox", "--no-install", "--no-nics", "web1")
    out = cluster.run("gnt-instance", "list").stdout.splitlines()
    assert out[0].split() == ["Instance", "Hypervisor", "OS", "Primary_node", "Status", "Memory"]
    assert out[1].split() == ["web1", "fake", "busybox", "localhost", "running", "128M"]
    assert os.path.exists(fake_record(cluster, "web1"))

    cluster.run("gnt-instance", "shutdown", "web1")
    assert listing(cluster, "web1", fields="name,status,oper_ram,admin_state") == \
        {"web1": ["ADMIN_down", "-", "down"]}
    cluster.run("gnt-instance", "start", "web1")
    for kind in ("soft", "hard", "full"):
        cluster.run("gnt-instance", "reboot", "-t", kind, "web1")
    assert listing(cluster, "web1") == {"web1": ["running"]}
    info = cluster.run("gnt-instance", "info", "web1").stdout
    assert "Instance name: web1" in info and "actual state is up" in info
    assert "    - maxmem: default (128)" in info

    mod = cluster.run("gnt-instance", "modify", "-B", "maxmem=256,vcpus=2", "web1").stdout
    assert "Modified instance web1" in mod and " - be/maxmem -> 256" in mod
    refused = cluster.run("gnt-instance", "modify", "--offline", "web1", check=False)
    assert refused.returncode == 1 and "cannot mark it offline" in refused.stderr
    busy = cluster.run("gnt-instance", "rename", "--no-name-check", "--no-ip-check", "web1",
                       "web2", check=False)
    assert busy.returncode == 1 and "is marked to be up" in busy.stderr

    cluster.run("gnt-instance", "stop", "web1")
    cluster.run("gnt-instance", "rename", "--no-name-check", "--no-ip-check", "web1", "web2")
    assert listing(cluster, fields="name,be/maxmem,vcpus") == {"web2": ["256", "2"]}
    cluster.run("gnt-instance", "modify", "--offline", "web2")
    assert listing(cluster, "web2") == {"web2": ["ADMIN_offline"]}
    cluster.run("gnt-instance", "modify", "--online", "web2")
    cluster.run("gnt-instance", "remove", "-f", "web2")
    assert instance_names(cluster) == []
    assert cluster.run("gnt-instance", "list", "--no-headers").stdout == ""


def test_file_disks_with_busybox_os(cluster):
    cluster.run(*ADD, "-t", "file", "--disk", "0:size=64m", "-o", "busybox", "--no-nics",
                "fs1")
    (disk0,) = os.listdir(file_dir(cluster, "fs1"))
    path0 = os.path.join(file_dir(cluster, "fs1"), disk0)
    assert os.path.getsize(path0) == 64 << 20
    stat = subprocess.run(["debugfs", "-R", "stat /sbin/init", path0], capture_output=True,
                          text=True)
    assert "Type: regular" in stat.stdout, stat.stdout + stat.stderr
    act = cluster.run("gnt-instance", "activate-disks", "fs1").stdout
    assert act == "localhost:disk/0:%s\n" % path0

    cluster.run("gnt-instance", "grow-disk", "fs1", "0", "32m")
    assert os.path.getsize(path0) == 96 << 20
    assert listing(cluster, "fs1", fields="name,disk.sizes,disk_usage") == \
        {"fs1": ["96", "96"]}
    cluster.run("gnt-instance", "modify", "--disk", "add:size=16m", "fs1")
    assert len(os.listdir(file_dir(cluster, "fs1"))) == 2
    cluster.run("gnt-instance", "shutdown", "fs1")
    cluster.run("gnt-instance", "modify", "--disk", "1:remove", "fs1")
    assert os.listdir(file_dir(cluster, "fs1")) == [disk0]
    cluster.run("gnt-instance", "reinstall", "-f", "fs1")
    cluster.run("gnt-instance", "rename", "--no-name-check", "--no-ip-check", "fs1", "fs2")
    assert not os.path.exists(file_dir(cluster, "fs1"))
    assert os.listdir(file_dir(cluster, "fs2")) == [disk0]
    cluster.run("gnt-instance", "start", "fs2")
    rec = json.load(open(fake_record(cluster, "fs2")))
    assert rec["disks"][0]["path"] == os.path.join(file_dir(cluster, "fs2"), disk0)
    cluster.run("gnt-instance", "remove", "-f", "fs2")
    assert not os.path.exists(file_dir(cluster, "fs2"))
    assert not os.path.exists(fake_record(cluster, "fs2"))


@pytest.fixture(scope="module")
def refusing_cluster():
    """One cluster shared by the bad-input cases (one init instead of one per case).

    Sharing is safe because every case refuses before anything exists and
    asserts exactly that afterwards: a case that leaked an instance, a disk
    or a runtime file fails itself (and the cases after it), never passes.
    """
    yield from initialised_cluster()


# For --dist loadgroup: one xdist worker runs all cases, so the cluster is made once.
@pytest.mark.xdist_group("instances-bad-input")
@pytest.mark.parametrize("argv,words", [
    (["-t", "diskless", "--no-nics", "-o", "busybox", "bad_name!"], "Invalid instance name"),
    (["-t", "diskless", "--no-nics", "-o", "nosuchos", "x1"], "OS 'nosuchos' not in"),
    (["-t", "diskless", "--no-nics", "-o", "debootstrap+nosuch", "x1"],
     "Unsupported OS variant 'nosuch'"),
    (["-t", "file", "--disk", "0:size=0", "--no-nics", "-o", "busybox", "x1"],
     "Invalid disk size 0"),
    (["-t", "file", "--disk", "0:size=garbage", "--no-nics", "-o", "busybox", "x1"],
     "Invalid size 'garbage'"),
    (["-t", "diskless", "--no-nics", "-o", "busybox", "-H", "fake:migration_mode=sideways",
      "x1"], "migration_mode"),
    (["-t", "diskless", "--no-nics", "-o", "busybox", "-H", "fake:frobnicate=1", "x1"],
     "Unknown fake parameter 'frobnicate'"),
    (["-t", "diskless", "--no-nics", "-o", "busybox", "-B", "vcpus=many", "x1"], "'vcpus'"),
    (["-t", "file", "--disk", "0:size=8m", "--no-nics", "-o", "busybox",
      "--file-storage-dir=../../etc", "x1"], "not inside the cluster's file storage"),
    (["-t", "diskless", "-o", "busybox", "--net", "0:link=nosuchbr0", "x1"],
     "bridges nosuchbr0 does not exist"),
])
def test_bad_input_refused_before_anything_exists(refusing_cluster, argv, words):
    cluster = refusing_cluster
    proc = cluster.run(*ADD, *argv, check=False)
    assert proc.returncode == 1, proc.stdout
    assert words in proc.stderr
    assert instance_names(cluster) == []
    assert not os.path.exists(cluster.path("srv", "file")) or \
        os.listdir(cluster.path("srv", "file")) == []
    assert not os.path.exists(fake_record(cluster, "x1"))


def test_name_check_and_unresolvable_name(cluster):
    proc = cluster.run("gnt-instance", "add", "-t", "diskless", "--no-nics", "-o", "busybox",
                       "--no-install", "ghost.invalid", check=False)
    assert proc.returncode == 1 and "Cannot resolve host name 'ghost.invalid'" in proc.stderr
    proc = cluster.run("gnt-instance", "add", "--no-name-check", "-t", "diskless", "--no-nics",
                       "-o", "busybox", "--no-install", "ghost.invalid", check=False)
    assert "IP address check without a name check" in proc.stderr
    cluster.run(*ADD, "-t", "diskless", "--no-nics", "-o", "busybox", "--no-install",
                "ghost.invalid")
    assert instance_names(cluster) == ["ghost.invalid"]


def test_killed_behind_our_back_is_error_down_until_started(cluster):
    cluster.run(*ADD, "-t", "diskless", "--no-nics", "-o", "busybox", "--no-install", "k1")
    os.unlink(fake_record(cluster, "k1"))
    assert listing(cluster, "k1", fields="name,status,oper_state") == {"k1": ["ERROR_down", "N"]}
    verify = cluster.run("gnt-cluster", "verify", check=False)
    assert "instance not running on its primary node" in verify.stdout
    cluster.run("gnt-instance", "startup", "k1")
    assert listing(cluster, "k1") == {"k1": ["running"]}
    # running although marked down: ERROR_up
    cluster.run("gnt-instance", "shutdown", "k1")
    with open(fake_record(cluster, "k1"), "w") as fh:
        json.dump({"spec": {"name": "k1", "uuid": "x", "hvparams": {}, "beparams": {},
                            "hypervisor": "fake"}, "disks": [], "state": "running"}, fh)
    assert listing(cluster, "k1") == {"k1": ["ERROR_up"]}


def test_concurrent_adds_of_one_name(cluster):
    argv = [*ADD, "-t", "diskless", "--no-nics", "-o", "busybox", "--no-install", "same1"]
    jobs = [submit(cluster, *argv) for _ in range(3)]
    results = [cluster.run("gnt-job", "wait", str(j), check=False).returncode for j in jobs]
    assert sorted(results) == [0, 1, 1]
    assert instance_names(cluster) == ["same1"]
    info = cluster.run("gnt-job", "info", *[str(j) for j in jobs]).stdout
    assert "already" in info or "being created" in info


def test_os_create_failure_removes_disks(cluster):
    osdir = cluster.path("srv", "ganeti", "os", "failos")
    os.makedirs(osdir)
    with open(os.path.join(osdir, "ganeti_api_version"), "w") as fh:
        fh.write("10\n")
    for script in ("create", "import", "export", "rename"):
        with open(os.path.join(osdir, script), "w") as fh:
            fh.write("#!/bin/sh\necho \"failos: cannot install on $DISK_0_PATH\" >&2\nexit 7\n")
        os.chmod(os.path.join(osdir, script), 0o755)
    proc = cluster.run(*ADD, "-t", "file", "--disk", "0:size=8m", "--no-nics", "-o", "failos",
                       "broken1", check=False)
    assert proc.returncode == 1
    assert "exit code 7" in proc.stderr and "failos: cannot install on" in proc.stderr
    assert instance_names(cluster) == []
    assert not os.path.exists(file_dir(cluster, "broken1"))


def test_ganeti_os_noop(cluster):
    if not os.path.isdir("/usr/share/ganeti/os/noop"):
        pytest.skip("ganeti-os-noop is not installed")
    cluster.run(*ADD, "-t", "file", "--disk", "0:size=8m", "--no-nics", "-o", "noop", "nop1")
    assert listing(cluster, "nop1", fields="name,os,status") == {"nop1": ["noop", "running"]}


def test_hooks_see_the_instance_environment(cluster):
    hookdir = cluster.path("etc", "corral", "hooks", "instance-start-post.d")
    os.makedirs(hookdir)
    dump = cluster.path("hook.env")
    with open(os.path.join(hookdir, "10-env"), "w") as fh:
        fh.write("#!/bin/sh\nenv > %s\n" % dump)
    os.chmod(os.path.join(hookdir, "10-env"), 0o755)
    cluster.run(*ADD, "-t", "diskless", "-o", "busybox", "--no-install", "--no-start",
                "--net", "0:mode=routed,ip=192.0.2.9", "h1")
    cluster.run("gnt-instance", "startup", "h1")
    env = dict(line.split("=", 1) for line in open(dump).read().splitlines() if "=" in line)
    assert env["GANETI_HOOKS_PATH"] == "instance-start" and env["GANETI_OP_TARGET"] == "h1"
    assert env["GANETI_INSTANCE_NAME"] == "h1" and env["GANETI_INSTANCE_PRIMARY"] == "localhost"
    assert env["GANETI_INSTANCE_STATUS"] == "down" and env["GANETI_POST_INSTANCE_STATUS"] == "up"
    assert env["GANETI_FORCE"] == "False" and env["GANETI_INSTANCE_NIC0_IP"] == "192.0.2.9"
    assert env["GANETI_INSTANCE_NIC0_MODE"] == "routed"
    assert re.fullmatch(r"aa:00:00(:[0-9a-f]{2}){3}", env["GANETI_INSTANCE_NIC0_MAC"])
    assert env["GANETI_INSTANCE_BE_maxmem"] == "128"


def test_instance_tags(cluster):
    cluster.run(*ADD, "-t", "diskless", "--no-nics", "-o", "busybox", "--no-install", "t1")
    cluster.run("gnt-instance", "add-tags", "t1", "web", "prod")
    assert cluster.run("gnt-instance", "list-tags", "t1").stdout == "prod\nweb\n"
    cluster.run("gnt-instance", "remove-tags", "t1", "web")
    assert listing(cluster, "t1", fields="name,tags") == {"t1": ["prod"]}


def test_gnt_os_commands(cluster):
    listed = cluster.run("gnt-os", "list").stdout.splitlines()
    assert listed[0] == "Name" and "busybox" in listed and "debootstrap+bookworm" in listed
    diag = cluster.run("gnt-os", "diagnose").stdout
    assert "OS: busybox [global status: valid]\n  Node: localhost, status: valid (path: " in diag
    assert "  Variants: [bookworm, bullseye]" in diag
    info = cluster.run("gnt-os", "info", "busybox").stdout
    assert info.startswith("busybox:\n  - valid: True\n  - hidden: False\n  - blacklisted: False\n"
                           "  - API versions:\n    - 10\n    - 15\n    - 20\n")
    assert info.endswith("  - trusted: True\n\n")
    cluster.run("gnt-os", "modify", "--hidden=yes", "-O", "a=b", "-H", "fake:migration_mode=live",
                "busybox")
    assert "busybox" not in cluster.run("gnt-os", "list", "--no-headers").stdout.split()
    assert "OS: busybox [global status: valid] [hidden]" in \
        cluster.run("gnt-os", "diagnose").stdout
    cluster.run("gnt-os", "modify", "--hidden=no", "busybox")
    assert "busybox" in cluster.run("gnt-os", "list", "--no-headers").stdout.split()
    nothing = cluster.run("gnt-os", "modify", "busybox", check=False)
    assert nothing.returncode == 1 and "At least one of" in nothing.stderr
