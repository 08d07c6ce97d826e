"""Instance status and field getters of the ``instance`` query resource."""

from corral import constants, objects, query
from corral.cmdlib import instance_query as iq
from corral.cmdlib import os as os_lu


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
