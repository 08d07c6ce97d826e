"""Node side of ``gnt-cluster watcher pause``: the pause file every node's watcher reads."""

import time

from corral import pathutils
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
