"""Restarting Corral daemons on the node.

The node daemon cannot stop itself from inside a request and still answer,
so it registers a hook (``set_self_restart_hook``) that makes it stop
accepting connections, finish the calls in flight (this one included) and
re-execute itself keeping its listening socket.  Other daemons are
restarted through corral.tools.daemon_util (stop, wait, start).
"""

from typing import Callable

from corral import errors

_self_name: str | None = None
_self_restart_hook: Callable[[], None] | None = None


def set_self_restart_hook(name: str, hook: Callable[[], None] | None) -> None:
    """Register how the running daemon ``name`` restarts itself (None to unregister)."""
    global _self_name, _self_restart_hook
    _self_name = name
    _self_restart_hook = hook


def restart_daemon(name: str) -> None:
    """Restart daemon ``name`` (noded, masterd, rapi) on this node.

    For the daemon serving this call the restart happens after the reply;
    for others this returns once the new process is ready.
    """
    from corral.tools import daemon_util
    if name not in daemon_util.DAEMONS:
        raise errors.ParameterError("Unknown daemon '%s' (known: %s)"
                                    % (name, ", ".join(daemon_util.DAEMONS)))
    if name == _self_name and _self_restart_hook is not None:
        _self_restart_hook()
        return
    daemon_util.restart(name)
