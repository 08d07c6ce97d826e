"""Hierarchical shared/exclusive locks for the master daemon's job workers.

Contract (spec/opcodes.md §5, doc/design-locking.md):

* Locks live in levels (cluster < instance < nodegroup < node < node-res <
  network).  An owner (any hashable: a job, an opcode, a thread) acquires
  levels in strictly increasing order and each level once; breaking that rule
  is a programming error (``errors.LockError``).
* Within a level, names are acquired one by one in sorted order; the call is
  all-or-nothing: on timeout (``errors.LockTimeout``), removal of a wanted
  lock or any other exception, every lock taken by that call is released.
* Each lock is held by one exclusive owner or by any number of shared owners.
  Waiters are queued by (priority, arrival); the head of the queue is served
  first, so a shared request never overtakes an earlier exclusive waiter of
  equal or better priority.  On release, ownership is handed directly to the
  waiters that can now run (no thundering herd, no polling).
* ``ALL_SET`` (``None`` as names) takes an internal per-level "level lock" in
  the requested mode plus every name present once the level lock is held.
  Acquiring individual names passes through the level lock in shared mode, so
  an exclusive whole-level holder keeps everybody else out of the level,
  including names added after it acquired.
* One owner must be used by one thread at a time.

All state is guarded by one manager-wide mutex that is never held while
waiting; each waiter sleeps on its own Condition bound to that mutex.
"""

import bisect
import itertools
import threading
import time
from collections.abc import Hashable, Iterable
from typing import Any

from corral import constants, errors

LEVEL_CLUSTER = 0
LEVEL_INSTANCE = 1
LEVEL_NODEGROUP = 2
LEVEL_NODE = 3
LEVEL_NODE_RES = 4
LEVEL_NETWORK = 5
LEVELS = [LEVEL_CLUSTER, LEVEL_INSTANCE, LEVEL_NODEGROUP, LEVEL_NODE,
          LEVEL_NODE_RES, LEVEL_NETWORK]
LEVEL_NAMES = {
    LEVEL_CLUSTER: "cluster",
    LEVEL_INSTANCE: "instance",
    LEVEL_NODEGROUP: "nodegroup",
    LEVEL_NODE: "node",
    LEVEL_NODE_RES: "node-res",
    LEVEL_NETWORK: "network",
}
BGL = "BGL"
ALL_SET = None
LEVEL_LOCK_NAME = "[lockset]"

MODE_EXCLUSIVE = "exclusive"
MODE_SHARED = "shared"

_WAITING = 0
_GRANTED = 1
_GONE = 2
_CANCELLED = 3


class _Gone(Exception):
    """Internal: the lock we waited for was removed."""


class _Request:
    """One pending acquisition of one lock by one owner."""

    __slots__ = ("owner", "shared", "key", "cond", "state")

    def __init__(self, owner: Hashable, shared: bool, key: tuple[int, int],
                 cond: threading.Condition) -> None:
        self.owner = owner
        self.shared = shared
        self.key = key
        self.cond = cond
        self.state = _WAITING


class _Lock:
    """State of one lock; only touched with the manager mutex held."""

    __slots__ = ("level", "name", "is_level_lock", "exclusive", "shared", "queue")

    def __init__(self, level: int, name: str, is_level_lock: bool = False) -> None:
        self.level = level
        self.name = name
        self.is_level_lock = is_level_lock
        self.exclusive: Hashable | None = None
        self.shared: set[Hashable] = set()
        self.queue: list[_Request] = []

    def full_name(self) -> str:
        return "%s/%s" % (LEVEL_NAMES[self.level], self.name)

    def compatible(self, shared: bool) -> bool:
        if self.exclusive is not None:
            return False
        return shared or not self.shared

    def free_for(self, shared: bool) -> bool:
        """True if a new request could be granted without queueing."""
        return not self.queue and self.compatible(shared)


class _Holding:
    """What one owner holds at one level (names -> shared flag)."""

    __slots__ = ("names", "level_lock")

    def __init__(self) -> None:
        self.names: dict[str, bool] = {}
        self.level_lock: bool | None = None  # None = not held, else shared flag

    def empty(self) -> bool:
        return not self.names and self.level_lock is None


def _check_level(level: int) -> None:
    if level not in LEVEL_NAMES:
        raise errors.LockError("Unknown lock level %r" % (level,))


def _check_names(names: Iterable[str]) -> list[str]:
    if isinstance(names, str):
        raise errors.LockError("Lock names must be an iterable of strings, not a string")
    result = sorted(set(names))
    for name in result:
        if not isinstance(name, str) or not name:
            raise errors.LockError("Invalid lock name %r" % (name,))
    return result


class LockManager:
    """All the locks of the cluster, by level.  Thread-safe."""

    def __init__(self, initial: dict[int, Iterable[str]] | None = None) -> None:
        self._mutex = threading.Lock()
        self._seq = itertools.count()
        self._locks: dict[int, dict[str, _Lock]] = {level: {} for level in LEVELS}
        self._locks[LEVEL_CLUSTER][BGL] = _Lock(LEVEL_CLUSTER, BGL)
        self._level_locks = {level: _Lock(level, LEVEL_LOCK_NAME, is_level_lock=True)
                             for level in LEVELS if level != LEVEL_CLUSTER}
        self._owned: dict[Hashable, dict[int, _Holding]] = {}
        for level, names in (initial or {}).items():
            if level == LEVEL_CLUSTER:
                continue  # the BGL always exists and is the only cluster lock
            self.add(level, names)

    # ------------------------------------------------------------------
    # Lock set changes

    def add(self, level: int, names: Iterable[str]) -> None:
        """Create new, unowned locks.  All-or-nothing: an existing name raises LockError.

        Allowed at any time, even while someone holds the level lock; while the
        level is held exclusively as a whole, nobody else can acquire the new
        locks until that holder releases the level.
        """
        _check_level(level)
        if level == LEVEL_CLUSTER:
            raise errors.LockError("Cannot add locks at level cluster (only the BGL exists)")
        wanted = _check_names(names)
        with self._mutex:
            locks = self._locks[level]
            existing = [n for n in wanted if n in locks]
            if existing:
                raise errors.LockError("Locks already exist at level %s: %s" %
                                       (LEVEL_NAMES[level], ", ".join(existing)))
            for name in wanted:
                locks[name] = _Lock(level, name)

    def remove(self, level: int, names: Iterable[str]) -> None:
        """Delete locks that are unowned or owned exclusively (by the caller).

        Idempotent for names that do not exist.  All-or-nothing: a lock held in
        shared mode raises LockError and nothing is removed.  Waiters for a
        removed lock fail with LockError naming it; an exclusive owner simply
        stops owning it.
        """
        _check_level(level)
        if level == LEVEL_CLUSTER:
            raise errors.LockError("The BGL cannot be removed")
        wanted = _check_names(names)
        with self._mutex:
            locks = self._locks[level]
            victims = [locks[n] for n in wanted if n in locks]
            busy = [lock.full_name() for lock in victims if lock.shared]
            if busy:
                raise errors.LockError("Cannot remove locks held in shared mode: %s" %
                                       ", ".join(busy))
            for lock in victims:
                del locks[lock.name]
                if lock.exclusive is not None:
                    self._forget(lock, lock.exclusive)
                    lock.exclusive = None
                for req in lock.queue:
                    req.state = _GONE
                    req.cond.notify()
                lock.queue.clear()

    def names(self, level: int) -> set[str]:
        """The current lock names at a level (a copy)."""
        _check_level(level)
        with self._mutex:
            return set(self._locks[level])

    # ------------------------------------------------------------------
    # Acquisition

    def acquire(self, owner: Hashable, level: int, names: Iterable[str] | None,
                shared: bool = False, timeout: float | None = None,
                priority: int = 0) -> set[str]:
        """Acquire names (or ALL_SET) at one level; return the names acquired.

        Blocks until acquired (timeout=None), tries once (timeout=0), or raises
        errors.LockTimeout after ``timeout`` seconds.  On any failure nothing is
        held at this level afterwards.  Unknown names, level-order violations and
        a wanted lock removed while waiting raise errors.LockError (with ALL_SET,
        removed names are simply left out).
        """
        _check_level(level)
        if not constants.OP_PRIO_HIGHEST <= priority <= constants.OP_PRIO_LOWEST:
            raise errors.LockError("Invalid lock priority %r" % (priority,))
        wanted = None if names is None else _check_names(names)
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        with self._mutex:
            self._check_order(owner, level)
            if wanted is None:
                return self._acquire_all(owner, level, shared, deadline, priority)
            if not wanted:
                return set()
            locks = self._locks[level]
            unknown = [n for n in wanted if n not in locks]
            if unknown:
                raise errors.LockError("Unknown locks at level %s: %s" %
                                       (LEVEL_NAMES[level], ", ".join(unknown)))
            if self._try_fast(owner, level, wanted, shared):
                return set(wanted)
            return self._acquire_names(owner, level, wanted, shared, deadline, priority)

    def _check_order(self, owner: Hashable, level: int) -> None:
        held = self._owned.get(owner)
        if not held:
            return
        higher = [lv for lv in held if lv >= level]
        if higher:
            raise errors.LockError(
                "Lock order violation: %r wants level %s while holding level(s) %s" %
                (owner, LEVEL_NAMES[level], ", ".join(LEVEL_NAMES[lv] for lv in sorted(higher))))

    def _try_fast(self, owner: Hashable, level: int, wanted: list[str], shared: bool) -> bool:
        """Grant everything at once if nothing would have to wait (mutex held)."""
        level_lock = self._level_locks.get(level)
        if level_lock is not None and not level_lock.free_for(True):
            return False
        locks = self._locks[level]
        targets = [locks[n] for n in wanted]
        if not all(lock.free_for(shared) for lock in targets):
            return False
        for lock in targets:
            self._take(lock, owner, shared)
        return True

    def _acquire_names(self, owner: Hashable, level: int, wanted: list[str], shared: bool,
                       deadline: float | None, priority: int) -> set[str]:
        """Slow path: pass through the level lock (shared), then names in order."""
        level_lock = self._level_locks.get(level)
        if level_lock is not None:
            self._wait_for(level_lock, owner, True, deadline, priority)
        try:
            for name in wanted:
                lock = self._locks[level].get(name)
                if lock is None:
                    raise _Gone()
                self._wait_for(lock, owner, shared, deadline, priority)
        except _Gone:
            self._release_level(owner, level, None)
            raise errors.LockError("Lock %s/%s was removed while waiting for it" %
                                   (LEVEL_NAMES[level], name)) from None
        except BaseException:
            self._release_level(owner, level, None)
            raise
        if level_lock is not None:
            self._drop(level_lock, owner)
        return set(wanted)

    def _acquire_all(self, owner: Hashable, level: int, shared: bool,
                     deadline: float | None, priority: int) -> set[str]:
        """ALL_SET: level lock in the requested mode, then every current name."""
        level_lock = self._level_locks.get(level)
        acquired: set[str] = set()
        try:
            if level_lock is not None:
                self._wait_for(level_lock, owner, shared, deadline, priority)
            for name in sorted(self._locks[level]):
                lock = self._locks[level].get(name)
                if lock is None:
                    continue  # removed while we waited for an earlier one
                try:
                    self._wait_for(lock, owner, shared, deadline, priority)
                except _Gone:
                    continue
                acquired.add(name)
        except BaseException:
            self._release_level(owner, level, None)
            raise
        return acquired

    def _wait_for(self, lock: _Lock, owner: Hashable, shared: bool,
                  deadline: float | None, priority: int) -> None:
        """Acquire one lock, queueing fairly; raise LockTimeout or _Gone (mutex held)."""
        if lock.free_for(shared):
            self._take(lock, owner, shared)
            return
        req = _Request(owner, shared, (priority, next(self._seq)),
                       threading.Condition(self._mutex))
        bisect.insort(lock.queue, req, key=lambda r: r.key)
        self._grant_waiters(lock)
        if req.state == _WAITING:
            self._on_wait(lock.level, lock.name, owner)
        try:
            while req.state == _WAITING:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                req.cond.wait(remaining)
        finally:
            if req.state == _WAITING:
                self._cancel(lock, req)
        if req.state == _GONE:
            raise _Gone()
        if req.state == _CANCELLED:
            raise errors.LockTimeout("Timeout while acquiring lock %s (%s)" %
                                     (lock.full_name(), MODE_SHARED if shared else MODE_EXCLUSIVE))

    def _on_wait(self, level: int, name: str, owner: Hashable) -> None:
        """Called with the mutex held when a request starts waiting.

        A no-op; tests override it to learn, without polling, that a thread is
        queued.  Overrides must not block or call back into the manager.
        """

    # ------------------------------------------------------------------
    # Low-level state changes (mutex held)

    def _take(self, lock: _Lock, owner: Hashable, shared: bool) -> None:
        if shared:
            lock.shared.add(owner)
        else:
            lock.exclusive = owner
        holding = self._owned.setdefault(owner, {}).get(lock.level)
        if holding is None:
            holding = self._owned[owner][lock.level] = _Holding()
        if lock.is_level_lock:
            holding.level_lock = shared
        else:
            holding.names[lock.name] = shared

    def _forget(self, lock: _Lock, owner: Hashable) -> None:
        """Remove the lock from the owner's bookkeeping (not from the lock)."""
        levels = self._owned.get(owner)
        holding = levels.get(lock.level) if levels else None
        if holding is None:
            return
        if lock.is_level_lock:
            holding.level_lock = None
        else:
            holding.names.pop(lock.name, None)
        if holding.empty():
            del levels[lock.level]
            if not levels:
                del self._owned[owner]

    def _drop(self, lock: _Lock, owner: Hashable) -> None:
        if lock.exclusive == owner:
            lock.exclusive = None
        else:
            lock.shared.discard(owner)
        self._forget(lock, owner)
        self._grant_waiters(lock)

    def _grant_waiters(self, lock: _Lock) -> None:
        """Hand the lock to the head of its queue while compatible."""
        queue = lock.queue
        while queue and lock.compatible(queue[0].shared):
            req = queue.pop(0)
            self._take(lock, req.owner, req.shared)
            req.state = _GRANTED
            req.cond.notify()

    def _cancel(self, lock: _Lock, req: _Request) -> None:
        """Withdraw a waiting request; those queued behind it may now run."""
        lock.queue.remove(req)
        req.state = _CANCELLED
        self._grant_waiters(lock)

    # ------------------------------------------------------------------
    # Release and downgrade

    def release(self, owner: Hashable, level: int, names: Iterable[str] | None = None) -> None:
        """Release names at a level (None = everything at the level, idempotent).

        Releasing only part of a whole-level (ALL_SET) acquisition also gives up
        the level lock, so the released names become available to others.
        Naming a lock the owner does not hold raises LockError (names that were
        removed meanwhile are ignored).
        """
        _check_level(level)
        wanted = None if names is None else _check_names(names)
        with self._mutex:
            self._release_level(owner, level, wanted)

    def _release_level(self, owner: Hashable, level: int, wanted: list[str] | None) -> None:
        holding = self._owned.get(owner, {}).get(level)
        if holding is None:
            if wanted:
                self._raise_not_owned(owner, level, wanted)
            return
        if wanted is None:
            wanted = sorted(holding.names)
        else:
            self._raise_not_owned(owner, level, [n for n in wanted if n not in holding.names])
        locks = self._locks[level]
        level_lock = self._level_locks.get(level)
        if level_lock is not None and holding.level_lock is not None:
            self._drop(level_lock, owner)
        for name in wanted:
            lock = locks.get(name)
            if lock is not None and name in holding.names:
                self._drop(lock, owner)

    def _raise_not_owned(self, owner: Hashable, level: int, missing: list[str]) -> None:
        existing = [n for n in missing if n in self._locks[level]]
        if existing:
            raise errors.LockError("%r does not own %s" % (
                owner, ", ".join("%s/%s" % (LEVEL_NAMES[level], n) for n in existing)))

    def release_all(self, owner: Hashable) -> None:
        """Release everything the owner holds, highest level first.  Idempotent."""
        with self._mutex:
            for level in sorted(self._owned.get(owner, {}), reverse=True):
                self._release_level(owner, level, None)

    def downgrade(self, owner: Hashable, level: int, names: Iterable[str] | None = None) -> None:
        """Turn exclusive holds into shared ones (None = all at the level).

        Idempotent for locks already held shared; a lock not held raises
        LockError.  Once no name at the level is held exclusively, the level
        lock (if held) is downgraded too.  Queued shared waiters may run at once.
        """
        _check_level(level)
        wanted = None if names is None else _check_names(names)
        with self._mutex:
            holding = self._owned.get(owner, {}).get(level)
            if holding is None:
                if wanted is None:
                    return
                self._raise_not_owned(owner, level, wanted)
                return
            if wanted is None:
                wanted = sorted(holding.names)
            self._raise_not_owned(owner, level, [n for n in wanted if n not in holding.names])
            for name in wanted:
                lock = self._locks[level].get(name)
                if lock is not None and holding.names.get(name) is False:
                    self._make_shared(lock, owner)
            level_lock = self._level_locks.get(level)
            if (level_lock is not None and holding.level_lock is False
                    and all(holding.names.values())):
                self._make_shared(level_lock, owner)

    def _make_shared(self, lock: _Lock, owner: Hashable) -> None:
        lock.exclusive = None
        self._take(lock, owner, True)
        self._grant_waiters(lock)

    # ------------------------------------------------------------------
    # Queries

    def owned(self, owner: Hashable, level: int) -> set[str]:
        """Names the owner holds at the level (the internal level lock excluded)."""
        _check_level(level)
        with self._mutex:
            holding = self._owned.get(owner, {}).get(level)
            return set(holding.names) if holding else set()

    def is_owned(self, owner: Hashable, level: int, name: str | None = None,
                 shared: bool | None = None) -> bool:
        """Does the owner hold ``name`` (or any lock at the level if None)?

        ``shared`` restricts the answer to a mode (True = shared, False =
        exclusive); None accepts either.
        """
        _check_level(level)
        with self._mutex:
            holding = self._owned.get(owner, {}).get(level)
            if holding is None:
                return False
            if name is None:
                modes = list(holding.names.values())
            elif name in holding.names:
                modes = [holding.names[name]]
            else:
                return False
            return any(shared is None or mode == shared for mode in modes)

    def list_owned_levels(self, owner: Hashable) -> list[int]:
        """Levels at which the owner holds something, in acquisition order."""
        with self._mutex:
            return sorted(self._owned.get(owner, {}))

    def info(self) -> list[dict[str, Any]]:
        """A snapshot of every lock for ``gnt-debug locks``; never waits for waiters."""
        with self._mutex:
            result = []
            for level in LEVELS:
                level_lock = self._level_locks.get(level)
                ordered = [level_lock] if level_lock is not None else []
                ordered += [self._locks[level][n] for n in sorted(self._locks[level])]
                result.extend(_describe(lock) for lock in ordered)
            return result


def _describe(lock: _Lock) -> dict[str, Any]:
    if lock.exclusive is not None:
        mode, owners = MODE_EXCLUSIVE, [str(lock.exclusive)]
    elif lock.shared:
        mode, owners = MODE_SHARED, sorted(str(o) for o in lock.shared)
    else:
        mode, owners = None, []
    pending: list[list[Any]] = []
    for req in lock.queue:
        req_mode = MODE_SHARED if req.shared else MODE_EXCLUSIVE
        if req.shared and pending and pending[-1][0] == MODE_SHARED:
            pending[-1][1].append(str(req.owner))
        else:
            pending.append([req_mode, [str(req.owner)]])
    return {"name": lock.full_name(), "mode": mode, "owners": owners, "pending": pending}
