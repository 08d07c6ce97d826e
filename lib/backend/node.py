"""Facts about the node itself: version, memory/CPU, master info, verify."""

import glob
import os
import time
from typing import Any

from corral import constants, errors, netutils, ssconf


def version() -> int:
    """The RPC protocol version this node daemon speaks."""
    return constants.PROTOCOL_VERSION


def test_delay(duration: float) -> None:
    """Sleep ``duration`` seconds (the one procedure meant to sleep)."""
    if duration < 0:
        raise errors.ParameterError("test_delay: duration must not be negative")
    time.sleep(duration)


def _meminfo() -> dict[str, int]:
    """/proc/meminfo values in KiB."""
    out = {}
    with open("/proc/meminfo") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            fields = rest.split()
            if fields and fields[0].isdigit():
                out[key] = int(fields[0])
    return out


def _cpu_facts() -> tuple[int, int, int]:
    """(logical CPUs, NUMA nodes, sockets) of this machine; at least 1 each."""
    cpus = 0
    sockets = set()
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "processor":
                cpus += 1
            elif key == "physical id":
                sockets.add(value.strip())
    numa = len(glob.glob("/sys/devices/system/node/node[0-9]*"))
    return max(cpus, os.cpu_count() or 1, 1), max(numa, 1), max(len(sockets), 1)


def _read_boot_id() -> str:
    with open("/proc/sys/kernel/random/boot_id") as fh:
        return fh.read().strip()


def _get_hypervisor(name: str) -> Any:
    try:
        from corral import hypervisor
        get_hypervisor = hypervisor.get_hypervisor  # type: ignore[attr-defined]
    except (ImportError, AttributeError) as err:
        raise errors.HypervisorError("Hypervisor support is not available on this node: %s"
                                     % err) from err
    return get_hypervisor(name)


def _hypervisor_info(name: str) -> Any:
    return _get_hypervisor(name).get_node_info()


def node_info(hv_names: list[str], storage_units: list) -> dict:
    """Memory (MiB), CPUs and boot id from /proc, plus each hypervisor's own facts.

    memory_free counts what a new instance could use (MemAvailable);
    memory_dom0 is what the node's own processes use (total - free).
    ``storage_units`` ([type, name] pairs) are answered in "storage" with their
    size and free space (storage_size/storage_free, MiB).
    """
    mem = _meminfo()
    total = mem.get("MemTotal", 0) // 1024
    free_kib = mem.get("MemAvailable",
                       mem.get("MemFree", 0) + mem.get("Buffers", 0) + mem.get("Cached", 0))
    free = free_kib // 1024
    cpus, numa, sockets = _cpu_facts()
    return {
        "bootid": _read_boot_id(),
        "cpu_total": cpus,
        "cpu_nodes": numa,
        "cpu_sockets": sockets,
        "memory_total": total,
        "memory_free": free,
        "memory_dom0": max(total - free, 0),
        "hv": {name: _hypervisor_info(name) for name in hv_names},
        "storage": [_storage_unit(unit) for unit in storage_units],
    }


def _storage_unit(unit: list) -> dict:
    """Size and free space (MiB) of one [type, name] storage unit; None values if unknown."""
    kind, name = (list(unit) + [None, None])[:2]
    out = {"type": kind, "name": name, "storage_size": None, "storage_free": None}
    try:
        from corral import storage
        rows = storage.list_storage_units(str(kind), [str(name)] if name else [])
    except errors.GenericError as err:
        out["error"] = err.args[0] if err.args else str(err)
        return out
    for row in rows:
        if name is None or row.get("name") == name:
            out["storage_size"] = row.get("size")
            out["storage_free"] = row.get("free")
            break
    return out


def get_master_info() -> dict:
    """What this node believes about the master, from its ssconf files.

    Raises errors.ConfigurationError when the node is not part of a cluster.
    """
    store = ssconf.SimpleStore()
    return {
        "cluster_name": store.get_cluster_name(),
        "master_node": store.get_master_node(),
        "master_ip": store.get_master_ip(),
        "master_netdev": store.get_master_netdev(),
        "master_netmask": store.get_master_netmask(),
        "primary_ip_family": store.get_primary_ip_family(),
    }


def _verify_hypervisors(names: list) -> dict[str, str | None]:
    """{hypervisor: problem or None}; a failure to even load one is its problem."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[str(name)] = _get_hypervisor(str(name)).verify()
        except errors.GenericError as err:
            out[str(name)] = err.args[0] if err.args else str(err)
    return out


def node_verify(checks: dict) -> dict:
    """Answers to cluster verify's node checks.

    Always: version [protocol, release], time, hostname.  With
    ``checks["hypervisors"]`` (names): "hypervisor" {name: problem or None} and
    "instances" (names of the instances running under them).  With
    ``checks["config_serial"]``: "config_serial", the serial number of this
    node's configuration copy (None without one), so the master can spot a
    candidate whose copy is out of date.
    """
    result: dict[str, Any] = {
        "version": [constants.PROTOCOL_VERSION, constants.RELEASE_VERSION],
        "time": time.time(),
        "hostname": netutils.get_hostname(),
    }
    if checks.get("hypervisors"):
        result["hypervisor"] = _verify_hypervisors(list(checks["hypervisors"]))
        result["instances"] = _running_instances(list(checks["hypervisors"]), result)
    if checks.get("config_serial"):
        from corral.backend import cluster_membership
        result["config_serial"] = cluster_membership.config_info()["serial_no"]
    return result


def _running_instances(names: list, result: dict) -> list[str]:
    """Instances running under the hypervisors; a listing failure becomes a problem."""
    running: set[str] = set()
    for name in names:
        if result["hypervisor"].get(str(name)):
            continue  # a broken hypervisor already has its problem reported
        try:
            running.update(_get_hypervisor(str(name)).list_instances())
        except errors.GenericError as err:
            result["hypervisor"][str(name)] = "cannot list instances: %s" % (
                err.args[0] if err.args else err)
    return sorted(running)
