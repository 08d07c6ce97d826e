"""Master-side queries: field values for nodes, groups, instances (the list commands, RAPI).

A query returns ``{"fields": [fielddef...], "data": [[[status, value], ...], ...]}``
like Ganeti's query2: every cell carries a status (constants.RS_*) so clients
can tell "no data", "node offline" and "unknown field" apart.  Field titles and
kinds come from the one field table (client/query_fields.py); the getters here
compute the values.  Live data is fetched with one parallel RPC per query, and
only when a requested field needs it.
"""

from typing import Any, Callable

from corral import constants, errors, serializer
from corral.client import query_fields as field_tables  # query_fields() below shadows it

RS_NORMAL = constants.RS_NORMAL
RS_UNKNOWN = constants.RS_UNKNOWN
RS_NODATA = constants.RS_NODATA
RS_UNAVAIL = constants.RS_UNAVAIL
RS_OFFLINE = constants.RS_OFFLINE


class _NoData(Exception):
    """A getter has no value for this item (status RS_NODATA)."""


class _Offline(Exception):
    """The item's node is offline (status RS_OFFLINE)."""


class _Unavail(Exception):
    """The value does not exist now, e.g. memory of a stopped instance (RS_UNAVAIL)."""


# For getters registered by other modules (register_resource).
NoData, Offline, Unavail = _NoData, _Offline, _Unavail


Getter = Callable[[Any, Any], Any]


# ---- nodes -------------------------------------------------------------------------

class NodeQueryData:
    def __init__(self, ctx: Any, nodes: list, live: dict[str, Any] | None) -> None:
        self.ctx = ctx
        self.cfg = ctx.cfg
        self.nodes = nodes
        self.live = live
        self.cluster = ctx.cfg.get_cluster_info()
        self.master = ctx.cfg.get_master_node()
        self.inst_by_node: dict[str, tuple[list[str], list[str]]] = {}
        for inst in self.cfg.get_all_instances().values():
            self.inst_by_node.setdefault(inst.primary_node, ([], []))[0].append(inst.name)
            for sec in inst.secondary_nodes:
                self.inst_by_node.setdefault(sec, ([], []))[1].append(inst.name)


def _node_role(d: NodeQueryData, node) -> str:
    if node.uuid == d.master:
        return constants.NR_MASTER
    if node.master_candidate:
        return constants.NR_MCANDIDATE
    if node.drained:
        return constants.NR_DRAINED
    if node.offline:
        return constants.NR_OFFLINE
    return constants.NR_REGULAR


def _node_ndparams(d: NodeQueryData, node) -> dict:
    from corral.cmdlib.cluster import filled_ndparams
    group = d.cfg.get_node_group(node.group)
    out = filled_ndparams(d.cluster)
    out.update(group.ndparams if group else {})
    out.update(node.ndparams)
    return out


def _live(key: str, transform: Callable[[Any], Any] = lambda v: v) -> Getter:
    def get(d: NodeQueryData, node) -> Any:
        if node.offline:
            raise _Offline()
        info = (d.live or {}).get(node.name)
        if info is None or info.get(key) is None:
            raise _NoData()
        return transform(info[key])
    get.live = True  # type: ignore[attr-defined]
    return get


NODE_GETTERS: dict[str, Getter] = {
    "name": lambda d, n: n.name,
    "pip": lambda d, n: n.primary_ip,
    "sip": lambda d, n: n.secondary_ip,
    "master": lambda d, n: n.uuid == d.master,
    "master_candidate": lambda d, n: n.master_candidate or n.uuid == d.master,
    "master_capable": lambda d, n: n.master_capable,
    "vm_capable": lambda d, n: n.vm_capable,
    "drained": lambda d, n: n.drained,
    "offline": lambda d, n: n.offline,
    "role": _node_role,
    "group": lambda d, n: d.cfg.get_node_group(n.group).name,
    "group.uuid": lambda d, n: n.group,
    "ndparams": _node_ndparams,
    "custom_ndparams": lambda d, n: dict(n.ndparams),
    "pinst_cnt": lambda d, n: len(d.inst_by_node.get(n.uuid, ([], []))[0]),
    "sinst_cnt": lambda d, n: len(d.inst_by_node.get(n.uuid, ([], []))[1]),
    "pinst_list": lambda d, n: sorted(d.inst_by_node.get(n.uuid, ([], []))[0]),
    "sinst_list": lambda d, n: sorted(d.inst_by_node.get(n.uuid, ([], []))[1]),
    "powered": lambda d, n: n.powered,
    "hv_state": lambda d, n: dict(n.hv_state_static),
    "disk_state": lambda d, n: dict(n.disk_state_static),
    "ctime": lambda d, n: n.ctime,
    "mtime": lambda d, n: n.mtime,
    "uuid": lambda d, n: n.uuid,
    "serial_no": lambda d, n: n.serial_no,
    "tags": lambda d, n: list(n.tags),
    "bootid": _live("bootid"),
    "cnodes": _live("cpu_nodes"),
    "cnos": _live("cpu_dom0"),
    "csockets": _live("cpu_sockets"),
    "ctotal": _live("cpu_total"),
    "mtotal": _live("memory_total"),
    "mnode": _live("memory_dom0"),
    "mfree": _live("memory_free"),
    "dtotal": _live("storage_size"),
    "dfree": _live("storage_free"),
    "sptotal": _live("spindles_total"),
    "spfree": _live("spindles_free"),
    "hv_problems": _live("hv", lambda hv: sorted(
        "%s: %s" % (name, info["hv_error"]) for name, info in hv.items()
        if isinstance(info, dict) and info.get("hv_error"))),
}


def _node_live_data(ctx, nodes: list) -> dict[str, Any]:
    """One parallel node_info call to every online node queried."""
    names = [n.name for n in nodes if not n.offline]
    if not names:
        return {}
    cluster = ctx.cfg.get_cluster_info()
    results = ctx.rpc.call("node_info", names, {"hv_names": list(cluster.enabled_hypervisors),
                                                "storage_units": storage_units(cluster)})
    live: dict[str, Any] = {}
    for name, res in results.items():
        if res.failed or not isinstance(res.data, dict):
            continue
        data = dict(res.data)
        data.setdefault("cpu_dom0", 1 if data.get("cpu_total") else None)
        for unit in data.get("storage") or []:
            if unit.get("storage_size") is not None:
                data.setdefault("storage_size", unit.get("storage_size"))
                data.setdefault("storage_free", unit.get("storage_free"))
        data.setdefault("spindles_total", 1)
        data.setdefault("spindles_free", 1)
        live[name] = data
    return live


def storage_units(cluster) -> list[list]:
    """The storage unit reported as a node's disk space: the first enabled template's."""
    for tmpl in cluster.enabled_disk_templates:
        if tmpl == constants.DT_FILE:
            return [["file", cluster.file_storage_dir]]
        if tmpl == constants.DT_SHARED_FILE:
            return [["sharedfile", cluster.shared_file_storage_dir]]
        if tmpl in constants.DTS_LVM:
            return [["lvm-vg", cluster.volume_group_name]]
    return []


def select_items(items: dict, names: list[str], expand: Callable[[str], Any],
                 kind: str) -> list:
    """The named objects (``expand`` resolves short names), or all sorted by name;
    OpPrereqError (ECODE_NOENT) "<kind> 'x' not known" for an unknown one."""
    if not names:
        return sorted(items.values(), key=lambda o: o.name)
    out = []
    for name in names:
        obj = expand(name)
        if obj is None:
            raise errors.OpPrereqError("%s '%s' not known" % (kind, name), errors.ECODE_NOENT)
        out.append(obj)
    return out


# ---- groups ------------------------------------------------------------------------

def _group_members(d, g) -> list[str]:
    return sorted(n.name for n in d.cfg.get_all_nodes().values() if n.group == g.uuid)


def _group_instances(d, g) -> list[str]:
    members = {n.uuid for n in d.cfg.get_all_nodes().values() if n.group == g.uuid}
    return sorted(i.name for i in d.cfg.get_all_instances().values() if i.primary_node in members)


def _group_ipolicy(d, g) -> dict:
    from corral.cmdlib.cluster import filled_ipolicy
    out = filled_ipolicy(d.cluster)
    out.update(g.ipolicy)
    return out


def _group_diskparams(d, g) -> dict:
    from corral.cmdlib.cluster import filled_diskparams
    out = filled_diskparams(d.cluster)
    for tmpl, params in g.diskparams.items():
        out.setdefault(tmpl, {}).update(params)
    return out


def _group_ndparams(d, g) -> dict:
    from corral.cmdlib.cluster import filled_ndparams
    out = filled_ndparams(d.cluster)
    out.update(g.ndparams)
    return out


GROUP_GETTERS: dict[str, Getter] = {
    "name": lambda d, g: g.name,
    "uuid": lambda d, g: g.uuid,
    "alloc_policy": lambda d, g: g.alloc_policy,
    "node_cnt": lambda d, g: len(_group_members(d, g)),
    "node_list": _group_members,
    "pinst_cnt": lambda d, g: len(_group_instances(d, g)),
    "pinst_list": _group_instances,
    "ndparams": _group_ndparams,
    "custom_ndparams": lambda d, g: dict(g.ndparams),
    "diskparams": _group_diskparams,
    "custom_diskparams": lambda d, g: dict(g.diskparams),
    "ipolicy": _group_ipolicy,
    "custom_ipolicy": lambda d, g: dict(g.ipolicy),
    "networks": lambda d, g: sorted(g.networks),
    "ctime": lambda d, g: g.ctime,
    "mtime": lambda d, g: g.mtime,
    "serial_no": lambda d, g: g.serial_no,
    "tags": lambda d, g: list(g.tags),
}


class _SimpleData:
    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.cfg = ctx.cfg
        self.cluster = ctx.cfg.get_cluster_info()


# ---- dispatch ----------------------------------------------------------------------

def _resource(what: str) -> tuple[dict[str, Getter], Callable]:
    if what == "node":
        return NODE_GETTERS, _prepare_nodes
    if what == "group":
        return GROUP_GETTERS, _prepare_groups
    extra = _EXTRA_RESOURCES.get(what)
    if extra is not None:
        return extra
    raise errors.OpPrereqError("Resource '%s' cannot be queried" % what, errors.ECODE_INVAL)


# Resources registered by other modules (instances, OSes) as they are built.
_EXTRA_RESOURCES: dict[str, tuple[dict[str, Getter], Callable]] = {}


def register_resource(what: str, getters: dict[str, Getter], prepare: Callable) -> None:
    _EXTRA_RESOURCES[what] = (getters, prepare)


def _prepare_nodes(ctx, names: list[str], getters: list[Getter]):
    nodes = select_items(ctx.cfg.get_all_nodes(), names, ctx.cfg.expand_node_name, "Node")
    live = None
    if any(getattr(g, "live", False) for g in getters):
        live = _node_live_data(ctx, nodes)
    return NodeQueryData(ctx, nodes, live), nodes


def _prepare_groups(ctx, names: list[str], getters: list[Getter]):
    groups = ctx.cfg.get_all_node_groups()

    def expand(name: str):
        try:
            return groups[ctx.cfg.lookup_node_group(name)]
        except errors.OpPrereqError:
            return None
    return _SimpleData(ctx), select_items(groups, names, expand, "Node group")


def lookup_getter(getters: dict[str, Getter], name: str) -> Getter | None:
    getter = getters.get(name)
    if getter is not None:
        return getter
    dynamic = getters.get("__dynamic__")
    return dynamic(name) if dynamic is not None else None  # type: ignore[misc]


def query(ctx: Any, what: str, fields: list[str], names: list[str],
          qfilter: Any = None) -> dict:
    """Values of ``fields`` for the named items (all if ``names`` is empty)."""
    if qfilter is not None:
        names = list(names) + filter_names(qfilter)
    getter_table, prepare = _resource(what)
    getters = [lookup_getter(getter_table, f) for f in fields]
    data, items = prepare(ctx, names, [g for g in getters if g is not None])
    rows = []
    for item in items:
        row = []
        for getter in getters:
            if getter is None:
                row.append([RS_UNKNOWN, None])
                continue
            try:
                row.append([RS_NORMAL, getter(data, item)])
            except _NoData:
                row.append([RS_NODATA, None])
            except _Offline:
                row.append([RS_OFFLINE, None])
            except _Unavail:
                row.append([RS_UNAVAIL, None])
        rows.append(row)
    return {"fields": field_defs(what, fields), "data": rows}


DictsEncoder = Callable[[Any, list[str], list[str]], str]
# Resources with their own (faster, cached) encoder for query_dicts_json.
_DICTS_ENCODERS: dict[str, DictsEncoder] = {}


def register_dicts_encoder(what: str, encoder: DictsEncoder) -> None:
    """``encoder(ctx, fields, names)`` must return exactly what the generic path of
    query_dicts_json returns for the same arguments (tests compare the two)."""
    _DICTS_ENCODERS[what] = encoder


def query_dicts_json(ctx: Any, what: str, fields: list[str], names: list[str]) -> serializer.RawJSON:
    """``[{field: value, ...}, ...]`` as JSON text, the shape of RAPI's bulk lists.

    Items and errors as for query() (unknown names raise); a cell without a
    normal value (no data, offline node, unknown field) is null.  Resources may
    register a faster encoder producing the same text (register_dicts_encoder).
    """
    encoder = _DICTS_ENCODERS.get(what)
    if encoder is not None:
        return serializer.RawJSON(encoder(ctx, fields, names))
    return serializer.RawJSON(dicts_json_generic(ctx, what, fields, names))


def dicts_json_generic(ctx: Any, what: str, fields: list[str], names: list[str]) -> str:
    """query_dicts_json without the registered encoders (the reference for them)."""
    rows = query(ctx, what, fields, names)["data"]
    return serializer.dumps([dict(zip(fields, [cell[1] if cell[0] == RS_NORMAL else None
                                               for cell in row])) for row in rows])


def filter_names(qfilter: Any) -> list[str]:
    """Names from the simple filters clients send: ``["|", ["=", "name", "x"], ...]``."""
    if not isinstance(qfilter, list) or not qfilter:
        raise errors.OpPrereqError("Invalid query filter %r" % (qfilter,), errors.ECODE_INVAL)
    op = qfilter[0]
    if op == "|":
        return [n for sub in qfilter[1:] for n in filter_names(sub)]
    if op in ("=", "==") and len(qfilter) == 3 and qfilter[1] in ("name", "id"):
        return [str(qfilter[2])]
    raise errors.OpPrereqError("Unsupported query filter %r (supported: name equality and"
                               " '|' of them)" % (qfilter,), errors.ECODE_INVAL)


def field_defs(what: str, fields: list[str] | None) -> list[dict]:
    out = []
    for name in fields or []:
        fdef = field_tables.lookup_field(what, name)
        if fdef is None:
            out.append({"name": name, "title": name, "kind": "unknown",
                        "doc": "Unknown field '%s'" % name})
        else:
            out.append({"name": fdef.name, "title": fdef.title, "kind": fdef.kind,
                        "doc": fdef.doc})
    return out


def query_fields(what: str, fields: list[str] | None) -> dict:
    getter_table, _prepare = _resource(what)
    if not fields:
        fields = sorted(f for f in getter_table if not f.startswith("__"))
    return {"fields": field_defs(what, fields)}


def config_values(ctx: Any, fields: list[str]) -> list:
    cluster = ctx.cfg.get_cluster_info()
    table = {
        "cluster_name": cluster.cluster_name,
        "master_node": ctx.cfg.get_master_node_name(),
        "drain_flag": ctx.jqueue.is_drained(),
        "watcher_pause": _watcher_pause(),
        "volume_group_name": cluster.volume_group_name or None,
    }
    out = []
    for f in fields:
        if f not in table:
            raise errors.OpPrereqError("Unknown config value '%s' (known: %s)" %
                                       (f, ", ".join(sorted(table))), errors.ECODE_INVAL)
        out.append(table[f])
    return out


def _watcher_pause() -> float | None:
    import time
    from corral import pathutils
    from corral.utils import io
    try:
        until = float(io.read_file(pathutils.watcher_pause_file()).strip())
    except (FileNotFoundError, ValueError):
        return None
    return until if until > time.time() else None

