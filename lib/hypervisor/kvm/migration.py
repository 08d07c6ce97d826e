"""KVM live migration steps (spec/hypervisors-storage.md §8), as a mixin.

The master drives the sequence: ``migration_info`` (source) →
``accept_instance`` (target: same runtime plus ``-incoming tcp:IP:PORT``) →
``migrate_instance`` (source, returns at once) → ``get_migration_status``
(source, QMP query-migrate) → ``finalize_migration_dst``/``_src``.
Storage must already be visible on the target (shared, or mirrored by the
storage layer); this module moves memory and device state only.
"""

from typing import Any

from corral import errors, serializer
from corral.hypervisor import base
from corral.hypervisor.kvm import qmp, runtime


def _caps(params: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"capability": c, "state": True}
            for c in (params.get("migration_caps") or "").split(":") if c]


class KvmMigrationMixin:
    """Needs the driver's ``_start``, ``_cleanup`` and ``_qmp``."""

    def migration_info(self, inst: base.InstanceSpec) -> str:
        """The saved runtime (spec + disks) the target starts from."""
        paths = runtime.paths_for(runtime.check_name(inst.name))
        saved = runtime.load_runtime(paths)
        if saved is None or not runtime.running_pid(paths, inst.name):
            raise errors.HypervisorError("Instance %s is not running" % inst.name)
        return serializer.dumps({"spec": saved["spec"], "disks": saved["disks"]})

    def accept_instance(self, inst: base.InstanceSpec, info: str, target_ip: str,
                        block_devices: list[base.DiskSpec] | None = None) -> None:
        """Start QEMU waiting for the incoming state on target_ip:migration_port."""
        with runtime.instance_lock(runtime.check_name(inst.name)):
            paths = runtime.paths_for(inst.name)
            if runtime.running_pid(paths, inst.name):
                raise errors.HypervisorError("Instance %s already runs on the target" %
                                             inst.name)
            saved = serializer.loads(info)
            disks = block_devices if block_devices is not None else [
                base.DiskSpec.from_dict(d) for d in saved["disks"]]
            port = int(inst.hvparams.get("migration_port", 8102))
            host = "[%s]" % target_ip if ":" in target_ip else target_ip
            self._cleanup(inst.name, paths)  # type: ignore[attr-defined]
            self._start(inst, disks, paths,  # type: ignore[attr-defined]
                        incoming="tcp:%s:%d" % (host, port))
            caps = _caps(inst.hvparams)
            if caps:
                self._qmp(inst.name, "migrate-set-capabilities",  # type: ignore
                          {"capabilities": caps})

    def migrate_instance(self, inst: base.InstanceSpec, target_ip: str, live: bool,
                         port: int | None = None) -> None:
        """Begin sending; progress via get_migration_status."""
        params = inst.hvparams
        port = port or int(params.get("migration_port", 8102))
        host = "[%s]" % target_ip if ":" in target_ip else target_ip
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
                if _caps(params):
                    mon.execute("migrate-set-capabilities", {"capabilities": _caps(params)})
                mon.execute("migrate", {"uri": "tcp:%s:%d" % (host, port)})

    def get_migration_status(self, inst: base.InstanceSpec) -> dict[str, Any]:
        """``{"status", "transferred", "total"}`` from QMP query-migrate (bytes)."""
        with runtime.instance_lock(runtime.check_name(inst.name)):
            res = self._qmp(inst.name, "query-migrate") or {}  # type: ignore[attr-defined]
        ram = res.get("ram", {})
        out = {"status": res.get("status", "none"), "transferred": ram.get("transferred", 0),
               "total": ram.get("total", 0)}
        if "error-desc" in res:
            out["info"] = res["error-desc"]
        return out

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
        """Success: make sure the guest runs and record it; failure: stop + clean up."""
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
            status = self._qmp(inst.name, "query-status")  # type: ignore[attr-defined]
            if not status.get("running") and status.get("status") != "inmigrate":
                self._qmp(inst.name, "cont")  # type: ignore[attr-defined]
            saved = runtime.load_runtime(paths)
            if saved is not None:
                saved["paused"] = False
                runtime.save_runtime(paths, saved)
