"""The DRBD minors a node uses according to the configuration (``gnt-node list-drbd``).

Read-only and answered by masterd directly (luxi method ``QueryNodeDrbd``), not
through a job: it only reads the in-memory configuration, takes no locks and
asks no node.  What DRBD actually has configured on the node is another matter
(``gnt-cluster verify`` compares the two).
"""

from typing import Any

from corral import constants, objects
from corral.cmdlib import base

ROLE_PRIMARY = "primary"
ROLE_SECONDARY = "secondary"


def _drbd_ends(disk: objects.Disk) -> tuple[str, str, int, int] | None:
    """(node_a, node_b, minor_a, minor_b) of a top-level DRBD disk whose minors are
    allocated; None for other disks.  The LV children never hold minors."""
    lid = disk.logical_id
    if disk.dev_type != constants.DT_DRBD8 or not lid or len(lid) < 5:
        return None
    node_a, node_b, _port, minor_a, minor_b = lid[:5]
    if minor_a is None or minor_b is None:
        return None
    return node_a, node_b, int(minor_a), int(minor_b)


def node_drbd_rows(cfg: Any, node_name: str) -> list[list]:
    """``[node, minor, instance, iv_name, role, peer]`` for each DRBD minor the node
    uses, sorted by minor (then instance and disk, so the order is stable).

    ``node_name`` is a full name, UUID or unambiguous short name; an unknown one
    raises OpPrereqError(ECODE_NOENT) "Node 'x' not known".  Role is ``primary``
    when the node is the instance's primary node, else ``secondary``.  A peer no
    longer in the configuration is shown by its UUID rather than hiding the row.
    """
    node = base.expand_node(cfg, node_name)
    rows: list[list] = []
    for inst in cfg.get_all_instances().values():
        role = ROLE_PRIMARY if inst.primary_node == node.uuid else ROLE_SECONDARY
        for disk in inst.disks:
            ends = _drbd_ends(disk)
            if ends is None:
                continue
            node_a, node_b, minor_a, minor_b = ends
            if node.uuid == node_a:
                minor, peer_uuid = minor_a, node_b
            elif node.uuid == node_b:
                minor, peer_uuid = minor_b, node_a
            else:
                continue
            peer = cfg.get_node_info(peer_uuid)
            rows.append([node.name, minor, inst.name, disk.iv_name, role,
                         peer.name if peer is not None else peer_uuid])
    rows.sort(key=lambda row: (row[1], row[2], row[3]))
    return rows
