"""The ``mirror`` storage driver with its real processes, between two network namespaces.

Two "nodes" (netns A = primary at .1, netns B = secondary at .2, joined by a
veth pair), each with its own CORRAL_ROOT and node certificate from one
throwaway cluster CA.  Every driver call runs inside its node's namespace
through a small helper (as the node daemon would), so bind=, range= and the
per-netns tcp_retries2 are exercised for real.  Data goes in through the
primary's client socket with qemu-io and is checked in the secondary's image.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid

import pytest

from corral import certs
from corral.storage import mirror as mirror_mod

pytestmark = pytest.mark.skipif(
    mirror_mod.MirrorDev.check_environment() is not None or os.geteuid() != 0,
    reason="needs root, socat, qemu-storage-daemon, qemu-img")

SIZE_MIB = 16
PORT = 7789

HELPER = r'''
import json, sys
from corral import storage
op, disk = sys.argv[1], json.loads(sys.argv[2])
dev = storage.build_device(disk)
if op == "assemble":
    dev.assemble()
    out = dev.dev_path
elif op == "attach":
    out = dev.attach()
elif op == "status":
    out = dev.combined_sync_status().to_dict()
elif op == "consistent":
    out = dev.set_consistent(True)
elif op == "sync":
    seen = []
    dev.sync_offline(seen.append)
    out = seen
elif op == "socket":
    out = dev.client_socket()
elif op == "shutdown":
    out = dev.shutdown()
elif op == "grow":
    dev.attach()
    for child in dev.children:
        child.attach()
    dev.grow(4, False, True)
    dev.grow(4, False, False)
    out = None
elif op == "remove":
    dev.shutdown(); dev.remove()
    for child in dev.children:
        child.remove()
    out = None
print(json.dumps(out))
'''


def _run(argv: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, **kw)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (%d): %s %s" % (" ".join(argv), proc.returncode,
                                                         proc.stdout, proc.stderr))
    return proc


class Node:
    def __init__(self, base: str, name: str, ns: str, ip: str) -> None:
        self.name, self.ns, self.ip = name, ns, ip
        self.root = os.path.join(base, name[-1])
        self.uuid = "uuid-" + name
        self.storage = os.path.join(self.root, "srv", "file-storage")
        self.image = os.path.join(self.storage, "inst1", "disk0")

    def env(self) -> dict[str, str]:
        return dict(os.environ, CORRAL_ROOT=self.root)

    def sh(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return _run(["ip", "netns", "exec", self.ns] + list(argv), check=check, env=self.env())

    def sysctl_retries(self) -> int:
        return int(self.sh("cat", "/proc/sys/net/ipv4/tcp_retries2").stdout)


class Pair:
    """Two nodes and one mirror disk between them (A primary, B secondary)."""

    def __init__(self, base: str, tag: str) -> None:
        self.base = base
        self.a = Node(base, "node-a", "mira-" + tag, "10.231.0.1")
        self.b = Node(base, "node-b", "mirb-" + tag, "10.231.0.2")
        self.disk_uuid = str(uuid.uuid4())
        self.helper = os.path.join(base, "helper.py")
        with open(self.helper, "w") as fh:
            fh.write(HELPER)

    def disk(self, node: Node, port: int = PORT, **overrides: str) -> dict:
        peer = self.b if node is self.a else self.a
        params = {"local_node": node.uuid, "role": "primary" if node is self.a else "secondary",
                  "local_ip": node.ip, "remote_ip": peer.ip, "local_name": node.name,
                  "remote_name": peer.name, "disk_uuid": self.disk_uuid}
        params.update(overrides)
        child = {"dev_type": "file", "logical_id": ["loop", node.image], "size": SIZE_MIB,
                 "params": {"allowed_dirs": [node.storage]}}
        return {"dev_type": "mirror", "logical_id": [self.a.uuid, self.b.uuid, port],
                "size": SIZE_MIB, "params": params, "children": [child]}

    def call(self, node: Node, op: str, check: bool = True, **kw) -> object:
        proc = node.sh(sys.executable, self.helper, op, json.dumps(self.disk(node, **kw)),
                       check=check)
        if not check and proc.returncode != 0:
            return proc
        return json.loads(proc.stdout)

    def run_dir(self, node: Node) -> str:
        return os.path.join(node.root, "var", "run", "corral", "mirror", self.disk_uuid)

    def pid(self, node: Node, name: str) -> int:
        try:
            with open(os.path.join(self.run_dir(node), name + ".pid")) as fh:
                return int(fh.read())
        except (OSError, ValueError):
            return 0


def _our_pids(base: str) -> list[int]:
    """Processes whose command line mentions the test's directory."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as fh:
                if base.encode() in fh.read():
                    with open("/proc/%s/stat" % pid) as st:
                        if st.read().rsplit(")", 1)[1].split()[0] != "Z":
                            out.append(int(pid))
        except OSError:
            continue
    return out


def _setup_net(pair: Pair) -> None:
    a, b = pair.a, pair.b
    veth_a, veth_b = "mva" + pair.a.ns[5:], "mvb" + pair.a.ns[5:]
    for node in (a, b):
        _run(["ip", "netns", "add", node.ns])
        node.sh("ip", "link", "set", "lo", "up")
    _run(["ip", "link", "add", veth_a, "netns", a.ns, "type", "veth", "peer", "name", veth_b,
          "netns", b.ns])
    a.sh("ip", "addr", "add", a.ip + "/24", "dev", veth_a)
    a.sh("ip", "addr", "add", "10.231.0.3/24", "dev", veth_a)  # a stranger's address
    b.sh("ip", "addr", "add", b.ip + "/24", "dev", veth_b)
    a.sh("ip", "link", "set", veth_a, "up")
    b.sh("ip", "link", "set", veth_b, "up")


def _setup_nodes(pair: Pair) -> None:
    ca = os.path.join(pair.base, "ca.pem")
    certs.generate_cluster_ca(ca, "mirror-test")
    for node in (pair.a, pair.b):
        data = os.path.join(node.root, "var", "lib", "corral")
        os.makedirs(data)
        shutil.copy(ca, os.path.join(data, "cluster-ca.pem"))
        certs.generate_node_cert(ca, os.path.join(data, "server.pem"), node.name)
        os.makedirs(os.path.dirname(node.image))
        with open(node.image, "wb") as fh:
            fh.truncate(SIZE_MIB * 1024 * 1024)
    other_ca = os.path.join(pair.base, "other-ca.pem")
    certs.generate_cluster_ca(other_ca, "another-cluster")
    certs.generate_node_cert(other_ca, os.path.join(pair.base, "foreign.pem"), "node-a")


@pytest.fixture
def pair():
    # Short base: unix socket paths must stay below 108 bytes.
    base = tempfile.mkdtemp(prefix="mir", dir="/tmp")
    tag = "%x" % (os.getpid() & 0xffff) + uuid.uuid4().hex[:4]
    p = Pair(base, tag)
    try:
        _setup_net(p)
        _setup_nodes(p)
        yield p
    finally:
        for pid in _our_pids(base):
            try:
                os.killpg(pid, signal.SIGKILL) if os.getpgid(pid) == pid else \
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for node in (p.a, p.b):
            subprocess.run(["ip", "netns", "del", node.ns], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def _md5(path: str, length: int) -> str:
    with open(path, "rb") as fh:
        return hashlib.md5(fh.read(length)).hexdigest()


def _qemu_io(pair: Pair, *cmds: str, check: bool = True) -> subprocess.CompletedProcess:
    sock = pair.call(pair.a, "socket")
    argv = ["qemu-io", "-f", "raw"]
    for c in cmds:
        argv += ["-c", c]
    return pair.a.sh(*argv, mirror_mod.nbd_uri(sock), check=check)


def _assemble_both(pair: Pair) -> None:
    assert pair.call(pair.b, "assemble") == pair.b.image
    assert pair.call(pair.a, "assemble") == pair.a.image


def test_writes_reach_the_secondary_image(pair):
    _assemble_both(pair)
    assert pair.call(pair.a, "attach") is True and pair.call(pair.b, "attach") is True
    assert pair.a.sysctl_retries() == 4 and pair.b.sysctl_retries() == 4
    st = pair.call(pair.b, "status")
    assert st["is_degraded"] and st["ldisk_status"] == "syncing"
    res = _qemu_io(pair, "write -P 0x5a 1M 2M", "flush")
    assert "wrote 2097152/2097152" in res.stdout, res.stdout + res.stderr
    with open(pair.b.image, "rb") as fh:
        fh.seek(1024 * 1024)
        assert fh.read(2 * 1024 * 1024) == b"\x5a" * (2 * 1024 * 1024)
    pair.call(pair.b, "consistent")
    assert pair.call(pair.b, "status") == {"sync_percent": None, "estimated_time": None,
                                           "is_degraded": False, "ldisk_status": "okay"}
    assert pair.call(pair.a, "status")["is_degraded"] is False
    # Idempotent: assembling again starts nothing new and keeps the marker.
    before = [pair.pid(pair.b, "qsd"), pair.pid(pair.b, "listen"), pair.pid(pair.a, "client")]
    _assemble_both(pair)
    assert [pair.pid(pair.b, "qsd"), pair.pid(pair.b, "listen"),
            pair.pid(pair.a, "client")] == before
    assert pair.call(pair.b, "status")["is_degraded"] is False


def test_restart_after_the_secondary_dies_and_sync_offline(pair):
    _assemble_both(pair)
    pair.call(pair.b, "consistent")
    os.kill(pair.pid(pair.b, "qsd"), signal.SIGKILL)
    os.killpg(pair.pid(pair.b, "listen"), signal.SIGKILL)
    assert pair.call(pair.b, "attach") is False
    res = _qemu_io(pair, "write -P 0x11 0 64k", check=False)
    assert res.returncode != 0 or "wrote" not in res.stdout
    assert pair.call(pair.b, "assemble") == pair.b.image
    assert pair.call(pair.b, "status")["is_degraded"] is True  # restarted: resync needed
    # The primary wrote alone meanwhile; an offline sync makes the copies equal.
    with open(pair.a.image, "r+b") as fh:
        fh.seek(3 * 1024 * 1024)
        fh.write(os.urandom(5 * 1024 * 1024))
        fh.seek(15 * 1024 * 1024)
        fh.write(b"end-of-disk")
    with open(pair.b.image, "r+b") as fh:
        fh.seek(9 * 1024 * 1024)
        fh.write(b"\xff" * 65536)  # stale data where the primary has a hole
    seen = pair.call(pair.a, "sync")
    assert seen and seen[-1] == 100.0
    total = SIZE_MIB * 1024 * 1024
    assert _md5(pair.a.image, total) == _md5(pair.b.image, total)


def test_strangers_are_refused(pair):
    _assemble_both(pair)
    orig = _md5(pair.b.image, SIZE_MIB * 1024 * 1024)
    ca = os.path.join(pair.a.root, "var", "lib", "corral", "cluster-ca.pem")
    good_cert = os.path.join(pair.a.root, "var", "lib", "corral", "server.pem")
    tries = {  # (client certificate, source address)
        "foreign-cert": (os.path.join(pair.base, "foreign.pem"), pair.a.ip),
        "wrong-address": (good_cert, "10.231.0.3"),
    }
    for label, (cert, src) in tries.items():
        sock = os.path.join(pair.base, label + ".sock")
        tunnel = subprocess.Popen(
            ["ip", "netns", "exec", pair.a.ns, "socat", "-d", "-d",
             "UNIX-LISTEN:%s,fork" % sock,
             "OPENSSL:%s:%d,bind=%s,cert=%s,cafile=%s,verify=1,commonname=node-b"
             % (pair.b.ip, PORT, src, cert, ca)],
            stderr=subprocess.PIPE, text=True)
        try:
            for line in tunnel.stderr:  # ends at "listening on" (or EOF if socat died)
                if "listening on" in line:
                    break
            else:
                raise AssertionError("the %s tunnel did not start" % label)
            res = pair.a.sh("qemu-io", "-f", "raw", "-c", "write -P 0x66 0 64k",
                            mirror_mod.nbd_uri(sock), check=False)
            assert res.returncode != 0 or "wrote" not in res.stdout, label
        finally:
            tunnel.kill()
            tunnel.wait()
            tunnel.stderr.close()
    log = open(os.path.join(pair.run_dir(pair.b), "listen.log")).read()
    assert "certificate verify failed" in log
    assert "refusing connection from AF=2 10.231.0.3" in log  # range=
    assert _md5(pair.b.image, SIZE_MIB * 1024 * 1024) == orig
    # The real primary still gets through.
    assert "wrote" in _qemu_io(pair, "write -P 0x22 0 64k", "flush").stdout


def test_primary_checks_the_secondary_name(pair):
    assert pair.call(pair.b, "assemble") == pair.b.image
    pair.call(pair.a, "assemble", remote_name="node-c")
    res = _qemu_io(pair, "write -P 0x33 0 64k", check=False)
    assert res.returncode != 0 or "wrote" not in res.stdout
    log = open(os.path.join(pair.run_dir(pair.a), "client.log")).read()
    assert 'commonName does not match hostname "node-c"' in log


def test_grow_reaches_the_export(pair):
    _assemble_both(pair)
    pair.call(pair.b, "grow")
    assert os.path.getsize(pair.b.image) == (SIZE_MIB + 4) * 1024 * 1024
    res = _qemu_io(pair, "length")
    assert "20 MiB" in res.stdout, res.stdout


def test_shutdown_and_remove_leave_nothing(pair):
    _assemble_both(pair)
    pids = [pair.pid(pair.b, "qsd"), pair.pid(pair.b, "listen"), pair.pid(pair.a, "client")]
    assert all(pids)
    pair.call(pair.b, "consistent")
    pair.call(pair.a, "shutdown")
    pair.call(pair.b, "shutdown")
    assert _our_pids(pair.base) == []
    assert sorted(os.listdir(pair.run_dir(pair.b))) == ["consistent", "listen.log", "qsd.log"]
    assert os.path.exists(pair.b.image)
    assert pair.call(pair.b, "attach") is False
    pair.call(pair.b, "shutdown")  # idempotent
    pair.call(pair.b, "remove")
    pair.call(pair.a, "remove")
    assert not os.path.exists(pair.run_dir(pair.b)) and not os.path.exists(pair.b.image)
    assert not os.path.exists(pair.run_dir(pair.a)) and not os.path.exists(pair.a.image)
