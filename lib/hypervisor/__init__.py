"""Hypervisor drivers: registry and lookup.

``get_hypervisor(name)`` returns one cached driver object per name; drivers
keep no per-root state (paths are computed per call from $CORRAL_ROOT), so a
cached object is safe across roots.  This package never imports cmdlib,
config or jqueue (STYLE.md §8); drivers never import each other.
"""

import threading

from corral import errors
from corral.hypervisor.base import BaseHypervisor, DiskSpec, InstanceSpec, NicSpec
from corral.hypervisor.hv_fake import FakeHypervisor
from corral.hypervisor.kvm import KvmHypervisor
from corral.hypervisor.libvirt import LibvirtHypervisor
from corral.hypervisor.xen import XenHvmHypervisor, XenPvmHypervisor

HYPERVISORS: dict[str, type[BaseHypervisor]] = {
    "kvm": KvmHypervisor,
    "fake": FakeHypervisor,
    "xen-pvm": XenPvmHypervisor,
    "xen-hvm": XenHvmHypervisor,
    "libvirt": LibvirtHypervisor,
}

_cache: dict[str, BaseHypervisor] = {}
_cache_lock = threading.Lock()


def get_hypervisor(name: str) -> BaseHypervisor:
    """The driver for ``name``; HypervisorError for an unknown hypervisor."""
    with _cache_lock:
        if name not in _cache:
            cls = HYPERVISORS.get(name)
            if cls is None:
                raise errors.HypervisorError("Unknown hypervisor '%s' (known: %s)" %
                                             (name, ", ".join(sorted(HYPERVISORS))))
            _cache[name] = cls()
        return _cache[name]


__all__ = ["BaseHypervisor", "DiskSpec", "InstanceSpec", "NicSpec", "HYPERVISORS",
           "get_hypervisor"]
