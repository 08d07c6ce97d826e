"""Graceful KVM shutdown presses the ACPI button again until the guest listens."""

from corral.hypervisor import kvm
from corral.hypervisor.kvm import runtime


class FakeMonitor:
    presses = 0

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, command):
        assert command == "system_powerdown"
        FakeMonitor.presses += 1


def test_button_pressed_again_while_guest_boots(monkeypatch):
    FakeMonitor.presses = 0
    monkeypatch.setattr(kvm.qmp, "QmpClient", FakeMonitor)
    monkeypatch.setattr(kvm, "POWERDOWN_REPEAT", 0.01)
    # The guest ignores the first two presses (still booting), obeys the third.
    monkeypatch.setattr(runtime, "wait_pid_exit", lambda pid, t: FakeMonitor.presses >= 3)
    kvm.KvmHypervisor._powerdown(runtime.paths_for("g1"), 4242, 30)
    assert FakeMonitor.presses == 3


def test_gives_up_at_the_timeout(monkeypatch):
    FakeMonitor.presses = 0
    monkeypatch.setattr(kvm.qmp, "QmpClient", FakeMonitor)
    monkeypatch.setattr(kvm, "POWERDOWN_REPEAT", 0.01)
    monkeypatch.setattr(runtime, "wait_pid_exit", lambda pid, t: False)
    kvm.KvmHypervisor._powerdown(runtime.paths_for("g1"), 4242, 0.05)
    assert FakeMonitor.presses >= 1
