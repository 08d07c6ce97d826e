"""Master side of the storage issue with a fake RPC layer: DRBD disk objects,
minors/ports/secrets, the RPC sequences of create, replace-disks and template
conversion, the storage listings and verify-disks."""

import re

import pytest

from corral import constants, errors, objects, opcodes
from corral.backend import disks as bdisks
from corral.cmdlib import instance_create, instance_replace_disks, instance_set_params
from corral.cmdlib import instance_storage as ist
from corral.cmdlib import node_storage, verify_disks
from corral.rpc.client import RpcResult
from test_node_roles import make_cfg

OK_STATUS = {"sync_percent": None, "estimated_time": None, "is_degraded": False,
             "ldisk_status": "okay"}


class FakeRpc:
    """Records (procedure, node, args); answers from ``handlers[proc](node, args)``."""

    def __init__(self, handlers=None):
        self.calls: list[tuple[str, str, dict]] = []
        self.handlers = handlers or {}

    def call(self, proc, nodes, args, timeout=None):
        out = {}
        for node in nodes:
            self.calls.append((proc, node, args))
            handler = self.handlers.get(proc)
            answer = handler(node, args) if handler else _default(proc, args)
            if isinstance(answer, Exception):
                out[node] = RpcResult(node, fail_msg=str(answer))
            else:
                out[node] = RpcResult(node, data=answer)
        return out

    def call_one(self, proc, node, args, timeout=None):
        return self.call(proc, [node], args, timeout)[node]

    def seq(self, skip=("blockdev_sync_status",)):
        return [(p, n) for p, n, _a in self.calls if p not in skip]


def _default(proc, args):
    if proc == "blockdev_sync_status":
        return [dict(OK_STATUS) for _ in args["disks"]]
    if proc == "storage_check":
        return []
    return None


class FakeGlm:
    def owned(self, owner, level):
        return set()

    def release(self, owner, level, names=None):
        pass


class FakeCbs:
    job_id = 42

    def check_cancel(self):
        pass


class FakeProc:
    owner = object()
    cbs = FakeCbs()


class FakeContext:
    def __init__(self, cfg, rpc):
        self.cfg, self.rpc, self.glm = cfg, rpc, FakeGlm()


def make_lu(cfg, op, rpc, module):
    lu_class = getattr(module, "LU" + type(op).__name__[2:])
    log: list[str] = []
    lu = lu_class(FakeProc(), op, FakeContext(cfg, rpc), log.append)
    lu.test_log = log
    return lu


def run_lu(cfg, op, rpc, module):
    lu = make_lu(cfg, op, rpc, module)
    lu.expand_names()
    lu.check_prereq()
    result = lu.exec(lu.test_log.append)
    return lu, result


@pytest.fixture
def cfg(tmp_path):
    cfg = make_cfg(tmp_path, count=3)
    cluster = cfg.get_cluster_info()
    cluster.enabled_disk_templates = ["drbd", "plain", "file"]
    cluster.enabled_hypervisors = ["fake"]
    cluster.volume_group_name = "xenvg"
    cluster.file_storage_dir = str(tmp_path / "file")
    for i in (1, 2, 3):
        node = cfg.get_node_by_name("node%d.example" % i)
        node.secondary_ip = "192.0.2.%d" % i
    cfg.update(cluster)
    return cfg


def add_drbd_instance(cfg, name="inst1", pnode="u1", snode="u2", ndisks=1, active=True):
    cluster = cfg.get_cluster_info()
    disks = ist.generate_disks(cluster, "drbd", name, [{"size": 1024}] * ndisks, pnode,
                               snode_uuid=snode)
    ist.allocate_drbd_ids(disks, ist.DrbdAllocator(cfg, "setup"))
    inst = objects.Instance(uuid="i-" + name, name=name, primary_node=pnode,
                            secondary_nodes=[snode], disks=disks, disk_template="drbd",
                            hypervisor="fake", os="busybox", disks_active=active)
    cfg.add_instance(inst, "setup")
    return cfg.get_instance_by_name(name)


# ---- disk objects, minors, ports, secrets ------------------------------------------------

def test_drbd_disk_objects_and_allocation(cfg):
    cluster = cfg.get_cluster_info()
    disks = ist.generate_disks(cluster, "drbd", "i1", [{"size": 1024}, {"size": 512,
                                                                          "metavg": "metavg"}],
                               "u1", snode_uuid="u2")
    first = disks[0]
    assert first.logical_id == ["u1", "u2", None, None, None, None]
    data, meta = first.children
    assert data.logical_id[0] == "xenvg" and data.size == 1024
    assert re.match(r"^[0-9a-f-]{36}\.disk0_data$", data.logical_id[1])
    assert meta.logical_id[1] == data.logical_id[1].replace("_data", "_meta")
    assert meta.size == constants.DRBD_META_SIZE and meta.logical_id[0] == "xenvg"
    assert disks[1].children[1].logical_id[0] == "metavg"
    assert disks[1].iv_name == "disk/1" and first.nodes == ["u1", "u2"]
    ist.allocate_drbd_ids(disks, ist.DrbdAllocator(cfg, "job1"))
    assert [d.logical_id[2:5] for d in disks] == [[11000, 0, 0], [11001, 1, 1]]
    assert all(re.match(r"^[0-9a-f]{40}$", d.logical_id[5]) for d in disks)
    assert disks[0].logical_id[5] != disks[1].logical_id[5]
    # another job gets the next free minors while job1's are reserved
    assert cfg.allocate_drbd_minors("job2", ["u1", "u3"]) == [2, 0]


def test_drbd_needs_a_different_secondary(cfg):
    cluster = cfg.get_cluster_info()
    for snode in (None, "u1"):
        with pytest.raises(errors.OpPrereqError, match="needs a secondary node"):
            ist.generate_disks(cluster, "drbd", "i", [{"size": 1}], "u1", snode_uuid=snode)


def test_ext_and_rbd_logical_ids(cfg):
    cluster = cfg.get_cluster_info()
    ext = ist.generate_disks(cluster, "ext", "i", [{"size": 8, "provider": "pvd",
                                                     "pool": "fast"}], "u1")[0]
    assert ext.logical_id[0] == "pvd" and ext.logical_id[1].endswith(".disk0")
    assert ext.params == {"ext_params": {"pool": "fast"}}
    with pytest.raises(errors.OpPrereqError, match="provider=NAME"):
        ist.generate_disks(cluster, "ext", "i", [{"size": 8}], "u1")
    rbd = ist.generate_disks(cluster, "rbd", "i", [{"size": 8}], "u1", base_index=3)[0]
    assert rbd.logical_id[0] == "rbd" and rbd.logical_id[1].endswith(".rbd.disk3")


def test_disk_rpc_carries_both_ends_and_each_node_finds_its_side(cfg):
    inst = add_drbd_instance(cfg)
    wire = ist.disk_rpc(cfg, inst.disks[0])
    params = wire["params"]
    assert params["drbd_nodes"] == {"u1": ["node1.example", "192.0.2.1"],
                                    "u2": ["node2.example", "192.0.2.2"]}
    assert params["resync-rate"] == 61440 and params["protocol"] == "C"
    assert [c["dev_type"] for c in wire["children"]] == ["plain", "plain"]
    on_b = bdisks.localize(wire, hostname="node2.example")["params"]
    assert (on_b["local_node"], on_b["local_ip"], on_b["remote_ip"]) == \
        ("u2", "192.0.2.2", "192.0.2.1")
    wire["params"]["standalone"] = True
    alone = bdisks.localize(wire, hostname="node1.example")["params"]
    assert alone["local_node"] == "u1" and "local_ip" not in alone
    with pytest.raises(errors.BlockDeviceError, match="neither end"):
        bdisks.localize(wire, hostname="node3.example")


def test_space_needed_counts_data_and_meta():
    data = objects.Disk(dev_type="plain", logical_id=["vg", "d"], size=100)
    meta = objects.Disk(dev_type="plain", logical_id=["mvg", "m"], size=128)
    drbd = objects.Disk(dev_type="drbd", logical_id=["a"] * 6, size=100, children=[data, meta])
    plain = objects.Disk(dev_type="plain", logical_id=["vg", "p"], size=50)
    assert ist.space_needed([drbd, plain]) == {"vg": 150, "mvg": 128}


# ---- node operations ---------------------------------------------------------------------

class _LU:
    def __init__(self, cfg, rpc):
        self.cfg, self.rpc, self.warnings = cfg, rpc, []

    def log_warning(self, msg):
        self.warnings.append(msg)

    def log_info(self, msg):
        self.warnings.append(msg)


def test_create_drbd_secondary_first_and_undone_on_failure(cfg):
    inst = add_drbd_instance(cfg)
    rpc = FakeRpc()
    ist.create_disks(_LU(cfg, rpc), inst)
    assert [(p, n, a["on_primary"]) for p, n, a in rpc.calls] == [
        ("blockdev_create", "node2.example", False), ("blockdev_create", "node1.example", True)]
    rpc = FakeRpc({"blockdev_create": lambda node, a: RuntimeError("no space")
                   if node == "node1.example" else None})
    with pytest.raises(errors.OpExecError, match="node1.example: no space"):
        ist.create_disks(_LU(cfg, rpc), inst)
    assert rpc.seq() == [("blockdev_create", "node2.example"),
                         ("blockdev_create", "node1.example"),
                         ("blockdev_remove", "node2.example")]


def test_assemble_and_shutdown_touch_both_nodes(cfg):
    inst = add_drbd_instance(cfg)
    rpc = FakeRpc({"blockdev_assemble": lambda node, a: ["/dev/drbd0"]})
    result = ist.assemble_disks(_LU(cfg, rpc), inst)
    assert result == [["node1.example", "disk/0", "/dev/drbd0"]]
    assert [(n, a.get("as_primary", True)) for _p, n, a in rpc.calls] == [
        ("node2.example", False), ("node1.example", True)]
    rpc = FakeRpc()
    ist.shutdown_disks(_LU(cfg, rpc), inst)
    ist.remove_disks(_LU(cfg, rpc), inst)
    assert rpc.seq() == [("blockdev_shutdown", "node1.example"),
                         ("blockdev_shutdown", "node2.example"),
                         ("blockdev_remove", "node1.example"),
                         ("blockdev_remove", "node2.example")]


def test_wait_for_sync_reports_progress(cfg, monkeypatch):
    inst = add_drbd_instance(cfg)
    answers = [[{"sync_percent": 42.5, "estimated_time": 75, "is_degraded": True,
                 "ldisk_status": "syncing"}], [dict(OK_STATUS)]]
    rpc = FakeRpc({"blockdev_sync_status": lambda node, a: answers.pop(0)})
    monkeypatch.setattr(ist, "SYNC_POLL_SECONDS", 0.01)
    lu = _LU(cfg, rpc)
    assert ist.wait_for_sync(lu, inst) is True
    assert "- device disk/0: 42.50% done, 1m 15s remaining (estimated)" in lu.warnings
    assert "Instance inst1's disks are in sync" in lu.warnings
    rpc = FakeRpc({"blockdev_sync_status": lambda node, a: [dict(OK_STATUS, is_degraded=True)]})
    assert ist.wait_for_sync(_LU(cfg, rpc), inst) is False


# ---- instance create refuses what the nodes cannot do ------------------------------------------

def _create_op(**kw):
    args = dict(instance_name="new1", mode="create", disks=[{"size": 256}], nics=[],
                disk_template="drbd", os_type="busybox", name_check=False, ip_check=False,
                pnode="node1.example", hypervisor="fake")
    args.update(kw)
    return opcodes.OpInstanceCreate(**args)


def test_create_drbd_refused_when_module_missing(cfg):
    msg = ("drbd: DRBD kernel module not loaded (/proc/drbd missing); install drbd-utils and"
           " load the drbd 8.x module")
    rpc = FakeRpc({"storage_check": lambda node, a: [msg] if "drbd" in a["dev_types"] else []})
    for op in (_create_op(), _create_op(snode="node2.example")):
        cfg.release_reservations(FakeCbs.job_id)
        lu = make_lu(cfg, op, rpc, instance_create)
        lu.expand_names()
        with pytest.raises(errors.OpPrereqError) as err:
            lu.check_prereq()
        assert "Disk template drbd cannot be used: node node1.example: " + msg in str(err.value)
        assert err.value.args[1] == errors.ECODE_ENVIRON
    checked = [a for p, _n, a in rpc.calls if p == "storage_check"]
    assert checked[-1]["vgs"] == {"xenvg": 256 + 128}


def test_create_drbd_without_secondary(cfg):
    lu = make_lu(cfg, _create_op(), FakeRpc(), instance_create)
    lu.expand_names()
    with pytest.raises(errors.OpPrereqError, match="need a mirror node"):
        lu.check_prereq()


# ---- replace-disks ------------------------------------------------------------------------------

def _replace(cfg, rpc, **kw):
    op = opcodes.OpInstanceReplaceDisks(instance_name="inst1", **kw)
    return run_lu(cfg, op, rpc, instance_replace_disks)


def test_replace_on_secondary_sequence(cfg, monkeypatch):
    inst = add_drbd_instance(cfg, ndisks=2)
    before = [d.to_dict() for d in inst.disks]
    rpc = FakeRpc()
    lu, _ = _replace(cfg, rpc, mode="replace_on_secondary", disks=[1])
    assert rpc.seq(skip=()) == [
        ("storage_check", "node2.example"),
        ("blockdev_sync_status", "node1.example"), ("blockdev_sync_status", "node2.example"),
        ("blockdev_sync_status", "node1.example"),
        ("blockdev_create", "node2.example"), ("drbd_remove_children", "node2.example"),
        ("blockdev_rename", "node2.example"), ("drbd_add_children", "node2.example"),
        ("blockdev_sync_status", "node1.example"), ("blockdev_remove", "node2.example")]
    calls = {p: a for p, _n, a in rpc.calls}
    new = calls["blockdev_create"]["disks"]
    assert [d["size"] for d in new] == [1024, 128]
    renames = calls["blockdev_rename"]["renames"]
    old_data = inst.disks[1].children[0].logical_id
    assert renames[0][0]["logical_id"] == old_data
    assert re.match(re.escape(old_data[1]) + r"_replaced-\d+$", renames[0][1][1])
    assert renames[1] == [new[0], old_data]  # the new volume takes the old name
    removed = calls["blockdev_remove"]["disks"]
    assert [d["logical_id"] for d in removed] == [r[1] for r in renames[::2]]
    assert [d.to_dict() for d in cfg.get_instance_by_name("inst1").disks] == before
    assert "STEP 6/6 Removing old storage" in lu.test_log


def test_replace_new_secondary_sequence(cfg):
    inst = add_drbd_instance(cfg)
    old = inst.disks[0].to_dict()
    rpc = FakeRpc()
    _replace(cfg, rpc, mode="replace_new_secondary", remote_node="node3.example")
    assert rpc.seq() == [
        ("storage_check", "node3.example"), ("blockdev_create", "node3.example"),
        ("blockdev_shutdown", "node2.example"), ("drbd_disconnect_net", "node1.example"),
        ("drbd_attach_net", "node1.example"), ("drbd_attach_net", "node3.example"),
        ("blockdev_remove", "node2.example")]
    created = [a for p, _n, a in rpc.calls if p == "blockdev_create"][0]["disks"][0]
    assert created["params"]["standalone"] is True
    inst = cfg.get_instance_by_name("inst1")
    lid = inst.disks[0].logical_id
    assert lid[:2] == ["u1", "u3"] and lid[2] == old["logical_id"][2]
    assert lid[3] == old["logical_id"][3] and lid[4] == 0 and lid[5] == old["logical_id"][5]
    assert inst.secondary_nodes == ["u3"]
    assert inst.disks[0].children[0].logical_id != old["children"][0]["logical_id"]
    removed = [a for p, _n, a in rpc.calls if p == "blockdev_remove"][0]["disks"]
    assert [d["logical_id"] for d in removed] == [c["logical_id"] for c in old["children"]]


def test_replace_auto_picks_the_faulty_node(cfg):
    add_drbd_instance(cfg)
    faulty = dict(OK_STATUS, ldisk_status="faulty", is_degraded=True)
    rpc = FakeRpc({"blockdev_sync_status": lambda node, a: [
        faulty if node == "node2.example" else dict(OK_STATUS)]})
    lu = make_lu(cfg, opcodes.OpInstanceReplaceDisks(instance_name="inst1",
                                                     mode="replace_auto"), rpc,
                 instance_replace_disks)
    lu.expand_names()
    lu.check_prereq()
    assert lu.mode == "replace_on_secondary" and lu.target == "u2"


def test_replace_refusals(cfg):
    add_drbd_instance(cfg)
    with pytest.raises(errors.OpPrereqError, match="already the secondary"):
        _replace(cfg, FakeRpc(), mode="replace_new_secondary", remote_node="node2.example")
    with pytest.raises(errors.OpPrereqError, match="only go with changing"):
        _replace(cfg, FakeRpc(), mode="replace_on_primary", remote_node="node3.example")
    degraded = dict(OK_STATUS, ldisk_status="faulty")
    rpc = FakeRpc({"blockdev_sync_status": lambda node, a: [
        degraded if node == "node1.example" else dict(OK_STATUS)]})
    with pytest.raises(errors.OpExecError, match="node1.example has degraded storage"):
        _replace(cfg, rpc, mode="replace_on_secondary")
    assert "blockdev_create" not in [p for p, _n, _a in rpc.calls]
    cfg.add_instance(objects.Instance(uuid="i-f", name="filer", primary_node="u1",
                                      disk_template="file", hypervisor="fake"), "x")
    with pytest.raises(errors.OpPrereqError, match="only run replace disks for DRBD8"):
        run_lu(cfg, opcodes.OpInstanceReplaceDisks(instance_name="filer",
                                                   mode="replace_on_primary"),
               FakeRpc(), instance_replace_disks)


# ---- template conversion ---------------------------------------------------------------------

def _stopped(node, args):
    return None  # instance_info: not running


def test_convert_plain_to_drbd_and_back(cfg):
    cluster = cfg.get_cluster_info()
    disks = ist.generate_disks(cluster, "plain", "p1", [{"size": 300}], "u1")
    cfg.add_instance(objects.Instance(uuid="i-p1", name="p1", primary_node="u1",
                                      disks=disks, disk_template="plain", hypervisor="fake"),
                     "x")
    plain_lid = list(disks[0].logical_id)
    rpc = FakeRpc({"instance_info": _stopped})
    run_lu(cfg, opcodes.OpInstanceSetParams(instance_name="p1", disk_template="drbd",
                                            remote_node="node2.example"), rpc,
           instance_set_params)
    assert rpc.seq(skip=("blockdev_sync_status", "instance_info")) == [
        ("storage_check", "node1.example"), ("storage_check", "node2.example"),
        ("blockdev_shutdown", "node1.example"),
        ("blockdev_create", "node1.example"), ("blockdev_create", "node2.example"),
        ("blockdev_rename", "node1.example"), ("blockdev_create", "node1.example"),
        ("blockdev_shutdown", "node1.example"), ("blockdev_shutdown", "node2.example")]
    creates = [a for p, _n, a in rpc.calls if p == "blockdev_create"]
    assert creates[0]["disks"][0]["size"] == 128  # only meta on the primary
    assert creates[2]["children_exist"] is True and creates[2]["on_primary"] is True
    inst = cfg.get_instance_by_name("p1")
    assert inst.disk_template == "drbd" and inst.secondary_nodes == ["u2"]
    rename = [a for p, _n, a in rpc.calls if p == "blockdev_rename"][0]["renames"][0]
    assert rename[0]["logical_id"] == plain_lid
    assert rename[1] == inst.disks[0].children[0].logical_id
    port = inst.disks[0].logical_id[2]
    data_lid = inst.disks[0].children[0].logical_id
    rpc = FakeRpc({"instance_info": _stopped})
    run_lu(cfg, opcodes.OpInstanceSetParams(instance_name="p1", disk_template="plain"), rpc,
           instance_set_params)
    inst = cfg.get_instance_by_name("p1")
    assert inst.disk_template == "plain" and inst.secondary_nodes == []
    assert inst.disks[0].logical_id == data_lid and inst.disks[0].size == 300
    assert port in cfg.get_cluster_info().tcpudp_port_pool
    removes = [(n, [d["dev_type"] for d in a["disks"]]) for p, n, a in rpc.calls
               if p == "blockdev_remove"]
    assert removes == [("node2.example", ["drbd"]), ("node1.example", ["plain"])]


def test_convert_refusals(cfg):
    cfg.add_instance(objects.Instance(uuid="i-f", name="f1", primary_node="u1",
                                      disk_template="file", hypervisor="fake"), "x")
    rpc = FakeRpc({"instance_info": _stopped})
    with pytest.raises(errors.OpPrereqError, match="Unsupported disk template conversion"):
        run_lu(cfg, opcodes.OpInstanceSetParams(instance_name="f1", disk_template="drbd",
                                                remote_node="node2.example"), rpc,
               instance_set_params)
    disks = ist.generate_disks(cfg.get_cluster_info(), "plain", "p2", [{"size": 3}], "u1")
    cfg.add_instance(objects.Instance(uuid="i-p2", name="p2", primary_node="u1", disks=disks,
                                      disk_template="plain", hypervisor="fake"), "x")
    with pytest.raises(errors.OpPrereqError, match="requires specifying a secondary"):
        run_lu(cfg, opcodes.OpInstanceSetParams(instance_name="p2", disk_template="drbd"),
               rpc, instance_set_params)
    running = FakeRpc({"instance_info": lambda n, a: {"state": "running"}})
    with pytest.raises(errors.OpPrereqError, match="is running"):
        run_lu(cfg, opcodes.OpInstanceSetParams(instance_name="p2", disk_template="drbd",
                                                remote_node="node2.example"), running,
               instance_set_params)


# ---- listings and verify-disks ----------------------------------------------------------------

def test_volumes_rows_name_their_instance(cfg):
    inst = add_drbd_instance(cfg)
    data = inst.disks[0].children[0].logical_id
    rpc = FakeRpc({"node_volumes": lambda node, a: [
        {"name": data[1], "vg": "xenvg", "size": 1024, "dev": "/dev/loop0"},
        {"name": "root", "vg": "xenvg", "size": 10, "dev": "/dev/loop0"}]})
    op = opcodes.OpNodeQueryvols(output_fields=["node", "name", "instance"],
                                 nodes=["node2.example"])
    _lu, rows = run_lu(cfg, op, rpc, node_storage)
    assert sorted(rows) == [["node2.example", data[1], "inst1"], ["node2.example", "root", "-"]]
    with pytest.raises(errors.OpPrereqError, match="Unknown output fields selected: bogus"):
        run_lu(cfg, opcodes.OpNodeQueryvols(output_fields=["bogus"]), rpc, node_storage)


def test_list_storage_default_type_and_rows(cfg):
    def answer(node, args):
        return [{"name": "xenvg", "size": 1000, "used": 400, "free": 600, "allocatable": True}]
    rpc = FakeRpc({"storage_list": answer})
    op = opcodes.OpNodeQueryStorage(output_fields=list(node_storage.STORAGE_FIELDS))
    _lu, rows = run_lu(cfg, op, rpc, node_storage)
    assert rows[0] == ["node1.example", "lvm-vg", "xenvg", 1000, 400, 600, True]
    assert len(rows) == 3 and rpc.calls[0][2]["storage_type"] == "lvm-vg"
    op = opcodes.OpNodeQueryStorage(output_fields=["name"], storage_type="file")
    run_lu(cfg, op, rpc, node_storage)
    assert rpc.calls[-1][2]["paths"] == [cfg.get_cluster_info().file_storage_dir]


def test_modify_and_repair_storage_checks(cfg):
    rpc = FakeRpc()
    run_lu(cfg, opcodes.OpNodeModifyStorage(node_name="node1.example", storage_type="lvm-pv",
                                            name="/dev/sdb", changes={"allocatable": False}),
           rpc, node_storage)
    assert rpc.calls[-1][:2] == ("storage_modify", "node1.example")
    with pytest.raises(errors.OpPrereqError, match="can not be modified"):
        run_lu(cfg, opcodes.OpNodeModifyStorage(node_name="node1.example",
                                                storage_type="lvm-vg", name="xenvg",
                                                changes={"allocatable": False}),
               rpc, node_storage)
    with pytest.raises(errors.OpPrereqError, match="can not be repaired"):
        run_lu(cfg, opcodes.OpRepairNodeStorage(node_name="node1.example",
                                                storage_type="file", name="x"), rpc,
               node_storage)
    add_drbd_instance(cfg)
    faulty = FakeRpc({"blockdev_sync_status": lambda n, a: [dict(OK_STATUS,
                                                                 ldisk_status="faulty")]})
    with pytest.raises(errors.OpPrereqError, match="has faulty disks on node 'node2.example'"):
        run_lu(cfg, opcodes.OpRepairNodeStorage(node_name="node1.example",
                                                storage_type="lvm-vg", name="xenvg"), faulty,
               node_storage)
    run_lu(cfg, opcodes.OpRepairNodeStorage(node_name="node1.example", storage_type="lvm-vg",
                                            name="xenvg", ignore_consistency=True), rpc,
           node_storage)
    assert rpc.calls[-1][:2] == ("storage_repair", "node1.example")


def test_group_verify_disks_finds_inactive_and_missing(cfg):
    inst = add_drbd_instance(cfg)
    add_drbd_instance(cfg, name="inst2", pnode="u2", snode="u3")
    vg_lv = "xenvg/" + inst.disks[0].children[0].logical_id[1]
    meta = "xenvg/" + inst.disks[0].children[1].logical_id[1]

    def lvs(node, args):
        if node == "node1.example":
            return {vg_lv: {"size": 1024, "active": False}, meta: {"size": 128, "active": True}}
        if node == "node3.example":
            return RuntimeError("lvs crashed")
        return {}
    rpc = FakeRpc({"lv_list": lvs})
    _lu, (bad, need, missing) = run_lu(cfg, opcodes.OpGroupVerifyDisks(group_name="default"),
                                       rpc, verify_disks)
    assert bad == {"node3.example": "lvs crashed"}
    assert "inst1" in need
    assert sorted(missing["inst1"]) == [["node2.example", vg_lv], ["node2.example", meta]]
    assert ["node3.example", "xenvg/" + cfg.get_instance_by_name("inst2").disks[0]
            .children[0].logical_id[1]] in missing["inst2"]
    _lu, result = run_lu(cfg, opcodes.OpClusterVerifyDisks(), rpc, verify_disks)
    assert [op.OP_ID for job in result.jobs for op in job] == ["OP_GROUP_VERIFY_DISKS"]


def test_repair_disk_sizes(cfg):
    inst = add_drbd_instance(cfg)
    rpc = FakeRpc({"blockdev_getsize": lambda node, a: [2048]})
    _lu, changes = run_lu(cfg, opcodes.OpClusterRepairDiskSizes(instances=["inst1"]), rpc,
                          verify_disks)
    assert changes == [["inst1", 0, "size", 2048]]
    inst = cfg.get_instance_by_name("inst1")
    assert inst.disks[0].size == 2048 and inst.disks[0].children[0].size == 2048


def test_storage_warnings_for_node_add(cfg):
    rpc = FakeRpc({"storage_check": lambda node, a: ["drbd: DRBD kernel module not loaded"]})
    warnings = node_storage.storage_warnings(_LU(cfg, rpc), "node3.example")
    assert rpc.calls[0][2]["dev_types"] == ["drbd", "plain"]
    assert warnings == ["node node3.example cannot host drbd disks: drbd: DRBD kernel module"
                        " not loaded"]
    cfg.get_cluster_info().enabled_disk_templates = ["file"]
    assert node_storage.storage_warnings(_LU(cfg, FakeRpc()), "node3.example") == []


def test_add_disk_to_drbd_instance(cfg):
    inst = add_drbd_instance(cfg)
    rpc = FakeRpc({"instance_info": _stopped})
    run_lu(cfg, opcodes.OpInstanceSetParams(instance_name="inst1",
                                            disks=[["add", {"size": 64}]]), rpc,
           instance_set_params)
    inst = cfg.get_instance_by_name("inst1")
    new = inst.disks[1]
    assert new.dev_type == "drbd" and new.logical_id[:2] == ["u1", "u2"]
    assert new.logical_id[3:5] == [1, 1] and new.logical_id[2] != inst.disks[0].logical_id[2]
    assert [(p, n) for p, n, _a in rpc.calls if p in ("blockdev_create", "storage_check")] == [
        ("storage_check", "node1.example"), ("storage_check", "node2.example"),
        ("blockdev_create", "node2.example"), ("blockdev_create", "node1.example")]
