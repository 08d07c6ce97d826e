"""libvirt live migration (spec §8) with libvirt's peer-to-peer mode, as a mixin.

The source's libvirtd talks to the target's directly: ``migrateToURI3`` to
``<driver>+<transport>://<target secondary ip>/system`` with
VIR_MIGRATE_PEER2PEER | PERSIST_DEST | UNDEFINE_SOURCE | UNSAFE (+ LIVE).
UNSAFE because Corral's storage layer, not libvirt, guarantees the disks are
visible on the target (DRBD dual-primary, shared or mirrored storage) and
libvirt would refuse local paths (PLATFORM.md §4).  The migration stream URI
``tcp://<target ip>[:port]`` is passed explicitly, so the target never
advertises its hostname (PLATFORM.md §4 pitfall b); a libvirtd qemu.conf
``migration_host`` per node does the same for other clients.

``migrate_instance`` runs the blocking call in a thread and returns;
``get_migration_status`` reads the thread's outcome and the job statistics.
"""

import os
import threading
from dataclasses import dataclass, field
from typing import Any

from corral import errors, serializer
from corral.hypervisor import base
from corral.hypervisor.libvirt import conn as lvc
from corral.hypervisor.libvirt import domxml


@dataclass
class _Job:
    thread: threading.Thread | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


_jobs: dict[str, _Job] = {}
_jobs_lock = threading.Lock()


def migration_flags(lv: Any, live: bool) -> int:
    flags = (lv.VIR_MIGRATE_PEER2PEER | lv.VIR_MIGRATE_PERSIST_DEST |
             lv.VIR_MIGRATE_UNDEFINE_SOURCE | lv.VIR_MIGRATE_UNSAFE)
    return flags | lv.VIR_MIGRATE_LIVE if live else flags


def migration_params(lv: Any, target_ip: str, port: int | None,
                     bandwidth: int | None) -> dict[str, Any]:
    host = "[%s]" % target_ip if ":" in target_ip else target_ip
    params: dict[str, Any] = {lv.VIR_MIGRATE_PARAM_URI:
                              "tcp://%s%s" % (host, ":%d" % port if port else "")}
    if bandwidth:
        params[lv.VIR_MIGRATE_PARAM_BANDWIDTH] = int(bandwidth)
    return params


def dest_xml(xml_text: str, name: str, target_ip: str) -> str:
    """The domain XML for the target: a serial socket name of its own.

    ``<runtime dir>/serial-<target ip>.sock``: the same directory layout the
    target's accept_instance created, a name the source QEMU never unlinks.
    """
    from corral.hypervisor.libvirt import driver
    sock = os.path.join(driver.paths_for(name).dir,
                        "serial-%s.sock" % target_ip.replace(":", "_"))
    return domxml.with_serial_socket(xml_text, sock)


class LibvirtMigrationMixin:
    """Needs the driver's ``_uri_of``, ``_undefine``, ``_owned``; module helpers."""

    def migration_info(self, inst: base.InstanceSpec) -> str:
        from corral.hypervisor.libvirt import driver
        uri = self._uri_of(inst.name)  # type: ignore[attr-defined]
        dom = lvc.lookup(lvc.connect(uri), inst.name)
        if dom is None or not lvc.is_active(dom):
            raise errors.HypervisorError("Instance %s is not running" % inst.name)
        saved = driver.load_runtime(inst.name) or {}
        return serializer.dumps({"uri": uri, "disks": saved.get("disks", [])})

    def accept_instance(self, inst: base.InstanceSpec, info: str, target_ip: str,
                        block_devices: list[base.DiskSpec] | None = None) -> None:
        """Check the local libvirt answers and prepare the runtime dir; libvirt does the rest."""
        from corral.hypervisor.libvirt import driver
        uri = driver.effective_uri(inst.hvparams)
        conn = lvc.connect(uri)
        dom = lvc.lookup(conn, inst.name)
        if dom is not None and lvc.is_active(dom):
            raise errors.HypervisorError("Instance %s already runs on the target" % inst.name)
        if dom is not None and not self._owned(dom):  # type: ignore[attr-defined]
            raise errors.HypervisorError("A libvirt domain named %s exists on the target and "
                                         "is not managed by Corral" % inst.name)
        if dom is not None:
            self._undefine(dom)  # type: ignore[attr-defined]
        disks = block_devices if block_devices is not None else [
            base.DiskSpec.from_dict(d) for d in serializer.loads(info).get("disks", [])]
        driver.save_runtime(inst.name, {"uri": uri, "spec": inst.to_dict(),
                                        "disks": [d.to_dict() for d in disks],
                                        "incoming": True})
        os.makedirs(os.path.dirname(driver.paths_for(inst.name).serial_log), mode=0o750,
                    exist_ok=True)

    def migrate_instance(self, inst: base.InstanceSpec, target_ip: str, live: bool,
                         port: int | None = None) -> None:
        lv = lvc.libvirt_module()
        uri = self._uri_of(inst.name)  # type: ignore[attr-defined]
        dom = lvc.lookup(lvc.connect(uri), inst.name)
        if dom is None or not lvc.is_active(dom):
            raise errors.HypervisorError("Instance %s is not running" % inst.name)
        dest = domxml.target_uri(uri, target_ip,
                                 inst.hvparams.get("migration_transport") or "tcp")
        params = migration_params(lv, target_ip, port,
                                  inst.hvparams.get("migration_bandwidth"))
        params[lv.VIR_MIGRATE_PARAM_DEST_XML] = dest_xml(
            dom.XMLDesc(lv.VIR_DOMAIN_XML_MIGRATABLE), inst.name, target_ip)
        flags = migration_flags(lv, live)
        with _jobs_lock:
            old = _jobs.get(inst.name)
            if old is not None and not old.done.is_set():
                raise errors.HypervisorError("A migration of %s is already running" %
                                             inst.name)
            job = _Job()

            def run() -> None:
                try:
                    dom.migrateToURI3(dest, params, flags)
                except lv.libvirtError as err:
                    job.error = "%s (to %s)" % (err.get_error_message() or err, dest)
                finally:
                    job.done.set()

            job.thread = threading.Thread(target=run, daemon=True,
                                          name="libvirt-migrate-%s" % inst.name)
            _jobs[inst.name] = job
            job.thread.start()

    def get_migration_status(self, inst: base.InstanceSpec) -> dict[str, Any]:
        with _jobs_lock:
            job = _jobs.get(inst.name)
        if job is None:
            return {"status": "failed", "info": "no migration of %s" % inst.name,
                    "transferred": 0, "total": 0}
        if job.done.is_set():
            total = inst.memory << 20
            if job.error:
                return {"status": "failed", "info": job.error, "transferred": 0,
                        "total": total}
            return {"status": "completed", "transferred": total, "total": total}
        out: dict[str, Any] = {"status": "active", "transferred": 0, "total": 0}
        try:
            dom = lvc.lookup(lvc.connect(self._uri_of(inst.name)),  # type: ignore
                             inst.name)
            stats = dom.jobStats() if dom is not None else {}
            out.update(transferred=int(stats.get("data_processed", 0)),
                       total=int(stats.get("data_total", 0)))
        except Exception:  # noqa: BLE001 - stats are best effort while the job runs
            pass
        return out

    def finalize_migration_src(self, inst: base.InstanceSpec, success: bool,
                               live: bool) -> None:
        """Success: drop the (undefined) source's files; failure: resume if paused."""
        from corral.hypervisor.libvirt import driver
        lv = lvc.libvirt_module()
        with _jobs_lock:
            job = _jobs.pop(inst.name, None)
        if job is not None and job.thread is not None:
            job.thread.join()
        conn = lvc.connect(self._uri_of(inst.name))  # type: ignore[attr-defined]
        dom = lvc.lookup(conn, inst.name)
        if success:
            if dom is not None and not lvc.is_active(dom) and self._owned(dom):  # type: ignore
                self._undefine(dom)  # type: ignore[attr-defined]
            driver.remove_runtime_dir(inst.name)
            return
        if dom is not None and lvc.is_active(dom):
            try:
                if dom.info()[0] == lv.VIR_DOMAIN_PAUSED:
                    dom.resume()
            except lv.libvirtError as err:
                raise errors.HypervisorError("Cannot resume %s: %s" % (inst.name, err))

    def finalize_migration_dst(self, inst: base.InstanceSpec, info: str,
                               success: bool) -> None:
        """Success: the domain must run here; failure: destroy/undefine what arrived."""
        from corral.hypervisor.libvirt import driver
        saved = driver.load_runtime(inst.name) or {}
        uri = saved.get("uri") or driver.effective_uri(inst.hvparams)
        conn = lvc.connect(uri)
        dom = lvc.lookup(conn, inst.name)
        if success:
            if dom is None or not lvc.is_active(dom):
                raise errors.HypervisorError("Migrated instance %s is not running here" %
                                             inst.name)
            saved.pop("incoming", None)
            saved.setdefault("uri", uri)
            driver.save_runtime(inst.name, saved)
            return
        if dom is not None:
            self._halt(conn, dom, True, 0)  # type: ignore[attr-defined]
            self._undefine(dom)  # type: ignore[attr-defined]
        driver.remove_runtime_dir(inst.name)
