"""Job resources: list, one job, cancel, and the ``/wait`` long-poll (spec/rapi.md §7)."""

from typing import Any

from corral import constants, errors
from corral.rapi.base import JOB_ID, NONE, WRITE, Req, route
from corral.rapi.status import bad_request, from_corral_error, not_found

J_FIELDS_BULK = ["id", "ops", "status", "summary", "opstatus", "received_ts", "start_ts",
                 "end_ts"]
J_FIELDS = J_FIELDS_BULK + ["oplog", "opresult"]
P = r"/2/jobs/(?P<job_id>%s)" % JOB_ID


async def _query(req: Req, job_ids: list[int] | None, fields: list[str]) -> list:
    try:
        return await req.master.call("QueryJobs", job_ids=job_ids or [], fields=fields)
    except errors.GenericError as err:
        raise from_corral_error(err, lookup=True, query=True) from None


async def get_list(req: Req) -> list:
    if req.query.get_bool("bulk"):
        rows = await _query(req, None, J_FIELDS_BULK)
        return [dict(zip(J_FIELDS_BULK, row)) for row in rows if row is not None]
    rows = await _query(req, None, ["id"])
    return [{"id": row[0], "uri": "/2/jobs/%d" % row[0]}
            for row in sorted(r for r in rows if r is not None)]


async def _one(req: Req, fields: list[str]) -> list:
    job_id = int(req.arg("job_id"))
    row = (await _query(req, [job_id], fields))[0]
    if row is None:
        raise not_found("Job %d not found" % job_id)
    return row


async def get_one(req: Req) -> dict:
    return dict(zip(J_FIELDS, await _one(req, J_FIELDS)))


async def delete_one(req: Req) -> list:
    """``[success, message]``; only queued or waiting jobs can be canceled."""
    await _one(req, ["id"])
    return await req.master.call("CancelJob", job_id=int(req.arg("job_id")))


def _wait_args(body: Any) -> tuple[list[str], list | None, int | None]:
    if not isinstance(body, dict):
        raise bad_request("Invalid body parameters: expected a JSON object with 'fields'")
    fields = body.get("fields")
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise bad_request("Invalid body parameters: 'fields' must be a list of strings")
    prev_info = body.get("previous_job_info")
    if prev_info is not None and not isinstance(prev_info, list):
        raise bad_request("Invalid body parameters: 'previous_job_info' must be a list or null")
    prev_serial = body.get("previous_log_serial")
    if prev_serial is not None and (isinstance(prev_serial, bool)
                                    or not isinstance(prev_serial, int)):
        raise bad_request("Invalid body parameters: 'previous_log_serial' must be an"
                          " integer or null")
    return fields, prev_info, prev_serial


async def get_wait(req: Req) -> dict | None:
    """Blocks until the selected fields differ or new log entries exist (<= ~10 s)."""
    fields, prev_info, prev_serial = _wait_args(req.body)
    try:
        return await req.master.call("WaitForJobChange",
                                     timeout=constants.WAIT_FOR_CHANGE_TIMEOUT + 30,
                                     job_id=int(req.arg("job_id")), fields=fields,
                                     prev_job_info=prev_info, prev_log_serial=prev_serial)
    except errors.GenericError as err:
        raise from_corral_error(err, lookup=True) from None


ROUTES = [
    route(r"/2/jobs", "jobs", GET=(get_list, NONE)),
    route(P, "jobs_id", GET=(get_one, NONE), DELETE=(delete_one, WRITE)),
    route(P + "/wait", "jobs_id_wait", GET=(get_wait, WRITE)),
]
