"""Instance status and field getters of the ``instance`` query resource."""

import json

import pytest

from corral import constants, errors, objects, query
from corral.cmdlib import instance_query as iq
from corral.cmdlib import os as os_lu
from corral.rapi.rlib_instances import I_FIELDS


class _Rpc:
    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def call(self, proc, nodes, args):
        self.calls.append((proc, list(nodes)))

        class R:
            def __init__(self, node, data):
                self.node, self.data = node, data
                self.failed = data is None
                self.fail_msg = "down" if data is None else None
        return {n: R(n, self.answers.get(n)) for n in nodes}


class _Cfg:
    def __init__(self, nodes, instances):
        self.nodes = {n.uuid: n for n in nodes}
        self.instances = {i.uuid: i for i in instances}
        self.cluster = objects.Cluster(enabled_hypervisors=["fake"])
        self.group = objects.NodeGroup(uuid="g", name="default")

    def get_cluster_info(self):
        return self.cluster

    def get_all_nodes(self):
        return dict(self.nodes)

    def get_all_node_groups(self):
        return {"g": self.group}

    def get_node_info(self, uuid):
        return self.nodes.get(uuid)

    def get_all_instances(self):
        return dict(self.instances)

    def expand_instance_name(self, name):
        return next((i for i in self.instances.values() if i.name == name), None)


class _Ctx:
    def __init__(self, cfg, rpc):
        self.cfg, self.rpc = cfg, rpc


def _setup(answers, offline=()):
    nodes = [objects.Node(uuid=u, name=u + ".x", group="g", offline=u in offline)
             for u in ("n1", "n2", "n3")]
    insts = [objects.Instance(uuid="u-" + name, name=name, primary_node=pn, hypervisor="fake",
                              admin_state=state, os="busybox")
             for name, pn, state in [("run", "n1", "up"), ("errdown", "n1", "up"),
                                     ("admindown", "n1", "down"), ("errup", "n1", "down"),
                                     ("offl", "n1", "offline"), ("wrong", "n1", "up"),
                                     ("nodedown", "n2", "up"), ("nodeoff", "n3", "up")]]
    rpc = _Rpc(answers)
    return _Ctx(_Cfg(nodes, insts), rpc), insts


def test_statuses():
    info = {"state": "running", "memory": 128, "vcpus": 1}
    # "wrong" has n1 as primary but runs on n2
    ctx, insts = _setup({"n1.x": {"run": info, "errup": info}, "n2.x": {"wrong": info}},
                        offline=("n3",))
    data, items = iq.prepare_instances(ctx, [], [iq.INSTANCE_GETTERS["status"]])
    got = {i.name: iq.instance_status(data, i) for i in items}
    assert got == {"run": "running", "errdown": "ERROR_down", "admindown": "ADMIN_down",
                   "errup": "ERROR_up", "offl": "ADMIN_offline", "wrong": "ERROR_wrongnode",
                   "nodedown": "ERROR_down",
                   "nodeoff": "ERROR_nodeoffline"}
    # one call, to the online nodes only
    assert ctx.rpc.calls == [("all_instances_info", ["n1.x", "n2.x"])]


def test_nodedown_and_live_values():
    info = {"state": "running", "memory": 256, "vcpus": 2}
    ctx, insts = _setup({"n1.x": {"run": info}, "n2.x": None}, offline=("n3",))
    result = query.query(ctx, "instance", ["name", "status", "oper_ram", "oper_state",
                                           "be/maxmem", "disk.size/0", "nic.count"], [])
    rows = {r[0][1]: r for r in result["data"]}
    assert rows["nodedown"][1] == [constants.RS_NORMAL, "ERROR_nodedown"]
    assert rows["nodedown"][2][0] == constants.RS_NODATA
    assert rows["run"][2] == [constants.RS_NORMAL, 256] and rows["run"][3][1] is True
    assert rows["errdown"][2][0] == constants.RS_UNAVAIL
    assert rows["nodeoff"][1][1] == "ERROR_nodeoffline"
    assert rows["run"][4] == [constants.RS_NORMAL, 128]
    assert rows["run"][5][0] == constants.RS_UNAVAIL
    assert rows["run"][6] == [constants.RS_NORMAL, 0]


def test_static_fields_need_no_rpc_and_aliases_resolve():
    ctx, insts = _setup({})
    result = query.query(ctx, "instance", ["name", "pnode", "pnode.group", "vcpus",
                                           "be/memory", "nosuch", "admin_up"], ["run"])
    row = result["data"][0]
    assert [c[1] for c in row] == ["run", "n1.x", "default", 1, 128, None, True]
    assert row[5][0] == constants.RS_UNKNOWN
    assert ctx.rpc.calls == []


def test_os_info_merges_nodes():
    good = {"name": "deb", "path": "/os/deb", "valid": True, "error": "", "variants": ["a", "b"],
            "parameters": [["p1", "one"], ["p2", "two"]], "api_versions": [15, 20],
            "trusted": True}
    other = dict(good, variants=["b"], parameters=[["p2", "two"]], api_versions=[20])
    info = os_lu.OsInfo("deb", {"n1": good, "n2": other})
    assert info.valid and info.variants == ["b"] and info.parameters == [["p2", "two"]]
    assert info.api_versions == [20] and info.trusted
    missing = os_lu.OsInfo("deb", {"n1": good, "n2": None})
    assert not missing.valid
    bad = os_lu.OsInfo("deb", {"n1": dict(good, valid=False, error="missing script")})
    assert not bad.valid and bad.variants == []


# ---- bulk rows as JSON (RAPI) ------------------------------------------------------------

_INFO = {"state": "running", "memory": 256, "vcpus": 2}
_FIELDS = I_FIELDS + ["pnode.group", "be/maxmem", "disk.size/0", "nosuch", "name"]


def _both(ctx, fields=_FIELDS, names=()):
    fast = query.query_dicts_json(ctx, "instance", list(fields), list(names)).text
    return fast, query.dicts_json_generic(ctx, "instance", list(fields), list(names))


def test_dicts_json_is_the_generic_text():
    ctx, insts = _setup({"n1.x": {"run": _INFO, "errup": _INFO}, "n2.x": None},
                        offline=("n3",))
    insts[0].nics = [objects.NIC(mac="aa:00:00:00:00:01", ip="10.0.0.1", nicparams={})]
    insts[0].tags = ["ünicode", 'quo"te']
    fast, generic = _both(ctx)
    assert fast == generic
    again, _ = _both(ctx)  # from the cache now
    assert again == generic
    rows = json.loads(fast)
    assert [r["name"] for r in rows] == sorted(i.name for i in insts)
    run = [r for r in rows if r["name"] == "run"][0]
    assert run["oper_ram"] == 256 and run["status"] == "running" and run["nosuch"] is None
    assert list(run) == list(dict.fromkeys(_FIELDS))
    assert _both(ctx, ["status", "name"], ["run", "nodedown"])[0] == \
        _both(ctx, ["status", "name"], ["run", "nodedown"])[1]


def test_dicts_json_unknown_name_raises_like_query():
    ctx, _ = _setup({})
    with pytest.raises(errors.OpPrereqError):
        query.query_dicts_json(ctx, "instance", ["name"], ["nosuch"])


def test_dicts_json_cache_follows_changes():
    ctx, insts = _setup({"n1.x": {"run": _INFO}})
    run = [i for i in insts if i.name == "run"][0]
    assert _both(ctx)[0] == _both(ctx)[1]
    run.admin_state = "down"  # a commit bumps serial_no: the cached row is dropped
    run.serial_no += 1
    fast, generic = _both(ctx)
    assert fast == generic and '"admin_state":"down"' in fast
    ctx.cfg.nodes["n1"].name = "renamed.x"  # node rename
    fast, generic = _both(ctx)
    assert fast == generic and "renamed.x" in fast
    ctx.cfg.cluster.beparams = {"default": {"maxmem": 4096}}  # inherited parameters
    fast, generic = _both(ctx)
    assert fast == generic and "4096" in fast
    ctx.cfg.group.name = "newgroup"  # groups are never cached
    fast, generic = _both(ctx)
    assert fast == generic and "newgroup" in fast
    del ctx.cfg.instances[run.uuid]  # removed instances leave the cache
    fast, generic = _both(ctx)
    assert fast == generic and '"run"' not in fast
    assert run.uuid not in next(iter(iq._ROW_CACHES[ctx.cfg].values()))[1]


def test_other_resources_use_the_generic_text():
    class Ctx:
        cfg = None
    query.register_resource("fakeres", {"name": lambda d, o: o, "n": lambda d, o: len(o)},
                            lambda ctx, names, getters: (None, ["b", "aa"]))
    try:
        text = query.query_dicts_json(Ctx(), "fakeres", ["name", "n", "x"], []).text
    finally:
        query._EXTRA_RESOURCES.pop("fakeres")
    assert json.loads(text) == [{"name": "b", "n": 1, "x": None},
                                {"name": "aa", "n": 2, "x": None}]


def test_replication_fields_from_live_data():
    """disk.sync and is_degraded come from the primary's live replication states
    (mirror template); a disk without one is "-", a stopped instance has none."""
    states = [{"state": "syncing", "percent": 42.5}, None]
    info = {"state": "running", "memory": 256, "vcpus": 2, "replication": states}
    ctx, insts = _setup({"n1.x": {"run": info}, "n2.x": None})
    result = query.query(ctx, "instance", ["name", "disk.sync", "is_degraded"], [])
    rows = {r[0][1]: r for r in result["data"]}
    assert rows["run"][1] == [constants.RS_NORMAL, ["syncing 42.50%", "-"]]
    assert rows["run"][2] == [constants.RS_NORMAL, True]
    assert rows["errdown"][1][0] == constants.RS_UNAVAIL
    info["replication"] = [{"state": "in_sync", "percent": None}]
    ctx, insts = _setup({"n1.x": {"run": info}, "n2.x": None})
    row = query.query(ctx, "instance", ["disk.sync", "is_degraded"], ["run"])["data"][0]
    assert [c[1] for c in row] == [["in_sync"], False]


# spec/rapi.md §5 "Instances (I_FIELDS)", in the spec's order.
_SPEC_I_FIELDS = (
    "name admin_state os pnode snodes disk_template nic.ips nic.macs nic.modes nic.uuids "
    "nic.names nic.links nic.networks nic.networks.names nic.bridges network_port disk.sizes "
    "disk.spindles disk_usage disk.uuids disk.names beparams hvparams oper_state oper_ram "
    "oper_vcpus status custom_hvparams custom_beparams custom_nicparams custom_osparams "
    "ctime mtime uuid serial_no tags").split()


def test_bulk_rows_have_the_spec_fields_and_live_values_are_never_stale():
    """The RAPI bulk shape (exact keys, in order), and a config whose serial number does
    not move still shows each query's live data: an instance stopped (by another job,
    or behind our back) is stopped in the next answer."""
    assert I_FIELDS == _SPEC_I_FIELDS
    ctx, insts = _setup({"n1.x": {"run": _INFO, "errup": _INFO}}, offline=("n3",))
    ctx.cfg.serial_no = 7
    fast, generic = _both(ctx, I_FIELDS)
    assert fast == generic
    rows = {r["name"]: r for r in json.loads(fast)}
    for row in rows.values():
        assert list(row) == _SPEC_I_FIELDS
        assert row["beparams"]["memory"] == row["beparams"]["maxmem"]
    assert (rows["run"]["oper_state"], rows["run"]["oper_ram"], rows["run"]["oper_vcpus"],
            rows["run"]["status"]) == (True, 256, 2, "running")
    ctx.rpc.answers["n1.x"] = {"errup": _INFO}  # "run" stopped: same config serial
    fast, generic = _both(ctx, I_FIELDS)
    assert fast == generic
    run = [r for r in json.loads(fast) if r["name"] == "run"][0]
    assert (run["oper_state"], run["oper_ram"], run["status"]) == (False, None, "ERROR_down")
    ctx.rpc.answers["n1.x"] = None  # the node stopped answering
    fast, generic = _both(ctx, I_FIELDS)
    assert fast == generic and '"status":"ERROR_nodedown"' in fast


def test_bulk_templates_follow_the_config_serial():
    ctx, insts = _setup({"n1.x": {"run": _INFO}})
    ctx.cfg.serial_no = 1
    run = [i for i in insts if i.name == "run"][0]
    assert _both(ctx)[0] == _both(ctx)[1]
    run.os = "debian"
    run.serial_no += 1
    ctx.cfg.serial_no += 1  # a commit
    fast, generic = _both(ctx)
    assert fast == generic and '"os":"debian"' in fast
    new = objects.Instance(uuid="u-new", name="new", primary_node="n1", hypervisor="fake",
                           admin_state="down", os="busybox")
    ctx.cfg.instances[new.uuid] = new
    ctx.cfg.serial_no += 1
    fast, generic = _both(ctx)
    assert fast == generic and '"name":"new"' in fast
    assert _both(ctx, _FIELDS, ["new", "run"])[0] == _both(ctx, _FIELDS, ["new", "run"])[1]
    assert _both(ctx, ["oper_ram", "name", "status"])[0] == \
        _both(ctx, ["oper_ram", "name", "status"])[1]


def test_live_text_memo_tells_equal_values_of_other_types_apart():
    ctx, insts = _setup({})
    d = iq.InstanceQueryData(ctx, insts, False)
    values = {"run": True, "errdown": 1, "admindown": 1.0, "errup": [1], "offl": None}
    fill = iq._run_filler(d, [("x", lambda d, i: values[i.name])])
    texts = {i.name: fill(i) for i in insts if i.name in values}
    assert texts == {"run": '"x":true', "errdown": '"x":1', "admindown": '"x":1.0',
                     "errup": '"x":[1]', "offl": '"x":null'}
