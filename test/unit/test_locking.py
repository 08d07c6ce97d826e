"""Tests for corral.locking: modes, level order, timeouts, fairness, removal, stress.

Threads are sequenced with Events (the manager's ``_on_wait`` hook tells us a
request is queued), never with sleeps; every join has a deadline.
"""

import random
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

import pytest

from corral import errors
from corral import locking as L

DEADLINE = 10.0


class TracingManager(L.LockManager):
    """LockManager that signals an Event per owner once it is queued on a lock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._events: dict[Hashable, threading.Event] = {}
        self._events_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def queued(self, owner: Hashable) -> threading.Event:
        with self._events_lock:
            return self._events.setdefault(owner, threading.Event())

    def _on_wait(self, level: int, name: str, owner: Hashable) -> None:
        self.queued(owner).set()

    def wait_queued(self, owner: Hashable) -> None:
        assert self.queued(owner).wait(DEADLINE), "%s never queued" % owner


class Runner:
    """Runs a callable in a thread and keeps its result or exception."""

    def __init__(self, func: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(func,), daemon=True)
        self.thread.start()

    def _run(self, func: Callable[[], Any]) -> None:
        try:
            self.result = func()
        except BaseException as err:  # noqa: B902 - reported to the test
            self.error = err

    def join(self) -> Any:
        self.thread.join(DEADLINE)
        assert not self.thread.is_alive(), "thread did not finish in time"
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def mgr() -> TracingManager:
    return TracingManager({L.LEVEL_INSTANCE: ["i1", "i2", "i3"],
                           L.LEVEL_NODEGROUP: ["default"],
                           L.LEVEL_NODE: ["n1", "n2", "n3"],
                           L.LEVEL_NODE_RES: ["n1", "n2", "n3"]})


def lock_info(mgr: L.LockManager, full_name: str) -> dict[str, Any]:
    return next(entry for entry in mgr.info() if entry["name"] == full_name)


# ----------------------------------------------------------------------
# Modes and level order

def test_constants() -> None:
    assert L.LEVELS == [0, 1, 2, 3, 4, 5]
    assert [L.LEVEL_NAMES[lv] for lv in L.LEVELS] == [
        "cluster", "instance", "nodegroup", "node", "node-res", "network"]
    assert L.ALL_SET is None
    assert L.LockManager().names(L.LEVEL_CLUSTER) == {L.BGL}


def test_shared_vs_exclusive(mgr: TracingManager) -> None:
    assert mgr.acquire("a", L.LEVEL_INSTANCE, ["i1"], shared=True) == {"i1"}
    assert mgr.acquire("b", L.LEVEL_INSTANCE, ["i1"], shared=True, timeout=0) == {"i1"}
    with pytest.raises(errors.LockTimeout):
        mgr.acquire("c", L.LEVEL_INSTANCE, ["i1"], timeout=0)
    mgr.release("a", L.LEVEL_INSTANCE)
    with pytest.raises(errors.LockTimeout):
        mgr.acquire("c", L.LEVEL_INSTANCE, ["i1"], timeout=0)
    mgr.release("b", L.LEVEL_INSTANCE, ["i1"])
    assert mgr.acquire("c", L.LEVEL_INSTANCE, ["i1"], timeout=0) == {"i1"}
    with pytest.raises(errors.LockTimeout):
        mgr.acquire("a", L.LEVEL_INSTANCE, ["i1"], shared=True, timeout=0)
    assert mgr.is_owned("c", L.LEVEL_INSTANCE, "i1", shared=False)
    assert not mgr.is_owned("c", L.LEVEL_INSTANCE, "i1", shared=True)


def test_level_order_violation(mgr: TracingManager) -> None:
    mgr.acquire("a", L.LEVEL_NODE, ["n1"])
    for level in (L.LEVEL_CLUSTER, L.LEVEL_INSTANCE, L.LEVEL_NODE):
        with pytest.raises(errors.LockError) as exc:
            mgr.acquire("a", level, None, shared=True)
        assert not isinstance(exc.value, errors.LockTimeout)
    assert mgr.acquire("a", L.LEVEL_NODE_RES, ["n1"]) == {"n1"}
    assert mgr.list_owned_levels("a") == [L.LEVEL_NODE, L.LEVEL_NODE_RES]
    mgr.release("a", L.LEVEL_NODE_RES)
    # Level order is about what is held now, not what was held before.
    with pytest.raises(errors.LockError):
        mgr.acquire("a", L.LEVEL_INSTANCE, ["i1"])
    mgr.release_all("a")
    assert mgr.acquire("a", L.LEVEL_INSTANCE, ["i1"]) == {"i1"}


def test_bad_arguments(mgr: TracingManager) -> None:
    assert mgr.acquire("a", L.LEVEL_INSTANCE, []) == set()
    assert mgr.list_owned_levels("a") == []
    with pytest.raises(errors.LockError, match="Unknown locks"):
        mgr.acquire("a", L.LEVEL_INSTANCE, ["i1", "nope"])
    assert mgr.owned("a", L.LEVEL_INSTANCE) == set()
    with pytest.raises(errors.LockError):
        mgr.acquire("a", 42, ["x"])
    with pytest.raises(errors.LockError):
        mgr.acquire("a", L.LEVEL_INSTANCE, "i1")
    with pytest.raises(errors.LockError):
        mgr.acquire("a", L.LEVEL_INSTANCE, ["i1"], priority=20)
    with pytest.raises(errors.LockError):
        mgr.add(L.LEVEL_INSTANCE, ["i1"])
    with pytest.raises(errors.LockError):
        mgr.add(L.LEVEL_CLUSTER, ["other"])
    with pytest.raises(errors.LockError):
        mgr.remove(L.LEVEL_CLUSTER, [L.BGL])
    with pytest.raises(errors.LockError):
        mgr.release("a", L.LEVEL_INSTANCE, ["i1"])  # not owned


# ----------------------------------------------------------------------
# Timeouts

def test_timeout_leaves_nothing_held(mgr: TracingManager) -> None:
    mgr.acquire("holder", L.LEVEL_NODE, ["n2"])
    start = time.monotonic()
    with pytest.raises(errors.LockTimeout, match="node/n2"):
        mgr.acquire("w", L.LEVEL_NODE, ["n1", "n2", "n3"], timeout=0.05)
    assert time.monotonic() - start >= 0.05
    assert mgr.owned("w", L.LEVEL_NODE) == set()
    assert mgr.list_owned_levels("w") == []
    assert mgr.acquire("other", L.LEVEL_NODE, ["n1", "n3"], timeout=0) == {"n1", "n3"}
    assert all(not entry["pending"] for entry in mgr.info())


def test_timeout_keeps_lower_levels(mgr: TracingManager) -> None:
    mgr.acquire("holder", L.LEVEL_NODE, ["n1"])
    mgr.acquire("w", L.LEVEL_CLUSTER, [L.BGL], shared=True)
    with pytest.raises(errors.LockTimeout):
        mgr.acquire("w", L.LEVEL_NODE, ["n1"], timeout=0)
    assert mgr.list_owned_levels("w") == [L.LEVEL_CLUSTER]


def test_timeout_of_queued_exclusive_unblocks_shared(mgr: TracingManager) -> None:
    mgr.acquire("holder", L.LEVEL_INSTANCE, ["i1"], shared=True)
    gate = threading.Event()

    def writer() -> None:
        try:
            mgr.acquire("writer", L.LEVEL_INSTANCE, ["i1"], timeout=0.2)
        finally:
            gate.set()

    w = Runner(writer)
    mgr.wait_queued("writer")
    reader = Runner(lambda: mgr.acquire("reader", L.LEVEL_INSTANCE, ["i1"], shared=True))
    mgr.wait_queued("reader")
    assert gate.wait(DEADLINE)
    with pytest.raises(errors.LockTimeout):
        w.join()
    assert reader.join() == {"i1"}


# ----------------------------------------------------------------------
# Whole-level acquisition

def test_all_set_exclusive_blocks_individuals(mgr: TracingManager) -> None:
    assert mgr.acquire("a", L.LEVEL_NODE, L.ALL_SET) == {"n1", "n2", "n3"}
    with pytest.raises(errors.LockTimeout):
        mgr.acquire("b", L.LEVEL_NODE, ["n1"], shared=True, timeout=0)
    mgr.add(L.LEVEL_NODE, ["n4"])
    assert lock_info(mgr, "node/n4")["mode"] is None
    with pytest.raises(errors.LockTimeout):
        mgr.acquire("b", L.LEVEL_NODE, ["n4"], timeout=0)
    waiter = Runner(lambda: mgr.acquire("b", L.LEVEL_NODE, ["n4"]))
    mgr.wait_queued("b")
    mgr.release("a", L.LEVEL_NODE)
    assert waiter.join() == {"n4"}


def test_all_set_shared_and_individuals(mgr: TracingManager) -> None:
    mgr.acquire("a", L.LEVEL_NODE, L.ALL_SET, shared=True)
    assert mgr.acquire("b", L.LEVEL_NODE, ["n1"], shared=True, timeout=0) == {"n1"}
    with pytest.raises(errors.LockTimeout):
        mgr.acquire("c", L.LEVEL_NODE, ["n2"], timeout=0)
    with pytest.raises(errors.LockTimeout):
        mgr.acquire("c", L.LEVEL_NODE, L.ALL_SET, timeout=0)
    assert lock_info(mgr, "node/[lockset]")["mode"] == "shared"
    assert lock_info(mgr, "node/[lockset]")["owners"] == ["a"]


def test_all_set_waits_for_individual_holder(mgr: TracingManager) -> None:
    mgr.acquire("a", L.LEVEL_NODE, ["n2"])
    whole = Runner(lambda: mgr.acquire("b", L.LEVEL_NODE, L.ALL_SET))
    mgr.wait_queued("b")
    # b holds the level lock exclusively while it waits: the level is closed.
    with pytest.raises(errors.LockTimeout):
        mgr.acquire("c", L.LEVEL_NODE, ["n3"], timeout=0)
    mgr.release("a", L.LEVEL_NODE)
    assert whole.join() == {"n1", "n2", "n3"}


def test_all_set_partial_release_opens_level(mgr: TracingManager) -> None:
    mgr.acquire("a", L.LEVEL_NODE, L.ALL_SET)
    mgr.release("a", L.LEVEL_NODE, ["n1", "n2"])
    assert mgr.owned("a", L.LEVEL_NODE) == {"n3"}
    assert mgr.acquire("b", L.LEVEL_NODE, ["n1"], timeout=0) == {"n1"}
    with pytest.raises(errors.LockTimeout):
        mgr.acquire("c", L.LEVEL_NODE, ["n3"], timeout=0)


def test_all_set_at_cluster_level_is_bgl(mgr: TracingManager) -> None:
    assert mgr.acquire("a", L.LEVEL_CLUSTER, L.ALL_SET) == {L.BGL}
    with pytest.raises(errors.LockTimeout):
        mgr.acquire("b", L.LEVEL_CLUSTER, [L.BGL], shared=True, timeout=0)


def test_all_set_skips_names_removed_while_waiting(mgr: TracingManager) -> None:
    mgr.acquire("a", L.LEVEL_INSTANCE, ["i2"])
    whole = Runner(lambda: mgr.acquire("b", L.LEVEL_INSTANCE, L.ALL_SET))
    mgr.wait_queued("b")
    mgr.remove(L.LEVEL_INSTANCE, ["i2"])
    assert whole.join() == {"i1", "i3"}
    assert mgr.owned("a", L.LEVEL_INSTANCE) == set()


# ----------------------------------------------------------------------
# Fairness

def _serve_in_order(mgr: TracingManager, requests: list[tuple[str, bool, int]]) -> list[str]:
    """Queue requests (owner, shared, priority) one after the other behind an
    exclusive holder; return the order in which they were granted."""
    mgr.acquire("holder", L.LEVEL_INSTANCE, ["i1"])
    order: list[str] = []
    order_lock = threading.Lock()

    def worker(owner: str, shared: bool, prio: int) -> None:
        mgr.acquire(owner, L.LEVEL_INSTANCE, ["i1"], shared=shared, priority=prio)
        with order_lock:
            order.append(owner)
        mgr.release(owner, L.LEVEL_INSTANCE)

    runners = []
    for owner, shared, prio in requests:
        runners.append(Runner(lambda o=owner, s=shared, p=prio: worker(o, s, p)))
        mgr.wait_queued(owner)
    mgr.release("holder", L.LEVEL_INSTANCE)
    for runner in runners:
        runner.join()
    return order


def test_priority_ordering(mgr: TracingManager) -> None:
    order = _serve_in_order(mgr, [("low", False, 10), ("normal", False, 0),
                                  ("high", False, -10), ("highest", False, -20)])
    assert order == ["highest", "high", "normal", "low"]


def test_fifo_within_priority(mgr: TracingManager) -> None:
    names = ["w%d" % i for i in range(8)]
    assert _serve_in_order(mgr, [(n, False, 0) for n in names]) == names


def test_pending_shown_in_queue_order(mgr: TracingManager) -> None:
    mgr.acquire("holder", L.LEVEL_INSTANCE, ["i1"])
    specs = [("r1", True, 0), ("r2", True, 0), ("x1", False, 0), ("r3", True, 5),
             ("urgent", False, -10)]
    runners = []
    for owner, shared, prio in specs:
        runners.append(Runner(lambda o=owner, s=shared, p=prio: mgr.acquire(
            o, L.LEVEL_INSTANCE, ["i1"], shared=s, priority=p)))
        mgr.wait_queued(owner)
    entry = lock_info(mgr, "instance/i1")
    assert entry == {"name": "instance/i1", "mode": "exclusive", "owners": ["holder"],
                     "pending": [["exclusive", ["urgent"]], ["shared", ["r1", "r2"]],
                                 ["exclusive", ["x1"]], ["shared", ["r3"]]]}
    mgr.release("holder", L.LEVEL_INSTANCE)
    assert runners[-1].join() == {"i1"}
    mgr.release("urgent", L.LEVEL_INSTANCE)
    assert runners[0].join() == runners[1].join() == {"i1"}
    assert lock_info(mgr, "instance/i1")["owners"] == ["r1", "r2"]
    mgr.release_all("r1")
    mgr.release_all("r2")
    assert runners[2].join() == {"i1"}
    mgr.release_all("x1")
    assert runners[3].join() == {"i1"}


def test_no_writer_starvation(mgr: TracingManager) -> None:
    mgr.acquire("reader1", L.LEVEL_INSTANCE, ["i1"], shared=True)
    writer = Runner(lambda: mgr.acquire("writer", L.LEVEL_INSTANCE, ["i1"], priority=0))
    mgr.wait_queued("writer")
    # A later shared request of equal or lower urgency must queue behind the writer.
    for prio in (0, 10):
        with pytest.raises(errors.LockTimeout):
            mgr.acquire("reader2", L.LEVEL_INSTANCE, ["i1"], shared=True, timeout=0,
                        priority=prio)
    # A more urgent shared request may go first: priority beats arrival.
    assert mgr.acquire("urgent", L.LEVEL_INSTANCE, ["i1"], shared=True, timeout=0,
                       priority=-10) == {"i1"}
    late_reader = Runner(lambda: mgr.acquire("reader3", L.LEVEL_INSTANCE, ["i1"], shared=True))
    mgr.wait_queued("reader3")
    mgr.release_all("reader1")
    mgr.release_all("urgent")
    assert writer.join() == {"i1"}
    assert late_reader.thread.is_alive()
    assert lock_info(mgr, "instance/i1")["pending"] == [["shared", ["reader3"]]]
    mgr.release_all("writer")
    assert late_reader.join() == {"i1"}


# ----------------------------------------------------------------------
# Removal, release, downgrade

def test_remove_while_waiting(mgr: TracingManager) -> None:
    mgr.acquire("holder", L.LEVEL_INSTANCE, ["i2"])
    waiter = Runner(lambda: mgr.acquire("w", L.LEVEL_INSTANCE, ["i1", "i2"]))
    mgr.wait_queued("w")
    assert mgr.is_owned("w", L.LEVEL_INSTANCE, "i1")  # got i1 first (sorted order)
    mgr.remove(L.LEVEL_INSTANCE, ["i2"])  # holder owns it exclusively: allowed
    with pytest.raises(errors.LockError, match="instance/i2 was removed") as exc:
        waiter.join()
    assert not isinstance(exc.value, errors.LockTimeout)
    assert mgr.list_owned_levels("w") == []
    assert mgr.owned("holder", L.LEVEL_INSTANCE) == set()
    assert mgr.names(L.LEVEL_INSTANCE) == {"i1", "i3"}
    assert mgr.acquire("x", L.LEVEL_INSTANCE, ["i1"], timeout=0) == {"i1"}
    mgr.release("holder", L.LEVEL_INSTANCE)  # nothing left: no-op
    with pytest.raises(errors.LockError):
        mgr.acquire("x2", L.LEVEL_INSTANCE, ["i2"], timeout=0)


def test_remove_rules(mgr: TracingManager) -> None:
    mgr.acquire("a", L.LEVEL_INSTANCE, ["i1"], shared=True)
    with pytest.raises(errors.LockError, match="shared"):
        mgr.remove(L.LEVEL_INSTANCE, ["i1", "i3"])
    assert mgr.names(L.LEVEL_INSTANCE) == {"i1", "i2", "i3"}  # all-or-nothing
    mgr.remove(L.LEVEL_INSTANCE, ["i3", "never-existed"])
    mgr.remove(L.LEVEL_INSTANCE, ["i3"])  # idempotent
    assert mgr.names(L.LEVEL_INSTANCE) == {"i1", "i2"}
    mgr.add(L.LEVEL_INSTANCE, ["i3"])
    assert mgr.acquire("b", L.LEVEL_INSTANCE, ["i3"], timeout=0) == {"i3"}


def test_release_all(mgr: TracingManager) -> None:
    mgr.acquire("a", L.LEVEL_CLUSTER, [L.BGL], shared=True)
    mgr.acquire("a", L.LEVEL_INSTANCE, ["i1", "i2"])
    mgr.acquire("a", L.LEVEL_NODE, L.ALL_SET)
    mgr.acquire("a", L.LEVEL_NODE_RES, ["n1"], shared=True)
    assert mgr.list_owned_levels("a") == [L.LEVEL_CLUSTER, L.LEVEL_INSTANCE, L.LEVEL_NODE,
                                          L.LEVEL_NODE_RES]
    mgr.release_all("a")
    mgr.release_all("a")  # idempotent
    assert mgr.list_owned_levels("a") == []
    assert all(entry["mode"] is None for entry in mgr.info())
    assert mgr.acquire("b", L.LEVEL_CLUSTER, L.ALL_SET, timeout=0) == {L.BGL}


def test_downgrade(mgr: TracingManager) -> None:
    mgr.acquire("a", L.LEVEL_INSTANCE, ["i1", "i2"])
    reader = Runner(lambda: mgr.acquire("r", L.LEVEL_INSTANCE, ["i1"], shared=True))
    mgr.wait_queued("r")
    mgr.downgrade("a", L.LEVEL_INSTANCE, ["i1"])
    assert reader.join() == {"i1"}
    assert mgr.is_owned("a", L.LEVEL_INSTANCE, "i1", shared=True)
    assert mgr.is_owned("a", L.LEVEL_INSTANCE, "i2", shared=False)
    mgr.downgrade("a", L.LEVEL_INSTANCE, ["i1"])  # idempotent
    with pytest.raises(errors.LockError):
        mgr.downgrade("a", L.LEVEL_INSTANCE, ["i3"])
    mgr.downgrade("a", L.LEVEL_INSTANCE)
    assert not mgr.is_owned("a", L.LEVEL_INSTANCE, shared=False)
    assert lock_info(mgr, "instance/i1")["owners"] == ["a", "r"]


def test_downgrade_all_set_downgrades_level_lock(mgr: TracingManager) -> None:
    mgr.acquire("a", L.LEVEL_NODE, L.ALL_SET)
    mgr.downgrade("a", L.LEVEL_NODE, ["n1"])
    assert lock_info(mgr, "node/[lockset]")["mode"] == "exclusive"
    mgr.downgrade("a", L.LEVEL_NODE)
    assert lock_info(mgr, "node/[lockset]")["mode"] == "shared"
    assert mgr.acquire("b", L.LEVEL_NODE, ["n2"], shared=True, timeout=0) == {"n2"}


def test_info_shape(mgr: TracingManager) -> None:
    mgr.acquire("job-1", L.LEVEL_CLUSTER, [L.BGL], shared=True)
    mgr.acquire("job-1", L.LEVEL_INSTANCE, ["i1"])
    waiter = Runner(lambda: mgr.acquire(("job", 2), L.LEVEL_INSTANCE, ["i1"], shared=True))
    mgr.wait_queued(("job", 2))
    info = mgr.info()
    assert info[0] == {"name": "cluster/BGL", "mode": "shared", "owners": ["job-1"],
                       "pending": []}
    names = [entry["name"] for entry in info]
    assert names[:5] == ["cluster/BGL", "instance/[lockset]", "instance/i1", "instance/i2",
                         "instance/i3"]
    assert "node-res/n1" in names
    for entry in info:
        assert set(entry) == {"name", "mode", "owners", "pending"}
        assert entry["mode"] in ("exclusive", "shared", None)
        assert all(isinstance(o, str) for o in entry["owners"])
    assert lock_info(mgr, "instance/i1")["pending"] == [["shared", ["('job', 2)"]]]
    mgr.release_all("job-1")
    assert waiter.join() == {"i1"}


# ----------------------------------------------------------------------
# Speed and stress

def test_uncontended_speed() -> None:
    mgr = L.LockManager({L.LEVEL_INSTANCE: ["inst%d" % i for i in range(100)]})
    start = time.perf_counter()
    for _ in range(1000):
        mgr.acquire("job", L.LEVEL_CLUSTER, [L.BGL], shared=True)
        mgr.acquire("job", L.LEVEL_INSTANCE, ["inst42"])
        mgr.release_all("job")
    # ~20 ms on the development machine; generous bound for a loaded CI box.
    assert time.perf_counter() - start < 1.0


def _stress_worker(mgr: L.LockManager, seed: int, iterations: int,
                   check: Callable[[str, int, set[str], bool, int], None]) -> None:
    rng = random.Random(seed)
    owner = "t%d" % seed
    names = {lv: sorted(mgr.names(lv)) for lv in L.LEVELS}
    for _ in range(iterations):
        levels = sorted(rng.sample(L.LEVELS, rng.randint(1, 4)))
        try:
            for level in levels:
                shared = rng.random() < 0.5
                timeout = rng.choice([None, None, 0, 0.01])
                if rng.random() < 0.1:
                    got = mgr.acquire(owner, level, L.ALL_SET, shared=shared, timeout=timeout,
                                      priority=rng.randint(-20, 19))
                else:
                    want = rng.sample(names[level], rng.randint(1, len(names[level])))
                    got = mgr.acquire(owner, level, want, shared=shared, timeout=timeout,
                                      priority=rng.randint(-20, 19))
                    assert got == set(want)
                check(owner, level, got, shared, +1)
        except errors.LockTimeout:
            pass
        finally:
            for level in mgr.list_owned_levels(owner):
                check(owner, level, mgr.owned(owner, level), False, -1)
            mgr.release_all(owner)


def test_stress_no_deadlock_invariants_hold() -> None:
    mgr = L.LockManager({L.LEVEL_INSTANCE: ["i%d" % i for i in range(6)],
                         L.LEVEL_NODEGROUP: ["g1", "g2"],
                         L.LEVEL_NODE: ["n%d" % i for i in range(5)],
                         L.LEVEL_NODE_RES: ["n%d" % i for i in range(5)],
                         L.LEVEL_NETWORK: ["net1", "net2"]})
    guard = threading.Lock()
    holders: dict[tuple[int, str], dict[str, bool]] = {}
    violations: list[str] = []

    def check(owner: str, level: int, got: set[str], shared: bool, delta: int) -> None:
        with guard:
            for name in got:
                held = holders.setdefault((level, name), {})
                if delta < 0:
                    held.pop(owner, None)
                    continue
                if not shared and held:
                    violations.append("%s got %d/%s exclusively, held by %s" %
                                      (owner, level, name, held))
                if shared and not all(held.values()):
                    violations.append("%s got %d/%s shared while held exclusively by %s" %
                                      (owner, level, name, held))
                held[owner] = shared

    threads = [threading.Thread(target=_stress_worker, args=(mgr, seed, 150, check), daemon=True)
               for seed in range(20)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
        assert not thread.is_alive(), "deadlock or livelock: %s" % mgr.info()
    assert violations == []
    for entry in mgr.info():
        assert entry["mode"] is None and entry["owners"] == [] and entry["pending"] == []
