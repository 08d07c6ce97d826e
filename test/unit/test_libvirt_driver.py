"""The libvirt driver against libvirt's built-in test:///default driver (no daemon)."""

import os
import shutil
import tempfile

import pytest

from corral import errors
from corral.hypervisor import get_hypervisor, hvparams
from corral.hypervisor.base import DiskSpec, InstanceSpec, NicSpec

import libvirt  # noqa: E402  (installed by make deps: libvirt-python)

from corral.hypervisor.libvirt import conn as lvc  # noqa: E402
from corral.hypervisor.libvirt import driver, migration  # noqa: E402

URI = "test:///default"
UUID = "5f8a3b52-0d1e-4c55-9a33-1f2e3d4c5b6a"


@pytest.fixture
def node(monkeypatch):
    """A node root whose libvirt is test:///default; every domain we made is removed."""
    import pathlib
    root = pathlib.Path(tempfile.mkdtemp(prefix="clv", dir="/tmp"))  # short socket paths
    monkeypatch.setenv("CORRAL_ROOT", str(root))
    monkeypatch.setenv(driver.URI_ENV, URI)
    conn = lvc.connect(URI)
    before = {d.name() for d in conn.listAllDomains()}
    yield root
    for dom in conn.listAllDomains():
        if dom.name() not in before:
            if dom.isActive():
                dom.destroy()
            if dom.isPersistent():
                dom.undefine()
    shutil.rmtree(root, ignore_errors=True)


def make(name: str, root, extra: dict | None = None) -> tuple[InstanceSpec, list[DiskSpec]]:
    disk = root / (name + ".disk0")
    disk.write_bytes(b"\0" * 512)
    params = hvparams.fill_hvparams("libvirt", {}, None,
                                    dict({"uri": URI, "kernel_path": "/bin/true"},
                                         **(extra or {})))
    inst = InstanceSpec(name, UUID, params, hvparams.fill_beparams({}, {"maxmem": 256}),
                        nics=[NicSpec("aa:00:00:11:22:33", link="br0")], hypervisor="libvirt")
    return inst, [DiskSpec(str(disk), dev_type="file")]


def test_lifecycle(node) -> None:
    hv = get_hypervisor("libvirt")
    inst, disks = make("lv1", node)
    hv.start_instance(inst, disks)
    conn = lvc.connect(URI)
    dom = conn.lookupByName("lv1")
    assert dom.isActive() and dom.isPersistent()
    assert "corral:instance" in dom.XMLDesc(0)
    assert "lv1" in hv.list_instances()
    info = hv.get_instance_info("lv1")
    assert (info["state"], info["memory"], info["vcpus"]) == ("running", 256, 1)
    saved = driver.load_runtime("lv1")
    assert saved["uri"] == URI and saved["disks"][0]["path"] == disks[0].path
    with pytest.raises(errors.HypervisorError, match="already running"):
        hv.start_instance(inst, disks)
    console = hv.get_console(inst, "node1")
    assert console["kind"] == "ssh" and console["socket"] == driver.paths_for("lv1").serial_socket
    assert console["command"][-1] == "UNIX-CONNECT:" + console["socket"]
    hv.balloon_instance_memory(inst, 128)
    assert hv.get_instance_info("lv1")["memory"] == 128
    hv.reboot_instance(inst, disks, "hard")
    assert hv.get_instance_info("lv1")["state"] == "running"
    hv.stop_instance("lv1", timeout=5)
    assert hv.get_instance_info("lv1") is None and "lv1" not in hv.list_instances()
    assert lvc.lookup(conn, "lv1") is None, "domain left defined"
    assert not os.path.exists(driver.paths_for("lv1").dir)
    hv.stop_instance("lv1")          # idempotent
    hv.cleanup_instance("lv1")


def test_paused_start_and_destroy(node) -> None:
    hv = get_hypervisor("libvirt")
    inst, disks = make("lv2", node)
    hv.start_instance(inst, disks, startup_paused=True)
    assert hv.get_instance_info("lv2")["state"] == "paused"
    with pytest.raises(errors.HypervisorError, match="still running"):
        hv.cleanup_instance("lv2")
    hv.stop_instance("lv2", force=True)
    assert hv.get_instance_info("lv2") is None


def test_node_info_and_verify(node) -> None:
    hv = get_hypervisor("libvirt")
    info = hv.get_node_info()
    assert info["memory_total"] > 0 and info["cpu_total"] > 0 and "hv_error" not in info
    assert info["libvirt_version"][0] >= 9 and info["uri"] == URI
    assert hv.verify() is None


def test_unreachable_uri_changes_nothing(node, monkeypatch) -> None:
    hv = get_hypervisor("libvirt")
    bad = "qemu+unix:///system?socket=%s/no/libvirt-sock" % node
    inst, disks = make("lv3", node, {"uri": bad})
    with pytest.raises(errors.HypervisorError, match="Cannot connect to libvirt at"):
        hv.start_instance(inst, disks)
    assert not os.path.exists(driver.hv_dir())
    with pytest.raises(errors.HypervisorError, match="Cannot connect"):
        hv.validate_parameters(inst.hvparams)
    monkeypatch.setenv(driver.URI_ENV, bad)
    problem = hv.verify()
    assert problem and "Cannot connect to libvirt" in problem
    assert hv.get_node_info()["hv_error"] == problem
    # the node_info procedure keeps the node's own facts and carries the reason
    from corral.backend import node as backend_node
    facts = backend_node.node_info(["libvirt", "fake"], [])
    assert facts["memory_total"] > 0 and facts["hv"]["libvirt"]["hv_error"] == problem
    assert "hv_error" not in facts["hv"]["fake"]
    assert backend_node.node_verify({"hypervisors": ["libvirt"]})["hypervisor"] == \
        {"libvirt": problem}



def test_bad_hvparams_and_foreign_domain(node) -> None:
    hv = get_hypervisor("libvirt")
    with pytest.raises(errors.HypervisorError, match="Unknown libvirt parameter 'acpi_x'"):
        hv.check_parameters({"acpi_x": True})
    inst, disks = make("test", node)      # test:///default predefines a domain "test"
    conn = lvc.connect(URI)
    running = conn.lookupByName("test").isActive()
    if running:
        with pytest.raises(errors.HypervisorError, match="already running"):
            hv.start_instance(inst, disks)
    conn.lookupByName("test").destroy() if running else None
    try:
        with pytest.raises(errors.HypervisorError, match="not managed by Corral"):
            hv.start_instance(inst, disks)
        hv.cleanup_instance("test")       # must not undefine a foreign domain
        assert lvc.lookup(conn, "test") is not None
    finally:
        if running:
            conn.lookupByName("test").create()
    inst, disks = make("lv4", node)
    with pytest.raises(errors.HypervisorError, match="does not exist"):
        hv.start_instance(inst, [DiskSpec(str(node / "missing"))])
    assert lvc.lookup(conn, "lv4") is None


def test_migration_failure_is_reported(node) -> None:
    """The test driver cannot migrate: the failure surfaces in the status, source intact."""
    hv = get_hypervisor("libvirt")
    inst, disks = make("lv5", node)
    hv.start_instance(inst, disks)
    try:
        assert '"uri"' in hv.migration_info(inst)
        hv.migrate_instance(inst, "127.0.0.1", live=True)
        migration._jobs["lv5"].done.wait(30)
        status = hv.get_migration_status(inst)
        assert status["status"] == "failed" and "test+tcp://127.0.0.1/default" in \
            status["info"]
        hv.finalize_migration_src(inst, success=False, live=True)
        assert hv.get_instance_info("lv5")["state"] == "running"
    finally:
        hv.stop_instance("lv5", force=True)


def test_migration_flags_and_params() -> None:
    live = migration.migration_flags(libvirt, True)
    assert live & libvirt.VIR_MIGRATE_LIVE and live & libvirt.VIR_MIGRATE_PEER2PEER
    assert live & libvirt.VIR_MIGRATE_UNSAFE and live & libvirt.VIR_MIGRATE_PERSIST_DEST
    assert live & libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
    assert not migration.migration_flags(libvirt, False) & libvirt.VIR_MIGRATE_LIVE
    assert migration.migration_params(libvirt, "10.88.0.2", None, 32) == {
        libvirt.VIR_MIGRATE_PARAM_URI: "tcp://10.88.0.2",
        libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 32}
    assert migration.migration_params(libvirt, "fd00::2", 49152, None) == {
        libvirt.VIR_MIGRATE_PARAM_URI: "tcp://[fd00::2]:49152"}


def test_accept_and_abort_on_target(node) -> None:
    hv = get_hypervisor("libvirt")
    inst, disks = make("lv6", node)
    hv.accept_instance(inst, '{"disks": []}', "127.0.0.1", disks)
    assert driver.load_runtime("lv6")["incoming"] is True
    with pytest.raises(errors.HypervisorError, match="not running here"):
        hv.finalize_migration_dst(inst, "", success=True)
    hv.finalize_migration_dst(inst, "", success=False)
    assert not os.path.exists(driver.paths_for("lv6").dir)


class _FakeDom:
    """A domain whose guest reacts to the Nth ACPI press only (still booting before)."""

    def __init__(self, reacts_on: int) -> None:
        self.reacts_on, self.presses, self.active, self.destroyed = reacts_on, 0, True, False

    def shutdown(self) -> None:
        self.presses += 1

    def destroy(self) -> None:
        self.active, self.destroyed = False, True

    def name(self) -> str:
        return "fake"


def test_shutdown_presses_the_power_button_again(monkeypatch) -> None:
    waits = []

    def wait_stopped(_conn, dom, timeout):
        waits.append(timeout)
        if dom.presses >= dom.reacts_on:
            dom.active = False
        return not dom.active

    monkeypatch.setattr(lvc, "is_active", lambda dom: dom.active)
    monkeypatch.setattr(lvc, "wait_stopped", wait_stopped)
    dom = _FakeDom(reacts_on=3)
    driver.LibvirtHypervisor._halt(None, dom, False, 120)
    assert dom.presses == 3 and not dom.destroyed
    assert all(t <= driver.POWERDOWN_REPEAT for t in waits)
    deaf = _FakeDom(reacts_on=10 ** 6)
    driver.LibvirtHypervisor._halt(None, deaf, False, 0)        # timeout: destroy
    assert deaf.presses == 1 and deaf.destroyed
    forced = _FakeDom(reacts_on=1)
    driver.LibvirtHypervisor._halt(None, forced, True, 120)
    assert forced.presses == 0 and forced.destroyed


def test_migrated_in_domain_removes_the_source_dir_of_its_socket(node) -> None:
    import socket as socketlib
    other = node / "other-node" / "lv9"
    other.mkdir(parents=True)
    stale = other / "serial-10.0.0.2.sock"
    stale.write_text("")                           # left by the QEMU that went away
    driver.remove_foreign_socket_dir("lv9", str(stale))
    assert not other.exists()
    other.mkdir(parents=True)
    server = socketlib.socket(socketlib.AF_UNIX)
    try:
        server.bind(str(other / "serial-10.0.0.3.sock"))   # migrated on: still served
        server.listen(1)
        driver.remove_foreign_socket_dir("lv9", str(stale))
        assert other.exists()
    finally:
        server.close()
    (other / "serial-10.0.0.3.sock").unlink()
    driver.remove_foreign_socket_dir("lv8", str(stale))     # not this domain's dir
    driver.remove_foreign_socket_dir("lv9", None)
    assert other.exists()
    driver.remove_foreign_socket_dir("lv9", str(other / "serial.sock"))
    assert not other.exists()
