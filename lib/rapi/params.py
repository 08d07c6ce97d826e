"""Query-string parsing and request-body validation against the opcode tables.

Bodies are checked against ``opcodes.OP_MAPPING[...].all_params()`` (the one
parameter table the CLI and the master also use) before anything is sent to
masterd, so a bad body is a 400 naming every offending key and never a job.
"""

import re
from typing import Any, Iterable

from corral import opcodes
from corral.rapi.status import bad_request

# Names accepted where the body names a new object (instance, group): what
# can later be addressed in a URL (spec/rapi.md §3: ``[\w._-]+``), never a
# path component such as ``..``.
NAME_RE = re.compile(r"^(?!\.)[A-Za-z0-9_.-]{1,255}$")
_HOST_CHECK = opcodes.ht.THostname


class QueryArgs:
    """The query string of a request (repeated keys kept, as for ``tag``)."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._items: dict[str, list[str]] = {}
        for key, value in items:
            self._items.setdefault(key, []).append(value)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def keys(self) -> list[str]:
        return list(self._items)

    def get_list(self, name: str) -> list[str]:
        return list(self._items.get(name, []))

    def get_str(self, name: str, default: str | None = None) -> str | None:
        values = self._items.get(name)
        return values[0] if values else default

    def get_int(self, name: str, default: int | None = None) -> int | None:
        """Integer value of ``name``; 400 if present but not an integer."""
        value = self.get_str(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise bad_request("Invalid value for parameter '%s': %r is not an integer"
                              % (name, value)) from None

    def get_bool(self, name: str, default: bool = False) -> bool:
        """Flag-like parameter ``0``/``1`` (any integer; non-zero is true)."""
        value = self.get_int(name)
        return default if value is None else bool(value)

    def get_opt_bool(self, name: str) -> bool | None:
        value = self.get_int(name)
        return None if value is None else bool(value)


def check_no_body(body: Any, what: str) -> None:
    if body not in (None, {}, []):
        raise bad_request("Can't combine query and body parameters (%s)" % what)


def body_dict(body: Any) -> dict:
    """The body as a dict ({} if absent); 400 unless it is a JSON object."""
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise bad_request("Invalid body parameters: expected a JSON object, got %s"
                          % _json_type(body))
    return dict(body)


def _json_type(value: Any) -> str:
    return {str: "a string", list: "a list", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def apply_aliases(body: dict, aliases: dict[str, str]) -> dict:
    """Rename legacy keys (old -> new); 400 if both spellings are present."""
    for old, new in aliases.items():
        if old in body:
            if new in body:
                raise bad_request("Invalid body parameters: '%s' and its alias '%s' both given"
                                  % (new, old))
            body[new] = body.pop(old)
    return body


def fill_opcode(op_id: str, body: Any, static: dict[str, Any] | None = None,
                aliases: dict[str, str] | None = None) -> dict:
    """Serialized opcode ``op_id`` from the request body plus URL/query values.

    400 when the body is not an object, sets a parameter fixed by the URL
    (``Can't overwrite static parameters``), names a parameter the opcode
    does not have, gives a wrongly typed value, or misses a required one.
    Defaults are left to the master (they are in the same table).
    """
    cls = opcodes.OP_MAPPING[op_id]
    data = apply_aliases(body_dict(body), aliases or {})
    static = static or {}
    overlap = sorted(set(static) & set(data))
    if overlap:
        raise bad_request("Can't overwrite static parameters (%s)" % ", ".join(overlap))
    data.update(static)
    table = {p.name: p for p in cls.all_params()}
    unknown = sorted(k for k in data if k not in table)
    problems = []
    if unknown:
        problems.append("unknown parameter%s %s" % ("s" if len(unknown) > 1 else "",
                                                    ", ".join("'%s'" % k for k in unknown)))
    for name, param in table.items():
        if name not in data:
            if param.default is opcodes.REQUIRED:
                problems.append("'%s' is required (%s)" % (name, param.check.desc))
            continue
        value = data[name]
        if value is None and param.default is None:
            continue
        if not param.check(value):
            problems.append("'%s' must be %s, got %s" % (name, param.check.desc,
                                                         _short(value)))
    if problems:
        raise bad_request("Invalid body parameters: %s (for %s)" % ("; ".join(problems), op_id))
    data["OP_ID"] = op_id
    return data


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_name(value: Any, what: str, hostname: bool = False) -> None:
    """400 unless ``value`` is a valid object name (a host name for instances/nodes)."""
    ok = isinstance(value, str) and NAME_RE.match(value) is not None
    if ok and hostname:
        ok = _HOST_CHECK(value)
    if not ok:
        raise bad_request("Invalid body parameters: %s %s is not a valid name" % (what,
                                                                                  _short(value)))


def check_disk_sizes(disks: Any, key: str = "size") -> None:
    """400 for a disk definition whose size is not a positive integer (MiB)."""
    if not isinstance(disks, list):
        return
    for idx, disk in enumerate(disks):
        if not isinstance(disk, dict) or key not in disk:
            continue
        size = disk[key]
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise bad_request("Invalid body parameters: disk %d: '%s' must be a positive"
                              " integer (MiB), got %s" % (idx, key, _short(size)))


def check_storage_dir(value: Any) -> None:
    """400 for a file storage directory that climbs out of its base (``..``)."""
    if isinstance(value, str) and ".." in value.split("/"):
        raise bad_request("Invalid body parameters: file_storage_dir %s must not contain '..'"
                          % _short(value))
