"""The hypervisor driver interface and the data it is given.

Drivers run on the node (called by the node daemon's backend).  They never
decide anything: the master passes fully filled parameters.  The required core
is small; optional abilities are class flags (``CAN_MIGRATE``...) that callers
check first, never methods that raise NotImplementedError.

Data crosses the RPC boundary as JSON, hence ``to_dict``/``from_dict``.
"""

import abc
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from corral import errors
from corral.hypervisor import hvparams as hvp


@dataclass
class NicSpec:
    """One NIC as the hypervisor needs it (mode/link/vlan are filled nicparams)."""

    mac: str
    ip: str | None = None
    mode: str = "bridged"
    link: str = ""
    vlan: str = ""
    uuid: str = ""
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "NicSpec":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class DiskSpec:
    """An assembled disk on this node: a path QEMU can open.

    ``mirror``: for a ``mirror`` disk on its primary node, the unix socket
    through which the secondary's copy is reached (NBD export "disk"); the
    hypervisor keeps every guest write on both (doc/design-mirror.md).
    """

    path: str
    mode: str = "rw"
    uuid: str = ""
    dev_type: str = "file"
    mirror: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DiskSpec":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class InstanceSpec:
    """What a driver needs to run an instance; hvparams/beparams are filled."""

    name: str
    uuid: str
    hvparams: dict[str, Any]
    beparams: dict[str, Any]
    nics: list[NicSpec] = field(default_factory=list)
    network_port: int | None = None
    hypervisor: str = "kvm"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["nics"] = [n.to_dict() for n in self.nics]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "InstanceSpec":
        kwargs = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        kwargs["nics"] = [n if isinstance(n, NicSpec) else NicSpec.from_dict(n)
                          for n in data.get("nics", [])]
        return cls(**kwargs)

    @property
    def memory(self) -> int:
        return int(self.beparams.get("maxmem", hvp.BE_PARAMS["maxmem"].default))

    @property
    def vcpus(self) -> int:
        return int(self.beparams.get("vcpus", hvp.BE_PARAMS["vcpus"].default))


# Values of the "state" key of get_instance_info().
STATE_RUNNING = "running"
STATE_PAUSED = "paused"
STATE_SHUTDOWN = "shutdown"     # guest powered itself off, process still there


class BaseHypervisor(abc.ABC):
    """Required core every driver implements; optional parts behind flags.

    Contracts shared by all drivers:
    - ``start_instance`` fails with HypervisorError if the instance runs
      already; on failure it cleans up whatever it created.
    - ``stop_instance`` and ``cleanup_instance`` are idempotent.
    - ``get_instance_info`` returns None for an instance that is not running
      (including one whose process died behind our back).
    """

    NAME = ""
    CAN_MIGRATE = False
    CAN_BALLOON = False
    CAN_HOTPLUG = False
    # Keeps ``mirror`` disks replicated to their secondary (doc/design-mirror.md).
    CAN_REPLICATE = False

    # --- lifecycle -------------------------------------------------------
    @abc.abstractmethod
    def start_instance(self, inst: InstanceSpec, block_devices: list[DiskSpec],
                       startup_paused: bool = False) -> None:
        """Start ``inst`` with the given disks (in order)."""

    @abc.abstractmethod
    def stop_instance(self, name: str, force: bool = False, timeout: int = 120) -> None:
        """Stop cleanly (force=False: guest powerdown, then kill after timeout)."""

    @abc.abstractmethod
    def reboot_instance(self, inst: InstanceSpec, block_devices: list[DiskSpec],
                        reboot_type: str = "soft", timeout: int = 120) -> None:
        """soft: clean guest shutdown then start again; hard: kill then start."""

    @abc.abstractmethod
    def cleanup_instance(self, name: str) -> None:
        """Remove runtime files and host devices of a stopped instance (idempotent)."""

    # --- queries ---------------------------------------------------------
    @abc.abstractmethod
    def list_instances(self) -> list[str]:
        """Names of the instances running on this node."""

    def forget_instance(self, name: str) -> None:
        """The instance left the cluster: drop what the driver kept after stops.

        Drivers that keep nothing past ``cleanup_instance`` have nothing to do
        here (kvm keeps the serial console log across stops).  Idempotent.
        """

    @abc.abstractmethod
    def get_instance_info(self, name: str) -> dict[str, Any] | None:
        """``{"name","state","memory","vcpus","time"}`` or None if not running."""

    def get_all_instances_info(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name in self.list_instances():
            info = self.get_instance_info(name)
            if info is not None:
                out[name] = info
        return out

    @abc.abstractmethod
    def get_node_info(self) -> dict[str, Any]:
        """``{"memory_total","memory_free","memory_dom0","cpu_total","hv_version"}``."""

    @abc.abstractmethod
    def get_console(self, inst: InstanceSpec, node_name: str = "",
                    ssh_port: int = 22) -> dict[str, Any]:
        """Console object of spec/rapi.md §9.7."""

    @abc.abstractmethod
    def verify(self) -> str | None:
        """A problem with this node's hypervisor setup, or None."""

    # --- parameters ------------------------------------------------------
    def check_parameters(self, hvparams: dict[str, Any]) -> None:
        """Pure syntax check of (filled or partial) hvparams.

        Raises HypervisorError naming the bad parameter and what is allowed.
        """
        try:
            hvp.check_hvparams(self.NAME, hvparams)
        except errors.OpPrereqError as err:
            raise errors.HypervisorError(err.args[0])

    def validate_parameters(self, hvparams: dict[str, Any]) -> None:
        """Node-side check (files exist...); default: the syntax check only."""
        self.check_parameters(hvparams)

    # --- migration (only when CAN_MIGRATE) --------------------------------
    def migration_info(self, inst: InstanceSpec) -> str:
        """Opaque data the target needs to accept ``inst`` (source side)."""
        raise errors.HypervisorError("%s cannot migrate" % self.NAME)

    def accept_instance(self, inst: InstanceSpec, info: str, target_ip: str,
                        block_devices: list[DiskSpec] | None = None) -> None:
        """Prepare to receive ``inst`` (target side)."""
        raise errors.HypervisorError("%s cannot migrate" % self.NAME)

    def migrate_instance(self, inst: InstanceSpec, target_ip: str, live: bool,
                         port: int | None = None) -> None:
        """Start sending ``inst`` to ``target_ip`` (source side, returns at once)."""
        raise errors.HypervisorError("%s cannot migrate" % self.NAME)

    def get_migration_status(self, inst: InstanceSpec) -> dict[str, Any]:
        """``{"status": active|completed|failed|cancelled, "transferred", "total"}``."""
        raise errors.HypervisorError("%s cannot migrate" % self.NAME)

    def finalize_migration_src(self, inst: InstanceSpec, success: bool, live: bool) -> None:
        raise errors.HypervisorError("%s cannot migrate" % self.NAME)

    def finalize_migration_dst(self, inst: InstanceSpec, info: str, success: bool) -> None:
        raise errors.HypervisorError("%s cannot migrate" % self.NAME)

    # --- ballooning (only when CAN_BALLOON) -------------------------------
    def balloon_instance_memory(self, inst: InstanceSpec, mem_mib: int) -> None:
        raise errors.HypervisorError("%s cannot balloon" % self.NAME)

    # --- mirror disks (only when CAN_REPLICATE) ---------------------------
    def replication_start(self, name: str, disks: list[DiskSpec]) -> list[str]:
        """Replicate a running instance's mirror disks; the disks that could not."""
        raise errors.HypervisorError("%s cannot replicate mirror disks" % self.NAME)

    def replication_stop(self, name: str, indices: list[int]) -> bool:
        """Drop the replication of some mirror disks; False if ``name`` is not running."""
        raise errors.HypervisorError("%s cannot replicate mirror disks" % self.NAME)

    def replication_status(self, name: str, wait: float = 0.0) -> list[dict[str, Any]] | None:
        """Per disk its replication state (None: not a mirror disk); None if not running."""
        raise errors.HypervisorError("%s cannot replicate mirror disks" % self.NAME)


def host_node_info(hv_version: str) -> dict[str, Any]:
    """Node info from /proc/meminfo and the CPU count (MiB, like Ganeti)."""
    mem: dict[str, int] = {}
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                mem[key] = int(rest.split()[0]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    total = mem.get("MemTotal", 0)
    free = mem.get("MemAvailable", mem.get("MemFree", 0))
    return {"memory_total": total, "memory_free": free,
            "memory_dom0": max(total - free, 0), "cpu_total": os.cpu_count() or 1,
            "hv_version": hv_version}
