"""gnt-instance replace-disks -I: the allocator chooses the new DRBD secondary
(relocate request), with the RPC layer faked as in test_storage_lu (no DRBD)."""

import os
import sys

import pytest

from corral import errors, iallocator, locking, opcodes
from corral.cmdlib import instance_replace_disks

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_storage_lu import FakeRpc, add_drbd_instance, cfg, make_lu  # noqa: E402,F401


def _node_info(node, args):
    free = {"node1.example": 4000, "node2.example": 4000, "node3.example": 6000}[node]
    return {"memory_total": 8192, "memory_free": free, "memory_dom0": 512, "cpu_total": 4,
            "hv": {"fake": {"memory_total": 8192, "memory_dom0": 512, "memory_free": free,
                            "cpu_total": 4}},
            "storage": [{"type": "lvm-vg", "name": "xenvg", "storage_size": 100000,
                         "storage_free": 90000}]}


def _allocator_rpc() -> FakeRpc:
    return FakeRpc({"node_info": _node_info, "all_instances_info": lambda node, a: {}})


class RecordingGlm:
    def __init__(self, owned):
        self.held = {level: set(names) for level, names in owned.items()}
        self.released = []

    def owned(self, owner, level):
        return set(self.held.get(level, set()))

    def release(self, owner, level, names=None):
        self.released.append((level, sorted(names)))
        self.held[level] -= set(names)


def _op(**kw):
    return opcodes.OpInstanceReplaceDisks(instance_name="inst1", mode="replace_new_secondary",
                                          **kw)


def test_builtin_allocator_picks_the_new_secondary(cfg):  # noqa: F811
    inst = add_drbd_instance(cfg)
    rpc = _allocator_rpc()
    lu = make_lu(cfg, _op(iallocator="builtin"), rpc, instance_replace_disks)
    every = {"u1", "u2", "u3"}
    lu.context.glm = glm = RecordingGlm({locking.LEVEL_NODE: every,
                                         locking.LEVEL_NODE_RES: every})
    lu.expand_names()
    for level in (locking.LEVEL_NODE, locking.LEVEL_NODE_RES):
        lu.declare_locks(level)
        assert lu.needed_locks[level] is locking.ALL_SET  # any node may be chosen
    lu.check_prereq()
    assert lu.new_node.name == "node3.example" and lu.target == "u3"
    assert "Selected new secondary for instance 'inst1': node3.example" in lu.test_log
    # Every node was locked while the allocator ran; the unused ones go afterwards.
    assert glm.held == {locking.LEVEL_NODE: every, locking.LEVEL_NODE_RES: every}
    assert lu.build_hooks_env()["NEW_SECONDARY"] == "node3.example"
    lu.exec(lu.test_log.append)
    assert [(p, n) for p, n in rpc.seq() if p not in ("node_info", "all_instances_info")] == [
        ("storage_check", "node3.example"), ("blockdev_create", "node3.example"),
        ("blockdev_shutdown", "node2.example"), ("drbd_disconnect_net", "node1.example"),
        ("drbd_attach_net", "node1.example"), ("drbd_attach_net", "node3.example"),
        ("blockdev_remove", "node2.example")]
    inst = cfg.get_instance_by_name("inst1")
    assert inst.secondary_nodes == ["u3"] and inst.disks[0].logical_id[:2] == ["u1", "u3"]


def test_unneeded_node_locks_are_released(cfg, monkeypatch):  # noqa: F811
    add_drbd_instance(cfg)
    seen = []

    def fake_run(lu, name, request, what, extra_params=None):
        seen.append((name, request.request_dict(lu.cfg), what))
        return ["node3.example"]
    monkeypatch.setattr(iallocator, "run_for_lu", fake_run)
    cfg.add_node(type(cfg.get_node_info("u1"))(uuid="u4", name="node4.example",
                                               primary_ip="192.0.2.4", group="g1"))
    lu = make_lu(cfg, _op(iallocator="hail"), FakeRpc(), instance_replace_disks)
    every = {"u1", "u2", "u3", "u4"}
    lu.context.glm = glm = RecordingGlm({locking.LEVEL_NODE: every,
                                         locking.LEVEL_NODE_RES: every})
    lu.expand_names()
    lu.check_prereq()
    assert seen[0][0] == "hail" and seen[0][2] == "nodes"
    assert seen[0][1]["type"] == "relocate"
    assert seen[0][1]["relocate_from"] == ["node2.example"]
    assert glm.released == [(locking.LEVEL_NODE, ["u4"]), (locking.LEVEL_NODE_RES, ["u4"])]
    assert lu.op.remote_node == "node3.example"


def test_allocator_answers_are_checked(cfg, monkeypatch):  # noqa: F811
    add_drbd_instance(cfg)
    monkeypatch.setattr(iallocator, "run_for_lu",
                        lambda lu, name, request, what, extra_params=None: ["node1.example"])
    with pytest.raises(errors.OpPrereqError, match="primary node of the instance"):
        lu = make_lu(cfg, _op(iallocator="hail"), FakeRpc(), instance_replace_disks)
        lu.expand_names()
        lu.check_prereq()


def test_no_room_fails_in_prerequisites(cfg):  # noqa: F811
    add_drbd_instance(cfg)
    full = dict(_node_info("node3.example", {}))
    full["storage"] = [{"type": "lvm-vg", "name": "xenvg", "storage_size": 100000,
                        "storage_free": 10}]
    rpc = FakeRpc({"node_info": lambda node, a: full,
                   "all_instances_info": lambda node, a: {}})
    lu = make_lu(cfg, _op(iallocator="builtin"), rpc, instance_replace_disks)
    lu.expand_names()
    with pytest.raises(errors.OpPrereqError, match="Can't compute nodes using iallocator"):
        lu.check_prereq()
    assert "blockdev_create" not in [p for p, _n, _a in rpc.calls]


def test_iallocator_and_node_exclude_each_other(cfg):  # noqa: F811
    add_drbd_instance(cfg)
    for kw in ({"iallocator": "hail", "remote_node": "node3.example"}, {}):
        with pytest.raises(errors.OpPrereqError, match="either a new secondary"):
            make_lu(cfg, _op(**kw), FakeRpc(), instance_replace_disks)
    with pytest.raises(errors.OpPrereqError, match="only go with changing"):
        make_lu(cfg, opcodes.OpInstanceReplaceDisks(instance_name="inst1",
                                                    mode="replace_on_primary",
                                                    iallocator="hail"),
                FakeRpc(), instance_replace_disks)
