"""Synchronous replication of ``mirror`` disks inside QEMU (doc/design-mirror.md).

The primary's QEMU runs one ``blockdev-mirror`` job per mirror disk with
``copy-mode=write-blocking``: a guest write completes only once it is on the
local image *and* on the secondary's copy, reached as plain NBD through the
unix socket of the node's TLS tunnel (storage/mirror.py).  The job is never
completed; it stays ``ready`` while both copies are equal.

``on-target-error=stop``: when the secondary goes away the job pauses instead
of ending, and keeps recording which blocks the guest changed in its dirty
bitmap; the guest carries on unreplicated (degraded).  Resuming the job once
the secondary is back copies only those blocks (QEMU's NBD client reconnects
through the tunnel by itself).  A job that is gone (QEMU restarted, a new
secondary image) is started again with ``sync=full``: the whole disk.
"""

import logging
from typing import Any

from corral import errors
from corral.hypervisor import base
from corral.hypervisor.kvm import qmp, runtime

REP_JOB = "corral-rep-disk%d"
LOCAL_NODE = "disk%d-local"
TARGET_NODE = "disk%d-mirror"
# Seconds a replicated write waits for a lost NBD connection to come back
# before the job pauses (degraded) and the guest goes on alone.
RECONNECT_DELAY = 2

# A resumed job that errors within RESUME_WINDOW seconds is retried, RESUME_TRIES times.
# The budget (2 x RESUME_WINDOW per try, 48 s) covers two of QEMU's background NBD
# connection attempts after a long outage: their backoff grows to 16 s, plus the
# tunnel's connect-timeout (5 s) for an attempt that started just before the heal.
# At 24 s, CI saw a healed secondary reported "still unreachable".
RESUME_WINDOW = 1.5
RESUME_TRIES = 16

SNAPSHOT_TIMEOUT = 2.0  # seconds an instance query waits for QEMU's monitor
STOP_TIMEOUT = 60.0  # seconds for cancelled jobs to end (in-flight writes drain first)

IN_SYNC, SYNCING, DEGRADED, DISCONNECTED = "in_sync", "syncing", "degraded", "disconnected"


def target_options(idx: int, socket_path: str) -> dict[str, Any]:
    """blockdev-add arguments of the secondary's copy of disk ``idx``."""
    return {"node-name": TARGET_NODE % idx, "driver": "raw",
            "file": {"driver": "nbd", "server": {"type": "unix", "path": socket_path},
                     "export": "disk", "reconnect-delay": RECONNECT_DELAY}}


def mirror_options(idx: int) -> dict[str, Any]:
    """blockdev-mirror arguments: synchronous, pausing (not failing) on target errors."""
    return {"job-id": REP_JOB % idx, "device": LOCAL_NODE % idx, "target": TARGET_NODE % idx,
            "sync": "full", "copy-mode": "write-blocking", "on-target-error": "stop",
            "on-source-error": "report"}


def disk_state(job: dict[str, Any] | None, dirty: int = 0,
               settled: dict[str, Any] | None = None) -> dict[str, Any]:
    """The replication state of one disk from its QEMU job (None: no job).  Pure.

    ``dirty``: bytes the job still has to copy (its dirty bitmap).  A
    write-blocking job is ``in_sync`` when it is ready, error-free and has
    nothing dirty; ``settled`` says more: the job queried again afterwards
    (``settled``) had written every byte counted at the first look (its
    ``offset`` reached the first ``len``), so no copy that was in flight can
    still fail — only then may the secondary be recorded complete.
    ``syncing`` while copying (``percent`` done); ``degraded`` when paused by
    a target error (it still records changes); ``disconnected``: no job.
    """
    if job is None:
        return {"state": DISCONNECTED, "percent": None, "offset": 0, "len": 0, "error": None,
                "settled": False}
    offset, length = int(job.get("offset", 0)), int(job.get("len", 0))
    percent = 100.0 * offset / length if length else 100.0
    out = {"offset": offset, "len": length, "percent": round(min(percent, 99.99), 2),
           "error": job.get("error"), "settled": False}
    if job.get("paused") or job.get("io-status", "ok") != "ok" or \
            job.get("status") in ("standby", "paused", "aborting", "concluded", "null"):
        out["state"], out["percent"] = DEGRADED, round(percent, 2)
    elif job.get("ready") and not dirty:
        out["state"], out["percent"] = IN_SYNC, None
        out["settled"] = bool(settled and settled.get("ready") and not settled.get("paused")
                              and settled.get("io-status", "ok") == "ok"
                              and int(settled.get("offset", 0)) >= length)
    else:
        out["state"] = SYNCING
    return out


def mirrored(disks: list[base.DiskSpec]) -> list[tuple[int, str]]:
    """(index, socket) of the disks this node replicates to a secondary."""
    return [(idx, d.mirror) for idx, d in enumerate(disks)
            if d.dev_type == "mirror" and d.mirror]


def replicate(mon: qmp.QmpClient, disks: list[tuple[int, str]]) -> list[str]:
    """Make every listed disk replicate; one message per disk that could not.

    Idempotent: a running job is left alone, a paused one resumed (only the
    changed blocks are copied), a missing one (re)started with a full copy.
    Failures do not raise: the guest keeps running on its local copy.
    """
    jobs = {j["device"]: j for j in mon.execute("query-block-jobs")}
    nodes = {n.get("node-name") for n in mon.execute("query-named-block-nodes",
                                                        {"flat": True})}
    problems = []
    for idx, sock in disks:
        job = jobs.get(REP_JOB % idx)
        try:
            if job is not None and job.get("status") not in ("concluded", "null"):
                if job.get("paused") and not _resume(mon, REP_JOB % idx):
                    problems.append("disk/%d: the secondary is still unreachable" % idx)
                continue
            if job is not None:
                mon.execute("job-dismiss", {"id": REP_JOB % idx})
            if TARGET_NODE % idx in nodes:
                mon.execute("blockdev-del", {"node-name": TARGET_NODE % idx})
            mon.execute("blockdev-add", target_options(idx, sock), timeout=30)
            mon.execute("blockdev-mirror", mirror_options(idx))
        except qmp.QmpError as err:
            problems.append("disk/%d: %s" % (idx, err))
    return problems


def _resume(mon: qmp.QmpClient, job_id: str) -> bool:
    """Resume a paused job; False if its target still fails after RESUME_TRIES.

    The first write after a lost connection fails at once and only starts
    QEMU's NBD reconnect in the background, which reports no event; so a
    resume that errors within RESUME_WINDOW seconds is retried after that
    window (a bounded retry, the only signal being the next error).
    """
    for _ in range(RESUME_TRIES):
        mon.events.clear()
        mon.execute("block-job-resume", {"device": job_id})
        if mon.wait_event(frozenset(["BLOCK_JOB_ERROR"]), RESUME_WINDOW) is None:
            return True
        # No event tells that the reconnect finished: give it the window (this
        # returns early, raising, only if QEMU goes away).
        mon.wait_event(frozenset(), RESUME_WINDOW)
    return False


def drop_jobs(mon: qmp.QmpClient, indices: list[int], timeout: float = STOP_TIMEOUT) -> None:
    """Cancel (forced: no final copy) the replication jobs of disks ``indices``, wait
    for them to end (QMP events), and delete their NBD targets.  Idempotent.

    Needed when the image behind a secondary's export is replaced
    (replace-disks -s/-n): resuming a paused job would copy only the blocks
    changed since the pause, and a job that saw no write meanwhile would
    report "in sync" against an empty image.  Only new jobs (whole copies)
    make the copies equal again.

    HypervisorError if a job does not end within ``timeout`` seconds.
    """
    wanted = {REP_JOB % idx for idx in indices}
    qmp.end_block_jobs(mon, wanted.__contains__, True, timeout)
    nodes = {n.get("node-name") for n in mon.execute("query-named-block-nodes",
                                                        {"flat": True}) or []}
    for idx in indices:
        if TARGET_NODE % idx in nodes:
            mon.execute("blockdev-del", {"node-name": TARGET_NODE % idx})


class KvmReplicationMixin:
    """Needs the driver's ``_qmp``-style helpers; see the module docstring."""

    def _start_replication(self, name: str, disks: list[base.DiskSpec]) -> list[str]:
        """Right after QEMU starts: replicate what can be (caller holds the lock)."""
        targets = mirrored(disks)
        if not targets:
            return []
        try:
            with qmp.QmpClient(runtime.paths_for(name).qmp) as mon:
                return replicate(mon, targets)
        except qmp.QmpError as err:
            return ["%s" % err]

    def replication_start(self, name: str, disks: list[base.DiskSpec]) -> list[str]:
        """(Re)connect the mirror disks of a running instance to ``disks``' sockets.

        Used after a migration (roles swapped), after the secondary came back
        and by activate-disks.  The saved runtime learns the sockets, so a
        reboot keeps replicating.  Returns the disks that could not.
        """
        with runtime.instance_lock(runtime.check_name(name)):
            paths = runtime.paths_for(name)
            saved = runtime.load_runtime(paths)
            if not runtime.running_pid(paths, name) or saved is None:
                raise errors.HypervisorError("Instance %s is not running" % name)
            saved["disks"] = [d.to_dict() for d in disks]
            runtime.save_runtime(paths, saved)
            return self._start_replication(name, disks)

    def replication_stop(self, name: str, indices: list[int]) -> bool:
        """Drop the replication of disks ``indices`` of running instance ``name``
        (see :func:`drop_jobs`); False (nothing done) if it does not run here.
        The guest keeps running on its local images until replication_start."""
        with runtime.instance_lock(runtime.check_name(name)):
            paths = runtime.paths_for(name)
            if not runtime.running_pid(paths, name):
                return False
            with qmp.QmpClient(paths.qmp) as mon:
                drop_jobs(mon, indices)
        return True

    def replication_status(self, name: str, wait: float = 0.0) -> list[dict[str, Any]] | None:
        """Per disk (in order) its replication state, None for non-mirror disks;
        None altogether if the instance is not running here.

        ``wait``: if a disk is not in sync, first wait up to that long for a
        job event (ready, error, status change) so callers following a resync
        are woken by QEMU rather than polling.
        """
        with runtime.instance_lock(runtime.check_name(name)):
            paths = runtime.paths_for(name)
            saved = runtime.load_runtime(paths)
            if not runtime.running_pid(paths, name) or saved is None:
                return None
        disks = [base.DiskSpec.from_dict(d) for d in saved.get("disks", [])]
        with qmp.QmpClient(paths.qmp) as mon:
            states = _states(mon, disks)
            if wait > 0 and any(s is not None and s["state"] == SYNCING for s in states):
                mon.wait_event(_WAKE_EVENTS, wait)
                states = _states(mon, disks)
        return states


def snapshot(paths: Any, saved: dict[str, Any]) -> list[dict[str, Any] | None] | None:
    """Replication states for the live data of instance queries, or None.

    Takes no instance lock and waits at most SNAPSHOT_TIMEOUT for QEMU's
    monitor (busy with another client, e.g. a migration): a list query must
    not stall behind a long operation; it then shows no replication state.
    """
    disks = [base.DiskSpec.from_dict(d) for d in saved.get("disks", [])]
    try:
        with qmp.QmpClient(paths.qmp, timeout=SNAPSHOT_TIMEOUT) as mon:
            return _states(mon, disks)
    except qmp.QmpError as err:
        logging.info("No replication state from %s: %s", paths.qmp, err)
        return None


_WAKE_EVENTS = frozenset(["BLOCK_JOB_READY", "BLOCK_JOB_ERROR", "BLOCK_JOB_COMPLETED",
                          "JOB_STATUS_CHANGE"])


def _dirty_bytes(mon: qmp.QmpClient) -> dict[str, int]:
    """Bytes still dirty in the (anonymous) job bitmaps, by block node name."""
    out: dict[str, int] = {}
    for node in mon.execute("query-named-block-nodes", {"flat": True}):
        out[node.get("node-name", "")] = sum(int(b.get("count", 0))
                                             for b in node.get("dirty-bitmaps") or []
                                             if not b.get("name"))
    return out


def _states(mon: qmp.QmpClient, disks: list[base.DiskSpec]) -> list[dict[str, Any] | None]:
    """Each mirror disk's state: one look at the jobs and bitmaps, a second look at
    the jobs only if a disk may be in sync (see :func:`disk_state`)."""
    jobs = {j["device"]: j for j in mon.execute("query-block-jobs")}
    dirty = _dirty_bytes(mon)
    again: dict[str, Any] = {}
    if any(j.get("ready") for j in jobs.values()):
        again = {j["device"]: j for j in mon.execute("query-block-jobs")}
    return [disk_state(jobs.get(REP_JOB % idx), dirty.get(LOCAL_NODE % idx, 0),
                       again.get(REP_JOB % idx)) if d.dev_type == "mirror" else None
            for idx, d in enumerate(disks)]
