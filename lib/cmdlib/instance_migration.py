"""Instance migration and failover (spec/hypervisors-storage.md §8): the LUs and the
failover and cleanup tasklets.  The live migration sequence itself is
:mod:`corral.cmdlib.instance_migration_live`.

Both LUs share one prerequisite check (``_plan``): the target (the DRBD
secondary, or ``-n`` for externally mirrored and local-disk templates), the
migration mode, memory on the target, and whether a requested migration has
to become a failover (instance down with ``allow_failover``,
``always_failover``, hypervisor that cannot migrate).  Locks: the instance,
then exclusively its nodes and the target at node and node-res level (all
nodes for ``--cleanup`` without a target, since the instance may be found
anywhere).  See doc/design-migration.md.
"""

from typing import Any, Callable

from corral import constants, errors, locking, objects
from corral.cmdlib import instance_mirror
from corral.cmdlib import instance_storage as ist
from corral.cmdlib import instance_utils as iu
from corral.cmdlib.base import expand_node
from corral.cmdlib.instance_migration_live import (LiveMigration, MigrationPlan, run_async,
                                                   set_primary, storage_migration_kind)
from corral.hypervisor import HYPERVISORS

Feedback = Callable[[str], None]
# Templates whose disks live on the primary only: migration copies them along.
DTS_LOCAL = frozenset([constants.DT_FILE, constants.DT_PLAIN])
_LEFTOVER = frozenset(["inmigrate", "postmigrate"])


class _MoveLU(iu.InstanceLU):
    """Common steps of LUInstanceMigrate and LUInstanceFailover."""

    LOCK_NODE_RES = True
    FAILOVER = False

    def expand_names(self) -> None:
        super().expand_names()
        if self.op.target_node and self.op.iallocator:
            raise errors.OpPrereqError("Give either a target node or an iallocator, not both",
                                       errors.ECODE_INVAL)
        self.target_node = expand_node(self.cfg, self.op.target_node) \
            if self.op.target_node else None
        if self.target_node is not None:
            self.op.target_node = self.target_node.name
            self.op.target_node_uuid = self.target_node.uuid
        self.allocator = self._allocator()

    def _allocator(self) -> str | None:
        """The allocator choosing the target: -I, else the cluster default when a
        template needing a target got none (Ganeti's CheckIAllocatorOrNode)."""
        if self.op.cleanup or self.target_node is not None:
            return None
        if self.op.iallocator:
            return self.op.iallocator
        inst = self.cfg.get_instance_by_name(self.inst_name)
        if inst is not None and inst.disk_template not in constants.DTS_INT_MIRROR:
            return self.cfg.get_cluster_info().default_iallocator or None
        return None

    def _what(self) -> str:
        return "failovers" if self.FAILOVER else "migrations"

    def lock_node_uuids(self, inst: objects.Instance) -> list[str]:
        nodes = list(inst.all_nodes)
        if self.target_node is not None and self.target_node.uuid not in nodes:
            nodes.append(self.target_node.uuid)
        return nodes

    def declare_locks(self, level: int) -> None:
        if (self.allocator or self.op.cleanup and self.target_node is None) and \
                level in (locking.LEVEL_NODE, locking.LEVEL_NODE_RES):
            self.needed_locks[level] = locking.ALL_SET
            return
        super().declare_locks(level)

    # ---- prerequisites ----------------------------------------------------------------

    def check_prereq(self) -> None:
        super().check_prereq()
        inst = self.instance
        self.failover = self.FAILOVER
        self.source = self.pnode
        self.target: objects.Node | None = None
        self.storage = False
        if inst.admin_state == constants.ADMINST_OFFLINE and not self.op.cleanup:
            raise errors.OpPrereqError("Instance '%s' is marked offline" % inst.name,
                                       errors.ECODE_STATE)
        if not self.op.cleanup:
            self._choose_kind()
        self._choose_target()
        self.live = self._mode() == "live"
        if not self.op.cleanup:
            self._check_target()

    def _choose_kind(self) -> None:
        """Migration or failover (Ganeti's fallback rules)."""
        if self.failover:
            return
        inst = self.instance
        be = iu.filled_beparams(self.cfg.get_cluster_info(), inst.beparams)
        cls = HYPERVISORS.get(inst.hypervisor)
        if inst.admin_state != constants.ADMINST_UP:
            if not self.op.allow_failover:
                raise errors.OpPrereqError("Instance %s is marked down or offline, cannot"
                                           " migrate" % inst.name, errors.ECODE_STATE)
            self.log_info("Instance is marked down or offline, fallback allowed, switching to"
                          " failover")
            self.failover = True
        elif be.get("always_failover"):
            self.log_info("Instance configured to always failover; fallback to failover")
            self.failover = True
        elif cls is None or not cls.CAN_MIGRATE:
            if not self.op.allow_failover:
                raise errors.OpPrereqError("Hypervisor %s cannot migrate instances" %
                                           inst.hypervisor, errors.ECODE_STATE)
            self.log_info("Hypervisor cannot migrate, fallback allowed, switching to failover")
            self.failover = True

    def _choose_target(self) -> None:
        inst = self.instance
        template = inst.disk_template
        what = "failovers" if self.failover else "migrations"
        if template in constants.DTS_INT_MIRROR:
            if not inst.secondary_nodes:
                raise errors.OpPrereqError("Instance %s has no secondary node" % inst.name,
                                           errors.ECODE_STATE)
            secondary = self.cfg.get_node_info(inst.secondary_nodes[0])
            if self.target_node is not None and self.target_node.uuid != secondary.uuid:
                raise errors.OpPrereqError(
                    "Instances with disk template %s cannot be migrated to arbitrary nodes:"
                    " only to the secondary node %s" % (template, secondary.name),
                    errors.ECODE_INVAL)
            self.target = secondary
            return
        local = template in DTS_LOCAL and inst.disks
        if local and (self.failover or not storage_migration_kind(inst.hypervisor)) \
                and not self.op.cleanup:
            raise errors.OpPrereqError("Instance's disk layout '%s' does not allow %s (use"
                                       " 'gnt-instance move')" % (template, what),
                                       errors.ECODE_STATE)
        if template not in constants.DTS_EXT_MIRROR and not local:
            raise errors.OpPrereqError("Instance's disk layout '%s' does not allow %s" %
                                       (template, what), errors.ECODE_STATE)
        self.storage = bool(local)
        if self.target_node is None:
            if self.op.cleanup:
                return
            if not self.allocator:
                raise errors.OpPrereqError("No target node given for instance %s with disk"
                                           " template %s (use -n NODE or -I ALLOCATOR)" %
                                           (inst.name, template), errors.ECODE_INVAL)
            self.target_node = self._allocate()
        self.target = self.target_node

    def _allocate(self) -> objects.Node:
        """Ask the allocator for a node (relocate request), then keep only the locks
        of the nodes involved."""
        from corral import iallocator
        inst = self.instance
        result = iallocator.run_for_lu(
            self, self.allocator, iallocator.RelocRequest(inst.name, [self.source.name]),
            "a target node for instance %s" % inst.name)
        node = self.cfg.get_node_by_name(result[0])
        self.log_info("Selected nodes for instance %s via iallocator %s: %s", inst.name,
                      iallocator.resolve_name(self.cfg, self.allocator), node.name)
        keep = set(inst.all_nodes) | {node.uuid}
        glm = getattr(self.context, "glm", None)
        for level in (locking.LEVEL_NODE, locking.LEVEL_NODE_RES):
            if glm is not None and self.owned(level):
                extra = sorted(set(self.owned(level)) - keep)
                if extra:
                    glm.release(self.proc.owner, level, extra)
        return node

    def _mode(self) -> str:
        if self.FAILOVER:
            return "non-live"
        if self.op.live is not None and self.op.mode is not None:
            raise errors.OpPrereqError("Only one of the 'live' and 'mode' parameters can be"
                                       " given", errors.ECODE_INVAL)
        if self.op.live is not None:
            return "live" if self.op.live else "non-live"
        if self.op.mode is not None:
            return self.op.mode
        hvp = iu.filled_hvparams(self.cfg.get_cluster_info(), self.instance.hypervisor,
                                 self.instance.os, self.instance.hvparams)
        return hvp.get("migration_mode") or "live"

    def _check_target(self) -> None:
        """Target usable; memory (migration: minmem now, ballooning later) and bridges."""
        inst, target = self.instance, self.target
        assert target is not None
        if target.uuid == inst.primary_node:
            raise errors.OpPrereqError("Instance %s is already on node %s" %
                                       (inst.name, target.name), errors.ECODE_INVAL)
        iu.check_node_online(self.cfg, target.uuid, "as target")
        if target.drained:
            raise errors.OpPrereqError("Can't use drained node %s as target" % target.name,
                                       errors.ECODE_STATE)
        if not target.vm_capable:
            raise errors.OpPrereqError("Can't use non-vm_capable node %s as target" %
                                       target.name, errors.ECODE_STATE)
        if not self.failover and self.source.offline:
            raise errors.OpPrereqError("Can't migrate from offline node %s (use failover)" %
                                       self.source.name, errors.ECODE_STATE)
        self.target_free_mem = None
        self.source_info: dict | None = None
        if self.failover and inst.admin_state != constants.ADMINST_UP:
            return
        cluster = self.cfg.get_cluster_info()
        be = iu.filled_beparams(cluster, inst.beparams)
        needed = be["maxmem"] if self.failover else be["minmem"]
        nics = [iu.nic_rpc(cluster, n) for n in inst.nics]
        running = None
        if self.failover:
            self.target_free_mem = _free_memory(self, target.name, inst.hypervisor, nics)
        else:  # both questions at once: two nodes, one round trip
            src = run_async(self.rpc.call_one, "migration_info", self.source.name,
                            {"instance": iu.instance_rpc(self.cfg, inst)})
            try:
                self.target_free_mem = _free_memory(self, target.name, inst.hypervisor, nics)
            finally:
                res = src.result()
            res.raise_if_failed("Cannot get the state of instance %s" % inst.name)
            self.source_info = res.data
            running = bool(res.data.get("running"))
        if needed > self.target_free_mem:
            raise errors.OpPrereqError("Not enough memory on node %s for %s instance %s:"
                                       " needed %s MiB, available %s MiB" %
                                       (target.name, "starting" if self.failover else
                                        "migrating", inst.name, needed, self.target_free_mem),
                                       errors.ECODE_NORES)
        if running is False:
            if not self.op.allow_failover:
                raise errors.OpPrereqError("Instance %s is not running on node %s, cannot"
                                           " migrate" % (inst.name, self.source.name),
                                           errors.ECODE_STATE)
            self.log_info("Instance is not running, fallback allowed, switching to failover")
            self.failover = True
            if self.storage:
                raise errors.OpPrereqError("Instance's disk layout '%s' does not allow"
                                           " failovers" % inst.disk_template,
                                           errors.ECODE_STATE)

    # ---- hooks (spec/hooks.md §3: the state before the move, in both phases) ----------

    def _move_env(self) -> dict[str, Any]:
        inst = self.instance
        target = self.target.name if self.target is not None else ""
        env = {"OLD_PRIMARY": self.source.name, "NEW_PRIMARY": target,
               "OLD_SECONDARY": "", "NEW_SECONDARY": ""}
        if inst.disk_template in constants.DTS_INT_MIRROR:
            env["OLD_SECONDARY"] = target
            env["NEW_SECONDARY"] = self.source.name
        return env

    def build_hooks_env(self) -> dict[str, Any]:
        if not hasattr(self, "_hooks_env"):
            self._hooks_env = super().build_hooks_env()
        return dict(self._hooks_env)

    def _hook_nodes(self, with_primary: bool) -> list[str]:
        nodes = [self.master_uuid] + list(self.instance.secondary_nodes)
        if with_primary:
            nodes.append(self.source.uuid)
        if self.target is not None:
            nodes.append(self.target.uuid)
        return list(dict.fromkeys(nodes))

    # ---- execution ----------------------------------------------------------------------

    def exec(self, feedback_fn: Feedback) -> None:
        if self.op.cleanup:
            cleanup(self, feedback_fn)
        elif self.failover:
            failover(self, feedback_fn)
        else:
            plan = MigrationPlan(self.instance, self.source, self.target, self.live,
                                 storage=self.storage,
                                 allow_runtime_changes=getattr(self.op, "allow_runtime_changes",
                                                               True),
                                 ignore_hvversions=getattr(self.op, "ignore_hvversions", False),
                                 target_free_mem=self.target_free_mem,
                                 source_info=self.source_info)
            LiveMigration(self, plan, feedback_fn).run()


class LUInstanceMigrate(_MoveLU):
    """Live (or non-live) migration; falls back to failover where allowed."""

    HPATH = "instance-migrate"

    def extra_hooks_env(self) -> dict[str, Any]:
        env = {"MIGRATE_LIVE": self.live, "MIGRATE_CLEANUP": self.op.cleanup,
               "ALLOW_RUNTIME_CHANGES": self.op.allow_runtime_changes}
        env.update(self._move_env())
        return env

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        nodes = self._hook_nodes(with_primary=True)
        return nodes, list(nodes)


class LUInstanceFailover(_MoveLU):
    """Stop on the primary (if reachable), start on the target."""

    HPATH = "instance-failover"
    FAILOVER = True

    def extra_hooks_env(self) -> dict[str, Any]:
        env = {"IGNORE_CONSISTENCY": self.op.ignore_consistency,
               "SHUTDOWN_TIMEOUT": self.op.shutdown_timeout,
               "FAILOVER_CLEANUP": self.op.cleanup}
        env.update(self._move_env())
        return env

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        return self._hook_nodes(with_primary=False), self._hook_nodes(with_primary=True)


def _free_memory(lu: iu.InstanceLU, node: str, hv: str, nics: list[dict]) -> int:
    """Free memory (MiB) of ``node``; OpPrereqError for missing bridges or no answer."""
    bridges = sorted({n["link"] for n in nics if n.get("mode") == constants.NIC_MODE_BRIDGED})
    res = lu.rpc.call_one("instance_node_checks", node,
                          {"hypervisor": hv, "bridges": bridges, "memory": True})
    res.raise_if_failed("Cannot check node %s" % node)
    data = res.data or {}
    if data.get("missing_bridges"):
        raise errors.OpPrereqError("One or more target bridges %s does not exist on"
                                   " destination node '%s'" %
                                   (", ".join(data["missing_bridges"]), node),
                                   errors.ECODE_ENVIRON)
    if not isinstance(data.get("memory_free"), int):
        raise errors.OpPrereqError("Can't compute free memory on node %s, result was '%s'" %
                                   (node, data.get("memory_free")), errors.ECODE_ENVIRON)
    return data["memory_free"]


# ---- failover -------------------------------------------------------------------------------

def failover(lu: _MoveLU, feedback: Feedback) -> None:
    """Spec §8 failover: stop on the source (if it answers), move, start on the target.

    A source that cannot be reached is not asked again (one timeout, not one
    per step).  The configuration changes once the source is known stopped
    (or given up with ``ignore_consistency``); a failed start on the target
    leaves the instance there (config moved) with its disks deactivated.
    """
    inst, source, target = lu.instance, lu.source, lu.target
    ignore = getattr(lu.op, "ignore_consistency", False) or source.offline
    timeout = int(getattr(lu.op, "shutdown_timeout", 120))
    feedback("Failover instance %s" % inst.name)
    reachable = not source.offline
    if inst.disk_template == constants.DT_MIRROR and \
            inst.admin_state == constants.ADMINST_UP:
        _check_target_consistency(lu, inst, ignore, ask_primary=reachable)
    if reachable:
        feedback("* shutting down instance on source node")
        res = lu.rpc.call_one("instance_shutdown", source.name,
                              {"hypervisor": inst.hypervisor, "name": inst.name,
                               "timeout": timeout})
        if res.failed:
            reachable = res.error_class is not None
            msg = "Could not shutdown instance %s on node %s" % (inst.name, source.name)
            if not ignore:
                raise errors.OpExecError("%s: %s" % (msg, res.fail_msg))
            lu.log_warning("%s, proceeding anyway. Please make sure node %s is down. Error"
                           " details: %s", msg, source.name, res.fail_msg)
    drbd = inst.disk_template in constants.DTS_INT_MIRROR
    if inst.disks and (reachable or drbd):
        feedback("* deactivating the instance's disks on source node")
        nodes = ([source.name] if reachable else []) + ([target.name] if drbd else [])
        results = lu.rpc.call("blockdev_shutdown", nodes,
                              {"disks": ist._rpc_disks(lu, inst.disks)})
        for node, res in results.items():
            if not res.failed:
                continue
            if not ignore and node == source.name:
                raise errors.OpExecError("Can't shut down the instance's disks: %s" %
                                         res.fail_msg)
            lu.log_warning("Could not shut down the disks on node %s: %s", node, res.fail_msg)
    set_primary(inst, source.uuid, target.uuid)
    # One configuration write in the common case: a failed start writes again.
    inst.disks_active = bool(inst.disks) and inst.admin_state == constants.ADMINST_UP
    lu.cfg.update(inst)
    if inst.admin_state == constants.ADMINST_UP:
        _start_on_target(lu, inst, target, feedback, with_secondaries=drbd and reachable)


def _check_target_consistency(lu: _MoveLU, inst: objects.Instance, ignore: bool,
                              ask_primary: bool) -> None:
    """Only a complete copy on the target may become the primary (unless ``ignore``).

    The running primary knows best (its QEMU's jobs); a dead one leaves the
    secondary's own record of whether its copy is complete.
    """
    for disk, st in zip(inst.disks, instance_mirror.status(lu, inst, ask_primary=ask_primary)):
        if st is not None and not st.get("is_degraded") and st.get("ldisk_status") == "okay":
            continue
        if not ignore:
            raise errors.OpExecError("Disk %s is degraded on target node, aborting failover" %
                                     disk.iv_name)
        lu.log_warning("Disk %s is degraded on target node, proceeding anyway", disk.iv_name)


def _start_on_target(lu: _MoveLU, inst: objects.Instance, target: objects.Node,
                     feedback: Feedback, with_secondaries: bool) -> None:
    """Assemble (DRBD: the reachable secondary too, not opened) and start on ``target``."""
    if inst.disks:
        feedback("* activating the instance's disks on target node %s" % target.name)
        try:
            if with_secondaries:
                ist.assemble_disks(lu, inst)
            else:
                lu.rpc.call_one("blockdev_assemble", target.name,
                                {"disks": ist._rpc_disks(lu, inst.disks)}).raise_if_failed(
                    "Cannot activate block devices of instance %s" % inst.name)
        except errors.GenericError as err:
            ist.shutdown_disks(lu, inst, ignore_failures=True)
            ist.set_disks_active(lu, inst, False)
            raise errors.OpExecError("Can't activate the instance's disks: %s" %
                                     (err.args[0] if err.args else err)) from err
    feedback("* starting the instance on the target node %s" % target.name)
    res = lu.rpc.call_one("instance_start", target.name,
                          {"instance": iu.instance_rpc(lu.cfg, inst),
                           "disks": ist._rpc_disks(lu, inst.disks)})
    if res.failed:
        ist.shutdown_disks(lu, inst, ignore_failures=True)
        ist.set_disks_active(lu, inst, False)
        raise errors.OpExecError("Could not start instance %s on node %s: %s" %
                                 (inst.name, target.name, res.fail_msg))


# ---- cleanup after a crashed migration ------------------------------------------------------

def cleanup(lu: _MoveLU, feedback: Feedback) -> None:
    """Find where the instance really runs (exactly one node), repair the config.

    Leftovers are stopped: a target still waiting for the memory
    (``inmigrate``) and a source whose guest left (``postmigrate``).  With
    local disks the copies on the node the guest does not run on are removed.
    """
    inst = lu.instance
    feedback("* checking where the instance actually runs")
    nodes = _cleanup_candidates(lu)
    results = lu.rpc.call("instance_migration_state", [n.name for n in nodes],
                          {"hypervisor": inst.hypervisor, "name": inst.name})
    real, leftovers, silent = [], [], []
    for node in nodes:
        res = results[node.name]
        if res.failed:
            silent.append(node.name)
        elif res.data.get("running"):
            (leftovers if res.data.get("status") in _LEFTOVER else real).append(
                (node, res.data.get("status")))
    arrived = _arrived(real, leftovers)
    if arrived is not None:
        real, leftovers = [arrived], [x for x in leftovers if x is not arrived]
    if len(real) != 1:
        where = ", ".join(n.name for n, _s in real) or "no node"
        raise errors.OpExecError(
            "Instance %s seems to be running on %s%s; please fix it manually" %
            (inst.name, where, (" (no answer from %s)" % ", ".join(silent)) if silent else ""))
    node = real[0][0]
    spec = iu.instance_rpc(lu.cfg, inst)
    if arrived is not None:
        feedback("* the memory arrived on node %s, finishing the migration there" % node.name)
        lu.rpc.call_one("finalize_migration_dst", node.name,
                        {"instance": spec, "info": "", "success": True}).raise_if_failed(
            "Cannot finish the migration of %s on node %s" % (inst.name, node.name))
    for other, status in leftovers:
        feedback("* stopping the leftover copy (%s) on node %s" % (status, other.name))
        proc, args = (("finalize_migration_dst", {"info": "", "success": False})
                      if status == "inmigrate" else
                      ("finalize_migration_src", {"success": True, "live": True}))
        lu.rpc.call_one(proc, other.name, dict(args, instance=spec)).raise_if_failed(
            "Cannot stop the leftover copy of %s" % inst.name)
    old = lu.cfg.get_node_info(inst.primary_node)
    if node.uuid == inst.primary_node:
        feedback("* instance confirmed to be running on its primary node (%s)" % node.name)
        stale = [n for n, _s in leftovers]
    else:
        feedback("* instance running on node %s, updating config" % node.name)
        set_primary(inst, inst.primary_node, node.uuid)
        lu.cfg.update(inst)
        stale = [old] if old is not None else []
    if inst.disk_template in DTS_LOCAL and inst.disks:
        for other in stale:
            if other.uuid == node.uuid:
                continue
            res = lu.rpc.call_one("blockdev_remove", other.name,
                                  {"disks": ist._rpc_disks(lu, inst.disks)})
            if res.failed:
                lu.log_warning("Could not remove the stale disk copies on node %s: %s",
                               other.name, res.fail_msg)
    feedback("* done")


def _arrived(real: list, leftovers: list) -> Any:
    """The waiting target of a migration whose source already sent everything.

    No copy runs for real, one node is ``postmigrate`` (its guest left) and one
    ``inmigrate``: the state is complete on the latter (the crash came between
    the end of the transfer and finalize).  None otherwise.
    """
    states = [s for _n, s in leftovers]
    if real or states.count("postmigrate") != 1 or states.count("inmigrate") != 1:
        return None
    return next(x for x in leftovers if x[1] == "inmigrate")


def _cleanup_candidates(lu: _MoveLU) -> list[objects.Node]:
    """The primary and the target, or every online vm-capable node without a target."""
    inst = lu.instance
    if lu.target is not None:
        uuids = list(dict.fromkeys(list(inst.all_nodes) + [lu.target.uuid]))
    else:
        uuids = lu.cfg.get_node_list()
    nodes = [lu.cfg.get_node_info(u) for u in uuids]
    return [n for n in nodes if n is not None and not n.offline and n.vm_capable]
