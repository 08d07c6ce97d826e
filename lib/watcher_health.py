"""The watcher's ``maintain_node_health`` duty (spec/hypervisors-storage.md §11).

A node marked offline in the configuration is no longer managed: the master
neither asks it anything nor sends it configuration updates, so instances and
DRBD devices left running there (a node set offline while it was unreachable,
then came back) would keep using their disks and addresses next to the copies
failed over elsewhere.  With the cluster parameter ``maintain_node_health``
set, every node's watcher asks the master candidates how they see the node
(``node_role``; Ganeti asks confd) and, when they agree that it is offline,
stops every instance running here and shuts down every DRBD device.

Only a consistent answer acts: the candidates holding the newest
configuration (highest serial) must agree; no answer, disagreement, an
unknown node or an online one changes nothing.  The master never does this
to itself (it cannot be offline).
"""

import logging
from dataclasses import dataclass
from typing import Callable

from corral import errors, netutils, ssconf

# Short: a watcher run must not hang on unreachable candidates.
ROLE_TIMEOUT = 5.0
SHUTDOWN_TIMEOUT = 0  # force: the node is offline, nobody waits for a clean shutdown


@dataclass(frozen=True)
class RoleAnswer:
    """One master candidate's view: config serial, the cluster flag, the node's state."""

    serial_no: int
    maintain: bool
    offline: bool | None  # None: the node is not in that candidate's configuration

    @classmethod
    def from_rpc(cls, data: object) -> "RoleAnswer | None":
        if not isinstance(data, dict) or not isinstance(data.get("serial_no"), int):
            return None
        offline = data.get("offline")
        return cls(data["serial_no"], bool(data.get("maintain_node_health")),
                   None if offline is None else bool(offline))


def decide(answers: dict[str, "RoleAnswer | None"]) -> tuple[bool, str]:
    """(shut everything down?, why) from the candidates' answers (None = no answer).

    Pure: the newest configuration's holders must agree, and say both that
    ``maintain_node_health`` is on and that this node is offline.
    """
    valid = {name: a for name, a in answers.items() if a is not None}
    if not valid:
        return False, "no master candidate answered"
    newest = max(a.serial_no for a in valid.values())
    views = {(a.maintain, a.offline) for a in valid.values() if a.serial_no == newest}
    if len(views) != 1:
        return False, "inconsistent answers from the master candidates"
    maintain, offline = views.pop()
    if not maintain:
        return False, "maintain_node_health is off"
    if offline is None:
        return False, "this node is not in the cluster configuration"
    if not offline:
        return False, "this node is online"
    holders = sorted(n for n, a in valid.items() if a.serial_no == newest)
    return True, "this node is offline per %s (configuration serial %d)" % (
        ", ".join(holders), newest)


@dataclass
class NodeActions:
    """What the duty does to this node (the real ones, or fakes in tests)."""

    list_instances: Callable[[], dict[str, str]]     # {name: hypervisor}
    stop_instance: Callable[[str, str], None]        # (hypervisor, name)
    drbd_minors: Callable[[], list[int]]
    drbd_down: Callable[[int], None]


def shut_down_everything(actions: NodeActions) -> tuple[list[str], list[int]]:
    """Stop every instance, then every DRBD minor; (instances, minors) stopped.

    Each failure is logged and the rest goes on; idempotent (a second run
    finds nothing left).
    """
    stopped, downed = [], []
    running = actions.list_instances()
    if running:
        logging.warning("Following instances should not be running, shutting them down: %s",
                        ", ".join(sorted(running)))
    for name, hv_name in sorted(running.items()):
        try:
            actions.stop_instance(hv_name, name)
            stopped.append(name)
        except errors.GenericError as err:
            logging.error("Cannot stop instance %s: %s", name, err)
    minors = actions.drbd_minors()
    if minors:
        logging.warning("Following DRBD minors should not be active, shutting them down: %s",
                        ", ".join(str(m) for m in minors))
    for minor in minors:
        try:
            actions.drbd_down(minor)
            downed.append(minor)
        except errors.GenericError as err:
            logging.error("Cannot shut down DRBD minor %d: %s", minor, err)
    return stopped, downed


def maintain(ask: Callable[[list[str], str], dict[str, object]], actions: NodeActions,
             store: ssconf.SimpleStore | None = None,
             my_name: str | None = None) -> tuple[list[str], list[int]] | None:
    """One run of the duty; what was stopped, or None when nothing had to be.

    ``ask(candidates, my_name)`` returns each candidate's ``node_role`` data
    (None or anything malformed for no answer).
    """
    store = store or ssconf.SimpleStore()
    my_name = my_name or netutils.get_hostname()
    if store.get_master_node() == my_name:
        return None
    candidates = [n for n in store.get_master_candidates() if n != my_name]
    answers = {n: RoleAnswer.from_rpc(d) for n, d in ask(candidates, my_name).items()}
    act, why = decide(answers)
    logging.log(logging.WARNING if act else logging.DEBUG, "Node health: %s", why)
    if not act:
        return None
    return shut_down_everything(actions)


# ---- the real node ----------------------------------------------------------------------------

def ask_candidates(candidates: list[str], my_name: str) -> dict[str, object]:
    """``node_role`` of every candidate in parallel (node certificate, ssconf addresses)."""
    from corral.rpc.client import RpcClient
    if not candidates:
        return {}
    store = ssconf.SimpleStore()
    ips, port = store.get_node_primary_ips(), store.get_noded_port()

    def resolve(name: str) -> tuple[str, int]:
        if name not in ips:
            raise errors.RemoteError("Node '%s' has no address in ssconf" % name)
        return ips[name], port
    with RpcClient.for_this_node(resolve) as rpc:
        results = rpc.call("node_role", candidates, {"node_name": my_name},
                           timeout=ROLE_TIMEOUT)
    return {n: (None if r.failed else r.data) for n, r in results.items()}


def real_actions() -> NodeActions:
    """The node's hypervisors (ssconf's list) and DRBD, in this process."""
    from corral.backend import instance as binstance
    from corral.storage import drbd
    from corral.utils import process

    def list_instances() -> dict[str, str]:
        out = {}
        for hv_name in ssconf.SimpleStore().get_hypervisor_list():
            for name in binstance.instance_list([hv_name]):
                out[name] = hv_name
        return out

    def drbd_down(minor: int) -> None:
        result = process.run_cmd(drbd.get_cmdgen().down_cmd(minor))
        if result.failed:
            raise errors.BlockDeviceError("drbd%d: %s" % (minor, result.describe()))

    return NodeActions(
        list_instances=list_instances,
        stop_instance=lambda hv, name: binstance.instance_shutdown(
            hv, name, timeout=SHUTDOWN_TIMEOUT, force=True),
        drbd_minors=drbd.used_minors, drbd_down=drbd_down)
