"""Scores: among the nodes that fit, which placement is best (lower is better).

A placement is scored on the model *after* it is applied: the load of the
nodes it uses (memory, disk and CPU utilisation, equally weighted, each in
[0, 1]) plus a penalty of 1 per node whose N+1 redundancy it breaks.  Picking
the lowest score each time fills nodes evenly in proportion to their size,
and a placement that keeps N+1 always wins over one that does not, while a
cluster too full for N+1 still gets its instances ("where it can").
"""

from corral.allocator.model import ClusterModel, InstanceState, NodeState

W_MEM = 1.0
W_DISK = 1.0
W_CPU = 1.0
NPLUS1_PENALTY = 1.0


def node_load(model: ClusterModel, node: NodeState) -> float:
    """Weighted utilisation of ``node`` in [0, 1] (can exceed 1 when overcommitted)."""
    mem_used = 1.0 - (node.mem_free - node.reserved_for_peers) / node.mem_usable
    disk_used = 1.0 - node.disk_free / node.disk_total if node.disk_total > 0 else 0.0
    group = model.groups.get(node.group)
    ratio = group.vcpu_ratio if group is not None else 4.0
    cpu_used = node.vcpus_used / (max(node.cpu_total - node.cpu_reserved, 1) * ratio)
    return (W_MEM * mem_used + W_DISK * disk_used + W_CPU * cpu_used) / (W_MEM + W_DISK + W_CPU)


def nplus1_failures(model: ClusterModel, group: str) -> set[str]:
    """Nodes of ``group`` whose failure could not be absorbed by the others.

    DRBD: a node must keep free the memory of the largest set of instances
    whose primary is one peer (it takes them over when that peer fails).
    Externally mirrored and diskless instances may fail over anywhere: the
    other live nodes together must have room for a node's admin-up ones.
    """
    nodes = [n for n in model.group_nodes(group) if n.live and not n.offline]
    total_free = sum(max(n.mem_free, 0) for n in nodes)
    bad = set()
    for node in nodes:
        if node.mem_free < node.reserved_for_peers:
            bad.add(node.name)
        elif node.failover_mem > total_free - max(node.mem_free, 0):
            bad.add(node.name)
    return bad


def score(model: ClusterModel, inst: InstanceState, nodes: list[NodeState]) -> float:
    """Score of putting ``inst`` on ``nodes`` (primary first); the model is left unchanged."""
    group = nodes[0].group
    before = nplus1_failures(model, group)
    saved = list(inst.nodes)
    model.place(inst, [n.name for n in nodes])
    try:
        load = sum(node_load(model, n) for n in nodes) / len(nodes)
        broken = len(nplus1_failures(model, group) - before)
    finally:
        model.unplace(inst)
        inst.nodes = saved
    return load + NPLUS1_PENALTY * broken
