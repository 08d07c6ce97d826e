"""Node-side helpers shared by the hypervisor drivers (drivers never import each other)."""

import ipaddress
import threading
from typing import Any

from corral import errors
from corral.utils import process

_locks: dict[tuple[str, str], threading.RLock] = {}
_locks_guard = threading.Lock()


def instance_lock(hv_name: str, name: str) -> threading.RLock:
    """The lock serializing this process's operations on one instance of one driver."""
    with _locks_guard:
        return _locks.setdefault((hv_name, name), threading.RLock())


def check_name(name: str) -> str:
    """``name`` if safe as a file or directory name; HypervisorError otherwise."""
    if not isinstance(name, str) or not name or "/" in name or name.startswith(".") \
            or name == "log" or "\x00" in name:
        raise errors.HypervisorError("Invalid instance name %r" % (name,))
    return name


def vnc_bind_ip(params: dict[str, Any]) -> str | None:
    """The address to bind VNC to: vnc_bind_address as an IP, or an interface's first IPv4."""
    bind = params.get("vnc_bind_address") or ""
    if not bind:
        return None
    try:
        ipaddress.ip_address(bind)
        return bind
    except ValueError:
        pass
    res = process.run_cmd(["ip", "-4", "-o", "addr", "show", "dev", bind])
    for line in res.stdout.splitlines():
        fields = line.split()
        if "inet" in fields:
            return fields[fields.index("inet") + 1].split("/")[0]
    raise errors.HypervisorError("vnc_bind_address: interface %s has no IPv4 address" % bind)
