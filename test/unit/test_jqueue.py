"""Job queue: persistence, statuses, dependencies, cancel, priorities, recovery."""

import os
import threading

import pytest

from corral import constants as C
from corral import errors, jqueue, opcodes, serializer


class Gate:
    """A processor whose opcodes block until released; records the order they ran in."""

    def __init__(self) -> None:
        self.ran: list[int] = []
        self.started = threading.Condition()
        self.release = threading.Event()
        self.block = True

    def __call__(self, op: opcodes.OpCode, cbs: jqueue.OpExecCallbacks):
        cbs.notify_start()
        with self.started:
            self.ran.append(cbs.job_id)
            self.started.notify_all()
        if op.OP_ID == "OP_TEST_JQUEUE":
            for msg in op.log_messages:
                cbs.feedback(msg)
            if op.fail:
                raise errors.OpExecError("requested failure")
            return True
        if self.block:
            self.release.wait(30)
        return None

    def wait_started(self, count: int) -> None:
        with self.started:
            assert self.started.wait_for(lambda: len(self.ran) >= count, 30)


def delay_op(**kw):
    return opcodes.OpTestDelay(duration=0.0, **kw).to_dict()


def jq_op(**kw):
    return opcodes.OpTestJqueue(**kw).to_dict()


@pytest.fixture
def qdir(tmp_path):
    return str(tmp_path / "queue")


def make_queue(qdir, proc, workers=2):
    os.makedirs(qdir, exist_ok=True)
    return jqueue.JobQueue(qdir, proc, workers)


def wait_final(q, job_id):
    info = None
    while True:
        change = q.wait_for_job_change(job_id, ["status"], info, None, 30)
        assert change is not None, "job %s did not change within 30 s" % job_id
        info = change["job_info"]
        if info[0] in C.JOBS_FINALIZED:
            return info[0]


def test_job_is_on_disk_before_id_returned(qdir):
    gate = Gate()
    q = make_queue(qdir, gate)
    job_id = q.submit_job([delay_op()])
    data = serializer.loads(open(os.path.join(qdir, "job-%d" % job_id)).read())
    assert data["id"] == job_id
    assert int(open(os.path.join(qdir, "serial")).read()) >= job_id
    gate.release.set()
    assert wait_final(q, job_id) == C.JOB_STATUS_SUCCESS
    q.stop()


def test_statuses_and_log(qdir):
    q = make_queue(qdir, Gate())
    job_id = q.submit_job([jq_op(log_messages=["a", "b"]), jq_op()])
    assert wait_final(q, job_id) == C.JOB_STATUS_SUCCESS
    status, opstatus, opresult, oplog = q.query_jobs([job_id], ["status", "opstatus", "opresult",
                                                               "oplog"])[0]
    assert opstatus == ["success", "success"] and opresult == [True, True]
    assert [e[3] for e in oplog[0]] == ["a", "b"]
    assert [e[0] for e in oplog[0]] == [1, 2]
    q.stop()


def test_failure_marks_following_opcodes(qdir):
    q = make_queue(qdir, Gate())
    job_id = q.submit_job([jq_op(fail=True), jq_op()])
    assert wait_final(q, job_id) == C.JOB_STATUS_ERROR
    opstatus, opresult = q.query_jobs([job_id], ["opstatus", "opresult"])[0]
    assert opstatus == ["error", "error"]
    assert opresult[0] == ["OpExecError", ["requested failure"]]
    assert opresult[1] == ["OpExecError", ["Preceding opcode failed"]]
    q.stop()


def test_cancel_queued_and_refuse_running(qdir):
    gate = Gate()
    q = make_queue(qdir, gate, workers=1)
    running = q.submit_job([delay_op()])
    gate.wait_started(1)
    queued = q.submit_job([delay_op()])
    assert q.cancel_job(running) == [False, "Job %d is no longer waiting in the queue" % running]
    ok, _msg = q.cancel_job(queued)
    assert ok
    assert q.query_jobs([queued], ["status", "opresult"])[0] == \
        ["canceled", ["Job canceled by request"]]
    gate.release.set()
    assert wait_final(q, running) == C.JOB_STATUS_SUCCESS
    assert gate.ran == [running]
    q.stop()


def test_dependencies(qdir):
    gate = Gate()
    q = make_queue(qdir, gate, workers=2)
    first = q.submit_job([delay_op()])
    gate.wait_started(1)
    second = q.submit_job([opcodes.OpTestJqueue(depends=[[first, ["success"]]]).to_dict()])
    assert q.query_jobs([second], ["status"])[0][0] in ("queued", "waiting")
    gate.release.set()
    assert wait_final(q, second) == C.JOB_STATUS_SUCCESS
    assert gate.ran == [first, second]
    # A dependency whose status is not accepted fails the job.
    failed = q.submit_job([jq_op(fail=True)])
    wait_final(q, failed)
    third = q.submit_job([opcodes.OpTestJqueue(depends=[[failed, ["success"]]]).to_dict()])
    assert wait_final(q, third) == C.JOB_STATUS_ERROR
    q.stop()


def test_relative_dependencies_in_one_submission(qdir):
    q = make_queue(qdir, Gate())
    results = q.submit_many_jobs([[jq_op()],
                                  [opcodes.OpTestJqueue(depends=[[-1, []]]).to_dict()]])
    assert all(ok for ok, _ in results)
    second = results[1][1]
    assert q.get_job(second).ops[0].input.depends == [[results[0][1], []]]
    assert wait_final(q, second) == C.JOB_STATUS_SUCCESS
    q.stop()


@pytest.mark.parametrize("depends, message", [
    ([[99999, []]], "not found"),
    ([[-1, []]], "does not refer"),
])
def test_bad_dependencies_are_refused_and_change_nothing(qdir, depends, message):
    q = make_queue(qdir, Gate())
    before = set(os.listdir(qdir))
    result = q.submit_many_jobs([[opcodes.OpTestJqueue(depends=depends).to_dict()]])
    assert result[0][0] is False and message in str(result[0][1])
    assert set(os.listdir(qdir)) - before <= {"serial"}
    q.stop()


@pytest.mark.parametrize("op, message", [
    ({"OP_ID": "OP_NO_SUCH_THING"}, "Unknown opcode"),
    ({"OP_ID": "OP_TEST_DELAY", "duration": 1, "bogus": 1}, "unknown"),
    ({"OP_ID": "OP_TEST_DELAY", "duration": "soon"}, "fails validation"),
    ({"OP_ID": "OP_TEST_DELAY"}, "is required"),
    ({"OP_ID": "OP_TEST_DELAY", "duration": 1, "priority": 5}, "Invalid priority"),
])
def test_invalid_opcodes_are_refused(qdir, op, message):
    q = make_queue(qdir, Gate())
    result = q.submit_many_jobs([[op]])
    assert result[0][0] is False
    assert message in str(result[0][1])
    assert not [n for n in os.listdir(qdir) if n.startswith("job-")]
    q.stop()


def test_priority_order(qdir):
    gate = Gate()
    q = make_queue(qdir, gate, workers=1)
    blocker = q.submit_job([delay_op()])
    gate.wait_started(1)
    low = q.submit_job([delay_op(priority=C.OP_PRIO_LOW)])
    normal = q.submit_job([delay_op()])
    high = q.submit_job([delay_op(priority=C.OP_PRIO_HIGH)])
    assert q.change_job_priority(low, C.OP_PRIO_HIGH)[0]
    gate.block = False
    gate.release.set()
    for job in (blocker, low, normal, high):
        wait_final(q, job)
    assert gate.ran == [blocker, high, low, normal]
    q.stop()


def test_drain_and_full(qdir, monkeypatch):
    q = make_queue(qdir, Gate())
    q.set_drain_flag(True)
    with pytest.raises(errors.JobQueueDrainError):
        q.submit_job([jq_op()])
    q.set_drain_flag(False)
    monkeypatch.setattr(C, "JOB_QUEUE_SIZE_HARD_LIMIT", 1)
    q.submit_job([jq_op()])
    with pytest.raises(errors.JobQueueFull):
        q.submit_job([jq_op()])
    q.stop()


def test_archive_and_autoarchive(qdir):
    q = make_queue(qdir, Gate())
    ids = [q.submit_job([jq_op()]) for _ in range(3)]
    for job_id in ids:
        wait_final(q, job_id)
    assert q.archive_job(ids[0])
    assert q.query_jobs([ids[0]], ["id", "archived", "status"])[0] == [ids[0], True, "success"]
    assert q.auto_archive(-1) == (2, 0)
    assert q.query_jobs(None, ["id"]) == []
    assert sorted(r[0] for r in q.query_jobs(None, ["id"], archived=True)) == ids
    q.stop()


def test_recovery_after_crash(qdir):
    """Jobs that were running end in error, queued ones run again, ids keep increasing."""
    gate = Gate()
    q = make_queue(qdir, gate, workers=1)
    running = q.submit_job([delay_op()])
    gate.wait_started(1)
    queued = q.submit_job([jq_op()])
    q.stop()  # simulate the crash: a new queue object reads the same directory
    q2 = make_queue(qdir, Gate(), workers=1)
    assert q2.query_jobs([running], ["status", "opresult"])[0] == \
        ["error", [["OpExecError", ["Unclean master daemon shutdown"]]]]
    assert wait_final(q2, queued) == C.JOB_STATUS_SUCCESS
    assert q2.submit_job([jq_op()]) > queued
    gate.release.set()
    q2.stop()


def test_wait_for_change_wakes_on_change(qdir):
    gate = Gate()
    q = make_queue(qdir, gate, workers=1)
    job_id = q.submit_job([delay_op()])
    gate.wait_started(1)
    first = q.wait_for_job_change(job_id, ["status"], None, None, 5)
    assert first["job_info"] == ["running"]
    assert q.wait_for_job_change(job_id, ["status"], ["running"], None, 0.2) is None
    threading.Timer(0.1, gate.release.set).start()
    change = q.wait_for_job_change(job_id, ["status"], ["running"], None, 30)
    assert change["job_info"] == ["success"]
    q.stop()


def test_job_summary_and_fields(qdir):
    q = make_queue(qdir, Gate())
    job_id = q.submit_job([opcodes.OpTestDelay(duration=0.25).to_dict(),
                           opcodes.OpTagsGet(kind="cluster").to_dict()])
    summary = q.query_jobs([job_id], ["summary"])[0][0]
    assert summary == ["TEST_DELAY(250000000 ns)", "TAGS_GET(cluster)"]
    with pytest.raises(errors.OpPrereqError):
        q.query_jobs([job_id], ["nonsense"])
    q.stop()


# ---- the journal (jqueue_journal) -----------------------------------------------------------

def test_journal_replay_restores_files_and_ignores_a_torn_record(tmp_path):
    from corral import jqueue_journal
    d = str(tmp_path)
    journal = jqueue_journal.Journal(d)
    journal.commit({"job-1": "one-v1", "serial": "1\n"})
    journal.commit({"job-1": "one-v2", "job-2": "two", "drain": ""})
    journal.commit({"drain": None})
    journal.close()
    # A crash: the files' data never reached the disk, the last append was torn.
    (tmp_path / "job-1").write_text("")
    os.remove(tmp_path / "job-2")
    with open(tmp_path / "journal", "ab") as fh:
        fh.write(jqueue_journal.encode_record({"job-3": "never acknowledged"})[:-5])
    assert jqueue_journal.replay(d) == 3
    assert (tmp_path / "job-1").read_text() == "one-v2"
    assert (tmp_path / "job-2").read_text() == "two"
    assert not (tmp_path / "drain").exists() and not (tmp_path / "job-3").exists()
    assert (tmp_path / "journal").stat().st_size == 0
    assert jqueue_journal.replay(d) == 0  # idempotent


def test_journal_refuses_other_names_and_checkpoints_past_its_limit(tmp_path):
    from corral import jqueue_journal
    journal = jqueue_journal.Journal(str(tmp_path), limit=200)
    for bad in ("../config.data", "archive/0/job-1", "job-x", "journal"):
        with pytest.raises(errors.ParameterError):
            journal.commit({bad: "x"})
    journal.commit({"job-1": "x" * 50})
    assert (tmp_path / "journal").stat().st_size > 0
    journal.commit({"job-1": "short"})  # overwritten in place: no old tail left
    assert (tmp_path / "job-1").read_text() == "short"
    journal.commit({"job-2": "y" * 300})  # past the limit: files synced, journal emptied
    assert (tmp_path / "journal").stat().st_size == 0
    assert (tmp_path / "job-2").read_text() == "y" * 300
    os.remove(tmp_path / "journal")  # removed behind its back (node left): reopened
    journal.commit({"job-3": "z"})
    assert jqueue_journal.read_records(str(tmp_path / "journal")) == [{"job-3": "z"}]
    journal.close()


def test_queue_recovers_from_the_journal_and_archives_durable_files(qdir):
    q = make_queue(qdir, Gate())
    ids = [q.submit_job([jq_op()]) for _ in range(2)]
    for job_id in ids:
        wait_final(q, job_id)
    q.stop()
    # Lose the files' data (not the journal's): the next master finds it all.
    for job_id in ids:
        with open(os.path.join(qdir, "job-%d" % job_id), "w"):
            pass
    q2 = make_queue(qdir, Gate())
    assert q2.query_jobs(ids, ["status"]) == [["success"], ["success"]]
    assert q2.archive_job(ids[0])
    assert os.path.getsize(os.path.join(qdir, "journal")) == 0  # checkpointed first
    q2.stop()
    q3 = make_queue(qdir, Gate())  # the archived job does not come back from a journal
    assert q3.query_jobs(None, ["id"]) == [[ids[1]]]
    q3.stop()


def test_versions_grow_across_restarts(qdir):
    q = make_queue(qdir, Gate())
    job_id = q.submit_job([jq_op()])
    wait_final(q, job_id)
    q.stop()
    version = serializer.loads(open(os.path.join(qdir, "job-%d" % job_id)).read())["version"]
    assert version >= 3  # submitted, running, final
    q2 = make_queue(qdir, Gate())
    q2.change_job_priority(job_id, 0)  # refused (final): no write
    assert q2.get_job(job_id).version == version
    assert q2.query_jobs([job_id], ["status"]) == [["success"]]
    q2.stop()


def test_drain_flag_is_durable_and_survives_a_restart(qdir):
    q = make_queue(qdir, Gate())
    q.set_drain_flag(True)
    q.stop()
    q2 = make_queue(qdir, Gate())
    assert q2.is_drained()
    with pytest.raises(errors.JobQueueDrainError):
        q2.submit_job([jq_op()])
    q2.set_drain_flag(False)
    q2.stop()
    assert not make_queue(qdir, Gate()).is_drained()
