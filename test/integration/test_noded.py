"""corral-noded and corral-daemon-util as real processes under a temporary CORRAL_ROOT."""

import os
import socket
import subprocess
import sys

import pytest

from corral import certs, constants, pathutils, ssconf
from corral.rpc.client import RpcClient, static_resolver
from corral.utils import process

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def node_root(tmp_path, monkeypatch):
    """A node root with certificates, not (yet) in a cluster whose master is here."""
    monkeypatch.setenv("CORRAL_ROOT", str(tmp_path))
    monkeypatch.setenv("CORRAL_HOSTNAME", "node2.example.com")
    port = _free_port()
    monkeypatch.setenv("CORRAL_NODED_ARGS", "-b 127.0.0.1 -p %d" % port)
    monkeypatch.setenv("PATH", os.pathsep.join([os.path.dirname(sys.executable),
                                                os.path.join(CHECKOUT, "daemons"),
                                                "/usr/sbin", "/usr/bin", "/sbin", "/bin"]))
    pathutils.ensure_dirs()
    certs.generate_cluster_ca(pathutils.cluster_ca_file(), "cluster.example.com")
    certs.generate_node_cert(pathutils.cluster_ca_file(), pathutils.node_cert_file(),
                             "node2.example.com")
    ssconf.write_ssconf({"cluster_name": "cluster.example.com",
                         "master_node": "node1.example.com", "noded_port": str(port)})
    try:
        yield port
    finally:
        for name in ("rapi", "masterd", "noded"):
            pid = process.read_pid_file(pathutils.pid_file(name))
            if pid and process.is_process_alive(pid):
                process.kill_and_wait(pid, timeout=20)


def _util(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["corral-daemon-util", *args], capture_output=True, text=True,
                          timeout=120)


def _rpc(port: int) -> RpcClient:
    return RpcClient(static_resolver({"n": ("127.0.0.1", port)}), pathutils.node_cert_file(),
                     pathutils.cluster_ca_file())


def test_start_check_stop_all(node_root):
    port = node_root
    check = _util("check")
    assert check.returncode == 1 and "corral-noded" in check.stdout
    assert _util("start-all").returncode == 0
    pid = process.read_pid_file(pathutils.pid_file("noded"))
    # Ready means serving: the very first call succeeds, without retrying.
    with _rpc(port) as rpc:
        assert rpc.call_one("version", "n", {}).data == constants.PROTOCOL_VERSION
    assert _util("check").returncode == 0
    again = _util("start-all")  # idempotent: the same daemon keeps running
    assert again.returncode == 0, again.stderr
    assert process.read_pid_file(pathutils.pid_file("noded")) == pid
    stop = _util("stop-all")
    assert stop.returncode == 0, stop.stderr
    assert not process.is_process_alive(pid)
    assert not os.path.exists(pathutils.pid_file("noded"))
    assert _util("check").returncode == 1
    assert _util("stop-all").returncode == 0


def test_second_copy_and_busy_port_fail_clearly(node_root):
    assert _util("start", "noded").returncode == 0
    twice = subprocess.run(["corral-noded", "-b", "127.0.0.1", "-p", str(_free_port())],
                           capture_output=True, text=True, timeout=60)
    assert twice.returncode == 1 and "already running" in twice.stderr
    assert _util("stop", "noded").returncode == 0
    with socket.create_server(("127.0.0.1", 0)) as busy:
        busy_port = busy.getsockname()[1]
        res = subprocess.run(["corral-noded", "-b", "127.0.0.1", "-p", str(busy_port)],
                             capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "Cannot listen on 127.0.0.1 port %d" % busy_port in res.stderr
    assert not process.read_pid_file(pathutils.pid_file("noded")) or \
        not process.is_process_alive(process.read_pid_file(pathutils.pid_file("noded")))


def test_missing_certificate_reported_by_starter(node_root):
    os.unlink(pathutils.node_cert_file())
    res = _util("start", "noded")
    assert res.returncode == 1 and "server.pem does not exist" in res.stderr


def test_restart_daemon_replies_then_reexecs(node_root):
    port = node_root
    assert _util("start", "noded").returncode == 0
    pid = process.read_pid_file(pathutils.pid_file("noded"))
    with _rpc(port) as rpc:
        result = rpc.call_one("restart_daemon", "n", {"name": "noded"})
        assert not result.failed, result.fail_msg
    # The old image stopped accepting before it replied and handed its socket
    # over: a new connection now waits for, and is served by, the new image.
    with _rpc(port) as rpc:
        assert rpc.call_one("version", "n", {}).data == constants.PROTOCOL_VERSION
    log = open(pathutils.daemon_log_file("noded")).read()
    assert "Re-executing corral-noded" in log
    assert log.count("corral-noded ready (pid %d)" % pid) == 2
    assert process.read_pid_file(pathutils.pid_file("noded")) == pid
    assert _util("check").returncode == 0
    assert _util("stop-all").returncode == 0
    assert not process.is_process_alive(pid)


_DEAD_PEER_CLIENT = r"""
import os, sys, time
from corral.rpc import transport
from corral.rpc.client import RpcClient, static_resolver
transport.DEAD_PEER_TIMEOUT = 2
root, ip, port, ns = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
resolver = static_resolver({"n": (ip, port)})
with RpcClient(resolver, os.path.join(root, "var/lib/corral/server.pem"),
               os.path.join(root, "var/lib/corral/cluster-ca.pem")) as rpc:
    assert not rpc.call_one("version", "n", {}).failed  # leaves a kept-alive connection
    os.spawnvp(os.P_WAIT, "ip", ["ip", "-n", ns, "link", "set", "vp", "down"])
    start = time.monotonic()
    res = rpc.call_one("test_delay", "n", {"duration": 60.0}, timeout=120.0)
    print("%.1f %s" % (time.monotonic() - start, res.fail_msg))
"""


@pytest.mark.slow
def test_vanished_node_fails_a_call_in_seconds_not_its_timeout(tmp_path):
    """A node cut off the network while the master holds a kept-alive connection to it:
    the call fails once TCP sees no acknowledgement, long before the procedure timeout."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    tag = "dp%d" % os.getpid()
    near, far = tag + "a", tag + "b"
    root = str(tmp_path)
    env = dict(os.environ, CORRAL_ROOT=root)
    try:
        for ns in (near, far):
            process.check_cmd(["ip", "netns", "add", ns])
            process.check_cmd(["ip", "-n", ns, "link", "set", "lo", "up"])
        process.check_cmd(["ip", "-n", near, "link", "add", "vn", "type", "veth",
                           "peer", "name", "vp", "netns", far])
        for ns, dev, addr in ((near, "vn", "10.251.0.1/24"), (far, "vp", "10.251.0.2/24")):
            process.check_cmd(["ip", "-n", ns, "addr", "add", addr, "dev", dev])
            process.check_cmd(["ip", "-n", ns, "link", "set", dev, "up"])
        os.environ["CORRAL_ROOT"], old = root, os.environ.get("CORRAL_ROOT")
        try:
            pathutils.ensure_dirs()
            certs.generate_cluster_ca(pathutils.cluster_ca_file(), "cluster.example.com")
            certs.generate_node_cert(pathutils.cluster_ca_file(), pathutils.node_cert_file(),
                                     "node1.example.com")
        finally:
            os.environ.pop("CORRAL_ROOT") if old is None else os.environ.update(CORRAL_ROOT=old)
        port = 1811
        subprocess.run(["ip", "netns", "exec", far, sys.executable, "-m", "corral.server.noded",
                        "-b", "10.251.0.2", "-p", str(port)], env=env, check=True, timeout=60)
        proc = subprocess.run(["ip", "netns", "exec", near, sys.executable, "-c",
                               _DEAD_PEER_CLIENT, root, "10.251.0.2", str(port), far],
                              env=env, capture_output=True, text=True, timeout=100)
        assert proc.returncode == 0, proc.stderr
        seconds, message = proc.stdout.split(" ", 1)
        assert "No TCP acknowledgement from node n (10.251.0.2:1811) for 2 seconds" in message
        assert float(seconds) < 30
    finally:
        pid = process.read_pid_file(os.path.join(root, "var/run/corral/noded.pid"))
        if pid:
            process.kill_and_wait(pid, timeout=20)
        for ns in (near, far):
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
