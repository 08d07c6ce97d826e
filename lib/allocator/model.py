"""The cluster as the built-in allocator sees it: capacities and usage per node.

Built from the iallocator input (spec/iallocator.md §2), so the built-in
allocator reads exactly what an external plugin such as hail reads.  The
model is mutable on purpose: placing or removing an instance updates the
nodes' free memory, disk, CPUs and N+1 reservations, so a request that
places several instances (multi-allocate, evacuation) sees its own earlier
decisions.  Pure: no I/O.
"""

from dataclasses import dataclass, field
from typing import Any

from corral import constants

# Templates whose data lives on storage every node sees: one pool, no per-node disk.
SHARED_STORAGE = frozenset([constants.DT_SHARED_FILE, constants.DT_RBD, constants.DT_EXT,
                            constants.DT_GLUSTER])
# Templates without disk space of their own (adopted block devices, no disks).
NO_SPACE = frozenset([constants.DT_DISKLESS, constants.DT_BLOCK])
# Templates an evacuation can move by migrating/failing over to any node.
MOVABLE_EXT = constants.DTS_EXT_MIRROR
DEFAULT_VCPU_RATIO = 4.0


@dataclass
class NodeState:
    """One node: static flags from the config, dynamic capacity from the node."""

    name: str
    group: str
    offline: bool = False
    drained: bool = False
    vm_capable: bool = True
    live: bool = True
    mem_total: int = 0
    mem_reserved: int = 0
    mem_free: int = 0
    disk_total: int = 0
    disk_free: int = 0
    cpu_total: int = 1
    cpu_reserved: int = 0
    spindles_total: int = 0
    spindles_free: int = 0
    tags: list[str] = field(default_factory=list)
    vcpus_used: int = 0
    # Memory of admin-up primaries that would fail over to any other node (N+1).
    failover_mem: int = 0
    primaries: set[str] = field(default_factory=set)
    secondaries: set[str] = field(default_factory=set)
    # DRBD N+1: memory of the instances whose primary is <peer> and secondary this node.
    peer_mem: dict[str, int] = field(default_factory=dict)

    @property
    def mem_usable(self) -> int:
        """Memory instances can ever use (total minus what the node OS keeps)."""
        return max(self.mem_total - self.mem_reserved, 1)

    @property
    def reserved_for_peers(self) -> int:
        """Memory this node must keep free to take over any one peer's instances."""
        return max(self.peer_mem.values(), default=0)


@dataclass
class InstanceState:
    name: str
    memory: int
    vcpus: int
    disk_template: str
    disk_space: int
    nodes: list[str]
    admin_up: bool = True
    spindle_use: int = 1
    tags: list[str] = field(default_factory=list)

    @property
    def primary(self) -> str | None:
        return self.nodes[0] if self.nodes else None

    @property
    def secondary(self) -> str | None:
        return self.nodes[1] if len(self.nodes) > 1 else None


@dataclass
class GroupState:
    uuid: str
    name: str
    alloc_policy: str = constants.ALLOC_POLICY_PREFERRED
    vcpu_ratio: float = DEFAULT_VCPU_RATIO


class ClusterModel:
    """Nodes, groups and instances, with operations that keep the usage consistent."""

    def __init__(self, nodes: dict[str, NodeState], groups: dict[str, GroupState],
                 instances: dict[str, InstanceState]) -> None:
        self.nodes = nodes
        self.groups = groups
        self.instances = instances
        for inst in instances.values():
            self._account(inst, +1)

    # ---- building ---------------------------------------------------------------------

    @classmethod
    def from_input(cls, data: dict[str, Any]) -> "ClusterModel":
        """The model of an iallocator input dict; KeyError/TypeError on a malformed one."""
        cluster_ratio = float((data.get("ipolicy") or {}).get("vcpu-ratio",
                                                                DEFAULT_VCPU_RATIO))
        groups = {}
        for uuid, g in (data.get("nodegroups") or {}).items():
            ratio = (g.get("ipolicy") or {}).get("vcpu-ratio", cluster_ratio)
            groups[uuid] = GroupState(uuid, g.get("name", uuid),
                                      g.get("alloc_policy", constants.ALLOC_POLICY_PREFERRED),
                                      float(ratio))
        nodes = {name: _node_from_input(name, n) for name, n in (data.get("nodes") or {}).items()}
        instances = {name: _instance_from_input(name, i)
                     for name, i in (data.get("instances") or {}).items()}
        return cls(nodes, groups, instances)

    # ---- accounting -------------------------------------------------------------------

    def _account(self, inst: InstanceState, sign: int) -> None:
        """Add (+1) or remove (-1) ``inst``'s usage on its nodes.

        Free memory and disk in the input are already net of existing
        instances, so the constructor only counts CPUs, N+1 reservations and
        membership; ``place``/``unplace`` move memory and disk as well.
        """
        pnode = self.nodes.get(inst.primary or "")
        if pnode is not None:
            pnode.vcpus_used += sign * inst.vcpus
            if inst.admin_up and inst.disk_template in MOVABLE_EXT:
                pnode.failover_mem += sign * inst.memory
            _toggle(pnode.primaries, inst.name, sign)
        snode = self.nodes.get(inst.secondary or "")
        if snode is not None and pnode is not None:
            snode.peer_mem[pnode.name] = snode.peer_mem.get(pnode.name, 0) + sign * inst.memory
            if snode.peer_mem[pnode.name] <= 0:
                del snode.peer_mem[pnode.name]
            _toggle(snode.secondaries, inst.name, sign)

    def _resources(self, inst: InstanceState, sign: int) -> None:
        pnode = self.nodes.get(inst.primary or "")
        if pnode is not None:
            pnode.mem_free -= sign * inst.memory
        if inst.disk_template in NO_SPACE or not inst.disk_space:
            return
        if inst.disk_template in SHARED_STORAGE and pnode is not None:
            for node in self.nodes.values():
                if node.group == pnode.group:
                    node.disk_free -= sign * inst.disk_space
            return
        for name in inst.nodes:
            node = self.nodes.get(name)
            if node is not None:
                node.disk_free -= sign * inst.disk_space

    def place(self, inst: InstanceState, nodes: list[str]) -> None:
        """Put ``inst`` (new, or removed before) on ``nodes`` (primary first)."""
        inst.nodes = list(nodes)
        self.instances[inst.name] = inst
        self._account(inst, +1)
        self._resources(inst, +1)

    def unplace(self, inst: InstanceState) -> None:
        """Take ``inst`` off its nodes, giving its resources back."""
        self._account(inst, -1)
        self._resources(inst, -1)
        self.instances.pop(inst.name, None)

    def group_nodes(self, group: str) -> list[NodeState]:
        return sorted((n for n in self.nodes.values() if n.group == group),
                      key=lambda n: n.name)

    def group_name(self, uuid: str) -> str:
        group = self.groups.get(uuid)
        return group.name if group is not None else uuid


def _toggle(items: set[str], name: str, sign: int) -> None:
    if sign > 0:
        items.add(name)
    else:
        items.discard(name)


def _node_from_input(name: str, n: dict[str, Any]) -> NodeState:
    node = NodeState(name=name, group=n.get("group", ""), offline=bool(n.get("offline")),
                     drained=bool(n.get("drained")),
                     vm_capable=bool(n.get("vm_capable", True)), tags=list(n.get("tags") or []))
    node.live = not node.offline and node.vm_capable and "free_memory" in n
    if node.live:
        node.mem_total = int(n.get("total_memory", 0))
        node.mem_reserved = int(n.get("reserved_memory", 0))
        node.mem_free = int(n.get("free_memory", 0))
        node.disk_total = int(n.get("total_disk", 0))
        node.disk_free = int(n.get("free_disk", 0))
        node.cpu_total = max(int(n.get("total_cpus", 1)), 1)
        node.cpu_reserved = int(n.get("reserved_cpus", 0))
        node.spindles_total = int(n.get("total_spindles", 0))
        node.spindles_free = int(n.get("free_spindles", 0))
    return node


def _instance_from_input(name: str, i: dict[str, Any]) -> InstanceState:
    return InstanceState(name=name, memory=int(i.get("memory", 0)), vcpus=int(i.get("vcpus", 1)),
                         disk_template=i.get("disk_template", constants.DT_DISKLESS),
                         disk_space=int(i.get("disk_space_total", 0)),
                         nodes=list(i.get("nodes") or []),
                         admin_up=i.get("admin_state", constants.ADMINST_UP)
                         == constants.ADMINST_UP,
                         spindle_use=int(i.get("spindle_use", 1)), tags=list(i.get("tags") or []))
