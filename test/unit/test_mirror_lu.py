"""Master side of changing ``mirror`` instances, with the RPC layer faked as in
test_storage_lu: replace-disks -s/-n/-I, node evacuation of secondaries,
file<->mirror conversion, grow-disk and adding a disk; plus the QMP side of
dropping replication jobs."""

import os
import sys

import pytest

from corral import errors, objects, opcodes
from corral.cmdlib import instance_mirror, instance_replace_disks, instance_set_params
from corral.cmdlib import instance_storage as ist
from corral.cmdlib import node_evacuate
from corral.hypervisor.kvm import replication

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_node_roles import make_cfg  # noqa: E402
from test_storage_lu import FakeRpc, make_lu, run_lu  # noqa: E402

IN_SYNC = {"state": "in_sync", "percent": None, "settled": True}
SYNCING = {"state": "syncing", "percent": 50.0}
GONE = {"state": "disconnected", "percent": None}
ORDINARY = ("instance_info", "storage_check", "blockdev_getsize",
            "instance_replication_status")


@pytest.fixture
def cfg(tmp_path):
    cfg = make_cfg(tmp_path, count=3)
    cluster = cfg.get_cluster_info()
    cluster.enabled_disk_templates = ["mirror", "file"]
    cluster.enabled_hypervisors = ["kvm", "fake"]
    cluster.file_storage_dir = str(tmp_path / "file")
    for i in (1, 2, 3):
        cfg.get_node_by_name("node%d.example" % i).secondary_ip = "192.0.2.%d" % i
    cfg.update(cluster)
    return cfg


def add_mirror(cfg, name="m1", ndisks=1, active=False, pnode="u1", snode="u2"):
    cluster = cfg.get_cluster_info()
    disks = ist.generate_disks(cluster, "mirror", name, [{"size": 64}] * ndisks, pnode,
                               snode_uuid=snode)
    ist.allocate_drbd_ids(disks, ist.DrbdAllocator(cfg, "setup"))
    cfg.add_instance(objects.Instance(uuid="i-" + name, name=name, primary_node=pnode,
                                      secondary_nodes=[snode], disks=disks,
                                      disk_template="mirror", hypervisor="kvm",
                                      os="busybox", disks_active=active), "setup")
    return cfg.get_instance_by_name(name)


def mirror_rpc(running, states=(), handlers=None):
    """A fake RPC layer for a mirror instance: running or not; the primary's QEMU
    answers ``states`` (one list per status call, the last one repeated)."""
    answers = list(states)

    def status(node, args):
        if not running:
            return None
        return answers.pop(0) if len(answers) > 1 else answers[0]
    base = {"instance_info": lambda n, a: {"state": "running"} if running else None,
            "blockdev_getsize": lambda n, a: [64] * len(a["disks"]),
            "instance_replication_status": status,
            "instance_replication_start": lambda n, a: [],
            "mirror_sync_offline": lambda n, a: 64 << 20}
    base.update(handlers or {})
    return FakeRpc(base)


def seq(rpc, skip=ORDINARY):
    return [(p, n.split(".")[0]) for p, n, _a in rpc.calls if p not in skip]


def args_of(rpc, proc):
    return [a for p, _n, a in rpc.calls if p == proc]


def _replace(cfg, rpc, **kw):
    op = opcodes.OpInstanceReplaceDisks(instance_name="m1", **kw)
    return run_lu(cfg, op, rpc, instance_replace_disks)


# ---- replace-disks -s ------------------------------------------------------------------------

def test_replace_on_secondary_running_restarts_whole_copy(cfg):
    inst = add_mirror(cfg, ndisks=2, active=True)
    before = [d.to_dict() for d in inst.disks]
    rpc = mirror_rpc(True, [[GONE, IN_SYNC], [SYNCING, IN_SYNC], [IN_SYNC, IN_SYNC]])
    lu, _ = _replace(cfg, rpc, mode="replace_on_secondary", disks=[0])
    assert seq(rpc) == [
        ("instance_replication_stop", "node1"), ("blockdev_shutdown", "node2"),
        ("blockdev_rename", "node2"), ("blockdev_create", "node2"),
        ("mirror_set_consistent", "node2"), ("instance_replication_start", "node1"),
        ("mirror_set_consistent", "node2"), ("blockdev_remove", "node2")]
    assert args_of(rpc, "instance_replication_stop")[0]["disks"] == [0]
    marks = [a["consistent"] for a in args_of(rpc, "mirror_set_consistent")]
    assert marks == [False, True]  # marked complete only once QEMU saw it in sync
    image = inst.disks[0].children[0].logical_id
    rename = args_of(rpc, "blockdev_rename")[0]["renames"]
    assert rename[0][0]["logical_id"] == image and rename[0][1][1].startswith(
        image[1] + "_replaced-")
    created = args_of(rpc, "blockdev_create")[0]
    assert created["on_primary"] is False and len(created["disks"]) == 1
    assert args_of(rpc, "blockdev_remove")[0]["disks"][0]["logical_id"] == rename[0][1]
    assert [d.to_dict() for d in cfg.get_instance_by_name("m1").disks] == before
    assert any("50.00% done" in line for line in lu.test_log)
    assert "STEP 5/5 Removing old storage" in lu.test_log


def test_replace_on_secondary_stopped_copies_offline(cfg):
    add_mirror(cfg)
    rpc = mirror_rpc(False, handlers={
        "blockdev_getsize": lambda n, a: [None] if n == "node2.example" else [64]})
    _replace(cfg, rpc, mode="replace_on_secondary")
    # The secondary's image was missing: nothing to set aside or remove.
    assert seq(rpc) == [
        ("blockdev_shutdown", "node2"), ("blockdev_create", "node2"),
        ("mirror_set_consistent", "node2"), ("mirror_sync_offline", "node1"),
        ("mirror_set_consistent", "node2"),
        ("blockdev_shutdown", "node1"), ("blockdev_shutdown", "node2")]


def test_replace_on_secondary_puts_old_image_back_on_failure(cfg):
    add_mirror(cfg, active=True)
    rpc = mirror_rpc(True, [[IN_SYNC]], {"blockdev_create": lambda n, a: RuntimeError("full")})
    with pytest.raises(errors.OpExecError, match="node2.example failed: full"):
        _replace(cfg, rpc, mode="replace_on_secondary")
    renames = args_of(rpc, "blockdev_rename")
    assert len(renames) == 2 and renames[1]["renames"][0][1] == \
        renames[0]["renames"][0][0]["logical_id"]


def test_replace_on_primary_and_auto_refused(cfg):
    add_mirror(cfg)
    with pytest.raises(errors.OpPrereqError, match="only current copy.*with -s"):
        _replace(cfg, mirror_rpc(False), mode="replace_on_primary")
    with pytest.raises(errors.OpPrereqError, match="activate-disks"):
        _replace(cfg, mirror_rpc(False), mode="replace_auto")


def test_replace_needs_the_primary_image(cfg):
    add_mirror(cfg)
    rpc = mirror_rpc(False, handlers={"blockdev_getsize": lambda n, a: [None]})
    with pytest.raises(errors.OpExecError, match="image of disk disk/0 on the primary"):
        _replace(cfg, rpc, mode="replace_on_secondary")
    assert "blockdev_create" not in [p for p, _n, _a in rpc.calls]


# ---- replace-disks -n / -I, node evacuate ---------------------------------------------------

def test_replace_new_secondary_running(cfg):
    inst = add_mirror(cfg, active=True)
    old = inst.disks[0].to_dict()
    rpc = mirror_rpc(True, [[GONE], [IN_SYNC]])
    lu, _ = _replace(cfg, rpc, mode="replace_new_secondary", remote_node="node3.example")
    assert seq(rpc) == [
        ("blockdev_create", "node3"), ("instance_replication_stop", "node1"),
        ("blockdev_shutdown", "node1"), ("blockdev_shutdown", "node2"),
        ("mirror_set_consistent", "node3"), ("instance_replication_start", "node1"),
        ("mirror_set_consistent", "node3"), ("blockdev_remove", "node2")]
    created = args_of(rpc, "blockdev_create")[0]["disks"][0]
    assert created["logical_id"] == ["u1", "u3", old["logical_id"][2]]
    assert set(created["params"]["mirror_nodes"]) == {"u1", "u3"}
    removed = args_of(rpc, "blockdev_remove")[0]["disks"][0]
    assert removed["logical_id"] == old["logical_id"]  # the old ends: node2 finds its side
    inst = cfg.get_instance_by_name("m1")
    disk = inst.disks[0]
    assert inst.secondary_nodes == ["u3"] and disk.logical_id == created["logical_id"]
    assert disk.nodes == ["u1", "u3"] and disk.children[0].nodes == ["u1", "u3"]
    assert disk.uuid == old["uuid"] and disk.children[0].logical_id == \
        old["children"][0]["logical_id"]
    assert lu.build_hooks_env()["NEW_SECONDARY"] == "node3.example"


def test_replace_new_secondary_with_dead_old_secondary(cfg):
    add_mirror(cfg)
    node2 = cfg.get_node_info("u2")
    node2.offline = True
    cfg.update(node2)
    rpc = mirror_rpc(False)
    lu, _ = _replace(cfg, rpc, mode="replace_new_secondary", remote_node="node3.example")
    assert "node2.example" not in [n for _p, n, _a in rpc.calls]
    assert any("node node2.example is offline" in w for w in lu.test_log)
    assert ("mirror_sync_offline", "node1") in seq(rpc)
    assert cfg.get_instance_by_name("m1").secondary_nodes == ["u3"]


def test_replace_new_secondary_undone_if_the_tunnel_cannot_stop(cfg):
    add_mirror(cfg)
    rpc = mirror_rpc(False, handlers={"blockdev_shutdown": lambda n, a: RuntimeError("stuck")})
    with pytest.raises(errors.OpExecError, match="stuck"):
        _replace(cfg, rpc, mode="replace_new_secondary", remote_node="node3.example")
    assert seq(rpc)[-1] == ("blockdev_remove", "node3")
    assert cfg.get_instance_by_name("m1").secondary_nodes == ["u2"]


def _node_info(node, args):
    return {"memory_total": 8192, "memory_free": 4000, "memory_dom0": 512, "cpu_total": 4,
            "hv": {"kvm": {"memory_total": 8192, "memory_dom0": 512, "memory_free": 4000,
                           "cpu_total": 4}},
            "storage": [{"type": "file", "name": "file", "storage_size": 100000,
                         "storage_free": 90000}]}


def test_replace_new_secondary_by_allocator(cfg):
    add_mirror(cfg)
    rpc = mirror_rpc(False, handlers={"node_info": _node_info,
                                      "all_instances_info": lambda n, a: {}})
    lu = make_lu(cfg, opcodes.OpInstanceReplaceDisks(
        instance_name="m1", mode="replace_new_secondary", iallocator="builtin"), rpc,
        instance_replace_disks)
    lu.expand_names()
    lu.check_prereq()
    assert lu.new_node.name == "node3.example"
    lu.exec(lu.test_log.append)
    assert cfg.get_instance_by_name("m1").secondary_nodes == ["u3"]


def test_node_evacuate_secondary_makes_replace_jobs(cfg):
    add_mirror(cfg)
    for kw in ({"remote_node": "node3.example"}, {"iallocator": "builtin"}):
        rpc = FakeRpc({"node_info": _node_info, "all_instances_info": lambda n, a: {}})
        op = opcodes.OpNodeEvacuate(node_name="node2.example", mode="secondary-only", **kw)
        lu, result = run_lu(cfg, op, rpc, node_evacuate)
        ((job,),) = result.jobs
        assert isinstance(job, opcodes.OpInstanceReplaceDisks), kw
        assert (job.instance_name, job.mode, job.remote_node) == (
            "m1", "replace_new_secondary", "node3.example")


# ---- template conversion -----------------------------------------------------------------------

def _set_params(cfg, rpc, **kw):
    return run_lu(cfg, opcodes.OpInstanceSetParams(instance_name="f1", **kw), rpc,
                  instance_set_params)


def test_convert_file_to_mirror_and_back(cfg):
    cluster = cfg.get_cluster_info()
    disks = ist.generate_disks(cluster, "file", "f1", [{"size": 64}], "u1")
    file_disk = disks[0].to_dict()
    cfg.add_instance(objects.Instance(uuid="i-f1", name="f1", primary_node="u1",
                                      disks=disks, disk_template="file", hypervisor="kvm"),
                     "x")
    rpc = mirror_rpc(False)
    _set_params(cfg, rpc, disk_template="mirror", remote_node="node2.example")
    assert seq(rpc) == [
        ("blockdev_shutdown", "node1"), ("blockdev_create", "node2"),
        ("mirror_set_consistent", "node2"), ("mirror_sync_offline", "node1"),
        ("mirror_set_consistent", "node2"),
        ("blockdev_shutdown", "node1"), ("blockdev_shutdown", "node2")]
    inst = cfg.get_instance_by_name("f1")
    (disk,) = inst.disks
    assert inst.disk_template == "mirror" and inst.secondary_nodes == ["u2"]
    assert disk.uuid == file_disk["uuid"] and disk.logical_id[:2] == ["u1", "u2"]
    assert disk.children[0].logical_id == file_disk["logical_id"]  # the image stays put
    port = disk.logical_id[2]
    assert isinstance(port, int)
    assert args_of(rpc, "blockdev_create")[0]["disks"][0]["children"][0]["logical_id"] == \
        file_disk["logical_id"]

    rpc = mirror_rpc(False)
    _set_params(cfg, rpc, disk_template="file")
    inst = cfg.get_instance_by_name("f1")
    (disk,) = inst.disks
    assert inst.disk_template == "file" and inst.secondary_nodes == []
    assert disk.uuid == file_disk["uuid"] and disk.logical_id == file_disk["logical_id"]
    assert disk.nodes == ["u1"] and disk.size == 64
    assert port in cfg.get_cluster_info().tcpudp_port_pool
    removes = [(n, a["disks"][0]["children"]) for p, n, a in rpc.calls
               if p == "blockdev_remove"]
    assert removes[0][0] == "node2.example" and len(removes[0][1]) == 1  # image too
    assert removes[1] == ("node1.example", [])  # processes only: the image stays


def test_convert_to_mirror_without_copy(cfg):
    disks = ist.generate_disks(cfg.get_cluster_info(), "file", "f1", [{"size": 64}], "u1")
    cfg.add_instance(objects.Instance(uuid="i-f1", name="f1", primary_node="u1",
                                      disks=disks, disk_template="file", hypervisor="kvm"),
                     "x")
    rpc = mirror_rpc(False)
    lu, _ = _set_params(cfg, rpc, disk_template="mirror", remote_node="node2.example",
                        wait_for_sync=False)
    assert "mirror_sync_offline" not in [p for p, _n, _a in rpc.calls]
    assert any("incomplete until the next start" in w for w in lu.test_log)


def test_convert_to_mirror_refusals(cfg):
    disks = ist.generate_disks(cfg.get_cluster_info(), "file", "f1", [{"size": 64}], "u1")
    cfg.add_instance(objects.Instance(uuid="i-f1", name="f1", primary_node="u1",
                                      disks=disks, disk_template="file", hypervisor="fake"),
                     "x")
    with pytest.raises(errors.OpPrereqError, match="needs a hypervisor that replicates"):
        _set_params(cfg, mirror_rpc(False), disk_template="mirror",
                    remote_node="node2.example")
    inst = cfg.get_instance_by_name("f1")
    inst.hypervisor = "kvm"
    cfg.update(inst)
    with pytest.raises(errors.OpPrereqError, match="requires specifying a secondary"):
        _set_params(cfg, mirror_rpc(False), disk_template="mirror")
    with pytest.raises(errors.OpPrereqError, match="same as the primary"):
        _set_params(cfg, mirror_rpc(False), disk_template="mirror",
                    remote_node="node1.example")
    with pytest.raises(errors.OpPrereqError, match="is running"):
        _set_params(cfg, mirror_rpc(True), disk_template="mirror",
                    remote_node="node2.example")
    missing = mirror_rpc(False, handlers={"storage_check": lambda n, a: ["socat missing"]})
    with pytest.raises(errors.OpPrereqError, match="socat missing"):
        _set_params(cfg, missing, disk_template="mirror", remote_node="node2.example")


# ---- grow-disk and adding disks -----------------------------------------------------------------

def _grow(cfg, rpc, amount=32):
    op = opcodes.OpInstanceGrowDisk(instance_name="m1", disk=0, amount=amount)
    return run_lu(cfg, op, rpc, ist)


def test_grow_running_resizes_export_and_resyncs(cfg):
    add_mirror(cfg, active=True)
    rpc = mirror_rpc(True, [[{"state": "degraded", "percent": 99.0}], [IN_SYNC]])
    lu, _ = _grow(cfg, rpc)
    grows = [(n.split(".")[0], a["disk"]["dev_type"], a["dryrun"], a["backingstore"])
             for p, n, a in rpc.calls if p == "blockdev_grow"]
    assert grows == [("node1", "file", True, True), ("node2", "file", True, True),
                     ("node1", "file", False, True), ("node2", "file", False, True),
                     ("node2", "mirror", False, False)]
    assert ("instance_replication_start", "node1") in seq(rpc)
    disk = cfg.get_instance_by_name("m1").disks[0]
    assert disk.size == 96 and disk.children[0].size == 96
    assert "* resynchronising disk/0 after the resize" in lu.test_log


def test_grow_stopped_keeps_the_marker(cfg):
    add_mirror(cfg)
    rpc = mirror_rpc(False)
    _grow(cfg, rpc)
    assert [p for p, _n, _a in rpc.calls if p != "instance_info"] == ["blockdev_grow"] * 4
    add_mirror(cfg, name="m2", active=True)
    rpc = mirror_rpc(False)
    run_lu(cfg, opcodes.OpInstanceGrowDisk(instance_name="m2", disk=0, amount=32), rpc, ist)
    assert seq(rpc, skip=ORDINARY + ("blockdev_grow",)) == [
        ("blockdev_sync_status", "node2"), ("mirror_set_consistent", "node2")]
    assert args_of(rpc, "mirror_set_consistent")[0]["consistent"] is True


def test_grow_stops_an_export_it_cannot_resize(cfg):
    add_mirror(cfg, active=True)
    rpc = mirror_rpc(False, handlers={"blockdev_grow": lambda n, a: RuntimeError(
        "busy") if not a["backingstore"] else None, "blockdev_sync_status": lambda n, a: [
            {"is_degraded": True}]})
    lu, _ = _grow(cfg, rpc)
    assert ("blockdev_shutdown", "node2") in seq(rpc)
    assert "mirror_set_consistent" not in [p for p, _n, _a in rpc.calls]
    assert any("Resizing the export of disk/0 on node node2.example failed" in w
               for w in lu.test_log)


def test_add_disk_to_mirror_instance(cfg):
    add_mirror(cfg)
    rpc = mirror_rpc(False)
    run_lu(cfg, opcodes.OpInstanceSetParams(instance_name="m1", disks=[["add", {"size": 32}]]),
           rpc, instance_set_params)
    inst = cfg.get_instance_by_name("m1")
    new = inst.disks[1]
    assert new.dev_type == "mirror" and new.logical_id[:2] == ["u1", "u2"]
    assert new.logical_id[2] != inst.disks[0].logical_id[2]
    assert seq(rpc) == [("blockdev_create", "node2"), ("blockdev_create", "node1"),
                        ("mirror_set_consistent", "node2"),
                        ("blockdev_shutdown", "node2"), ("blockdev_shutdown", "node1")]
    for proc in ("mirror_set_consistent", "blockdev_shutdown"):
        assert [d["uuid"] for d in args_of(rpc, proc)[0]["disks"]] == [new.uuid]
    assert instance_mirror.secondary_uuid(inst) == "u2"


# ---- node side: dropping replication jobs ----------------------------------------------------

class Monitor:
    """Jobs end one QMP event after their cancel."""

    def __init__(self, jobs, nodes, ends=True):
        self.jobs, self.nodes, self.ends, self.calls = jobs, nodes, ends, []

    def execute(self, command, arguments=None, timeout=None):
        self.calls.append((command, arguments))
        if command == "query-block-jobs":
            return [dict(j) for j in self.jobs]
        if command == "query-named-block-nodes":
            return [{"node-name": n} for n in self.nodes]
        if command == "block-job-cancel":
            for job in self.jobs:
                if job["device"] == arguments["device"]:
                    job["cancelling"] = True
        return {}

    def wait_event(self, names, timeout):
        if not self.ends:
            return None
        self.jobs = [j for j in self.jobs if not j.get("cancelling")]
        return {"event": "BLOCK_JOB_CANCELLED"}


def test_drop_jobs_cancels_waits_and_deletes_targets():
    mon = Monitor([{"device": "corral-rep-disk0", "status": "ready"},
                   {"device": "corral-rep-disk1", "status": "standby", "paused": True},
                   {"device": "corral-rep-disk2", "status": "ready"}],
                  ["disk0-mirror", "disk1-mirror", "disk2-mirror"])
    replication.drop_jobs(mon, [0, 1])
    issued = [(c, a) for c, a in mon.calls if not c.startswith("query")]
    assert issued == [("block-job-cancel", {"device": "corral-rep-disk0", "force": True}),
                      ("block-job-cancel", {"device": "corral-rep-disk1", "force": True}),
                      ("blockdev-del", {"node-name": "disk0-mirror"}),
                      ("blockdev-del", {"node-name": "disk1-mirror"})]
    assert [j["device"] for j in mon.jobs] == ["corral-rep-disk2"]
    replication.drop_jobs(Monitor([], []), [0])  # idempotent: nothing to drop


def test_drop_jobs_gives_up_on_a_job_that_does_not_end():
    mon = Monitor([{"device": "corral-rep-disk0", "status": "ready"}], [], ends=False)
    with pytest.raises(errors.HypervisorError, match="corral-rep-disk0 did not end"):
        replication.drop_jobs(mon, [0], timeout=0.1)


def test_add_disk_to_running_mirror_instance_waits_for_next_start(cfg):
    """As without hotplug for any template (and as Ganeti does): the disk is made on
    both nodes (all zeroes, so consistent) and the running QEMU, which replicates
    only the disks it has, gets it at its next start; its processes stay up."""
    add_mirror(cfg, active=True)
    rpc = mirror_rpc(True, [[IN_SYNC]])
    run_lu(cfg, opcodes.OpInstanceSetParams(instance_name="m1", disks=[["add", {"size": 32}]]),
           rpc, instance_set_params)
    new = cfg.get_instance_by_name("m1").disks[1]
    assert ("blockdev_create", "node2") in seq(rpc) and ("blockdev_create", "node1") in seq(rpc)
    assert [d["uuid"] for d in args_of(rpc, "mirror_set_consistent")[0]["disks"]] == [new.uuid]
    assert "blockdev_shutdown" not in [p for p, _n, _a in rpc.calls]
