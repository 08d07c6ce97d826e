"""Jobs as the queue keeps them: opcodes with status, result and log; derived fields.

``QueuedJob.to_dict`` is the job file's content (its last key, ``version``,
counts the job's writes, see doc/design-jobqueue.md); ``get_info`` answers
the job fields of spec/opcodes.md.  No locking here: the queue (jqueue.py)
holds its lock around every change.
"""

import time
from typing import Any, Callable, Iterable

from corral import constants, errors, opcodes

C = constants

JOB_FIELDS = ("id", "status", "priority", "archived", "ops", "opresult", "opstatus", "oplog",
              "opstart", "opexec", "opend", "oppriority", "summary", "received_ts", "start_ts",
              "end_ts")


def timestamp() -> list[int]:
    now = time.time()
    return [int(now), int((now - int(now)) * 1000000)]


class CancelJob(Exception):
    """Raised inside a worker when the job it runs was canceled while waiting."""


class QueuedOpCode:
    """One opcode of a job with its status, result and log."""

    def __init__(self, op: opcodes.OpCode) -> None:
        self.input = op
        self.status = C.OP_STATUS_QUEUED
        self.result: Any = None
        self.log: list[list] = []
        self.priority = op.priority
        self.start_timestamp: list[int] | None = None
        self.exec_timestamp: list[int] | None = None
        self.end_timestamp: list[int] | None = None

    def to_dict(self) -> dict:
        return {"input": self.input.to_dict(), "status": self.status, "result": self.result,
                "log": self.log, "priority": self.priority,
                "start_timestamp": self.start_timestamp, "exec_timestamp": self.exec_timestamp,
                "end_timestamp": self.end_timestamp}

    @classmethod
    def from_dict(cls, data: dict) -> "QueuedOpCode":
        op_data = dict(data["input"])
        cls_op = opcodes.OP_MAPPING[op_data.pop("OP_ID")]
        qop = cls(cls_op(**op_data))
        for key in ("status", "result", "log", "priority", "start_timestamp", "exec_timestamp",
                    "end_timestamp"):
            setattr(qop, key, data.get(key))
        return qop


class QueuedJob:
    """A job: an ordered list of opcodes plus timestamps and change bookkeeping."""

    def __init__(self, job_id: int, ops: list[opcodes.OpCode]) -> None:
        self.id = job_id
        self.ops = [QueuedOpCode(op) for op in ops]
        self.received_timestamp: list[int] | None = timestamp()
        self.start_timestamp: list[int] | None = None
        self.end_timestamp: list[int] | None = None
        self.archived = False
        self.log_serial = 0
        self.cancel_requested = False
        self.version = 0

    # ---- derived values ----------------------------------------------------------

    def calc_status(self) -> str:
        """Job status from opcode statuses (spec/opcodes.md §2)."""
        status = C.JOB_STATUS_QUEUED
        all_success = True
        for op in self.ops:
            if op.status == C.OP_STATUS_SUCCESS:
                continue
            all_success = False
            if op.status in (C.OP_STATUS_ERROR, C.OP_STATUS_CANCELING, C.OP_STATUS_CANCELED):
                return op.status
            if op.status in (C.OP_STATUS_WAITING, C.OP_STATUS_RUNNING):
                status = op.status
        if all_success:
            return C.JOB_STATUS_SUCCESS
        return status

    def calc_priority(self) -> int:
        prios = [op.priority for op in self.ops if op.status not in C.OPS_FINALIZED]
        return min(prios) if prios else C.OP_PRIO_DEFAULT

    def is_finalized(self) -> bool:
        return self.calc_status() in C.JOBS_FINALIZED

    def get_info(self, fields: Iterable[str]) -> list:
        return [self._field(f) for f in fields]

    def _field(self, name: str) -> Any:
        ops = self.ops
        getters: dict[str, Callable[[], Any]] = {
            "id": lambda: self.id,
            "status": self.calc_status,
            "priority": self.calc_priority,
            "archived": lambda: self.archived,
            "ops": lambda: [op.input.to_dict() for op in ops],
            "opresult": lambda: [op.result for op in ops],
            "opstatus": lambda: [op.status for op in ops],
            "oplog": lambda: [op.log for op in ops],
            "opstart": lambda: [op.start_timestamp for op in ops],
            "opexec": lambda: [op.exec_timestamp for op in ops],
            "opend": lambda: [op.end_timestamp for op in ops],
            "oppriority": lambda: [op.priority for op in ops],
            "summary": lambda: [op.input.summary() for op in ops],
            "received_ts": lambda: self.received_timestamp,
            "start_ts": lambda: self.start_timestamp,
            "end_ts": lambda: self.end_timestamp,
        }
        if name not in getters:
            raise errors.OpPrereqError("Unknown job field '%s' (known: %s)" %
                                       (name, ", ".join(JOB_FIELDS)), errors.ECODE_INVAL)
        return getters[name]()

    def log_entries_after(self, serial: int | None) -> list[list]:
        serial = -1 if serial is None else serial
        entries = [e for op in self.ops for e in op.log if e[0] > serial]
        return sorted(entries, key=lambda e: e[0])

    # ---- persistence ---------------------------------------------------------------

    def to_dict(self) -> dict:
        return {"id": self.id, "ops": [op.to_dict() for op in self.ops],
                "received_timestamp": self.received_timestamp,
                "start_timestamp": self.start_timestamp, "end_timestamp": self.end_timestamp,
                "log_serial": self.log_serial, "version": self.version}

    @classmethod
    def from_dict(cls, data: dict, archived: bool = False) -> "QueuedJob":
        job = cls.__new__(cls)
        job.id = data["id"]
        job.ops = [QueuedOpCode.from_dict(o) for o in data["ops"]]
        job.received_timestamp = data.get("received_timestamp")
        job.start_timestamp = data.get("start_timestamp")
        job.end_timestamp = data.get("end_timestamp")
        job.log_serial = data.get("log_serial", 0)
        job.archived = archived
        job.cancel_requested = False
        # Counts the job's writes across masters: of two copies of a job
        # (master candidates), the higher version is the newer one.
        job.version = int(data.get("version") or 0)
        return job
