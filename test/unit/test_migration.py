"""Migration, failover, move and cleanup LUs end to end on in-process fake nodes.

The LUs run against a real ConfigWriter; the RPCs run the real backend
functions (fake hypervisor, file storage, TLS disk transfers) under one
CORRAL_ROOT per node (migration_helpers.NodesRpc).
"""

import os
import sys

import pytest

from corral import config as config_mod
from corral import errors, opcodes
from corral.cmdlib import instance_migration as im
from corral.cmdlib import instance_migration_live as iml
from corral.cmdlib import instance_move, node_migrate

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from migration_helpers import Ctx, Proc, add_instance, make_cluster, running_on  # noqa: E402

MAGIC = b"corral-migration-test-data" * 100


@pytest.fixture
def cl(tmp_path, monkeypatch):
    monkeypatch.delenv("CORRAL_ROOT", raising=False)
    return make_cluster(tmp_path)


def run(cfg, rpc, op, log=None):
    lu_class = {opcodes.OpInstanceMigrate: im.LUInstanceMigrate,
                opcodes.OpInstanceFailover: im.LUInstanceFailover,
                opcodes.OpInstanceMove: instance_move.LUInstanceMove,
                opcodes.OpNodeMigrate: node_migrate.LUNodeMigrate}[type(op)]
    log = [] if log is None else log
    lu = lu_class(Proc(), op, Ctx(cfg, rpc), log.append)
    lu.expand_names()
    lu.check_prereq()
    lu.env_pre = lu.build_hooks_env() if lu.HPATH else None
    lu.result = lu.exec(log.append)
    return lu


def pnode(cfg, name):
    return cfg.get_node_info(cfg.get_instance_by_name(name).primary_node).name


def read_disk(rpc, node, inst):
    path = inst.disks[0].logical_id[1].replace(rpc.file_dir, rpc.node_file_dir(node))
    with open(path, "rb") as fh:
        fh.seek(1 << 20)
        return fh.read(len(MAGIC))


# ---- migrate ---------------------------------------------------------------------------------

def test_migrate_sharedfile_moves_the_instance(cl):
    cfg, rpc = cl
    add_instance(cfg, rpc, "i1", "sharedfile")
    log = []
    lu = run(cfg, rpc, opcodes.OpInstanceMigrate(instance_name="i1",
                                                 target_node="node2.example"), log)
    assert running_on(rpc, "i1") == ["node2.example"]
    assert pnode(cfg, "i1") == "node2.example"
    assert cfg.get_instance_by_name("i1").disks[0].nodes == ["u2"]
    assert "* migrating instance to node2.example" in log
    assert any("downtime 0 ms" in line for line in log)
    assert lu.env_pre["OLD_PRIMARY"] == "node1.example"
    assert lu.build_hooks_env() == lu.env_pre  # post phase: the state before the move
    assert lu.env_pre["MIGRATE_LIVE"] is True and lu.env_pre["OLD_SECONDARY"] == ""
    pre, post = lu.build_hooks_nodes()
    assert set(pre) == {"u1", "u2"} and pre == post


def test_migrate_file_with_storage_copies_the_disk(cl):
    cfg, rpc = cl
    inst = add_instance(cfg, rpc, "i2", "file", data=MAGIC)
    log = []
    run(cfg, rpc, opcodes.OpInstanceMigrate(instance_name="i2", target_node="node3.example",
                                            mode="non-live"), log)
    assert running_on(rpc, "i2") == ["node3.example"]
    assert pnode(cfg, "i2") == "node3.example"
    assert read_disk(rpc, "node3.example", inst) == MAGIC
    old = inst.disks[0].logical_id[1].replace(rpc.file_dir, rpc.node_file_dir("node1.example"))
    assert not os.path.exists(old)
    assert any(line.startswith("* disk copy progress: 100.00 %") for line in log)


def test_migrate_failure_keeps_instance_on_source(cl):
    cfg, rpc = cl
    inst = add_instance(cfg, rpc, "i3", "file", data=MAGIC)
    serial = cfg.serial_no

    def broken(node, func, **args):
        func(**args)
        return {"status": "failed",
                "info": "connection reset by peer"}
    rpc.override["instance_migrate"] = broken
    with pytest.raises(errors.OpExecError, match="Could not migrate instance i3: Migration"
                                                 " failed: connection reset by peer"):
        run(cfg, rpc, opcodes.OpInstanceMigrate(instance_name="i3",
                                                target_node="node2.example"))
    assert running_on(rpc, "i3") == ["node1.example"]
    assert cfg.serial_no == serial and pnode(cfg, "i3") == "node1.example"
    new = inst.disks[0].logical_id[1].replace(rpc.file_dir, rpc.node_file_dir("node2.example"))
    assert not os.path.exists(new)
    assert read_disk(rpc, "node1.example", inst) == MAGIC


def test_migrate_stall_is_detected(cl, monkeypatch):
    cfg, rpc = cl
    add_instance(cfg, rpc, "i4", "sharedfile")
    monkeypatch.setattr(iml, "STALL_TIMEOUT", 0.05)
    def active(node, func, **args):
        return dict(func(**args), status="active", transferred=10, remaining=5, total=15)
    rpc.override["instance_migrate"] = active
    rpc.override["instance_migration_wait"] = active
    with pytest.raises(errors.OpExecError, match="made no progress.*node2.example reachable"):
        run(cfg, rpc, opcodes.OpInstanceMigrate(instance_name="i4",
                                                target_node="node2.example"))
    assert running_on(rpc, "i4") == ["node1.example"]


def test_migrate_prerequisites(cl):
    cfg, rpc = cl
    add_instance(cfg, rpc, "i5", "sharedfile")
    add_instance(cfg, rpc, "down1", "sharedfile", start=False, admin_up=False)
    for op, msg in [
        (opcodes.OpInstanceMigrate(instance_name="i5"), "No target node given"),
        (opcodes.OpInstanceMigrate(instance_name="i5", target_node="node1.example"),
         "already on node"),
        (opcodes.OpInstanceMigrate(instance_name="i5", target_node="node2.example",
                                   live=True, mode="live"), "Only one of"),
        (opcodes.OpInstanceMigrate(instance_name="down1", target_node="node2.example"),
         "marked down or offline, cannot migrate"),
        (opcodes.OpInstanceMigrate(instance_name="i5", target_node="node2.example",
                                   iallocator="hail"), "not both"),
    ]:
        with pytest.raises(errors.OpPrereqError, match=msg):
            run(cfg, rpc, op)
    cfg.get_node_by_name("node2.example").drained = True
    with pytest.raises(errors.OpPrereqError, match="drained"):
        run(cfg, rpc, opcodes.OpInstanceMigrate(instance_name="i5", target_node="node2"))


def test_migrate_and_failover_with_builtin_allocator(cl):
    cfg, rpc = cl
    add_instance(cfg, rpc, "a1", "sharedfile")
    log = []
    run(cfg, rpc, opcodes.OpInstanceMigrate(instance_name="a1", iallocator="builtin"), log)
    assert pnode(cfg, "a1") in ("node2.example", "node3.example")
    assert any("via iallocator builtin" in line for line in log)
    before = pnode(cfg, "a1")
    run(cfg, rpc, opcodes.OpInstanceFailover(instance_name="a1", iallocator="builtin"))
    assert pnode(cfg, "a1") != before and running_on(rpc, "a1") == [pnode(cfg, "a1")]


def test_migrate_down_instance_with_allow_failover(cl):
    cfg, rpc = cl
    add_instance(cfg, rpc, "down2", "sharedfile", start=False, admin_up=False)
    log = []
    run(cfg, rpc, opcodes.OpInstanceMigrate(instance_name="down2", target_node="node2.example",
                                            allow_failover=True), log)
    assert pnode(cfg, "down2") == "node2.example" and running_on(rpc, "down2") == []
    assert "Failover instance down2" in log


# ---- failover ------------------------------------------------------------------------------

def test_failover_dead_primary_needs_ignore_consistency(cl):
    cfg, rpc = cl
    add_instance(cfg, rpc, "f1", "sharedfile", pnode="node2.example")
    rpc.down.add("node2.example")
    serial = cfg.serial_no
    with pytest.raises(errors.OpExecError, match="Could not shutdown instance f1"):
        run(cfg, rpc, opcodes.OpInstanceFailover(instance_name="f1",
                                                 target_node="node3.example"))
    assert cfg.serial_no == serial
    log = []
    lu = run(cfg, rpc, opcodes.OpInstanceFailover(instance_name="f1",
                                                  target_node="node3.example",
                                                  ignore_consistency=True), log)
    assert pnode(cfg, "f1") == "node3.example"
    assert "node3.example" in running_on(rpc, "f1")
    # the dead node was asked once (shutdown), not again for its disks
    assert [c for c in rpc.calls if c[1] == "node2.example"][-2:] == [
        ("instance_shutdown", "node2.example"), ("instance_shutdown", "node2.example")]
    pre, post = lu.build_hooks_nodes()
    assert "u2" not in pre and "u2" in post
    assert lu.env_pre["IGNORE_CONSISTENCY"] is True and lu.env_pre["NEW_PRIMARY"] == \
        "node3.example"


def test_failover_refuses_local_disks(cl):
    cfg, rpc = cl
    add_instance(cfg, rpc, "f2", "file")
    with pytest.raises(errors.OpPrereqError, match="disk layout 'file' does not allow"
                                                   " failovers"):
        run(cfg, rpc, opcodes.OpInstanceFailover(instance_name="f2",
                                                 target_node="node2.example"))


# ---- move ------------------------------------------------------------------------------------

@pytest.mark.parametrize("compress", ["none", "gzip"])
def test_move_copies_data_and_restarts(cl, compress):
    cfg, rpc = cl
    inst = add_instance(cfg, rpc, "m1", "file", data=MAGIC)
    log = []
    lu = run(cfg, rpc, opcodes.OpInstanceMove(instance_name="m1", target_node="node2.example",
                                              compress=compress), log)
    assert pnode(cfg, "m1") == "node2.example"
    assert running_on(rpc, "m1") == ["node2.example"]
    assert read_disk(rpc, "node2.example", inst) == MAGIC
    old = inst.disks[0].logical_id[1].replace(rpc.file_dir, rpc.node_file_dir("node1.example"))
    assert not os.path.exists(old)
    assert any(line.startswith("* disk copy progress: 100.00 %") for line in log)
    assert lu.env_pre["TARGET_NODE"] == "node2.example"


def test_move_refusals(cl):
    cfg, rpc = cl
    add_instance(cfg, rpc, "m2", "sharedfile")
    with pytest.raises(errors.OpPrereqError, match="not suitable for copying"):
        run(cfg, rpc, opcodes.OpInstanceMove(instance_name="m2", target_node="node2"))
    with pytest.raises(errors.OpPrereqError, match="Unsupported compression"):
        run(cfg, rpc, opcodes.OpInstanceMove(instance_name="m2", target_node="node2",
                                             compress="lzop"))


# ---- cleanup ----------------------------------------------------------------------------------

class Crash(Exception):
    pass


def _crash_after(cfg, rpc, name, target, *stop_before, config=True):
    """Run a migration whose master 'crashes' when it reaches any of ``stop_before``
    (and, unless ``config``, before the configuration write); the configuration of
    the restarted master (read back from its file)."""
    def crash(*_args, **_kwargs):
        raise Crash()
    for procedure in stop_before:
        rpc.override[procedure] = crash
    update = cfg.update
    if not config:
        cfg.update = crash
    try:
        with pytest.raises(Crash):
            run(cfg, rpc, opcodes.OpInstanceMigrate(instance_name=name, target_node=target))
    finally:
        rpc.override.clear()
        cfg.update = update
    return config_mod.ConfigWriter(cfg._path)


def test_cleanup_after_crash_before_completion(cl):
    cfg, rpc = cl
    add_instance(cfg, rpc, "c1", "sharedfile")
    cfg = _crash_after(cfg, rpc, "c1", "node2.example", "instance_migrate")
    assert running_on(rpc, "c1") == ["node1.example", "node2.example"]
    log = []
    run(cfg, rpc, opcodes.OpInstanceMigrate(instance_name="c1", cleanup=True), log)
    assert running_on(rpc, "c1") == ["node1.example"] and pnode(cfg, "c1") == "node1.example"
    assert "* instance confirmed to be running on its primary node (node1.example)" in log


def test_cleanup_after_crash_after_completion(cl):
    cfg, rpc = cl
    add_instance(cfg, rpc, "c2", "sharedfile")
    cfg = _crash_after(cfg, rpc, "c2", "node3.example", "finalize_migration_src",
                       "finalize_migration_dst", config=False)
    assert pnode(cfg, "c2") == "node1.example"
    log = []
    run(cfg, rpc, opcodes.OpInstanceMigrate(instance_name="c2", cleanup=True,
                                            target_node="node3.example"), log)
    assert pnode(cfg, "c2") == "node3.example"
    assert running_on(rpc, "c2") == ["node3.example"]
    assert "* instance running on node node3.example, updating config" in log


def test_cleanup_after_crash_after_config_write(cl):
    # Both ends are finalized while the config is written: a crash after the
    # write leaves the target waiting and the source's leftover behind.
    cfg, rpc = cl
    add_instance(cfg, rpc, "c4", "sharedfile")
    cfg = _crash_after(cfg, rpc, "c4", "node3.example", "finalize_migration_src",
                       "finalize_migration_dst")
    assert pnode(cfg, "c4") == "node3.example"
    log = []
    run(cfg, rpc, opcodes.OpInstanceMigrate(instance_name="c4", cleanup=True), log)
    assert running_on(rpc, "c4") == ["node3.example"]
    assert "* the memory arrived on node node3.example, finishing the migration there" in log
    assert "* stopping the leftover copy (postmigrate) on node node1.example" in log


def test_cleanup_refuses_when_running_nowhere(cl):
    cfg, rpc = cl
    add_instance(cfg, rpc, "c3", "sharedfile", start=False)
    with pytest.raises(errors.OpExecError, match="running on no node"):
        run(cfg, rpc, opcodes.OpInstanceMigrate(instance_name="c3", cleanup=True))


# ---- node migrate -------------------------------------------------------------------------

def test_node_migrate_submits_one_job_per_instance(cl):
    cfg, rpc = cl
    add_instance(cfg, rpc, "n1", "sharedfile")
    add_instance(cfg, rpc, "n2", "sharedfile")
    add_instance(cfg, rpc, "n3", "sharedfile", pnode="node2.example")
    lu = run(cfg, rpc, opcodes.OpNodeMigrate(node_name="node1", target_node="node3",
                                             mode="live"))
    jobs = lu.result.jobs
    assert [job[0].instance_name for job in jobs] == ["n1", "n2"]
    assert all(job[0].target_node == "node3.example" and job[0].mode == "live"
               for job in jobs)
    assert lu.build_hooks_env() == {"NODE_NAME": "node1.example", "ALLOW_RUNTIME_CHANGES": True}
