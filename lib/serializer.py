"""JSON encoding used on disk and on the wire (simplejson: fast, exact floats)."""

from typing import Any

import simplejson


def dumps(data: Any, pretty: bool = False) -> str:
    if pretty:
        return simplejson.dumps(data, indent=2, sort_keys=True) + "\n"
    return simplejson.dumps(data, separators=(",", ":"))


def loads(text: str | bytes) -> Any:
    return simplejson.loads(text)


JSONDecodeError = simplejson.JSONDecodeError
