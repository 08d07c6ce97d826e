"""OS definitions seen from the master: OP_OS_DIAGNOSE and the ``os`` query resource.

One ``os_diagnose`` call to every online vm-capable node (in parallel); an OS
is ``valid`` when every such node has it valid.  Variants, parameters and API
versions are those common to all nodes.
"""

from typing import Any, Callable

from corral import errors, query
from corral.cmdlib.base import NoHooksLU

OS_FIELDS = ("name", "valid", "variants", "parameters", "api_versions", "blacklisted",
             "hidden", "trusted", "node_status", "os_hvp", "osparams")


class OsInfo:
    """One OS name across the nodes (``per_node``: node name -> definition dict or None)."""

    def __init__(self, name: str, per_node: dict[str, dict | None]) -> None:
        self.name = name
        self.per_node = per_node
        found = [d for d in per_node.values() if d is not None]
        self.valid = bool(per_node) and len(found) == len(per_node) and all(
            d["valid"] for d in found)
        good = [d for d in found if d["valid"]]
        self.variants = _common([d["variants"] for d in good])
        self.api_versions = sorted(set.intersection(*[set(d["api_versions"]) for d in good])
                                   if good else set())
        common_names = _common([[p[0] for p in d["parameters"]] for d in good])
        first = dict((p[0], p[1]) for p in good[0]["parameters"]) if good else {}
        self.parameters = [[n, first.get(n, "")] for n in common_names]
        self.trusted = bool(good) and all(d["trusted"] for d in good)


def _common(lists: list[list[str]]) -> list[str]:
    """Items present in every list, in the first list's order."""
    if not lists:
        return []
    rest = [set(x) for x in lists[1:]]
    return [v for v in lists[0] if all(v in s for s in rest)]


class OsQueryData:
    def __init__(self, ctx: Any) -> None:
        self.cluster = ctx.cfg.get_cluster_info()


def collect(ctx: Any) -> list[OsInfo]:
    """Every OS name any node reports, sorted by name."""
    nodes = sorted(n.name for n in ctx.cfg.get_all_nodes().values()
                   if not n.offline and n.vm_capable)
    results = ctx.rpc.call("os_diagnose", nodes, {}) if nodes else {}
    by_os: dict[str, dict[str, dict | None]] = {}
    answered = []
    for node, res in results.items():
        if res.failed or not isinstance(res.data, list):
            continue
        answered.append(node)
        for entry in res.data:
            by_os.setdefault(entry["name"], {})[node] = entry
    for per_node in by_os.values():
        for node in answered:
            per_node.setdefault(node, None)
    return [OsInfo(name, by_os[name]) for name in sorted(by_os)]


def _node_status(d: OsQueryData, o: OsInfo) -> dict[str, list]:
    out = {}
    for node, entry in sorted(o.per_node.items()):
        if entry is None:
            out[node] = []
        else:
            out[node] = [[entry["path"], entry["valid"], entry["error"], entry["variants"],
                          entry["parameters"], entry["api_versions"], entry["trusted"]]]
    return out


OS_GETTERS: dict[str, Callable[[OsQueryData, OsInfo], Any]] = {
    "name": lambda d, o: o.name,
    "valid": lambda d, o: o.valid,
    "variants": lambda d, o: list(o.variants),
    "parameters": lambda d, o: [list(p) for p in o.parameters],
    "api_versions": lambda d, o: list(o.api_versions),
    "blacklisted": lambda d, o: o.name in d.cluster.blacklisted_os,
    "hidden": lambda d, o: o.name in d.cluster.hidden_os,
    "trusted": lambda d, o: o.trusted,
    "node_status": _node_status,
    "os_hvp": lambda d, o: dict(d.cluster.os_hvp.get(o.name, {})),
    "osparams": lambda d, o: dict(d.cluster.osparams.get(o.name, {})),
}


def prepare_os(ctx: Any, names: list[str], getters: list) -> tuple[OsQueryData, list[OsInfo]]:
    items = collect(ctx)
    if names:
        known = {o.name: o for o in items}
        missing = [n for n in names if n.split("+", 1)[0] not in known]
        if missing:
            raise errors.OpPrereqError("OS '%s' not known" % missing[0], errors.ECODE_NOENT)
        items = [known[n.split("+", 1)[0]] for n in names]
    return OsQueryData(ctx), items


query.register_resource("os", OS_GETTERS, prepare_os)


class LUOsDiagnose(NoHooksLU):
    """Rows of ``output_fields`` per OS; only valid, visible OSes unless the fields
    ask about validity or visibility (spec/opcodes.md §4)."""

    def check_arguments(self) -> None:
        unknown = [f for f in self.op.output_fields if f not in OS_GETTERS]
        if unknown:
            raise errors.OpPrereqError("Unknown output fields selected: %s" %
                                       ", ".join(unknown), errors.ECODE_INVAL)

    def exec(self, feedback_fn: Callable[[str], None]) -> list[list]:
        data, items = prepare_os(self.context, list(self.op.names), [])
        fields = self.op.output_fields
        if not {"valid", "hidden", "blacklisted"} & set(fields):
            items = [o for o in items if o.valid and o.name not in data.cluster.hidden_os
                     and o.name not in data.cluster.blacklisted_os]
        return [[OS_GETTERS[f](data, o) for f in fields] for o in items]
