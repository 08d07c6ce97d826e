"""The job queue: durable jobs, their statuses, scheduling and change notification.

Guarantees (doc/design-jobqueue.md):
- A job is durable (in the queue journal, jqueue_journal.py, and on the
  master candidates) before its id is returned, with the serial in the same
  journal record; so are "running" before an opcode executes and final
  states before they are announced.
- Statuses follow spec/opcodes.md §2; every transition is persisted.
- At start, jobs found ``queued`` are queued again; jobs that were ``waiting``,
  ``running`` or ``canceling`` when the master died end in ``error`` (or
  ``canceled``) with the reason "Unclean master daemon shutdown".
- Waiters are woken by the change itself (listeners, condition variable), never
  by polling.

Jobs run on a pool of worker threads (``max_running_jobs``); the opcode
processor (mcpu) is passed in so the queue knows nothing about logical units.
"""

import dataclasses
import heapq
import itertools
import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

from corral import constants, errors, jqueue_journal, opcodes, serializer
# Jobs themselves live in jqueue_job.py; callers know them as jqueue.* (re-exported).
from corral.jqueue_job import (JOB_FIELDS, CancelJob, QueuedJob,  # noqa: F401
                               QueuedOpCode, timestamp)
from corral.utils import io

C = constants

class OpExecCallbacks:
    """What the opcode processor may do to the job it runs (one per opcode)."""

    def __init__(self, queue: "JobQueue", job: QueuedJob, qop: QueuedOpCode) -> None:
        self._queue = queue
        self._job = job
        self._qop = qop

    def notify_start(self) -> None:
        """Locks are acquired: the opcode is now running.

        Returns once "running" is on disk and on the master candidates: a
        master (or a candidate after failover) never finds an opcode that may
        have done something still "queued" and runs it a second time.  For a
        short job this costs nothing extra, since its final state would have
        to wait for this write anyway.
        """
        with self._queue.lock:
            if self._job.cancel_requested:
                raise CancelJob()
            self._qop.status = C.OP_STATUS_RUNNING
            self._qop.exec_timestamp = timestamp()
            self._queue.update_job(self._job, fsync=True)

    def feedback(self, msg: Any, log_type: str = C.ELOG_MESSAGE) -> None:
        with self._queue.lock:
            self._job.log_serial += 1
            self._qop.log.append([self._job.log_serial, timestamp(), log_type, msg])
            self._queue.update_job(self._job, fsync=False)

    def check_cancel(self) -> None:
        """Raise CancelJob if the job was canceled while waiting (for locks)."""
        if self._job.cancel_requested:
            raise CancelJob()

    def current_priority(self) -> int:
        return self._qop.priority

    def submit_many_jobs(self, jobs: list[list[dict]]) -> list[list]:
        return self._queue.submit_many_jobs(jobs)

    @property
    def job_id(self) -> int:
        return self._job.id


@dataclasses.dataclass
class ReplicationBatch:
    """What the writer committed locally in one round, for the master candidates.

    ``files``: job id -> the job file's text (latest version, durable or
    not); ``serial``: the new serial, or None if unchanged; ``archived``: job
    ids moved to the archive since the last batch; ``resync``: someone
    asked for the whole queue to be sent again (``JobQueue.resync``);
    ``drain``: the new drain flag, or None if unchanged.  ``queue`` gives the
    replicator a consistent view of the whole queue (``snapshot``,
    ``read_archived``, ``is_drained``) for a candidate that must catch up.
    """

    files: dict[int, str]
    serial: int | None
    archived: list[int]
    resync: bool
    queue: "JobQueue"
    drain: bool | None = None


# Called on the writer thread after each local commit, before the batch counts
# as durable; it must not raise (failures are its own business) nor hold the
# queue lock for long.
Replicator = Callable[[ReplicationBatch], None]


class JobQueue:
    """Owns the queue directory, the in-memory jobs and the worker pool.

    ``replicator`` (optional) receives every batch the writer committed
    locally and returns once the batch is on the master candidates; only then
    are the batch's jobs durable (ids returned, final states announced).
    """

    def __init__(self, queue_dir: str, processor: Callable[[opcodes.OpCode, OpExecCallbacks], Any],
                 workers: int = C.DEFAULT_MAX_RUNNING_JOBS,
                 replicator: Replicator | None = None) -> None:
        self._dir = queue_dir
        self._archive_dir = os.path.join(queue_dir, "archive")
        os.makedirs(self._archive_dir, exist_ok=True)
        self._processor = processor
        self.lock = threading.RLock()
        # Thread waiters of job changes (wait_for_job_change) and idle workers
        # wait on separate conditions: a job's status change must not wake
        # every idle worker, and a runnable job wakes one worker, not all.
        self._changed = threading.Condition(self.lock)
        self._work = threading.Condition(self.lock)
        self._jobs: dict[int, QueuedJob] = {}
        self._runnable: list[tuple[int, int, int]] = []
        self._seq = itertools.count()
        self._dep_waiters: dict[int, set[int]] = {}
        self._active: dict[int, threading.Thread] = {}
        self._listeners: dict[int, dict[int, Callable[[], None]]] = {}
        self._listener_ids = itertools.count()
        jqueue_journal.replay(queue_dir)  # a crash may have left durable batches there
        self._journal = jqueue_journal.Journal(queue_dir)
        # The writer appends under it; archiving checkpoints under it (never
        # taken while waiting for the queue lock, so no deadlock).
        self._journal_lock = threading.Lock()
        # Local commits run here while the writer replicates the same batch.
        self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jq-commit")
        self._local_commit: Future | None = None
        self._drained = os.path.exists(self._drain_path())
        self._drain_seq = self._drain_done = 0
        self._after_durable: list[tuple[list[tuple[QueuedJob, int]], list[list],
                                        Callable[[list[list]], None]]] = []
        self._last_serial = self._read_serial()
        self._written_serial = self._last_serial
        self._dirty: dict[int, tuple[int, str, bool]] = {}
        self._written: dict[int, int] = {}
        self._writer_wakeup = threading.Condition(self.lock)
        self._durable = threading.Condition(self.lock)
        self._replicator = replicator
        self._to_archive: list[int] = []
        self._archive_seq = self._archive_done = 0
        self._resync_seq = self._resync_done = 0
        self._nudged = False
        self._workers: list[threading.Thread] = []
        self._wanted_workers = 0
        self._stopping = False
        self._writer = threading.Thread(target=self._writer_loop, name="jq-writer", daemon=True)
        self._writer.start()
        with self.lock:
            self._recover()
        self.set_workers(workers)

    # ---- files -----------------------------------------------------------------------

    def _job_path(self, job_id: int) -> str:
        return os.path.join(self._dir, "job-%d" % job_id)

    def _archived_path(self, job_id: int) -> str:
        return os.path.join(self._archive_dir, str(job_id // C.JOB_QUEUE_ARCHIVE_DIR_DIVIDER),
                            "job-%d" % job_id)

    def _read_serial(self) -> int:
        """The highest job id ever handed out.

        An id is returned only once its job file is durable, and job files are
        never deleted (archiving moves them), so the highest id on disk is a
        safe floor; the serial file is kept as a hint for tools.
        """
        try:
            hint = int(io.read_file(os.path.join(self._dir, "serial")).strip() or 0)
        except (FileNotFoundError, ValueError):
            hint = 0
        ids = [int(n[4:]) for n in os.listdir(self._dir) if n.startswith("job-")]
        subdirs = [int(n) for n in os.listdir(self._archive_dir) if n.isdigit()]
        if subdirs:
            top = os.path.join(self._archive_dir, str(max(subdirs)))
            ids += [int(n[4:]) for n in os.listdir(top) if n.startswith("job-")]
        return max([hint] + ids)

    def update_job(self, job: QueuedJob, fsync: bool = True) -> None:
        """Persist ``job`` and wake everyone waiting for a change of it (lock held).

        Writes go through the writer thread, which coalesces them.  A final
        status (or ``fsync=True``) waits until the file is on disk before the
        change is announced, releasing the queue lock meanwhile, so nobody ever
        sees a state a crash could take back.
        """
        job.version += 1
        durable = fsync or job.is_finalized()
        old = self._dirty.get(job.id)
        self._dirty[job.id] = (job.version, serializer.dumps(job.to_dict()),
                               durable or (old is not None and old[2]))
        self._writer_wakeup.notify()
        if durable:
            version = job.version
            self._durable.wait_for(lambda: self._written.get(job.id, 0) >= version)
        self._notify(job)

    def _writer_pending(self) -> bool:
        return bool(self._dirty or self._to_archive or self._nudged
                    or self._resync_seq != self._resync_done
                    or self._drain_seq != self._drain_done)

    def _writer_loop(self) -> None:
        """Write dirty jobs (latest version each), serial and drain flag; replicate; report.

        The local commit (on the ``jq-commit`` thread) and the replication to
        the candidates run at the same time, and a batch counts as written
        (``_written``, archive, resync and drain sequence numbers) only once
        both are done: whoever waits for durability waits for this disk and
        the master candidates, but not for one after the other.
        """
        while True:
            with self.lock:
                self._writer_wakeup.wait_for(lambda: self._writer_pending() or self._stopping)
                if not self._writer_pending():
                    self._committer.shutdown(wait=False)
                    with self._journal_lock:
                        self._journal.close()
                    return
                batch, self._dirty = self._dirty, {}
                archived, self._to_archive = self._to_archive, []
                self._nudged = False
                serial = self._last_serial
                archive_seq, resync_seq = self._archive_seq, self._resync_seq
                drain_seq = self._drain_seq
                drain = self._drained if drain_seq != self._drain_done else None
            start = time.perf_counter()
            files, new_serial = self._batch_files(batch, serial, drain)
            if self._replicator is None:
                self._commit_locally(files, serial)
            else:
                self._local_commit = self._committer.submit(self._commit_locally, files, serial)
                try:
                    self._replicator(ReplicationBatch(
                        files={job_id: data for job_id, (_v, data, _d) in batch.items()},
                        serial=new_serial, archived=archived,
                        resync=resync_seq != self._resync_done, queue=self, drain=drain))
                except Exception:  # the writer must survive a replication bug
                    logging.exception("Job queue replication failed")
                self._local_commit.result()
            logging.debug("Queue batch of %d jobs: committed and replicated in %.1f ms",
                          len(batch), (time.perf_counter() - start) * 1000)
            with self.lock:
                for job_id, (version, _data, _durable) in batch.items():
                    self._written[job_id] = max(self._written.get(job_id, 0), version)
                self._archive_done, self._resync_done = archive_seq, resync_seq
                self._drain_done = drain_seq
                if self._after_durable:
                    self._run_after_durable()
                self._durable.notify_all()

    def _batch_files(self, batch: dict[int, tuple[int, str, bool]], serial: int,
                     drain: bool | None) -> tuple[dict[str, str | None], int | None]:
        """The queue files one batch changes, and the serial if it changed (else None)."""
        files: dict[str, str | None] = {"job-%d" % job_id: data
                                        for job_id, (_v, data, _d) in batch.items()}
        new_serial = None if serial == self._written_serial else serial
        if new_serial is not None:
            files["serial"] = "%d\n" % serial
        if drain is not None:
            files["drain"] = "" if drain else None
        return files, new_serial

    def _commit_locally(self, files: dict[str, str | None], serial: int) -> None:
        """Make one batch durable here: one journal record for everything, also the
        changes nobody waits for (jqueue_journal: one fdatasync instead of
        fsyncing and renaming each file)."""
        with self._journal_lock:
            self._journal.commit(files)
        self._written_serial = serial

    # ---- replication support --------------------------------------------------------

    def resync(self) -> None:
        """Have the replicator send the whole queue to the candidates; returns when done.

        Goes through the writer thread, so it is ordered with every other
        write (nothing committed locally is left out, nothing arrives out of
        order).  Must not be called while holding the queue lock.
        """
        with self.lock:
            seq = self._request_resync()
            self._durable.wait_for(lambda: self._resync_done >= seq or self._stopping)

    def request_resync(self) -> None:
        """Like ``resync``, without waiting (callable from anywhere)."""
        with self.lock:
            self._request_resync()

    def nudge(self) -> None:
        """Make the writer call the replicator soon, even with nothing new to write
        (a lagging candidate answers again and can catch up now)."""
        with self.lock:
            self._nudged = True
            self._writer_wakeup.notify()

    def _request_resync(self) -> int:
        self._resync_seq += 1
        self._writer_wakeup.notify()
        return self._resync_seq

    def snapshot(self) -> tuple[dict[int, str], int]:
        """(job id -> file text of every live job, serial) as on disk, consistently.

        For the replicator (writer thread): the batch being replicated is
        committed locally first, the writer writes nothing meanwhile, and the
        queue lock keeps archiving out.
        """
        if self._local_commit is not None:
            self._local_commit.result()
        with self.lock:
            files = {}
            for name in os.listdir(self._dir):
                if name.startswith("job-") and name[4:].isdigit():
                    try:
                        files[int(name[4:])] = io.read_file(os.path.join(self._dir, name))
                    except FileNotFoundError:
                        continue
            return files, self._written_serial

    def read_archived(self, job_id: int) -> str | None:
        """The archived file of ``job_id`` as text, or None."""
        try:
            return io.read_file(self._archived_path(job_id))
        except FileNotFoundError:
            return None

    def _notify(self, job: QueuedJob) -> None:
        self._changed.notify_all()
        for callback in list(self._listeners.get(job.id, {}).values()):
            callback()

    # ---- recovery ----------------------------------------------------------------------

    def _recover(self) -> None:
        names = [n for n in os.listdir(self._dir) if n.startswith("job-") and n[4:].isdigit()]
        for name in sorted(names, key=lambda n: int(n[4:])):  # queued ones run in id order
            try:
                data = serializer.loads(io.read_file(os.path.join(self._dir, name)))
                job = QueuedJob.from_dict(data)
            except (ValueError, KeyError, OSError, errors.GenericError) as err:
                logging.error("Cannot load job file %s: %s", name, err)
                continue
            self._jobs[job.id] = job
            self._written[job.id] = job.version  # as on disk
            self._last_serial = max(self._last_serial, job.id)
            status = job.calc_status()
            if status == C.JOB_STATUS_QUEUED:
                self._make_runnable(job)
            elif status in (C.JOB_STATUS_WAITING, C.JOB_STATUS_RUNNING):
                self._fail_unfinished(job, errors.OpExecError("Unclean master daemon shutdown"))
            elif status == C.JOB_STATUS_CANCELING:
                self._cancel_unfinished(job)
        logging.info("Job queue recovered: %d jobs", len(self._jobs))

    def _fail_unfinished(self, job: QueuedJob, err: errors.GenericError) -> None:
        encoded = errors.encode_exception(err)
        first = True
        for op in job.ops:
            if op.status in C.OPS_FINALIZED:
                continue
            op.status = C.OP_STATUS_ERROR
            op.result = encoded if first else ["OpExecError", ["Preceding opcode failed"]]
            op.end_timestamp = timestamp()
            first = False
        job.end_timestamp = timestamp()
        self.update_job(job)

    def _cancel_unfinished(self, job: QueuedJob) -> None:
        for op in job.ops:
            if op.status not in C.OPS_FINALIZED:
                op.status = C.OP_STATUS_CANCELED
                op.result = "Job canceled by request"
                op.end_timestamp = timestamp()
        job.end_timestamp = timestamp()
        self.update_job(job)

    # ---- submission --------------------------------------------------------------------

    def submit_job(self, ops: list) -> int:
        result = self.submit_many_jobs([ops])[0]
        if not result[0]:
            raise errors.decode_exception(result[1]) if isinstance(result[1], list) \
                else errors.OpPrereqError(result[1], errors.ECODE_INVAL)
        return result[1]

    def submit_many_jobs(self, jobs: list[list]) -> list[list]:
        """Validate and persist jobs; per job ``[True, id]`` or ``[False, encoded error]``.

        Returns once the jobs are durable (here and on the candidates); they
        become runnable then.  The queue-wide conditions (drained, full)
        refuse the whole submission.  The serial goes into the same journal
        record as the job files.
        """
        with self.lock:
            results, created = self._enqueue(jobs)
            for job in created:
                version = job.version
                self._durable.wait_for(lambda j=job, v=version: self._written.get(j.id, 0) >= v)
            for job in created:
                if not job.is_finalized():
                    self._make_runnable(job)
            return results

    def submit_many_jobs_async(self, jobs: list[list],
                               callback: Callable[[list[list]], None]) -> None:
        """``submit_many_jobs`` for an event loop: does not wait for the disk.

        Queue-wide refusals (drained, full) raise here; otherwise
        ``callback(results)`` is called once the jobs are durable, on the
        writer thread with the queue lock held (it must only hand the results
        over, e.g. ``loop.call_soon_threadsafe``); the jobs are runnable then.
        """
        with self.lock:
            results, created = self._enqueue(jobs)
            if not created:
                callback(results)
                return
            self._after_durable.append(([(j, j.version) for j in created], results, callback))

    def _run_after_durable(self) -> None:
        """Writer thread, lock held: finish the asynchronous submissions now durable."""
        pending = []
        for entry in self._after_durable:
            jobs, results, callback = entry
            if any(self._written.get(job.id, 0) < version for job, version in jobs):
                pending.append(entry)
                continue
            for job, _version in jobs:
                if not job.is_finalized():
                    self._make_runnable(job)
            try:
                callback(results)
            except Exception:  # a broken callback must not stop the writer
                logging.exception("Job submission callback failed")
        self._after_durable = pending

    def _enqueue(self, jobs: list[list]) -> tuple[list[list], list["QueuedJob"]]:
        """Lock held: validate, allocate ids, hand the jobs to the writer; (results, created)."""
        if self.is_drained():
            raise errors.JobQueueDrainError("Job queue is drained, refusing job")
        pending = sum(1 for j in self._jobs.values() if not j.archived)
        if pending + len(jobs) > C.JOB_QUEUE_SIZE_HARD_LIMIT:
            raise errors.JobQueueFull("Job queue is full, needs archiving (%d jobs)" % pending)
        first_id = self._last_serial + 1
        self._last_serial += len(jobs)
        results: list[list] = []
        created: list[QueuedJob] = []
        for idx, ops in enumerate(jobs):
            job_id = first_id + idx
            try:
                job = QueuedJob(job_id, self._build_ops(ops, job_id, results))
            except errors.GenericError as err:
                results.append([False, errors.encode_exception(err)])
                continue
            self._jobs[job_id] = job
            job.version += 1
            self._dirty[job_id] = (job.version, serializer.dumps(job.to_dict()), True)
            created.append(job)
            results.append([True, job_id])
        # Durable before any id is returned or any job runs (callers wait).
        self._writer_wakeup.notify()
        return results, created

    def _build_ops(self, ops: list, job_id: int, earlier: list[list]) -> list[opcodes.OpCode]:
        if not isinstance(ops, list) or not ops:
            raise errors.OpPrereqError("A job needs a non-empty list of opcodes",
                                       errors.ECODE_INVAL)
        built = []
        for data in ops:
            op = data if isinstance(data, opcodes.OpCode) else opcodes.from_dict(data)
            if op.priority not in C.OP_PRIO_SUBMIT_VALID:
                raise errors.OpPrereqError("Invalid priority %r: use 10 (low), 0 (normal) or -10"
                                           " (high)" % (op.priority,), errors.ECODE_INVAL)
            op.depends = self._resolve_depends(op.depends, job_id, earlier)
            built.append(op)
        return built

    def _resolve_depends(self, depends: list | None, job_id: int,
                         earlier: list[list]) -> list | None:
        if not depends:
            return depends
        resolved = []
        for dep_id, statuses in depends:
            dep_id = int(dep_id)
            if dep_id < 0:
                pos = len(earlier) + dep_id
                if pos < 0 or not earlier[pos][0]:
                    raise errors.OpPrereqError("Relative job dependency %d does not refer to a"
                                               " job submitted before it" % dep_id,
                                               errors.ECODE_INVAL)
                dep_id = earlier[pos][1]
            if dep_id == job_id:
                raise errors.OpPrereqError("Job %d cannot depend on itself" % job_id,
                                           errors.ECODE_INVAL)
            if dep_id not in self._jobs and not os.path.exists(self._archived_path(dep_id)):
                raise errors.OpPrereqError("Job dependency %d: job not found" % dep_id,
                                           errors.ECODE_NOENT)
            bad = set(statuses) - C.JOBS_FINALIZED
            if bad:
                raise errors.OpPrereqError("Job dependency on %d lists non-final statuses %s" %
                                           (dep_id, ", ".join(sorted(bad))), errors.ECODE_INVAL)
            resolved.append([dep_id, list(statuses)])
        return resolved

    # ---- scheduling ----------------------------------------------------------------------

    def _make_runnable(self, job: QueuedJob) -> None:
        heapq.heappush(self._runnable, (job.calc_priority(), next(self._seq), job.id))
        self._work.notify()

    def set_workers(self, count: int) -> None:
        """Resize the worker pool (cluster ``max_running_jobs``)."""
        with self.lock:
            self._wanted_workers = count
            self._workers = [t for t in self._workers if t.is_alive()]
            while len(self._workers) < count:
                t = threading.Thread(target=self._worker_loop, name="jq-worker", daemon=True)
                self._workers.append(t)
                t.start()
            self._work.notify_all()

    def _next_job(self) -> QueuedJob | None:
        """The next runnable job for this worker, or None when the worker must end.

        A worker wakes only for a runnable job (one per job), a pool resize or
        the stop.  Workers leave ``_workers`` themselves, so its length is
        the live pool size.
        """
        me = threading.current_thread()
        with self.lock:
            while True:
                if self._stopping or len(self._workers) > self._wanted_workers:
                    if me in self._workers:
                        self._workers.remove(me)
                    if self._runnable:
                        self._work.notify()  # the wake-up this worker got is not lost
                    return None
                while self._runnable:
                    _prio, _seq, job_id = heapq.heappop(self._runnable)
                    job = self._jobs.get(job_id)
                    if (job is not None and job.id not in self._active and not job.archived
                            and job.calc_status() in (C.JOB_STATUS_QUEUED, C.JOB_STATUS_WAITING)):
                        self._active[job.id] = threading.current_thread()
                        return job
                self._work.wait()

    def _worker_loop(self) -> None:
        while True:
            job = self._next_job()
            if job is None:
                return
            try:
                self._run_job(job)
            except Exception:  # a bug must not kill the worker; the job ends in error
                logging.exception("Internal error while running job %s", job.id)
                with self.lock:
                    self._fail_unfinished(job, errors.OpExecError("Internal error, see master log"))
                    self._job_finished(job)
            finally:
                with self.lock:
                    if self._active.get(job.id) is threading.current_thread():
                        del self._active[job.id]

    def _run_job(self, job: QueuedJob) -> None:
        with self.lock:
            if job.start_timestamp is None:
                job.start_timestamp = timestamp()
        for idx, qop in enumerate(job.ops):
            if qop.status in C.OPS_FINALIZED:
                continue
            with self.lock:
                if job.cancel_requested:
                    self._cancel_unfinished(job)
                    break
                blocked = self._check_dependencies(job, qop)
                if blocked == "wait":
                    # Parked: whoever finishes the dependency makes it runnable again.
                    del self._active[job.id]
                    return
                if blocked == "cancel":
                    self._cancel_unfinished(job)
                    break
                if blocked is not None:
                    self._fail_op(job, idx, errors.OpExecError(blocked))
                    break
                # "waiting" is not persisted: after a crash the opcode is still
                # "queued" on disk, which is true, since nothing was executed.
                qop.status = C.OP_STATUS_WAITING
                qop.start_timestamp = timestamp()
                self._notify(job)
            if not self._execute(job, idx, qop):
                break
        with self.lock:
            if job.end_timestamp is None:
                job.end_timestamp = timestamp()
                self.update_job(job)
            self._job_finished(job)

    def _execute(self, job: QueuedJob, idx: int, qop: QueuedOpCode) -> bool:
        callbacks = OpExecCallbacks(self, job, qop)
        try:
            result = self._processor(qop.input, callbacks)
        except CancelJob:
            with self.lock:
                self._cancel_unfinished(job)
            return False
        except errors.GenericError as err:
            with self.lock:
                self._fail_op(job, idx, err)
            return False
        except Exception as err:
            logging.exception("Unexpected error in opcode %s of job %s", qop.input.OP_ID, job.id)
            with self.lock:
                self._fail_op(job, idx, errors.OpExecError("%s: %s" % (type(err).__name__, err)))
            return False
        with self.lock:
            qop.status = C.OP_STATUS_SUCCESS
            qop.result = result
            qop.end_timestamp = timestamp()
            if job.is_finalized():
                job.end_timestamp = qop.end_timestamp
            self.update_job(job, fsync=False)
        return True

    def _fail_op(self, job: QueuedJob, idx: int, err: errors.GenericError) -> None:
        """Opcode ``idx`` failed: it and every later opcode end in error."""
        assert all(op.status in C.OPS_FINALIZED for op in job.ops[:idx])
        self._fail_unfinished(job, err)

    def _check_dependencies(self, job: QueuedJob, qop: QueuedOpCode) -> str | None:
        """None = go on; "wait" = parked until a dependency ends; "cancel"; else error text."""
        for dep_id, statuses in qop.input.depends or []:
            dep = self._jobs.get(dep_id)
            if dep is None:
                dep = self._load_archived(dep_id)
                if dep is None:
                    return "Job %s depends on job %s, which was not found" % (job.id, dep_id)
            dep_status = dep.calc_status()
            if dep_status not in C.JOBS_FINALIZED:
                if qop.status != C.OP_STATUS_WAITING:
                    qop.status = C.OP_STATUS_WAITING
                    qop.start_timestamp = qop.start_timestamp or timestamp()
                    self.update_job(job, fsync=False)
                self._dep_waiters.setdefault(dep_id, set()).add(job.id)
                return "wait"
            if dep_status == C.JOB_STATUS_CANCELED and C.JOB_STATUS_CANCELED not in statuses:
                return "cancel"
            if statuses and dep_status not in statuses:
                return ("Job %s depends on job %s, which ended in status '%s' (needed one of %s)"
                        % (job.id, dep_id, dep_status, ", ".join(statuses)))
        return None

    def _job_finished(self, job: QueuedJob) -> None:
        for waiter_id in self._dep_waiters.pop(job.id, set()):
            waiter = self._jobs.get(waiter_id)
            if waiter is not None and not waiter.is_finalized():
                self._make_runnable(waiter)
        self._notify(job)

    # ---- queries and control -------------------------------------------------------------

    def get_job(self, job_id: int) -> QueuedJob | None:
        with self.lock:
            job = self._jobs.get(job_id)
        return job if job is not None else self._load_archived(job_id)

    def _load_archived(self, job_id: int) -> QueuedJob | None:
        try:
            data = serializer.loads(io.read_file(self._archived_path(job_id)))
        except (FileNotFoundError, ValueError):
            return None
        return QueuedJob.from_dict(data, archived=True)

    def query_jobs(self, job_ids: list[int] | None, fields: list[str],
                   archived: bool = False) -> list[list | None]:
        with self.lock:
            if not job_ids:
                ids = sorted(self._jobs)
                if archived:
                    ids = sorted(set(ids) | set(self._archived_ids()))
            else:
                ids = job_ids
            out = []
            for job_id in ids:
                job = self.get_job(job_id)
                out.append(None if job is None else job.get_info(fields))
            return out

    def _archived_ids(self) -> list[int]:
        ids = []
        for sub in os.listdir(self._archive_dir):
            for name in os.listdir(os.path.join(self._archive_dir, sub)):
                if name.startswith("job-"):
                    ids.append(int(name[4:]))
        return ids

    def job_change(self, job_id: int, fields: list[str], prev_info: list | None,
                   prev_serial: int | None) -> dict | None:
        """The change since (prev_info, prev_serial), or None if there is none yet."""
        job = self.get_job(job_id)
        if job is None:
            raise errors.JobLost("Job %s not found" % job_id)
        with self.lock:
            if job.is_finalized() and not self._is_durable(job):
                return None  # announced once on disk (update_job notifies then)
            info = job.get_info(fields)
            logs = job.log_entries_after(prev_serial)
            if info != prev_info or logs or job.is_finalized():
                return {"job_info": info, "log_entries": logs}
        return None

    def _is_durable(self, job: QueuedJob) -> bool:
        """True if the job's latest state is on disk (archived jobs always are)."""
        return job.archived or self._written.get(job.id, 0) >= job.version

    def wait_for_job_change(self, job_id: int, fields: list[str], prev_info: list | None,
                            prev_serial: int | None, timeout: float) -> dict | None:
        """Blocking variant of job_change for threads (the CLI path uses the async one)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                change = self.job_change(job_id, fields, prev_info, prev_serial)
                remaining = deadline - time.monotonic()
                if change is not None or remaining <= 0:
                    return change
                self._changed.wait(remaining)

    def add_listener(self, job_id: int, callback: Callable[[], None]) -> int:
        with self.lock:
            token = next(self._listener_ids)
            self._listeners.setdefault(job_id, {})[token] = callback
            return token

    def remove_listener(self, job_id: int, token: int) -> None:
        with self.lock:
            listeners = self._listeners.get(job_id)
            if listeners is not None:
                listeners.pop(token, None)
                if not listeners:
                    del self._listeners[job_id]

    def cancel_job(self, job_id: int) -> list:
        """``[success, message]`` (spec/rapi.md §7.2)."""
        with self.lock:
            job = self._jobs.get(job_id)
            if job is None:
                return [False, "Job %s not found" % job_id]
            status = job.calc_status()
            if status == C.JOB_STATUS_QUEUED:
                job.cancel_requested = True
                self._cancel_unfinished(job)
                self._job_finished(job)
                return [True, "Job %s canceled" % job_id]
            if status == C.JOB_STATUS_WAITING:
                job.cancel_requested = True
                parked = any(job_id in w for w in self._dep_waiters.values())
                if parked:
                    for waiters in self._dep_waiters.values():
                        waiters.discard(job_id)
                    self._cancel_unfinished(job)
                    self._job_finished(job)
                    return [True, "Job %s canceled" % job_id]
                for op in job.ops:
                    if op.status not in C.OPS_FINALIZED:
                        op.status = C.OP_STATUS_CANCELING
                self.update_job(job)
                return [True, "Job %s will be canceled" % job_id]
            return [False, "Job %s is no longer waiting in the queue" % job_id]

    def change_job_priority(self, job_id: int, priority: int) -> list:
        if priority not in C.OP_PRIO_SUBMIT_VALID:
            raise errors.OpPrereqError("Invalid priority %r: use 10 (low), 0 (normal) or -10 (high)"
                                       % (priority,), errors.ECODE_INVAL)
        with self.lock:
            job = self._jobs.get(job_id)
            if job is None:
                return [False, "Job %s not found" % job_id]
            if job.calc_status() not in C.JOBS_PENDING:
                return [False, "Job %s is not pending (status %s)" % (job_id, job.calc_status())]
            for op in job.ops:
                if op.status not in C.OPS_FINALIZED:
                    op.priority = priority
            self.update_job(job)
            if job.calc_status() == C.JOB_STATUS_QUEUED:
                self._make_runnable(job)
            return [True, "Priority of job %s changed to %s" % (job_id, priority)]

    def archive_job(self, job_id: int) -> bool:
        with self.lock:
            job = self._jobs.get(job_id)
            if job is None or not job.is_finalized():
                return False
            self._durable.wait_for(lambda: self._is_durable(job))
        self._checkpoint()
        with self.lock:
            if self._jobs.get(job_id) is not job:
                return False  # archived meanwhile by someone else
            self._archive(job)
            self._wait_archive_replicated()
            return True

    def _checkpoint(self) -> None:
        """Make the job files of every durable change so far durable themselves
        (not only in the journal), so that they can be moved into the archive.
        Must not be called with the queue lock held (it may take a while)."""
        with self._journal_lock:
            self._journal.checkpoint()

    def _archive(self, job: QueuedJob) -> None:
        """Lock held: move a final job, durable and checkpointed, into the archive."""
        dest = self._archived_path(job.id)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        assert job.id not in self._dirty, "archiving job %d with a pending write" % job.id
        os.rename(self._job_path(job.id), dest)
        del self._jobs[job.id]
        self._written.pop(job.id, None)
        job.archived = True
        self._to_archive.append(job.id)  # the writer replicates the move

    def _wait_archive_replicated(self) -> None:
        """Lock held: wake the writer, wait until the archive moves so far are replicated."""
        self._archive_seq += 1
        seq = self._archive_seq
        self._writer_wakeup.notify()
        self._durable.wait_for(lambda: self._archive_done >= seq or self._stopping)

    def auto_archive(self, age: float, timeout: float | None = None) -> tuple[int, int]:
        """Archive finalized jobs older than ``age`` seconds (< 0: all); (archived, left)."""
        now = time.time()
        start = time.monotonic()
        archived = 0
        with self.lock:
            candidates = [j for j in self._jobs.values()
                          if j.is_finalized() and self._is_durable(j) and
                          (age < 0 or now - (j.end_timestamp[0] if j.end_timestamp else 0) > age)]
        if candidates:
            self._checkpoint()
        with self.lock:
            for job in sorted(candidates, key=lambda j: j.id):
                if self._jobs.get(job.id) is not job:
                    continue  # archived meanwhile
                if timeout is not None and time.monotonic() - start > timeout:
                    break
                self._archive(job)
                archived += 1
            if archived:
                self._wait_archive_replicated()
            left = sum(1 for j in self._jobs.values() if j.is_finalized())
        return archived, left

    # ---- drain flag ---------------------------------------------------------------------

    def _drain_path(self) -> str:
        return os.path.join(self._dir, "drain")

    def is_drained(self) -> bool:
        return self._drained

    def set_drain_flag(self, drain: bool) -> None:
        """Set or clear the drain flag; returns once it is durable here and on the
        master candidates (it goes through the writer, like a job change), so a
        new master after failover keeps it."""
        with self.lock:
            self._drained = bool(drain)
            self._drain_seq += 1
            seq = self._drain_seq
            self._writer_wakeup.notify()
            self._durable.wait_for(lambda: self._drain_done >= seq or self._stopping)

    def stop(self) -> None:
        with self.lock:
            self._stopping = True
            self._changed.notify_all()
            self._work.notify_all()
            self._writer_wakeup.notify_all()

    def pending_count(self) -> int:
        with self.lock:
            return sum(1 for j in self._jobs.values() if not j.is_finalized())
