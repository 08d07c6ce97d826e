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


# ---- the job queue at failover: the newest copy of each job -----------------------------------

def _job_text(job_id: int, version: int, status: str = "running") -> str:
    return serializer.dumps({"id": job_id, "ops": [], "status_hint": status, "version": version})


def test_plan_fetches_newer_and_missing_jobs_from_the_best_candidate():
    local = {1: 3, 2: 5, 4: 2}
    peers = {"a": {"versions": {"1": 4, "2": 5, "3": 2, "9": 1}},
             "b": {"versions": {"1": 6, "2": 5, "3": 1, "4": 2, "8": 1}}}
    archived_here = {9}.__contains__
    plan = masterfailover.plan_queue_fetch(local, archived_here, peers)
    # 1: b holds the highest; 3: we lack it, a has the newest; 4 is live on b but not
    # on a (a may have archived it); 8: we lack it; 9: archived here already.
    assert plan == {"a": [3, 4], "b": [1, 8]}


def test_pick_newest_keeps_ours_unless_a_copy_is_newer():
    local = {1: 3, 2: 5, 4: 2}
    copies = [("a", 4, _job_text(4, 7, "success"), True),   # archived there, newer
              ("b", 1, _job_text(1, 6), False),
              ("a", 1, _job_text(1, 4), False),
              ("b", 2, _job_text(2, 5), False),                # same version: keep ours
              ("a", 3, _job_text(3, 2), False),
              ("b", 3, "not json", False)]
    newest = masterfailover.pick_newest_jobs(local, copies)
    assert {j: (n, a) for j, (n, _t, a) in newest.items()} == \
        {1: ("b", False), 3: ("a", False), 4: ("a", True)}
    assert '"version":6' in newest[1][1]


def test_failover_takes_the_newest_queue_copies(tmp_path, monkeypatch):
    """A candidate that lagged when the master died: acknowledged jobs and final
    states held by another candidate are taken, the serial and drain flag too."""
    from corral.backend import queue as backend_queue
    from corral.tools import daemon_util
    monkeypatch.setenv("CORRAL_ROOT", str(tmp_path))
    monkeypatch.setattr(daemon_util, "running_pid", lambda name: None)
    backend_queue.jobqueue_update({"1": _job_text(1, 2), "2": _job_text(2, 1)}, 2, {})
    peer_list = {"live": [2, 3], "serial": 3, "drained": True,
                 "versions": {"2": 4, "3": 1}}
    fetched = {"1": {"text": _job_text(1, 5, "success"), "archived": True},
               "2": {"text": _job_text(2, 4, "success"), "archived": False},
               "3": {"text": _job_text(3, 1, "queued"), "archived": False}}
    rpc = ScriptedRpc({("jobqueue_list", "a"): peer_list, ("jobqueue_fetch", "a"): fetched})
    messages = []
    masterfailover.freshest_queue(rpc, ["a", "dead"], messages.append)
    queue = tmp_path / "var" / "lib" / "corral" / "queue"
    assert backend_queue.job_version((queue / "job-2").read_text()) == 4
    assert backend_queue.job_version((queue / "job-3").read_text()) == 1
    assert not (queue / "job-1").exists()
    assert backend_queue.job_version((queue / "archive" / "0" / "job-1").read_text()) == 5
    assert (queue / "serial").read_text() == "3\n" and (queue / "drain").exists()
    assert messages and "3 job(s)" in messages[0]
    # Nothing newer anywhere: nothing changes, nothing is said.
    masterfailover.freshest_queue(ScriptedRpc({}), ["a"], messages.append)
    assert len(messages) == 1 and (queue / "job-2").exists()
