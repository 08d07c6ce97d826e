"""Node side of job queue replication: a master candidate's copy of the queue.

The master's queue writer (jqueue.JobQueue, doc/design-jobqueue.md) sends
each batch it committed locally to the online master candidates
(``jobqueue_update``) and waits for their answers before the batch counts as
durable, so a candidate that becomes master (``gnt-cluster
master-failover``) recovers every job a client was told about.  A candidate
that missed batches gets the whole queue again (``jobqueue_list`` tells the
master what it holds, one ``jobqueue_update`` brings it up to date).

Job files are named by job id, never by path: whatever the master sends, only
``<queue>/job-<N>``, ``<queue>/serial``, ``<queue>/drain``, the journal and
``<queue>/archive/<N // 10000>/job-<N>`` are written.  A node whose master
daemon runs refuses: a master never takes another master's queue.

A batch is durable as one record of the queue's journal (jqueue_journal),
like on the master; the files follow without waiting for the disk.
``jobqueue_list(versions=True)`` and ``jobqueue_fetch`` let a new master
compare the candidates' copies job by job at failover (masterfailover.py).
"""

import os
import re
import threading

from corral import constants, errors, jqueue_journal, pathutils, serializer
from corral.utils import io

# Calls can overlap when the master gave up waiting for one (timeout) and
# sends the next; applying them one at a time keeps each file whole.
_LOCK = threading.Lock()
# Queue directory -> its journal (replayed once per process before first use).
_JOURNALS: dict[str, jqueue_journal.Journal] = {}
_VERSION_TAIL = re.compile(r'"version":([0-9]+)\}\s*$')


def _job_id(key: str | int) -> int:
    """``key`` as a job id; errors.ParameterError for anything else (paths, signs...)."""
    text = str(key)
    if not text.isdigit() or len(text) > 18:
        raise errors.ParameterError("Invalid job id %r in a job queue update" % (key,))
    return int(text)


def _queue_dir() -> str:
    path = pathutils.queue_dir()
    os.makedirs(os.path.join(path, "archive"), mode=0o700, exist_ok=True)
    return path


def _journal(queue: str) -> jqueue_journal.Journal:
    """This queue copy's journal, replayed first (_LOCK held): a crash of the
    machine may have left durable batches only there."""
    journal = _JOURNALS.get(queue)
    if journal is None:
        jqueue_journal.replay(queue)
        journal = _JOURNALS[queue] = jqueue_journal.Journal(queue)
    return journal


def _archived_path(queue: str, job_id: int) -> str:
    return os.path.join(queue, "archive", str(job_id // constants.JOB_QUEUE_ARCHIVE_DIR_DIVIDER),
                        "job-%d" % job_id)


def is_archived(job_id: int) -> bool:
    """Whether this node's queue copy holds ``job_id`` in its archive."""
    return os.path.exists(_archived_path(pathutils.queue_dir(), job_id))


def _refuse_on_master() -> None:
    from corral.tools import daemon_util
    if daemon_util.running_pid("masterd"):
        raise errors.OpPrereqError("This node runs the master daemon; it does not take job"
                                   " queue updates from another master", errors.ECODE_STATE)


def _archive(queue: str, archive: dict) -> None:
    """Move jobs into the archive; a given text replaces the archived file's content."""
    touched = set()
    for key, text in archive.items():
        job_id = _job_id(key)
        live = os.path.join(queue, "job-%d" % job_id)
        dest = _archived_path(queue, job_id)
        os.makedirs(os.path.dirname(dest), mode=0o700, exist_ok=True)
        if text is not None:
            io.write_file_atomic(dest, text, mode=0o600)
            io.remove_file(live)
        elif os.path.exists(live):
            os.rename(live, dest)
        touched.add(os.path.dirname(dest))
    for directory in touched | ({queue} if archive else set()):
        io.fsync_dir(directory)


def jobqueue_update(files: dict, serial: int | None, archive: dict,
                    drain: bool | None = None) -> None:
    """Apply one batch of the master's queue: job files, serial, drain flag, archive moves.

    ``files`` maps job ids to the job file's text; they, the serial (if not
    None) and the drain flag (if not None) are committed as one journal
    record; then the archive moves (``archive``: job id -> None to move the
    local file, or the archived file's text), after a journal checkpoint.
    Durable on return; idempotent (a batch applied twice leaves the same
    files).  Invalid job ids refuse the whole call before anything is written.
    """
    _refuse_on_master()
    named = {_job_id(key): text for key, text in files.items()}
    for key in archive:
        _job_id(key)
    if serial is not None and serial < 0:
        raise errors.ParameterError("Invalid job queue serial %r" % serial)
    with _LOCK:
        queue = _queue_dir()
        journal = _journal(queue)
        batch: dict[str, str | None] = {"job-%d" % n: t for n, t in named.items()}
        if serial is not None:
            batch["serial"] = "%d\n" % serial
        if drain is not None:
            batch["drain"] = "" if drain else None
        journal.commit(batch)
        if archive:
            journal.checkpoint()  # moved files must be on disk, not only journaled
            _archive(queue, archive)


def jobqueue_list(versions: bool = False) -> dict:
    """What this node's queue copy holds: live job ids, the serial and the drain
    flag (for a catch-up); with ``versions`` also each live job's version
    (``{"<id>": version}``, for the comparison at master failover).

    Reads under the update lock: files are overwritten in place.
    """
    with _LOCK:
        queue = _queue_dir()
        _journal(queue)
        live = sorted(int(n[4:]) for n in os.listdir(queue)
                      if n.startswith("job-") and n[4:].isdigit())
        try:
            serial = int(io.read_file(os.path.join(queue, "serial")).strip() or 0)
        except (FileNotFoundError, ValueError):
            serial = 0
        out = {"live": live, "serial": serial,
               "drained": os.path.exists(os.path.join(queue, "drain"))}
        if versions:
            out["versions"] = _versions(queue, live)
    return out


def _versions(queue: str, live: list[int]) -> dict[str, int]:
    found = {}
    for job_id in live:
        try:
            found[str(job_id)] = job_version(io.read_file(os.path.join(queue, "job-%d" % job_id)))
        except (FileNotFoundError, ValueError, TypeError):
            continue
    return found


def job_version(text: str) -> int:
    """The version a job file's text carries (0 for files written before versions).

    Job files end with ``"version":N}`` (jqueue.QueuedJob.to_dict), which is
    read without parsing the whole job; anything else is parsed.
    """
    match = _VERSION_TAIL.search(text[-40:])
    if match is not None:
        return int(match.group(1))
    return int(serializer.loads(text).get("version") or 0)


def jobqueue_fetch(ids: list) -> dict:
    """The texts of the given jobs in this queue copy: ``{"<id>": {"text": ...,
    "archived": bool}}`` (live copy first; jobs found nowhere are left out)."""
    wanted = [_job_id(key) for key in ids]
    out = {}
    with _LOCK:  # files are overwritten in place: read between updates
        queue = _queue_dir()
        _journal(queue)
        for job_id in wanted:
            for path, archived in ((os.path.join(queue, "job-%d" % job_id), False),
                                   (_archived_path(queue, job_id), True)):
                try:
                    out[str(job_id)] = {"text": io.read_file(path), "archived": archived}
                    break
                except FileNotFoundError:
                    continue
    return out


def jobqueue_purge() -> None:
    """Remove this node's whole queue copy (live jobs, archive, serial); idempotent.

    For a node leaving the cluster; refused where the master daemon runs.
    """
    _refuse_on_master()
    import shutil
    with _LOCK:
        journal = _JOURNALS.pop(pathutils.queue_dir(), None)
        if journal is not None:
            journal.close()
        shutil.rmtree(pathutils.queue_dir(), ignore_errors=True)
