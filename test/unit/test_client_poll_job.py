"""poll_job's queue/lock-wait notices (spec/cli.md §1): once, only for a job that
really sits queued or waiting, and never after the log lines of that wait."""

from corral import constants
from corral.client import base


class ScriptedClient:
    """wait_for_job_change answers from a script; None = a long poll with no change."""

    def __init__(self, script: list) -> None:
        self.script = list(script)

    def wait_for_job_change(self, job_id, fields, prev_info, prev_serial):
        return self.script.pop(0)

    def query_jobs(self, job_ids, fields):
        return [[constants.JOB_STATUS_SUCCESS, [constants.OP_STATUS_SUCCESS], [None]]]


def _change(status: str, *messages: str, serial: int = 1) -> dict:
    return {"job_info": [status],
            "log_entries": [[serial + i, [315662400, 0], "message", m] for i, m in enumerate(messages)]}


def _text(line: str) -> str:
    """The message without poll_job's ctime prefix."""
    return line.split(" 1980 ", 1)[1]


def _follow(script: list, capsys) -> list[str]:
    """stdout and stderr lines in the order they were written."""
    lines = []
    base.poll_job(7, ScriptedClient(script), feedback=lambda m: lines.append("out: " + _text(m)))
    lines += ["err: " + line for line in capsys.readouterr().err.splitlines()]
    return lines


def test_a_job_that_locks_at_once_says_nothing_about_waiting(capsys):
    lines = _follow([_change(constants.JOB_STATUS_WAITING),
                     _change(constants.JOB_STATUS_RUNNING, "Migrating instance x"),
                     _change(constants.JOB_STATUS_SUCCESS)], capsys)
    assert lines == ["out: Migrating instance x"]


def test_a_job_waiting_for_locks_is_reported_once_before_its_log(capsys):
    out = []
    script = [_change(constants.JOB_STATUS_QUEUED), None,
              _change(constants.JOB_STATUS_WAITING), None, None,
              _change(constants.JOB_STATUS_RUNNING, "step one"),
              _change(constants.JOB_STATUS_SUCCESS, "done", serial=2)]
    client = ScriptedClient(script)

    def feedback(msg: str) -> None:
        out.append(("out", _text(msg), capsys.readouterr().err))
    base.poll_job(7, client, feedback=feedback)
    assert [m for _k, m, _e in out] == ["step one", "done"]
    # Both notices were on stderr before the first log line, each exactly once.
    assert out[0][2] == ("Job 7 is waiting in queue\n"
                         "Job 7 is trying to acquire all necessary locks\n")
    assert out[1][2] == ""
