"""gnt-instance add with Debian's ganeti-instance-debootstrap, unchanged (issue 4).

The OS definition is Debian's package unpacked (not installed: it would pull
udev and systemd onto the machine), wrapped only to set what this machine
lacks (test_os_scripts._gid_wrapper).  The instance disk holds a Debian root
afterwards and no loop device is left on its image.  (This is the one full
debootstrap of Debian's definition in the suite: it goes through the whole
stack, gnt-instance add to the OS scripts.)
"""

import glob
import os
import shutil
import subprocess

import pytest

from conftest import destroy_local, init_cluster, new_cluster
from test_os_scripts import _gid_wrapper, gid_tree, loops_of  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow


@pytest.mark.timeout(1200)
def test_add_with_ganeti_instance_debootstrap(gid_tree, tmp_path):  # noqa: F811
    cl = new_cluster("corral-gid-")
    try:
        init_cluster(cl)
        os_dir = cl.path("srv", "ganeti", "os")
        os.makedirs(os_dir)
        shutil.copytree(os.path.join(_gid_wrapper(gid_tree, tmp_path), "debootstrap"),
                        os.path.join(os_dir, "debootstrap"))
        name = "gid1.example.test"
        cl.run("gnt-instance", "add", "-t", "file", "-s", "1g", "-o", "debootstrap",
               "-O", "filesystem=ext4", "--no-nics", "--no-start", "--no-name-check",
               "--no-ip-check", "-n", "localhost", name, timeout=1100)
        images = glob.glob(cl.path("srv", "file", name, "*"))
        assert len(images) == 1, images
        assert loops_of(images[0]) == []
        listing = subprocess.run(["debugfs", "-R", "ls -l /etc", images[0]],
                                 capture_output=True, text=True, check=True).stdout
        for entry in ("debian_version", "fstab", "hostname", "apt"):
            assert entry in listing
        hostname = subprocess.run(["debugfs", "-R", "cat /etc/hostname", images[0]],
                                  capture_output=True, text=True, check=True).stdout
        assert hostname.strip() == name
        cl.run("gnt-instance", "remove", "-f", name)
    finally:
        destroy_local(cl)
