"""The built-in allocator's answers to the five request types (spec/iallocator.md §3-4).

Each handler takes the model and the ``request`` dict and returns
``(success, info, result)`` in the protocol's shapes.  Requests that place
several instances apply each decision to the model before the next, so they
never double-book a node.  Evacuation answers carry the jobs Ganeti would
submit: OP_INSTANCE_MIGRATE (allow_failover) to a new node for externally
mirrored and diskless instances, to the secondary for DRBD primaries;
OP_INSTANCE_REPLACE_DISKS (new secondary) for DRBD secondaries;
OP_INSTANCE_FAILOVER when the primary is offline.
"""

from typing import Any, Callable

from corral import constants
from corral.allocator import filters
from corral.allocator.filters import Demand
from corral.allocator.model import MOVABLE_EXT, ClusterModel, InstanceState
from corral.allocator.placement import NoPlacement, best_placement

Answer = tuple[bool, str, Any]
EVAC_PRIMARY = "primary-only"
EVAC_SECONDARY = "secondary-only"
EVAC_ALL = "all"


class CannotMove(Exception):
    """An instance cannot be moved the way requested (its template forbids it)."""


# ---- opcodes of evacuation jobs -----------------------------------------------------------

def op_migrate(name: str, target: str | None = None) -> dict:
    op: dict[str, Any] = {"OP_ID": "OP_INSTANCE_MIGRATE", "instance_name": name,
                          "allow_failover": True}
    if target is not None:
        op["target_node"] = target
    return op


def op_failover(name: str, target: str | None = None) -> dict:
    op: dict[str, Any] = {"OP_ID": "OP_INSTANCE_FAILOVER", "instance_name": name,
                          "ignore_consistency": True}
    if target is not None:
        op["target_node"] = target
    return op


def op_replace_secondary(name: str, node: str) -> dict:
    return {"OP_ID": "OP_INSTANCE_REPLACE_DISKS", "instance_name": name,
            "mode": "replace_new_secondary", "remote_node": node, "disks": []}


def _move_op(model: ClusterModel, inst: InstanceState, target: str | None) -> dict:
    pnode = model.nodes.get(inst.primary or "")
    if pnode is not None and pnode.offline:
        return op_failover(inst.name, target)
    return op_migrate(inst.name, target)


# ---- single-instance requests ----------------------------------------------------------

def _group_uuid(model: ClusterModel, name: str | None) -> list[str] | None:
    if not name:
        return None
    for uuid, group in model.groups.items():
        if name in (uuid, group.name):
            return [uuid]
    raise CannotMove("unknown node group '%s'" % name)


def new_instance(req: dict[str, Any]) -> InstanceState:
    """The instance described by an ``allocate`` request (not yet on any node)."""
    return InstanceState(name=req["name"], memory=int(req["memory"]), vcpus=int(req["vcpus"]),
                         disk_template=req["disk_template"],
                         disk_space=int(req.get("disk_space_total", 0)), nodes=[],
                         spindle_use=int(req.get("spindle_use", 1)),
                         tags=list(req.get("tags") or []))


def allocate(model: ClusterModel, req: dict[str, Any]) -> Answer:
    inst = new_instance(req)
    restrict = req.get("restrict-to-nodes")
    demand = Demand(inst, restrict=frozenset(restrict) if restrict else None)
    try:
        groups = _group_uuid(model, req.get("group_name"))
        placement = best_placement(model, demand, int(req.get("required_nodes", 1)), groups)
    except (NoPlacement, CannotMove) as err:
        return False, "Request failed: %s" % err, []
    model.place(inst, placement.nodes)
    return True, "Request successful: %s on %s" % (inst.name, ", ".join(placement.nodes)), \
        placement.nodes


def relocate(model: ClusterModel, req: dict[str, Any]) -> Answer:
    inst = model.instances.get(req["name"])
    if inst is None:
        return False, "Request failed: unknown instance %s" % req["name"], []
    old = list(inst.nodes)
    excluded = frozenset(old) | frozenset(req.get("relocate_from") or [])
    model.unplace(inst)
    try:
        if inst.disk_template in constants.DTS_INT_MIRROR:
            placement = best_placement(model, Demand(inst, excluded), primary=old[0])
            new = placement.nodes[1]
        elif inst.disk_template in MOVABLE_EXT:
            group = model.nodes[old[0]].group
            new = best_placement(model, Demand(inst, excluded), 1, [group]).nodes[0]
        else:
            raise CannotMove("instances of type %s cannot be relocated" % inst.disk_template)
    except (NoPlacement, CannotMove) as err:
        model.place(inst, old)
        return False, "Request failed: %s" % err, []
    model.place(inst, [old[0], new] if inst.disk_template in constants.DTS_INT_MIRROR else [new])
    return True, "Request successful: %s to %s" % (inst.name, new), [new]


# ---- evacuation (node-evacuate, change-group) -----------------------------------------------

def _evacuated_nodes(model: ClusterModel, names: list[str], mode: str) -> frozenset[str]:
    """The nodes being emptied: primaries and/or DRBD secondaries of the instances."""
    out = set()
    for name in names:
        inst = model.instances.get(name)
        if inst is None:
            continue
        if mode in (EVAC_PRIMARY, EVAC_ALL) and inst.primary:
            out.add(inst.primary)
        if mode in (EVAC_SECONDARY, EVAC_ALL) and inst.secondary \
                and inst.disk_template in constants.DTS_INT_MIRROR:
            out.add(inst.secondary)
    return frozenset(out)


def _move_drbd(model: ClusterModel, inst: InstanceState, mode: str, excluded: frozenset[str],
               groups: list[str] | None) -> tuple[list[str], list[dict]]:
    pri, sec = inst.nodes[0], inst.nodes[1]
    if mode == EVAC_PRIMARY:
        node = model.nodes[sec]
        reason = filters.online(model, node, Demand(inst)) or \
            filters.memory(model, node, Demand(inst))
        if reason is not None:
            raise CannotMove("secondary node %s cannot take over: %s" % (sec, reason))
        return [sec, pri], [_move_op(model, inst, None)]
    if mode == EVAC_SECONDARY:
        new = best_placement(model, Demand(inst, excluded | {pri, sec}), primary=pri).nodes[1]
        return [pri, new], [op_replace_secondary(inst.name, new)]
    new = best_placement(model, Demand(inst, excluded | {pri, sec}), 2, groups).nodes
    return new, [op_replace_secondary(inst.name, new[0]), _move_op(model, inst, None),
                 op_replace_secondary(inst.name, new[1])]


def _move_one(model: ClusterModel, inst: InstanceState, mode: str, excluded: frozenset[str],
              groups: list[str] | None) -> tuple[list[str], list[dict]]:
    """New nodes and the opcodes of one instance's move; the model is left unchanged."""
    template = inst.disk_template
    if template in constants.DTS_INT_MIRROR and len(inst.nodes) > 1:
        return _move_drbd(model, inst, mode, excluded, groups)
    if template in MOVABLE_EXT:
        if mode == EVAC_SECONDARY:
            raise CannotMove("instances of type %s have no secondary node to change" % template)
        if groups is None:
            groups = [model.nodes[inst.nodes[0]].group]
        new = best_placement(model, Demand(inst, excluded | set(inst.nodes)), 1, groups).nodes
        return new, [_move_op(model, inst, new[0])]
    raise CannotMove("instances of type %s cannot be relocated" % template)


def _evacuate(model: ClusterModel, names: list[str], mode: str, excluded: frozenset[str],
              groups: list[str] | None) -> Answer:
    moved: list[list] = []
    failed: list[list] = []
    jobs: list[list[dict]] = []
    for name in names:
        inst = model.instances.get(name)
        if inst is None or not inst.nodes:
            failed.append([name, "unknown instance"])
            continue
        old = list(inst.nodes)
        model.unplace(inst)
        inst.nodes = old
        try:
            new, ops = _move_one(model, inst, mode, excluded, groups)
        except (NoPlacement, CannotMove) as err:
            model.place(inst, old)
            failed.append([name, str(err)])
            continue
        model.place(inst, new)
        moved.append([name, model.group_name(model.nodes[new[0]].group), new])
        jobs.append(ops)
    info = "Request successful: %d instance(s) moved, %d failed" % (len(moved), len(failed))
    return True, info, [moved, failed, jobs]


def node_evacuate(model: ClusterModel, req: dict[str, Any]) -> Answer:
    names = list(req["instances"])
    mode = req["evac_mode"]
    if mode not in (EVAC_PRIMARY, EVAC_SECONDARY, EVAC_ALL):
        return False, "Request failed: unknown evacuation mode '%s'" % mode, []
    return _evacuate(model, names, mode, _evacuated_nodes(model, names, mode), None)


def change_group(model: ClusterModel, req: dict[str, Any]) -> Answer:
    names = list(req["instances"])
    targets = list(req.get("target_groups") or [])
    current = {model.nodes[n].group for name in names
               for n in (model.instances[name].nodes if name in model.instances else [])
               if n in model.nodes}
    groups = targets or sorted(set(model.groups) - current)
    if not groups:
        return False, "Request failed: no target node group", []
    return _evacuate(model, names, EVAC_ALL, frozenset(), groups)


def multi_allocate(model: ClusterModel, req: dict[str, Any]) -> Answer:
    done: list[list] = []
    failed: list[str] = []
    reasons = []
    for sub in req["instances"]:
        ok, info, nodes = allocate(model, sub)
        if ok:
            done.append([sub["name"], nodes])
        else:
            failed.append(sub["name"])
            reasons.append(info)
    info = "Request successful: %d allocated, %d failed" % (len(done), len(failed))
    if reasons:
        info += "; " + "; ".join(reasons)
    return True, info, [done, failed]


HANDLERS: dict[str, Callable[[ClusterModel, dict], Answer]] = {
    "allocate": allocate,
    "relocate": relocate,
    "node-evacuate": node_evacuate,
    "change-group": change_group,
    "multi-allocate": multi_allocate,
}
