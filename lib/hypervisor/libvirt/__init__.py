"""libvirt: domains managed through libvirt-python (``libvirt`` hypervisor).

:mod:`.domxml` generates domain XML and URIs (pure); :mod:`.conn` holds
connections and the event loop; :mod:`.driver` and :mod:`.migration` run
the operations.  ``import libvirt`` inside this package is the absolute
libvirt-python module (imported lazily, see :mod:`.conn`).
"""

from corral.hypervisor.libvirt.driver import LibvirtHypervisor

__all__ = ["LibvirtHypervisor"]
