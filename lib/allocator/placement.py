"""Choosing nodes for one instance: filters, then scores, group by group.

Groups are tried by allocation policy: all ``preferred`` groups first (the
best-scoring placement among them wins), then ``last_resort`` ones;
``unallocable`` groups never.  An instance's nodes are always in one group.
When nothing fits, ``NoPlacement`` carries the reason each node was
rejected.  The model is not changed here; the caller applies the placement.
"""

from dataclasses import dataclass

from corral import constants
from corral.allocator import filters, scores
from corral.allocator.model import ClusterModel, NodeState
from corral.allocator.filters import ROLE_PRIMARY, ROLE_SECONDARY, Demand

# Pairs (DRBD) are built from the best primaries only, to keep the search small.
PAIR_PRIMARY_CANDIDATES = 8


@dataclass
class Placement:
    nodes: list[str]
    group: str
    score: float


class NoPlacement(Exception):
    """No node (or pair) fits; ``rejected`` maps node name -> reason."""

    def __init__(self, inst_name: str, rejected: dict[str, str], note: str = "") -> None:
        self.inst_name = inst_name
        self.rejected = dict(rejected)
        self.note = note
        super().__init__(self.describe())

    def describe(self) -> str:
        text = "no node can host instance %s" % self.inst_name
        if self.note:
            text += " (%s)" % self.note
        if self.rejected:
            text += ": " + "; ".join("%s: %s" % (name, self.rejected[name])
                                     for name in sorted(self.rejected))
        return text


def group_tiers(model: ClusterModel, groups: list[str] | None = None) -> list[list[str]]:
    """Candidate group UUIDs in policy order: [preferred...], [last_resort...]."""
    uuids = groups if groups is not None else sorted(model.groups)
    tiers: list[list[str]] = [[], []]
    for uuid in uuids:
        group = model.groups.get(uuid)
        policy = group.alloc_policy if group is not None else constants.ALLOC_POLICY_PREFERRED
        if policy == constants.ALLOC_POLICY_PREFERRED:
            tiers[0].append(uuid)
        elif policy == constants.ALLOC_POLICY_LAST_RESORT:
            tiers[1].append(uuid)
    return [t for t in tiers if t]


def _ranked(model: ClusterModel, demand: Demand, combos: list[list[NodeState]]
            ) -> Placement | None:
    best: Placement | None = None
    for combo in combos:
        value = scores.score(model, demand.inst, combo)
        names = [n.name for n in combo]
        if best is None or (value, names) < (best.score, best.nodes):
            best = Placement(names, combo[0].group, value)
    return best


def _in_group(model: ClusterModel, demand: Demand, group: str, required: int,
              primary: NodeState | None, rejected: dict[str, str]) -> Placement | None:
    nodes = model.group_nodes(group)
    if primary is not None:  # a new secondary for a fixed primary
        seconds = filters.feasible(model, nodes, demand, ROLE_SECONDARY, rejected)
        return _ranked(model, demand, [[primary, s] for s in seconds if s is not primary])
    prims = filters.feasible(model, nodes, demand, ROLE_PRIMARY, rejected)
    if required == 1:
        return _ranked(model, demand, [[p] for p in prims])
    prims.sort(key=lambda p: (scores.score(model, demand.inst, [p]), p.name))
    seconds = filters.feasible(model, nodes, demand, ROLE_SECONDARY, {})
    pairs = [[p, s] for p in prims[:PAIR_PRIMARY_CANDIDATES] for s in seconds if s is not p]
    if prims and not pairs:
        for p in prims:
            rejected.setdefault(p.name, "no other node of its group can be the secondary")
    return _ranked(model, demand, pairs)


def best_placement(model: ClusterModel, demand: Demand, required: int = 1,
                   groups: list[str] | None = None, primary: str | None = None) -> Placement:
    """The best placement of ``demand.inst`` on ``required`` nodes (1 or 2).

    With ``primary`` (a node name) only a secondary is chosen, in the
    primary's group.  ``groups`` limits the candidate groups (UUIDs).
    Raises NoPlacement listing every node's rejection reason.
    """
    rejected: dict[str, str] = {}
    pnode = model.nodes.get(primary) if primary else None
    if pnode is not None:
        groups = [pnode.group]
    tiers = group_tiers(model, groups)
    for tier in tiers:
        found = [p for p in (_in_group(model, demand, g, required, pnode, rejected)
                             for g in tier) if p is not None]
        if found:
            return min(found, key=lambda p: (p.score, p.nodes))
    considered = {g for tier in tiers for g in tier}
    for node in model.nodes.values():
        if node.name not in rejected:
            reason = filters.group_allocable(model, node, demand)
            rejected[node.name] = reason or ("node group %s is not a target" %
                                             model.group_name(node.group)
                                             if node.group not in considered else "not usable")
    raise NoPlacement(demand.inst.name, rejected)
