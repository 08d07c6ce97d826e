"""Node group LUs: add, rename, modify, assign-nodes, remove (real ConfigWriter)."""

import pytest

from corral import errors, objects, opcodes
from corral.cmdlib import group as group_lu
from test_node_roles import FakeContext, FakeProc, FakeRpc, make_cfg


def run_lu(cfg, op):
    lu_class = getattr(group_lu, "LU" + type(op).__name__[2:])
    lu = lu_class(FakeProc(), op, FakeContext(cfg, FakeRpc()), lambda m: None)
    lu.expand_names()
    lu.check_prereq()
    return lu.exec(lambda m: None)


def test_add_rename_modify_remove(tmp_path):
    cfg = make_cfg(tmp_path)
    run_lu(cfg, opcodes.OpGroupAdd(group_name="rack2", alloc_policy="last_resort",
                                   ndparams={"ssh_port": 2222}))
    uuid = cfg.lookup_node_group("rack2")
    group = cfg.get_node_group(uuid)
    assert group.alloc_policy == "last_resort" and group.ndparams == {"ssh_port": 2222}
    with pytest.raises(errors.OpPrereqError, match="already exists"):
        run_lu(cfg, opcodes.OpGroupAdd(group_name="rack2"))
    run_lu(cfg, opcodes.OpGroupRename(group_name="rack2", new_name="rack3"))
    assert cfg.lookup_node_group("rack3") == uuid
    with pytest.raises(errors.OpPrereqError, match="clashes"):
        run_lu(cfg, opcodes.OpGroupRename(group_name="rack3", new_name="default"))
    result = run_lu(cfg, opcodes.OpGroupSetParams(group_name="rack3", alloc_policy="preferred",
                                                  ndparams={"ssh_port": "default"}))
    assert ["alloc_policy", "preferred"] in result
    assert cfg.get_node_group(uuid).ndparams == {}
    run_lu(cfg, opcodes.OpGroupRemove(group_name="rack3"))
    assert uuid not in cfg.get_all_node_groups()


def test_bad_params_refused(tmp_path):
    cfg = make_cfg(tmp_path)
    with pytest.raises(errors.OpPrereqError, match="Unknown node parameters"):
        run_lu(cfg, opcodes.OpGroupAdd(group_name="g2", ndparams={"nosuch": 1}))
    with pytest.raises(errors.OpPrereqError, match="Invalid node group name"):
        run_lu(cfg, opcodes.OpGroupAdd(group_name="bad name"))
    with pytest.raises(errors.OpPrereqError, match="at least one modification"):
        run_lu(cfg, opcodes.OpGroupSetParams(group_name="default"))


def test_assign_nodes_and_remove_non_empty(tmp_path):
    cfg = make_cfg(tmp_path)
    run_lu(cfg, opcodes.OpGroupAdd(group_name="g2"))
    run_lu(cfg, opcodes.OpGroupAssignNodes(group_name="g2", nodes=["node3"]))
    uuid = cfg.lookup_node_group("g2")
    assert cfg.get_node_by_name("node3.example").group == uuid
    with pytest.raises(errors.OpPrereqError, match="not empty"):
        run_lu(cfg, opcodes.OpGroupRemove(group_name="g2"))


def test_assign_refuses_split_instance_unless_forced(tmp_path):
    cfg = make_cfg(tmp_path)
    run_lu(cfg, opcodes.OpGroupAdd(group_name="g2"))
    cfg.add_instance(objects.Instance(name="i1", primary_node="u2", secondary_nodes=["u3"]))
    with pytest.raises(errors.OpPrereqError, match="split"):
        run_lu(cfg, opcodes.OpGroupAssignNodes(group_name="g2", nodes=["node3"]))
    run_lu(cfg, opcodes.OpGroupAssignNodes(group_name="g2", nodes=["node3"], force=True))
    assert cfg.get_node_by_name("node3.example").group == cfg.lookup_node_group("g2")


def test_group_emptied_by_assign_can_be_removed(tmp_path):
    cfg = make_cfg(tmp_path, count=1)
    run_lu(cfg, opcodes.OpGroupAdd(group_name="g2"))
    run_lu(cfg, opcodes.OpGroupAssignNodes(group_name="g2", nodes=["node1"]))
    run_lu(cfg, opcodes.OpGroupRemove(group_name="default"))
    assert [g.name for g in cfg.get_all_node_groups().values()] == ["g2"]
    assert cfg.get_node_by_name("node1.example").group == cfg.lookup_node_group("g2")
