"""Replicating the job queue to the master candidates (the queue's replicator).

The job queue's writer thread (jqueue.JobQueue) calls ``QueueReplication``
with every batch after committing it locally and before anyone is told that
the batch is durable.  One parallel ``jobqueue_update`` call carries the
batch (job files, serial, drain flag, archive moves) to every healthy online
candidate.

A candidate that fails (one timeout) is recorded in
``ctx.queue_replication_failures``; from then on batches skip it and a
background probe (``jobqueue_list``, the short retry timeout of configuration
replication, server/context.py) watches for it to answer; then the writer
sends it the whole queue (its live jobs the master archived meanwhile are
archived there with the master's text) and it gets batches again.  A resync request
(``JobQueue.resync``: master start, a node becoming candidate,
``gnt-cluster redist-conf``) sends the whole queue to every candidate.
See doc/design-multinode.md.
"""

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from corral import jqueue
from corral.rpc.client import RpcResult

# Sending the whole queue may take a while on a big queue; the node answered
# the probe just before, so it is alive.
CATCH_UP_TIMEOUT = 30.0


def _parallel(tasks: list[Callable[[], Any]]) -> list[Any]:
    if len(tasks) <= 1:
        return [t() for t in tasks]
    with ThreadPoolExecutor(max_workers=len(tasks), thread_name_prefix="jq-repl") as pool:
        return list(pool.map(lambda t: t(), tasks))


def batch_args(batch: jqueue.ReplicationBatch) -> dict:
    """The ``jobqueue_update`` arguments carrying one batch."""
    return {"files": {str(job_id): text for job_id, text in batch.files.items()},
            "serial": batch.serial, "archive": {str(job_id): None for job_id in batch.archived},
            "drain": batch.drain}


def catch_up_args(queue: jqueue.JobQueue, files: dict[int, str], serial: int,
                  node_live: list[int]) -> dict:
    """``jobqueue_update`` arguments that make a node's queue copy equal to the master's.

    ``files``/``serial`` are the master's live jobs (queue.snapshot());
    jobs live on the node but not here were archived meanwhile: the node
    archives them with the master's archived text (or as they are, if the
    master has none).
    """
    gone = sorted(set(node_live) - set(files))
    return {"files": {str(job_id): text for job_id, text in files.items()}, "serial": serial,
            "archive": {str(job_id): queue.read_archived(job_id) for job_id in gone},
            "drain": queue.is_drained()}


class QueueReplication:
    """jqueue.Replicator for a master context (``ctx.rpc``, ``ctx.queue_targets``).

    Runs on the queue's writer thread.  A lagging candidate (in
    ``ctx.queue_replication_failures``) costs the writer nothing: a background
    probe (short timeout, at most one at a time, started by a batch) notices
    when it answers again, nudges the writer, and the next batch sends that
    node the whole queue before it gets ordinary batches again.
    """

    def __init__(self, ctx: Any, timeout: float, retry_timeout: float) -> None:
        self._ctx = ctx
        self._timeout = timeout
        self._retry_timeout = retry_timeout
        self._lock = threading.Lock()
        self._probing = False
        self._answered: set[str] = set()

    @property
    def failures(self) -> dict[str, str]:
        return self._ctx.queue_replication_failures

    def __call__(self, batch: jqueue.ReplicationBatch) -> None:
        targets = self._ctx.queue_targets
        for node in set(self.failures) - set(targets):
            del self.failures[node]  # removed, offline or demoted: nothing to catch up
        if not targets:
            return
        with self._lock:
            answered, self._answered = self._answered, set()
        if batch.resync:
            normal, catch_up, lagging = [], targets, []
        else:
            normal = [n for n in targets if n not in self.failures]
            catch_up = [n for n in targets if n in self.failures and n in answered]
            lagging = [n for n in targets if n in self.failures and n not in answered]
        empty = not (batch.files or batch.serial is not None or batch.archived
                     or batch.drain is not None)
        tasks: list[Callable[[], dict[str, RpcResult]]] = []
        if normal and not empty:
            tasks.append(lambda: self._ctx.rpc.call("jobqueue_update", normal, batch_args(batch),
                                                    timeout=self._timeout))
        if catch_up:
            tasks.append(lambda: self._catch_up(catch_up, batch.queue))
        results: dict[str, RpcResult] = {}
        for part in _parallel(tasks):
            results.update(part)
        self._record(results)
        if lagging:
            self._start_probe(lagging, batch.queue)

    def _start_probe(self, nodes: list[str], queue: jqueue.JobQueue) -> None:
        with self._lock:
            if self._probing:
                return
            self._probing = True
        threading.Thread(target=self._probe, args=(nodes, queue), name="jq-probe",
                         daemon=True).start()

    def _probe(self, nodes: list[str], queue: jqueue.JobQueue) -> None:
        try:
            results = self._ctx.rpc.call("jobqueue_list", nodes, {}, timeout=self._retry_timeout)
            back = {n for n, res in results.items() if not res.failed}
        except Exception:  # never let a probe bug go unnoticed, nor kill anything
            logging.exception("Probing lagging job queue replicas failed")
            back = set()
        with self._lock:
            self._probing = False
            self._answered |= back
        if back:
            queue.nudge()

    def _catch_up(self, nodes: list[str], queue: jqueue.JobQueue) -> dict[str, RpcResult]:
        """Send ``nodes`` the whole queue (each gets what makes its copy equal to ours)."""
        probes = self._ctx.rpc.call("jobqueue_list", nodes, {}, timeout=self._timeout)
        alive = [n for n, res in probes.items() if not res.failed]
        if not alive:
            return probes
        files, serial = queue.snapshot()

        def send(node: str) -> RpcResult:
            args = catch_up_args(queue, files, serial, probes[node].data.get("live") or [])
            return self._ctx.rpc.call_one("jobqueue_update", node, args, timeout=CATCH_UP_TIMEOUT)

        for res in _parallel([(lambda n=n: send(n)) for n in alive]):
            probes[res.node] = res
            if not res.failed:
                logging.info("Job queue of %s brought up to date (%d jobs)", res.node, len(files))
        return probes

    def _record(self, results: dict[str, RpcResult]) -> None:
        for node, res in results.items():
            if res.failed:
                if node not in self.failures:
                    logging.warning("Job queue replication to %s failed: %s", node, res.fail_msg)
                self.failures[node] = res.fail_msg or "unknown error"
            else:
                self.failures.pop(node, None)
