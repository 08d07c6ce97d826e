"""hypervisor."""
