"""master-ip-turnup/turndown hooks (spec/hooks.md §3) run on the node around the IP change."""

import os

import pytest

from corral import errors, pathutils
from corral.backend import cluster_membership as cm
from corral.utils.process import RunResult


@pytest.fixture
def node(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_ROOT", str(tmp_path))
    monkeypatch.setenv("CORRAL_HOSTNAME", "node1.example")
    addresses: set[str] = set()
    log: list[str] = []

    def fake_ip(*args):
        log.append(" ".join(args))
        if args[:2] == ("-o", "addr"):
            return RunResult(["ip"] + list(args), 0, None,
                             "".join("2: br0 inet %s/32 scope global br0\n" % a
                                     for a in sorted(addresses)), "")
        if args[:2] == ("addr", "add"):
            addresses.add(args[2].split("/")[0])
        elif args[:2] == ("addr", "del"):
            addresses.discard(args[2].split("/")[0])
        return RunResult(["ip"] + list(args), 0, None, "", "")

    monkeypatch.setattr(cm, "_ip", fake_ip)
    monkeypatch.setattr(cm, "_send_gratuitous_arp", lambda ip, dev: log.append("garp " + ip))
    return tmp_path, addresses, log


def _hook(hpath: str, phase: str, body: str) -> str:
    d = os.path.join(pathutils.hooks_base_dir(), "%s-%s.d" % (hpath, phase))
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "10-record")
    with open(path, "w") as fh:
        fh.write("#!/bin/sh\n" + body + "\n")
    os.chmod(path, 0o755)
    return path


def test_turnup_and_turndown_hooks_see_the_master_ip(node):
    root, addresses, log = node
    out = root / "env.txt"
    for hpath in ("master-ip-turnup", "master-ip-turndown"):
        for phase in ("pre", "post"):
            _hook(hpath, phase, "env | grep ^GANETI_ | sort >> %s; echo ---- >> %s" % (out, out))
    assert cm.master_ip_up("10.0.0.250", 32, "br0") is True
    assert addresses == {"10.0.0.250"} and "garp 10.0.0.250" in log
    text = out.read_text()
    assert text.count("GANETI_HOOKS_PATH=master-ip-turnup") == 2
    for line in ("GANETI_OP_CODE=OP_CLUSTER_IP_TURNUP", "GANETI_MASTER_IP=10.0.0.250",
                 "GANETI_MASTER_NETDEV=br0", "GANETI_MASTER_NETMASK=32",
                 "GANETI_CLUSTER_IP_VERSION=4", "GANETI_HOOKS_PHASE=post"):
        assert line in text
    assert "GANETI_OBJECT_TYPE" not in text
    assert cm.master_ip_down("10.0.0.250", 32, "br0") is True
    assert addresses == set()
    assert "GANETI_OP_CODE=OP_CLUSTER_IP_TURNDOWN" in out.read_text()


def test_failing_pre_hook_keeps_the_ip_down(node):
    _root, addresses, _log = node
    _hook("master-ip-turnup", "pre", "echo no way; exit 1")
    with pytest.raises(errors.HooksAbort):
        cm.master_ip_up("10.0.0.250", 32, "br0")
    assert addresses == set()
