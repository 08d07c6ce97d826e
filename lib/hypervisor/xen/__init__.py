"""Xen through the xl toolstack: ``xen-pvm`` and ``xen-hvm``.

:mod:`.config` generates xl.cfg text and :mod:`.xl` builds xl command lines
and parses xl's output (both pure); :mod:`.driver` and :mod:`.migration`
run them.  See doc/design-xen-libvirt.md.
"""

from corral.hypervisor.xen.driver import (XenHvmHypervisor, XenHypervisor, XenPvmHypervisor,
                                          dom0_problem)

__all__ = ["XenHypervisor", "XenPvmHypervisor", "XenHvmHypervisor", "dom0_problem"]
