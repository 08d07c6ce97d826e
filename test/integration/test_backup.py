"""gnt-backup export/import/remove on a one-node cluster (fake hypervisor, file disks).

The disk data goes through the busybox OS definition's export and import
scripts and the node daemons' transfer stream; the tests compare the bytes a
user would care about: the disk image before export, the file in the export,
and the disk of the imported instance.
"""

import configparser
import glob
import hashlib
import json
import os

import pytest

from conftest import initialised_cluster

ADD = ("gnt-instance", "add", "--no-name-check", "--no-ip-check", "-o", "busybox")
IMPORT = ("gnt-backup", "import", "--no-name-check", "--no-ip-check", "-n", "localhost")


@pytest.fixture(scope="module")
def cluster():
    yield from initialised_cluster()


def md5(path: str) -> str:
    with open(path, "rb") as fh:       # images of a few MiB
        return hashlib.md5(fh.read()).hexdigest()


def config(cluster) -> dict:
    with open(cluster.path("var", "lib", "corral", "config.data")) as fh:
        return json.load(fh)


def instance(cluster, name: str) -> dict:
    found = [i for i in config(cluster)["instances"].values() if i["name"] == name]
    assert len(found) == 1, name
    return found[0]


def disk_image(cluster, name: str) -> str:
    images = glob.glob(cluster.path("srv", "file", name, "*"))
    assert len(images) == 1, images
    return images[0]


def export_dir(cluster, *parts: str) -> str:
    return cluster.path("srv", "ganeti", "export", *parts)


def mark(path: str, text: bytes) -> None:
    """Something recognisable in the middle of a disk image."""
    with open(path, "r+b") as fh:
        fh.seek(5 * 1024 * 1024)
        fh.write(text)


def status(cluster, name: str) -> str:
    return cluster.run("gnt-instance", "list", "--no-headers", "-o", "status",
                       name).stdout.strip()


def test_export_then_import_copies_the_disk_and_definition(cluster):
    cluster.run(*ADD, "-t", "file", "-s", "16m", "-B", "maxmem=192,minmem=160",
                "--net", "0:mode=routed,ip=192.0.2.21", "--tags", "blue", "exp1")
    cluster.run("gnt-instance", "shutdown", "exp1")
    image = disk_image(cluster, "exp1")
    mark(image, b"CORRAL-EXPORT-MARK")
    before = md5(image)
    cluster.run("gnt-instance", "start", "exp1")

    out = cluster.run("gnt-backup", "export", "-n", "localhost", "exp1")
    assert "Exporting 1 disk(s) of instance exp1 to node localhost" in out.stdout
    assert status(cluster, "exp1") == "running"           # started again afterwards
    ini = configparser.RawConfigParser()
    ini.read(export_dir(cluster, "exp1", "config.ini"))
    inst = instance(cluster, "exp1")
    disk_uuid = inst["disks"][0]["uuid"]
    assert ini.get("export", "os") == "busybox" and ini.get("export", "source") == "localhost"
    assert ini.get("instance", "disk0_dump") == disk_uuid
    assert ini.get("instance", "nic0_mac") == inst["nics"][0]["mac"]
    assert ini.get("instance", "maxmem") == "192" and ini.get("instance", "tags") == "blue"
    assert md5(export_dir(cluster, "exp1", disk_uuid)) == before
    assert not os.path.exists(export_dir(cluster, "exp1.new"))
    listed = cluster.run("gnt-backup", "list").stdout.splitlines()
    assert listed[0].split() == ["Node", "Export"] and ["localhost", "exp1"] in \
        [line.split() for line in listed[1:]]

    # The original still holds its MAC, so the copy asks for a new one.
    cluster.run(*IMPORT, "-t", "file", "--src-node", "localhost", "--src-dir", "exp1",
                "--net", "0:mac=generate,mode=routed,ip=192.0.2.22", "imp1")
    copy = instance(cluster, "imp1")
    assert copy["os"] == "busybox" and copy["tags"] == ["blue"]
    assert copy["beparams"]["maxmem"] == 192 and copy["beparams"]["minmem"] == 160
    assert copy["nics"][0]["mac"] != inst["nics"][0]["mac"]
    assert copy["disks"][0]["size"] == 16
    assert status(cluster, "imp1") == "ADMIN_down"          # gnt-backup import never starts
    assert md5(disk_image(cluster, "imp1")) == before
    cluster.run("gnt-instance", "start", "imp1")
    assert status(cluster, "imp1") == "running"
    cluster.run("gnt-instance", "remove", "-f", "imp1")

    # Once the original is gone, an import keeps its MAC, as in Ganeti.
    cluster.run("gnt-instance", "remove", "-f", "exp1")
    cluster.run(*IMPORT, "-t", "file", "--src-dir", "exp1", "exp1")
    assert instance(cluster, "exp1")["nics"][0]["mac"] == inst["nics"][0]["mac"]
    assert md5(disk_image(cluster, "exp1")) == before
    cluster.run("gnt-instance", "remove", "-f", "exp1")
    cluster.run("gnt-backup", "remove", "exp1")
    assert not os.path.exists(export_dir(cluster, "exp1"))
    assert "exp1" not in cluster.run("gnt-backup", "list", "--no-headers").stdout


def test_export_with_remove_instance_replaces_the_older_export(cluster):
    cluster.run(*ADD, "-t", "file", "-s", "8m", "--no-nics", "--no-start", "exp2")
    cluster.run("gnt-backup", "export", "-n", "localhost", "exp2")
    first = os.stat(export_dir(cluster, "exp2", "config.ini")).st_ino
    mark(disk_image(cluster, "exp2"), b"SECOND")
    after = md5(disk_image(cluster, "exp2"))
    cluster.run("gnt-backup", "export", "-n", "localhost", "--remove-instance", "exp2")
    assert "exp2" not in json.dumps(config(cluster)["instances"])
    assert os.stat(export_dir(cluster, "exp2", "config.ini")).st_ino != first
    dumps = [f for f in os.listdir(export_dir(cluster, "exp2")) if f != "config.ini"]
    assert len(dumps) == 1 and md5(export_dir(cluster, "exp2", dumps[0])) == after
    cluster.run("gnt-backup", "remove", "exp2")


def test_failures_are_clear_and_leave_nothing(cluster):
    cluster.run(*ADD, "-t", "file", "-s", "8m", "--no-nics", "--no-start", "exp3")
    res = cluster.run("gnt-backup", "export", "-n", "nosuchnode", "exp3", check=False)
    assert res.returncode != 0 and "Node 'nosuchnode' not known" in res.stderr
    res = cluster.run("gnt-backup", "import", "--no-name-check", "--no-ip-check", "-n",
                      "localhost", "-t", "file", "--src-dir", "nosuchexport", "new3",
                      check=False)
    assert res.returncode != 0 and "No export found for relative path nosuchexport" in \
        res.stderr
    res = cluster.run(*IMPORT, "-t", "file", "--src-node", "localhost", "--src-dir",
                      "/etc/passwd", "new3", check=False)
    assert res.returncode != 0 and "is not in the export directory" in res.stderr

    cluster.run("gnt-backup", "export", "-n", "localhost", "exp3")
    dump = instance(cluster, "exp3")["disks"][0]["uuid"]
    os.unlink(export_dir(cluster, "exp3", dump))       # the data is gone: import must fail
    res = cluster.run(*IMPORT, "-t", "file", "--src-node", "localhost", "--src-dir", "exp3",
                      "new3", check=False)
    assert res.returncode != 0, res.stdout
    assert "new3" not in json.dumps(config(cluster)["instances"])
    assert not glob.glob(cluster.path("srv", "file", "new3", "*"))
    cluster.run("gnt-instance", "remove", "-f", "exp3")
    cluster.run("gnt-backup", "remove", "exp3")
    res = cluster.run("gnt-backup", "remove", "exp3")
    assert "Export not found" in res.stdout + res.stderr


def test_failed_export_keeps_the_previous_one_and_restarts_the_instance(cluster):
    cluster.run(*ADD, "-t", "file", "-s", "8m", "--no-nics", "exp4")
    cluster.run("gnt-backup", "export", "-n", "localhost", "exp4")
    good = os.stat(export_dir(cluster, "exp4", "config.ini")).st_ino
    with open(export_dir(cluster, "exp4.new"), "w") as fh:   # the staging dir cannot be made
        fh.write("in the way\n")
    res = cluster.run("gnt-backup", "export", "-n", "localhost", "exp4", check=False)
    assert res.returncode == 1 and "Failure: command execution error" in res.stderr, res
    assert os.stat(export_dir(cluster, "exp4", "config.ini")).st_ino == good
    assert not os.path.exists(export_dir(cluster, "exp4.new"))
    assert status(cluster, "exp4") == "running"
    cluster.run("gnt-instance", "remove", "-f", "exp4")
    cluster.run("gnt-backup", "remove", "exp4")
