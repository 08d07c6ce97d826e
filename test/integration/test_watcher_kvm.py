"""The watcher brings a real guest back: kill its QEMU, run corral-watcher once (kvm, TCG)."""

import os
import select
import signal

import test_instances_kvm
from corral.utils import process
from test_instances_kvm import hv_dir, kvm_cluster, status, wait_boots  # noqa: F401

# slow, and skipped where QEMU, busybox-static or socat are missing
pytestmark = test_instances_kvm.pytestmark


def test_watcher_restarts_a_killed_guest(kvm_cluster):  # noqa: F811
    cl = kvm_cluster
    cl.run("gnt-instance", "add", "--no-name-check", "--no-ip-check", "-t", "file",
           "--disk", "0:size=64m", "-o", "busybox", "--no-nics", "-B", "maxmem=128", "vm1",
           timeout=300)
    wait_boots(cl, "vm1", 1)
    pid = process.read_pid_file(os.path.join(hv_dir(cl), "vm1", "pid"))
    fd = os.pidfd_open(pid)
    try:
        os.kill(pid, signal.SIGKILL)
        assert select.select([fd], [], [], 60)[0], "QEMU did not die"
    finally:
        os.close(fd)
    assert status(cl, "vm1") == "ERROR_down"
    cl.run("corral-watcher", "--once", timeout=300)
    assert status(cl, "vm1") == "running"
    wait_boots(cl, "vm1", 2)
    new_pid = process.read_pid_file(os.path.join(hv_dir(cl), "vm1", "pid"))
    assert new_pid != pid and process.is_process_alive(new_pid)
    cl.run("gnt-instance", "remove", "-f", "--shutdown-timeout=90", "vm1", timeout=300)
