"""Node roles and flags (spec/hypervisors-storage.md §10): LUNodeSetParams, the candidate
pool, LUNodeAdd/LUNodeRemove prerequisites, with a real ConfigWriter and a fake RPC."""

import os

import pytest

from corral import constants, errors, objects, opcodes
from corral.cmdlib import node as node_lu
from corral.config import ConfigWriter
from corral.rpc.client import RpcResult


class FakeRpc:
    def __init__(self, fail: set[str] = frozenset()) -> None:
        self.calls: list[tuple[str, list[str], dict]] = []
        self.fail = set(fail)

    def call(self, procedure, nodes, args, timeout=None):
        self.calls.append((procedure, list(nodes), args))
        out = {}
        for n in nodes:
            if n in self.fail:
                out[n] = RpcResult(n, fail_msg="Cannot connect to node %s" % n)
            elif procedure == "version":
                out[n] = RpcResult(n, data=constants.PROTOCOL_VERSION)
            else:
                out[n] = RpcResult(n, data=None)
        return out

    def call_one(self, procedure, node, args, timeout=None):
        return self.call(procedure, [node], args, timeout)[node]


class FakeContext:
    def __init__(self, cfg, rpc) -> None:
        self.cfg, self.rpc, self.glm = cfg, rpc, None


class FakeProc:
    owner = object()

    def __init__(self) -> None:
        self.post_hooks_on: list[list[str]] = []

    def run_post_hooks_on(self, lu, nodes) -> None:
        self.post_hooks_on.append(list(nodes))


def make_cfg(tmp_path, count: int = 3, pool: int = 10) -> ConfigWriter:
    cluster = objects.Cluster(uuid="c-uuid", cluster_name="cl.example", master_ip="10.0.0.250",
                              candidate_pool_size=pool)
    group = objects.NodeGroup(uuid="g1", name="default")
    master = objects.Node(uuid="u1", name="node1.example", primary_ip="10.0.0.1",
                          secondary_ip="10.0.0.1", master_candidate=True)
    cfg = ConfigWriter.create(os.path.join(str(tmp_path), "config.data"), cluster, master, group)
    for i in range(2, count + 1):
        cfg.add_node(objects.Node(uuid="u%d" % i, name="node%d.example" % i,
                                  primary_ip="10.0.0.%d" % i, secondary_ip="10.0.0.%d" % i,
                                  master_candidate=True, group="g1"))
    return cfg


def run_lu(cfg, op, rpc=None, proc=None):
    lu_class = getattr(node_lu, "LU" + type(op).__name__[2:])
    ctx = FakeContext(cfg, rpc or FakeRpc())
    lu = lu_class(proc or FakeProc(), op, ctx, lambda msg: None)
    lu.expand_names()
    lu.check_prereq()
    return lu.exec(lambda msg: None)


def flags(cfg, name):
    n = cfg.get_node_by_name(name)
    return (n.master_candidate, n.drained, n.offline)


def test_offline_clears_candidate_and_reports_changes(tmp_path):
    cfg = make_cfg(tmp_path)
    result = run_lu(cfg, opcodes.OpNodeSetParams(node_name="node3", offline=True))
    assert flags(cfg, "node3.example") == (False, False, True)
    assert result == [["master_candidate", "False"], ["offline", "True"]]


def test_online_again_self_promotes_when_pool_short(tmp_path):
    cfg = make_cfg(tmp_path)
    run_lu(cfg, opcodes.OpNodeSetParams(node_name="node3", offline=True))
    rpc = FakeRpc()
    run_lu(cfg, opcodes.OpNodeSetParams(node_name="node3", offline=False), rpc)
    assert flags(cfg, "node3.example") == (True, False, False)
    assert ("version", ["10.0.0.3"], {}) in rpc.calls


def test_online_refused_when_node_daemon_unreachable(tmp_path):
    cfg = make_cfg(tmp_path)
    run_lu(cfg, opcodes.OpNodeSetParams(node_name="node3", offline=True))
    with pytest.raises(errors.OpPrereqError, match="cannot be brought online"):
        run_lu(cfg, opcodes.OpNodeSetParams(node_name="node3", offline=False),
               FakeRpc(fail={"10.0.0.3"}))
    assert flags(cfg, "node3.example") == (False, False, True)


def test_demotion_below_pool_needs_auto_promote(tmp_path):
    cfg = make_cfg(tmp_path, count=3, pool=2)
    node3 = cfg.get_node_by_name("node3.example")
    node3.master_candidate = False
    cfg.update(node3)
    op = opcodes.OpNodeSetParams(node_name="node2", master_candidate=False)
    with pytest.raises(errors.OpPrereqError, match="Not enough master candidates") as exc:
        run_lu(cfg, op)
    assert exc.value.args[1] == errors.ECODE_STATE
    rpc = FakeRpc()
    run_lu(cfg, opcodes.OpNodeSetParams(node_name="node2", master_candidate=False,
                                        auto_promote=True), rpc)
    assert flags(cfg, "node2.example") == (False, False, False)
    assert flags(cfg, "node3.example") == (True, False, False)
    assert ("demote_from_mc", ["node2.example"], {}) in rpc.calls


def test_master_role_only_via_failover(tmp_path):
    cfg = make_cfg(tmp_path)
    for kwargs in ({"offline": True}, {"drained": True}, {"master_candidate": False}):
        with pytest.raises(errors.OpPrereqError, match="master failover"):
            run_lu(cfg, opcodes.OpNodeSetParams(node_name="node1", **kwargs))


def test_two_flags_at_once_refused(tmp_path):
    cfg = make_cfg(tmp_path)
    with pytest.raises(errors.OpPrereqError, match="more than one state"):
        run_lu(cfg, opcodes.OpNodeSetParams(node_name="node2", offline=True, drained=True))


def test_drained_then_candidate_requires_master_capable(tmp_path):
    cfg = make_cfg(tmp_path)
    run_lu(cfg, opcodes.OpNodeSetParams(node_name="node2", drained=True))
    assert flags(cfg, "node2.example") == (False, True, False)
    run_lu(cfg, opcodes.OpNodeSetParams(node_name="node2", master_capable=False))
    with pytest.raises(errors.OpPrereqError, match="not master capable"):
        run_lu(cfg, opcodes.OpNodeSetParams(node_name="node2", master_candidate=True))


def test_candidate_stats_and_self_promotion(tmp_path):
    cfg = make_cfg(tmp_path, count=3, pool=3)
    assert node_lu.candidate_stats(cfg) == (3, 3)
    assert node_lu.candidate_stats(cfg, ["u3"]) == (2, 2)
    assert not node_lu.should_self_promote(cfg)
    (tmp_path / "b").mkdir()
    cfg2 = make_cfg(tmp_path / "b", count=1, pool=3)
    assert node_lu.should_self_promote(cfg2)


def test_add_refuses_member_and_conflicting_ip(tmp_path, monkeypatch):
    cfg = make_cfg(tmp_path)
    names = {"node2": ("node2.example", "10.0.0.2"), "new": ("new.example", "10.0.0.3")}
    monkeypatch.setattr(node_lu.netutils, "resolve", lambda n: names[n])
    with pytest.raises(errors.OpPrereqError, match="already in the configuration"):
        run_lu(cfg, opcodes.OpNodeAdd(node_name="node2"))
    with pytest.raises(errors.OpPrereqError, match="conflict with existing node"):
        run_lu(cfg, opcodes.OpNodeAdd(node_name="new"))
    assert len(cfg.get_all_nodes()) == 3


def test_add_unresolvable_is_resolver_error(tmp_path, monkeypatch):
    cfg = make_cfg(tmp_path)

    def fail(name):
        raise errors.ResolverError("Cannot resolve host name '%s': not known" % name)
    monkeypatch.setattr(node_lu.netutils, "resolve", fail)
    with pytest.raises(errors.OpPrereqError) as exc:
        run_lu(cfg, opcodes.OpNodeAdd(node_name="nosuch.example"))
    assert exc.value.args[1] == errors.ECODE_RESOLVER


def test_add_setup_failure_leaves_config_unchanged(tmp_path, monkeypatch):
    cfg = make_cfg(tmp_path)
    serial = cfg.serial_no
    monkeypatch.setattr(node_lu.netutils, "resolve", lambda n: ("node4.example", "10.0.0.4"))
    rpc = FakeRpc(fail={"node1.example"})
    with pytest.raises(errors.OpPrereqError, match="Cannot add node node4.example"):
        run_lu(cfg, opcodes.OpNodeAdd(node_name="node4", node_setup=True), rpc)
    assert cfg.serial_no == serial and cfg.get_node_by_name("node4.example") is None


def test_add_joins_over_master_and_becomes_candidate(tmp_path, monkeypatch):
    cfg = make_cfg(tmp_path)
    monkeypatch.setattr(node_lu.netutils, "resolve", lambda n: ("node4.example", "10.0.0.4"))
    rpc = FakeRpc()
    orig = rpc.call

    def call(procedure, nodes, args, timeout=None):
        if procedure == "get_master_info":
            return {n: RpcResult(n, data={"cluster_name": "cl.example"}) for n in nodes}
        if procedure == "node_join":
            return {n: RpcResult(n, data={"hostname": "node4.example"}) for n in nodes}
        return orig(procedure, nodes, args, timeout)
    rpc.call = call
    op = opcodes.OpNodeAdd(node_name="node4", node_setup=True, ssh_key_check=False)
    lu = node_lu.LUNodeAdd(FakeProc(), op, FakeContext(cfg, rpc), lambda msg: None)
    lu.expand_names()
    lu.check_prereq()
    pre, post = lu.build_hooks_nodes()  # as mcpu does, before exec
    lu.exec(lambda msg: None)
    node = cfg.get_node_by_name("node4.example")
    assert node.master_candidate and node.primary_ip == "10.0.0.4"
    assert sorted(pre) == ["u1", "u2", "u3"]
    assert sorted(post) == sorted(pre + [node.uuid])  # post hooks also on the new node


def test_remove_master_and_node_with_instance_refused(tmp_path):
    cfg = make_cfg(tmp_path)
    with pytest.raises(errors.OpPrereqError, match="failover to another node"):
        run_lu(cfg, opcodes.OpNodeRemove(node_name="node1"))
    cfg.add_instance(objects.Instance(name="inst1", primary_node="u2"))
    with pytest.raises(errors.OpPrereqError, match="inst1"):
        run_lu(cfg, opcodes.OpNodeRemove(node_name="node2"))


def test_remove_calls_leave_on_the_node(tmp_path):
    cfg = make_cfg(tmp_path)
    rpc = FakeRpc()
    proc = FakeProc()
    run_lu(cfg, opcodes.OpNodeRemove(node_name="node3"), rpc, proc)
    assert cfg.get_node_by_name("node3.example") is None
    assert ("node_leave", ["10.0.0.3"], {}) in rpc.calls
    assert proc.post_hooks_on == [["10.0.0.3"]]  # the removed node runs post hooks
