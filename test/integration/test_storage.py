"""Storage through the CLI on a one-node cluster (fake hypervisor): an ExtStorage
provider end to end, storage listings, verify-disks, and the clear refusals of
LVM and DRBD on a machine without device-mapper and the DRBD module."""

import os
import stat

import pytest

from conftest import destroy_local, init_cluster, new_cluster

ADD = ("gnt-instance", "add", "--no-name-check", "--no-ip-check", "--no-nics")
PROVIDER = {
    "create": 'truncate -s "${VOL_SIZE}M" "$EXTP_DIR/$VOL_NAME"',
    "attach": '[ -f "$EXTP_DIR/$VOL_NAME" ] || { echo "no volume $VOL_NAME" >&2; exit 1; }\n'
              'echo "$EXTP_DIR/$VOL_NAME"',
    "detach": "exit 0",
    "remove": 'rm -f "$EXTP_DIR/$VOL_NAME"',
    "grow": 'truncate -s "${VOL_NEW_SIZE}M" "$EXTP_DIR/$VOL_NAME"',
    "setinfo": 'printf %s "$VOL_METADATA" > "$EXTP_DIR/$VOL_NAME.info"',
    "verify": '[ -d "$EXTP_DIR" ] || { echo "dir must be a directory" >&2; exit 1; }',
}


def write_provider(root: str, name: str = "fileprov") -> str:
    """A provider keeping volumes as plain files, in the node's ES search path."""
    pdir = os.path.join(root, "srv", "ganeti", "extstorage", name)
    os.makedirs(pdir)
    for script, body in PROVIDER.items():
        path = os.path.join(pdir, script)
        with open(path, "w") as fh:
            fh.write("#!/bin/sh\nset -e\n%s\n" % body)
        os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    with open(os.path.join(pdir, "parameters.list"), "w") as fh:
        fh.write("dir directory holding the volumes\n")
    return pdir


@pytest.fixture
def storage_cluster():
    cl = new_cluster("corral-st-")
    try:
        write_provider(cl.root)
        init_cluster(cl, "--enabled-disk-templates=diskless,file,ext,plain,drbd",
                     "--vg-name=xenvg")
        yield cl
    finally:
        destroy_local(cl)


def volumes(vols: str) -> list[str]:
    return sorted(v for v in os.listdir(vols) if not v.endswith(".info"))


def test_ext_provider_end_to_end(storage_cluster):
    cl = storage_cluster
    vols = cl.path("vols")
    os.makedirs(vols)
    cl.run(*ADD, "-t", "ext", "-o", "busybox",
           "--disk", "0:size=64m,provider=fileprov,dir=%s" % vols, "ext1")
    [vol] = volumes(vols)
    path = os.path.join(vols, vol)
    assert os.path.getsize(path) == 64 * 1024 * 1024
    with open(path, "rb") as fh:  # the busybox OS made an ext4 filesystem on it
        fh.seek(1024 + 0x38)
        assert fh.read(2) == b"\x53\xef"
    with open(path + ".info") as fh:
        assert fh.read() == "instance ext1"
    listing = cl.run("gnt-instance", "list", "--no-headers", "-o", "name,disk_template,status",
                     "ext1").stdout.split()
    assert listing == ["ext1", "ext", "running"]
    cl.run("gnt-instance", "grow-disk", "ext1", "0", "32m")
    assert os.path.getsize(path) == 96 * 1024 * 1024
    out = cl.run("gnt-instance", "activate-disks", "ext1").stdout
    assert out.strip().endswith(":disk/0:%s" % path)
    cl.run("gnt-instance", "shutdown", "ext1")
    cl.run("gnt-instance", "remove", "-f", "ext1")
    assert volumes(vols) == []


def test_ext_refusals(storage_cluster):
    cl = storage_cluster
    proc = cl.run(*ADD, "-t", "ext", "--no-install", "--disk", "0:size=8m,provider=nosuch",
                  "bad1", check=False)
    assert proc.returncode == 1
    assert "ExtStorage provider nosuch not found" in proc.stderr
    proc = cl.run(*ADD, "-t", "ext", "--no-install", "--disk", "0:size=8m", "bad2", check=False)
    assert proc.returncode == 1 and "provider=NAME" in proc.stderr


def test_lvm_and_drbd_refused_with_what_to_install(storage_cluster):
    cl = storage_cluster
    plain = cl.run(*ADD, "-t", "plain", "--no-install", "-s", "64m", "lv1", check=False)
    assert plain.returncode == 1
    assert "Disk template plain cannot be used: node localhost: plain:" in plain.stderr
    assert "device-mapper" in plain.stderr or "install the lvm2 package" in plain.stderr
    drbd = cl.run(*ADD, "-t", "drbd", "--no-install", "-s", "64m", "-n", "localhost", "dr1",
                  check=False)
    assert drbd.returncode == 1
    assert "Disk template drbd cannot be used: node localhost:" in drbd.stderr
    assert "DRBD kernel module not loaded" in drbd.stderr
    assert "install drbd-utils and load the drbd 8.x module" in drbd.stderr
    assert "Failure: prerequisites not met" in drbd.stderr
    verify = cl.run("gnt-cluster", "verify", "--error-codes", check=False)
    assert verify.returncode == 1
    assert "ERROR:ENODELVM:node:localhost:" in verify.stdout
    assert "ERROR:ENODEDRBD:node:localhost:DRBD kernel module not loaded" in verify.stdout


def test_storage_listings_and_verify_disks(storage_cluster):
    cl = storage_cluster
    cl.run(*ADD, "-t", "file", "--no-install", "-s", "16m", "f1")
    rows = cl.run("gnt-node", "list-storage", "-t", "file").stdout.splitlines()
    assert rows[0].split() == ["Node", "Type", "Name", "Size", "Used", "Free", "Allocatable"]
    node, kind, name, *_sizes, alloc = rows[1].split()
    assert (node, kind, name, alloc) == ("localhost", "file", cl.path("srv", "file"), "Y")
    sep = cl.run("gnt-node", "list-storage", "-t", "file", "--no-headers", "--separator=|",
                 "-o", "name,used").stdout.strip()
    assert sep.split("|")[0] == cl.path("srv", "file")
    bad = cl.run("gnt-node", "list-storage", "-t", "floppy", check=False)
    assert bad.returncode == 1 and "Unknown storage type: floppy" in bad.stderr
    modify = cl.run("gnt-node", "modify-storage", "--allocatable=no", "localhost", "file",
                    cl.path("srv", "file"), check=False)
    assert modify.returncode == 1 and "can not be modified" in modify.stderr
    vols = cl.run("gnt-node", "volumes")
    assert vols.stdout.splitlines()[0].split() == ["Node", "PhysDev", "VG", "Name", "Size",
                                                   "Instance"]
    verify = cl.run("gnt-cluster", "verify-disks")
    assert "No disks need to be activated." in verify.stdout
    conv = cl.run("gnt-instance", "modify", "-t", "drbd", "-n", "localhost", "f1", check=False)
    assert conv.returncode == 1 and "Unsupported disk template conversion" in conv.stderr
    cl.run("gnt-cluster", "repair-disk-sizes")
    replace = cl.run("gnt-instance", "replace-disks", "-s", "f1", check=False)
    assert replace.returncode == 1
    assert "Can only run replace disks for DRBD8-based and mirror instances" in replace.stderr
    both = cl.run("gnt-instance", "replace-disks", "-s", "-p", "f1", check=False)
    assert both.returncode == 1 and "One and only one of the -p, -s, -a, -n and -I" in both.stderr
