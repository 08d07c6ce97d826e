"""Master failover pieces: voting, freshest config, masterd's start check, and the
replication policy for unreachable nodes (server/context.py)."""

import os

import pytest

from corral import errors, masterfailover, serializer
from corral.rpc.client import RpcResult
from corral.server import context
from test_node_roles import make_cfg


class ScriptedRpc:
    """Answers per (procedure, node) from a table; missing entries fail like a dead node."""

    def __init__(self, answers: dict) -> None:
        self.answers = answers
        self.calls = []

    def call(self, procedure, nodes, args, timeout=None):
        self.calls.append((procedure, list(nodes), timeout))
        out = {}
        for n in nodes:
            if (procedure, n) in self.answers:
                out[n] = RpcResult(n, data=self.answers[(procedure, n)])
            else:
                out[n] = RpcResult(n, fail_msg="Cannot connect to node %s" % n)
        return out

    def call_one(self, procedure, node, args, timeout=None):
        return self.call(procedure, [node], args, timeout)[node]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def test_votes_majority_rules():
    rpc = ScriptedRpc({("get_master_info", "a"): {"master_node": "a"},
                       ("get_master_info", "b"): {"master_node": "a"}})
    votes = masterfailover.gather_votes(rpc, ["a", "b", "c"])
    assert votes == [("a", 2), (None, 1)]
    masterfailover.check_votes(votes, "a")
    with pytest.raises(errors.OpPrereqError, match="I have a wrong configuration"):
        masterfailover.check_votes(votes, "b")
    with pytest.raises(errors.OpPrereqError, match="most nodes did not respond"):
        masterfailover.check_votes([(None, 2), ("a", 1)], "a")


def test_newest_config_ignores_other_clusters():
    rpc = ScriptedRpc({("config_info", "a"): {"serial_no": 5, "cluster_uuid": "u"},
                       ("config_info", "b"): {"serial_no": 9, "cluster_uuid": "other"},
                       ("config_info", "c"): {"serial_no": 7, "cluster_uuid": "u"}})
    best, serial, answers = masterfailover.newest_config(rpc, ["a", "b", "c", "d"], "u")
    assert (best, serial) == ("c", 7) and set(answers) == {"a", "b", "c"}


def test_reach_skips_dead_nodes_after_one_failure():
    rpc = ScriptedRpc({("version", "a"): 1})
    reach = masterfailover._Reach(rpc)
    reach.call("version", ["a", "b"], {})
    res = reach.call("version", ["a", "b"], {})
    assert rpc.calls[-1] == ("version", ["a"], masterfailover.VOTE_TIMEOUT)
    assert res["b"].failed and "not contacted again" in res["b"].fail_msg


def test_masterd_starts_when_others_agree_or_are_down(tmp_path, monkeypatch):
    cfg = make_cfg(tmp_path)
    info = {"serial_no": 3, "cluster_uuid": "c-uuid", "config_master": "node1.example",
            "ssconf_master": "node1.example"}
    monkeypatch.setattr(masterfailover, "config_rpc", lambda cfg: ScriptedRpc(
        {("config_info", "node2.example"): info}))
    masterfailover.check_master_role_at_start(cfg)  # node3 down, node2 agrees


def test_old_master_refuses_and_updates_itself(tmp_path, monkeypatch):
    cfg = make_cfg(tmp_path)
    (tmp_path / "n2").mkdir()
    newer = make_cfg(tmp_path / "n2")
    newer.get_cluster_info().master_node = "u2"
    newer.update(newer.get_cluster_info())
    newer.update(newer.get_cluster_info())  # serial well above the old master's
    info = {"serial_no": newer.serial_no, "cluster_uuid": "c-uuid",
            "config_master": "node2.example", "ssconf_master": "node2.example"}
    answers = {("config_info", "node2.example"): info, ("config_info", "node3.example"): info,
               ("get_config", "node2.example"): newer.dump_text()}
    monkeypatch.setattr(masterfailover, "config_rpc", lambda cfg: ScriptedRpc(answers))
    root = tmp_path / "root"
    monkeypatch.setenv("CORRAL_ROOT", str(root))
    os.makedirs(root / "var" / "lib" / "corral")
    with pytest.raises(errors.ConfigurationError, match="not the master any more"):
        masterfailover.check_master_role_at_start(cfg)
    data = serializer.loads(open(root / "var/lib/corral/config.data").read())
    assert data["cluster"]["master_node"] == "u2"
    assert open(root / "var/lib/corral/ssconf_master_node").read().strip() == "node2.example"


class _ReplicationCtx(context.MasterContext):
    def __init__(self, cfg, rpc):  # only what _replicate needs
        self.cfg, self.rpc, self.replication_failures = cfg, rpc, {}


def test_replication_short_timeout_for_known_bad_and_ssconf_catch_up(tmp_path):
    cfg = make_cfg(tmp_path)
    rpc = ScriptedRpc({("upload_file", "node2.example"): None,
                       ("write_ssconf", "node2.example"): None})
    ctx = _ReplicationCtx(cfg, rpc)
    failed = ctx._replicate("{}", {"cluster_name": "x"})
    assert set(failed) == {"node3.example"} and "node3.example" in ctx.replication_failures
    assert ("write_ssconf", ["node2.example"], context.REPLICATION_TIMEOUT) in rpc.calls
    rpc.calls.clear()
    ctx._replicate("{}", None)  # ssconf unchanged: only the lagging node is retried
    assert ("upload_file", ["node3.example"], context.REPLICATION_RETRY_TIMEOUT) in rpc.calls
    assert not [c for c in rpc.calls if c[0] == "write_ssconf"]  # node3 failed the upload
    rpc.answers.update({("upload_file", "node3.example"): None,
                        ("write_ssconf", "node3.example"): None})
    rpc.calls.clear()
    ctx._replicate("{}", None)
    assert ("write_ssconf", ["node3.example"], context.REPLICATION_RETRY_TIMEOUT) in rpc.calls
    assert ctx.replication_failures == {}
