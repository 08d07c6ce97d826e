"""The watcher's duties on the master, one node group at a time (spec §11).

For each group: restart instances in ERROR_down (OP_INSTANCE_STARTUP, at
most ``MAXTRIES`` attempts per instance, counted in the group's state file
and forgotten once it runs again), clean up USER_down instances
(OP_INSTANCE_SHUTDOWN with admin_state_source=user), re-activate disks
after a node reboot (a changed boot id: instances with active disks having
that node as secondary, or as primary when they are not to be started), and
unless told otherwise run OP_GROUP_VERIFY_DISKS and activate the disks it
reports.  Every action is a job submitted through masterd and waited for,
so the watcher never bypasses locks, hooks or the configuration.
"""

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from corral import constants, opcodes
from corral.watcher_state import (WatcherState, instance_status_file, state_file,
                                  write_instance_status)

MAXTRIES = 5
BAD_STATES = frozenset([constants.INSTST_ERRORDOWN])
USER_DOWN = constants.INSTST_USERDOWN
HELPLESS_STATES = frozenset([constants.INSTST_NODEDOWN, constants.INSTST_NODEOFFLINE])
REASON_SOURCE = "gnt:watcher"


@dataclass
class InstanceInfo:
    name: str
    status: str
    pnode: str
    snodes: list[str] = field(default_factory=list)
    disks_active: bool = False
    admin_up: bool = False


@dataclass
class NodeInfo:
    name: str
    bootid: str | None
    offline: bool = False


class JobRunner(Protocol):
    def run(self, ops: list[opcodes.OpCode], what: str) -> bool:
        """Submit ``ops`` as one job and wait; True if it succeeded (errors are logged)."""


class LuxiRunner:
    """Jobs through the master daemon, tagged with the watcher's reason."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.last_result: list | None = None  # opcode results of the last successful job

    def run(self, ops: list[opcodes.OpCode], what: str) -> bool:
        from corral.client import base
        for op in ops:
            op.reason = list(op.reason or []) + [[REASON_SOURCE, what, time.time_ns()]]
        try:
            job_id = self.client.submit_job([op.to_dict() for op in ops])
            status, _opstatus, result = base.wait_job(job_id, self.client, None)
        except Exception as err:  # one failing action must not stop the watcher
            logging.error("%s: %s", what, err)
            return False
        if status != constants.JOB_STATUS_SUCCESS:
            logging.error("%s: job %s ended in status %s: %s", what, job_id, status, result)
            return False
        self.last_result = result
        return True


# ---- instances ---------------------------------------------------------------------------

def check_instances(runner: JobRunner, state: WatcherState,
                    instances: dict[str, InstanceInfo]) -> set[str]:
    """Restart ERROR_down and clean up USER_down instances; the names (re)started."""
    started: set[str] = set()
    for inst in sorted(instances.values(), key=lambda i: i.name):
        if inst.status not in BAD_STATES and inst.status != USER_DOWN:
            if state.restart_attempts(inst.name):
                state.forget_instance(inst.name)
                if inst.status not in HELPLESS_STATES:
                    logging.info("Restart of instance '%s' succeeded", inst.name)
            continue
        tries = state.restart_attempts(inst.name)
        if tries > MAXTRIES:
            logging.warning("Not restarting instance '%s', retries exhausted", inst.name)
            continue
        if tries == MAXTRIES:
            state.record_restart(inst.name)
            logging.error("Could not restart instance '%s' after %s attempts, giving up",
                          inst.name, MAXTRIES)
            continue
        if inst.status == USER_DOWN:
            logging.info("Cleaning up instance '%s' shut down by its user (attempt #%s)",
                         inst.name, tries + 1)
            runner.run([opcodes.OpInstanceShutdown(instance_name=inst.name,
                                                   admin_state_source="user")],
                       "Cleaning up instance %s" % inst.name)
        else:
            logging.info("Restarting instance '%s' (attempt #%s)", inst.name, tries + 1)
            if runner.run([opcodes.OpInstanceStartup(instance_name=inst.name)],
                          "Restarting instance %s" % inst.name):
                started.add(inst.name)
        state.record_restart(inst.name)
    return started


# ---- nodes and disks -------------------------------------------------------------------------

def rebooted_nodes(state: WatcherState, nodes: dict[str, NodeInfo]) -> set[str]:
    """Nodes whose boot id changed since the last run (the state is updated)."""
    out = set()
    for node in nodes.values():
        if not node.bootid:
            if not node.offline:
                logging.debug("Node '%s' missing boot ID, skipping its checks", node.name)
            continue
        if state.boot_id(node.name) != node.bootid:
            out.add(node.name)
            state.set_boot_id(node.name, node.bootid)
    return out


def disks_to_activate(instances: dict[str, InstanceInfo], rebooted: set[str],
                      started: set[str], offline: set[str]) -> list[str]:
    """Instances whose disks a node reboot deactivated and nobody else re-activates.

    Those with active disks and a rebooted secondary, or a rebooted primary
    when they are not admin up (an up one is restarted instead); not the ones
    just started, nor ones with a node offline.
    """
    out = []
    for inst in sorted(instances.values(), key=lambda i: i.name):
        if not inst.disks_active or inst.name in started or inst.status in HELPLESS_STATES:
            continue
        if offline.intersection([inst.pnode] + inst.snodes):
            continue
        if rebooted.intersection(inst.snodes) or \
                (inst.pnode in rebooted and not inst.admin_up):
            out.append(inst.name)
    return out


def activate_disks(runner: JobRunner, names: list[str], why: str) -> None:
    for name in names:
        logging.info("Activating disks for instance '%s' (%s)", name, why)
        runner.run([opcodes.OpInstanceActivateDisks(instance_name=name)],
                   "Activating disks of %s" % name)


def verify_disks(runner: Any, group_uuid: str, instances: dict[str, InstanceInfo],
                 offline: set[str], strict: bool) -> None:
    """OP_GROUP_VERIFY_DISKS, then activate the disks of the instances it names."""
    op = opcodes.OpGroupVerifyDisks(group_name=group_uuid, is_strict=strict,
                                    priority=constants.OP_PRIO_LOW)
    if not runner.run([op], "Verifying disks of group %s" % group_uuid):
        return
    result = getattr(runner, "last_result", None) or [[None, [], None]]
    need = result[0][1] if isinstance(result[0], list) and len(result[0]) > 1 else []
    names = [n for n in need if n in instances
             and instances[n].status not in HELPLESS_STATES
             and not offline.intersection([instances[n].pnode] + instances[n].snodes)]
    activate_disks(runner, names, "reported by verify-disks")


# ---- one group ----------------------------------------------------------------------------

def check_group(runner: JobRunner, group_uuid: str, instances: dict[str, InstanceInfo],
                nodes: dict[str, NodeInfo], verify: bool = True, strict: bool = True) -> None:
    """All per-group duties, with the group's state file loaded and saved around them."""
    path = state_file(group_uuid)
    state = WatcherState.load(path)
    started = check_instances(runner, state, instances)
    rebooted = rebooted_nodes(state, nodes)
    offline = {n.name for n in nodes.values() if n.offline}
    if rebooted:
        activate_disks(runner, disks_to_activate(instances, rebooted, started, offline),
                       "node rebooted")
    if verify:
        verify_disks(runner, group_uuid, instances, offline, strict)
    state.keep_only_instances(set(instances))
    state.save(path)
    write_instance_status(instance_status_file(group_uuid),
                          {i.name: i.status for i in instances.values()})
