"""Feasibility filters: can this node take this instance in this role?

Each filter answers ``None`` (fits) or a short reason (STYLE.md §6), so a
failed allocation can say why every node was rejected.  Filters are hard
limits only; preferences (balance, N+1 redundancy) are scores (scores.py).
Pure functions of the model.
"""

from dataclasses import dataclass
from typing import Callable

from corral import constants
from corral.allocator.model import (NO_SPACE, SHARED_STORAGE, ClusterModel, InstanceState,
                                    NodeState)

ROLE_PRIMARY = "primary"
ROLE_SECONDARY = "secondary"


@dataclass(frozen=True)
class Demand:
    """What is being placed, and where it may not go."""

    inst: InstanceState
    excluded: frozenset[str] = frozenset()
    restrict: frozenset[str] | None = None


Filter = Callable[[ClusterModel, NodeState, Demand], "str | None"]


def online(model: ClusterModel, node: NodeState, demand: Demand) -> str | None:
    return "node is offline" if node.offline else None


def not_drained(model: ClusterModel, node: NodeState, demand: Demand) -> str | None:
    return "node is drained" if node.drained else None


def vm_capable(model: ClusterModel, node: NodeState, demand: Demand) -> str | None:
    return "node is not vm_capable" if not node.vm_capable else None


def has_live_data(model: ClusterModel, node: NodeState, demand: Demand) -> str | None:
    return "no resource data from the node (unreachable?)" if not node.live else None


def group_allocable(model: ClusterModel, node: NodeState, demand: Demand) -> str | None:
    group = model.groups.get(node.group)
    if group is not None and group.alloc_policy == constants.ALLOC_POLICY_UNALLOCABLE:
        return "node group %s is unallocable" % group.name
    return None


def allowed(model: ClusterModel, node: NodeState, demand: Demand) -> str | None:
    if node.name in demand.excluded:
        return "node already used by the instance"
    if demand.restrict is not None and node.name not in demand.restrict:
        return "not in the restricted node list"
    return None


def memory(model: ClusterModel, node: NodeState, demand: Demand) -> str | None:
    need = demand.inst.memory
    if need > node.mem_free:
        return "not enough memory (needs %d MiB, %d MiB free)" % (need, node.mem_free)
    return None


def disk(model: ClusterModel, node: NodeState, demand: Demand) -> str | None:
    template = demand.inst.disk_template
    if template in NO_SPACE or (template in SHARED_STORAGE and node.disk_total <= 0):
        return None  # no space of its own, or shared storage that reports none
    need = demand.inst.disk_space
    if need > node.disk_free:
        return "not enough disk space (needs %d MiB, %d MiB free)" % (need, node.disk_free)
    return None


def cpus(model: ClusterModel, node: NodeState, demand: Demand) -> str | None:
    group = model.groups.get(node.group)
    ratio = group.vcpu_ratio if group is not None else 4.0
    limit = int(max(node.cpu_total - node.cpu_reserved, 1) * ratio)
    wanted = node.vcpus_used + demand.inst.vcpus
    if wanted > limit:
        return "too many virtual CPUs (%d > %d physical x vcpu-ratio %g)" % (
            wanted, max(node.cpu_total - node.cpu_reserved, 1), ratio)
    return None


_COMMON: list[Filter] = [online, vm_capable, has_live_data, not_drained, group_allocable,
                         allowed]
FILTERS: dict[str, list[Filter]] = {
    ROLE_PRIMARY: _COMMON + [memory, cpus, disk],
    ROLE_SECONDARY: _COMMON + [disk],
}


def check(model: ClusterModel, node: NodeState, demand: Demand, role: str) -> str | None:
    """The first reason ``node`` cannot take ``demand`` in ``role``, or None if it fits."""
    for fn in FILTERS[role]:
        reason = fn(model, node, demand)
        if reason is not None:
            return reason
    return None


def feasible(model: ClusterModel, nodes: list[NodeState], demand: Demand, role: str,
             rejected: dict[str, str]) -> list[NodeState]:
    """The nodes that fit; the others are recorded in ``rejected`` (name -> reason)."""
    out = []
    for node in nodes:
        reason = check(model, node, demand, role)
        if reason is None:
            out.append(node)
        else:
            rejected.setdefault(node.name, reason)
    return out
