"""The live migration tasklet: the master-side sequence of spec §8 (steps 1-9).

``LiveMigration.run`` moves a running instance from ``source`` to ``target``
whose storage is either visible on both (shared/externally mirrored) or is
copied on the way (``storage``: local disks created empty on the target and
filled by QEMU's block mirror, or by an offline copy for drivers where that is
consistent).  It never leaves two running copies: on any failure after the
target accepted, the abort path cancels the migration on the source (the
guest keeps running there), kills the waiting target and removes what was
created on it; the configuration changes only after the memory arrived.
See doc/design-migration.md.
"""

import concurrent.futures
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from corral import constants, errors, objects
from corral.cmdlib import instance_mirror
from corral.cmdlib import instance_storage as ist
from corral.cmdlib import instance_utils as iu
from corral.hypervisor import HYPERVISORS

Feedback = Callable[[str], None]
WAIT_TICK = 1.0              # seconds one status call may wait for a QEMU event
REPORT_INTERVAL = 2.0        # seconds between progress lines in the job log
STALL_TIMEOUT = 20.0         # no progress for this long = the migration is stuck
ABORT_RPC_TIMEOUT = 10.0     # cleanup calls to a target that may be unreachable
POSTCOPY_AFTER_SYNCS = 2     # precopy dirty-sync rounds before switching to postcopy
_MIB = 1024 * 1024


@dataclass
class MigrationPlan:
    """What to migrate where, decided by the LU's check_prereq."""

    instance: objects.Instance
    source: objects.Node
    target: objects.Node
    live: bool
    storage: bool = False            # local disks travel with the instance
    allow_runtime_changes: bool = True
    ignore_hvversions: bool = False
    target_free_mem: int | None = None
    source_info: dict | None = None  # migration_info of the prerequisite check
    created: list[objects.Disk] = field(default_factory=list)


def node_ip(node: objects.Node) -> str:
    """Migration traffic goes over the secondary network (spec §8 step 5)."""
    return node.secondary_ip or node.primary_ip


def storage_migration_kind(hypervisor: str) -> str | None:
    """``mirror``, ``copy`` or None: how the driver moves non-shared disks."""
    cls = HYPERVISORS.get(hypervisor)
    return getattr(cls, "STORAGE_MIGRATION", None) if cls is not None else None


def _mib(count: float) -> str:
    return "%.1f MiB" % (count / _MIB)


class _Stall:
    """Notices a transfer whose progress counter stops moving."""

    def __init__(self, what: str, target: str) -> None:
        self.what, self.target = what, target
        self.last: Any = None
        self.since = time.monotonic()

    def check(self, progress: Any) -> None:
        now = time.monotonic()
        if progress != self.last:
            self.last, self.since = progress, now
        elif now - self.since > STALL_TIMEOUT:
            raise errors.OpExecError("%s made no progress for %d seconds (is node %s"
                                     " reachable?)" % (self.what, STALL_TIMEOUT, self.target))


class DrbdRoles:
    """The DRBD role changes around a migration (spec §8 steps 4 and 9)."""

    def __init__(self, lu: Any, inst: objects.Instance, feedback: Feedback) -> None:
        self.lu, self.inst, self.feedback = lu, inst, feedback

    def _call(self, procedure: str, nodes: list[str], extra: dict | None = None) -> None:
        args = dict(extra or {}, disks=ist._rpc_disks(self.lu, self.inst.disks))
        for node, res in self.lu.rpc.call(procedure, nodes, args).items():
            res.raise_if_failed("Cannot change the disks of %s on node %s (%s)" %
                                (self.inst.name, node, procedure))

    def check_consistency(self, node: str) -> None:
        self.feedback("* checking disk consistency between source and target")
        res = self.lu.rpc.call_one("blockdev_sync_status", node,
                                   {"disks": ist._rpc_disks(self.lu, self.inst.disks)})
        res.raise_if_failed("Cannot check the disks of %s" % self.inst.name)
        for disk, st in zip(self.inst.disks, res.data):
            if st is None or st.get("is_degraded") or st.get("ldisk_status") == "faulty":
                raise errors.OpExecError("Disk %s is degraded or not fully synchronized on"
                                         " target node, aborting migration" % disk.iv_name)

    def secondary(self, node: str) -> None:
        self.feedback("* switching node %s to secondary mode" % node)
        self._call("blockdev_close", [node])

    def reconnect(self, nodes: list[str], multimaster: bool) -> None:
        self.feedback("* changing into standalone mode")
        self._call("drbd_disconnect_net", nodes)
        self.feedback("* changing disks into %s mode" %
                      ("dual-master" if multimaster else "single-master"))
        self._call("drbd_attach_net", nodes, {"multimaster": multimaster})
        self.wait_sync()

    def wait_sync(self) -> None:
        self.feedback("* wait until resync is done")
        ist.wait_for_sync(self.lu, self.inst)


class LiveMigration:
    """Runs one migration; ``lu`` supplies cfg, rpc and the log."""

    def __init__(self, lu: Any, plan: MigrationPlan, feedback: Feedback) -> None:
        self.lu, self.plan, self.feedback = lu, plan, feedback
        self.cfg, self.rpc = lu.cfg, lu.rpc
        self.inst = plan.instance
        self.src, self.dst = plan.source.name, plan.target.name
        self.spec = iu.instance_rpc(self.cfg, self.inst)
        self.cluster = self.cfg.get_cluster_info()
        self.kind = storage_migration_kind(self.inst.hypervisor) if plan.storage else None
        self.accepted = False
        self.drbd = DrbdRoles(lu, self.inst, feedback) \
            if self.inst.disk_template == constants.DT_DRBD8 else None
        self.mirror = instance_mirror.MirrorRoles(lu, self.inst, feedback) \
            if self.inst.disk_template == constants.DT_MIRROR else None
        self.dual = False

    # ---- the sequence -----------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Migrate; the final QEMU status (downtime etc.) or OpExecError (config unchanged)."""
        self.feedback("Migrating instance %s" % self.inst.name)
        if self.drbd is not None:
            self.drbd.check_consistency(self.dst)
        if self.mirror is not None:
            self.mirror.check_consistency()
        src = self.plan.source_info or self._call(
            self.src, "migration_info", {"instance": self.spec},
            "Failed to get migration information from node %s" % self.src)
        if not src.get("running"):
            raise errors.OpExecError("Instance %s is not running on node %s" %
                                     (self.inst.name, self.src))
        self._balloon(src.get("memory"))
        try:
            self._prepare_target(src)
        except errors.GenericError as err:
            self.feedback("Pre-migration failed, aborting")
            self._abort()
            raise errors.OpExecError("Could not pre-migrate instance %s: %s" %
                                     (self.inst.name, _text(err))) from err
        try:
            self._move_disks()
            self.feedback("* migrating instance to %s" % self.dst)
            status = self._call(self.src, "instance_migrate",
                                {"instance": self.spec, "target_ip": node_ip(self.plan.target),
                                 "live": self.plan.live, "wait": WAIT_TICK},
                                "Could not start the migration on node %s" % self.src,
                                timeout=WAIT_TICK + 60)
            status = self._wait_memory(status)
        except errors.GenericError as err:
            self.feedback("Migration failed, aborting")
            self._abort()
            raise errors.OpExecError("Could not migrate instance %s: %s" %
                                     (self.inst.name, _text(err))) from err
        self._finalize(src["info"])
        self.feedback("* done")
        return status

    def _call(self, node: str, procedure: str, args: dict, what: str,
              timeout: float | None = None) -> Any:
        res = self.rpc.call_one(procedure, node, args, timeout=timeout)
        if res.failed:
            raise errors.OpExecError("%s: %s" % (what, res.fail_msg))
        return res.data

    def _balloon(self, current: int | None) -> None:
        """Step 2: shrink the guest to the target's free memory if it must (and may)."""
        free = self.plan.target_free_mem
        if free is None or current is None or int(current) <= free:
            return
        if not self.plan.allow_runtime_changes:
            raise errors.OpExecError("Memory ballooning not allowed and not enough memory"
                                     " on the target node")
        self.feedback("* memory ballooning instance to %s MiB" % free)
        self._call(self.src, "instance_balloon_memory",
                   {"instance": self.spec, "memory": int(free)},
                   "Cannot balloon instance %s" % self.inst.name)

    def _target_disks(self) -> list[objects.Disk]:
        if not self.plan.storage:
            return list(self.inst.disks)
        disks = [objects.Disk.from_dict(d.to_dict()) for d in self.inst.disks]
        for disk in disks:
            disk.nodes = [self.plan.target.uuid]
        return disks

    def _prepare_target(self, src: dict[str, Any]) -> None:
        """Steps 4-5: new disks for a storage migration, then accept_instance."""
        disks = self._target_disks()
        if self.plan.storage and disks:
            self.feedback("* creating the instance's disks on %s" % self.dst)
            ist.create_disks(self.lu, self.inst, disks, node_uuid=self.plan.target.uuid)
            self.plan.created = disks
        if self.drbd is not None:
            self.drbd.secondary(self.dst)
            self.dual = True
            self.drbd.reconnect([self.src, self.dst], multimaster=True)
        self.feedback("* preparing %s to accept the instance" % self.dst)
        self.accepted = True  # from here on the abort path stops the target
        dst = self._call(self.dst, "accept_instance",
                         {"instance": self.spec, "info": src["info"],
                          "target_ip": node_ip(self.plan.target),
                          "disks": ist._rpc_disks(self.lu, disks),
                          "storage": bool(self.plan.storage and self.kind == "mirror"),
                          "source_hv_version": src.get("hv_version"),
                          "ignore_hvversions": self.plan.ignore_hvversions},
                         "Failed to prepare node %s for the migration" % self.dst)
        if (dst or {}).get("hv_version") != src.get("hv_version"):
            self.feedback("* warning: hypervisor version mismatch between source (%s) and"
                          " target (%s) node, migrating anyway" %
                          (src.get("hv_version"), (dst or {}).get("hv_version")))

    # ---- storage --------------------------------------------------------------------------

    def _move_disks(self) -> None:
        if not self.plan.storage or not self.inst.disks:
            return
        if self.kind == "mirror":
            self.feedback("* mirroring %d disk(s) to %s" % (len(self.inst.disks), self.dst))
            self._call(self.src, "instance_mirror_disks",
                       {"instance": self.spec, "target_ip": node_ip(self.plan.target),
                        "count": len(self.inst.disks)},
                       "Could not start the disk mirror on node %s" % self.src)
            self._wait_mirror()
        else:
            self.feedback("* copying %d disk(s) to %s" % (len(self.inst.disks), self.dst))
            copy_disks(self.lu, self.inst.disks, self.plan.source, self.plan.target,
                       self.plan.created, "none", self.feedback)

    def _wait_mirror(self) -> None:
        stall = _Stall("The disk mirror", self.dst)
        last_report = time.monotonic()
        count = len(self.inst.disks)
        while True:
            st = self._status()
            jobs = st["disks"]
            failed = [d for d in jobs if d.get("error")]
            if failed:
                raise errors.OpExecError("Disk mirror failed: %s" % failed[0]["error"])
            if len(jobs) < count or any(d["status"] == "concluded" and not d["ready"]
                                        for d in jobs):
                raise errors.OpExecError("Disk mirror job(s) ended before being in sync")
            done, total = sum(d["offset"] for d in jobs), sum(d["len"] for d in jobs)
            if all(d["ready"] for d in jobs):
                self.feedback("* disk mirror progress: 100.00 %% (%s in sync)" % _mib(total))
                return
            stall.check(done)
            if time.monotonic() - last_report >= REPORT_INTERVAL and total:
                self.feedback("* disk mirror progress: %.2f %% (%s of %s)" %
                              (100.0 * done / total, _mib(done), _mib(total)))
                last_report = time.monotonic()

    # ---- memory ---------------------------------------------------------------------------

    def _status(self, start_postcopy: bool = False) -> dict[str, Any]:
        return self._call(self.src, "instance_migration_wait",
                          {"instance": self.spec, "wait": WAIT_TICK,
                           "start_postcopy": start_postcopy},
                          "Could not get the migration status from node %s" % self.src,
                          timeout=WAIT_TICK + 60)

    def _wait_memory(self, first: dict[str, Any]) -> dict[str, Any]:
        """Step 7: follow query-migrate until completed; progress into the job log."""
        postcopy = "postcopy-ram" in (self.spec["hvparams"].get("migration_caps") or "")
        switch = switched = False
        stall = _Stall("The migration", self.dst)
        last_report, last_sent = time.monotonic(), 0
        st: dict[str, Any] | None = first
        while True:
            if st is None:
                st = self._status(start_postcopy=switch)
                switched, switch = switched or switch, False
            state = st["status"]
            if state == "completed":
                self._report_done(st)
                return st
            if state in ("failed", "cancelled", "cancelling"):
                raise errors.OpExecError("Migration %s: %s" % (state, st.get("info") or
                                                               "see the source node's log"))
            stall.check((state, st["transferred"], st["remaining"]))
            total, now = st["total"], time.monotonic()
            if now - last_report >= REPORT_INTERVAL and total:
                speed = (st["transferred"] - last_sent) / (now - last_report)
                self.feedback("* memory transfer progress: %.2f %% (%s/s)" %
                              (100.0 * (total - st["remaining"]) / total, _mib(speed)))
                last_report, last_sent = now, st["transferred"]
            if postcopy and not switched and state == "active" and \
                    st["dirty_sync_count"] >= POSTCOPY_AFTER_SYNCS:
                self.feedback("* switching to postcopy")
                switch = True
            st = None

    def _report_done(self, st: dict[str, Any]) -> None:
        took = st.get("total_time")
        self.feedback("* memory transfer progress: 100.00 %% (%s%s)" % (
            _mib(st["transferred"]), (" in %.2f s, %s/s" % (
                took / 1000.0, _mib(st["transferred"] * 1000.0 / took))) if took else ""))
        self.feedback("* migration completed, downtime %d ms" % int(st.get("downtime") or 0))

    # ---- end --------------------------------------------------------------------------------

    def _finalize(self, info: str) -> None:
        """Step 8-9: source copy away, config, target runs, old disks closed/removed.

        The memory is on the target: both ends are finalized while the
        configuration is written (it follows the guest whatever they answer);
        a master crash in between leaves a state ``--cleanup`` repairs.
        """
        inst = self.inst
        if self.plan.storage and self.kind == "mirror":
            self._call(self.src, "instance_mirror_stop", {"instance": self.spec},
                       "Could not complete the disk mirror on node %s" % self.src)
        old_disks = list(inst.disks)
        old_rpc = ist._rpc_disks(self.lu, old_disks)
        close = [] if self.plan.storage or inst.disk_template in constants.DTS_INT_MIRROR \
            else old_disks
        src_job = run_async(self.rpc.call_one, "finalize_migration_src", self.src,
                            {"instance": self.spec, "success": True, "live": self.plan.live,
                             "disks": ist._rpc_disks(self.lu, close)})
        dst_job = run_async(self.rpc.call_one, "finalize_migration_dst", self.dst,
                            {"instance": self.spec, "info": info, "success": True})
        set_primary(inst, self.plan.source.uuid, self.plan.target.uuid)
        if self.plan.storage:
            inst.disks = self.plan.created or inst.disks
        self.cfg.update(inst)
        src_res, dst_res = src_job.result(), dst_job.result()
        if not src_res.failed and src_res.data:
            self.lu.log_warning("Could not close the old disks on node %s: %s", self.src,
                                src_res.data)
        if dst_res.failed:
            raise errors.OpExecError("Could not finalize instance migration on node %s: %s" %
                                     (self.dst, dst_res.fail_msg))
        if src_res.failed:
            raise errors.OpExecError("Instance migration succeeded, but finalization failed"
                                     " on the source node %s: %s" % (self.src,
                                                                     src_res.fail_msg))
        if self.drbd is not None:
            self.drbd.secondary(self.src)
            self.drbd.wait_sync()
            self.drbd.reconnect([self.src, self.dst], multimaster=False)
            return
        if self.mirror is not None:
            self.mirror.after_switch(old_rpc)
            return
        if old_disks and self.plan.storage:
            res = self.rpc.call_one("blockdev_remove", self.src,
                                    {"disks": ist._rpc_disks(self.lu, old_disks)})
            if res.failed:
                self.lu.log_warning("Could not remove the old disks on node %s: %s",
                                    self.src, res.fail_msg)

    def _abort(self) -> None:
        """The abort path: guest stays (or resumes) on the source; target cleaned up."""
        res = self.rpc.call_one("instance_migration_abort", self.src, {"instance": self.spec})
        if res.failed:
            self.lu.log_warning("Could not abort the migration on node %s: %s", self.src,
                                res.fail_msg)
        target_ok = True
        if self.accepted:
            res = self.rpc.call_one("finalize_migration_dst", self.dst,
                                    {"instance": self.spec, "info": "", "success": False},
                                    timeout=ABORT_RPC_TIMEOUT)
            if res.failed:
                target_ok = False
                self.lu.log_warning(
                    "Could not stop the instance on the target node %s: %s; once it is"
                    " reachable run 'gnt-instance migrate --cleanup %s'", self.dst,
                    res.fail_msg, self.inst.name)
        if self.drbd is not None:
            self._revert_drbd(target_ok)
            return
        if self.mirror is not None:
            return  # the target keeps exporting its copy; the source still mirrors into it
        disks = self.plan.created or ([] if self.plan.storage else self.inst.disks)
        if disks and target_ok:
            proc = "blockdev_remove" if self.plan.created else "blockdev_shutdown"
            res = self.rpc.call_one(proc, self.dst, {"disks": ist._rpc_disks(self.lu, disks)},
                                    timeout=ABORT_RPC_TIMEOUT)
            if res.failed:
                self.lu.log_warning("Could not clean up the disks on node %s: %s",
                                    self.dst, res.fail_msg)
        self.plan.created = []


    def _revert_drbd(self, target_ok: bool) -> None:
        """Back to single-primary on the source (the abort path of a DRBD migration)."""
        if not self.dual or not target_ok:
            return
        assert self.drbd is not None
        try:
            self.drbd.secondary(self.dst)
            self.drbd.reconnect([self.src, self.dst], multimaster=False)
        except errors.GenericError as err:
            self.lu.log_warning("Could not revert the disks of %s to single-master mode: %s",
                                self.inst.name, _text(err))


def set_primary(inst: objects.Instance, old: str, new: str) -> None:
    """Make ``new`` the primary (in memory); DRBD roles swap, other disks follow."""
    inst.primary_node = new
    if inst.disk_template in constants.DTS_INT_MIRROR:
        inst.secondary_nodes = [old]
        instance_mirror.swap_roles(inst, new)
        return
    for disk in inst.disks:
        if disk.nodes == [old] or not disk.nodes:
            disk.nodes = [new]


# Calls to different nodes that can overlap run here: threads are kept between jobs
# (starting a thread per call costs more than a node round trip on a busy master).
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=32,
                                              thread_name_prefix="migration-rpc")


def run_async(func: Callable[..., Any], *args: Any) -> "concurrent.futures.Future[Any]":
    """``func(*args)`` on the shared pool; the caller must collect ``result()``."""
    return _POOL.submit(func, *args)


def _text(err: BaseException) -> str:
    return str(err.args[0]) if getattr(err, "args", None) else str(err)


# ---- disk copies between nodes (move, offline storage migration) -------------------------

def copy_disks(lu: Any, disks: list[objects.Disk], source: objects.Node, target: objects.Node,
               target_disks: list[objects.Disk], compress: str, feedback: Feedback) -> None:
    """Copy the data of ``disks`` on ``source`` into ``target_disks`` on ``target``.

    Node daemon to node daemon over TLS with the cluster certificates (see
    backend/disk_transfer.py); progress goes to the job log.  OpExecError on
    failure; both ends are cleaned up in any case (the target disks stay: the
    caller removes them).
    """
    transfer_data(lu, source, target, ist._rpc_disks(lu, disks),
                  ist._rpc_disks(lu, target_disks), compress, feedback)


def transfer_data(lu: Any, source: objects.Node, target: objects.Node, src_entries: list[dict],
                  dst_entries: list[dict], compress: str, feedback: Feedback) -> None:
    """Stream each source endpoint into the target endpoint at the same index.

    Endpoints are disk dicts or the stream kinds of backend/disk_transfer.py
    (an OS export/import script, a file of an export); same failure and
    cleanup contract as copy_disks.
    """
    rpc = lu.rpc
    transfer_id = uuid.uuid4().hex
    try:
        res = rpc.call_one("disk_import_start", target.name,
                           {"transfer_id": transfer_id, "disks": dst_entries,
                            "bind_ip": node_ip(target), "compress": compress})
        res.raise_if_failed("Cannot receive the disk data on node %s" % target.name)
        res = rpc.call_one("disk_export_start", source.name,
                           {"transfer_id": transfer_id, "disks": src_entries,
                            "host": node_ip(target), "port": int(res.data),
                            "compress": compress})
        res.raise_if_failed("Cannot send the disk data from node %s" % source.name)
        _wait_transfer(rpc, transfer_id, source.name, target.name, feedback)
    except errors.RemoteError as err:
        raise errors.OpExecError(_text(err)) from err
    finally:
        rpc.call("disk_transfer_cleanup", [source.name, target.name],
                 {"transfer_id": transfer_id}, timeout=ABORT_RPC_TIMEOUT)


def _wait_transfer(rpc: Any, transfer_id: str, src: str, dst: str, feedback: Feedback) -> None:
    """Follow both ends until done; a "total" of None/0 (stream sources such as OS
    export scripts) is taken from the source once known, else only bytes are shown."""
    stall = _Stall("The disk copy", dst)
    last_report = time.monotonic()
    while True:
        res = rpc.call("disk_transfer_status", [src, dst],
                       {"transfer_id": transfer_id, "wait": WAIT_TICK})
        for node in (src, dst):
            res[node].raise_if_failed("Cannot follow the disk copy")
        s, d = res[src].data, res[dst].data
        if d["status"] == "failed" or s["status"] == "failed":
            raise errors.OpExecError("Errors during disk copy: %s" %
                                     (d["error"] or s["error"]))
        total = d.get("total") or s.get("total")
        if d["status"] == "done" and s["status"] == "done":
            moved = d["done"]
            feedback("* disk copy progress: 100.00 %% (%s in %.2f s, %s/s)" %
                     (_mib(moved), d["elapsed"], _mib(moved / max(d["elapsed"], 0.001))))
            return
        stall.check((s["done"], d["done"]))
        if time.monotonic() - last_report >= REPORT_INTERVAL:
            speed = _mib(d["done"] / max(d["elapsed"], 0.001))
            if total:
                feedback("* disk copy progress: %.2f %% (%s of %s, %s/s)" %
                         (min(100.0, 100.0 * d["done"] / total), _mib(d["done"]),
                          _mib(total), speed))
            else:
                feedback("* disk copy progress: %s so far, %s/s" % (_mib(d["done"]), speed))
            last_report = time.monotonic()


__all__ = ["LiveMigration", "MigrationPlan", "copy_disks", "node_ip", "run_async",
           "set_primary", "storage_migration_kind", "transfer_data"]
