"""The ``export`` query resource: which instance exports each node holds.

Used by ``gnt-backup list`` and RAPI through OP_QUERY/luxi Query with
what="export".  One row per (node, export name), sorted by node then export.
The export lists come from one parallel ``export_list`` call to every online
node queried (offline nodes are never contacted and give no row); a node that
does not answer gives a single row whose ``export`` cell has no data, so a
silent node is visible rather than looking like a node without exports.
Field titles and kinds live in client/query_fields.py (EXPORT_FIELDS).
"""

from dataclasses import dataclass
from typing import Any, Callable

from corral import query
from corral.cmdlib.instance_import import export_names_by_node


@dataclass(frozen=True)
class ExportRow:
    """One item of the query; ``export`` is None when the node did not answer."""

    node: str
    export: str | None


def _export(_data: Any, row: ExportRow) -> str:
    if row.export is None:
        raise query.NoData()
    return row.export


EXPORT_GETTERS: dict[str, Callable[[Any, ExportRow], Any]] = {
    "node": lambda d, r: r.node,
    "export": _export,
}


def collect_exports(ctx: Any, node_names: list[str]) -> list[ExportRow]:
    """Rows for ``node_names`` (all online) from one parallel ``export_list`` fan-out."""
    rows: list[ExportRow] = []
    for node, names in export_names_by_node(ctx, node_names).items():
        if names is None:
            rows.append(ExportRow(node, None))
        else:
            rows.extend(ExportRow(node, str(name)) for name in names)
    rows.sort(key=lambda r: (r.node, r.export or ""))
    return rows


def prepare_exports(ctx: Any, names: list[str], getters: list) -> tuple[None, list[ExportRow]]:
    """query.register_resource's ``prepare``: ``names`` restrict the nodes asked."""
    nodes = query.select_items(ctx.cfg.get_all_nodes(), names, ctx.cfg.expand_node_name,
                               "Node")
    online = sorted({n.name for n in nodes if not n.offline})
    return None, collect_exports(ctx, online)


query.register_resource("export", EXPORT_GETTERS, prepare_exports)
