"""xl command lines, parsing of recorded xl outputs, and the Xen driver run
against a fake xl (no dom0 here: PLATFORM.md §5)."""

import os
import re
import shutil
import socket
import sys

import pytest

from corral import errors
from corral.hypervisor import get_hypervisor, hvparams
from corral.hypervisor.base import DiskSpec, InstanceSpec, NicSpec
from corral.hypervisor.xen import driver, migration, xl
from corral.utils.process import RunResult

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "xen")
NAME = "inst1.example.com"


def data(name: str) -> str:
    with open(os.path.join(DATA, name)) as fh:
        return fh.read()


# --- argv --------------------------------------------------------------------
def test_argv_per_operation() -> None:
    assert xl.create_argv("/r/x.cfg") == ["xl", "create", "/r/x.cfg"]
    assert xl.create_argv("/r/x.cfg", paused=True) == ["xl", "create", "-p", "/r/x.cfg"]
    assert xl.shutdown_argv(NAME) == ["xl", "shutdown", "-w", NAME]
    assert xl.destroy_argv(NAME) == ["xl", "destroy", NAME]
    assert xl.reboot_argv(NAME) == ["xl", "reboot", NAME]
    assert xl.list_argv() == ["xl", "list"]
    assert xl.list_argv(NAME) == ["xl", "list", NAME]
    assert xl.info_argv() == ["xl", "info"]
    assert xl.mem_set_argv(NAME, 256) == ["xl", "mem-set", NAME, "256m"]
    assert xl.pause_argv(NAME, True) == ["xl", "pause", NAME]
    assert xl.pause_argv(NAME, False) == ["xl", "unpause", NAME]
    assert xl.console_argv(NAME) == ["xl", "console", NAME]


def test_migration_argv() -> None:
    assert xl.migrate_argv(NAME, "10.0.0.2", 8002, "/r/i.cfg") == [
        "xl", "migrate", "-s", "socat - TCP:10.0.0.2:8002 #", "-C", "/r/i.cfg", NAME,
        "10.0.0.2"]
    assert xl.migrate_argv(NAME, "fd00::2", 8002, "/c")[3] == "socat - TCP:[fd00::2]:8002 #"
    assert xl.receive_argv("10.0.0.2", 8002) == [
        "socat", "-d", "-d", "TCP4-LISTEN:8002,bind=10.0.0.2,reuseaddr",
        "EXEC:xl migrate-receive"]
    assert xl.receive_argv("fd00::2", 8002)[3] == "TCP6-LISTEN:8002,bind=[fd00::2],reuseaddr"


# --- parsers -------------------------------------------------------------------
def test_parse_list() -> None:
    doms = xl.parse_list(data("xl_list.txt"))
    assert [d.name for d in doms] == ["Domain-0", NAME, "inst2.example.com",
                                      "inst3.example.com"]
    assert (doms[0].domid, doms[0].memory, doms[0].vcpus) == (0, 512, 2)
    assert [d.state for d in doms] == ["running", "running", "paused", "shutdown"]
    assert doms[1].time == 5.2
    assert xl.state_from_flags("----c-") == "crashed"
    assert xl.state_from_flags("-----d") == "dying"
    with pytest.raises(errors.HypervisorError, match="Cannot parse"):
        xl.parse_list("Name ID Mem\nfoo 1 x 1 r----- 0.1\n")


def test_parse_info_and_node_info() -> None:
    info = xl.parse_info(data("xl_info.txt"))
    assert info["virt_caps"] == "pv hvm" and info["xen_changeset"] == ""
    node = xl.node_info(info, xl.parse_list(data("xl_list.txt")))
    assert node == {"memory_total": 1023, "memory_free": 466, "memory_dom0": 512,
                    "cpu_total": 4, "cpu_nodes": 1, "cpu_sockets": 2,
                    "hv_version": [4, 17], "hv_version_text": "4.17.7-pre"}
    with pytest.raises(errors.HypervisorError, match="total_memory"):
        xl.parse_info(data("xl_no_dom0.txt"))


def test_parse_recorded_real_xen() -> None:
    """Outputs recorded on Xen 4.17.7 nested under QEMU (tools/xen-nested): the xl list
    header separates its last columns with tabs; a PV guest idling in its
    initrd is ``-b----`` (blocked = running for Corral)."""
    doms = xl.parse_list(data("xl_list_nested.txt"))
    assert [(d.name, d.domid, d.memory, d.vcpus, d.flags, d.state) for d in doms] == [
        ("Domain-0", 0, 1280, 2, "r-----", "running"),
        ("pv1.xen.test", 1, 128, 1, "-b----", "running")]
    info = xl.parse_info(data("xl_info_nested.txt"))
    assert info["virt_caps"] == "pv hvm gnttab-v1 gnttab-v2"
    assert info["xen_commandline"].startswith("console=com1 com1=115200,8n1 dom0_mem=")
    assert xl.node_info(info, doms) == {
        "memory_total": 2047, "memory_free": 616, "memory_dom0": 1280, "cpu_total": 2,
        "cpu_nodes": 1, "cpu_sockets": 1, "hv_version": [4, 17],
        "hv_version_text": "4.17.7"}
    assert xl.no_dom0_reason(data("xl_info_nested.txt")) is None


def test_parse_migrate() -> None:
    ok = xl.parse_migrate(data("xl_migrate_ok.txt"), 0)
    assert ok["status"] == "completed"
    fail = xl.parse_migrate(data("xl_migrate_fail.txt"), 1)
    assert fail["status"] == "failed"
    assert "Domain creation failed (code -3)" in fail["info"]
    assert fail["info"].endswith("Migration failed, resuming at sender.")
    refused = xl.parse_migrate(data("xl_migrate_refused.txt"), 1)
    assert refused["status"] == "failed" and "banner" in refused["info"]
    running = xl.parse_migrate("migration target: Ready to receive domain.\n", None)
    assert running == {"status": "active", "info": "migration target: Ready to receive domain."}
    # exit 0 without the success line is not trusted
    assert xl.parse_migrate("", 0)["status"] == "failed"


def test_no_dom0_reason() -> None:
    msg = xl.no_dom0_reason(data("xl_no_dom0.txt"))
    assert "not running as a Xen dom0" in msg and "privileged command interface" in msg
    assert xl.no_dom0_reason("ERROR: Can't find hypervisor information in sysfs!\n")
    assert xl.no_dom0_reason(data("xl_info.txt")) is None


# --- dom0 detection ----------------------------------------------------------
def test_dom0_detection(tmp_path, monkeypatch) -> None:
    caps = tmp_path / "capabilities"
    monkeypatch.setattr(driver, "XEN_CAPS_FILE", str(caps))
    monkeypatch.setattr(driver, "SYS_HYPERVISOR_TYPE", str(tmp_path / "type"))
    monkeypatch.setattr(driver.shutil, "which", lambda _: None)
    assert "xl not found" in driver.dom0_problem()
    monkeypatch.setattr(driver.shutil, "which", lambda _: "/usr/sbin/xl")
    assert "not running as a Xen dom0" in driver.dom0_problem()
    caps.write_text("")          # domU: xenfs mounted but no control_d
    assert "not running as a Xen dom0" in driver.dom0_problem()
    caps.write_text("control_d\n")
    assert driver.dom0_problem() is None


def test_this_machine_without_dom0(tmp_path, monkeypatch) -> None:
    """No /proc/xen here: verify and node info say so, start fails before any change."""
    if driver.dom0_problem() is None:
        pytest.skip("this machine is a Xen dom0")
    monkeypatch.setenv("CORRAL_ROOT", str(tmp_path))
    calls = []
    monkeypatch.setattr(driver, "run_xl", lambda *a, **k: calls.append(a) or None)
    hv = get_hypervisor("xen-pvm")
    problem = hv.verify()
    assert problem and ("dom0" in problem or "xl not found" in problem)
    info = hv.get_node_info()
    assert info["memory_total"] == 0 and info["hv_error"] == problem
    assert hv.list_instances() == [] and hv.get_instance_info(NAME) is None
    inst = spec("xen-pvm", {"kernel_path": "/bin/true"})
    # the node check of instance creation/migration says why, before anything is made
    with pytest.raises(errors.HypervisorError, match=re.escape(problem)):
        hv.validate_parameters(inst.hvparams)
    with pytest.raises(errors.HypervisorError, match="kernel_path"):   # params first
        hv.validate_parameters(dict(inst.hvparams, kernel_path="/nonexistent/vmlinuz"))
    with pytest.raises(errors.HypervisorError, match=re.escape(problem)):
        hv.start_instance(inst, [DiskSpec(str(tmp_path / "disk"))])
    assert calls == [] and not os.path.exists(driver.hv_dir())
    hv.stop_instance(NAME)          # idempotent, nothing to do


# --- the driver against a fake xl ---------------------------------------------
class FakeXl:
    """Just enough of xl: domains in a dict, every argv recorded."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.domains = {"Domain-0": [0, 512, 2, "r-----"]}
        self.next_id = 3
        self.ignore_shutdown = False

    def _list(self, names: list[str]) -> str:
        rows = ["Name                                        ID   Mem VCPUs\tState\tTime(s)"]
        for name in names:
            domid, mem, vcpus, flags = self.domains[name]
            rows.append("%-40s %5d %5d %5d     %s %9.1f" % (name, domid, mem, vcpus, flags,
                                                          1.5))
        return "\n".join(rows) + "\n"

    def __call__(self, argv: list[str], timeout: float = 0) -> RunResult:
        self.calls.append(argv)
        cmd, args = argv[1], argv[2:]
        out, rc = "", 0
        if cmd == "create":
            text = open(args[-1]).read()
            name = re.search(r"^name = '(.*)'$", text, re.M).group(1)
            mem = int(re.search(r"^memory = (\d+)$", text, re.M).group(1))
            vcpus = int(re.search(r"^vcpus = (\d+)$", text, re.M).group(1))
            self.domains[name] = [self.next_id, mem, vcpus, "--p---" if "-p" in args
                                  else "r-----"]
            self.next_id += 1
        elif cmd == "list":
            if args and args[0] not in self.domains:
                return RunResult(argv, 1, None, "", data("xl_list_missing.txt"))
            out = self._list(args or list(self.domains))
        elif cmd == "info":
            out = data("xl_info.txt")
        elif cmd == "shutdown":
            if self.ignore_shutdown:
                return RunResult(argv, None, 9, "", "", timed_out=True)
            self.domains.pop(args[-1])
        elif cmd == "destroy":
            self.domains.pop(args[-1])
        elif cmd == "mem-set":
            self.domains[args[0]][1] = int(args[1].rstrip("m"))
        elif cmd in ("pause", "unpause"):
            self.domains[args[0]][3] = "--p---" if cmd == "pause" else "r-----"
        elif cmd != "reboot":
            raise AssertionError("unexpected xl call %s" % argv)
        return RunResult(argv, rc, None, out, "")


def spec(hv: str, params: dict, nics: list | None = None) -> InstanceSpec:
    return InstanceSpec(NAME, "5f8a3b52-0d1e-4c55-9a33-1f2e3d4c5b6a",
                        hvparams.fill_hvparams(hv, {}, None, params),
                        hvparams.fill_beparams({}, {"maxmem": 256, "vcpus": 2}),
                        nics=nics or [], hypervisor=hv)


@pytest.fixture
def fake_xl(tmp_path, monkeypatch) -> FakeXl:
    monkeypatch.setenv("CORRAL_ROOT", str(tmp_path))
    fake = FakeXl()
    monkeypatch.setattr(driver, "run_xl", fake)
    monkeypatch.setattr(driver, "dom0_problem", lambda: None)
    return fake


def test_lifecycle(fake_xl, tmp_path) -> None:
    hv = get_hypervisor("xen-pvm")
    disk = tmp_path / "disk0"
    disk.write_bytes(b"")
    inst = spec("xen-pvm", {"kernel_path": "/bin/true"},
                [NicSpec("aa:00:00:00:00:01", link="xenbr0")])
    hv.start_instance(inst, [DiskSpec(str(disk), dev_type="file")])
    cfg = driver.cfg_path(NAME)
    assert fake_xl.calls[-1] == ["xl", "create", cfg]
    assert "kernel = '/bin/true'" in open(cfg).read()
    assert hv.list_instances() == [NAME]
    assert hv.get_instance_info(NAME) == {"name": NAME, "state": "running", "memory": 256,
                                          "vcpus": 2, "time": 1.5, "domid": 3}
    with pytest.raises(errors.HypervisorError, match="already running"):
        hv.start_instance(inst, [DiskSpec(str(disk))])
    assert hv.get_node_info()["memory_dom0"] == 512 and hv.verify() is None
    hv.balloon_instance_memory(inst, 200)
    assert fake_xl.calls[-1] == ["xl", "mem-set", NAME, "200m"]
    assert hv.get_instance_info(NAME)["memory"] == 200
    hv.reboot_instance(inst, [DiskSpec(str(disk))], "soft")
    assert fake_xl.calls[-1] == ["xl", "reboot", NAME]
    hv.reboot_instance(inst, [DiskSpec(str(disk))], "hard")
    assert fake_xl.calls[-2:] == [["xl", "destroy", NAME], ["xl", "create", cfg]]
    console = hv.get_console(inst, "node1", 2222)
    assert console == {"instance": NAME, "kind": "ssh", "host": "node1", "port": 2222,
                       "user": "root", "command": ["xl", "console", NAME]}
    fake_xl.calls.clear()
    hv.stop_instance(NAME, timeout=7)
    assert ["xl", "shutdown", "-w", NAME] in fake_xl.calls
    assert ["xl", "destroy", NAME] not in fake_xl.calls
    assert not os.path.exists(cfg) and hv.list_instances() == []
    hv.stop_instance(NAME)          # idempotent
    hv.cleanup_instance(NAME)


def test_stop_destroys_after_timeout(fake_xl, tmp_path) -> None:
    hv = get_hypervisor("xen-hvm")
    hv.start_instance(spec("xen-hvm", {}), [], startup_paused=True)
    assert fake_xl.calls[-1][:3] == ["xl", "create", "-p"]
    assert hv.get_instance_info(NAME)["state"] == "paused"
    fake_xl.ignore_shutdown = True
    hv.stop_instance(NAME, timeout=1)
    assert fake_xl.calls[-1] == ["xl", "destroy", NAME]
    assert hv.list_instances() == []


def test_hvm_absent_default_paths_skipped(fake_xl) -> None:
    """hvmloader/qemu-dm HEAD defaults are xm-era paths: left out when absent."""
    hv = get_hypervisor("xen-hvm")
    inst = spec("xen-hvm", {"kernel_path": "/usr/lib/xen/boot/hvmloader"})
    hv.start_instance(inst, [])
    text = open(driver.cfg_path(NAME)).read()
    if not os.path.exists("/usr/lib/xen/boot/hvmloader"):
        assert "firmware" not in text
    if not os.path.exists("/usr/lib/xen/bin/qemu-dm"):
        assert "device_model" not in text
    hv.stop_instance(NAME, force=True)


def test_bad_input_changes_nothing(fake_xl, tmp_path) -> None:
    hv = get_hypervisor("xen-pvm")
    with pytest.raises(errors.HypervisorError, match="needs a kernel"):
        hv.start_instance(spec("xen-pvm", {"kernel_path": ""}), [])
    with pytest.raises(errors.HypervisorError, match="Unknown xen-pvm parameter 'kvm_flag'"):
        hv.check_parameters({"kvm_flag": "enabled"})
    with pytest.raises(errors.HypervisorError, match="does not exist"):
        hv.start_instance(spec("xen-pvm", {}), [DiskSpec(str(tmp_path / "missing"))])
    with pytest.raises(errors.HypervisorError, match="kernel_path"):
        hv.validate_parameters(hvparams.fill_hvparams("xen-pvm", {}, None,
                                                      {"kernel_path": "/nonexistent/vmlinuz"}))
    assert [c[1] for c in fake_xl.calls] == ["list"]
    assert not os.path.exists(driver.cfg_path(NAME))


def test_create_failure_removes_config(fake_xl, monkeypatch) -> None:
    def failing(argv, timeout=0):
        if argv[1] == "create":
            return RunResult(argv, 1, None, "", data("xl_no_dom0.txt"))
        return fake_xl(argv, timeout)

    monkeypatch.setattr(driver, "run_xl", failing)
    with pytest.raises(errors.HypervisorError, match="not running as a Xen dom0"):
        get_hypervisor("xen-pvm").start_instance(spec("xen-pvm", {}), [])
    assert not os.path.exists(driver.cfg_path(NAME))


# --- migration ------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not shutil.which("socat"), reason="socat not installed")
def test_accept_starts_listener_and_abort_cleans_up(fake_xl) -> None:
    hv = get_hypervisor("xen-pvm")
    port = free_port()
    inst = spec("xen-pvm", {})
    inst.hvparams["migration_port"] = port
    hv.accept_instance(inst, "name = 'x'\n", "127.0.0.1")
    proc = migration._receivers[NAME]
    try:
        assert proc.poll() is None
        assert open(driver.cfg_path(NAME)).read() == "name = 'x'\n"
        with pytest.raises(errors.HypervisorError, match="listener exited|listening"):
            other = spec("xen-pvm", {})
            other.hvparams["migration_port"] = port      # port taken: socat fails at once
            migration._receivers.pop(NAME)
            try:
                hv.accept_instance(other, "x", "127.0.0.1")
            finally:
                migration._receivers[NAME] = proc
    finally:
        hv.finalize_migration_dst(inst, "", success=False)
    assert proc.poll() is not None and NAME not in migration._receivers
    assert not os.path.exists(driver.cfg_path(NAME))


def test_migrate_runs_xl_in_background(fake_xl, monkeypatch, tmp_path) -> None:
    hv = get_hypervisor("xen-pvm")
    inst = spec("xen-pvm", {})
    hv.start_instance(inst, [])
    argvs = []
    real_argv = xl.migrate_argv

    def fake_migrate(name, ip, port, cfg):
        argvs.append(real_argv(name, ip, port, cfg))
        return [sys.executable, "-c", "import sys; sys.stdout.write(open(%r).read())" %
                os.path.join(DATA, "xl_migrate_ok.txt")]

    monkeypatch.setattr(xl, "migrate_argv", fake_migrate)
    assert hv.migration_info(inst) == open(driver.cfg_path(NAME)).read()
    hv.migrate_instance(inst, "10.0.0.2", live=False)
    assert fake_xl.calls[-1] == ["xl", "pause", NAME]
    assert argvs == [["xl", "migrate", "-s", "socat - TCP:10.0.0.2:8002 #", "-C",
                      driver.cfg_path(NAME), NAME, "10.0.0.2"]]
    migration._senders[NAME].wait(timeout=30)
    status = hv.get_migration_status(inst)
    assert status["status"] == "completed" and status["total"] == 256 << 20
    fake_xl.domains.pop(NAME)          # xl removed it from the source
    hv.finalize_migration_src(inst, success=True, live=False)
    assert not os.path.exists(driver.cfg_path(NAME))


def test_failed_migration_resumes_source(fake_xl, monkeypatch) -> None:
    hv = get_hypervisor("xen-pvm")
    inst = spec("xen-pvm", {})
    hv.start_instance(inst, [])
    monkeypatch.setattr(xl, "migrate_argv", lambda *a: [
        sys.executable, "-c", "import sys; sys.stdout.write(open(%r).read()); sys.exit(1)" %
        os.path.join(DATA, "xl_migrate_fail.txt")])
    hv.migrate_instance(inst, "10.0.0.2", live=False)
    migration._senders[NAME].wait(timeout=30)
    status = hv.get_migration_status(inst)
    assert status["status"] == "failed" and "Domain creation failed" in status["info"]
    hv.finalize_migration_src(inst, success=False, live=False)
    assert fake_xl.calls[-1] == ["xl", "unpause", NAME]
    assert hv.get_instance_info(NAME)["state"] == "running"
    hv.stop_instance(NAME, force=True)
