"""Node side of live migration (spec/hypervisors-storage.md §8).

Each procedure is one step the master's migration tasklet asks for
(cmdlib/instance_migration.py, doc/design-migration.md); the node decides
nothing.  ``instance`` is the InstanceSpec dict of instance_utils.instance_rpc,
``disks`` storage dicts.  Drivers say what they can do with class flags:
``CAN_MIGRATE`` and ``STORAGE_MIGRATION`` (``"mirror"``: QEMU copies
non-shared disks live over NBD; ``"copy"``: an offline copy is consistent,
as for the fake hypervisor).  Errors come back in the driver's words.
"""

from typing import Any

from corral import errors, storage
from corral.backend import disks as bdisks
from corral.hypervisor import DiskSpec, InstanceSpec, get_hypervisor

_STATUS_DEFAULTS: dict[str, Any] = {
    "status": "none", "transferred": 0, "total": 0, "remaining": 0, "mbps": 0.0,
    "dirty_sync_count": 0, "downtime": None, "total_time": None, "disks": []}


def _spec(instance: dict) -> InstanceSpec:
    return InstanceSpec.from_dict(instance)


def _hv(spec: InstanceSpec) -> Any:
    hv = get_hypervisor(spec.hypervisor)
    if not hv.CAN_MIGRATE:
        raise errors.HypervisorError("Hypervisor %s cannot migrate instances" % hv.NAME)
    return hv


def _needs(hv: Any, method: str) -> Any:
    func = getattr(hv, method, None)
    if func is None:
        raise errors.HypervisorError("Hypervisor %s cannot %s" %
                                     (hv.NAME, method.replace("_", " ")))
    return func


def migration_info(instance: dict) -> dict[str, Any]:
    """Source: ``{"running"``, ``"info"`` (opaque, for the target), ``"memory"`` (MiB
    the guest has now), ``"hv_version"``} in one round trip; only ``running``
    (false) when the instance does not run here.  Changes nothing."""
    spec = _spec(instance)
    hv = _hv(spec)
    state = hv.get_instance_info(spec.name)
    if state is None:
        return {"running": False}
    return {"running": True, "info": hv.migration_info(spec), "memory": state.get("memory"),
            "hv_version": hv.get_node_info().get("hv_version")}


def accept_instance(instance: dict, info: str, target_ip: str, disks: list,
                    storage: bool = False, source_hv_version: Any = None,
                    ignore_hvversions: bool = False) -> dict[str, Any]:
    """Target: activate the disks and get ready to receive the instance on target_ip.

    ``storage``: the disks are new and empty here and the source will mirror
    into them while the guest runs (needs STORAGE_MIGRATION == "mirror").
    A hypervisor version other than ``source_hv_version`` is refused unless
    ``ignore_hvversions``.  Returns ``{"hv_version"}`` of this node.  On
    failure the driver leaves nothing running; the disks stay activated.
    """
    spec = _spec(instance)
    hv = _hv(spec)
    own = hv.get_node_info().get("hv_version")
    if source_hv_version is not None and own != source_hv_version and not ignore_hvversions:
        raise errors.HypervisorError(
            "Refusing to migrate: hypervisor version mismatch between source (%s) and target"
            " (%s) node (use --ignore-hvversions to migrate anyway)" % (source_hv_version, own))
    devices = [DiskSpec.from_dict(d) for d in bdisks.assemble(disks)]
    if storage and getattr(hv, "STORAGE_MIGRATION", None) == "mirror":
        hv.accept_instance(spec, info, target_ip, devices, storage=True)
    else:
        hv.accept_instance(spec, info, target_ip, devices)
    return {"hv_version": own}


def instance_mirror_disks(instance: dict, target_ip: str, count: int) -> None:
    """Source: start mirroring ``count`` disks into the target's exports (at once)."""
    spec = _spec(instance)
    _needs(_hv(spec), "mirror_disks")(spec, target_ip, count)


def instance_migrate(instance: dict, target_ip: str, live: bool,
                     wait: float = 0.0) -> dict[str, Any]:
    """Source: start sending the instance's memory to target_ip; the status after at
    most ``wait`` seconds (a short migration is reported complete in one call)."""
    spec = _spec(instance)
    _hv(spec).migrate_instance(spec, target_ip, live)
    return instance_migration_wait(instance, wait)


def instance_migration_wait(instance: dict, wait: float = 1.0,
                            start_postcopy: bool = False) -> dict[str, Any]:
    """Source: migration status, after at most ``wait`` seconds (earlier on events).

    Keys: status (none/setup/active/postcopy-active/completed/failed/
    cancelled...), transferred/total/remaining (bytes), mbps,
    dirty_sync_count, downtime/total_time (ms, once completed), disks
    (mirror jobs: job, offset, len, ready, status, error), info (error text).
    """
    spec = _spec(instance)
    hv = _hv(spec)
    waiter = getattr(hv, "wait_migration", None)
    if waiter is not None:
        status = waiter(spec, float(wait), start_postcopy=start_postcopy)
    else:
        status = hv.get_migration_status(spec)
    return dict(_STATUS_DEFAULTS, **status)


def instance_mirror_stop(instance: dict, force: bool = False) -> None:
    """Source: complete (or, with ``force``, drop) the disk mirrors.  Idempotent."""
    spec = _spec(instance)
    hv = _hv(spec)
    stop = getattr(hv, "stop_mirror", None)
    if stop is not None:
        stop(spec, force=force)


def instance_migration_abort(instance: dict) -> None:
    """Source: cancel a migration in progress; the guest keeps (or resumes) running here."""
    spec = _spec(instance)
    hv = _hv(spec)
    abort = getattr(hv, "abort_migration", None)
    if abort is not None:
        abort(spec)
    else:
        hv.finalize_migration_src(spec, False, True)


def finalize_migration_src(instance: dict, success: bool, live: bool,
                           disks: list | None = None) -> str | None:
    """Source: success → the local copy goes away and ``disks`` are deactivated
    (shared storage let go here); failure → it resumes.  Returns why the disks
    could not be deactivated (a warning for the master), else None.
    """
    spec = _spec(instance)
    _hv(spec).finalize_migration_src(spec, success, live)
    if success and disks:
        try:
            bdisks.blockdev_shutdown(disks)
        except errors.GenericError as err:
            return str(err.args[0] if err.args else err)
    return None


def finalize_migration_dst(instance: dict, info: str, success: bool) -> None:
    """Target: success → the guest runs and is recorded; failure → stopped, cleaned up."""
    spec = _spec(instance)
    _hv(spec).finalize_migration_dst(spec, info, success)


def instance_migration_state(hypervisor: str, name: str) -> dict[str, Any]:
    """``{"running": bool, "status": str|None}`` for ``--cleanup``.

    ``status`` ``inmigrate``: a target that never got the guest;
    ``postmigrate``: a source whose guest left; anything else while running:
    the real guest.
    """
    hv = get_hypervisor(hypervisor)
    probe = getattr(hv, "migration_state", None)
    if probe is not None:
        return probe(name)
    info = hv.get_instance_info(name)
    return {"running": info is not None, "status": (info or {}).get("state")}


def instance_balloon_memory(instance: dict, memory: int) -> None:
    """Set the running instance's memory to ``memory`` MiB (balloon)."""
    spec = _spec(instance)
    hv = get_hypervisor(spec.hypervisor)
    if not hv.CAN_BALLOON:
        raise errors.HypervisorError("Hypervisor %s cannot balloon memory" % hv.NAME)
    hv.balloon_instance_memory(spec, int(memory))


def blockdev_close(disks: list) -> None:
    """Give up the primary role of mirrored disks here (DRBD secondary); others: nothing.

    Used around a DRBD migration (the node that stops or never started
    running the instance).  Devices that are not set up here are skipped.
    """
    for disk in disks:
        dev = storage.build_device(disk)
        if dev.attach():
            dev.close()
