"""Everything a running master holds: config, locks, RPC client, job queue.

Logical units reach the cluster only through this context (``lu.context``):
``cfg`` (ConfigWriter), ``glm`` (LockManager), ``rpc`` (RpcClient to node
daemons) and ``jqueue``.  It also keeps the lock table and the ssconf files in
step with the configuration, and replicates each configuration change to the
master candidates before the change is acknowledged.
"""

import logging
import threading
import time
from typing import Callable

from corral import config, errors, jqueue, locking, mcpu, netutils, pathutils, ssconf
from corral.rpc.client import RpcClient
from corral.utils import io


class MasterContext:
    def __init__(self, cfg: config.ConfigWriter, rpc: RpcClient | None = None,
                 workers: int | None = None) -> None:
        self.cfg = cfg
        self.glm = locking.LockManager()
        self.rpc = rpc if rpc is not None else RpcClient.for_this_node(self.resolve_node)
        self.cluster_destroyed = False
        self.request_shutdown: Callable[[], None] = lambda: None
        self.replication_failures: dict[str, str] = {}
        self._last_ssconf: dict[str, str] | None = None
        self._sync_lock = threading.Lock()
        self._sync_locks()
        cfg.add_write_listener(self._on_config_write)
        self._write_local_ssconf()
        self.processor = mcpu.Processor(self)
        cluster = cfg.get_cluster_info()
        self.jqueue = jqueue.JobQueue(pathutils.queue_dir(), self.processor,
                                      workers or cluster.max_running_jobs)

    @classmethod
    def load(cls) -> "MasterContext":
        """Load the configuration and check that this node is the master."""
        cfg = config.ConfigWriter(pathutils.config_file())
        me = netutils.get_hostname()
        master = cfg.get_master_node_name()
        if me != master:
            raise errors.ConfigurationError(
                "This node (%s) is not the master node (%s); not starting" % (me, master))
        return cls(cfg)

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

    def _other_online_nodes(self) -> tuple[list[str], list[str]]:
        master = self.cfg.get_master_node()
        candidates, others = [], []
        for node in self.cfg.get_all_nodes().values():
            if node.uuid == master or node.offline:
                continue
            (candidates if node.master_candidate else others).append(node.name)
        return sorted(candidates), sorted(others)

    def _replicate(self, text: str, ssconf_values: dict | None) -> dict[str, str]:
        candidates, others = self._other_online_nodes()
        failed: dict[str, str] = {}
        if candidates:
            results = self.rpc.call("upload_file", candidates,
                                    {"name": "config.data", "data": text, "mode": 0o600})
            for node, res in results.items():
                if res.failed:
                    failed[node] = res.fail_msg or "unknown error"
        targets = candidates + others if ssconf_values is not None else []
        if targets:
            results = self.rpc.call("write_ssconf", targets, {"values": ssconf_values})
            for node, res in results.items():
                if res.failed:
                    failed.setdefault(node, res.fail_msg or "unknown error")
        for node in candidates + others:
            if node in failed:
                logging.warning("Configuration replication to %s failed: %s", node, failed[node])
                self.replication_failures[node] = failed[node]
            else:
                self.replication_failures.pop(node, None)
        return failed

    def redistribute_config(self) -> dict[str, str]:
        """Push config (candidates) and ssconf (all) to every online node; failures by node."""
        return self._replicate(self.cfg.dump_text(), self.cfg.get_ssconf_values())

    # ---- misc ------------------------------------------------------------------------

    def set_watcher_pause(self, until: float | None) -> float | None:
        path = pathutils.watcher_pause_file()
        if until is None or until <= time.time():
            io.remove_file(path)
            return None
        io.write_file_atomic(path, "%d\n" % int(until))
        return until

    def shutdown(self) -> None:
        self.jqueue.stop()
        self.rpc.close()

