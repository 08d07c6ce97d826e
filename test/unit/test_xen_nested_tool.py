"""tools/xen-nested without booting anything: QEMU's command line, the console
watcher (against a stand-in process) and the cache stamps."""

import os
import time

import pytest

from corral.tools import xen_nested

ART = xen_nested.Artifacts(cache="/c", xen="/c/xen.elf", kernel="/c/vmlinuz",
                           dom0_initrd="/c/dom0-initrd.gz", guest_initrd="/c/guest-initrd.gz",
                           tree="/c/userland")


def test_qemu_argv(tmp_path) -> None:
    argv = xen_nested.NestedXen(ART, str(tmp_path), cpus=1).argv()
    assert argv[argv.index("-kernel") + 1] == "/c/xen.elf"
    assert argv[argv.index("-cpu") + 1] == "qemu64"
    xen_args = argv[argv.index("-append") + 1].split()
    assert "dom0_mem=1280M,max:1280M" in xen_args and "dom0_max_vcpus=1" in xen_args
    # one multiboot module string: dom0 kernel + its command line, then the initrd
    assert argv[argv.index("-initrd") + 1] == \
        "/c/vmlinuz console=hvc0 quiet xn_tree=/c/userland,/c/dom0-initrd.gz"
    assert "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap" in argv
    assert "local,id=work,path=%s,security_model=none" % tmp_path in argv
    with pytest.raises(xen_nested.XenNestedError, match="comma"):
        xen_nested.NestedXen(ART, "/tmp/a,b").argv()


class FakeQemu(xen_nested.NestedXen):
    script = ""

    def argv(self) -> list[str]:
        return ["sh", "-c", self.script]


def test_console_watch_and_stop(tmp_path) -> None:
    vm = FakeQemu(ART, str(tmp_path))
    vm.script = "echo booting; echo 'XEN-NESTED-DONE rc=3'; exec sleep 600"
    with vm:
        assert vm.wait_for(xen_nested.DONE_RE.pattern, 30).group(1) == "3"
        pid = vm.proc.pid
    assert vm.proc.returncode is not None           # killed on leaving the block
    assert not os.path.exists("/proc/%d/cmdline" % pid) or vm.proc.returncode < 0
    with open(vm.console_log) as fh:
        assert "booting" in fh.read()


def test_wait_for_reports_exit_and_timeout(tmp_path) -> None:
    vm = FakeQemu(ART, str(tmp_path))
    vm.script = "echo 'Panic on CPU 0'"
    with vm, pytest.raises(xen_nested.XenNestedError, match="(?s)QEMU exited.*Panic on CPU 0"):
        vm.wait_for("DOM0-UP", 30)
    vm = FakeQemu(ART, str(tmp_path))
    vm.script = "exec sleep 600"
    start = time.monotonic()
    with vm, pytest.raises(xen_nested.XenNestedError, match="timeout"):
        vm.wait_for("DOM0-UP", 0.5)
    assert time.monotonic() - start < 20


def test_prepare_is_idempotent_and_follows_script_changes(tmp_path, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(xen_nested, "_guest_image", lambda: None)
    monkeypatch.setattr(xen_nested, "_fetch", lambda art, gi: calls.append("fetch"))
    monkeypatch.setattr(xen_nested, "_build_dom0_initrd",
                        lambda gi, moddir: calls.append("dom0") or b"d")
    monkeypatch.setattr(xen_nested, "_build_guest_initrd",
                        lambda gi: calls.append("guest") or b"g")
    art = xen_nested.prepare(str(tmp_path))
    assert calls == ["fetch", "dom0", "guest"]
    assert xen_nested.prepare(str(tmp_path)) == art and len(calls) == 3
    monkeypatch.setattr(xen_nested, "STAGE2", xen_nested.STAGE2 + "# changed\n")
    xen_nested.prepare(str(tmp_path))
    assert calls[3:] == ["dom0", "guest"]            # initrds rebuilt, no new download
    monkeypatch.setattr(xen_nested, "DOM0_MODULES", xen_nested.DOM0_MODULES + ("loop",))
    xen_nested.prepare(str(tmp_path))
    assert calls[5:] == ["fetch", "dom0", "guest"]
