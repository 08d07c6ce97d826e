"""Corral's built-in instance allocator (iallocator name ``builtin``).

It speaks the iallocator protocol (spec/iallocator.md) like any external
plugin: ``solve`` takes the very input dict an external plugin would read
from its input file and returns the output object it would print.  The
master runs it in-process (no RPC, no temp file); ``python -m
corral.allocator <input-file>`` runs it as a plugin, so hbal-style tools
and tests can use it like hail.

Placement is filters then scores (STYLE.md §6): filters.py rejects nodes
that are offline, drained, not vm_capable, in an unallocable group, or
short of memory, disk or CPUs (each with its reason); scores.py ranks the
rest by the memory, disk and CPU load they would have, preferring
placements that keep N+1 redundancy.  Pure: no I/O besides ``main``.
"""

import sys
from typing import Any

from corral import serializer

NAME = "builtin"


def solve(data: Any) -> dict[str, Any]:
    """The allocator's output object for one input object (never raises on bad input)."""
    from corral.allocator.model import ClusterModel
    from corral.allocator.requests import HANDLERS
    try:
        request = data["request"]
        rtype = request["type"]
        model = ClusterModel.from_input(data)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        return {"success": False, "info": "Invalid iallocator input: %s" % (err,), "result": []}
    handler = HANDLERS.get(rtype)
    if handler is None:
        return {"success": False, "info": "Unknown request type '%s'" % (rtype,), "result": []}
    try:
        success, info, result = handler(model, request)
    except (KeyError, TypeError, ValueError) as err:
        return {"success": False, "info": "Invalid %s request: %s" % (rtype, err), "result": []}
    return {"success": success, "info": info, "result": result}


def main(argv: list[str] | None = None) -> int:
    """Plugin entry point: ``<prog> <input-file> [--options ignored]``; prints the output."""
    args = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("--")]
    if len(args) != 1:
        sys.stderr.write("usage: python -m corral.allocator <input-file>\n")
        return 1
    try:
        with open(args[0]) as fh:
            data = serializer.loads(fh.read())
    except (OSError, ValueError) as err:
        sys.stderr.write("cannot read %s: %s\n" % (args[0], err))
        return 1
    sys.stdout.write(serializer.dumps(solve(data)) + "\n")
    return 0
