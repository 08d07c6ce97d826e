"""Node resources: ``/2/nodes`` and everything below ``/2/nodes/[name]``."""

from corral import constants
from corral.rapi import base, params
from corral.rapi.base import NAME, NONE, WRITE, Req, route
from corral.rapi.status import bad_request

# spec/rapi.md §5 N_FIELDS, in Ganeti's order.
N_FIELDS = [
    "name", "offline", "master_candidate", "drained", "dtotal", "dfree", "sptotal",
    "spfree", "mtotal", "mnode", "mfree", "pinst_cnt", "sinst_cnt", "ctotal", "cnos",
    "cnodes", "csockets", "pip", "sip", "role", "pinst_list", "sinst_list",
    "master_capable", "vm_capable", "ndparams", "group.uuid",
    "ctime", "mtime", "uuid", "serial_no", "tags",
]
P = r"/2/nodes/(?P<name>%s)" % NAME

ROLE_MASTER = "master"
ROLE_CANDIDATE = "master-candidate"
ROLE_REGULAR = "regular"
ROLE_DRAINED = "drained"
ROLE_OFFLINE = "offline"
ROLE_NAMES = {constants.NR_MASTER: ROLE_MASTER, constants.NR_MCANDIDATE: ROLE_CANDIDATE,
              constants.NR_REGULAR: ROLE_REGULAR, constants.NR_DRAINED: ROLE_DRAINED,
              constants.NR_OFFLINE: ROLE_OFFLINE}
STORAGE_TYPES = ("file", "lvm-pv", "lvm-vg")


def _static(req: Req, **extra) -> dict:
    out = {"node_name": req.arg("name")}
    out.update(extra)
    return out


async def get_list(req: Req) -> list:
    return await base.list_or_bulk(req, "node", N_FIELDS, "id", "/2/nodes/%s")


async def get_one(req: Req) -> dict:
    item = await base.query_one(req, "node", N_FIELDS, req.arg("name"), "Node")
    item["secondary_ip"] = item.get("sip")
    return item


async def get_role(req: Req) -> str:
    item = await base.query_one(req, "node", ["role"], req.arg("name"), "Node")
    return ROLE_NAMES.get(item["role"], item["role"])


async def put_role(req: Req) -> int:
    """OpNodeSetParams for a role string (spec/rapi.md §4 role mapping)."""
    role = req.body
    if not isinstance(role, str) or role not in ROLE_NAMES.values():
        raise bad_request("Invalid body parameters: role must be one of %s"
                          % ", ".join(sorted(ROLE_NAMES.values())))
    if role == ROLE_MASTER:
        raise bad_request("Can't set 'master' role, use cluster master-failover")
    flags: dict = {"master_candidate": None, "offline": None, "drained": None}
    if role == ROLE_REGULAR:
        flags = {"master_candidate": False, "offline": False, "drained": False}
    elif role == ROLE_CANDIDATE:
        flags["master_candidate"] = True
    elif role == ROLE_DRAINED:
        flags["drained"] = True
    else:
        flags["offline"] = True
    static = _static(req, force=req.query.get_bool("force"),
                     auto_promote=req.query.get_bool("auto-promote"), **flags)
    return await req.submit(req.opcode("OP_NODE_SET_PARAMS", None, static))


async def post_modify(req: Req) -> int:
    return await req.submit_op("OP_NODE_SET_PARAMS", req.body, _static(req))


async def post_evacuate(req: Req) -> int:
    body = params.body_dict(req.body)
    if body.get("iallocator") and body.get("remote_node"):
        raise bad_request("Invalid body parameters: give only one of 'iallocator' and"
                          " 'remote_node'")
    return await req.submit_op("OP_NODE_EVACUATE", body, _static(req))


async def post_migrate(req: Req) -> int:
    """Body form, or the legacy query form ``?live=0|1`` / ``?mode=`` (not both)."""
    body = params.body_dict(req.body)
    if "live" in req.query or "mode" in req.query:
        if body:
            raise bad_request("Can't combine query and body parameters")
        if "live" in req.query and "mode" in req.query:
            raise bad_request("Only one of 'live' and 'mode' should be passed")
        if "live" in req.query:
            body["mode"] = "live" if req.query.get_bool("live") else "non-live"
        else:
            body["mode"] = req.query.get_str("mode")
    elif "live" in body:
        if "mode" in body:
            raise bad_request("Invalid body parameters: only one of 'live' and 'mode'")
        live = body.pop("live")
        if not isinstance(live, bool):
            raise bad_request("Invalid body parameters: 'live' must be a boolean")
        body["mode"] = "live" if live else "non-live"
    return await req.submit_op("OP_NODE_MIGRATE", body, _static(req))


async def post_powercycle(req: Req) -> int:
    static = _static(req, force=req.query.get_bool("force"))
    return await req.submit(req.opcode("OP_NODE_POWERCYCLE", None, static))


def _storage_type(req: Req, allowed: tuple[str, ...] = STORAGE_TYPES) -> str:
    stype = req.query.get_str("storage_type")
    if stype is None:
        raise bad_request("Missing the required 'storage_type' parameter")
    if stype not in allowed:
        raise bad_request("Storage type '%s' is not supported here (use one of %s)"
                          % (stype, ", ".join(allowed)))
    return stype


async def get_storage(req: Req) -> int:
    stype = _storage_type(req)
    fields = req.query.get_str("output_fields")
    if not fields:
        raise bad_request("Missing the required 'output_fields' parameter")
    static = {"nodes": [req.arg("name")], "storage_type": stype,
              "output_fields": fields.split(",")}
    return await req.submit(req.opcode("OP_NODE_QUERY_STORAGE", None, static))


async def put_storage_modify(req: Req) -> int:
    stype = _storage_type(req)
    name = req.query.get_str("name")
    if not name:
        raise bad_request("Missing the required 'name' parameter")
    changes = {}
    allocatable = req.query.get_opt_bool("allocatable")
    if allocatable is not None:
        changes["allocatable"] = allocatable
    static = _static(req, storage_type=stype, name=name, changes=changes)
    return await req.submit(req.opcode("OP_NODE_MODIFY_STORAGE", None, static))


async def put_storage_repair(req: Req) -> int:
    stype = _storage_type(req, ("lvm-vg",))
    name = req.query.get_str("name")
    if not name:
        raise bad_request("Missing the required 'name' parameter")
    static = _static(req, storage_type=stype, name=name)
    return await req.submit(req.opcode("OP_REPAIR_NODE_STORAGE", None, static))


ROUTES = [
    route(r"/2/nodes", "nodes", GET=(get_list, NONE)),
    route(P, "nodes_name", GET=(get_one, NONE)),
    route(P + "/role", "nodes_name_role", GET=(get_role, NONE), PUT=(put_role, WRITE)),
    route(P + "/modify", "nodes_name_modify", POST=(post_modify, WRITE)),
    route(P + "/evacuate", "nodes_name_evacuate", POST=(post_evacuate, WRITE)),
    route(P + "/migrate", "nodes_name_migrate", POST=(post_migrate, WRITE)),
    route(P + "/powercycle", "nodes_name_powercycle", POST=(post_powercycle, WRITE)),
    route(P + "/storage", "nodes_name_storage", GET=(get_storage, WRITE)),
    route(P + "/storage/modify", "nodes_name_storage_modify",
          PUT=(put_storage_modify, WRITE)),
    route(P + "/storage/repair", "nodes_name_storage_repair",
          PUT=(put_storage_repair, WRITE)),
    base.tag_routes(P, "nodes_name_tags", constants.TAG_NODE, "node", "Node"),
]
