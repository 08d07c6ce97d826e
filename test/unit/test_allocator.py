"""The built-in allocator on synthetic clusters (iallocator input dicts, no daemons)."""

import json
import subprocess
import sys

import pytest

from corral import allocator
from corral.allocator import requests as _requests  # noqa: F401
from corral.allocator import scores
from corral.allocator.model import ClusterModel

G1, G2 = "uuid-g1", "uuid-g2"


def node(group=G1, mem=16384, disk=102400, cpus=8, offline=False, drained=False,
         vm_capable=True, free_mem=None, free_disk=None):
    out = {"tags": [], "primary_ip": "192.0.2.1", "secondary_ip": "192.0.2.1",
           "offline": offline, "drained": drained, "master_candidate": False, "group": group,
           "master_capable": True, "vm_capable": vm_capable,
           "ndparams": {"exclusive_storage": False, "spindle_count": 1}}
    if not offline and vm_capable:
        out.update({"total_memory": mem, "reserved_memory": 0,
                    "free_memory": mem if free_mem is None else free_mem,
                    "total_disk": disk, "free_disk": disk if free_disk is None else free_disk,
                    "total_spindles": 1, "free_spindles": 1, "total_cpus": cpus,
                    "reserved_cpus": 0, "i_pri_memory": 0, "i_pri_up_memory": 0})
    return out


def cluster(nodes, groups=None, instances=None, request=None):
    groups = groups or {G1: {"name": "default", "alloc_policy": "preferred"}}
    for g in groups.values():
        g.setdefault("alloc_policy", "preferred")
        g.setdefault("networks", [])
        g.setdefault("tags", [])
        g.setdefault("ipolicy", {"vcpu-ratio": 4.0})
    return {"version": 2, "cluster_name": "c", "cluster_tags": [],
            "enabled_hypervisors": ["fake"], "ipolicy": {"vcpu-ratio": 4.0},
            "nodegroups": groups, "nodes": nodes, "instances": instances or {},
            "request": request or {}}


def alloc_req(name, mem=512, disk=1024, vcpus=1, template="sharedfile", required=1, **extra):
    req = {"type": "allocate", "name": name, "disk_template": template, "group_name": None,
           "tags": [], "os": "busybox", "vcpus": vcpus, "memory": mem, "spindle_use": 1,
           "disks": [{"size": disk, "mode": "rw"}] if disk else [],
           "disk_space_total": disk, "nics": [], "required_nodes": required,
           "hypervisor": "fake"}
    req.update(extra)
    return req


def instance(nodes, mem=512, disk=1024, vcpus=1, template="sharedfile", up=True):
    return {"tags": [], "admin_state": "up" if up else "down", "vcpus": vcpus, "memory": mem,
            "spindle_use": 1, "os": "busybox", "nodes": nodes, "nics": [],
            "disks": [{"size": disk, "mode": "rw", "spindles": None}],
            "disk_template": template, "disks_active": True, "hypervisor": "fake",
            "disk_space_total": disk}


def ten_nodes(**kw):
    return {"node%02d" % i: node(**kw) for i in range(10)}


# ---- balance -----------------------------------------------------------------------------

def test_200_instances_on_10_nodes_within_10_percent_of_even():
    data = cluster(ten_nodes(mem=65536, disk=1048576, cpus=16),
                   request={"type": "multi-allocate",
                            "instances": [alloc_req("inst%03d" % i, template="file")
                                          for i in range(200)]})
    out = allocator.solve(data)
    assert out["success"], out["info"]
    placed, failed = out["result"]
    assert failed == [] and len(placed) == 200
    counts: dict[str, int] = {}
    for _name, nodes in placed:
        counts[nodes[0]] = counts.get(nodes[0], 0) + 1
    assert len(counts) == 10
    assert all(18 <= c <= 22 for c in counts.values()), counts


def test_sequential_allocations_through_the_protocol_stay_even():
    """200 separate allocate requests, each on the cluster as the last one left it."""
    data = cluster(ten_nodes(mem=65536, disk=1048576, cpus=16))
    counts: dict[str, int] = {}
    for i in range(200):
        mem, disk, vcpus = (256, 1024, 1) if i % 2 else (1024, 4096, 2)
        data["request"] = alloc_req("i%d" % i, mem=mem, disk=disk, vcpus=vcpus, template="file")
        out = allocator.solve(data)
        assert out["success"], out["info"]
        (chosen,) = out["result"]
        data["instances"]["i%d" % i] = instance([chosen], mem, disk, vcpus, "file")
        data["nodes"][chosen]["free_memory"] -= mem
        data["nodes"][chosen]["free_disk"] -= disk
        counts[chosen] = counts.get(chosen, 0) + 1
    # Mixed sizes: the load (memory, disk, CPU together), not the counts, must be even.
    model = ClusterModel.from_input(data)
    loads = [scores.node_load(model, n) for n in model.nodes.values()]
    mean = sum(loads) / len(loads)
    assert all(abs(load - mean) <= 0.1 * mean for load in loads), loads
    assert sum(counts.values()) == 200


def test_bigger_nodes_get_proportionally_more():
    nodes = {"big": node(mem=32768, disk=204800, cpus=32),
             "small1": node(mem=16384, disk=102400, cpus=16),
             "small2": node(mem=16384, disk=102400, cpus=16)}
    data = cluster(nodes, request={"type": "multi-allocate", "instances": [
        alloc_req("i%d" % i, mem=256, disk=1024, template="file") for i in range(100)]})
    placed, _failed = allocator.solve(data)["result"]
    counts = {n: sum(1 for _i, ns in placed if ns[0] == n) for n in nodes}
    assert 45 <= counts["big"] <= 55 and abs(counts["small1"] - counts["small2"]) <= 2, counts


def test_memory_disk_and_cpu_all_balance():
    nodes = {"a": node(free_mem=4096), "b": node(), "c": node(free_disk=10240)}
    data = cluster(nodes, request=alloc_req("x", template="file"))
    assert allocator.solve(data)["result"] == ["b"]
    nodes = {"a": node(cpus=2), "b": node(cpus=16)}
    insts = {"old%d" % i: instance(["a"], mem=1, disk=1, vcpus=1, up=False) for i in range(6)}
    data = cluster(nodes, instances=insts, request=alloc_req("x", template="file"))
    assert allocator.solve(data)["result"] == ["b"]


# ---- filters and failure reasons -----------------------------------------------------------

def test_unusable_nodes_are_never_chosen_and_failure_names_each_reason():
    nodes = {"off": node(offline=True), "drained": node(drained=True),
             "novm": node(vm_capable=False), "small": node(free_mem=100),
             "full": node(free_disk=10)}
    data = cluster(nodes, request=alloc_req("x", mem=512, disk=1024, template="file"))
    out = allocator.solve(data)
    assert out["success"] is False and out["result"] == []
    info = out["info"]
    for text in ("off: node is offline", "drained: node is drained",
                 "novm: node is not vm_capable", "small: not enough memory (needs 512 MiB,"
                 " 100 MiB free)", "full: not enough disk space (needs 1024 MiB, 10 MiB free)"):
        assert text in info, info
    nodes["ok"] = node()
    data = cluster(nodes, request=alloc_req("x", mem=512, disk=1024, template="file"))
    assert allocator.solve(data)["result"] == ["ok"]


def test_cpu_ratio_limits_vcpus():
    data = cluster({"a": node(cpus=1)}, request=alloc_req("x", vcpus=5))
    data["nodegroups"][G1]["ipolicy"]["vcpu-ratio"] = 4.0
    out = allocator.solve(data)
    assert not out["success"] and "too many virtual CPUs" in out["info"]


def test_restrict_to_nodes_and_group_name():
    nodes = {"a": node(), "b": node(group=G2)}
    groups = {G1: {"name": "one"}, G2: {"name": "two"}}
    data = cluster(nodes, groups, request=alloc_req("x", **{"restrict-to-nodes": ["b"]}))
    assert allocator.solve(data)["result"] == ["b"]
    data = cluster(nodes, groups, request=alloc_req("x", group_name="two"))
    assert allocator.solve(data)["result"] == ["b"]


def test_alloc_policy_preferred_then_last_resort_never_unallocable():
    groups = {G1: {"name": "pref"}, G2: {"name": "last", "alloc_policy": "last_resort"},
              "g3": {"name": "never", "alloc_policy": "unallocable"}}
    nodes = {"p": node(free_mem=600), "l": node(group=G2), "n": node(group="g3", mem=99999)}
    data = cluster(nodes, groups, request=alloc_req("x", mem=512))
    assert allocator.solve(data)["result"] == ["p"]
    data = cluster(nodes, groups, request=alloc_req("x", mem=1024))
    assert allocator.solve(data)["result"] == ["l"]
    nodes["l"] = node(group=G2, free_mem=0)
    out = allocator.solve(cluster(nodes, groups, request=alloc_req("x", mem=1024)))
    assert not out["success"] and "n: node group never is unallocable" in out["info"]


def test_drbd_gets_two_distinct_nodes_of_one_group():
    nodes = {"a": node(), "b": node(group=G2), "c": node(), "d": node(group=G2)}
    groups = {G1: {"name": "one"}, G2: {"name": "two"}}
    out = allocator.solve(cluster(nodes, groups, request=alloc_req("x", template="drbd",
                                                                   required=2)))
    pri, sec = out["result"]
    assert pri != sec and nodes[pri]["group"] == nodes[sec]["group"]
    out = allocator.solve(cluster({"a": node()}, request=alloc_req("x", template="drbd",
                                                                   required=2)))
    assert not out["success"] and "secondary" in out["info"]


# ---- N+1 ----------------------------------------------------------------------------------

def test_nplus1_failures_and_penalty():
    nodes = {"a": node(mem=4096, free_mem=1000), "b": node(mem=4096, free_mem=4096)}
    insts = {"big": instance(["a"], mem=3000)}
    model = ClusterModel.from_input(cluster(nodes, instances=insts))
    assert scores.nplus1_failures(model, G1) == set()
    model.nodes["b"].mem_free = 2000
    assert scores.nplus1_failures(model, G1) == {"a"}
    # DRBD: a secondary must keep its peer's memory free.
    nodes = {"p": node(), "s": node(free_mem=1000)}
    insts = {"d": instance(["p", "s"], mem=2000, template="drbd")}
    model = ClusterModel.from_input(cluster(nodes, instances=insts))
    assert "s" in scores.nplus1_failures(model, G1)


def test_placement_breaking_nplus1_scores_worse():
    # s1 already backs p's 2500 MiB; being p's secondary again would break its N+1.
    nodes = {"p": node(), "s1": node(free_mem=3000), "s2": node(free_mem=2000)}
    insts = {"d": instance(["p", "s1"], mem=2500, template="drbd")}
    data = cluster(nodes, instances=insts, request=alloc_req(
        "x", mem=1000, template="drbd", required=2, **{"restrict-to-nodes": ["p", "s1", "s2"]}))
    model = ClusterModel.from_input(data)
    new = allocator.requests.new_instance(data["request"])
    bad = scores.score(model, new, [model.nodes["p"], model.nodes["s1"]])
    good = scores.score(model, new, [model.nodes["p"], model.nodes["s2"]])
    assert bad >= scores.NPLUS1_PENALTY > good
    assert new.nodes == [] and "x" not in model.instances
    assert allocator.solve(data)["result"][1] == "s2"


# ---- relocate, evacuate, change-group -------------------------------------------------------

def test_relocate_drbd_secondary_and_shared_primary():
    nodes = {n: node() for n in "abcd"}
    insts = {"d": instance(["a", "b"], template="drbd"), "s": instance(["a"])}
    data = cluster(nodes, instances=insts, request={"type": "relocate", "name": "d",
                                                   "relocate_from": ["b"], "required_nodes": 1,
                                                   "disk_space_total": 1024})
    (new,) = allocator.solve(data)["result"]
    assert new in ("c", "d")
    data["request"] = {"type": "relocate", "name": "s", "relocate_from": ["a"],
                       "required_nodes": 1, "disk_space_total": 1024}
    assert allocator.solve(data)["result"][0] in "bcd"
    data["instances"]["f"] = instance(["a"], template="file")
    data["request"] = {"type": "relocate", "name": "f", "relocate_from": ["a"]}
    out = allocator.solve(data)
    assert not out["success"] and "cannot be relocated" in out["info"]


def test_node_evacuate_all_kinds():
    nodes = {n: node() for n in "abcd"}
    insts = {"s1": instance(["a"]), "s2": instance(["a"], up=False),
             "dl": instance(["a"], disk=0, template="diskless"),
             "dp": instance(["a", "b"], template="drbd"),
             "f": instance(["a"], template="file")}
    data = cluster(nodes, instances=insts, request={
        "type": "node-evacuate", "instances": sorted(insts), "evac_mode": "primary-only"})
    out = allocator.solve(data)
    assert out["success"]
    moved, failed, jobs = out["result"]
    assert [f[0] for f in failed] == ["f"] and "cannot be relocated" in failed[0][1]
    by_name = {m[0]: m for m in moved}
    assert sorted(by_name) == ["dl", "dp", "s1", "s2"]
    assert by_name["dp"][2] == ["b", "a"]
    for name in ("s1", "s2", "dl"):
        assert by_name[name][1] == "default" and by_name[name][2][0] in "bcd"
    ops = {job[0]["instance_name"]: job for job in jobs}
    assert ops["s1"] == [{"OP_ID": "OP_INSTANCE_MIGRATE", "instance_name": "s1",
                          "allow_failover": True, "target_node": by_name["s1"][2][0]}]
    assert ops["dp"] == [{"OP_ID": "OP_INSTANCE_MIGRATE", "instance_name": "dp",
                          "allow_failover": True}]
    # The three shared-storage instances were spread, not piled on one node.
    assert len({by_name[n][2][0] for n in ("s1", "s2", "dl")}) == 3


def test_node_evacuate_secondary_and_offline_primary():
    nodes = {n: node() for n in "abc"}
    nodes["a"] = node(offline=True)
    insts = {"d": instance(["c", "b"], template="drbd"), "s": instance(["a"])}
    data = cluster(nodes, instances=insts, request={
        "type": "node-evacuate", "instances": ["d"], "evac_mode": "secondary-only"})
    moved, failed, jobs = allocator.solve(data)["result"]
    assert failed == [] and moved == [["d", "default", ["c", "a"]]] or failed
    # a is offline: the only other node is the primary itself -> fails with a reason
    assert failed and "no node can host instance d" in failed[0][1]
    data["request"] = {"type": "node-evacuate", "instances": ["s"], "evac_mode": "all"}
    moved, failed, jobs = allocator.solve(data)["result"]
    assert jobs[0][0]["OP_ID"] == "OP_INSTANCE_FAILOVER" and moved[0][2][0] in "bc"


def test_change_group():
    nodes = {"a": node(), "b": node(group=G2), "c": node(group=G2)}
    groups = {G1: {"name": "one"}, G2: {"name": "two"}}
    insts = {"s": instance(["a"]), "f": instance(["a"], template="file")}
    data = cluster(nodes, groups, insts, {"type": "change-group", "instances": ["s", "f"],
                                          "target_groups": []})
    moved, failed, jobs = allocator.solve(data)["result"]
    assert moved[0][0] == "s" and moved[0][1] == "two" and moved[0][2][0] in "bc"
    assert failed[0][0] == "f"
    assert jobs == [[{"OP_ID": "OP_INSTANCE_MIGRATE", "instance_name": "s",
                      "allow_failover": True, "target_node": moved[0][2][0]}]]


def test_bad_input_is_a_failure_not_a_crash():
    assert allocator.solve({})["success"] is False
    assert "Unknown request type" in allocator.solve(cluster({}, request={"type": "x"}))["info"]
    out = allocator.solve(cluster({"a": node()}, request={"type": "allocate"}))
    assert out["success"] is False and out["result"] == []


def test_runs_as_an_external_plugin(tmp_path):
    path = tmp_path / "in.json"
    path.write_text(json.dumps(cluster({"a": node()}, request=alloc_req("x"))))
    proc = subprocess.run([sys.executable, "-m", "corral.allocator", str(path), "--foo=1"],
                          capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout) == {"success": True, "info": "Request successful: x on a",
                                       "result": ["a"]}


@pytest.mark.parametrize("count", [1, 3])
def test_multi_allocate_reports_failures(count):
    reqs = [alloc_req("i%d" % i, mem=6000) for i in range(count)]
    out = allocator.solve(cluster({"a": node(mem=16384)}, request={"type": "multi-allocate",
                                                                   "instances": reqs}))
    placed, failed = out["result"]
    assert len(placed) == min(count, 2) and len(failed) == count - len(placed)
