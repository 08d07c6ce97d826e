"""hypervisor/kvm."""
