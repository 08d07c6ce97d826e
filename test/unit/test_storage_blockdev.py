"""Adopted block devices, with a real loop device when the machine allows it."""

import os
import shutil
import subprocess

import pytest

from corral import errors, storage
from corral.storage import blockdev


@pytest.fixture
def loopdev(tmp_path):
    """A 4 MiB loop device over a temp file; always detached afterwards."""
    if os.geteuid() != 0 or not shutil.which("losetup"):
        pytest.skip("needs root and losetup")
    img = tmp_path / "backing.img"
    with open(img, "wb") as fh:
        fh.truncate(4 * 1024 * 1024)
    dev = subprocess.run(["losetup", "-f", "--show", str(img)], capture_output=True,
                         text=True, check=True).stdout.strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)


def test_adopt_existing_loop_device(loopdev):
    dev = storage.get_device_class("blockdev").create(("manual", loopdev), [], 4, {})
    assert dev.attached and dev.dev_path == loopdev
    assert dev.get_actual_size() == 4 * 1024 * 1024
    dev.assemble()
    dev.shutdown()
    dev.remove()  # forgets only
    assert blockdev.is_block_device(loopdev)
    assert dev.dev_path is None


def test_adopt_rejects_missing_or_regular_file(tmp_path):
    regular = tmp_path / "plain"
    regular.write_bytes(b"x")
    for path in (str(regular), str(tmp_path / "missing")):
        with pytest.raises(errors.BlockDeviceError, match="not an existing block device"):
            blockdev.PersistentBlockDevice.create(("manual", path), [], 1, {})
    dev = blockdev.PersistentBlockDevice(("manual", str(regular)), [], 1, {})
    with pytest.raises(errors.BlockDeviceError, match="missing or not a block device"):
        dev.assemble()


def test_bad_logical_id():
    with pytest.raises(errors.BlockDeviceError, match="expected \\('manual', path\\)"):
        blockdev.PersistentBlockDevice(("auto", "/dev/sda"), [], 1, {})
    with pytest.raises(errors.BlockDeviceError, match="not absolute"):
        blockdev.PersistentBlockDevice(("manual", "sda"), [], 1, {})
