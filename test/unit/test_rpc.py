"""RPC table, wire format and the client against a real corral-noded on 127.0.0.1."""

import os
import socket
import stat
import subprocess
import sys
import threading
import time

import httpx
import pytest

from corral import certs, constants, errors, pathutils, serializer
from corral.rpc import procedures, wire
from corral.rpc.client import RpcClient, RpcResult, static_resolver
from corral.utils import process

# The module shares one noded: keep its tests on one xdist worker (make check-fast).
pytestmark = pytest.mark.xdist_group("rpc-noded")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """A node root with cluster certificates and a running noded; yields (root, port)."""
    root = str(tmp_path_factory.mktemp("node"))
    old_root = os.environ.get("CORRAL_ROOT")
    os.environ["CORRAL_ROOT"] = root
    try:
        pathutils.ensure_dirs()
        certs.generate_cluster_ca(pathutils.cluster_ca_file(), "cluster.example.com")
        certs.generate_node_cert(pathutils.cluster_ca_file(), pathutils.node_cert_file(),
                                 "node1.example.com")
        port = _free_port()
        proc = subprocess.run([sys.executable, "-m", "corral.server.noded",
                               "-b", "127.0.0.1", "-p", str(port)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        try:
            yield root, port
        finally:
            pid = process.read_pid_file(pathutils.pid_file("noded"))
            if pid:
                process.kill_and_wait(pid, timeout=20)
    finally:
        if old_root is None:
            os.environ.pop("CORRAL_ROOT", None)
        else:
            os.environ["CORRAL_ROOT"] = old_root


@pytest.fixture
def client(node):
    root, port = node
    resolver = static_resolver({"node1": ("127.0.0.1", port), "node1-alias": ("127.0.0.1", port),
                                "offline": None, "dead": ("127.0.0.1", _free_port())})
    with RpcClient(resolver, os.path.join(root, "var/lib/corral/server.pem"),
                   os.path.join(root, "var/lib/corral/cluster-ca.pem")) as rpc:
        yield rpc


@pytest.fixture
def hung_listener():
    """A TCP port that accepts connections (backlog) but never speaks: a hung node."""
    sock = socket.create_server(("127.0.0.1", 0), backlog=16)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


# --- the table and the wire format ---

def test_every_procedure_has_a_backend_function():
    import importlib
    for proc in procedures.PROCEDURES.values():
        module, _, func = proc.backend.rpartition(".")
        assert callable(getattr(importlib.import_module("corral.backend." + module), func))
        assert proc.doc and proc.timeout_for({"duration": 1}) > 0


def test_check_args():
    proc = procedures.get_procedure("node_info")
    assert procedures.check_args(proc, {"hv_names": ["kvm"]}) == {
        "hv_names": ["kvm"], "storage_units": []}
    with pytest.raises(errors.ProtocolError, match="Missing argument 'hv_names'"):
        procedures.check_args(proc, {})
    with pytest.raises(errors.ProtocolError, match="Unknown argument"):
        procedures.check_args(proc, {"hv_names": [], "bogus": 1})
    with pytest.raises(errors.ProtocolError, match="must be list"):
        procedures.check_args(proc, {"hv_names": "kvm"})
    with pytest.raises(errors.ProtocolError, match="must be int"):
        procedures.check_args(procedures.get_procedure("upload_file"),
                              {"name": "x", "data": "", "mode": True})
    with pytest.raises(errors.ProtocolError, match="Unknown procedure"):
        procedures.get_procedure("format_disk_everywhere")


def test_decode_reply_shapes():
    assert wire.decode_reply(200, b"[true, 5]") == (True, 5, None, None)
    assert wire.decode_reply(200, b'[false, "boom"]') == (False, None, "boom", None)
    enc = serializer.dumps([False, errors.encode_exception(
        errors.OpPrereqError("no such disk", errors.ECODE_NOENT))]).encode()
    assert wire.decode_reply(200, enc) == (False, None, "no such disk", "OpPrereqError")
    ok, _, msg, _ = wire.decode_reply(502, b"<html>Bad gateway</html>")
    assert not ok and "not JSON" in msg and "502" in msg
    ok, _, msg, _ = wire.decode_reply(200, b'{"a": 1}')
    assert not ok and "Malformed" in msg


def test_result_raise_if_failed():
    RpcResult("n1", data=1).raise_if_failed()
    with pytest.raises(errors.RemoteError, match="^Cannot start: Error from node n1: disk gone$"):
        RpcResult("n1", fail_msg="disk gone").raise_if_failed("Cannot start")
    with pytest.raises(errors.RemoteError, match="Error from node n2: Node is marked offline"):
        RpcResult("n2", fail_msg="Node is marked offline", offline=True).raise_if_failed()


def test_client_refuses_unknown_procedure_and_bad_args(client):
    with pytest.raises(errors.ProgrammerError, match="Unknown procedure"):
        client.call("bogus", ["node1"], {})
    with pytest.raises(errors.ProgrammerError, match="Missing argument"):
        client.call("test_delay", ["node1"], {})


# --- against the real daemon ---

def test_version(client):
    result = client.call_one("version", "node1", {})
    assert not result.failed and result.data == constants.PROTOCOL_VERSION


def test_node_info(client):
    result = client.call_one("node_info", "node1", {"hv_names": [], "storage_units": []})
    result.raise_if_failed()
    info = result.data
    assert info["memory_total"] > 0 and 0 <= info["memory_free"] <= info["memory_total"]
    assert info["cpu_total"] >= 1 and info["cpu_nodes"] >= 1 and info["cpu_sockets"] >= 1
    assert info["bootid"] == open("/proc/sys/kernel/random/boot_id").read().strip()
    assert info["hv"] == {} and info["storage"] == []


def test_offline_node_not_contacted(client):
    start = time.monotonic()
    results = client.call("version", ["offline", "node1"], {})
    assert list(results) == ["offline", "node1"]
    assert results["offline"].offline and results["offline"].failed
    assert results["offline"].fail_msg == "Node is marked offline"
    assert results["node1"].data == constants.PROTOCOL_VERSION
    assert time.monotonic() - start < 5


def test_dead_port_and_unknown_node_are_precise_failures(client):
    results = client.call("version", ["dead", "ghost"], {})
    assert "Cannot connect to node dead (127.0.0.1:" in results["dead"].fail_msg
    assert "refused" in results["dead"].fail_msg.lower()
    assert results["ghost"].fail_msg == "Node 'ghost' is unknown"


def test_noded_runs_calls_in_parallel(client):
    start = time.monotonic()
    results = client.call("test_delay", ["node1", "node1-alias"], {"duration": 1.0})
    elapsed = time.monotonic() - start
    assert all(not r.failed for r in results.values()), results
    assert elapsed < 1.9, "two 1s delays took %.1fs: not run in parallel" % elapsed


def test_slow_nodes_cost_one_timeout(client, hung_listener):
    resolver_map = {"node1": ("127.0.0.1", client._resolver("node1")[1]),
                    "hung1": ("127.0.0.1", hung_listener), "hung2": ("127.0.0.1", hung_listener)}
    with RpcClient(static_resolver(resolver_map), client._cert_path, client._ca_path) as rpc:
        start = time.monotonic()
        results = rpc.call("version", ["hung1", "node1", "hung2"], {}, timeout=1.5)
        elapsed = time.monotonic() - start
    assert results["node1"].data == constants.PROTOCOL_VERSION
    for name in ("hung1", "hung2"):
        assert results[name].failed
        assert "within 1.5 seconds" in results[name].fail_msg or \
            "Timeout" in results[name].fail_msg
    assert elapsed < 2.9, "two hung nodes took %.1fs: timeouts were not parallel" % elapsed


def test_small_fan_outs_reuse_threads_and_a_full_pool_is_not_waited_for(client, monkeypatch):
    from corral.rpc import client as rpc_client
    before = {t.ident for t in threading.enumerate()}
    for _ in range(3):
        results = client.call("version", ["node1", "node1-alias"], {})
        assert all(r.data == constants.PROTOCOL_VERSION for r in results.values())
    started = {t.ident for t in threading.enumerate()} - before
    assert len(started) <= 1, "threads started per call"
    # Every thread of the shared pool is busy (say, with dead nodes' timeouts): a
    # call does not queue behind them.
    monkeypatch.setattr(rpc_client, "SHARED_POOL_THREADS", 2)
    port = client._resolver("node1")[1]
    resolver = static_resolver({"n1": ("127.0.0.1", port), "n2": ("127.0.0.1", port)})
    with RpcClient(resolver, client._cert_path, client._ca_path) as rpc:
        pool = rpc._reserve_shared(2)
        blocked = threading.Event()
        try:
            for _ in range(2):
                pool.submit(blocked.wait, 30)
            start = time.monotonic()
            results = rpc.call("version", ["n1", "n2"], {}, timeout=10.0)
            assert time.monotonic() - start < 10.0, "queued behind the busy pool"
            assert all(r.data == constants.PROTOCOL_VERSION for r in results.values())
        finally:
            blocked.set()
            rpc._release_shared(2)

def test_timeout_while_node_works(client):
    start = time.monotonic()
    results = client.call("test_delay", ["node1", "node1-alias"], {"duration": 3.0},
                          timeout=1.0)
    assert time.monotonic() - start < 1.9
    for result in results.values():
        assert result.fail_msg.startswith("No answer from node node1")
        assert "within 1.0 seconds" in result.fail_msg


def test_client_without_certificate_refused(node):
    root, port = node
    target = os.path.join(root, "var/lib/corral/config.data")
    rpc = RpcClient(static_resolver({"node1": ("127.0.0.1", port)}), None,
                    os.path.join(root, "var/lib/corral/cluster-ca.pem"))
    with rpc:
        result = rpc.call_one("upload_file", "node1",
                              {"name": "config.data", "data": "{}", "mode": 0o600})
    assert result.failed
    assert "sent no TLS certificate" in result.fail_msg
    assert not os.path.exists(target)


def test_client_from_another_cluster_refused(node, tmp_path):
    root, port = node
    certs.generate_cluster_ca(str(tmp_path / "ca.pem"), "other.example.com")
    certs.generate_node_cert(str(tmp_path / "ca.pem"), str(tmp_path / "node.pem"), "intruder")
    with open(str(tmp_path / "both.pem"), "w") as fh:  # trusts the real node, so only it refuses
        fh.write(certs.ca_certificate_pem(os.path.join(root, "var/lib/corral/cluster-ca.pem")))
    rpc = RpcClient(static_resolver({"node1": ("127.0.0.1", port)}),
                    str(tmp_path / "node.pem"), str(tmp_path / "both.pem"))
    with rpc:
        result = rpc.call_one("write_ssconf", "node1", {"values": {"cluster_name": "evil"}})
    assert result.failed and "does not trust our certificate" in result.fail_msg
    assert not os.path.exists(os.path.join(root, "var/lib/corral/ssconf_cluster_name"))


def test_client_refuses_node_of_another_cluster(node, tmp_path):
    root, port = node
    certs.generate_cluster_ca(str(tmp_path / "ca.pem"), "other.example.com")
    rpc = RpcClient(static_resolver({"node1": ("127.0.0.1", port)}),
                    os.path.join(root, "var/lib/corral/server.pem"), str(tmp_path / "ca.pem"))
    with rpc:
        result = rpc.call_one("version", "node1", {})
    assert result.failed and "not signed by this cluster's CA" in result.fail_msg


def test_upload_file(client, node):
    root, _ = node
    result = client.call_one("upload_file", "node1",
                             {"name": "rapi-users", "data": "admin secret write\n",
                              "mode": 0o644})
    result.raise_if_failed()
    path = os.path.join(root, "var/lib/corral/rapi/users")
    assert open(path).read() == "admin secret write\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # secrets never world-readable


@pytest.mark.parametrize("name", ["passwd", "../../../etc/passwd", "/etc/passwd",
                                  "ssconf_cluster_name", "config.data/../x"])
def test_upload_file_refuses_unknown_names(client, node, name):
    root, _ = node
    before = sorted(os.listdir(os.path.join(root, "var/lib/corral")))
    result = client.call_one("upload_file", "node1", {"name": name, "data": "x", "mode": 0o644})
    assert result.failed and result.error_class == "ParameterError"
    assert "is not a file this node accepts" in result.fail_msg
    assert sorted(os.listdir(os.path.join(root, "var/lib/corral"))) == before


def test_write_ssconf_and_master_info(client, node):
    values = {"cluster_name": "c.example.com", "master_node": "node1.example.com",
              "master_ip": "192.0.2.1", "master_netdev": "eth0", "master_netmask": "24",
              "primary_ip_family": "2"}
    client.call_one("write_ssconf", "node1", {"values": values}).raise_if_failed()
    info = client.call_one("get_master_info", "node1", {})
    info.raise_if_failed()
    assert info.data == {"cluster_name": "c.example.com", "master_node": "node1.example.com",
                         "master_ip": "192.0.2.1", "master_netdev": "eth0",
                         "master_netmask": 24, "primary_ip_family": 2}
    bad = client.call_one("write_ssconf", "node1", {"values": {"nonsense": "1"}})
    assert bad.failed and "Unknown ssconf key" in bad.fail_msg
    client.call_one("write_ssconf", "node1", {"values": {}}).raise_if_failed()
    gone = client.call_one("get_master_info", "node1", {})
    assert gone.error_class == "ConfigurationError" and "not part of a cluster" in gone.fail_msg


def test_node_verify(client):
    result = client.call_one("node_verify", "node1", {"checks": {}})
    result.raise_if_failed()
    assert result.data["version"] == [constants.PROTOCOL_VERSION, constants.RELEASE_VERSION]
    assert abs(result.data["time"] - time.time()) < 60 and result.data["hostname"]


def test_all_instances_info_follows_the_records(client, node):
    """The node daemon's pre-encoded answer, and no stale state: an instance stopped
    behind the daemon's back is gone from the very next answer."""
    from corral.hypervisor import InstanceSpec, get_hypervisor, hvparams
    fake = get_hypervisor("fake")
    spec = InstanceSpec("rpcinst1", "uuid-rpcinst1", hvparams.fill_hvparams("fake", {}),
                        hvparams.fill_beparams({}, {"maxmem": 192, "vcpus": 3}),
                        hypervisor="fake")
    fake.start_instance(spec, [])
    try:
        args = {"hypervisors": ["fake"]}
        result = client.call_one("all_instances_info", "node1", args)
        result.raise_if_failed()
        info = result.data["rpcinst1"]
        assert (info["memory"], info["vcpus"], info["state"], info["hypervisor"]) == \
            (192, 3, "running", "fake") and info["time"] >= 0
        fake.balloon_instance_memory(spec, 128)
        assert client.call_one("all_instances_info", "node1", args).data[
            "rpcinst1"]["memory"] == 128
    finally:
        fake.cleanup_instance("rpcinst1")
    assert "rpcinst1" not in client.call_one("all_instances_info", "node1", args).data


def test_raw_protocol_errors(node):
    root, port = node
    ctx = certs.client_ssl_context(os.path.join(root, "var/lib/corral/server.pem"),
                                   os.path.join(root, "var/lib/corral/cluster-ca.pem"))
    with httpx.Client(verify=ctx, trust_env=False, timeout=30) as http:
        base = "https://127.0.0.1:%d/" % port
        resp = http.post(base + "format_everything", content=b"{}")
        assert resp.status_code == 404
        assert resp.json() == [False, "Unknown procedure 'format_everything'"]
        resp = http.post(base + "version", content=b"not json")
        assert resp.status_code == 400 and resp.json()[0] is False
        resp = http.post(base + "test_delay", content=b'{"duration": "1"}')
        assert resp.status_code == 400 and resp.json()[1][0] == "ProtocolError"
        assert http.get(base + "version").status_code == 405


# --- backend functions in-process ---

def test_node_info_asks_each_hypervisor(monkeypatch):
    import corral.hypervisor
    from corral.backend import node as backend_node

    class FakeHv:
        def __init__(self, name):
            self.name = name

        def get_node_info(self):
            return {"hv_version": [1, 2], "name": self.name}

    monkeypatch.setattr(corral.hypervisor, "get_hypervisor", FakeHv, raising=False)
    info = backend_node.node_info(["kvm", "fake"], [])
    assert info["hv"] == {"kvm": {"hv_version": [1, 2], "name": "kvm"},
                          "fake": {"hv_version": [1, 2], "name": "fake"}}


def test_node_info_without_hypervisor_support(monkeypatch):
    import corral.hypervisor
    from corral.backend import node as backend_node
    monkeypatch.delattr(corral.hypervisor, "get_hypervisor", raising=False)
    with pytest.raises(errors.HypervisorError, match="not available"):
        backend_node.node_info(["kvm"], [])


def test_node_verify_reports_hypervisor_problems(monkeypatch):
    import corral.hypervisor
    from corral.backend import node as backend_node

    class Hv:
        def __init__(self, name):
            if name == "xen":
                raise errors.HypervisorError("Unknown hypervisor 'xen'")
            self.name = name

        def verify(self):
            return None if self.name == "fake" else "qemu binary missing"

        def list_instances(self):
            return []

    monkeypatch.setattr(corral.hypervisor, "get_hypervisor", Hv, raising=False)
    data = backend_node.node_verify({"hypervisors": ["fake", "kvm", "xen"]})
    assert data["hypervisor"] == {"fake": None, "kvm": "qemu binary missing",
                                  "xen": "Unknown hypervisor 'xen'"}
    assert "hypervisor" not in backend_node.node_verify({})
