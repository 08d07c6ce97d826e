"""Iallocator protocol: input building, plugin running (node side), result validation."""

import json
import os
import stat

import pytest

from corral import config, errors, iallocator, objects
from corral.backend import iallocator as backend_ial
from corral.rpc.client import RpcResult

HAIL = "/usr/lib/ganeti/iallocators/hail"


def make_cfg(default_iallocator=""):
    cluster = objects.Cluster(
        cluster_name="c.example", uuid="cu", master_node="n1u", enabled_hypervisors=["fake"],
        enabled_disk_templates=["sharedfile", "file", "diskless", "drbd", "plain"],
        file_storage_dir="/srv/f", shared_file_storage_dir="/srv/s",
        volume_group_name="xenvg", default_iallocator=default_iallocator, tags=["ct"])
    groups = {"g1": objects.NodeGroup(name="default", uuid="g1"),
              "g2": objects.NodeGroup(name="other", uuid="g2", alloc_policy="last_resort")}
    nodes = {}
    for i in range(1, 5):
        nodes["n%du" % i] = objects.Node(
            name="node%d.example" % i, uuid="n%du" % i, group="g1" if i < 4 else "g2",
            primary_ip="10.0.0.%d" % i, secondary_ip="10.0.1.%d" % i,
            master_candidate=i < 3, offline=(i == 4))
    insts = {
        "i1u": objects.Instance(
            name="i1.example", uuid="i1u", primary_node="n1u", os="busybox",
            hypervisor="fake", beparams={"maxmem": 256, "minmem": 256, "vcpus": 2},
            admin_state="up", disk_template="sharedfile",
            disks=[objects.Disk(dev_type="sharedfile", size=1024, uuid="d1")],
            nics=[objects.NIC(mac="aa:00:00:00:00:01", nicparams={"mode": "bridged",
                                                                  "link": "br0"})]),
        "i2u": objects.Instance(
            name="i2.example", uuid="i2u", primary_node="n2u", secondary_nodes=["n1u"],
            hypervisor="fake", beparams={"maxmem": 512}, admin_state="down",
            disk_template="drbd", disks=[objects.Disk(dev_type="drbd", size=2048, uuid="d2")]),
    }
    data = objects.ConfigData(cluster=cluster, nodes=nodes, nodegroups=groups,
                              instances=insts, serial_no=1)
    return config.ConfigWriter("/nonexistent/config.data", data)


def live():
    """node_info / all_instances_info answers of the three online nodes."""
    out = {}
    for i in range(1, 4):
        running = {"i1.example": {"memory": 256}} if i == 1 else {}
        out["node%d.example" % i] = {
            "info": {"memory_total": 1, "memory_free": 1, "memory_dom0": 1, "cpu_total": 1,
                     "hv": {"fake": {"memory_total": 8192, "memory_dom0": 512,
                                     "memory_free": 7680 - (256 if i == 1 else 0),
                                     "cpu_total": 4}},
                     "storage": [{"type": "sharedfile", "name": "/srv/s",
                                  "storage_size": 100000, "storage_free": 90000}]},
            "instances": running}
    return out


def alloc(name="new.example", template="sharedfile", **kw):
    return iallocator.AllocRequest(name, template, 512, 1, [{"size": 1024, "mode": "rw"}],
                                   [{"mac": "aa:00:00:00:00:02", "ip": None, "mode": "bridged",
                                     "link": "br0"}], "fake", os="busybox", **kw)


class FakeRpc:
    """Answers iallocator_runner by running the real backend function locally."""

    def __init__(self):
        self.calls = []

    def call_one(self, proc, node, args):
        self.calls.append((proc, node, args))
        try:
            return RpcResult(node, backend_ial.iallocator_runner(**args))
        except errors.GenericError as err:
            return RpcResult(node, fail_msg=str(err))


# ---- input ------------------------------------------------------------------------------

def test_input_has_every_key_of_the_protocol():
    cfg = make_cfg()
    data = iallocator.build_input(cfg, alloc(), live())
    assert set(data) == {"version", "cluster_name", "cluster_tags", "enabled_hypervisors",
                         "ipolicy", "nodegroups", "nodes", "instances", "request"}
    assert data["version"] == 2 and data["cluster_tags"] == ["ct"]
    assert set(data["nodegroups"]["g1"]) == {"name", "alloc_policy", "networks", "ipolicy",
                                             "tags"}
    assert data["nodegroups"]["g2"]["alloc_policy"] == "last_resort"
    assert {"minmax", "std", "disk-templates", "vcpu-ratio", "spindle-ratio"} <= \
        set(data["ipolicy"])
    static = {"tags", "primary_ip", "secondary_ip", "offline", "drained", "master_candidate",
              "group", "master_capable", "vm_capable", "ndparams"}
    dynamic = {"total_memory", "reserved_memory", "free_memory", "total_disk", "free_disk",
               "total_spindles", "free_spindles", "total_cpus", "reserved_cpus",
               "i_pri_memory", "i_pri_up_memory"}
    assert set(data["nodes"]["node1.example"]) == static | dynamic
    assert set(data["nodes"]["node4.example"]) == static  # offline: no live data
    assert {"exclusive_storage", "spindle_count"} <= set(data["nodes"]["node1.example"]
                                                         ["ndparams"])
    inst = data["instances"]["i1.example"]
    assert set(inst) == {"tags", "admin_state", "vcpus", "memory", "spindle_use", "os",
                         "nodes", "nics", "disks", "disk_template", "disks_active",
                         "hypervisor", "disk_space_total"}
    assert inst["nics"] == [{"mac": "aa:00:00:00:00:01", "ip": None, "mode": "bridged",
                             "link": "br0", "network": None, "bridge": "br0"}]
    assert data["instances"]["i2.example"]["nodes"] == ["node2.example", "node1.example"]
    assert data["instances"]["i2.example"]["disk_space_total"] == 2048 + 128
    req = data["request"]
    assert set(req) == {"type", "name", "disk_template", "group_name", "tags", "os", "vcpus",
                        "memory", "spindle_use", "disks", "disk_space_total", "nics",
                        "required_nodes", "hypervisor"}
    assert req["type"] == "allocate" and req["required_nodes"] == 1
    assert alloc(template="drbd").request_dict(cfg)["required_nodes"] == 2
    json.dumps(data)


def test_node_memory_books_stopped_instances():
    data = iallocator.build_input(make_cfg(), alloc(), live())
    n1 = data["nodes"]["node1.example"]
    # i1 runs with its full 256 MiB: nothing more to book.
    assert n1["free_memory"] == 7680 - 256 and n1["i_pri_memory"] == 256
    assert n1["total_memory"] == 8192 and n1["reserved_memory"] == 512
    assert n1["total_cpus"] == 4 and n1["free_disk"] == 90000
    n2 = data["nodes"]["node2.example"]
    # i2 (512 MiB) is stopped: its memory stays booked, but it is not "up".
    assert n2["free_memory"] == 7680 - 512
    assert n2["i_pri_memory"] == 512 and n2["i_pri_up_memory"] == 0


def test_other_request_types():
    cfg = make_cfg()
    assert iallocator.RelocRequest("i2.example", ["node1.example"]).request_dict(cfg) == {
        "type": "relocate", "name": "i2.example", "required_nodes": 1,
        "disk_space_total": 2176, "relocate_from": ["node1.example"]}
    assert iallocator.NodeEvacRequest(["i1.example"], "all").request_dict(cfg) == {
        "type": "node-evacuate", "instances": ["i1.example"], "evac_mode": "all"}
    assert iallocator.ChangeGroupRequest(["i1.example"], ["g2"]).request_dict(cfg) == {
        "type": "change-group", "instances": ["i1.example"], "target_groups": ["g2"]}
    multi = iallocator.MultiAllocRequest([alloc("a"), alloc("b")]).request_dict(cfg)
    assert multi["type"] == "multi-allocate" and [i["name"] for i in multi["instances"]] == \
        ["a", "b"] and all("type" not in i for i in multi["instances"])


def test_resolve_name():
    assert iallocator.resolve_name(make_cfg(), None) == "builtin"
    assert iallocator.resolve_name(make_cfg(), ".") == "builtin"
    assert iallocator.resolve_name(make_cfg("hail"), ".") == "hail"
    assert iallocator.resolve_name(make_cfg("hail"), "other") == "other"


# ---- result validation -----------------------------------------------------------------------

@pytest.mark.parametrize("result", [["node1.example", "node2.example"], "node1.example",
                                    ["nosuch.example"], []])
def test_allocate_result_checks(result):
    with pytest.raises(errors.OpExecError, match="iallocator returned invalid result"):
        alloc().check_result(make_cfg(), result)


def test_relocate_result_must_stay_in_the_group():
    cfg = make_cfg()
    req = iallocator.RelocRequest("i2.example", ["node1.example"])
    req.check_result(cfg, ["node3.example"])
    with pytest.raises(errors.OpExecError, match="differ from original groups"):
        req.check_result(cfg, ["node4.example"])


def test_evacuation_result_checks():
    cfg = make_cfg()
    req = iallocator.NodeEvacRequest(["i1.example", "i2.example"], "all")
    job = [{"OP_ID": "OP_INSTANCE_MIGRATE", "instance_name": "i1.example"}]
    req.check_result(cfg, [[["i1.example", "default", ["node2.example"]]],
                           [["i2.example", "no room"]], [job]])
    bad = [
        [[], [], []],  # instances missing
        [[["i1.example", "default", "node2"]], [["i2.example", None]], []],
        [[], [["i1.example", None], ["i2.example", 3]], []],
        [[], [["i1.example", None], ["i2.example", None]],
         [[{"OP_ID": "OP_INSTANCE_REMOVE", "instance_name": "i1.example"}]]],
        {"moved": []},
    ]
    for result in bad:
        with pytest.raises(errors.OpExecError, match="invalid result"):
            req.check_result(cfg, result)


def test_multi_alloc_result_checks():
    cfg = make_cfg()
    req = iallocator.MultiAllocRequest([alloc("a"), alloc("b")])
    req.check_result(cfg, [[["a", ["node1.example"]]], ["b"]])
    for result in ([[["a", ["node1.example", "node2.example"]]], []],
                   [[["zzz", ["node1.example"]]], []], [[], "b"]):
        with pytest.raises(errors.OpExecError, match="invalid result"):
            req.check_result(cfg, result)


# ---- running ------------------------------------------------------------------------------

def _plugin(directory, name, body):
    path = os.path.join(directory, name)
    with open(path, "w") as fh:
        fh.write("#!/bin/sh\n" + body)
    os.chmod(path, stat.S_IRWXU)
    return path


@pytest.fixture
def search_path(tmp_path, monkeypatch):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    monkeypatch.setenv("CORRAL_IALLOCATOR_SEARCH_PATH", "%s:%s" % (first, second))
    return str(first), str(second)


def test_builtin_runs_in_process():
    cfg = make_cfg()
    rpc = FakeRpc()
    ial = iallocator.IAllocator(cfg, rpc, alloc())
    ial.build(live())
    ial.run(None)
    assert ial.success and ial.result[0] in ("node1.example", "node2.example", "node3.example")
    assert rpc.calls == []


def test_external_plugin_protocol(search_path, tmp_path):
    first, second = search_path
    os.mkdir(os.path.join(first, "echoargs"))  # a directory is skipped
    log = tmp_path / "argv"
    _plugin(second, "echoargs",
            'echo "$@" > %s; cp "$1" %s.in\n'
            'echo \'{"success": true, "info": "ok", "result": ["node3.example"]}\'\n'
            % (log, log))
    cfg = make_cfg()
    cfg.get_cluster_info().default_iallocator_params = {"foo": "bar", "flag": None}
    rpc = FakeRpc()
    ial = iallocator.IAllocator(cfg, rpc, alloc())
    ial.build(live())
    ial.run("echoargs")
    assert ial.result == ["node3.example"]
    argv = log.read_text().split()
    assert os.path.basename(argv[0]).startswith("ganeti-iallocator.")
    assert argv[1:] == ["--flag", "--foo=bar"]
    assert not os.path.exists(argv[0])  # the input file is removed
    assert json.loads((tmp_path / "argv.in").read_text()) == json.loads(ial.in_text)
    assert rpc.calls[0][1] == "node1.example"  # runs on the master


def test_external_plugin_failures(search_path):
    first, _second = search_path
    cfg = make_cfg()

    def run(name):
        ial = iallocator.IAllocator(cfg, FakeRpc(), alloc())
        ial.build(live())
        return ial.run(name)

    with pytest.raises(errors.OpExecError, match="iallocator module 'nosuch' not found in the"
                                                 " search path"):
        run("nosuch")
    with pytest.raises(errors.OpExecError, match="not found"):
        run("../a/x")
    _plugin(first, "crash", "echo broken; exit 3\n")
    with pytest.raises(errors.OpExecError, match="iallocator module 'crash' failed: exited"
                                                 " with exit code 3, output 'broken'"):
        run("crash")
    _plugin(first, "garbage", "echo not-json\n")
    with pytest.raises(errors.OpExecError, match="Can't parse iallocator results"):
        run("garbage")
    _plugin(first, "nokey", "echo '{\"success\": true, \"info\": \"\"}'\n")
    with pytest.raises(errors.OpExecError, match="missing key 'result'"):
        run("nokey")
    _plugin(first, "legacy", "echo '{\"success\": true, \"info\": \"\", \"nodes\":"
                             " [\"node2.example\"]}'\n")
    assert run("legacy").result == ["node2.example"]
    _plugin(first, "wrong", "echo '{\"success\": true, \"info\": \"\", \"result\": []}'\n")
    with pytest.raises(errors.OpExecError, match="invalid result"):
        run("wrong")
    _plugin(first, "full", "echo '{\"success\": false, \"info\": \"no room\", \"result\":"
                           " []}'\n")
    ial = run("full")
    assert ial.success is False and ial.info == "no room"


def test_plugin_argv():
    assert backend_ial.plugin_argv("/p", "/in", {"b": 1, "a": None, "c": True, "d": False}) \
        == ["/p", "/in", "--a", "--b=1", "--c"]


@pytest.mark.skipif(not os.path.exists(HAIL), reason="ganeti-htools (hail) not installed")
@pytest.mark.parametrize("template,count", [("sharedfile", 1), ("drbd", 2), ("diskless", 1)])
def test_hail_understands_our_input(monkeypatch, template, count):
    monkeypatch.setenv("CORRAL_IALLOCATOR_SEARCH_PATH", os.path.dirname(HAIL))
    cfg = make_cfg()
    ial = iallocator.IAllocator(cfg, FakeRpc(), alloc(template=template))
    ial.build(live())
    ial.run("hail")
    assert ial.success, ial.info
    assert len(ial.result) == count
    assert set(ial.result) <= {"node1.example", "node2.example", "node3.example"}


@pytest.mark.skipif(not os.path.exists(HAIL), reason="ganeti-htools (hail) not installed")
def test_hail_node_evacuation(monkeypatch):
    monkeypatch.setenv("CORRAL_IALLOCATOR_SEARCH_PATH", os.path.dirname(HAIL))
    cfg = make_cfg()
    ial = iallocator.IAllocator(cfg, FakeRpc(),
                                iallocator.NodeEvacRequest(["i1.example"], "primary-only"))
    ial.build(live())
    ial.run("hail")
    assert ial.success, ial.info
    moved, failed, jobs = ial.result
    assert failed == [] and moved[0][0] == "i1.example"
    assert jobs[0][0]["OP_ID"] in iallocator.EVAC_OPCODES


def test_pending_placements_are_booked_until_done():
    cfg = make_cfg()
    pending = iallocator.PendingPlacements()
    spec = alloc("busy.example", template="file").spec
    pending.add(7, ["node3.example"], spec)
    pending.add(8, ["node2.example"], alloc("i1.example").spec)  # already in the config
    pending.add(9, ["node2.example"], alloc("done.example").spec)  # its job has ended
    current = pending.current(cfg, lambda job_id: job_id != 9)
    assert list(current) == ["busy.example"]
    data = iallocator.build_input(cfg, alloc(), live(), current)
    n3 = data["nodes"]["node3.example"]
    assert n3["free_memory"] == 7680 - 512 and n3["free_disk"] == 90000 - 1024
    assert n3["i_pri_memory"] == 512
    assert data["instances"]["busy.example"]["nodes"] == ["node3.example"]
    assert list(pending.current(cfg, lambda job_id: False)) == []
