"""Job queue replication: the writer's replication hook (jqueue), the master side
(server/queue_replication.py) and the candidate side (backend/queue.py)."""

import os
import threading

import pytest

from corral import constants as C
from corral import errors, jqueue, serializer
from corral.backend import queue as backend_queue
from corral.rpc.client import RpcResult
from corral.server import queue_replication
from test_jqueue import Gate, delay_op, wait_final


# ---- candidate side ------------------------------------------------------------------------

@pytest.fixture
def node_root(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_ROOT", str(tmp_path))
    return tmp_path / "var" / "lib" / "corral" / "queue"


def test_update_writes_files_serial_and_archive_moves(node_root):
    backend_queue.jobqueue_update({"1": "one", "2": "two"}, 2, {})
    assert (node_root / "job-1").read_text() == "one"
    assert (node_root / "serial").read_text() == "2\n"
    backend_queue.jobqueue_update({"3": "three"}, None, {"1": None, "2": "two-final", "7": None})
    assert not (node_root / "job-1").exists() and not (node_root / "job-2").exists()
    assert (node_root / "archive" / "0" / "job-1").read_text() == "one"
    assert (node_root / "archive" / "0" / "job-2").read_text() == "two-final"
    assert (node_root / "serial").read_text() == "2\n"  # None: unchanged
    assert backend_queue.jobqueue_list() == {"live": [3], "serial": 2, "drained": False}
    backend_queue.jobqueue_update({"3": "three"}, None, {"1": None})  # idempotent
    assert backend_queue.jobqueue_list()["live"] == [3]


@pytest.mark.parametrize("bad", ["../config.data", "job-1", "-1", "1/2", ""])
def test_update_refuses_anything_but_job_ids(node_root, bad):
    with pytest.raises(errors.ParameterError, match="Invalid job id"):
        backend_queue.jobqueue_update({"5": "ok", bad: "x"}, None, {})
    with pytest.raises(errors.ParameterError, match="Invalid job id"):
        backend_queue.jobqueue_update({}, None, {bad: None})
    assert not (node_root / "job-5").exists()  # nothing written


def test_purge_removes_the_copy(node_root):
    backend_queue.jobqueue_update({"1": "one"}, 1, {"1": None})
    backend_queue.jobqueue_purge()
    assert not node_root.exists()
    backend_queue.jobqueue_purge()


# ---- the writer's hook ----------------------------------------------------------------------

class Recorder:
    """A replicator that records batches and can hold the writer (a slow candidate)."""

    def __init__(self) -> None:
        self.batches: list[jqueue.ReplicationBatch] = []
        self.open = threading.Event()
        self.open.set()
        self.lock = threading.Lock()

    def __call__(self, batch: jqueue.ReplicationBatch) -> None:
        assert self.open.wait(30)
        with self.lock:
            self.batches.append(batch)

    def files(self) -> dict[int, str]:
        with self.lock:
            return {k: v for b in self.batches for k, v in b.files.items()}


def test_submission_waits_for_replication_after_local_commit(tmp_path):
    qdir = str(tmp_path / "queue")
    os.makedirs(qdir)
    rec = Recorder()
    rec.open.clear()
    gate = Gate()
    q = jqueue.JobQueue(qdir, gate, 1, replicator=rec)
    ids: list[int] = []
    submitter = threading.Thread(target=lambda: ids.append(q.submit_job([delay_op()])))
    submitter.start()
    submitter.join(0.5)
    assert submitter.is_alive() and not ids  # not acknowledged while not replicated
    assert os.path.exists(os.path.join(qdir, "job-1"))  # but committed locally already
    rec.open.set()
    submitter.join(30)
    assert ids == [1]
    data = serializer.loads(rec.files()[1])
    assert data["id"] == 1
    assert any(b.serial == 1 for b in rec.batches)
    gate.release.set()
    assert wait_final(q, 1) == C.JOB_STATUS_SUCCESS
    final = serializer.loads(rec.files()[1])  # the final state went out before it was announced
    assert [op["status"] for op in final["ops"]] == [C.OP_STATUS_SUCCESS]
    assert q.archive_job(1)
    assert any(b.archived == [1] for b in rec.batches)
    q.resync()
    assert rec.batches[-1].resync and rec.batches[-1].queue is q
    assert q.snapshot() == ({}, 1)
    assert serializer.loads(q.read_archived(1))["id"] == 1
    q.stop()


def test_async_submission_answers_once_durable_and_replicated(tmp_path):
    """masterd's SubmitJob path: no thread waits; the callback comes after the
    replication, and only then does the job run."""
    qdir = str(tmp_path / "queue")
    os.makedirs(qdir)
    rec = Recorder()
    gate = Gate()
    gate.block = False
    q = jqueue.JobQueue(qdir, gate, 1, replicator=rec)
    rec.open.clear()
    answered = threading.Event()
    results = []
    q.submit_many_jobs_async([[delay_op()], ["not an opcode"]],
                             lambda r: (results.extend(r), answered.set()))
    assert not answered.wait(0.5) and gate.ran == []  # not durable: no answer, not run
    rec.open.set()
    assert answered.wait(30)
    assert results[0] == [True, 1] and results[1][0] is False
    assert wait_final(q, 1) == C.JOB_STATUS_SUCCESS
    with pytest.raises(errors.JobQueueDrainError):
        q.set_drain_flag(True)
        q.submit_many_jobs_async([[delay_op()]], lambda r: None)
    q.stop()


def test_drain_flag_is_replicated_before_it_is_acknowledged(tmp_path, node_root, monkeypatch):
    """gnt-cluster queue drain: the flag goes to the candidates like a job change, so
    a new master after failover keeps it; the candidate side stores it."""
    qdir = str(tmp_path / "master-queue")
    os.makedirs(qdir)
    rec = Recorder()
    q = jqueue.JobQueue(qdir, Gate(), 1, replicator=rec)
    rec.open.clear()
    done = threading.Event()
    setter = threading.Thread(target=lambda: (q.set_drain_flag(True), done.set()))
    setter.start()
    assert not done.wait(0.5)  # not acknowledged while not replicated
    rec.open.set()
    assert done.wait(30)
    assert [b.drain for b in rec.batches if b.drain is not None] == [True]
    assert queue_replication.batch_args(rec.batches[-1])["drain"] is True
    q.stop()
    from corral.tools import daemon_util
    monkeypatch.setattr(daemon_util, "running_pid", lambda name: None)
    backend_queue.jobqueue_update({}, None, {}, drain=True)
    assert (node_root / "drain").exists() and backend_queue.jobqueue_list()["drained"]
    backend_queue.jobqueue_update({"4": "four"}, None, {})  # None: unchanged
    assert backend_queue.jobqueue_list()["drained"]
    backend_queue.jobqueue_update({}, None, {}, drain=False)
    assert not (node_root / "drain").exists()


def test_candidate_copy_is_journaled_and_versions_are_listed(node_root, monkeypatch):
    from corral import jqueue_journal
    from corral.tools import daemon_util
    monkeypatch.setattr(daemon_util, "running_pid", lambda name: None)
    text = serializer.dumps({"id": 7, "ops": [], "version": 12})
    backend_queue.jobqueue_update({"7": text, "8": "{}"}, 8, {})
    assert jqueue_journal.read_records(str(node_root / "journal"))[-1]["job-7"] == text
    listing = backend_queue.jobqueue_list(versions=True)
    assert listing["versions"] == {"7": 12, "8": 0}
    backend_queue.jobqueue_update({}, None, {"8": None})
    assert (node_root / "journal").stat().st_size == 0  # checkpointed before the move
    assert backend_queue.jobqueue_fetch(["7", "8", "9"]) == {
        "7": {"text": text, "archived": False}, "8": {"text": "{}", "archived": True}}


# ---- the master side ------------------------------------------------------------------------

class FakeRpc:
    """Per-node answers; ``down`` nodes fail like an unreachable node."""

    def __init__(self) -> None:
        self.down: set[str] = set()
        self.calls: list[tuple[str, list[str], dict, float | None]] = []
        self.live: dict[str, list[int]] = {}
        self.lock = threading.Lock()

    def call(self, procedure, nodes, args, timeout=None):
        with self.lock:
            self.calls.append((procedure, list(nodes), args, timeout))
        out = {}
        for n in nodes:
            if n in self.down:
                out[n] = RpcResult(n, fail_msg="Timeout connecting to node %s" % n)
            elif procedure == "jobqueue_list":
                out[n] = RpcResult(n, data={"live": self.live.get(n, []), "serial": 0})
            else:
                out[n] = RpcResult(n, data=None)
        return out

    def call_one(self, procedure, node, args, timeout=None):
        return self.call(procedure, [node], args, timeout)[node]

    def named(self, procedure):
        with self.lock:
            return [c for c in self.calls if c[0] == procedure]


class FakeCtx:
    def __init__(self, rpc) -> None:
        self.rpc = rpc
        self.queue_targets = ["n2", "n3"]
        self.queue_replication_failures: dict[str, str] = {}


class FakeQueue:
    def __init__(self) -> None:
        self.nudged = threading.Event()

    def snapshot(self):
        return {5: "five", 6: "six"}, 6

    def read_archived(self, job_id):
        return "archived-%d" % job_id if job_id == 4 else None

    def is_drained(self):
        return True

    def nudge(self):
        self.nudged.set()


def _batch(queue, files=None, archived=(), resync=False):
    return jqueue.ReplicationBatch(files=files or {}, serial=None, archived=list(archived),
                                   resync=resync, queue=queue)


def _join_probes() -> None:
    for thread in threading.enumerate():
        if thread.name == "jq-probe":
            thread.join(10)


def test_batches_go_out_in_one_call_and_a_lagging_node_catches_up():
    rpc, queue = FakeRpc(), FakeQueue()
    ctx = FakeCtx(rpc)
    repl = queue_replication.QueueReplication(ctx, 10.0, 3.0)
    repl(_batch(queue, {5: "five"}, archived=[4]))
    assert rpc.named("jobqueue_update") == [
        ("jobqueue_update", ["n2", "n3"], {"files": {"5": "five"}, "serial": None,
                                           "archive": {"4": None}, "drain": None}, 10.0)]
    rpc.down.add("n3")
    rpc.calls.clear()
    repl(_batch(queue, {6: "six"}))
    assert "n3" in ctx.queue_replication_failures
    rpc.calls.clear()
    repl(_batch(queue, {6: "six-2"}))  # the lagging node costs the writer nothing
    assert [c[1] for c in rpc.named("jobqueue_update")] == [["n2"]]
    _join_probes()
    assert not queue.nudged.is_set()  # the probe found it still down
    rpc.down.clear()
    rpc.live["n3"] = [4, 5]
    repl(_batch(queue, {6: "six-3"}))  # starts a probe, which now gets an answer
    assert queue.nudged.wait(10)
    probes = [c for c in rpc.named("jobqueue_list") if c[1] == ["n3"]]
    assert probes and all(c[3] == 3.0 for c in probes)  # the short retry timeout
    rpc.calls.clear()
    repl(_batch(queue))  # the nudged writer's round: the whole queue to n3
    full = [c for c in rpc.named("jobqueue_update") if c[1] == ["n3"]]
    assert full and full[0][2] == {"files": {"5": "five", "6": "six"}, "serial": 6,
                                   "archive": {"4": "archived-4"}, "drain": True}
    assert ctx.queue_replication_failures == {}


def test_resync_sends_everything_to_every_candidate():
    rpc, queue = FakeRpc(), FakeQueue()
    ctx = FakeCtx(rpc)
    rpc.down.add("n2")
    queue_replication.QueueReplication(ctx, 10.0, 3.0)(_batch(queue, resync=True))
    assert [c[1] for c in rpc.named("jobqueue_list")] == [["n2", "n3"]]
    assert [c[1] for c in rpc.named("jobqueue_update")] == [["n3"]]
    assert set(ctx.queue_replication_failures) == {"n2"}
    ctx.queue_targets = ["n3"]  # n2 went offline: nothing left to catch up
    queue_replication.QueueReplication(ctx, 10.0, 3.0)(_batch(queue, {1: "x"}))
    assert ctx.queue_replication_failures == {}
