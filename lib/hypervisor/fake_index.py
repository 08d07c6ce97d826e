"""The fake hypervisor's in-memory index of its record directories.

A query at 1000 fake instances must not read, or even stat, 1000 record files
each time (a stat costs ~3 us here, a parse far more).  The index keeps every
record parsed, and one inotify instance watching the record directories tells
which files changed since the last look; a query then costs one ``read()`` of
the inotify descriptor plus a stat and, if the file changed, a parse of the
records named in the events.  The files stay the truth: anything that changes
them (this process, another one, an editor) produces an event before its write
or rename returns, so the next query sees it.  A lost event queue
(``IN_Q_OVERFLOW``) or a lost watch (directory removed or moved) means a full
rescan.

Without inotify (the per-user limit ``fs.inotify.max_user_instances`` is
reached: test machines run many node daemons) every query rescans, one stat
per record, a parse only for records whose (inode, mtime, size) changed.
"""

import errno
import logging
import os
import threading
from collections import OrderedDict
from typing import Callable, Generic, TypeVar

from inotify_simple import INotify, flags

T = TypeVar("T")

_WATCH_MASK = (flags.MODIFY | flags.ATTRIB | flags.CLOSE_WRITE | flags.MOVED_FROM
               | flags.MOVED_TO | flags.CREATE | flags.DELETE | flags.DELETE_SELF
               | flags.MOVE_SELF | flags.ONLYDIR)
_LOST = flags.IGNORED | flags.DELETE_SELF | flags.MOVE_SELF
MAX_DIRS = 4  # watched directories per process (a node has one; unit tests many roots)


def record_name(filename: str) -> str | None:
    """The instance name of a record file name, None for anything else (dot files are
    temporary files and the node override)."""
    if filename.endswith(".json") and not filename.startswith("."):
        return filename[:-5]
    return None


class _Dir(Generic[T]):
    """What the index knows of one directory."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.wd: int | None = None
        self.complete = False          # ``entries`` reflects the directory
        self.dirty: set[str] = set()   # names changed since (events)
        self.entries: dict[str, T] = {}
        self.order: list[str] | None = None  # sorted names, None = sort again


class RecordIndex(Generic[T]):
    """``{name: loaded record}`` per directory, refreshed from inotify events.

    ``load(path)`` returns what to keep for a record file (None: no record
    there); it is called for every record of a full scan and for each record
    named in an event.  Thread-safe: one lock serialises refreshes.
    """

    def __init__(self, load: Callable[[str], T | None]) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._inotify: INotify | None = None
        self._inotify_failed = False
        self._dirs: "OrderedDict[str, _Dir[T]]" = OrderedDict()
        self._by_wd: dict[int, _Dir[T]] = {}

    def records(self, directory: str) -> list[tuple[str, T]]:
        """``(name, record)`` of every record in ``directory``, sorted by name."""
        with self._lock:
            state = self._dir(directory)
            self._watch(state)
            self._apply_events()
            if state.wd is None or not state.complete:
                self._scan(state)
                state.complete = state.wd is not None
            elif state.dirty:
                self._reload(state)
            if state.order is None:
                state.order = sorted(state.entries)
            return [(name, state.entries[name]) for name in state.order]

    def close(self) -> None:
        with self._lock:
            if self._inotify is not None:
                self._inotify.close()
                self._inotify = None
            self._dirs.clear()
            self._by_wd.clear()

    # --- internals (lock held) ------------------------------------------------
    def _dir(self, path: str) -> _Dir[T]:
        state = self._dirs.get(path)
        if state is None:
            while len(self._dirs) >= MAX_DIRS:
                _old_path, old = self._dirs.popitem(last=False)
                self._unwatch(old)
            state = self._dirs[path] = _Dir(path)
        else:
            self._dirs.move_to_end(path)
        return state

    def _notifier(self) -> INotify | None:
        if self._inotify is None and not self._inotify_failed:
            try:
                self._inotify = INotify(nonblocking=True)
            except OSError as err:
                self._inotify_failed = True
                logging.warning("fake hypervisor: no inotify (%s); every query stats "
                                "each record", err)
        return self._inotify

    def _watch(self, state: _Dir[T]) -> None:
        """Watch before scanning, so that no change can fall between scan and watch."""
        notifier = self._notifier()
        if state.wd is not None or notifier is None:
            return
        try:
            state.wd = notifier.add_watch(state.path, _WATCH_MASK)
        except OSError as err:
            if err.errno not in (errno.ENOENT, errno.ENOTDIR):
                logging.warning("fake hypervisor: cannot watch %s: %s", state.path, err)
            return
        self._by_wd[state.wd] = state
        state.complete = False

    def _unwatch(self, state: _Dir[T]) -> None:
        if state.wd is not None:
            self._by_wd.pop(state.wd, None)
            if self._inotify is not None:
                self._inotify.rm_watch(state.wd)
            state.wd = None
        state.complete = False

    def _apply_events(self) -> None:
        if self._inotify is None:
            return
        for wd, mask, _cookie, name in self._inotify.read(timeout=0):
            if mask & flags.Q_OVERFLOW:
                for state in self._dirs.values():
                    state.complete = False
                continue
            state = self._by_wd.get(wd)
            if state is None:
                continue
            if mask & _LOST:
                if mask & flags.MOVE_SELF:
                    self._inotify.rm_watch(wd)  # the watch would follow the moved directory
                self._by_wd.pop(wd, None)
                state.wd = None
                state.complete = False
            elif name:
                state.dirty.add(name)

    def _scan(self, state: _Dir[T]) -> None:
        state.dirty.clear()
        try:
            with os.scandir(state.path) as scan:
                names = [n for n in (record_name(e.name) for e in scan) if n is not None]
        except (FileNotFoundError, NotADirectoryError):
            names = []
        entries = {}
        for name in names:
            loaded = self._load(os.path.join(state.path, name + ".json"))
            if loaded is not None:
                entries[name] = loaded
        state.entries = entries
        state.order = None

    def _reload(self, state: _Dir[T]) -> None:
        while state.dirty:
            filename = next(iter(state.dirty))
            name = record_name(filename)
            if name is not None:
                loaded = self._load(os.path.join(state.path, filename))  # may raise: stays dirty
                if loaded is None:
                    if state.entries.pop(name, None) is not None:
                        state.order = None
                else:
                    if name not in state.entries:
                        state.order = None
                    state.entries[name] = loaded
            state.dirty.discard(filename)
