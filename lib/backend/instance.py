"""Node side of instances: start, stop, reboot, info, console, OS install/rename.

The master sends fully filled data (cmdlib/instance_utils.instance_rpc):
``instance`` is a hypervisor InstanceSpec dict (name, uuid, hvparams,
beparams, nics, network_port, hypervisor), disks are storage dicts
(backend/disks.py).  Nothing here decides anything; errors come back as
HypervisorError / BlockDeviceError / OpExecError with the driver's words.
"""

import os

from corral import errors, osdef, serializer
from corral.backend import disks as bdisks
from corral.hypervisor import DiskSpec, InstanceSpec, get_hypervisor


def _spec(instance: dict) -> InstanceSpec:
    return InstanceSpec.from_dict(instance)


def _disk_specs(disks: list) -> list[DiskSpec]:
    return [DiskSpec.from_dict(d) for d in bdisks.assemble(disks)]


def instance_start(instance: dict, disks: list, startup_paused: bool = False) -> None:
    """Activate the disks and start the instance.

    HypervisorError if it runs already; on a failed start the driver has
    cleaned up after itself (the disks stay activated: the master decides).
    """
    spec = _spec(instance)
    get_hypervisor(spec.hypervisor).start_instance(spec, _disk_specs(disks), startup_paused)


def instance_shutdown(hypervisor: str, name: str, timeout: int = 120,
                      force: bool = False) -> None:
    """Stop the instance (guest powerdown, killed after ``timeout``); idempotent."""
    hv = get_hypervisor(hypervisor)
    hv.stop_instance(name, force=force, timeout=timeout)
    hv.cleanup_instance(name)


def instance_forget(hypervisor: str, name: str) -> None:
    """The instance was removed from the cluster: drop its kept files (console log)."""
    get_hypervisor(hypervisor).forget_instance(name)


def instance_reboot(instance: dict, disks: list, reboot_type: str,
                    shutdown_timeout: int = 120) -> None:
    """soft/hard reboot through the hypervisor; HypervisorError if it is not running."""
    spec = _spec(instance)
    hv = get_hypervisor(spec.hypervisor)
    if hv.get_instance_info(spec.name) is None:
        raise errors.HypervisorError("Cannot reboot instance %s that is not running" %
                                     spec.name)
    hv.reboot_instance(spec, _disk_specs(disks), reboot_type, shutdown_timeout)


def instance_info(hypervisor: str, name: str) -> dict | None:
    """The hypervisor's view of one instance, None if it is not running here."""
    return get_hypervisor(hypervisor).get_instance_info(name)


def all_instances_info(hypervisors: list) -> serializer.RawJSON:
    """{name: info + "hypervisor"} of every instance running here (one call per query),
    as JSON text: every instance query asks for it, so a hypervisor that keeps its
    answers encoded (``get_all_instances_info_json``, the fake one at 1000 instances)
    is not re-encoded.  A name running under two hypervisors gets the last one's info,
    at the first one's position, as ``dict.update`` would do.
    """
    parts = []
    for hv_name in hypervisors:
        hv = get_hypervisor(hv_name)
        extra = {"hypervisor": hv_name}
        encoded = getattr(hv, "get_all_instances_info_json", None)
        if encoded is not None:
            text = encoded(extra)
        else:
            text = serializer.dumps({name: dict(info, **extra) for name, info
                                     in hv.get_all_instances_info().items()})
        if text != "{}":
            parts.append(text[1:-1])
    return serializer.RawJSON("{" + ",".join(parts) + "}")


def instance_list(hypervisors: list) -> list[str]:
    """Names of the instances running here under any of ``hypervisors``."""
    names: set[str] = set()
    for hv_name in hypervisors:
        names.update(get_hypervisor(hv_name).list_instances())
    return sorted(names)


def instance_console(instance: dict, node_name: str, ssh_port: int = 22) -> dict:
    """The console object of spec/rapi.md §9.7 for a running instance."""
    spec = _spec(instance)
    return get_hypervisor(spec.hypervisor).get_console(spec, node_name, ssh_port)


def hypervisor_validate_params(hypervisor: str, hvparams: dict) -> None:
    """Node-side check of filled hvparams (files exist...); HypervisorError if bad."""
    get_hypervisor(hypervisor).validate_parameters(hvparams)


def instance_node_checks(hypervisor: str, hvparams: dict | None = None, os_name: str = "",
                         bridges: list | None = None, memory: bool = False) -> dict:
    """Can this node host an instance?  All facts in one round trip, never raises for them.

    ``os``: the OS definition dict (None if no name given); ``hv_error``: why
    the hvparams are not usable here (None if fine or not asked);
    ``missing_bridges``; ``memory_free``: MiB the hypervisor can still give
    (None if not asked).
    """
    out: dict = {"os": None, "hv_error": None, "missing_bridges": [], "memory_free": None}
    hv = get_hypervisor(hypervisor)
    if hvparams is not None:
        try:
            hv.validate_parameters(hvparams)
        except errors.GenericError as err:
            out["hv_error"] = err.args[0] if err.args else str(err)
    if os_name:
        out["os"] = osdef.find_os(os_name).to_dict()
    if bridges:
        out["missing_bridges"] = bridges_exist(bridges)
    if memory:
        out["memory_free"] = hv.get_node_info().get("memory_free")
    return out


def bridges_exist(bridges: list) -> list[str]:
    """The names among ``bridges`` that are not bridges on this node."""
    return [b for b in bridges
            if not (isinstance(b, str) and b and "/" not in b
                    and os.path.isdir("/sys/class/net/%s/bridge" % b))]


def _os_disks(disks: list) -> list[dict]:
    out = []
    for disk, assembled in zip(disks, bdisks.assemble(disks)):
        entry = dict(assembled)
        lid = disk.get("logical_id") or []
        if disk["dev_type"] in ("file", "sharedfile") and lid:
            entry["file_driver"] = lid[0]
        out.append(entry)
    return out


def instance_os_add(instance: dict, disks: list, nics: list, hypervisor: str,
                    hvparams: dict, beparams: dict, osparams: dict,
                    reinstall: bool = False, debug: int = 0) -> str:
    """Activate the disks and run the OS ``create`` script; returns the log path.

    OpExecError carries the script's last log lines on failure; what it wrote
    on the disks is the master's to discard.
    """
    return osdef.run_create(instance["os"], instance, _os_disks(disks), nics, hypervisor,
                            hvparams, beparams, osparams, debug, reinstall=reinstall)


def instance_run_rename(instance: dict, disks: list, nics: list, hypervisor: str,
                        hvparams: dict, beparams: dict, osparams: dict, old_name: str,
                        debug: int = 0) -> str:
    """Run the OS ``rename`` script for an instance already renamed; returns the log path."""
    return osdef.run_rename(instance["os"], instance, _os_disks(disks), nics, hypervisor,
                            hvparams, beparams, osparams, debug, old_name=old_name)

