"""``mirror`` disk benchmarks for tools/bench (registered in bench.BENCHMARKS).

One 2-node kvm vcluster, one busybox guest on a ``mirror`` disk (primary
node1, secondary node2).  Writes are timed inside the guest (``/proc/uptime``
around ``dd if=/dev/zero bs=1M conv=notrunc,fsync`` into one preallocated file
of its root filesystem, so every run rewrites the same blocks of the same disk).

``mirror_write_overhead``: guest write throughput while replicated divided by
the same guest's throughput on the same disk without replication (a ratio;
1.0 = free, 0.5 = half the speed).  Unreplicated means the replication job is
cancelled (QMP ``block-job-cancel`` on the guest's QEMU): the guest then
writes to its local image only, with no mirror filter in the write path, the
state the driver reports as *disconnected* (a QEMU that came up without its
secondary); ``gnt-instance activate-disks`` then starts a new job that copies
the whole disk.  This is cleaner than a degraded disk (secondary's export
stopped), where each write still tries the dead NBD target first.  Rounds of
one replicated and one unreplicated run alternate, so a change of the
machine's load hits both sides; the metric is the median of the per-round
ratios.

``mirror_full_resync_mib_per_s``: at the end of each round, the wall time of
the ``gnt-instance activate-disks`` that copies the whole disk into the
secondary again (new job); the MiB allocated in the primary's image (the data;
holes go over as zeroes at next to no cost) divided by that time.

``mirror_resync_mib_per_s``: the secondary's export (qemu-storage-daemon) is
stopped, the guest writes M MiB (the job pauses: degraded, the changes go
into its dirty bitmap), then ``gnt-instance activate-disks`` restarts the
export and resumes the job until the disk is in sync again.  The bytes QEMU
copied (the job's ``offset`` after minus before) divided by the wall time of
activate-disks (submit to in sync).  That time includes waiting for QEMU's
NBD client to reconnect (it retries in the background with a backoff of 1 to
16 s, and the driver retries the resume every 3 s), so with a few tens of MiB
this metric is mostly reconnect latency, not copy speed.
"""

import contextlib
import glob
import os
import re
import select
import shutil
import signal
import statistics
import sys
import tempfile
import time
from typing import Callable, Iterator

from corral.hypervisor.kvm import qmp
from corral.tools import bench_migration as bm
from corral.tools import vcluster as vc_api
from corral.utils.console import GuestConsole

Out = Callable[[str, float, str], None]
REP_JOB = "corral-rep-disk0"
DISK_SIZE = "256m"


@contextlib.contextmanager
def _vcluster2() -> Iterator[vc_api.VCluster]:
    """A throwaway 2-node kvm vcluster (the mirror template is enabled by default)."""
    base = tempfile.mkdtemp(prefix="bmm", dir="/tmp")
    try:
        yield vc_api.create(base, nodes=2, hypervisor="kvm")
    finally:
        vc_api.destroy(base)


def _log(msg: str) -> None:
    sys.stderr.write("# mirror: %s\n" % msg)
    sys.stderr.flush()


class _MirrorGuest:
    """The benchmark guest: its console, its QEMU's replication job, its secondary."""

    def __init__(self, vc: vc_api.VCluster, name: str) -> None:
        self.vc, self.name = vc, name
        self.primary, self.secondary = vc.node("node1"), vc.node("node2")
        hv_dir = bm._hv_dir(self.primary)
        self.serial = os.path.join(hv_dir, name, "serial.sock")
        self.qmp = os.path.join(hv_dir, name, "qmp.sock")
        self._tag = 0

    def shell(self, command: str, expect: str, timeout: float = 300) -> re.Match:
        """Run ``command`` in the guest's root shell; the match of ``expect`` (which
        must contain ``@TAG@``, replaced by a fresh token, so the echoed command line
        and earlier output never match)."""
        self._tag += 1
        tag = "B%dX" % self._tag
        with GuestConsole(self.serial) as con:
            con.send(command.replace("@TAG@", tag))
            return con.wait_for(expect.replace("@TAG@", tag), timeout)

    def write_mib_per_s(self, path: str, mib: int) -> float:
        """Rewrite ``mib`` MiB of ``path`` in the guest (fsync'ed); MiB/s by the guest's clock."""
        m = self.shell("a=$(cut -d' ' -f1 /proc/uptime); dd if=/dev/zero of=%s bs=1M count=%d"
                       " conv=notrunc,fsync 2>/dev/null; r=$?; b=$(cut -d' ' -f1 /proc/uptime);"
                       " echo @TAG@ $r $a $b" % (path, mib),
                       r"@TAG@ (\d+) ([\d.]+) ([\d.]+)\r?\n")
        if m.group(1) != "0":
            raise RuntimeError("dd in the guest failed (exit %s)" % m.group(1))
        seconds = max(float(m.group(3)) - float(m.group(2)), 0.01)
        return mib / seconds

    def job(self) -> dict | None:
        with qmp.QmpClient(self.qmp, timeout=30) as mon:
            return next((j for j in mon.execute("query-block-jobs")
                         if j.get("device") == REP_JOB), None)

    def cancel_replication(self) -> None:
        """End the replication job: the guest writes to its local image only."""
        with qmp.QmpClient(self.qmp, timeout=30) as mon:
            mon.execute("block-job-cancel", {"device": REP_JOB, "force": True})
            deadline = time.monotonic() + 60
            while any(j.get("device") == REP_JOB for j in mon.execute("query-block-jobs")):
                if mon.wait_event(frozenset(["BLOCK_JOB_CANCELLED", "BLOCK_JOB_COMPLETED",
                                             "JOB_STATUS_CHANGE"]),
                                  deadline - time.monotonic()) is None:
                    raise RuntimeError("the replication job did not end")

    def in_sync(self) -> bool:
        job = self.job()
        return job is not None and bool(job.get("ready")) and job.get("io-status") == "ok" \
            and not job.get("paused") and job.get("offset") == job.get("len")

    def resync(self, attempts: int = 1) -> tuple[int, float]:
        """``gnt-instance activate-disks`` until in sync, at most ``attempts`` runs;
        (runs made, wall seconds of the last run).  RuntimeError if still not in sync."""
        for run in range(1, attempts + 1):
            start = time.perf_counter()
            bm._gnt(self.vc, "gnt-instance", "activate-disks", self.name)
            elapsed = time.perf_counter() - start
            if self.in_sync():
                return run, elapsed
        raise RuntimeError("not in sync after %d activate-disks: %s" % (attempts, self.job()))

    def image_data_mib(self) -> float:
        """MiB allocated in the primary's image (what a full resync copies as data;
        QEMU sends the holes as zeroes, which costs next to nothing)."""
        images = glob.glob(os.path.join(self.primary.root, "file", self.name, "*.disk0"))
        if len(images) != 1:
            raise RuntimeError("expected one image of %s, found %s" % (self.name, images))
        return os.stat(images[0]).st_blocks * 512 / 1048576.0

    def stop_export(self) -> None:
        """Stop the secondary's qemu-storage-daemon (as if it had died)."""
        pid_files = glob.glob(os.path.join(self.secondary.root, "var", "run", "corral",
                                           "mirror", "*", "qsd.pid"))
        if len(pid_files) != 1:
            raise RuntimeError("expected one export on %s, found %s" %
                               (self.secondary.name, pid_files))
        with open(pid_files[0]) as fh:
            pid = int(fh.read().strip())
        with open("/proc/%d/cmdline" % pid, "rb") as fh:
            if b"qemu-storage-daemon" not in fh.read():
                raise RuntimeError("pid %d is not the export" % pid)
        pidfd = os.pidfd_open(pid)
        try:
            os.kill(pid, signal.SIGTERM)
            if not select.select([pidfd], [], [], 30)[0]:
                raise RuntimeError("the export (pid %d) did not stop" % pid)
        finally:
            os.close(pidfd)


def bench_mirror(quick: bool, out: Out) -> None:
    """mirror_write_overhead (ratio) and mirror_resync_mib_per_s (2-node kvm vcluster)."""
    if not shutil.which("qemu-system-x86_64") or not shutil.which("qemu-storage-daemon"):
        raise RuntimeError("qemu-system-x86_64 / qemu-storage-daemon are not installed")
    rounds, write_mib, changed_mib = (3, 32, 32) if quick else (5, 64, 64)
    with _vcluster2() as vc:
        name = "benchm.%s.test" % vc.vcname
        bm._gnt(vc, "gnt-instance", "add", "-t", "mirror", "-s", DISK_SIZE, "-o", "busybox",
                "-n", "%s:%s" % (vc.node("node1").name, vc.node("node2").name),
                "--net", "0:link=br0", "-B", "maxmem=128,minmem=128",
                "--no-name-check", "--no-ip-check", name)
        guest = _MirrorGuest(vc, name)
        bm._wait_tick(guest.serial)
        guest.resync()  # the job QEMU started at boot copies the whole disk once
        guest.write_mib_per_s("/bench", write_mib)  # allocates the file; not measured
        ratios, rep, unrep, full = [], [], [], []
        for _ in range(rounds):
            rep.append(guest.write_mib_per_s("/bench", write_mib))
            guest.cancel_replication()
            unrep.append(guest.write_mib_per_s("/bench", write_mib))
            ratios.append(rep[-1] / unrep[-1])
            full.append(guest.image_data_mib() / guest.resync()[1])  # a new job: whole disk
        _log("replicated MiB/s %s, unreplicated MiB/s %s; full resync %.0f MiB of data at"
             " MiB/s %s" % (" ".join("%.1f" % r for r in rep),
                            " ".join("%.1f" % r for r in unrep), guest.image_data_mib(),
                            " ".join("%.1f" % r for r in full)))
        out("mirror_write_overhead", statistics.median(ratios), "ratio")
        out("mirror_full_resync_mib_per_s", statistics.median(full), "MiB/s")
        _measure_resync(guest, changed_mib, out)


def _measure_resync(guest: _MirrorGuest, changed_mib: int, out: Out) -> None:
    guest.stop_export()
    degraded = guest.write_mib_per_s("/bench2", changed_mib)
    job = guest.job()
    if job is None or not (job.get("paused") or job.get("io-status", "ok") != "ok"):
        raise RuntimeError("the disk is not degraded with its export stopped: %s" % job)
    before = int(job["offset"])
    start = time.perf_counter()
    # The driver resumes the job once QEMU's NBD client is back (activate-disks
    # waits for that); should one run still end degraded, run it again, as an
    # operator or the watcher would, and count the time until in sync.
    runs, _last = guest.resync(attempts=3)
    seconds = time.perf_counter() - start
    after = guest.job()
    copied = int(after["offset"]) - before if after else 0
    _log("degraded write %.1f MiB/s; resync copied %.1f MiB (guest wrote %d MiB) in %.2f s"
         " (activate-disks runs: %d)" % (degraded, copied / 1048576.0, changed_mib, seconds,
                                         runs))
    out("mirror_resync_mib_per_s", copied / 1048576.0 / seconds, "MiB/s")
