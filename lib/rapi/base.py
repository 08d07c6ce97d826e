"""What every RAPI resource handler gets and shares: the request, routes, masterd helpers.

A handler is ``async def handler(req: Req) -> <JSON value>``; it raises
``status.HttpError`` for HTTP-level refusals, and lets Corral errors from
masterd propagate (app.py maps them).  Handlers hold no state: each request
is one or a few masterd calls (Query, QueryClusterInfo, QueryJobs,
SubmitJob, WaitForJobChange).
"""

import re
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from corral import constants, errors, luxi, serializer
from corral.rapi import params
from corral.rapi.status import HttpError, from_corral_error, not_found
from corral.rapi.users import ACCESS_READ, ACCESS_WRITE, User

# Required access lists (spec/rapi.md §2): empty = anonymous reads allowed.
NONE: tuple[str, ...] = ()
READ: tuple[str, ...] = (ACCESS_READ, ACCESS_WRITE)
WRITE: tuple[str, ...] = (ACCESS_WRITE,)

REASON_SRC_USER = "gnt:user"
REASON_SRC_RLIB2 = "gnt:library:rlib2"

# Path components: object names (never starting with '.', so never '..'),
# job ids, disk indices.
NAME = r"(?!\.)[\w.-]+"
JOB_ID = r"\d+"


@dataclass
class Req:
    method: str
    path_args: dict[str, str]
    query: params.QueryArgs
    body: Any
    user: User | None
    master: luxi.AsyncClient
    resource: str  # handler name for the reason trail, e.g. "instances_name_reboot"

    def arg(self, name: str) -> str:
        return self.path_args[name]

    def dry_run(self) -> bool:
        return self.query.get_bool("dry-run")

    def reason_trail(self) -> list[list]:
        now = time.time_ns()
        trail = []
        text = self.query.get_str("reason")
        if text is not None:
            trail.append([REASON_SRC_USER, text, now])
        trail.append(["%s:%s" % (REASON_SRC_RLIB2, self.resource), "", now])
        return trail

    def opcode(self, op_id: str, body: Any = None, static: dict | None = None,
               aliases: dict[str, str] | None = None, dry_run: bool = True) -> dict:
        """Validated opcode from ``body`` + ``static``; ``dry-run`` query applied if set."""
        static = dict(static or {})
        if dry_run and "dry-run" in self.query:
            static["dry_run"] = self.dry_run()
        return params.fill_opcode(op_id, body, static, aliases)

    async def submit(self, *ops: dict) -> int:
        """Submit one job of ``ops`` (reason trail added); returns the job id."""
        trail = self.reason_trail()
        for op in ops:
            op["reason"] = list(op.get("reason") or []) + trail
        return int(await self.master.call("SubmitJob", ops=list(ops)))

    async def submit_op(self, op_id: str, body: Any = None, static: dict | None = None,
                        aliases: dict[str, str] | None = None) -> int:
        return await self.submit(self.opcode(op_id, body, static, aliases))


Handler = Callable[[Req], Awaitable[Any]]


@dataclass
class Route:
    pattern: re.Pattern
    name: str
    methods: dict[str, tuple[Handler, tuple[str, ...]]] = field(default_factory=dict)


def route(path: str, name: str, **methods: tuple[Handler, tuple[str, ...]]) -> Route:
    """A resource: anchored path regex (named groups are path args) and its methods."""
    return Route(re.compile("^" + path + "$", re.ASCII), name, methods)


class RawJSON:
    """A handler's answer already encoded as JSON (masterd's text, passed through)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


# ---- masterd helpers -------------------------------------------------------------------

async def query_rows(req: Req, what: str, fields: list[str],
                     names: list[str] | None = None, lookup: bool = False) -> list[list]:
    """Values of ``fields`` per item; cells without data (offline node...) are None."""
    try:
        result = await req.master.call("Query", what=what, fields=fields, names=names or [],
                                       qfilter=None)
    except errors.GenericError as err:
        raise from_corral_error(err, lookup=lookup, query=True) from None
    return [[cell[1] if cell[0] == constants.RS_NORMAL else None for cell in row]
            for row in result["data"]]


async def query_dicts_raw(req: Req, what: str, fields: list[str],
                          names: list[str] | None = None, lookup: bool = False) -> bytes:
    """JSON text of ``[{field: value}]`` (None for cells without data), made by masterd
    (QueryDicts) and never decoded here: bulk lists are passed through as they come."""
    try:
        return await req.master.call_raw("QueryDicts", what=what, fields=fields,
                                         names=names or [])
    except errors.GenericError as err:
        raise from_corral_error(err, lookup=lookup, query=True) from None


async def query_one(req: Req, what: str, fields: list[str], name: str, kind: str) -> dict:
    """The one named item (404 if unknown); same values as in the bulk list."""
    items = serializer.loads(await query_dicts_raw(req, what, fields, [name], lookup=True))
    if not items:
        raise not_found("%s '%s' not known" % (kind, name))
    return items[0]


async def list_or_bulk(req: Req, what: str, fields: list[str], key: str, uri: str) -> Any:
    """``[{key: name, "uri": ...}]`` sorted by name, or the full objects with ``bulk=1``."""
    if req.query.get_bool("bulk"):
        return RawJSON(await query_dicts_raw(req, what, fields))
    names = sorted(row[0] for row in await query_rows(req, what, ["name"]))
    return [{key: name, "uri": uri % name} for name in names]


async def wait_for_job(req: Req, job_id: int) -> Any:
    """Wait (long-poll on masterd, no sleeping) until the job ends; its last result.

    A failed job raises its error, so a synchronous resource (``/2/os``,
    console) answers as if the query itself had failed.
    """
    prev: list | None = None
    while True:
        change = await req.master.call("WaitForJobChange", timeout=constants.
                                       WAIT_FOR_CHANGE_TIMEOUT + 30, job_id=job_id,
                                       fields=["status"], prev_job_info=prev,
                                       prev_log_serial=None)
        if change is not None:
            prev = change["job_info"]
            if prev[0] in constants.JOBS_FINALIZED:
                break
    (status, results), = await req.master.call("QueryJobs", job_ids=[job_id],
                                               fields=["status", "opresult"])
    if status == constants.JOB_STATUS_SUCCESS:
        return results[-1] if results else None
    for result in results:
        errors.maybe_raise(result)
    raise errors.OpExecError("Job %d ended with status %s" % (job_id, status))


async def run_sync(req: Req, *ops: dict) -> Any:
    """Submit a job and wait for its result; errors mapped as for lookups."""
    try:
        job_id = await req.submit(*ops)
        return await wait_for_job(req, job_id)
    except errors.GenericError as err:
        raise from_corral_error(err, lookup=True) from None


# ---- tags ------------------------------------------------------------------------------

def tag_routes(prefix: str, name: str, kind: str, what: str | None, label: str) -> Route:
    """GET/PUT/DELETE ``<prefix>/tags`` for one kind of object (``what`` None = cluster)."""

    async def get(req: Req) -> list:
        if what is None:
            info = await req.master.call("QueryClusterInfo")
            return list(info.get("tags") or [])
        obj = req.arg("name")
        item = await query_one(req, what, ["tags"], obj, label)
        return list(item["tags"] or [])

    def _op(req: Req, op_id: str) -> dict:
        tags = req.query.get_list("tag")
        if not tags:
            raise HttpError(400, "Tags must be given with the 'tag' query parameter")
        static: dict[str, Any] = {"kind": kind, "tags": tags}
        if what is not None:
            static["name"] = req.arg("name")
        return req.opcode(op_id, None, static)

    async def put(req: Req) -> int:
        return await req.submit(_op(req, "OP_TAGS_SET"))

    async def delete(req: Req) -> int:
        return await req.submit(_op(req, "OP_TAGS_DEL"))

    return route(prefix + "/tags", name, GET=(get, NONE), PUT=(put, WRITE),
                 DELETE=(delete, WRITE))
