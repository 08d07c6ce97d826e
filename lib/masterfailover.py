"""Moving the master role: ``gnt-cluster master-failover`` and masterd's start check.

``master_failover`` runs on the node that becomes master (a master candidate)
with no master daemon anywhere reachable; it talks to the node daemons
directly (RPC with this node's certificate, addresses from ssconf):

1. voting (unless ``no_voting``): the reachable nodes name the master they
   know; refuse if the majority did not answer or names another node than
   our ssconf does (this node's view is then outdated);
2. stop the old master's daemons and drop its master IP (best effort: it is
   usually dead);
3. never start from an older configuration than another reachable candidate
   holds: compare ``serial_no`` and fetch the newest copy first; likewise
   the job queue, job by job (``freshest_queue``): a candidate that lagged
   when the master died must not lose acknowledged jobs or final states;
4. make this node the master in the configuration (the old master stays a
   candidate), write it and ssconf here, push them to the other nodes;
5. start the master daemons here (masterd brings the master IP up).

``check_master_role_at_start`` is the other half: a master daemon refuses to
start when the other nodes know a newer master (an old master rebooted after
a failover), and then brings its own configuration and ssconf up to date so
that it is not tried again.  See doc/design-multinode.md.
"""

import collections
from typing import Any, Callable

from corral import config, errors, netutils, objects, pathutils, serializer, ssconf
from corral.backend import cluster_membership
from corral.rpc.client import RpcClient, RpcResult, static_resolver
from corral.utils import io

VOTE_TIMEOUT = 10.0
Feedback = Callable[[str], None]


class _Reach:
    """RPC that stops contacting a node after it failed once: a dead node costs one timeout
    for the whole failover, not one per step."""

    def __init__(self, rpc: RpcClient) -> None:
        self.rpc = rpc
        self.dead: dict[str, str] = {}

    def call(self, procedure: str, nodes: list[str], args: dict,
             timeout: float = VOTE_TIMEOUT) -> dict[str, RpcResult]:
        out = {n: RpcResult(n, fail_msg="not contacted again: %s" % self.dead[n])
               for n in nodes if n in self.dead}
        alive = [n for n in nodes if n not in self.dead]
        if alive:
            for node, res in self.rpc.call(procedure, alive, args, timeout=timeout).items():
                if res.failed and res.error_class is None:  # transport failure, not an error
                    self.dead[node] = res.fail_msg or "unreachable"
                out[node] = res
        return out

    def call_one(self, procedure: str, node: str, args: dict,
                 timeout: float = VOTE_TIMEOUT) -> RpcResult:
        return self.call(procedure, [node], args, timeout)[node]


def _ssconf_rpc(store: ssconf.SimpleStore) -> RpcClient:
    port = store.get_noded_port()
    online = set(store.get_online_nodes())
    mapping: dict[str, Any] = {name: ((ip, port) if name in online else None)
                               for name, ip in store.get_node_primary_ips().items()}
    return RpcClient.for_this_node(static_resolver(mapping))


def gather_votes(rpc: Any, nodes: list[str]) -> list[tuple[str | None, int]]:
    """(master name or None for no answer, votes), most votes first (ties: by name)."""
    results = rpc.call("get_master_info", nodes, {}, timeout=VOTE_TIMEOUT)
    votes: collections.Counter = collections.Counter()
    for res in results.values():
        votes[None if res.failed else (res.data or {}).get("master_node")] += 1
    return sorted(votes.items(), key=lambda kv: (-kv[1], kv[0] is None, kv[0] or ""))


def check_votes(votes: list[tuple[str | None, int]], believed: str) -> None:
    """Refuse unless the majority answer names ``believed`` as master (Ganeti's rule)."""
    if not votes:
        return
    top, _count = votes[0]
    if top is None:
        raise errors.OpPrereqError("Cluster inconsistent, most nodes did not respond; use"
                                   " --no-voting if you are sure", errors.ECODE_STATE)
    if top != believed:
        raise errors.OpPrereqError(
            "I have a wrong configuration, I believe the master is %s but the other nodes"
            " voted %s. Please resync the configuration of this node." % (believed, top),
            errors.ECODE_STATE)


def newest_config(rpc: Any, nodes: list[str], cluster_uuid: str | None
                  ) -> tuple[str | None, int | None, dict[str, Any]]:
    """(node, serial) of the newest configuration copy among ``nodes``, plus all answers."""
    results = rpc.call("config_info", nodes, {}, timeout=VOTE_TIMEOUT) if nodes else {}
    best, best_serial = None, None
    answers = {}
    for node, res in results.items():
        if res.failed:
            continue
        info = res.data or {}
        answers[node] = info
        serial = info.get("serial_no")
        if serial is None or (cluster_uuid and info.get("cluster_uuid") != cluster_uuid):
            continue
        if best_serial is None or serial > best_serial:
            best, best_serial = node, serial
    return best, best_serial, answers


def _install_config(text: str, cluster_uuid: str | None) -> config.ConfigWriter:
    data = objects.ConfigData.from_dict(serializer.loads(text))
    if cluster_uuid and data.cluster.uuid != cluster_uuid:
        raise errors.ConfigurationError("Fetched configuration belongs to another cluster (%s)"
                                        % data.cluster.uuid)
    io.write_file_atomic(pathutils.config_file(), text, mode=0o600)
    return config.ConfigWriter(pathutils.config_file())


def _fetch_config(rpc: Any, node: str, cluster_uuid: str | None) -> config.ConfigWriter:
    res = rpc.call_one("get_config", node, {}, timeout=VOTE_TIMEOUT)
    res.raise_if_failed("Cannot fetch the configuration from %s" % node)
    return _install_config(res.data, cluster_uuid)


def _local_serial() -> tuple[int | None, str | None]:
    info = cluster_membership.config_info()
    return info.get("serial_no"), info.get("cluster_uuid")


def _ip_args(cluster: objects.Cluster) -> dict:
    return {"ip": cluster.master_ip or "", "netmask": int(cluster.master_netmask),
            "netdev": cluster.master_netdev or ""}


def _warn_failures(results: dict[str, RpcResult], what: str, feedback: Feedback) -> None:
    for node, res in sorted(results.items()):
        if res.failed:
            feedback("Warning: could not %s on node %s: %s" % (what, node, res.fail_msg))


def _freshest_local_config(rpc: Any, candidates: list[str],
                           feedback: Feedback) -> config.ConfigWriter:
    my_serial, my_uuid = _local_serial()
    node, serial, _answers = newest_config(rpc, candidates, my_uuid)
    if serial is not None and (my_serial is None or serial > my_serial):
        feedback("Node %s holds a newer configuration (serial %d, ours %s); fetching it" %
                 (node, serial, my_serial))
        return _fetch_config(rpc, node, my_uuid)
    if my_serial is None:
        raise errors.OpPrereqError("This node holds no configuration and no other candidate"
                                   " provided one", errors.ECODE_STATE)
    return config.ConfigWriter(pathutils.config_file())


def plan_queue_fetch(local: dict[int, int], archived_here: Callable[[int], bool],
                     peers: dict[str, dict]) -> dict[str, list[int]]:
    """Which jobs to fetch from which candidate: node -> job ids.

    ``local``: our live jobs' versions; ``peers``: each candidate's
    ``jobqueue_list(versions=True)`` answer.  A job a candidate holds live in
    a higher version than ours (or that we lack, unless we archived it) is
    fetched from the candidate holding the highest version; our live jobs a
    candidate does not hold live are asked from it too (it may have archived
    them, with a newer final state).
    """
    best: dict[int, tuple[int, str]] = {}
    plan: dict[str, set[int]] = {}
    for node in sorted(peers):
        versions = {int(k): int(v) for k, v in (peers[node].get("versions") or {}).items()}
        for job_id, version in versions.items():
            mine = local.get(job_id)
            if mine is None and archived_here(job_id):
                continue
            if (mine is None or version > mine) and \
                    (job_id not in best or version > best[job_id][0]):
                best[job_id] = (version, node)
        missing = set(local) - set(versions)
        if missing:
            plan.setdefault(node, set()).update(missing)
    for job_id, (_version, node) in best.items():
        plan.setdefault(node, set()).add(job_id)
    return {node: sorted(ids) for node, ids in plan.items()}


def pick_newest_jobs(local: dict[int, int], copies: list[tuple[str, int, str, bool]]
                     ) -> dict[int, tuple[str, str, bool]]:
    """job id -> (node, text, archived): the copies to install here.

    ``copies`` are (node, job id, text, archived) fetched from candidates; a
    copy is taken when its version is higher than our live copy's (or we
    have none) and than every other copy's.  Unreadable copies are ignored.
    """
    from corral.backend import queue as backend_queue
    chosen: dict[int, tuple[int, str, str, bool]] = {}
    for node, job_id, text, archived in copies:
        try:
            version = backend_queue.job_version(text)
        except (ValueError, TypeError, AttributeError):
            continue
        floor = local.get(job_id, -1)
        if version > floor and (job_id not in chosen or version > chosen[job_id][0]):
            chosen[job_id] = (version, node, text, archived)
    return {job_id: (node, text, archived)
            for job_id, (_v, node, text, archived) in chosen.items()}


def freshest_queue(rpc: Any, peers: list[str], feedback: Feedback) -> None:
    """Bring this node's job queue copy up to the newest one among the reachable
    candidates ``peers``, job by job; also the serial (highest) and the drain
    flag (set if any copy has it).  Unreachable candidates are skipped."""
    from corral.backend import queue as backend_queue
    mine = backend_queue.jobqueue_list(versions=True)  # replays our journal first
    local = {int(k): v for k, v in mine["versions"].items()}
    answers = rpc.call("jobqueue_list", peers, {"versions": True}) if peers else {}
    lists = {n: r.data for n, r in answers.items() if not r.failed and isinstance(r.data, dict)}
    copies = []
    for node, ids in plan_queue_fetch(local, backend_queue.is_archived, lists).items():
        res = rpc.call_one("jobqueue_fetch", node, {"ids": ids})
        if res.failed:
            feedback("Warning: cannot fetch job queue entries from %s: %s" % (node, res.fail_msg))
            continue
        copies += [(node, int(k), v["text"], bool(v["archived"])) for k, v in res.data.items()]
    newest = pick_newest_jobs(local, copies)
    serial = max([mine["serial"]] + [int(a.get("serial") or 0) for a in lists.values()])
    drained = mine["drained"] or any(a.get("drained") for a in lists.values())
    if not newest and serial == mine["serial"] and drained == mine["drained"]:
        return
    files = {str(j): text for j, (_n, text, archived) in newest.items() if not archived}
    archive = {str(j): text for j, (_n, text, archived) in newest.items() if archived}
    backend_queue.jobqueue_update(files, serial, archive, drain=drained)
    if newest:
        feedback("Took the newer copy of %d job(s) from other candidates (%s)" %
                 (len(newest), ", ".join(sorted({n for n, _t, _a in newest.values()}))))


def master_failover(no_voting: bool = False, feedback: Feedback = print) -> str:
    """Make this node the master (see module doc); returns the old master's name."""
    me = netutils.get_hostname()
    store = ssconf.SimpleStore()
    old_master = store.get_master_node()
    if me == old_master:
        raise errors.OpPrereqError("This command must be run on the node where you want the"
                                   " new master to be; %s is already the master" % me,
                                   errors.ECODE_INVAL)
    if me not in store.get_master_candidates():
        raise errors.OpPrereqError("This node (%s) is not a master candidate; only one of %s"
                                   " can become master" %
                                   (me, ", ".join(store.get_master_candidates())),
                                   errors.ECODE_STATE)
    online = [n for n in store.get_online_nodes() if n != me]
    client = _ssconf_rpc(store)
    rpc = _Reach(client)
    try:
        if not no_voting:
            check_votes(gather_votes(rpc, online + [me]), old_master)
        cluster = config.ConfigWriter(pathutils.config_file()).get_cluster_info()
        res = rpc.call_one("master_stop", old_master, _ip_args(cluster))
        if res.failed:
            feedback("Warning: could not disable the master role on the old master %s, please"
                     " disable manually: %s" % (old_master, res.fail_msg))
        peers = [n for n in store.get_master_candidates() if n != me and n in online]
        cfg = _freshest_local_config(rpc, peers, feedback)
        freshest_queue(rpc, peers, feedback)
        _become_master(cfg, me)
        _distribute(rpc, cfg, me, feedback)
    finally:
        client.close()
    from corral.tools import daemon_util
    daemon_util.start_all()
    return old_master


def _become_master(cfg: config.ConfigWriter, me: str) -> None:
    node = cfg.get_node_by_name(me)
    if node is None:
        raise errors.ConfigurationError("This node (%s) is not in the configuration" % me)
    old = cfg.get_master_node_info()
    cluster = cfg.get_cluster_info()
    cluster.master_node = node.uuid
    node.master_candidate, node.drained, node.offline = True, False, False
    old.master_candidate = old.master_capable and not old.offline and not old.drained
    cfg.update(node)
    cfg.update(old)
    cfg.update(cluster)
    ssconf.write_ssconf(cfg.get_ssconf_values())


def _distribute(rpc: Any, cfg: config.ConfigWriter, me: str, feedback: Feedback) -> None:
    """Config to the online candidates, ssconf to every online node (failures: warnings)."""
    text = cfg.dump_text()
    nodes = [n for n in cfg.get_all_nodes().values() if n.name != me and not n.offline]
    candidates = [n.name for n in nodes if n.master_candidate]
    if candidates:
        _warn_failures(rpc.call("upload_file", candidates,
                                {"name": "config.data", "data": text, "mode": 0o600},
                                timeout=VOTE_TIMEOUT), "update the configuration", feedback)
    if nodes:
        _warn_failures(rpc.call("write_ssconf", [n.name for n in nodes],
                                {"values": cfg.get_ssconf_values()}, timeout=VOTE_TIMEOUT),
                       "update ssconf", feedback)


# ---- the master daemon's start ----------------------------------------------------------------

def config_rpc(cfg: config.ConfigWriter) -> RpcClient:
    """An RPC client reaching the online nodes of ``cfg`` (offline ones are not contacted)."""
    port = cfg.get_cluster_info().noded_port
    return RpcClient.for_this_node(static_resolver(
        {n.name: (None if n.offline else (n.primary_ip, port))
         for n in cfg.get_all_nodes().values()}))


def check_master_role_at_start(cfg: config.ConfigWriter) -> None:
    """Refuse (errors.ConfigurationError) to run masterd here if others know a newer master.

    Asks every other online node.  Refuses when one holds a newer config that
    names another master, or when the majority of the answers names another
    master in ssconf; before refusing, installs the newest configuration and
    ssconf here.  Without answers (everybody else down) the start goes on.
    """
    me = cfg.get_master_node_name()
    others = [n.name for n in cfg.get_all_nodes().values() if n.name != me and not n.offline]
    if not others:
        return
    uuid = cfg.get_cluster_info().uuid
    with config_rpc(cfg) as rpc:
        _check_agreement(cfg, rpc, me, others, uuid)


def _check_agreement(cfg: config.ConfigWriter, rpc: RpcClient, me: str, others: list[str],
                     uuid: str) -> None:
    best, best_serial, answers = newest_config(rpc, others, uuid)
    answers = {n: a for n, a in answers.items() if a.get("cluster_uuid") in (None, uuid)}
    votes = collections.Counter(a.get("ssconf_master") for a in answers.values())
    top, count = votes.most_common(1)[0] if votes else (me, 0)
    newer = best is not None and best_serial > cfg.serial_no and \
        answers[best].get("config_master") != me
    if not newer and (top in (me, None) or count * 2 <= len(answers)):
        return
    detail = "%d of %d nodes name %s as master" % (count, len(answers), top)
    if newer:
        new_cfg = _fetch_config(rpc, best, uuid)
        ssconf.write_ssconf(new_cfg.get_ssconf_values())
        detail += "; configuration (serial %d) and ssconf updated from %s" % (best_serial, best)
    raise errors.ConfigurationError("This node (%s) is not the master any more (%s); not"
                                    " starting" % (me, detail))


def activate_master_ip(cfg: config.ConfigWriter, rpc: RpcClient,
                       warn: Feedback) -> None:
    """Bring the master IP up on this (master) node; failures only warn."""
    cluster = cfg.get_cluster_info()
    if not cluster.master_netdev or not cluster.master_ip:
        return
    res = rpc.call_one("master_ip_up", cfg.get_master_node_name(), _ip_args(cluster),
                       timeout=30.0)
    if res.failed:
        warn("Could not activate the master IP %s on %s: %s" %
             (cluster.master_ip, cluster.master_netdev, res.fail_msg))
