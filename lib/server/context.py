"""Everything a running master holds: config, locks, RPC client, job queue.

Logical units reach the cluster only through this context (``lu.context``):
``cfg`` (ConfigWriter), ``glm`` (LockManager), ``rpc`` (RpcClient to node
daemons) and ``jqueue``.  It also keeps the lock table and the ssconf files in
step with the configuration, and replicates each configuration change and
each job queue batch to the master candidates before the change is
acknowledged (doc/design-multinode.md, "Replication").
"""

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from corral import config, errors, jqueue, locking, mcpu, netutils, pathutils, ssconf
from corral.rpc.client import RpcClient
from corral.server import queue_replication
from corral.utils import io


# Replication to a node: a healthy node gets this long to take a change; one
# that failed last time only gets the retry timeout, until it answers again.
REPLICATION_TIMEOUT = 10.0
REPLICATION_RETRY_TIMEOUT = 3.0


class MasterContext:
    def __init__(self, cfg: config.ConfigWriter, rpc: RpcClient | None = None,
                 workers: int | None = None) -> None:
        self.cfg = cfg
        self.glm = locking.LockManager()
        self.rpc = rpc if rpc is not None else RpcClient.for_this_node(self.resolve_node)
        self.cluster_destroyed = False
        self.request_shutdown: Callable[[], None] = lambda: None
        self.replication_failures: dict[str, str] = {}
        self.queue_replication_failures: dict[str, str] = {}
        self._queue_targets: list[str] = []
        self._known_online: set[str] | None = None
        self._last_ssconf: dict[str, str] | None = None
        self._sync_lock = threading.Lock()
        self._sync_locks()
        cfg.add_write_listener(self._on_config_write)
        self._write_local_ssconf()
        self.processor = mcpu.Processor(self)
        cluster = cfg.get_cluster_info()
        candidates, others = self._other_online_nodes()
        self._queue_targets, self._known_online = candidates, set(candidates + others)
        self._queue_replica = queue_replication.QueueReplication(
            self, REPLICATION_TIMEOUT, REPLICATION_RETRY_TIMEOUT)
        self.jqueue = jqueue.JobQueue(pathutils.queue_dir(), self.processor,
                                      workers or cluster.max_running_jobs,
                                      replicator=self._queue_replica)
        # Candidates may hold an outdated copy (down during the last master's
        # time, or its last batches never arrived): send them everything once.
        self.jqueue.request_resync()

    @classmethod
    def load(cls) -> "MasterContext":
        """Load the configuration and check that this node is the master."""
        cfg = config.ConfigWriter(pathutils.config_file())
        me = netutils.get_hostname()
        master = cfg.get_master_node_name()
        if me != master:
            raise errors.ConfigurationError(
                "This node (%s) is not the master node (%s); not starting" % (me, master))
        from corral import masterfailover
        masterfailover.check_master_role_at_start(cfg)
        ctx = cls(cfg)
        masterfailover.activate_master_ip(cfg, ctx.rpc, logging.warning)
        return ctx

    # ---- nodes ----------------------------------------------------------------------

    def resolve_node(self, name: str) -> tuple[str, int] | None:
        """RPC address of a node by name; None for offline nodes (not contacted)."""
        node = self.cfg.get_node_by_name(name)
        port = self.cfg.get_cluster_info().noded_port
        if node is None:
            if netutils.is_valid_ip4(name):
                return name, port
            raise errors.RemoteError("Node '%s' is not in the configuration" % name)
        if node.offline:
            return None
        return node.primary_ip, port

    # ---- locks follow the configuration ---------------------------------------------

    def _wanted_lock_names(self) -> dict[int, set[str]]:
        nodes = set(self.cfg.get_node_list())
        return {
            locking.LEVEL_INSTANCE: {i.name for i in self.cfg.get_all_instances().values()},
            locking.LEVEL_NODEGROUP: set(self.cfg.get_all_node_groups()),
            locking.LEVEL_NODE: nodes,
            locking.LEVEL_NODE_RES: set(nodes),
        }

    def _sync_locks(self) -> None:
        with self._sync_lock:
            for level, wanted in self._wanted_lock_names().items():
                have = self.glm.names(level)
                if wanted - have:
                    self.glm.add(level, wanted - have)
                gone = have - wanted
                if gone:
                    try:
                        self.glm.remove(level, gone)
                    except errors.LockError as err:
                        # Still held by the LU that removed the object; it goes at release.
                        logging.debug("Lock removal deferred: %s", err)

    # ---- configuration distribution -------------------------------------------------

    def _write_local_ssconf(self) -> None:
        values = self.cfg.get_ssconf_values()
        if values != self._last_ssconf:
            ssconf.write_ssconf(values)
            self._last_ssconf = values

    def _on_config_write(self, text: str, serial: int) -> None:
        """After each config write: locks, local ssconf, then replication to the other nodes."""
        self._sync_locks()
        old_ssconf = self._last_ssconf
        self._write_local_ssconf()
        self._replicate(text, self._last_ssconf if self._last_ssconf != old_ssconf else None)
        self._update_queue_targets()

    def _update_queue_targets(self) -> None:
        """Follow membership: a new candidate gets the whole queue, a new node the RAPI users."""
        candidates, others = self._other_online_nodes()
        new = set(candidates) - set(self._queue_targets)
        self._queue_targets = candidates
        if new and getattr(self, "jqueue", None) is not None:
            self.jqueue.request_resync()
        online = set(candidates + others)
        if self._known_online is not None and online - self._known_online:
            # known_hosts changed with the join; everyone (a future master) needs it.
            self._push_ancillary_files({})
        self._known_online = online

    def _other_online_nodes(self) -> tuple[list[str], list[str]]:
        master = self.cfg.get_master_node()
        candidates, others = [], []
        for node in self.cfg.get_all_nodes().values():
            if node.uuid == master or node.offline:
                continue
            (candidates if node.master_candidate else others).append(node.name)
        return sorted(candidates), sorted(others)

    def _call_replication(self, procedure: str, nodes: list[str], args: dict,
                          failed: dict[str, str]) -> None:
        """One parallel call; nodes that failed last time get the short timeout.

        A node that stopped answering costs one short wait per change, not a
        long stall (doc/design-multinode.md); its failure is recorded in
        ``failed``.
        """
        known_bad = [n for n in nodes if n in self.replication_failures]
        healthy = [n for n in nodes if n not in self.replication_failures]
        calls = [(healthy, REPLICATION_TIMEOUT), (known_bad, REPLICATION_RETRY_TIMEOUT)]
        calls = [(group, tmo) for group, tmo in calls if group]
        if len(calls) > 1:
            with ThreadPoolExecutor(max_workers=2) as pool:
                results = list(pool.map(
                    lambda c: self.rpc.call(procedure, c[0], args, timeout=c[1]), calls))
        else:
            results = [self.rpc.call(procedure, group, args, timeout=tmo)
                       for group, tmo in calls]
        for group_results in results:
            for node, res in group_results.items():
                if res.failed:
                    failed.setdefault(node, res.fail_msg or "unknown error")

    def _replicate(self, text: str, ssconf_values: dict | None) -> dict[str, str]:
        candidates, others = self._other_online_nodes()
        failed: dict[str, str] = {}
        if candidates:
            self._call_replication("upload_file", candidates,
                                   {"name": "config.data", "data": text, "mode": 0o600}, failed)
        if ssconf_values is not None:
            targets = candidates + others
        else:
            # Nodes that missed an ssconf change get the current values once they answer.
            targets = [n for n in candidates + others if n in self.replication_failures]
            ssconf_values = self.cfg.get_ssconf_values() if targets else None
        targets = [n for n in targets if n not in failed]
        if targets:
            self._call_replication("write_ssconf", targets, {"values": ssconf_values}, failed)
        for node in set(self.replication_failures) - set(candidates + others):
            del self.replication_failures[node]  # removed or offline: nothing to catch up
        for node in candidates + others:
            if node in failed:
                logging.warning("Configuration replication to %s failed: %s", node, failed[node])
                self.replication_failures[node] = failed[node]
            else:
                self.replication_failures.pop(node, None)
        return failed

    def redistribute_config(self) -> dict[str, str]:
        """Push config and the job queue (candidates), ssconf, the RAPI users and the
        known_hosts files (all) to every online node; failures by node."""
        failed = self._replicate(self.cfg.dump_text(), self.cfg.get_ssconf_values())
        self._push_ancillary_files(failed)
        self.jqueue.resync()
        for node, msg in self.queue_replication_failures.items():
            failed.setdefault(node, "job queue: %s" % msg)
        return failed

    def _push_ancillary_files(self, failed: dict[str, str]) -> None:
        """The RAPI users and SSH known_hosts files go to every online node, so that a
        new master's RAPI knows the users and its node additions trust the members."""
        candidates, others = self._other_online_nodes()
        for name, path, mode in (("rapi-users", pathutils.rapi_users_file(), 0o600),
                                 ("known_hosts", pathutils.known_hosts_file(), 0o644)):
            try:
                text = io.read_file(path)
            except FileNotFoundError:
                continue
            targets = [n for n in candidates + others if n not in failed]
            if targets:
                self._call_replication("upload_file", targets,
                                       {"name": name, "data": text, "mode": mode}, failed)

    @property
    def queue_targets(self) -> list[str]:
        """The nodes job queue batches go to: the online master candidates but the master."""
        return list(self._queue_targets)

    # ---- misc ------------------------------------------------------------------------

    def set_watcher_pause(self, until: float | None) -> float | None:
        """Pause (or resume) the watcher here and, best effort, on every other online node."""
        from corral.backend import watcher as backend_watcher
        result = backend_watcher.set_watcher_pause(until)
        others = [self.cfg.get_node_info(u).name for u in self.cfg.get_online_node_list()
                  if u != self.cfg.get_master_node()]
        for name, res in (self.rpc.call("set_watcher_pause", others, {"until": result})
                          if others else {}).items():
            if res.failed:
                logging.warning("Cannot set the watcher pause on node %s: %s", name,
                                res.fail_msg)
        return result

    def shutdown(self) -> None:
        self.jqueue.stop()
        self.rpc.close()

