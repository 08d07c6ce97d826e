"""Instance resources: ``/2/instances`` and everything below ``/2/instances/[name]``.

Each mutation is one opcode (reinstall: two or three) built from the URL,
the query string and the body, validated against the opcode table
(params.fill_opcode) and submitted as a job whose id is the answer.
"""

from typing import Any

from corral import constants
from corral.rapi import base, params
from corral.rapi.base import NAME, NONE, READ, WRITE, Req, route
from corral.rapi.status import HttpError, bad_request

# spec/rapi.md §5 I_FIELDS, in Ganeti's order.
I_FIELDS = [
    "name", "admin_state", "os", "pnode", "snodes", "disk_template",
    "nic.ips", "nic.macs", "nic.modes", "nic.uuids", "nic.names", "nic.links",
    "nic.networks", "nic.networks.names", "nic.bridges", "network_port",
    "disk.sizes", "disk.spindles", "disk_usage", "disk.uuids", "disk.names",
    "beparams", "hvparams", "oper_state", "oper_ram", "oper_vcpus", "status",
    "custom_hvparams", "custom_beparams", "custom_nicparams", "custom_osparams",
    "ctime", "mtime", "uuid", "serial_no", "tags",
]
P = r"/2/instances/(?P<name>%s)" % NAME
CREATE_ALIASES = {"name": "instance_name", "os": "os_type"}
MODIFY_ALIASES = {"custom_beparams": "beparams", "custom_hvparams": "hvparams"}


def _static(req: Req, **extra: Any) -> dict:
    out = {"instance_name": req.arg("name")}
    out.update(extra)
    return out


async def get_list(req: Req) -> list:
    # ``beparams.memory`` (= maxmem, for old clients) comes from the query itself.
    return await base.list_or_bulk(req, "instance", I_FIELDS, "id", "/2/instances/%s")


async def get_one(req: Req) -> dict:
    return await base.query_one(req, "instance", I_FIELDS, req.arg("name"), "Instance")


def _usb_devices(body: dict) -> None:
    """RAPI accepts space-separated ``usb_devices``; the hvparam is comma-separated."""
    hvp = body.get("hvparams")
    if isinstance(hvp, dict) and isinstance(hvp.get("usb_devices"), str):
        hvp["usb_devices"] = ",".join(hvp["usb_devices"].split())


def create_opcode(req: Req, body: Any, with_version: bool = True) -> dict:
    """OP_INSTANCE_CREATE from a version-1 creation body (spec/rapi.md §8)."""
    body = params.body_dict(body)
    if with_version:
        version = body.pop("__version__", 0)
        if version in (0, None):
            raise bad_request("The 'version 0' instance creation request is no longer"
                              " supported; send '__version__': 1")
        if version != 1:
            raise bad_request("Unsupported request data version %r" % (version,))
    params.apply_aliases(body, CREATE_ALIASES)
    _usb_devices(body)
    op = req.opcode("OP_INSTANCE_CREATE", body)
    params.check_name(op.get("instance_name"), "instance name", hostname=True)
    if not any(isinstance(d, dict) and d.get("adopt") for d in op.get("disks") or []):
        params.check_disk_sizes(op.get("disks"))
    params.check_storage_dir(op.get("file_storage_dir"))
    return op


async def post_create(req: Req) -> int:
    return await req.submit(create_opcode(req, req.body))


async def post_multi_alloc(req: Req) -> int:
    body = params.body_dict(req.body)
    if "instances" not in body:
        raise bad_request("Invalid body parameters: 'instances' is required")
    if not isinstance(body["instances"], list):
        raise bad_request("Invalid body parameters: 'instances' must be a list")
    body["instances"] = [create_opcode(req, inst, with_version=False)
                         for inst in body["instances"]]
    return await req.submit_op("OP_INSTANCE_MULTI_ALLOC", body)


async def delete_one(req: Req) -> int:
    return await req.submit_op("OP_INSTANCE_REMOVE", req.body,
                               _static(req, ignore_failures=False))


async def get_info(req: Req) -> int:
    static = {"instances": [req.arg("name")], "static": req.query.get_bool("static")}
    return await req.submit(req.opcode("OP_INSTANCE_QUERY_DATA", None, static))


async def post_reboot(req: Req) -> int:
    static = _static(req, reboot_type=req.query.get_str("type") or "hard",
                     ignore_secondaries=req.query.get_bool("ignore_secondaries"))
    return await req.submit_op("OP_INSTANCE_REBOOT", req.body, static)


async def put_shutdown(req: Req) -> int:
    static = _static(req, no_remember=req.query.get_bool("no_remember"))
    return await req.submit_op("OP_INSTANCE_SHUTDOWN", req.body, static)


async def put_startup(req: Req) -> int:
    static = _static(req, force=req.query.get_bool("force"),
                     no_remember=req.query.get_bool("no_remember"))
    return await req.submit(req.opcode("OP_INSTANCE_STARTUP", None, static))


async def post_reinstall(req: Req) -> int:
    """Shutdown, reinstall and (unless told not to) startup, in one job (spec §9.3)."""
    body = params.body_dict(req.body)
    if body:
        if "os" in req.query or "nostartup" in req.query:
            raise bad_request("Can't combine query and body parameters")
        unknown = sorted(set(body) - {"os", "start", "osparams"})
        if unknown:
            raise bad_request("Invalid body parameters: unknown parameters %s"
                              % ", ".join("'%s'" % k for k in unknown))
        os_name, start, osparams = body.get("os"), body.get("start", True), body.get("osparams")
    else:
        os_name = req.query.get_str("os")
        start, osparams = not req.query.get_bool("nostartup"), None
    if not isinstance(start, bool):
        raise bad_request("Invalid body parameters: 'start' must be a boolean")
    name = req.arg("name")
    ops = [req.opcode("OP_INSTANCE_SHUTDOWN", None, {"instance_name": name}),
           req.opcode("OP_INSTANCE_REINSTALL", None, {"instance_name": name,
                                                      "os_type": os_name,
                                                      "osparams": osparams})]
    if start:
        ops.append(req.opcode("OP_INSTANCE_STARTUP", None, {"instance_name": name,
                                                            "force": False}))
    return await req.submit(*ops)


def _disk_list(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return [int(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise bad_request("Invalid body parameters: 'disks' must be a list of"
                              " integers") from None
    return value


async def post_replace_disks(req: Req) -> int:
    body = params.body_dict(req.body)
    if body:
        if "disks" in body:
            body["disks"] = _disk_list(body["disks"])
        return await req.submit_op("OP_INSTANCE_REPLACE_DISKS", body, _static(req))
    for key in ("mode", "disks", "remote_node", "iallocator"):
        value = req.query.get_str(key)
        if value is not None:
            body[key] = _disk_list(value) if key == "disks" else value
    return await req.submit_op("OP_INSTANCE_REPLACE_DISKS", body, _static(req))


async def put_activate_disks(req: Req) -> int:
    static = _static(req, ignore_size=req.query.get_bool("ignore_size"))
    return await req.submit(req.opcode("OP_INSTANCE_ACTIVATE_DISKS", None, static))


async def put_deactivate_disks(req: Req) -> int:
    static = _static(req, force=req.query.get_bool("force"))
    return await req.submit(req.opcode("OP_INSTANCE_DEACTIVATE_DISKS", None, static))


async def post_recreate_disks(req: Req) -> int:
    return await req.submit_op("OP_INSTANCE_RECREATE_DISKS", req.body, _static(req))


async def post_grow_disk(req: Req) -> int:
    static = _static(req, disk=int(req.arg("disk")))
    return await req.submit_op("OP_INSTANCE_GROW_DISK", req.body, static)


async def put_prepare_export(req: Req) -> int:
    static = _static(req, mode=req.query.get_str("mode"))
    return await req.submit(req.opcode("OP_BACKUP_PREPARE", None, static))


async def put_export(req: Req) -> int:
    body = params.body_dict(req.body)
    params.apply_aliases(body, {"destination": "target_node"})
    body.setdefault("mode", "local")
    return await req.submit_op("OP_BACKUP_EXPORT", body, _static(req))


async def delete_export(req: Req) -> int:
    return await req.submit_op("OP_BACKUP_REMOVE", req.body, _static(req))


async def put_migrate(req: Req) -> int:
    return await req.submit_op("OP_INSTANCE_MIGRATE", req.body, _static(req))


async def put_failover(req: Req) -> int:
    return await req.submit_op("OP_INSTANCE_FAILOVER", req.body, _static(req))


async def put_rename(req: Req) -> int:
    op = req.opcode("OP_INSTANCE_RENAME", req.body, _static(req))
    params.check_name(op.get("new_name"), "new instance name", hostname=True)
    return await req.submit(op)


async def put_modify(req: Req) -> int:
    body = params.body_dict(req.body)
    params.apply_aliases(body, MODIFY_ALIASES)
    _usb_devices(body)
    op = req.opcode("OP_INSTANCE_SET_PARAMS", body, _static(req))
    params.check_storage_dir(op.get("file_storage_dir"))
    for mod in op.get("disks") or []:
        if isinstance(mod, list) and mod and isinstance(mod[-1], dict):
            params.check_disk_sizes([mod[-1]])
    return await req.submit(op)


async def get_console(req: Req) -> dict:
    name = req.arg("name")
    state = await base.query_one(req, "instance", ["oper_state"], name, "Instance")
    if not state["oper_state"]:
        raise HttpError(503, "Instance console unavailable: instance %s is not running" % name)
    op = req.opcode("OP_INSTANCE_CONSOLE", None, {"instance_name": name}, dry_run=False)
    return await base.run_sync(req, op)


ROUTES = [
    route(r"/2/instances", "instances", GET=(get_list, NONE), POST=(post_create, WRITE)),
    route(r"/2/instances-multi-alloc", "instances_multi_alloc",
          POST=(post_multi_alloc, WRITE)),
    route(P, "instances_name", GET=(get_one, NONE), DELETE=(delete_one, WRITE)),
    route(P + "/info", "instances_name_info", GET=(get_info, NONE)),
    route(P + "/reboot", "instances_name_reboot", POST=(post_reboot, WRITE)),
    route(P + "/shutdown", "instances_name_shutdown", PUT=(put_shutdown, WRITE)),
    route(P + "/startup", "instances_name_startup", PUT=(put_startup, WRITE)),
    route(P + "/reinstall", "instances_name_reinstall", POST=(post_reinstall, WRITE)),
    route(P + "/replace-disks", "instances_name_replace_disks",
          POST=(post_replace_disks, WRITE)),
    route(P + "/activate-disks", "instances_name_activate_disks",
          PUT=(put_activate_disks, WRITE)),
    route(P + "/deactivate-disks", "instances_name_deactivate_disks",
          PUT=(put_deactivate_disks, WRITE)),
    route(P + "/recreate-disks", "instances_name_recreate_disks",
          POST=(post_recreate_disks, WRITE)),
    route(P + r"/disk/(?P<disk>\d+)/grow", "instances_name_disk_grow",
          POST=(post_grow_disk, WRITE)),
    route(P + "/prepare-export", "instances_name_prepare_export",
          PUT=(put_prepare_export, WRITE)),
    route(P + "/export", "instances_name_export", PUT=(put_export, WRITE),
          DELETE=(delete_export, WRITE)),
    route(P + "/migrate", "instances_name_migrate", PUT=(put_migrate, WRITE)),
    route(P + "/failover", "instances_name_failover", PUT=(put_failover, WRITE)),
    route(P + "/rename", "instances_name_rename", PUT=(put_rename, WRITE)),
    route(P + "/modify", "instances_name_modify", PUT=(put_modify, WRITE)),
    route(P + "/console", "instances_name_console", GET=(get_console, READ)),
    base.tag_routes(P, "instances_name_tags", constants.TAG_INSTANCE, "instance", "Instance"),
]
