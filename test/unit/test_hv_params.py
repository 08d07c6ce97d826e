"""The hvparams/beparams table: defaults, layering, validation, CLI parsing."""

import pytest

from corral import errors
from corral.hypervisor import get_hypervisor, hvparams


def test_kvm_defaults_are_head_values() -> None:
    d = hvparams.hv_defaults("kvm")
    assert d["kvm_path"] == "/usr/bin/kvm"
    assert d["root_path"] == "/dev/vda1" and d["kernel_args"] == "ro"
    assert d["serial_speed"] == 38400 and d["acpi"] is True
    assert d["disk_discard"] == "ignore" and d["vhost_net"] is True
    assert d["migration_port"] == 8102 and d["migration_bandwidth"] == 32
    assert d["kvm_flag"] == "" and d["reboot_behavior"] == "reboot"
    assert hvparams.be_defaults() == {"maxmem": 128, "minmem": 128, "vcpus": 1,
                                      "auto_balance": True, "always_failover": False,
                                      "spindle_use": 1}


def test_fill_layers_and_globals() -> None:
    filled = hvparams.fill_hvparams("kvm", {"acpi": False, "migration_port": 9000},
                                    {"kernel_args": "quiet"},
                                    {"kernel_args": "single", "migration_port": 1})
    assert filled["acpi"] is False and filled["kernel_args"] == "single"
    assert filled["migration_port"] == 9000       # global: cluster level wins
    assert set(filled) == set(hvparams.HV_PARAMS["kvm"])


def test_fill_beparams_memory_alias() -> None:
    filled = hvparams.fill_beparams({"vcpus": 2}, {"memory": 512})
    assert (filled["maxmem"], filled["minmem"], filled["vcpus"]) == (512, 512, 2)


@pytest.mark.parametrize("params,fragment", [
    ({"disk_type": "floppy"}, "'disk_type'"),
    ({"disk_type": "floppy"}, "'paravirtual'"),
    ({"serial_speed": 12345}, "38400"),
    ({"acpi": "yes"}, "boolean"),
    ({"kernel_path": "relative/vmlinuz"}, "absolute path"),
    ({"no_such_param": 1}, "Unknown kvm parameter 'no_such_param'"),
    ({"cpu_mask": "0-2,x"}, "cpu_mask"),
    ({"virtio_net_queues": 9}, "<= 8"),
    ({"kvm_flag": "maybe"}, "'enabled'"),
    ({"security_model": "user", "security_domain": ""}, "security_domain"),
])
def test_check_hvparams_names_the_problem(params: dict, fragment: str) -> None:
    with pytest.raises(errors.OpPrereqError) as err:
        hvparams.check_hvparams("kvm", params)
    assert fragment in err.value.args[0]
    assert err.value.args[1] == errors.ECODE_INVAL


def test_globals_rejected_below_cluster() -> None:
    hvparams.check_hvparams("kvm", {"migration_port": 9000}, level="cluster")
    with pytest.raises(errors.OpPrereqError, match="migration_port"):
        hvparams.check_hvparams("kvm", {"migration_port": 9000}, level="instance")


def test_filled_defaults_are_valid() -> None:
    for hv in hvparams.HV_PARAMS:
        hvparams.check_hvparams(hv, hvparams.hv_defaults(hv))
    hvparams.check_beparams(hvparams.be_defaults())


def test_unknown_hypervisor() -> None:
    with pytest.raises(errors.OpPrereqError, match="Unknown hypervisor"):
        hvparams.check_hvparams("xen-9", {})
    with pytest.raises(errors.HypervisorError):
        get_hypervisor("xen-9")


def test_cli_parsing() -> None:
    parsed = hvparams.parse_hvparams("kvm", {"acpi": "false", "serial_speed": "115200",
                                             "kernel_args": "ro quiet", "vnc_tls": "yes",
                                             "spice_ip_version": "4", "cpu_type": "default"})
    assert parsed == {"acpi": False, "serial_speed": 115200, "kernel_args": "ro quiet",
                      "vnc_tls": True, "spice_ip_version": 4, "cpu_type": "default"}
    with pytest.raises(errors.OpPrereqError, match="'acpi'"):
        hvparams.parse_hvparams("kvm", {"acpi": "perhaps"})
    assert hvparams.parse_beparams({"maxmem": "256", "auto_balance": "no"}) == \
        {"maxmem": 256, "auto_balance": False}


def test_beparams_checks() -> None:
    with pytest.raises(errors.OpPrereqError, match="minmem"):
        hvparams.check_beparams({"maxmem": 128, "minmem": 256})
    with pytest.raises(errors.OpPrereqError, match="vcpus"):
        hvparams.check_beparams({"vcpus": 0})
    with pytest.raises(errors.OpPrereqError, match="Unknown backend"):
        hvparams.check_beparams({"cpus": 1})


def test_driver_check_parameters_raises_hypervisor_error() -> None:
    with pytest.raises(errors.HypervisorError, match="disk_type"):
        get_hypervisor("kvm").check_parameters({"disk_type": "floppy"})
