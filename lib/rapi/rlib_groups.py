"""Node group resources: ``/2/groups`` and everything below ``/2/groups/[name]``."""

from corral import constants
from corral.rapi import base, params
from corral.rapi.base import NAME, NONE, WRITE, Req, route

# spec/rapi.md §5 G_FIELDS, in Ganeti's order.
G_FIELDS = [
    "alloc_policy", "name", "node_cnt", "node_list", "ipolicy", "custom_ipolicy",
    "diskparams", "custom_diskparams", "ndparams", "custom_ndparams",
    "ctime", "mtime", "uuid", "serial_no", "tags",
]
P = r"/2/groups/(?P<name>%s)" % NAME
MODIFY_ALIASES = {"custom_ndparams": "ndparams", "custom_ipolicy": "ipolicy",
                  "custom_diskparams": "diskparams"}


def _static(req: Req, **extra) -> dict:
    out = {"group_name": req.arg("name")}
    out.update(extra)
    return out


async def get_list(req: Req) -> list:
    return await base.list_or_bulk(req, "group", G_FIELDS, "name", "/2/groups/%s")


async def get_one(req: Req) -> dict:
    return await base.query_one(req, "group", G_FIELDS, req.arg("name"), "Node group")


async def post_create(req: Req) -> int:
    body = params.apply_aliases(params.body_dict(req.body), {"name": "group_name"})
    op = req.opcode("OP_GROUP_ADD", body)
    params.check_name(op.get("group_name"), "group name")
    return await req.submit(op)


async def delete_one(req: Req) -> int:
    return await req.submit_op("OP_GROUP_REMOVE", req.body, _static(req))


async def put_modify(req: Req) -> int:
    return await req.submit_op("OP_GROUP_SET_PARAMS", req.body, _static(req),
                               MODIFY_ALIASES)


async def put_rename(req: Req) -> int:
    op = req.opcode("OP_GROUP_RENAME", req.body, _static(req))
    params.check_name(op.get("new_name"), "new group name")
    return await req.submit(op)


async def put_assign_nodes(req: Req) -> int:
    static = _static(req, force=req.query.get_bool("force"))
    return await req.submit_op("OP_GROUP_ASSIGN_NODES", req.body, static)


ROUTES = [
    route(r"/2/groups", "groups", GET=(get_list, NONE), POST=(post_create, WRITE)),
    route(P, "groups_name", GET=(get_one, NONE), DELETE=(delete_one, WRITE)),
    route(P + "/modify", "groups_name_modify", PUT=(put_modify, WRITE)),
    route(P + "/rename", "groups_name_rename", PUT=(put_rename, WRITE)),
    route(P + "/assign-nodes", "groups_name_assign_nodes", PUT=(put_assign_nodes, WRITE)),
    base.tag_routes(P, "groups_name_tags", constants.TAG_NODEGROUP, "group", "Node group"),
]
