"""OP_INSTANCE_CREATE mode ``import``: an instance rebuilt from an export (gnt-backup import).

``read_export`` finds the export (on the given node, or on whichever node has
it), reads its config.ini and fills what the opcode leaves open, as Ganeti
does: OS, disk template, disks, NICs (with the exported MACs unless others are
given), tags, hypervisor and parameters.  Hypervisor parameters are taken only
when the instance keeps the exported hypervisor, OS parameters only when it
keeps the exported OS: the others would not apply.  ``import_disks`` then
streams each disk's file from the source node into the OS ``import`` script on
the new primary (backend/disk_transfer.py).
"""

import os
from dataclasses import dataclass
from typing import Any, Callable

from corral import constants, errors, objects, pathutils
from corral.cmdlib import export_ini
from corral.cmdlib import instance_storage as ist
from corral.cmdlib import instance_utils as iu
from corral.cmdlib.base import expand_node
from corral.cmdlib.instance_migration_live import transfer_data
from corral.cmdlib.instance_move import check_compress

Feedback = Callable[[str], None]
# Where Ganeti keeps exports; absolute --src-dir paths must name a directory in it.
GANETI_EXPORT_DIR = "/srv/ganeti/export"


@dataclass
class ExportSource:
    node: objects.Node
    name: str                   # the export's directory name in the export dir
    info: export_ini.ExportInfo

    def hooks_env(self) -> dict[str, Any]:
        return {"SRC_NODE": self.node.name,
                "SRC_PATH": os.path.join(pathutils.export_dir(), self.name),
                "SRC_IMAGES": " ".join(d["dump"] for d in self.info.disks if d["dump"])}


def export_names_by_node(ctx: Any, node_names: list[str]) -> dict[str, list[str] | None]:
    """Export names per node (None where the node did not answer), one parallel call.

    ``ctx`` is anything with an ``rpc`` client: a logical unit or the master context.
    """
    if not node_names:
        return {}
    res = ctx.rpc.call("export_list", node_names, {})
    return {node: (None if r.failed or not isinstance(r.data, list) else list(r.data))
            for node, r in res.items()}


def online_node_names(cfg: Any) -> list[str]:
    return sorted(n.name for n in cfg.get_all_nodes().values() if not n.offline)


def export_name(src_path: str) -> str:
    """The export directory named by ``--src-dir``: a name, or a path in the export dir."""
    name = src_path
    if os.path.isabs(src_path):
        parent, name = os.path.split(os.path.normpath(src_path))
        if parent not in (GANETI_EXPORT_DIR, os.path.normpath(pathutils.export_dir())):
            raise errors.OpPrereqError("Import source path %s is not in the export directory"
                                       " (%s)" % (src_path, GANETI_EXPORT_DIR),
                                       errors.ECODE_INVAL)
    if not name or "/" in name or name.startswith("."):
        raise errors.OpPrereqError("Invalid import source path '%s' (a name in the export"
                                   " directory is expected)" % src_path, errors.ECODE_INVAL)
    return name


def check_arguments(op: Any) -> None:
    """Import-only argument checks; the source path defaults to the instance name."""
    op.src_path = op.src_path or op.instance_name
    export_name(op.src_path)
    check_compress(op.compress)


def read_export(lu: Any, op: Any) -> ExportSource:
    cfg = lu.cfg
    name = export_name(op.src_path)
    if op.src_node:
        node = expand_node(cfg, op.src_node)
        iu.check_node_online(cfg, node.uuid, "as import source")
    else:
        having = [n for n, names in sorted(export_names_by_node(lu, online_node_names(cfg))
                                           .items()) if names and name in names]
        if not having:
            raise errors.OpPrereqError("No export found for relative path %s" % name,
                                       errors.ECODE_NOENT)
        node = expand_node(cfg, having[0])
    res = lu.rpc.call_one("export_info", node.name, {"name": name})
    if res.failed:
        raise errors.OpPrereqError("No export or invalid export found in dir %s on node %s: %s"
                                   % (name, node.name, res.fail_msg), errors.ECODE_NOENT)
    info = export_ini.parse(res.data, "%s on node %s" % (name, node.name))
    _fill_opcode(op, info, cfg.get_cluster_info())
    op.src_node, op.src_node_uuid = node.name, node.uuid
    return ExportSource(node, name, info)


def _fill_opcode(op: Any, info: export_ini.ExportInfo, cluster: objects.Cluster) -> None:
    """What the opcode leaves open, from the export (the opcode's values win)."""
    exported_os = op.os_type in (None, "") or op.os_type == info.os
    op.os_type = op.os_type or info.os
    op.disk_template = op.disk_template or info.disk_template or None
    if not op.disks and op.disk_template != constants.DT_DISKLESS:
        op.disks = [dict({"size": d["size"]}, **({"name": d["name"]} if d["name"] else {}))
                    for d in info.disks]
    if not op.nics:
        op.nics = [dict(nic) for nic in info.nics]
    else:
        op.nics = [_with_exported_mac(nic, info.nics[i] if i < len(info.nics) else {})
                   for i, nic in enumerate(op.nics)]
    op.tags = op.tags or list(info.tags)
    op.hypervisor = op.hypervisor or info.hypervisor
    if (op.hypervisor or cluster.primary_hypervisor) == info.hypervisor:
        op.hvparams = dict(info.hvparams, **op.hvparams)
    op.beparams = dict(info.beparams, **op.beparams)
    if exported_os:
        op.osparams = dict(info.osparams, **op.osparams)
        op.osparams_private = dict(info.osparams_private, **(op.osparams_private or {}))


def _with_exported_mac(nic: Any, exported: dict) -> Any:
    if not isinstance(nic, dict) or "mac" not in exported:
        return nic
    if str(nic.get("mac") or "auto").lower() != "auto":
        return nic
    return dict(nic, mac=exported["mac"])


def import_disks(lu: Any, inst: objects.Instance, source: ExportSource, pnode: objects.Node,
                 compress: str, feedback: Feedback) -> None:
    """Each exported disk's data into the OS import script for that disk on ``pnode``."""
    args = iu.os_install_args(lu.cfg, inst, lu.op.osparams_secret,
                              debug=lu.op.debug_level or 0)
    args["disks"] = ist._rpc_disks(lu, inst.disks)
    indexes = []
    for idx in range(len(inst.disks)):
        dump = source.info.disks[idx]["dump"] if idx < len(source.info.disks) else None
        if dump:
            indexes.append((idx, dump))
        else:
            lu.log_warning("The export has no data for disk %d; it stays empty", idx)
    if not indexes:
        return
    transfer_data(lu, source.node, pnode,
                  [{"kind": "export-file", "path": "%s/%s" % (source.name, dump)}
                   for _idx, dump in indexes],
                  [{"kind": "os-import", "os_args": args, "disk_index": idx}
                   for idx, _dump in indexes], compress, feedback)
