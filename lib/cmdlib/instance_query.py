"""Instance queries: the ``instance`` query resource and OP_INSTANCE_QUERY_DATA.

Live data comes from one ``all_instances_info`` call per node, sent to all
queried nodes in parallel, and only when a requested field needs it; per
instance work is then dictionary lookups.  Status values: spec
hypervisors-storage.md §9 (Ganeti's ``_GetInstStatus``).
"""

import json
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from json.encoder import encode_basestring_ascii as _encode_str  # type: ignore[attr-defined]
from typing import Any, Callable

from corral import constants, errors, locking, objects, query, serializer
from corral.client import query_fields as qf
from corral.cmdlib import instance_mirror
from corral.cmdlib import instance_utils as iu
from corral.cmdlib.base import NoHooksLU

Getter = Callable[[Any, objects.Instance], Any]


class InstanceQueryData:
    """Everything the getters need, computed once per query."""

    def __init__(self, ctx: Any, instances: list[objects.Instance], want_live: bool,
                 want_console: bool = False) -> None:
        self.cfg = ctx.cfg
        self.rpc = ctx.rpc
        self.cluster = ctx.cfg.get_cluster_info()
        self.nodes = ctx.cfg.get_all_nodes()
        self.groups = ctx.cfg.get_all_node_groups()
        self.live: dict[str, dict] = {}          # instance name -> info on its primary
        self.wrongnode: set[str] = set()          # running somewhere else
        self.bad_nodes: set[str] = set()          # node uuids that did not answer
        self.offline_nodes = {u for u, n in self.nodes.items() if n.offline}
        self.consoles: dict[str, Any] = {}
        self._filled: dict[str, tuple] = {}
        if want_live:
            self._fetch_live(instances)
        if want_console:
            self._fetch_consoles(instances)

    def _fetch_live(self, instances: list[objects.Instance]) -> None:
        by_name = {n.name: u for u, n in self.nodes.items()}
        targets = sorted(n.name for u, n in self.nodes.items()
                         if not n.offline and n.vm_capable)
        if not targets:
            return
        results = self.rpc.call("all_instances_info", targets,
                                {"hypervisors": list(self.cluster.enabled_hypervisors)})
        live = self.live
        for name, res in results.items():
            node = by_name.get(name, name)
            if res.failed or not isinstance(res.data, dict):
                self.bad_nodes.add(node)
                continue
            for inst_name, info in res.data.items():
                if inst_name not in live:  # running on two nodes: the first one counts
                    live[inst_name] = dict(info, node=node)
        for inst in instances:
            info = live.get(inst.name)
            if info is not None and info["node"] != inst.primary_node:
                self.wrongnode.add(inst.name)
                del live[inst.name]

    def _fetch_consoles(self, instances: list[objects.Instance]) -> None:
        from corral.cmdlib.instance_ops import console_info
        for inst in instances:
            if inst.name in self.live:
                try:
                    self.consoles[inst.name] = console_info(self, inst)
                except errors.GenericError:
                    continue

    def filled(self, inst: objects.Instance) -> tuple[dict, dict, dict]:
        out = self._filled.get(inst.uuid)
        if out is None:
            out = iu.instance_params(self.cfg, inst)
            self._filled[inst.uuid] = out
        return out

    def node_name(self, uuid: str) -> str:
        node = self.nodes.get(uuid)
        return node.name if node is not None else uuid


def instance_status(d: InstanceQueryData, inst: objects.Instance) -> str:
    if inst.primary_node in d.offline_nodes:
        return constants.INSTST_NODEOFFLINE
    if inst.primary_node in d.bad_nodes:
        return constants.INSTST_NODEDOWN
    live = d.live.get(inst.name)
    if live is not None:
        if inst.name in d.wrongnode:
            return constants.INSTST_WRONGNODE
        if live.get("state") == "shutdown" and \
                d.filled(inst)[0].get("user_shutdown"):
            return constants.INSTST_USERDOWN
        if inst.admin_state == constants.ADMINST_UP:
            return constants.INSTST_RUNNING
        return constants.INSTST_ERRORUP
    if inst.name in d.wrongnode:
        return constants.INSTST_WRONGNODE
    if inst.admin_state == constants.ADMINST_UP:
        return constants.INSTST_ERRORDOWN
    if inst.admin_state == constants.ADMINST_DOWN:
        return constants.INSTST_ADMINDOWN
    return constants.INSTST_ADMINOFFLINE


def _live_value(key: str) -> Getter:
    def get(d: InstanceQueryData, inst: objects.Instance) -> Any:
        if inst.primary_node in d.bad_nodes or inst.primary_node in d.offline_nodes:
            raise query.NoData()
        info = d.live.get(inst.name)
        if info is None or info.get(key) is None:
            raise query.Unavail()
        return info[key]
    get.live = True  # type: ignore[attr-defined]
    return get


def _oper_state(d: InstanceQueryData, inst: objects.Instance) -> bool:
    if inst.primary_node in d.bad_nodes or inst.primary_node in d.offline_nodes:
        raise query.NoData()
    return inst.name in d.live


def _live(fn: Getter) -> Getter:
    fn.live = True  # type: ignore[attr-defined]
    return fn


def _replication(d: InstanceQueryData, inst: objects.Instance) -> list:
    """The primary's per-disk replication states (hypervisor live data)."""
    if inst.primary_node in d.bad_nodes or inst.primary_node in d.offline_nodes:
        raise query.NoData()
    info = d.live.get(inst.name)
    if info is None:
        raise query.Unavail()
    states = list(info.get("replication") or [])
    return states + [None] * (len(inst.disks) - len(states))


def _sync_text(state: dict | None) -> str:
    if state is None:
        return "-"
    if state["state"] == "syncing":
        return "syncing %.2f%%" % (state.get("percent") or 0.0)
    return state["state"]


@_live
def _disk_sync(d: InstanceQueryData, inst: objects.Instance) -> list[str]:
    return [_sync_text(st) for st in _replication(d, inst)]


@_live
def _is_degraded(d: InstanceQueryData, inst: objects.Instance) -> bool:
    return any(st is not None and st["state"] != "in_sync" for st in _replication(d, inst))


def _console(d: InstanceQueryData, inst: objects.Instance) -> Any:
    if inst.name not in d.consoles:
        raise query.Unavail()
    return d.consoles[inst.name]


_console.live = True  # type: ignore[attr-defined]
_console.console = True  # type: ignore[attr-defined]


def _disk_usage(d: InstanceQueryData, inst: objects.Instance) -> int:
    extra = constants.DRBD_META_SIZE if inst.disk_template == constants.DT_DRBD8 else 0
    if inst.disk_template in (constants.DT_DISKLESS, constants.DT_BLOCK):
        return 0
    return sum(disk.size + extra for disk in inst.disks)


def _beparams(d: InstanceQueryData, inst: objects.Instance) -> dict:
    out = dict(d.filled(inst)[1])
    out["memory"] = out.get("maxmem")
    return out


def _nic_bridge(d: InstanceQueryData, nic: objects.NIC) -> Any:
    params = iu.filled_nicparams(d.cluster, nic)
    return params.get("link") if params.get("mode") == constants.NIC_MODE_BRIDGED else None


_NIC_ATTRS: dict[str, Callable[[InstanceQueryData, objects.NIC], Any]] = {
    "mac": lambda d, n: n.mac,
    "ip": lambda d, n: n.ip,
    "mode": lambda d, n: iu.filled_nicparams(d.cluster, n).get("mode"),
    "link": lambda d, n: iu.filled_nicparams(d.cluster, n).get("link"),
    "bridge": _nic_bridge,
    "vlan": lambda d, n: iu.filled_nicparams(d.cluster, n).get("vlan"),
    "name": lambda d, n: n.name,
    "uuid": lambda d, n: n.uuid,
    "network": lambda d, n: n.network,
    "network.name": lambda d, n: None,
}
_DISK_ATTRS: dict[str, Callable[[objects.Disk], Any]] = {
    "size": lambda disk: disk.size,
    "spindles": lambda disk: disk.spindles,
    "name": lambda disk: disk.name,
    "uuid": lambda disk: disk.uuid,
}


def _nic_list(attr: str) -> Getter:
    fn = _NIC_ATTRS[attr]
    return lambda d, inst: [fn(d, n) for n in inst.nics]


def _disk_list(attr: str) -> Getter:
    fn = _DISK_ATTRS[attr]
    return lambda d, inst: [fn(disk) for disk in inst.disks]


def _group(d: InstanceQueryData, uuid: str, attr: str) -> Any:
    node = d.nodes.get(uuid)
    group = d.groups.get(node.group) if node is not None else None
    if group is None:
        raise query.NoData()
    return getattr(group, attr)


INSTANCE_GETTERS: dict[str, Any] = {
    "name": lambda d, i: i.name,
    "hypervisor": lambda d, i: i.hypervisor,
    "os": lambda d, i: i.os,
    "pnode": lambda d, i: d.node_name(i.primary_node),
    "pnode.group": lambda d, i: _group(d, i.primary_node, "name"),
    "pnode.group.uuid": lambda d, i: _group(d, i.primary_node, "uuid"),
    "snodes": lambda d, i: [d.node_name(n) for n in i.secondary_nodes],
    "snodes.group": lambda d, i: [_group(d, n, "name") for n in i.secondary_nodes],
    "snodes.group.uuid": lambda d, i: [_group(d, n, "uuid") for n in i.secondary_nodes],
    "admin_state": lambda d, i: i.admin_state,
    "admin_state_source": lambda d, i: i.admin_state_source,
    "admin_up": lambda d, i: i.admin_state == constants.ADMINST_UP,
    "disks_active": lambda d, i: i.disks_active,
    "status": _live(instance_status),
    "oper_state": _live(_oper_state),
    "oper_ram": _live_value("memory"),
    "oper_vcpus": _live_value("vcpus"),
    "network_port": lambda d, i: i.network_port,
    "disk_template": lambda d, i: i.disk_template,
    "disk_usage": _disk_usage,
    "disk.count": lambda d, i: len(i.disks),
    "disk.sizes": _disk_list("size"),
    "disk.spindles": _disk_list("spindles"),
    "disk.names": _disk_list("name"),
    "disk.uuids": _disk_list("uuid"),
    "disk.sync": _disk_sync,
    "is_degraded": _is_degraded,
    "nic.count": lambda d, i: len(i.nics),
    "nic.macs": _nic_list("mac"),
    "nic.ips": _nic_list("ip"),
    "nic.modes": _nic_list("mode"),
    "nic.links": _nic_list("link"),
    "nic.bridges": _nic_list("bridge"),
    "nic.vlans": _nic_list("vlan"),
    "nic.names": _nic_list("name"),
    "nic.uuids": _nic_list("uuid"),
    "nic.networks": _nic_list("network"),
    "nic.networks.names": _nic_list("network.name"),
    "hvparams": lambda d, i: dict(d.filled(i)[0]),
    "beparams": _beparams,
    "osparams": lambda d, i: dict(d.filled(i)[2]),
    "custom_hvparams": lambda d, i: dict(i.hvparams),
    "custom_beparams": lambda d, i: dict(i.beparams),
    "custom_osparams": lambda d, i: dict(i.osparams),
    "custom_nicparams": lambda d, i: [dict(n.nicparams) for n in i.nics],
    "console": _console,
    "forthcoming": lambda d, i: i.forthcoming,
    "ctime": lambda d, i: i.ctime,
    "mtime": lambda d, i: i.mtime,
    "uuid": lambda d, i: i.uuid,
    "serial_no": lambda d, i: i.serial_no,
    "tags": lambda d, i: list(i.tags),
}


def _indexed_getter(kind: str, attr: str, index: int) -> Getter | None:
    if kind == "disk" and attr in _DISK_ATTRS:
        fn = _DISK_ATTRS[attr]

        def get_disk(d: InstanceQueryData, inst: objects.Instance) -> Any:
            if index >= len(inst.disks):
                raise query.Unavail()
            return fn(inst.disks[index])
        return get_disk
    if kind == "nic" and attr in _NIC_ATTRS:
        nfn = _NIC_ATTRS[attr]

        def get_nic(d: InstanceQueryData, inst: objects.Instance) -> Any:
            if index >= len(inst.nics):
                raise query.Unavail()
            return nfn(d, inst.nics[index])
        return get_nic
    return None


def _param_getter(prefix: str, param: str) -> Getter | None:
    if prefix == "be":
        def get_be(d: InstanceQueryData, inst: objects.Instance) -> Any:
            values = _beparams(d, inst)
            if param not in values:
                raise query.Unavail()
            return values[param]
        return get_be
    if prefix == "hv":
        def get_hv(d: InstanceQueryData, inst: objects.Instance) -> Any:
            values = d.filled(inst)[0]
            if param not in values:
                raise query.Unavail()
            return values[param]
        return get_hv
    return None


def dynamic_getter(name: str) -> Getter | None:
    """Getters for parametrised field names (disk.size/0, be/vcpus, aliases)."""
    target = qf.resolve_alias(qf.RESOURCE_INSTANCE, name)
    if target in INSTANCE_GETTERS:
        return INSTANCE_GETTERS[target]
    if qf.lookup_field(qf.RESOURCE_INSTANCE, target) is None:
        return None
    if "/" not in target:
        return None
    head, _, index = target.partition("/")
    if head in ("be", "hv"):
        return _param_getter(head, index)
    kind, _, attr = head.partition(".")
    if index.isdigit():
        return _indexed_getter(kind, attr, int(index))
    return None


INSTANCE_GETTERS["__dynamic__"] = dynamic_getter


def select_instances(cfg, names: list[str]) -> list[objects.Instance]:
    """The named instances (short names expand), or all sorted by name."""
    return query.select_items(cfg.get_all_instances(), names, cfg.expand_instance_name,
                              "Instance")


def prepare_instances(ctx: Any, names: list[str], getters: list[Getter]):
    instances = select_instances(ctx.cfg, names)
    want_live = any(getattr(g, "live", False) for g in getters)
    want_console = any(getattr(g, "console", False) for g in getters)
    return InstanceQueryData(ctx, instances, want_live, want_console), instances


query.register_resource("instance", INSTANCE_GETTERS, prepare_instances)


# ---- bulk rows as JSON (RAPI /2/instances?bulk=1) ---------------------------------------
#
# A bulk list at 1000 instances is mostly the same text every time: only the
# live fields change between two requests.  The JSON of each instance's other
# fields is kept, per requested field list, until the instance changes (every
# config commit bumps its serial_no), a node it uses is renamed, or the cluster
# parameters it inherits change.  Group names are not in the key, so fields
# reading groups are computed every time, like the live ones.
#
# A cached row is a template: the text around its runs of live fields, e.g.
# ('{"name":"a",...,"hvparams":{...},', ',"custom_hvparams":{...},...}') for
# RAPI's field list, whose four live fields are adjacent.  Filling it takes one
# concatenation per instance once the nodes have answered.

_GROUP_FIELDS = frozenset(["pnode.group", "pnode.group.uuid", "snodes.group",
                           "snodes.group.uuid"])
_NO_VALUE = (query.NoData, query.Offline, query.Unavail)
_MAX_FIELD_LISTS = 8  # cached field lists per config (RAPI uses one or two)
# config writer -> {field list: (cluster fingerprint, {instance uuid: (key, template),
#                                                      _WHOLE: (serial, uuids, templates)})}
_ROW_CACHES: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()
_ROW_CACHES_LOCK = threading.Lock()
_WHOLE = "*"  # key (never an instance uuid) of the last whole list of templates

Run = tuple[bool, list[tuple[str, "Getter | None"]]]


def _cluster_fingerprint(cluster: objects.Cluster) -> str:
    """What cached rows inherit from the cluster (hv/be/nic/os parameters)."""
    return json.dumps([cluster.hvparams, cluster.os_hvp, cluster.beparams,
                       cluster.nicparams, cluster.osparams], sort_keys=True, default=str)


def _encode(value: Any) -> str:
    """JSON of one cell, with shortcuts for the live fields' types."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if type(value) is int:
        return str(value)
    if type(value) is str:
        return _encode_str(value)
    return serializer.dumps(value)


def _value(getter: Getter | None, d: InstanceQueryData, inst: objects.Instance) -> Any:
    if getter is None:
        return None
    try:
        return getter(d, inst)
    except _NO_VALUE:
        return None


def _no_getter(d: InstanceQueryData, inst: objects.Instance) -> None:
    """An unknown field's value."""
    return None


def _plan(fields: list[str]) -> list[Run]:
    """Fields in order as runs of (cached?, [(field, getter)]): adjacent fields that
    are both cached, or both computed per request, share a run."""
    runs: list[Run] = []
    for name in fields:
        getter = query.lookup_getter(INSTANCE_GETTERS, name)
        cached = not getattr(getter, "live", False) and \
            qf.resolve_alias(qf.RESOURCE_INSTANCE, name) not in _GROUP_FIELDS
        if runs and runs[-1][0] == cached:
            runs[-1][1].append((name, getter))
        else:
            runs.append((cached, [(name, getter)]))
    return runs


def _row_cache(cfg: Any, fields: tuple[str, ...], fingerprint: str) -> dict:
    with _ROW_CACHES_LOCK:
        per_cfg = _ROW_CACHES.setdefault(cfg, {})
        entry = per_cfg.get(fields)
        if entry is None or entry[0] != fingerprint:
            if entry is None and len(per_cfg) >= _MAX_FIELD_LISTS:
                per_cfg.pop(next(iter(per_cfg)))
            entry = per_cfg[fields] = (fingerprint, {})
        return entry[1]


def _template(d: InstanceQueryData, inst: objects.Instance, runs: list[Run]
              ) -> tuple[str, ...]:
    """The row's text split around its uncached runs (one more piece than those runs)."""
    pieces: list[str] = []
    text = "{"
    for i, (cached, run) in enumerate(runs):
        if i:
            text += ","
        if cached:
            text += serializer.dumps({name: _value(g, d, inst) for name, g in run})[1:-1]
        else:
            pieces.append(text)
            text = ""
    pieces.append(text + "}")
    return tuple(pieces)


def _templates(d: InstanceQueryData, instances: list[objects.Instance], runs: list[Run],
               rows: dict, prune: bool) -> list[tuple[str, ...]]:
    """Per instance, its row template, from the cache when the instance, its nodes'
    names and the cluster parameters are unchanged.

    The whole list is kept too, for the same config serial number (every
    commit bumps it) and the same instances: then nothing is looked at.
    """
    serial = getattr(d.cfg, "serial_no", None)
    whole = rows.get(_WHOLE)
    uuids = [inst.uuid for inst in instances]
    if serial is not None and whole is not None and whole[0] == serial and whole[1] == uuids:
        return whole[2]
    out = []
    for inst in instances:
        key = (inst.serial_no, d.node_name(inst.primary_node),
               tuple(d.node_name(n) for n in inst.secondary_nodes))
        entry = rows.get(inst.uuid)
        if entry is None or entry[0] != key:
            entry = rows[inst.uuid] = (key, _template(d, inst, runs))
        out.append(entry[1])
    if prune:
        alive = set(uuids)
        alive.add(_WHOLE)
        for uuid in [u for u in list(rows) if u not in alive]:
            rows.pop(uuid, None)
    if serial is not None:
        rows[_WHOLE] = (serial, uuids, out)
    return out


def _run_filler(d: InstanceQueryData, run: list[tuple[str, Getter | None]]
                ) -> Callable[[objects.Instance], str]:
    """The JSON text of an uncached run for one instance (keys and values, no braces).

    Most instances share their live values (running, same memory...), so the
    text is made once per distinct value tuple of this request; the values'
    types are part of the key, as ``True == 1`` but their JSON differs.
    """
    keys = [_encode_str(name) + ":" for name, _g in run]
    getters = [g if g is not None else _no_getter for _n, g in run]
    memo: dict[tuple, str] = {}

    def fill(inst: objects.Instance) -> str:
        try:
            values = tuple([g(d, inst) for g in getters])
        except _NO_VALUE:
            values = tuple([_value(g, d, inst) for g in getters])
        key = (values, tuple(map(type, values)))
        try:
            return memo[key]
        except KeyError:
            text = memo[key] = ",".join([k + _encode(v) for k, v in zip(keys, values)])
        except TypeError:  # unhashable values (lists, dicts)
            text = ",".join([k + _encode(v) for k, v in zip(keys, values)])
        return text
    return fill


def _fetch(d: InstanceQueryData, instances: list[objects.Instance], live: bool,
           console: bool) -> None:
    if live:
        d._fetch_live(instances)
    if console:
        d._fetch_consoles(instances)


def dicts_json(ctx: Any, fields: list[str], names: list[str]) -> str:
    """query.query_dicts_json for instances: same text, cached per instance.

    Live data is fetched as for query() (one RPC per node, in parallel, only
    if a live field is asked for), while this thread prepares the cached part.
    Safe to call from several threads: the cache is only a shortcut, a lost
    update costs a recomputation.
    """
    fields = list(dict.fromkeys(fields))  # a repeated field is one key, as in a dict
    runs = _plan(fields)
    instances = select_instances(ctx.cfg, names)
    getters = [g for _c, run in runs for _f, g in run if g is not None]
    live = any(getattr(g, "live", False) for g in getters)
    console = any(getattr(g, "console", False) for g in getters)
    d = InstanceQueryData(ctx, instances, False)
    fetching = _live_pool().submit(_fetch, d, instances, live, console) \
        if live or console else None
    try:
        rows = _row_cache(ctx.cfg, tuple(fields), _cluster_fingerprint(d.cluster))
        templates = _templates(d, instances, runs, rows, not names)
    finally:
        if fetching is not None:
            fetching.result()
    fillers = [_run_filler(d, run) for cached, run in runs if not cached]
    if not fillers:
        out = [t[0] for t in templates]
    elif len(fillers) == 1:
        fill = fillers[0]
        out = [t[0] + fill(inst) + t[1] for inst, t in zip(instances, templates)]
    else:
        out = []
        for inst, t in zip(instances, templates):
            parts = [t[0]]
            for fill, piece in zip(fillers, t[1:]):
                parts.append(fill(inst))
                parts.append(piece)
            out.append("".join(parts))
    return "[" + ",".join(out) + "]"


_LIVE_POOL: list[ThreadPoolExecutor] = []


def _live_pool() -> ThreadPoolExecutor:
    """Threads that wait for the nodes' live data while the caller builds rows."""
    with _ROW_CACHES_LOCK:
        if not _LIVE_POOL:
            _LIVE_POOL.append(ThreadPoolExecutor(max_workers=4,
                                                 thread_name_prefix="query-live"))
        return _LIVE_POOL[0]


query.register_dicts_encoder("instance", dicts_json)


# ---- OP_INSTANCE_QUERY_DATA --------------------------------------------------------------

def _disk_data(d: InstanceQueryData, inst: objects.Instance, disk: objects.Disk,
               live: bool) -> dict[str, Any]:
    node = d.node_name(inst.primary_node)
    return {"iv_name": disk.iv_name, "dev_type": disk.dev_type, "logical_id": disk.logical_id,
            "physical_id": None, "pstatus": ({"dev_path": _disk_path(disk), "node": node}
                                             if live else None),
            "sstatus": None, "children": [], "mode": disk.mode, "size": disk.size,
            "spindles": disk.spindles, "name": disk.name, "uuid": disk.uuid}


def _disk_path(disk: objects.Disk) -> str | None:
    if disk.dev_type in (constants.DT_FILE, constants.DT_SHARED_FILE, constants.DT_BLOCK):
        return disk.logical_id[1]
    if disk.dev_type == constants.DT_PLAIN:
        return "/dev/%s/%s" % tuple(disk.logical_id)
    return None


def query_data(d: InstanceQueryData, inst: objects.Instance, static: bool) -> dict[str, Any]:
    """One instance's entry of OP_INSTANCE_QUERY_DATA (spec/rapi.md §9.8)."""
    hv, be, osp = d.filled(inst)
    pnode = d.nodes.get(inst.primary_node)
    group = d.groups.get(pnode.group) if pnode is not None else None
    live = d.live.get(inst.name)
    run_state = None
    if not static:
        run_state = "up" if live is not None else "down"
    return {
        "name": inst.name, "config_state": inst.admin_state, "run_state": run_state,
        "pnode": d.node_name(inst.primary_node),
        "pnode_group_uuid": group.uuid if group else None,
        "pnode_group_name": group.name if group else None,
        "snodes": [d.node_name(n) for n in inst.secondary_nodes],
        "snodes_group_uuids": [_group(d, n, "uuid") for n in inst.secondary_nodes],
        "snodes_group_names": [_group(d, n, "name") for n in inst.secondary_nodes],
        "os": inst.os,
        "nics": [[n.name, n.uuid, n.ip, n.mac, iu.filled_nicparams(d.cluster, n), n.network,
                  None] for n in inst.nics],
        "disk_template": inst.disk_template,
        "disks": [_disk_data(d, inst, disk, not static) for disk in inst.disks],
        "hypervisor": inst.hypervisor, "network_port": inst.network_port,
        "hv_instance": dict(inst.hvparams), "hv_actual": hv,
        "be_instance": dict(inst.beparams), "be_actual": be,
        "os_instance": dict(inst.osparams), "os_actual": osp,
        "serial_no": inst.serial_no, "mtime": inst.mtime, "ctime": inst.ctime,
        "uuid": inst.uuid,
    }


class LUInstanceQueryData(NoHooksLU):
    """Configuration (and, unless ``static``, runtime) data of instances."""

    def expand_names(self) -> None:
        self.wanted = select_instances(self.cfg, self.op.instances)
        if self.op.use_locking:
            self.needed_locks[locking.LEVEL_INSTANCE] = (
                [i.name for i in self.wanted] if self.op.instances else locking.ALL_SET)
            self.share_locks[locking.LEVEL_INSTANCE] = True

    def exec(self, feedback_fn: Callable[[str], None]) -> dict[str, dict]:
        data = InstanceQueryData(self.context, self.wanted, not self.op.static)
        out = {inst.name: query_data(data, inst, self.op.static) for inst in self.wanted}
        if not self.op.static:
            for inst in self.wanted:
                if inst.disk_template == constants.DT_MIRROR:
                    _add_mirror_status(self, inst, out[inst.name]["disks"])
        return out


def _add_mirror_status(lu: Any, inst: objects.Instance, disks: list[dict]) -> None:
    """Replication state into ``pstatus``/``sstatus`` (as Ganeti shows DRBD's)."""
    states = instance_mirror.status(lu, inst)
    snode = lu.cfg.get_node_info(inst.secondary_nodes[0]) if inst.secondary_nodes else None
    for disk, obj, st in zip(disks, inst.disks, states):
        path = obj.children[0].logical_id[1] if obj.children else None
        st = st or {"sync_percent": None, "estimated_time": None, "is_degraded": True,
                    "ldisk_status": "unknown"}
        disk["pstatus"] = dict(st, dev_path=path, node=iu.node_name(lu.cfg, inst.primary_node))
        if snode is not None:
            disk["sstatus"] = dict(st, dev_path=path, node=snode.name)
