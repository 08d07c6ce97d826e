"""Node side of ``mirror`` disk replication (doc/design-mirror.md).

The storage driver (storage/mirror.py) runs the secondary's export and the
primary's tunnel; the hypervisor keeps a running guest's writes on both.
These procedures join the two for the master: start or resume replication
of a running instance, report its live state, copy a stopped instance's disks
whole, and record on the secondary whether its copy is complete.
"""

from typing import Any

from corral import errors
from corral.backend import disks as bdisks
from corral.hypervisor import DiskSpec, get_hypervisor


def _mirror_devices(disks: list) -> list[Any]:
    devs = []
    for disk in disks:
        if disk.get("dev_type") != bdisks.MIRROR:
            raise errors.BlockDeviceError("Disk %s is not a mirror disk (%s)" %
                                          (bdisks._desc(disk), disk.get("dev_type")))
        devs.append(bdisks._device(disk))
    return devs


def mirror_set_consistent(disks: list, consistent: bool) -> None:
    """Record (secondary) whether the local copies hold every acknowledged write."""
    for dev in _mirror_devices(disks):
        dev.set_consistent(consistent)


def mirror_sync_offline(disks: list) -> int:
    """Primary, instance stopped: copy each whole disk to the secondary; bytes copied.

    The disks are assembled first (the tunnel must be up).  Used after an
    OS install, reinstall or import, so the copies are equal before the
    instance is ready.
    """
    total = 0
    for disk, dev in zip(disks, _mirror_devices(disks)):
        if not dev.attach():
            dev.assemble()
        try:
            dev.sync_offline()
        except errors.GenericError as err:
            raise errors.BlockDeviceError("Cannot copy disk %s to its secondary: %s" %
                                          (bdisks._desc(disk), err)) from err
        total += dev.get_actual_size()
    return total


def instance_replication_start(instance: dict, disks: list) -> list[str]:
    """Primary: assemble the disks (tunnels up) and make the running guest
    replicate them; the disks that could not (the guest runs on regardless)."""
    specs = [DiskSpec.from_dict(d) for d in bdisks.assemble(disks)]
    return get_hypervisor(instance["hypervisor"]).replication_start(instance["name"], specs)


def instance_replication_status(hypervisor: str, name: str,
                                wait: float = 0.0) -> list[dict | None] | None:
    """Primary: per disk the live replication state; None if the guest is not running.

    ``wait``: while a disk is not in sync, wait up to that long for QEMU to
    report a change first (progress reports without sleep-polling).
    """
    return get_hypervisor(hypervisor).replication_status(name, wait=float(wait))


def instance_replication_stop(hypervisor: str, name: str, disks: list) -> bool:
    """Primary: drop the replication jobs of disk indices ``disks`` of a running
    instance (its guest runs on, degraded); False if it does not run here.
    Idempotent."""
    return get_hypervisor(hypervisor).replication_stop(name, [int(i) for i in disks])
