"""Cluster-wide resources: ``/``, ``/version``, ``/2/info``, features, OS list, tags,
redistribute-config, cluster modify, and the generic ``/2/query`` resources."""

from typing import Any

from corral import constants, errors
from corral.rapi import base
from corral.rapi.base import NONE, READ, WRITE, Req, route
from corral.rapi.status import HttpError, bad_request, from_corral_error

FEATURES = ["instance-create-reqv1", "instance-reinstall-reqv1", "node-migrate-reqv1",
            "node-evac-res1"]
OS_BULK_FIELDS = ["name", "valid", "variants", "parameters", "api_versions", "blacklisted",
                  "hidden", "trusted"]
QUERY_RESOURCES = ("lock", "export", "job", "network", "node", "instance", "filter", "group")


async def get_root(req: Req) -> None:
    return None


async def get_version(req: Req) -> int:
    return constants.RAPI_VERSION


async def get_info(req: Req) -> base.RawJSON:
    return base.RawJSON(await req.master.call_raw("QueryClusterInfo"))


async def get_features(req: Req) -> list[str]:
    return list(FEATURES)


def _os_parameters(value: Any) -> list:
    out = []
    for item in value or []:
        if isinstance(item, (list, tuple)) and len(item) == 2:
            out.append({"name": item[0], "description": item[1]})
        else:
            out.append(item)
    return out


async def get_os(req: Req) -> list:
    """OpOsDiagnose run synchronously: names with variants, or full objects (bulk)."""
    if req.query.get_bool("bulk"):
        op = req.opcode("OP_OS_DIAGNOSE", None, {"output_fields": OS_BULK_FIELDS, "names": []},
                        dry_run=False)
        rows = await base.run_sync(req, op) or []
        out = []
        for row in rows:
            item = dict(zip(OS_BULK_FIELDS, row))
            item["parameters"] = _os_parameters(item.get("parameters"))
            out.append(item)
        return out
    op = req.opcode("OP_OS_DIAGNOSE", None, {"output_fields": ["name", "variants"],
                                             "names": []}, dry_run=False)
    names = []
    for name, variants in await base.run_sync(req, op) or []:
        if variants:
            names.extend("%s+%s" % (name, v) for v in variants)
        else:
            names.append(name)
    return names


async def put_redist(req: Req) -> int:
    return await req.submit_op("OP_CLUSTER_REDIST_CONF", req.body)


async def put_modify(req: Req) -> int:
    if isinstance(req.body, dict) and "compression_tools" in req.body:
        raise HttpError(403, "Compression tools can only be set from the command line")
    return await req.submit_op("OP_CLUSTER_SET_PARAMS", req.body)


# ---- /2/query ---------------------------------------------------------------------------

def _query_resource(req: Req) -> str:
    what = req.arg("resource")
    if what not in QUERY_RESOURCES:
        raise HttpError(404, "Resource '%s' cannot be queried" % what)
    return what


async def _run_query(req: Req, what: str, fields: list, qfilter: Any) -> dict:
    try:
        return await req.master.call("Query", what=what, fields=fields, names=[],
                                     qfilter=qfilter)
    except errors.GenericError as err:
        raise from_corral_error(err, query=True) from None


async def get_query(req: Req) -> dict:
    what = _query_resource(req)
    fields = req.query.get_str("fields")
    if not fields:
        raise bad_request("Missing 'fields' query argument")
    return await _run_query(req, what, fields.split(","), None)


async def put_query(req: Req) -> dict:
    what = _query_resource(req)
    body = req.body if isinstance(req.body, dict) else {}
    fields = body.get("fields")
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise bad_request("Invalid body parameters: 'fields' must be a list of strings")
    if "qfilter" in body and "filter" in body and body["qfilter"] != body["filter"]:
        raise bad_request("Invalid body parameters: 'qfilter' and 'filter' differ")
    qfilter = body.get("qfilter", body.get("filter"))
    if qfilter is not None and not isinstance(qfilter, list):
        raise bad_request("Invalid body parameters: 'qfilter' must be a list or null")
    return await _run_query(req, what, fields, qfilter)


async def get_query_fields(req: Req) -> dict:
    what = _query_resource(req)
    fields = req.query.get_str("fields")
    try:
        return await req.master.call("QueryFields", what=what,
                                     fields=fields.split(",") if fields else None)
    except errors.GenericError as err:
        raise from_corral_error(err, query=True) from None


ROUTES = [
    route(r"/", "root", GET=(get_root, NONE)),
    route(r"/2", "2", GET=(get_root, NONE)),
    route(r"/version", "version", GET=(get_version, NONE)),
    route(r"/2/info", "info", GET=(get_info, NONE)),
    route(r"/2/features", "features", GET=(get_features, NONE)),
    route(r"/2/os", "os", GET=(get_os, NONE)),
    base.tag_routes(r"/2", "tags", constants.TAG_CLUSTER, None, "Cluster"),
    route(r"/2/redistribute-config", "redist_config", PUT=(put_redist, WRITE)),
    route(r"/2/modify", "cluster_modify", PUT=(put_modify, WRITE)),
    route(r"/2/query/(?P<resource>[\w-]+)", "query", GET=(get_query, READ),
          PUT=(put_query, READ)),
    route(r"/2/query/(?P<resource>[\w-]+)/fields", "query_fields",
          GET=(get_query_fields, NONE)),
]
