"""Node side of the watcher: ``gnt-cluster watcher pause`` (the pause file every node's
watcher reads) and the master candidates' answer for ``maintain_node_health``."""

import time

from corral import errors, pathutils, serializer
from corral.utils import io


def set_watcher_pause(until: float | None) -> float | None:
    """Pause this node's watcher until ``until`` (epoch seconds); None or past: resume.

    Idempotent; returns the pause now in effect.
    """
    path = pathutils.watcher_pause_file()
    if until is None or until <= time.time():
        io.remove_file(path)
        return None
    io.write_file_atomic(path, "%d\n" % int(until))
    return until


def node_role(node_name: str) -> dict:
    """This master candidate's view of ``node_name``, from its configuration copy.

    ``{"serial_no", "maintain_node_health", "offline"}`` (``offline`` None: the
    node is not in the configuration).  Asked by the watcher of ``node_name``
    for ``maintain_node_health`` (Ganeti asks confd): an offline node gets no
    configuration updates, so only the candidates know it is offline.
    Changes nothing; errors.ConfigurationError without a copy.
    """
    try:
        data = serializer.loads(io.read_file(pathutils.config_file()))
    except FileNotFoundError:
        raise errors.ConfigurationError("This node holds no configuration copy") from None
    except ValueError as err:
        raise errors.ConfigurationError("Corrupt configuration copy: %s" % err) from None
    offline = None
    for node in (data.get("nodes") or {}).values():
        if node.get("name") == node_name:
            offline = bool(node.get("offline"))
    return {"serial_no": int(data.get("serial_no") or 0),
            "maintain_node_health": bool((data.get("cluster") or {}).get(
                "maintain_node_health")),
            "offline": offline}
