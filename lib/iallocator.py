"""Instance allocators: building requests, running allocators, checking their answers.

The protocol is Ganeti's iallocator protocol version 2 (spec/iallocator.md):
the master writes one JSON input (cluster, node groups, nodes with live
capacity, instances, and the request), an allocator answers ``{"success",
"info", "result"}``.  Allocators are

* ``builtin`` (corral.allocator), run in the master daemon's process;
* external plugins (Debian's ``hail``...), looked up along
  ``pathutils.iallocator_search_path()`` and run on the master node through
  its node daemon (procedure ``iallocator_runner``, backend/iallocator.py).

The name ``.`` (or none) means the cluster's ``default_iallocator``, which
is ``builtin`` while unset.  Every answer is validated against the request
type before a logical unit uses it; a violation is an OpExecError
("iallocator returned invalid result ..."), ``success=false`` is reported
with the allocator's ``info``.  Nothing here changes the configuration.
"""

import abc
import threading
from typing import Any, Callable

from corral import constants, errors, objects, serializer
from corral.hypervisor import hvparams

BUILTIN = "builtin"
DEFAULT_NAME = "."
EVAC_OPCODES = frozenset(["OP_INSTANCE_MIGRATE", "OP_INSTANCE_FAILOVER",
                          "OP_INSTANCE_REPLACE_DISKS"])


def resolve_name(cfg, name: str | None) -> str:
    """The allocator to run for ``name``: '.'/None -> cluster default -> builtin."""
    if name and name != DEFAULT_NAME:
        return name
    return cfg.get_cluster_info().default_iallocator or BUILTIN


def disk_space_total(template: str, disks: list[dict]) -> int:
    """MiB a template needs for ``disks`` on one node, DRBD metadata included."""
    if template in (constants.DT_DISKLESS, constants.DT_BLOCK):
        return 0
    extra = constants.DRBD_META_SIZE if template == constants.DT_DRBD8 else 0
    return sum(int(d.get("size", 0)) + extra for d in disks)


def storage_unit(cluster: objects.Cluster, template: str) -> list | None:
    """The [type, name] storage unit whose space ``template`` consumes, or None."""
    if template == constants.DT_FILE:
        return ["file", cluster.file_storage_dir]
    if template == constants.DT_SHARED_FILE:
        return ["sharedfile", cluster.shared_file_storage_dir]
    if template in constants.DTS_LVM:
        return ["lvm-vg", cluster.volume_group_name]
    return None


def _invalid(what: str, got: Any) -> errors.OpExecError:
    return errors.OpExecError("iallocator returned invalid result, expected %s, got %r"
                              % (what, got))


def _is_names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


# ---- requests -----------------------------------------------------------------------------

class Request(abc.ABC):
    """One request type: its ``request`` dict and the check of the allocator's result."""

    MODE = ""

    @abc.abstractmethod
    def request_dict(self, cfg) -> dict[str, Any]:
        """The ``request`` object of the input (always with ``type``)."""

    def hypervisor(self, cfg) -> str:
        return cfg.get_cluster_info().primary_hypervisor

    def disk_template(self, cfg) -> str | None:
        return None

    @abc.abstractmethod
    def check_result(self, cfg, result: Any) -> None:
        """OpExecError unless ``result`` has the shape this request type expects."""


class AllocRequest(Request):
    """``allocate``: nodes for a new instance (``spec`` holds the request keys)."""

    MODE = "allocate"

    def __init__(self, name: str, disk_template: str, memory: int, vcpus: int,
                 disks: list[dict], nics: list[dict], hypervisor: str, os: str = "",
                 tags: list[str] | None = None, spindle_use: int = 1,
                 group_name: str | None = None, restrict_nodes: list[str] | None = None
                 ) -> None:
        self.spec = {
            "name": name, "disk_template": disk_template, "group_name": group_name,
            "tags": list(tags or []), "os": os or "", "vcpus": int(vcpus),
            "memory": int(memory), "spindle_use": int(spindle_use),
            "disks": [dict(d) for d in disks],
            "disk_space_total": disk_space_total(disk_template, disks),
            "nics": [dict(n) for n in nics],
            "required_nodes": 2 if disk_template in constants.DTS_INT_MIRROR else 1,
            "hypervisor": hypervisor}
        if restrict_nodes:
            self.spec["restrict-to-nodes"] = list(restrict_nodes)

    @property
    def required_nodes(self) -> int:
        return self.spec["required_nodes"]

    def request_dict(self, cfg) -> dict[str, Any]:
        return dict(self.spec, type=self.MODE)

    def hypervisor(self, cfg) -> str:
        return self.spec["hypervisor"]

    def disk_template(self, cfg) -> str | None:
        return self.spec["disk_template"]

    def check_result(self, cfg, result: Any) -> None:
        if not _is_names(result) or len(result) != self.required_nodes:
            raise _invalid("a list of %d node name(s)" % self.required_nodes, result)
        _check_known_nodes(cfg, result)


class RelocRequest(Request):
    """``relocate``: one new node for an instance (DRBD secondary, or a shared primary)."""

    MODE = "relocate"

    def __init__(self, inst_name: str, relocate_from: list[str]) -> None:
        self.inst_name = inst_name
        self.relocate_from = list(relocate_from)

    def _instance(self, cfg) -> objects.Instance:
        inst = cfg.get_instance_by_name(self.inst_name)
        if inst is None:
            raise errors.OpPrereqError("Instance '%s' not known" % self.inst_name,
                                       errors.ECODE_NOENT)
        return inst

    def request_dict(self, cfg) -> dict[str, Any]:
        inst = self._instance(cfg)
        disks = [{"size": d.size} for d in inst.disks]
        return {"type": self.MODE, "name": inst.name, "required_nodes": 1,
                "disk_space_total": disk_space_total(inst.disk_template, disks),
                "relocate_from": list(self.relocate_from)}

    def hypervisor(self, cfg) -> str:
        return self._instance(cfg).hypervisor

    def disk_template(self, cfg) -> str | None:
        return self._instance(cfg).disk_template

    def check_result(self, cfg, result: Any) -> None:
        if not _is_names(result) or len(result) != 1:
            raise _invalid("a list with one node name", result)
        _check_known_nodes(cfg, result)
        inst = self._instance(cfg)
        if inst.disk_template not in constants.DTS_INT_MIRROR:
            return
        primary = cfg.get_node_info(inst.primary_node).name
        before = _groups_of(cfg, self.relocate_from + [primary])
        after = _groups_of(cfg, list(result) + [primary])
        if before != after:
            raise errors.OpExecError("Groups of nodes returned by iallocator (%s) differ from"
                                     " original groups (%s)" % (", ".join(sorted(after)),
                                                                ", ".join(sorted(before))))


class _EvacRequest(Request):
    """Requests answered with ``[moved, failed, jobs]`` (spec §4)."""

    def __init__(self, instances: list[str]) -> None:
        self.instances = list(instances)

    def check_result(self, cfg, result: Any) -> None:
        if not (isinstance(result, list) and len(result) == 3
                and all(isinstance(part, list) for part in result)):
            raise _invalid("[moved, failed, jobs]", result)
        moved, failed, jobs = result
        for entry in moved:
            if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)
                    and isinstance(entry[1], str) and _is_names(entry[2])):
                raise _invalid("moved entries [name, group, [nodes]]", entry)
        for entry in failed:
            if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
                    and (entry[1] is None or isinstance(entry[1], str))):
                raise _invalid("failed entries [name, reason]", entry)
        for job in jobs:
            if not isinstance(job, list) or not all(
                    isinstance(op, dict) and op.get("OP_ID") in EVAC_OPCODES for op in job):
                raise _invalid("jobs of %s opcodes" % "/".join(sorted(EVAC_OPCODES)), job)
        answered = {e[0] for e in moved} | {e[0] for e in failed}
        if answered != set(self.instances):
            raise _invalid("an answer for each of %s" % ", ".join(sorted(self.instances)),
                           sorted(answered))


class NodeEvacRequest(_EvacRequest):
    MODE = "node-evacuate"

    def __init__(self, instances: list[str], evac_mode: str) -> None:
        super().__init__(instances)
        self.evac_mode = evac_mode

    def request_dict(self, cfg) -> dict[str, Any]:
        return {"type": self.MODE, "instances": list(self.instances),
                "evac_mode": self.evac_mode}


class ChangeGroupRequest(_EvacRequest):
    MODE = "change-group"

    def __init__(self, instances: list[str], target_groups: list[str]) -> None:
        super().__init__(instances)
        self.target_groups = list(target_groups)

    def request_dict(self, cfg) -> dict[str, Any]:
        return {"type": self.MODE, "instances": list(self.instances),
                "target_groups": list(self.target_groups)}


class MultiAllocRequest(Request):
    MODE = "multi-allocate"

    def __init__(self, requests: list[AllocRequest]) -> None:
        self.requests = list(requests)

    def request_dict(self, cfg) -> dict[str, Any]:
        return {"type": self.MODE, "instances": [dict(r.spec) for r in self.requests]}

    def hypervisor(self, cfg) -> str:
        return self.requests[0].hypervisor(cfg) if self.requests else super().hypervisor(cfg)

    def disk_template(self, cfg) -> str | None:
        return self.requests[0].disk_template(cfg) if self.requests else None

    def check_result(self, cfg, result: Any) -> None:
        if not (isinstance(result, list) and len(result) == 2 and isinstance(result[0], list)
                and _is_names(result[1])):
            raise _invalid("[[[name, [nodes]], ...], [failed names]]", result)
        by_name = {r.spec["name"]: r for r in self.requests}
        for entry in result[0]:
            if not (isinstance(entry, list) and len(entry) == 2 and entry[0] in by_name):
                raise _invalid("allocations [name, [nodes]] of requested instances", entry)
            by_name[entry[0]].check_result(cfg, entry[1])


def _check_known_nodes(cfg, names: list[str]) -> None:
    unknown = [n for n in names if cfg.get_node_by_name(n) is None]
    if unknown:
        raise _invalid("known node names", unknown)


def _groups_of(cfg, node_names: list[str]) -> set[str]:
    out = set()
    for name in node_names:
        node = cfg.get_node_by_name(name)
        if node is not None:
            out.add(node.group)
    return out


# ---- input ----------------------------------------------------------------------------------

def _filled_ipolicy(cluster: objects.Cluster, group: objects.NodeGroup | None) -> dict:
    from corral.cmdlib.cluster import filled_ipolicy
    out = filled_ipolicy(cluster)
    if group is not None:
        out.update(group.ipolicy)
    return out


def _filled_ndparams(cfg, node: objects.Node) -> dict:
    from corral.cmdlib.cluster import filled_ndparams
    out = filled_ndparams(cfg.get_cluster_info())
    group = cfg.get_node_group(node.group)
    out.update(group.ndparams if group else {})
    out.update(node.ndparams)
    return out


def _maxmem(cluster: objects.Cluster, inst: objects.Instance) -> int:
    return int(hvparams.fill_beparams(cluster.beparams.get("default", {}),
                                      inst.beparams)["maxmem"])


def _instance_data(cfg, inst: objects.Instance) -> dict[str, Any]:
    cluster = cfg.get_cluster_info()
    be = hvparams.fill_beparams(cluster.beparams.get("default", {}), inst.beparams)
    nics = []
    for nic in inst.nics:
        params = objects.fill_dict({"mode": constants.NIC_MODE_BRIDGED, "link": ""},
                                   (cluster.nicparams.get("default") or {}))
        params.update(nic.nicparams)
        entry = {"mac": nic.mac, "ip": nic.ip, "mode": params.get("mode"),
                 "link": params.get("link"), "network": nic.network}
        if params.get("mode") == constants.NIC_MODE_BRIDGED:
            entry["bridge"] = params.get("link")
        nics.append(entry)
    disks = [{"dev_type": d.dev_type, "size": d.size, "mode": d.mode, "spindles": d.spindles}
             for d in inst.disks]
    return {"tags": list(inst.tags), "admin_state": inst.admin_state,
            "vcpus": int(be["vcpus"]), "memory": int(be["maxmem"]),
            "spindle_use": int(be.get("spindle_use", 1)), "os": inst.os or "",
            "nodes": cfg.get_node_names(inst.all_nodes), "nics": nics, "disks": disks,
            "disk_template": inst.disk_template, "disks_active": inst.disks_active,
            "hypervisor": inst.hypervisor,
            "disk_space_total": disk_space_total(inst.disk_template,
                                                 [{"size": d.size} for d in inst.disks])}


def _node_static(cfg, node: objects.Node) -> dict[str, Any]:
    return {"tags": list(node.tags), "primary_ip": node.primary_ip,
            "secondary_ip": node.secondary_ip, "offline": node.offline,
            "drained": node.drained,
            "master_candidate": node.master_candidate or node.uuid == cfg.get_master_node(),
            "group": node.group, "master_capable": node.master_capable,
            "vm_capable": node.vm_capable, "ndparams": _filled_ndparams(cfg, node)}


def _node_dynamic(cfg, node: objects.Node, hypervisor: str, live: dict) -> dict[str, Any]:
    """Capacity keys of an online vm_capable node (spec §2.2) from its node_info answer.

    free_memory is what the hypervisor reports minus, for every primary
    instance, the part of its maxmem it does not use now (so a stopped
    instance keeps its memory booked), as Ganeti computes it.
    """
    info = live.get("info") or {}
    running = live.get("instances") or {}
    hv = (info.get("hv") or {}).get(hypervisor) or {}
    mem_free = int(hv.get("memory_free", info.get("memory_free", 0)))
    cluster = cfg.get_cluster_info()
    i_pri = i_pri_up = 0
    for inst in cfg.get_all_instances().values():
        if inst.primary_node != node.uuid:
            continue
        maxmem = _maxmem(cluster, inst)
        i_pri += maxmem
        if inst.admin_state == constants.ADMINST_UP:
            i_pri_up += maxmem
        used = int((running.get(inst.name) or {}).get("memory", 0))
        mem_free -= max(0, maxmem - used)
    unit = (info.get("storage") or [{}])[0] if info.get("storage") else {}
    spindles = int(_filled_ndparams(cfg, node).get("spindle_count", 1))
    return {"total_memory": int(hv.get("memory_total", info.get("memory_total", 0))),
            "reserved_memory": int(hv.get("memory_dom0", info.get("memory_dom0", 0))),
            "free_memory": max(mem_free, 0),
            "total_disk": int(unit.get("storage_size") or 0),
            "free_disk": int(unit.get("storage_free") or 0),
            "total_spindles": spindles, "free_spindles": spindles,
            "total_cpus": int(hv.get("cpu_total", info.get("cpu_total", 1))),
            "reserved_cpus": int(hv.get("cpu_dom0", 0)),
            "i_pri_memory": i_pri, "i_pri_up_memory": i_pri_up}


def gather_live(cfg, rpc, hypervisor: str, disk_template: str | None) -> dict[str, dict]:
    """{node name: {"info": node_info, "instances": running}} of reachable vm_capable nodes.

    Two parallel RPCs (node_info, all_instances_info); an unreachable node
    is left out, so it gets no capacity keys and no allocator uses it.
    """
    cluster = cfg.get_cluster_info()
    names = [n.name for n in cfg.get_all_nodes().values() if not n.offline and n.vm_capable]
    if not names:
        return {}
    unit = storage_unit(cluster, disk_template) if disk_template else None
    infos = rpc.call("node_info", names, {"hv_names": [hypervisor],
                                          "storage_units": [unit] if unit else []})
    running = rpc.call("all_instances_info", names,
                       {"hypervisors": list(cluster.enabled_hypervisors)})
    out = {}
    for name, res in infos.items():
        if res.failed or not isinstance(res.data, dict):
            continue
        inst_res = running.get(name)
        out[name] = {"info": res.data,
                     "instances": inst_res.data if inst_res is not None and not inst_res.failed
                     else {}}
    return out


class PendingPlacements:
    """Nodes chosen for instances whose creation is still running (not in the config yet).

    Creations lock the node resources shared, so several may allocate at
    once; each allocation sees the others' chosen nodes as if their
    instances existed, instead of all picking the same emptiest node.  An
    entry ends when its instance is in the configuration or its job has
    finished, whatever the outcome.  Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[Any, list[str], dict]] = {}
        # Held from reading the pending placements to adding the new one, so two
        # allocations cannot both miss each other.
        self.allocating = threading.Lock()

    def add(self, job_id: Any, nodes: list[str], spec: dict[str, Any]) -> None:
        with self._lock:
            self._entries[spec["name"]] = (job_id, list(nodes), dict(spec))

    def current(self, cfg, job_running: Callable[[Any], bool]
                ) -> dict[str, tuple[list[str], dict]]:
        """{instance name: (nodes, allocate spec)} still pending; stale entries are dropped."""
        with self._lock:
            for name, (job_id, _nodes, _spec) in list(self._entries.items()):
                if cfg.get_instance_by_name(name) is not None or not job_running(job_id):
                    del self._entries[name]
            return {name: (nodes, spec) for name, (_j, nodes, spec) in self._entries.items()}


PENDING = PendingPlacements()
_LOCAL_SPACE = frozenset([constants.DT_FILE, constants.DT_PLAIN, constants.DT_DRBD8])


def _add_pending(data: dict[str, Any], pending: dict[str, tuple[list[str], dict]]) -> None:
    """Book pending placements in an input object: as instances, and on their nodes."""
    for name, (nodes, spec) in pending.items():
        if name in data["instances"]:
            continue
        data["instances"][name] = {
            "tags": list(spec.get("tags") or []), "admin_state": constants.ADMINST_UP,
            "vcpus": spec["vcpus"], "memory": spec["memory"],
            "spindle_use": spec.get("spindle_use", 1), "os": spec.get("os", ""),
            "nodes": list(nodes), "nics": [], "disk_template": spec["disk_template"],
            "disks": [{"dev_type": spec["disk_template"], "size": d.get("size", 0),
                       "mode": d.get("mode", constants.DISK_RDWR), "spindles": None}
                      for d in spec.get("disks") or []],
            "disks_active": True, "hypervisor": spec.get("hypervisor"),
            "disk_space_total": spec.get("disk_space_total", 0)}
        for idx, node_name in enumerate(nodes):
            node = data["nodes"].get(node_name)
            if node is None or "free_memory" not in node:
                continue
            if idx == 0:
                node["free_memory"] = max(node["free_memory"] - spec["memory"], 0)
                node["i_pri_memory"] += spec["memory"]
                node["i_pri_up_memory"] += spec["memory"]
            if spec["disk_template"] in _LOCAL_SPACE:
                node["free_disk"] = max(node["free_disk"] - spec.get("disk_space_total", 0), 0)


def build_input(cfg, request: Request, live: dict[str, dict],
                pending: dict[str, tuple[list[str], dict]] | None = None) -> dict[str, Any]:
    """The complete input object for ``request`` (pure, given the live node data).

    ``pending`` (PendingPlacements.current) are booked as if they existed.
    """
    cluster = cfg.get_cluster_info()
    hypervisor = request.hypervisor(cfg)
    nodes = {}
    for node in cfg.get_all_nodes().values():
        data = _node_static(cfg, node)
        if not node.offline and node.vm_capable and node.name in live:
            data.update(_node_dynamic(cfg, node, hypervisor, live[node.name]))
        nodes[node.name] = data
    groups = {uuid: {"name": g.name, "alloc_policy": g.alloc_policy,
                     "networks": sorted(g.networks), "ipolicy": _filled_ipolicy(cluster, g),
                     "tags": list(g.tags)}
              for uuid, g in cfg.get_all_node_groups().items()}
    data = {"version": constants.IALLOCATOR_VERSION, "cluster_name": cluster.cluster_name,
            "cluster_tags": list(cluster.tags),
            "enabled_hypervisors": list(cluster.enabled_hypervisors),
            "ipolicy": _filled_ipolicy(cluster, None), "nodegroups": groups, "nodes": nodes,
            "instances": {i.name: _instance_data(cfg, i)
                          for i in cfg.get_all_instances().values()},
            "request": request.request_dict(cfg)}
    _add_pending(data, pending or {})
    return data


# ---- running --------------------------------------------------------------------------------

class IAllocator:
    """One run of one allocator on one request.

    After ``run``: ``in_text`` (the input), ``out_text`` (the raw answer),
    ``success``, ``info`` and ``result`` (validated when ``success``).
    """

    def __init__(self, cfg, rpc, request: Request,
                 pending: dict[str, tuple[list[str], dict]] | None = None) -> None:
        self.cfg = cfg
        self.rpc = rpc
        self.request = request
        self.pending = pending or {}
        self.in_text = ""
        self.out_text = ""
        self.success = False
        self.info = ""
        self.result: Any = None

    def build(self, live: dict[str, dict] | None = None) -> str:
        """Build (and return) the input text; gathers live node data unless given."""
        if live is None:
            live = gather_live(self.cfg, self.rpc, self.request.hypervisor(self.cfg),
                               self.request.disk_template(self.cfg))
        self.in_text = serializer.dumps(build_input(self.cfg, self.request, live,
                                                    self.pending))
        return self.in_text

    def run(self, name: str | None, validate: bool = True,
            extra_params: dict[str, Any] | None = None) -> "IAllocator":
        """Run allocator ``name`` ('.'/None = the default); OpExecError on a broken answer."""
        name = resolve_name(self.cfg, name)
        if not self.in_text:
            self.build()
        if name == BUILTIN:
            from corral import allocator
            self.out_text = serializer.dumps(allocator.solve(serializer.loads(self.in_text)))
        else:
            self.out_text = self._run_external(name, extra_params or {})
        self._parse(validate)
        return self

    def _run_external(self, name: str, extra_params: dict[str, Any]) -> str:
        params = dict(self.cfg.get_cluster_info().default_iallocator_params or {})
        params.update(extra_params)
        master = self.cfg.get_master_node_name()
        res = self.rpc.call_one("iallocator_runner", master,
                                {"name": name, "idata": self.in_text, "params": params})
        if res.failed:
            raise errors.OpExecError("Failure while running the iallocator script: %s"
                                     % res.fail_msg)
        return str(res.data)

    def _parse(self, validate: bool) -> None:
        try:
            data = serializer.loads(self.out_text)
        except ValueError as err:
            raise errors.OpExecError("Can't parse iallocator results: %s" % err) from None
        if not isinstance(data, dict):
            raise errors.OpExecError("Can't parse iallocator results: not a dict")
        if "result" not in data and "nodes" in data:
            data["result"] = data.pop("nodes")  # legacy plugins
        for key in ("success", "info", "result"):
            if key not in data:
                raise errors.OpExecError("Can't parse iallocator results: missing key '%s'"
                                         % key)
        self.success = bool(data["success"])
        self.info = str(data["info"])
        self.result = data["result"]
        if self.success and validate:
            self.request.check_result(self.cfg, self.result)


def run_for_lu(lu: Any, name: str | None, request: Request, what: str,
               extra_params: dict[str, Any] | None = None) -> Any:
    """Run an allocator for a logical unit; its validated result.

    ``success=false`` becomes OpPrereqError(ECODE_NORES) "Can't compute <what>
    using iallocator '<name>': <info>".  The caller must hold the locks that
    keep the nodes and instances the answer talks about stable.
    """
    ial = IAllocator(lu.cfg, lu.rpc, request, PENDING.current(lu.cfg, _job_runner(lu)))
    ial.run(name, extra_params=extra_params)
    if not ial.success:
        raise errors.OpPrereqError("Can't compute %s using iallocator '%s': %s"
                                   % (what, resolve_name(lu.cfg, name), ial.info),
                                   errors.ECODE_NORES)
    return ial.result


def _job_runner(lu: Any) -> Callable[[Any], bool]:
    """Whether a job id is still unfinished, per the master's job queue."""
    jqueue = getattr(lu.context, "jqueue", None)

    def running(job_id: Any) -> bool:
        job = jqueue.get_job(job_id) if jqueue is not None else None
        return job is not None and not job.is_finalized()
    return running


def allocate_new_instance(lu: Any, name: str | None, request: AllocRequest) -> list[str]:
    """Nodes for a new instance (create LU), booked as pending until its job ends.

    Allocations for new instances run one at a time (``PENDING.allocating``),
    each seeing the nodes the running creations already got.
    """
    with PENDING.allocating:
        nodes = run_for_lu(lu, name, request, "nodes")
        job_id = lu.proc.cbs.job_id
        PENDING.add(job_id, nodes, request.spec)
    return nodes


def choose_target_node(lu: Any, inst: objects.Instance, name: str | None) -> str:
    """A new primary for an externally mirrored instance (migrate/failover with -I).

    Runs a ``relocate`` request away from the current primary and returns
    the chosen node's name.
    """
    primary = lu.cfg.get_node_info(inst.primary_node).name
    result = run_for_lu(lu, name, RelocRequest(inst.name, [primary]), "nodes")
    return result[0]


def load_evac_result(lu: Any, result: list, early_release: bool, use_nodes: bool
                     ) -> list[list[Any]]:
    """The jobs of a validated ``[moved, failed, jobs]`` answer, as opcodes.

    Any failed instance fails the whole operation (OpExecError naming each
    with its reason), as Ganeti does, so an evacuation is never half
    planned.  ``early_release`` is set on the opcodes that take it.  The
    planned moves are logged (target nodes, or groups if not ``use_nodes``).
    """
    from corral import opcodes
    moved, failed, jobs = result
    if failed:
        reasons = ", ".join("%s (%s)" % (name, reason) for name, reason in failed)
        lu.log_warning("Unable to evacuate instances %s", reasons)
        raise errors.OpExecError("Unable to evacuate instances %s" % reasons)
    if moved:
        lu.log_info("Instances to be moved: %s", ", ".join(
            "%s (to %s)" % (name, ", ".join(nodes) if use_nodes else group)
            for name, group, nodes in moved))
    out = []
    for job in jobs:
        ops = []
        for data in job:
            op = opcodes.from_dict(data)
            if hasattr(op, "early_release"):
                op.early_release = early_release
            ops.append(op)
        out.append(ops)
    return out


def _disk_size(value: Any) -> int:
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0


def create_request(cfg, op: Any, name: str | None = None) -> AllocRequest:
    """The ``allocate`` request for an OP_INSTANCE_CREATE (create with -I, multi-alloc).

    Memory and CPUs are the filled beparams (cluster defaults ← the op's);
    the template and hypervisor default to the cluster's first enabled ones.
    Raises the parameter errors the create LU would raise for bad beparams.
    """
    cluster = cfg.get_cluster_info()
    bep = hvparams.fill_beparams(cluster.beparams.get("default", {}), hvparams.parse_beparams(
        hvparams.upgrade_beparams(dict(op.beparams or {}))))
    disks = [{"size": _disk_size(d.get("size")), "mode": d.get("mode", constants.DISK_RDWR)}
             for d in op.disks or [] if isinstance(d, dict)]
    nics = [{k: n.get(k) for k in ("mac", "ip", "mode", "link", "network", "name", "vlan",
                                   "bridge")} for n in op.nics or [] if isinstance(n, dict)]
    return AllocRequest(
        name or op.instance_name, op.disk_template or cluster.enabled_disk_templates[0],
        int(bep["maxmem"]), int(bep["vcpus"]), disks, nics,
        op.hypervisor or cluster.primary_hypervisor, os=op.os_type or "", tags=op.tags,
        spindle_use=int(bep.get("spindle_use", 1)), group_name=op.group_name)
