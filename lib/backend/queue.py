"""Node side of job queue replication: a master candidate's copy of the queue.

The master's queue writer (jqueue.JobQueue, doc/design-jobqueue.md) sends
each batch it committed locally to the online master candidates
(``jobqueue_update``) and waits for their answers before the batch counts as
durable, so a candidate that becomes master (``gnt-cluster
master-failover``) recovers every job a client was told about.  A candidate
that missed batches gets the whole queue again (``jobqueue_list`` tells the
master what it holds, one ``jobqueue_update`` brings it up to date).

Job files are named by job id, never by path: whatever the master sends, only
``<queue>/job-<N>``, ``<queue>/serial`` and
``<queue>/archive/<N // 10000>/job-<N>`` are written.  A node whose master
daemon runs refuses: a master never takes another master's queue.
"""

import os
import threading

from corral import constants, errors, pathutils
from corral.utils import io

# Calls can overlap when the master gave up waiting for one (timeout) and
# sends the next; applying them one at a time keeps each file whole.
_LOCK = threading.Lock()


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


def _archived_path(queue: str, job_id: int) -> str:
    return os.path.join(queue, "archive", str(job_id // constants.JOB_QUEUE_ARCHIVE_DIR_DIVIDER),
                        "job-%d" % job_id)


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


def jobqueue_update(files: dict, serial: int | None, archive: dict) -> None:
    """Apply one batch of the master's queue: job files, the serial, archive moves.

    ``files`` maps job ids to the job file's text; they replace the local
    copies in one group commit (written, fsynced, renamed, directory
    fsynced), then the serial (if not None) and the archive moves
    (``archive``: job id -> None to move the local file, or the archived
    file's text).  Durable on return; idempotent (a batch applied twice
    leaves the same files).  Invalid job ids refuse the whole call before
    anything is written.
    """
    _refuse_on_master()
    named = {_job_id(key): text for key, text in files.items()}
    for key in archive:
        _job_id(key)
    if serial is not None and serial < 0:
        raise errors.ParameterError("Invalid job queue serial %r" % serial)
    with _LOCK:
        queue = _queue_dir()
        batch: dict[str, str | bytes] = {os.path.join(queue, "job-%d" % n): t
                                         for n, t in named.items()}
        if serial is not None:
            batch[os.path.join(queue, "serial")] = "%d\n" % serial
        if batch:
            io.write_files_group_commit(queue, batch, mode=0o600)
        _archive(queue, archive)


def jobqueue_list() -> dict:
    """What this node's queue copy holds: live job ids and the serial (for a catch-up)."""
    queue = _queue_dir()
    live = sorted(int(n[4:]) for n in os.listdir(queue)
                  if n.startswith("job-") and n[4:].isdigit())
    try:
        serial = int(io.read_file(os.path.join(queue, "serial")).strip() or 0)
    except (FileNotFoundError, ValueError):
        serial = 0
    return {"live": live, "serial": serial}


def jobqueue_purge() -> None:
    """Remove this node's whole queue copy (live jobs, archive, serial); idempotent.

    For a node leaving the cluster; refused where the master daemon runs.
    """
    _refuse_on_master()
    import shutil
    with _LOCK:
        shutil.rmtree(pathutils.queue_dir(), ignore_errors=True)
