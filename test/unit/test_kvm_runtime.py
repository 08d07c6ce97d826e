"""KVM driver bookkeeping that needs no QEMU: paths, stale state, params."""

import os
import shutil

import pytest

from corral import errors
from corral.hypervisor import InstanceSpec, get_hypervisor, hvparams
from corral.hypervisor.kvm import runtime


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_ROOT", str(tmp_path))
    return tmp_path


def test_socket_path_limit(monkeypatch) -> None:
    monkeypatch.setenv("CORRAL_ROOT", "/tmp/" + "x" * 80)
    with pytest.raises(errors.HypervisorError, match="unix socket limit"):
        runtime.check_socket_paths(runtime.paths_for("inst1.example.com"))
    inst = InstanceSpec("inst1.example.com", "u", hvparams.fill_hvparams("kvm", {}), {})
    with pytest.raises(errors.HypervisorError, match="unix socket limit"):
        get_hypervisor("kvm").start_instance(inst, [])


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden", "log"])
def test_unsafe_names_refused(root, bad: str) -> None:
    with pytest.raises(errors.HypervisorError, match="Invalid instance name"):
        get_hypervisor("kvm").stop_instance(bad)


def test_stale_pidfile_is_not_running(root) -> None:
    paths = runtime.paths_for("dead1")
    os.makedirs(paths.dir)
    with open(paths.pidfile, "w") as fh:
        fh.write("%d\n" % os.getpid())      # alive, but not a QEMU named dead1
    hv = get_hypervisor("kvm")
    assert runtime.running_pid(paths, "dead1") == 0
    assert hv.list_instances() == [] and hv.get_instance_info("dead1") is None
    hv.cleanup_instance("dead1")
    hv.cleanup_instance("dead1")            # idempotent
    assert not os.path.exists(paths.dir)
    hv.stop_instance("dead1")               # nothing to stop: no error


def test_binary_fallback() -> None:
    if not shutil.which("qemu-system-x86_64"):
        pytest.skip("qemu-system-x86 not installed")
    assert runtime.resolve_binary("/nonexistent/kvm") == shutil.which("qemu-system-x86_64")


def test_validate_parameters_checks_files(root) -> None:
    hv = get_hypervisor("kvm")
    params = hvparams.fill_hvparams("kvm", {}, None, {"kernel_path": str(root / "vmlinuz")})
    with pytest.raises(errors.HypervisorError, match="kernel_path"):
        hv.validate_parameters(params)


def test_console_object(root) -> None:
    hv = get_hypervisor("kvm")
    inst = InstanceSpec("c1", "u", hvparams.fill_hvparams("kvm", {}), {}, network_port=5903)
    con = hv.get_console(inst, "node1.example.com", 2222)
    assert con["kind"] == "ssh" and con["host"] == "node1.example.com" and con["port"] == 2222
    assert con["command"][-1] == "UNIX-CONNECT:" + runtime.paths_for("c1").serial
    inst.hvparams.update(serial_console=False, vnc_bind_address="0.0.0.0")
    assert hv.get_console(inst, "n")["display"] == 3
    inst.hvparams["vnc_bind_address"] = ""
    assert hv.get_console(inst, "n")["kind"] == "msg"
