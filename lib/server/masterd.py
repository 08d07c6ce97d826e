"""corral-masterd: owns the configuration and the job queue, answers clients.

Clients (gnt-* commands, corral-rapi, the watcher) talk JSON over HTTP on the
unix socket ``pathutils.master_socket()``: ``POST /<Method>`` with a JSON
object of arguments; the answer is ``{"success": true, "result": ...}`` or
``{"success": false, "error": [ClassName, [args]]}``.  The methods are the
table ``METHODS`` below.  Jobs run on the job queue's worker threads; waiting
for a job change is an asyncio wait woken by the queue (no polling).
"""

import asyncio
import logging
import socket
from typing import Any, Callable

from starlette.requests import Request
from starlette.responses import Response

from corral import constants, errors, pathutils, query, serializer
from corral.server import context as master_context

Handler = Callable[[master_context.MasterContext, dict], Any]


def _job_id(value: Any) -> int:
    try:
        job_id = int(value)
    except (TypeError, ValueError):
        raise errors.OpPrereqError("Invalid job id %r (must be a non-negative integer)" % (value,),
                                   errors.ECODE_INVAL) from None
    if job_id < 0:
        raise errors.OpPrereqError("Invalid job id %r (must be non-negative)" % (value,),
                                   errors.ECODE_INVAL)
    return job_id


def _submit_job(ctx, args: dict) -> int:
    return ctx.jqueue.submit_job(args["ops"])


def _submit_many_jobs(ctx, args: dict) -> list:
    return ctx.jqueue.submit_many_jobs(args["jobs"])


def _query_jobs(ctx, args: dict) -> list:
    ids = [_job_id(j) for j in args.get("job_ids") or []]
    return ctx.jqueue.query_jobs(ids, args["fields"], archived=bool(args.get("archived")))


def _cancel_job(ctx, args: dict) -> list:
    return ctx.jqueue.cancel_job(_job_id(args["job_id"]))


def _change_priority(ctx, args: dict) -> list:
    return ctx.jqueue.change_job_priority(_job_id(args["job_id"]), args["priority"])


def _archive_job(ctx, args: dict) -> bool:
    return ctx.jqueue.archive_job(_job_id(args["job_id"]))


def _auto_archive(ctx, args: dict) -> list:
    return list(ctx.jqueue.auto_archive(float(args["age"]), args.get("timeout")))


def _set_drain(ctx, args: dict) -> bool:
    ctx.jqueue.set_drain_flag(bool(args["drain"]))
    return True


def _queue_info(ctx, args: dict) -> dict:
    return {"drained": ctx.jqueue.is_drained(), "pending": ctx.jqueue.pending_count()}


def _cluster_info(ctx, args: dict) -> dict:
    from corral.cmdlib.cluster import cluster_info
    return cluster_info(ctx.cfg)


def _config_values(ctx, args: dict) -> list:
    return query.config_values(ctx, args["fields"])


def _query(ctx, args: dict) -> dict:
    return query.query(ctx, args["what"], args["fields"], args.get("names") or [],
                       args.get("qfilter"))


def _query_dicts(ctx, args: dict) -> serializer.RawJSON:
    """Query rows as ``[{field: value}]`` JSON text, passed through by corral-rapi."""
    return query.query_dicts_json(ctx, args["what"], args["fields"], args.get("names") or [])


def _query_fields(ctx, args: dict) -> dict:
    return query.query_fields(args["what"], args.get("fields"))


def _set_watcher_pause(ctx, args: dict) -> Any:
    return ctx.set_watcher_pause(args.get("until"))


def _query_node_drbd(ctx, args: dict) -> list:
    from corral.cmdlib.node_drbd import node_drbd_rows
    return node_drbd_rows(ctx.cfg, args["node"])


METHODS: dict[str, Handler] = {
    "SubmitJob": _submit_job,
    "SubmitManyJobs": _submit_many_jobs,
    "QueryJobs": _query_jobs,
    "CancelJob": _cancel_job,
    "ChangeJobPriority": _change_priority,
    "ArchiveJob": _archive_job,
    "AutoArchiveJobs": _auto_archive,
    "SetDrainFlag": _set_drain,
    "QueryQueueInfo": _queue_info,
    "QueryClusterInfo": _cluster_info,
    "QueryConfigValues": _config_values,
    "Query": _query,
    "QueryDicts": _query_dicts,
    "QueryFields": _query_fields,
    "SetWatcherPause": _set_watcher_pause,
    "QueryNodeDrbd": _query_node_drbd,
}


def _reply(success: bool, payload: Any, status: int = 200) -> Response:
    key = "result" if success else "error"
    if isinstance(payload, serializer.RawJSON):  # already JSON: embed, never re-encode
        return Response('{"success":true,"result":%s}' % payload.text, status_code=status,
                        media_type="application/json")
    return Response(serializer.dumps({"success": success, key: payload}), status_code=status,
                    media_type="application/json")


# Submissions wait for the disk without a thread: the queue's writer hands the
# results back to the event loop once the jobs are durable.
_ASYNC_SUBMIT = ("SubmitJob", "SubmitManyJobs")


async def _submit_async(ctx, method: str, args: dict) -> Any:
    """SubmitJob / SubmitManyJobs; the answer comes once the jobs are durable."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future = loop.create_future()

    def deliver(results: list) -> None:
        if not done.done():
            done.set_result(results)

    jobs = [args["ops"]] if method == "SubmitJob" else args["jobs"]
    ctx.jqueue.submit_many_jobs_async(jobs, lambda r: loop.call_soon_threadsafe(deliver, r))
    results = await done
    if method == "SubmitManyJobs":
        return results
    ok, value = results[0]
    if not ok:
        raise errors.decode_exception(value) if isinstance(value, list) \
            else errors.OpPrereqError(value, errors.ECODE_INVAL)
    return value


async def _wait_for_job_change(ctx, args: dict) -> Any:
    """Return as soon as the job's selected fields or log differ from what the client saw."""
    job_id = _job_id(args["job_id"])
    fields = args["fields"]
    prev_info = args.get("prev_job_info")
    prev_serial = args.get("prev_log_serial")
    timeout = min(float(args.get("timeout", constants.WAIT_FOR_CHANGE_TIMEOUT)),
                  constants.WAIT_FOR_CHANGE_TIMEOUT)
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()
    token = ctx.jqueue.add_listener(job_id, lambda: loop.call_soon_threadsafe(changed.set))
    try:
        deadline = loop.time() + timeout
        while True:
            changed.clear()
            result = ctx.jqueue.job_change(job_id, fields, prev_info, prev_serial)
            if result is not None:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except asyncio.TimeoutError:
                return None
    finally:
        ctx.jqueue.remove_listener(job_id, token)


def build_app(ctx: master_context.MasterContext) -> Callable[..., Any]:
    """The ASGI application: ``POST /<Method>``.

    A bare ASGI callable around Starlette's Request/Response rather than its
    router and middleware stack: every job costs several requests here, and
    those layers cost more CPU than the dispatch itself.
    """
    async def dispatch(request: Request) -> Response:
        method = request.path_params["method"]
        try:
            body = await request.body()
            args = serializer.loads(body) if body else {}
            if not isinstance(args, dict):
                raise errors.ProtocolError("arguments must be a JSON object")
            if method == "WaitForJobChange":
                result = await _wait_for_job_change(ctx, args)
            elif method in _ASYNC_SUBMIT:
                result = await _submit_async(ctx, method, args)
            else:
                handler = METHODS.get(method)
                if handler is None:
                    raise errors.ProtocolError("Unknown method '%s'" % method)
                result = await asyncio.to_thread(handler, ctx, args)
            return _reply(True, result)
        except (serializer.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            return _reply(False, errors.encode_exception(
                errors.ProtocolError("Invalid request for %s: %s" % (method, err))))
        except errors.GenericError as err:
            return _reply(False, errors.encode_exception(err))
        except Exception as err:  # never let a bug kill the connection handler silently
            logging.exception("Internal error in %s", method)
            return _reply(False, errors.encode_exception(
                errors.ProgrammerError("Internal error in %s: %s" % (method, err))))

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] != "POST":
            response = _reply(False, errors.encode_exception(
                errors.ProtocolError("Master daemon methods are called with POST")), 405)
        else:
            scope["path_params"] = {"method": scope["path"].lstrip("/")}
            response = await dispatch(Request(scope, receive))
        await response(scope, receive, send)

    return app


def build_parser():
    from corral.server import daemon
    return daemon.make_parser("masterd", "Corral master daemon: owns the cluster"
                              " configuration and the job queue and runs jobs.", network=False)


def main(argv: list[str] | None = None) -> int:
    from corral.server import daemon
    return daemon.run_daemon("masterd", build_parser(), _prepare, _serve, argv)


def _prepare(dctx) -> tuple[master_context.MasterContext, socket.socket]:
    ctx = master_context.MasterContext.load()
    ctx.request_shutdown = dctx.request_stop
    return ctx, dctx.listen_unix(pathutils.master_socket())


def _serve(dctx, state: tuple[master_context.MasterContext, socket.socket]) -> None:
    from corral.server import daemon
    ctx, sock = state
    try:
        daemon.serve_asgi(dctx, build_app(ctx), [sock])
    finally:
        ctx.shutdown()
