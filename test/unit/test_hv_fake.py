"""The fake hypervisor's full lifecycle under a temporary CORRAL_ROOT."""

import os

import pytest

from corral import errors, pathutils
from corral.hypervisor import DiskSpec, InstanceSpec, NicSpec, get_hypervisor, hvparams


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_ROOT", str(tmp_path / "node1"))
    return tmp_path


def spec(name: str = "inst1", mem: int = 256) -> InstanceSpec:
    return InstanceSpec(name, "uuid-" + name, hvparams.fill_hvparams("fake", {}),
                        hvparams.fill_beparams({}, {"maxmem": mem, "vcpus": 2}),
                        nics=[NicSpec("aa:00:00:00:00:01", link="br0")], hypervisor="fake")


def disk(root) -> DiskSpec:
    path = root / "disk0"
    path.write_bytes(b"")
    return DiskSpec(str(path))


def test_lifecycle(root) -> None:
    hv = get_hypervisor("fake")
    assert hv.list_instances() == [] and hv.get_instance_info("inst1") is None
    hv.start_instance(spec(), [disk(root)])
    assert hv.list_instances() == ["inst1"]
    info = hv.get_instance_info("inst1")
    assert info["state"] == "running" and info["memory"] == 256 and info["vcpus"] == 2
    with pytest.raises(errors.HypervisorError, match="already running"):
        hv.start_instance(spec(), [disk(root)])
    hv.reboot_instance(spec(), [], "hard")
    assert hv.get_all_instances_info().keys() == {"inst1"}
    hv.stop_instance("inst1")
    hv.stop_instance("inst1")                     # idempotent
    hv.cleanup_instance("inst1")
    assert hv.list_instances() == []
    with pytest.raises(errors.HypervisorError):
        hv.reboot_instance(spec(), [], "soft")


def test_missing_disk_refused(root) -> None:
    with pytest.raises(errors.HypervisorError, match="does not exist"):
        get_hypervisor("fake").start_instance(spec(), [DiskSpec(str(root / "nope"))])
    assert get_hypervisor("fake").list_instances() == []


def test_bad_name_cannot_escape(root) -> None:
    with pytest.raises(errors.HypervisorError):
        get_hypervisor("fake").stop_instance("../etc")


def test_node_memory_accounts_instances(root) -> None:
    hv = get_hypervisor("fake")
    hv.set_node_info(memory_total=4096, memory_dom0=512, cpu_total=8)
    assert hv.get_node_info()["memory_free"] == 3584
    hv.start_instance(spec("a", 1024), [])
    hv.start_instance(spec("b", 512), [])
    info = hv.get_node_info()
    assert (info["memory_total"], info["memory_free"], info["cpu_total"]) == (4096, 2048, 8)
    assert hv.list_instances() == ["a", "b"]       # the node file is not an instance
    hv.balloon_instance_memory(spec("a"), 512)
    assert hv.get_node_info()["memory_free"] == 2560


def test_migration_between_node_roots(root, monkeypatch) -> None:
    hv = get_hypervisor("fake")
    assert hv.CAN_MIGRATE
    inst = spec()
    hv.start_instance(inst, [])
    info = hv.migration_info(inst)
    monkeypatch.setenv("CORRAL_ROOT", str(root / "node2"))
    hv.accept_instance(inst, info, "10.0.0.2")
    monkeypatch.setenv("CORRAL_ROOT", str(root / "node1"))
    hv.migrate_instance(inst, "10.0.0.2", live=True)
    assert hv.get_migration_status(inst)["status"] == "completed"
    assert hv.list_instances() == []
    hv.finalize_migration_src(inst, True, True)
    monkeypatch.setenv("CORRAL_ROOT", str(root / "node2"))
    hv.finalize_migration_dst(inst, info, True)
    assert hv.get_instance_info("inst1")["state"] == "running"
    assert os.path.isdir(pathutils.hypervisor_run_dir("fake"))


def test_failed_migration_restores_source(root, monkeypatch) -> None:
    hv = get_hypervisor("fake")
    inst = spec()
    hv.start_instance(inst, [])
    info = hv.migration_info(inst)
    monkeypatch.setenv("CORRAL_ROOT", str(root / "node2"))
    hv.accept_instance(inst, info, "10.0.0.2")
    monkeypatch.setenv("CORRAL_ROOT", str(root / "node1"))
    hv.migrate_instance(inst, "10.0.0.2", live=False)
    hv.finalize_migration_src(inst, False, False)
    assert hv.list_instances() == ["inst1"]
    monkeypatch.setenv("CORRAL_ROOT", str(root / "node2"))
    hv.finalize_migration_dst(inst, info, False)
    assert hv.list_instances() == []


def test_console_and_verify(root) -> None:
    hv = get_hypervisor("fake")
    assert hv.get_console(spec())["kind"] == "msg"
    assert hv.verify() is None


def test_specs_roundtrip_json() -> None:
    from corral import serializer
    inst = spec()
    again = InstanceSpec.from_dict(serializer.loads(serializer.dumps(inst.to_dict())))
    assert again == inst and isinstance(again.nics[0], NicSpec)
    d = DiskSpec("/dev/x", "ro", "u1", "block")
    assert DiskSpec.from_dict(d.to_dict()) == d
