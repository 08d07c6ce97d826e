"""The watcher's memory between runs, one file per node group.

``<data_dir>/watcher.<group-uuid>.data`` (JSON, Ganeti's layout):
``{"instance": {name: {"restart_count": N, "restart_when": ts}},
"node": {name: {"bootid": id}}}``.  Restart counters limit how often the
watcher restarts an instance that keeps failing; boot ids reveal nodes that
rebooted since the last run.  The file is rewritten atomically at the end of
a run; a missing or corrupt file is an empty state (the watcher then only
forgets counters, it never acts twice as much).
"""

import logging
import os
import time
from typing import Any

from corral import pathutils, serializer
from corral.utils import io


def state_file(group_uuid: str) -> str:
    return os.path.join(pathutils.data_dir(), "watcher.%s.data" % group_uuid)


def instance_status_file(group_uuid: str | None = None) -> str:
    """Per group ``watcher.<uuid>.instance-status``, or the merged ``instance-status``."""
    name = "watcher.%s.instance-status" % group_uuid if group_uuid else "instance-status"
    return os.path.join(pathutils.data_dir(), name)


class WatcherState:
    """Restart counters and node boot ids of one group (see the module doc)."""

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        data = data if isinstance(data, dict) else {}
        inst = data.get("instance")
        node = data.get("node")
        self.instances: dict[str, dict] = inst if isinstance(inst, dict) else {}
        self.nodes: dict[str, dict] = node if isinstance(node, dict) else {}

    @classmethod
    def load(cls, path: str) -> "WatcherState":
        try:
            return cls(serializer.loads(io.read_file(path)))
        except FileNotFoundError:
            return cls()
        except (ValueError, OSError) as err:
            logging.warning("Ignoring unreadable watcher state %s: %s", path, err)
            return cls()

    def save(self, path: str) -> None:
        io.write_file_atomic(path, serializer.dumps({"instance": self.instances,
                                                     "node": self.nodes}))

    # ---- instance restarts --------------------------------------------------------------

    def restart_attempts(self, name: str) -> int:
        return int(self.instances.get(name, {}).get("restart_count", 0))

    def record_restart(self, name: str, now: float | None = None) -> None:
        entry = self.instances.setdefault(name, {})
        entry["restart_count"] = self.restart_attempts(name) + 1
        entry["restart_when"] = time.time() if now is None else now

    def forget_instance(self, name: str) -> None:
        self.instances.pop(name, None)

    def keep_only_instances(self, names: set[str]) -> None:
        """Drop counters of instances that no longer exist."""
        for name in list(self.instances):
            if name not in names:
                del self.instances[name]

    # ---- node boot ids -------------------------------------------------------------------

    def boot_id(self, node: str) -> str | None:
        value = self.nodes.get(node, {}).get("bootid")
        return value if isinstance(value, str) else None

    def set_boot_id(self, node: str, boot_id: str) -> None:
        self.nodes.setdefault(node, {})["bootid"] = boot_id


def write_instance_status(path: str, statuses: dict[str, str]) -> None:
    """``name status`` lines, sorted (the format Ganeti's watcher leaves for other tools)."""
    io.write_file_atomic(path, "".join("%s %s\n" % (name, statuses[name])
                                       for name in sorted(statuses)))


def merge_instance_status(group_uuids: list[str]) -> None:
    """Rewrite the global instance-status file from the groups' files."""
    merged: dict[str, str] = {}
    for uuid in group_uuids:
        try:
            text = io.read_file(instance_status_file(uuid))
        except FileNotFoundError:
            continue
        for line in text.splitlines():
            name, _, status = line.partition(" ")
            if name and status:
                merged[name] = status
    write_instance_status(instance_status_file(), merged)
