"""KVM live migration steps (spec/hypervisors-storage.md §8), as a mixin.

The master drives the sequence (doc/design-migration.md): ``migration_info``
(source) → ``accept_instance`` (target: same runtime plus ``-incoming
tcp:IP:PORT``) → ``migrate_instance`` (source, returns at once) →
``wait_migration`` (source, QMP query-migrate, woken by MIGRATION events) →
``finalize_migration_dst``/``_src``.

Non-shared disks ("migrate with storage", PLATFORM.md §2): the target is
started paused (``-S``) and exports its fresh, empty disks over NBD
(``start_disk_export``); the source mirrors every disk into them
(``mirror_disks``, QMP drive-mirror) until all jobs are READY, then the
memory goes as usual; ``stop_mirror`` (source) completes the mirrors before
the target stops its NBD server and continues.  NBD listens on the target's
secondary IP at ``migration_port + 1``.
"""

from typing import Any

from corral import errors, serializer
from corral.hypervisor import base
from corral.hypervisor.kvm import qmp, runtime

MIRROR_JOB = "corral-mig-disk%d"
STOP_MIRROR_TIMEOUT = 30.0  # seconds for the mirror jobs to end
NBD_PORT_OFFSET = 1
_WAKE_EVENTS = frozenset(["MIGRATION", "BLOCK_JOB_READY", "BLOCK_JOB_COMPLETED",
                          "BLOCK_JOB_ERROR", "BLOCK_JOB_CANCELLED", "JOB_STATUS_CHANGE"])
_FINAL = frozenset(["completed", "failed", "cancelled"])


def _caps(params: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"capability": c, "state": True}
            for c in (params.get("migration_caps") or "").split(":") if c]


def _host(ip: str) -> str:
    return "[%s]" % ip if ":" in ip else ip


def nbd_port(params: dict[str, Any]) -> int:
    """The NBD port a storage-migration target listens on (migration_port + 1)."""
    return int(params.get("migration_port", 8102)) + NBD_PORT_OFFSET


def summarize_status(mig: dict[str, Any], jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """The driver-neutral status dict from QMP query-migrate and query-block-jobs.

    Pure.  ``status`` is QEMU's migration status (``none`` before memory
    migration starts); ``disks`` lists the Corral mirror jobs with their
    progress; byte counts are bytes, ``downtime``/``total_time`` ms.
    """
    ram = mig.get("ram") or {}
    out: dict[str, Any] = {
        "status": mig.get("status", "none"), "transferred": int(ram.get("transferred", 0)),
        "total": int(ram.get("total", 0)), "remaining": int(ram.get("remaining", 0)),
        "mbps": float(ram.get("mbps", 0.0)),
        "dirty_sync_count": int(ram.get("dirty-sync-count", 0)),
        "downtime": mig.get("downtime"), "total_time": mig.get("total-time"),
        "disks": []}
    if "error-desc" in mig:
        out["info"] = mig["error-desc"]
    for job in jobs:
        if not str(job.get("device", "")).startswith("corral-mig-disk"):
            continue
        out["disks"].append({"job": job["device"], "offset": int(job.get("offset", 0)),
                             "len": int(job.get("len", 0)), "ready": bool(job.get("ready")),
                             "status": job.get("status", ""), "error": job.get("error")})
    return out


class KvmMigrationMixin:
    """Needs the driver's ``_start``, ``_cleanup``, ``_qmp`` and ``_update_runtime``."""

    # Non-shared disks move live: NBD export on the target, drive-mirror here.
    STORAGE_MIGRATION = "mirror"

    def migration_info(self, inst: base.InstanceSpec) -> str:
        """The saved runtime (spec + disks) the target starts from."""
        paths = runtime.paths_for(runtime.check_name(inst.name))
        saved = runtime.load_runtime(paths)
        if saved is None or not runtime.running_pid(paths, inst.name):
            raise errors.HypervisorError("Instance %s is not running" % inst.name)
        return serializer.dumps({"spec": saved["spec"], "disks": saved["disks"]})

    def accept_instance(self, inst: base.InstanceSpec, info: str, target_ip: str,
                        block_devices: list[base.DiskSpec] | None = None,
                        storage: bool = False) -> None:
        """Start QEMU waiting for the incoming state on target_ip:migration_port.

        ``storage``: start paused and export the (empty) disks over NBD for
        the source's mirror.  On failure nothing is left running.
        """
        with runtime.instance_lock(runtime.check_name(inst.name)):
            paths = runtime.paths_for(inst.name)
            if runtime.running_pid(paths, inst.name):
                raise errors.HypervisorError("Instance %s already runs on the target" %
                                             inst.name)
            saved = serializer.loads(info)
            disks = block_devices if block_devices is not None else [
                base.DiskSpec.from_dict(d) for d in saved["disks"]]
            port = int(inst.hvparams.get("migration_port", 8102))
            self._cleanup(inst.name, paths)  # type: ignore[attr-defined]
            self._start(inst, disks, paths, paused=storage,  # type: ignore[attr-defined]
                        incoming="tcp:%s:%d" % (_host(target_ip), port))
            try:
                self._update_runtime(inst.name, incoming=True)  # type: ignore[attr-defined]
                with qmp.QmpClient(paths.qmp) as mon:
                    caps = _caps(inst.hvparams)
                    if caps:
                        mon.execute("migrate-set-capabilities", {"capabilities": caps})
                    if storage:
                        self._export_disks(mon, target_ip, nbd_port(inst.hvparams),
                                           len(disks))
            except BaseException:
                pid = runtime.running_pid(paths, inst.name)
                if pid:
                    runtime.kill_qemu(pid)
                self._cleanup(inst.name, paths)  # type: ignore[attr-defined]
                raise

    @staticmethod
    def _export_disks(mon: qmp.QmpClient, ip: str, port: int, count: int) -> None:
        mon.execute("nbd-server-start", {"addr": {"type": "inet",
                                                  "data": {"host": ip, "port": str(port)}}})
        for idx in range(count):
            mon.execute("nbd-server-add", {"device": "disk%d" % idx, "writable": True})

    def mirror_disks(self, inst: base.InstanceSpec, target_ip: str, count: int) -> None:
        """Start one drive-mirror per disk into the target's NBD exports (returns at once)."""
        port = nbd_port(inst.hvparams)
        with runtime.instance_lock(runtime.check_name(inst.name)):
            paths = runtime.paths_for(inst.name)
            if not runtime.running_pid(paths, inst.name):
                raise errors.HypervisorError("Instance %s is not running" % inst.name)
            with qmp.QmpClient(paths.qmp) as mon:
                for idx in range(count):
                    mon.execute("drive-mirror", {
                        "job-id": MIRROR_JOB % idx, "device": "disk%d" % idx,
                        "target": "nbd:%s:%d:exportname=disk%d" % (_host(target_ip), port, idx),
                        "format": "raw", "sync": "full", "mode": "existing",
                        "auto-dismiss": False})

    def migrate_instance(self, inst: base.InstanceSpec, target_ip: str, live: bool,
                         port: int | None = None) -> None:
        """Begin sending memory; progress via wait_migration.  Emits MIGRATION events."""
        params = inst.hvparams
        port = port or int(params.get("migration_port", 8102))
        with runtime.instance_lock(runtime.check_name(inst.name)):
            paths = runtime.paths_for(inst.name)
            if not runtime.running_pid(paths, inst.name):
                raise errors.HypervisorError("Instance %s is not running" % inst.name)
            with qmp.QmpClient(paths.qmp) as mon:
                if not live:
                    mon.execute("stop")
                mon.execute("migrate-set-parameters", {
                    "max-bandwidth": int(params.get("migration_bandwidth", 32)) << 20,
                    "downtime-limit": int(params.get("migration_downtime", 30))})
                caps = _caps(params) + [{"capability": "events", "state": True}]
                mon.execute("migrate-set-capabilities", {"capabilities": caps})
                mon.execute("migrate", {"uri": "tcp:%s:%d" % (_host(target_ip), port)})

    def get_migration_status(self, inst: base.InstanceSpec) -> dict[str, Any]:
        """The status right now (see :func:`summarize_status`)."""
        return self.wait_migration(inst, 0.0)

    def wait_migration(self, inst: base.InstanceSpec, wait: float,
                       start_postcopy: bool = False) -> dict[str, Any]:
        """Status after at most ``wait`` seconds; returns early on a migration or
        block-job event (completion, READY...), so callers never sleep-poll.

        ``start_postcopy`` first switches a running precopy to postcopy.
        """
        with runtime.instance_lock(runtime.check_name(inst.name)):
            paths = runtime.paths_for(inst.name)
            if not runtime.running_pid(paths, inst.name):
                raise errors.HypervisorError("Instance %s is not running" % inst.name)
            with qmp.QmpClient(paths.qmp) as mon:
                if start_postcopy:
                    mon.execute("migrate-start-postcopy")
                status = summarize_status(mon.execute("query-migrate") or {},
                                          mon.execute("query-block-jobs") or [])
                if wait <= 0 or status["status"] in _FINAL or _mirror_changed(status):
                    return status
                mon.wait_event(_WAKE_EVENTS, wait)
                return summarize_status(mon.execute("query-migrate") or {},
                                        mon.execute("query-block-jobs") or [])

    def stop_mirror(self, inst: base.InstanceSpec, force: bool = False) -> None:
        """End the Corral mirror jobs and dismiss them.  A READY mirror completes
        cleanly with block-job-cancel; ``force`` (abort path) drops them whatever
        their state.  Waits (QMP events) until they are gone.  Idempotent."""
        with runtime.instance_lock(runtime.check_name(inst.name)):
            paths = runtime.paths_for(inst.name)
            if not runtime.running_pid(paths, inst.name):
                return
            with qmp.QmpClient(paths.qmp) as mon:
                qmp.end_block_jobs(mon, lambda job: job.startswith("corral-mig-disk"),
                                   force, STOP_MIRROR_TIMEOUT)

    def abort_migration(self, inst: base.InstanceSpec) -> None:
        """Source side of the abort path: cancel memory migration and disk mirrors,
        then make sure the guest runs here again.  Idempotent."""
        with runtime.instance_lock(runtime.check_name(inst.name)):
            paths = runtime.paths_for(inst.name)
            if not runtime.running_pid(paths, inst.name):
                raise errors.HypervisorError("Instance %s no longer runs on the source" %
                                             inst.name)
            with qmp.QmpClient(paths.qmp) as mon:
                state = (mon.execute("query-migrate") or {}).get("status", "none")
                if state not in _FINAL and state != "none":
                    mon.execute("migrate_cancel")
                    mon.wait_event(frozenset(["MIGRATION"]), 5.0)
        self.stop_mirror(inst, force=True)
        self.finalize_migration_src(inst, False, True)

    def migration_state(self, name: str) -> dict[str, Any]:
        """``{"running", "status"}``: QEMU's run state of a live instance, for cleanup
        (``inmigrate``: an unfinished target; ``postmigrate``: an emptied source)."""
        with runtime.instance_lock(runtime.check_name(name)):
            paths = runtime.paths_for(name)
            if not runtime.running_pid(paths, name):
                return {"running": False, "status": None}
            try:
                with qmp.QmpClient(paths.qmp, timeout=5.0) as mon:
                    status = (mon.execute("query-status") or {}).get("status")
            except qmp.QmpError:
                status = "unknown"
            return {"running": True, "status": status}

    def finalize_migration_src(self, inst: base.InstanceSpec, success: bool,
                               live: bool) -> None:
        """Success: the source QEMU goes away; failure: it resumes if paused."""
        with runtime.instance_lock(runtime.check_name(inst.name)):
            paths = runtime.paths_for(inst.name)
            pid = runtime.running_pid(paths, inst.name)
            if success:
                if pid:
                    runtime.kill_qemu(pid)
                self._cleanup(inst.name, paths)  # type: ignore[attr-defined]
                return
            if pid:
                status = self._qmp(inst.name, "query-status")  # type: ignore[attr-defined]
                if not status.get("running"):
                    self._qmp(inst.name, "cont")  # type: ignore[attr-defined]

    def finalize_migration_dst(self, inst: base.InstanceSpec, info: str,
                               success: bool) -> None:
        """Success: stop any NBD export, make sure the guest runs, record it;
        failure: kill the waiting QEMU and clean up (idempotent)."""
        with runtime.instance_lock(runtime.check_name(inst.name)):
            paths = runtime.paths_for(inst.name)
            pid = runtime.running_pid(paths, inst.name)
            if not success:
                if pid:
                    runtime.kill_qemu(pid)
                self._cleanup(inst.name, paths)  # type: ignore[attr-defined]
                return
            if not pid:
                raise errors.HypervisorError("Migrated instance %s is not running here" %
                                             inst.name)
            with qmp.QmpClient(paths.qmp) as mon:
                try:
                    mon.execute("nbd-server-stop")
                except qmp.QmpError:
                    pass  # no export (shared storage)
                status = mon.execute("query-status") or {}
                if status.get("status") == "inmigrate":
                    raise errors.HypervisorError("Instance %s has not received its state yet"
                                                 % inst.name)
                if not status.get("running"):
                    mon.execute("cont")
            saved = runtime.load_runtime(paths)
            if saved is not None:
                saved["paused"] = False
                saved.pop("incoming", None)
                runtime.save_runtime(paths, saved)


def _mirror_changed(status: dict[str, Any]) -> bool:
    """A mirror job ended before READY (an error): report at once."""
    return any(d["error"] or (d["status"] in ("concluded", "aborting", "null")
                              and not d["ready"]) for d in status["disks"])
