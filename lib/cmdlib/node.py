"""Logical units for nodes: add, remove, modify (roles and flags, spec §10).

Roles: a node is at most one of master candidate, drained, offline; setting
one clears the others.  The cluster keeps ``candidate_pool_size`` candidates
among the online, undrained, master-capable nodes: a new or re-onlined node
promotes itself when the pool is short, and demoting a candidate below the
pool needs ``auto_promote`` (another node is promoted) or ``force``.

Node work is RPC: joining a node goes through the master's own node daemon
(``node_join``: SSH with paramiko), leaving through the node's (``node_leave``).
"""

import re
from typing import Callable

from corral import config, constants, errors, locking, netutils, objects
from corral.cmdlib.base import LogicalUnit, expand_node

ROLE_CANDIDATE, ROLE_DRAINED, ROLE_OFFLINE, ROLE_REGULAR = "candidate", "drained", "offline", \
    "regular"
# role -> (master_candidate, drained, offline)
ROLE_FLAGS = {ROLE_CANDIDATE: (True, False, False), ROLE_DRAINED: (False, True, False),
              ROLE_OFFLINE: (False, False, True), ROLE_REGULAR: (False, False, False)}
FLAG_NAMES = ("master_candidate", "drained", "offline")
_HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}"
                          r"[a-z0-9])?)*\.?$", re.I)


# ---- the candidate pool -------------------------------------------------------------------

def _eligible(node: objects.Node) -> bool:
    return node.master_capable and not node.offline and not node.drained


def candidate_stats(cfg, exceptions: list[str] = ()) -> tuple[int, int]:
    """(candidates now, candidates wanted), ignoring the nodes in ``exceptions`` (UUIDs).

    The master counts as a candidate; wanted = min(pool size, eligible nodes).
    """
    pool = cfg.get_cluster_info().candidate_pool_size
    master = cfg.get_master_node()
    now = eligible = 0
    for node in cfg.get_all_nodes().values():
        if node.uuid in exceptions:
            continue
        if node.master_candidate or node.uuid == master:
            now += 1
        if _eligible(node) or node.uuid == master:
            eligible += 1
    return now, min(pool, eligible)


def should_self_promote(cfg, exceptions: list[str] = ()) -> bool:
    """True if a node (not yet counted) joining the pool is wanted (Ganeti's rule)."""
    now, should = candidate_stats(cfg, exceptions)
    return now < min(should + 1, cfg.get_cluster_info().candidate_pool_size)


def adjust_candidate_pool(cfg, exceptions: list[str], feedback: Callable[[str], None]
                          ) -> list[str]:
    """Promote eligible nodes (by name) until the pool is full; the promoted names."""
    now, should = candidate_stats(cfg, exceptions)
    promoted = []
    for node in sorted(cfg.get_all_nodes().values(), key=lambda n: n.name):
        if now >= should:
            break
        if node.uuid in exceptions or node.master_candidate or not _eligible(node):
            continue
        node.master_candidate = True
        cfg.update(node)
        promoted.append(node.name)
        now += 1
    if promoted:
        feedback("Promoted nodes to master candidate role: %s" % ", ".join(promoted))
    return promoted


def node_role(node: objects.Node) -> str:
    if node.master_candidate:
        return ROLE_CANDIDATE
    if node.drained:
        return ROLE_DRAINED
    if node.offline:
        return ROLE_OFFLINE
    return ROLE_REGULAR


def check_ndparams(ndparams: dict) -> dict:
    from corral.cmdlib.cluster import NDPARAMS_DEFAULTS
    unknown = set(ndparams) - set(NDPARAMS_DEFAULTS)
    if unknown:
        raise errors.OpPrereqError("Unknown node parameters: %s (known: %s)" %
                                   (", ".join(sorted(unknown)),
                                    ", ".join(sorted(NDPARAMS_DEFAULTS))), errors.ECODE_INVAL)
    return dict(ndparams)


def _check_ip(ip: str, what: str) -> None:
    if not netutils.is_valid_ip4(ip):
        raise errors.OpPrereqError("Invalid %s IP address '%s'" % (what, ip), errors.ECODE_INVAL)


def _ssh_port(lu: LogicalUnit, group_uuid: str, ndparams: dict) -> int:
    from corral.cmdlib.cluster import filled_ndparams
    params = filled_ndparams(lu.cfg.get_cluster_info())
    group = lu.cfg.get_node_group(group_uuid)
    params.update(group.ndparams if group else {})
    params.update(ndparams)
    return int(params.get("ssh_port", 22))


# ---- add ------------------------------------------------------------------------------------

class LUNodeAdd(LogicalUnit):
    """Join a node: SSH setup (via the master's noded), verify its daemon, add to config."""

    HPATH = "node-add"
    HTYPE = constants.HTYPE_NODE
    REQ_BGL = True

    def check_arguments(self) -> None:
        if not _HOSTNAME_RE.match(self.op.node_name):
            raise errors.OpPrereqError("Invalid node name '%s'" % self.op.node_name,
                                       errors.ECODE_INVAL)
        for ip, what in ((self.op.primary_ip, "primary"), (self.op.secondary_ip, "secondary")):
            if ip:
                _check_ip(ip, what)

    def expand_names(self) -> None:
        try:
            self.node_name, ip = netutils.resolve(self.op.node_name)
        except errors.ResolverError as err:
            raise errors.OpPrereqError(err.args[0], errors.ECODE_RESOLVER) from None
        self.primary_ip = self.op.primary_ip or ip
        self.secondary_ip = self.op.secondary_ip or self.primary_ip

    def hooks_target(self) -> str:
        return self.node_name

    def build_hooks_env(self) -> dict:
        return {"NODE_NAME": self.node_name, "NODE_PIP": self.primary_ip,
                "NODE_SIP": self.secondary_ip, "MASTER_CAPABLE": self.master_capable,
                "VM_CAPABLE": self.vm_capable}

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        """Pre: the existing nodes; post: those and the new node (spec/hooks.md §3).

        The new node's UUID is chosen here (kept by exec), so the post phase,
        which resolves names after exec, reaches it once it is configured.
        """
        nodes = self.cfg.get_node_list()
        if self.existing is not None:
            return nodes, list(nodes)
        if getattr(self, "new_uuid", None) is None:
            self.new_uuid = config.new_uuid()
        return nodes, list(nodes) + [self.new_uuid]

    def check_prereq(self) -> None:
        existing = self.cfg.get_node_by_name(self.node_name)
        if existing is not None and not self.op.readd:
            raise errors.OpPrereqError("Node %s is already in the configuration" %
                                       self.node_name, errors.ECODE_EXISTS)
        if existing is None and self.op.readd:
            raise errors.OpPrereqError("Node %s is not in the configuration" % self.node_name,
                                       errors.ECODE_NOENT)
        if existing is not None and existing.uuid == self.master_uuid:
            raise errors.OpPrereqError("The master node cannot be re-added", errors.ECODE_INVAL)
        self.existing = existing
        for node in self.cfg.get_all_nodes().values():
            if node is existing:
                continue
            if {self.primary_ip, self.secondary_ip} & {node.primary_ip, node.secondary_ip}:
                raise errors.OpPrereqError("New node ip address(es) conflict with existing"
                                           " node %s" % node.name, errors.ECODE_NOTUNIQUE)
        self.group_uuid = (existing.group if existing is not None and self.op.group is None
                           else self.cfg.lookup_node_group(self.op.group))
        old = existing or objects.Node()
        self.master_capable = (self.op.master_capable if self.op.master_capable is not None
                               else old.master_capable)
        self.vm_capable = (self.op.vm_capable if self.op.vm_capable is not None
                           else old.vm_capable)
        self.ndparams = check_ndparams(self.op.ndparams or (old.ndparams if existing else {}))

    def exec(self, feedback_fn: Callable[[str], None]) -> None:
        if self.op.node_setup:
            self._setup_over_ssh(feedback_fn)
        self._verify_node_daemon()
        from corral.cmdlib import node_storage  # storage checks build on the node LUs
        for warning in node_storage.storage_warnings(self, self.primary_ip):
            self.log_warning(warning)
        exceptions = [self.existing.uuid] if self.existing is not None else []
        candidate = self.master_capable and should_self_promote(self.cfg, exceptions)
        node = self.existing or objects.Node(name=self.node_name)
        if self.existing is None and getattr(self, "new_uuid", None):
            node.uuid = self.new_uuid
        node.primary_ip, node.secondary_ip = self.primary_ip, self.secondary_ip
        node.group, node.ndparams = self.group_uuid, self.ndparams
        node.master_capable, node.vm_capable = self.master_capable, self.vm_capable
        node.master_candidate, node.drained, node.offline = candidate, False, False
        node.hv_state_static = dict(self.op.hv_state or node.hv_state_static)
        node.disk_state_static = dict(self.op.disk_state or node.disk_state_static)
        if self.existing is not None:
            self.cfg.update(node)
        else:
            self.cfg.add_node(node)
        feedback_fn("Node %s added to the cluster as %s" %
                    (self.node_name, "master candidate" if candidate else "regular node"))

    def _setup_over_ssh(self, feedback_fn: Callable[[str], None]) -> None:
        feedback_fn("Setting up node %s over SSH" % self.node_name)
        master = self.cfg.get_master_node_name()
        res = self.rpc.call_one("node_join", master, {
            "node_name": self.node_name, "node_ip": self.primary_ip,
            "ssh_port": _ssh_port(self, self.group_uuid, self.ndparams),
            "ssh_key_check": bool(self.op.ssh_key_check), "readd": bool(self.op.readd)})
        if res.failed:
            ecode = (errors.ECODE_STATE if "member of another cluster" in res.fail_msg
                     else errors.ECODE_ENVIRON)
            raise errors.OpPrereqError("Cannot add node %s: %s" % (self.node_name, res.fail_msg),
                                       ecode)
        reported = (res.data or {}).get("hostname")
        if reported and reported != self.node_name:
            raise errors.OpPrereqError(
                "Node %s calls itself '%s' (its hostname or CORRAL_HOSTNAME); fix its name"
                " first" % (self.node_name, reported), errors.ECODE_ENVIRON)

    def _verify_node_daemon(self) -> None:
        """The node daemon at the primary IP speaks our protocol, for this cluster."""
        ip = self.primary_ip
        res = self.rpc.call_one("version", ip, {}, timeout=30.0)
        if res.failed:
            raise errors.OpPrereqError(
                "The node daemon of %s (%s) cannot be used by this cluster: %s" %
                (self.node_name, ip, res.fail_msg), errors.ECODE_ENVIRON)
        if res.data != constants.PROTOCOL_VERSION:
            raise errors.OpPrereqError("Node %s speaks protocol %s, the master %s" %
                                       (self.node_name, res.data, constants.PROTOCOL_VERSION),
                                       errors.ECODE_ENVIRON)
        info = self.rpc.call_one("get_master_info", ip, {}, timeout=30.0)
        cluster = self.cfg.get_cluster_name()
        if info.failed or (info.data or {}).get("cluster_name") != cluster:
            raise errors.OpPrereqError(
                "Node %s does not consider itself part of cluster %s: %s" %
                (self.node_name, cluster, info.fail_msg or "it belongs to '%s'" %
                 (info.data or {}).get("cluster_name")), errors.ECODE_ENVIRON)


# ---- remove ----------------------------------------------------------------------------------

class LUNodeRemove(LogicalUnit):
    """Remove a node without instances; it forgets the cluster and stops its daemons."""

    HPATH = "node-remove"
    HTYPE = constants.HTYPE_NODE
    REQ_BGL = True

    def expand_names(self) -> None:
        self.node = expand_node(self.cfg, self.op.node_name)

    def hooks_target(self) -> str:
        return self.node.name

    def build_hooks_env(self) -> dict:
        return {"NODE_NAME": self.node.name}

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        nodes = [u for u in self.cfg.get_node_list() if u != self.node.uuid]
        return nodes, list(nodes)

    def check_prereq(self) -> None:
        if self.node.uuid == self.master_uuid:
            raise errors.OpPrereqError("Node is the master node, failover to another node is"
                                       " required", errors.ECODE_INVAL)
        for inst in self.cfg.get_all_instances().values():
            if self.node.uuid in inst.all_nodes:
                raise errors.OpPrereqError("Instance %s is still running on the node, please"
                                           " remove first" % inst.name, errors.ECODE_INVAL)

    def exec(self, feedback_fn: Callable[[str], None]) -> None:
        node = self.node
        was_candidate = node.master_candidate
        self.cfg.remove_node(node.uuid)
        if was_candidate:
            adjust_candidate_pool(self.cfg, [], feedback_fn)
        if node.offline:
            return
        # Gone from the configuration: reached by address, before it forgets the cluster.
        self.proc.run_post_hooks_on(self, [node.primary_ip])
        res = self.rpc.call_one("node_leave", node.primary_ip, {}, timeout=30.0)
        if res.failed:
            feedback_fn("WARNING: Errors encountered on the remote node while leaving the"
                        " cluster: %s" % res.fail_msg)


# ---- modify ----------------------------------------------------------------------------------

class LUNodeSetParams(LogicalUnit):
    """Change a node's role and flags (spec/hypervisors-storage.md §10) and parameters."""

    HPATH = "node-modify"
    HTYPE = constants.HTYPE_NODE
    _CHANGES = ("master_candidate", "offline", "drained", "master_capable", "vm_capable",
                "secondary_ip", "ndparams", "powered", "hv_state", "disk_state")

    def check_arguments(self) -> None:
        if all(getattr(self.op, name) is None for name in self._CHANGES):
            raise errors.OpPrereqError("Please pass at least one modification",
                                       errors.ECODE_INVAL)
        if sum(1 for f in FLAG_NAMES if getattr(self.op, f)) > 1:
            raise errors.OpPrereqError("Can't set the node into more than one state at the"
                                       " same time", errors.ECODE_INVAL)
        if self.op.secondary_ip:
            _check_ip(self.op.secondary_ip, "secondary")

    def expand_names(self) -> None:
        self.node = expand_node(self.cfg, self.op.node_name)
        self.needed_locks[locking.LEVEL_NODE] = [self.node.uuid]

    def hooks_target(self) -> str:
        return self.node.name

    def build_hooks_env(self) -> dict:
        return {"MASTER_CANDIDATE": self.op.master_candidate, "OFFLINE": self.op.offline,
                "DRAINED": self.op.drained, "MASTER_CAPABLE": self.op.master_capable,
                "VM_CAPABLE": self.op.vm_capable}

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        nodes = [self.master_uuid, self.node.uuid]
        # A node being set offline is not contacted any more, not even for post hooks.
        return nodes, [self.master_uuid] if self.op.offline else list(nodes)

    def check_prereq(self) -> None:
        node, op = self.node, self.op
        is_master = node.uuid == self.master_uuid
        if is_master and (op.master_candidate is False or op.offline or op.drained):
            raise errors.OpPrereqError("The master role can be changed only via master"
                                       " failover", errors.ECODE_INVAL)
        if is_master and op.master_capable is False:
            raise errors.OpPrereqError("The master node must remain master capable",
                                       errors.ECODE_INVAL)
        self.old_role = node_role(node)
        self.new_role = self._new_role()
        self.promote_others = False
        if self.old_role == ROLE_CANDIDATE and self.new_role != ROLE_CANDIDATE:
            remaining, should = candidate_stats(self.cfg, [node.uuid])
            if remaining < should:
                if not (op.auto_promote or op.force):
                    raise errors.OpPrereqError(
                        "Not enough master candidates (desired %d, new value will be %d);"
                        " use --auto-promote to promote another node" % (should, remaining),
                        errors.ECODE_STATE)
                self.promote_others = bool(op.auto_promote)
        if self.old_role == ROLE_OFFLINE and self.new_role != ROLE_OFFLINE:
            self._check_reachable()
        if op.vm_capable is False and any(self.cfg.get_node_instances(node.uuid)):
            raise errors.OpPrereqError("Node %s hosts instances, cannot unset the vm_capable"
                                       " flag" % node.name, errors.ECODE_STATE)
        if op.secondary_ip:
            for other in self.cfg.get_all_nodes().values():
                if other.uuid != node.uuid and op.secondary_ip in (other.primary_ip,
                                                                   other.secondary_ip):
                    raise errors.OpPrereqError("Secondary IP %s is already used by node %s" %
                                               (op.secondary_ip, other.name),
                                               errors.ECODE_NOTUNIQUE)
        if op.ndparams is not None:
            from corral.cmdlib.cluster import _merge_params
            self.new_ndparams = check_ndparams(_merge_params(node.ndparams, op.ndparams))

    def _new_role(self) -> str:
        node, op = self.node, self.op
        capable = op.master_capable if op.master_capable is not None else node.master_capable
        role = self.old_role
        if op.offline:
            role = ROLE_OFFLINE
        elif op.drained:
            role = ROLE_DRAINED
        elif op.master_candidate:
            if not capable:
                raise errors.OpPrereqError("Node %s is not master capable, cannot become master"
                                           " candidate" % node.name, errors.ECODE_STATE)
            role = ROLE_CANDIDATE
        elif ((op.offline is False and role == ROLE_OFFLINE) or
              (op.drained is False and role == ROLE_DRAINED) or
              (op.master_candidate is False and role == ROLE_CANDIDATE)):
            role = ROLE_REGULAR
            if (op.master_candidate is None and capable and
                    should_self_promote(self.cfg, [node.uuid])):
                role = ROLE_CANDIDATE
        if not capable and role == ROLE_CANDIDATE:
            role = ROLE_REGULAR
        if node.uuid == self.master_uuid:
            role = ROLE_CANDIDATE
        return role

    def _check_reachable(self) -> None:
        res = self.rpc.call_one("version", self.node.primary_ip, {}, timeout=30.0)
        if res.failed:
            raise errors.OpPrereqError("Node %s cannot be brought online: its node daemon does"
                                       " not answer: %s" % (self.node.name, res.fail_msg),
                                       errors.ECODE_ENVIRON)

    def exec(self, feedback_fn: Callable[[str], None]) -> list[list]:
        node, op = self.node, self.op
        result: list[list] = []
        for attr in ("master_capable", "vm_capable", "secondary_ip", "powered"):
            value = getattr(op, attr)
            if value is not None and value != getattr(node, attr):
                setattr(node, attr, value)
                result.append([attr, str(value)])
        if op.ndparams is not None:
            node.ndparams = self.new_ndparams
            result.append(["ndparams", str(self.new_ndparams)])
        if op.hv_state is not None:
            node.hv_state_static = dict(op.hv_state)
        if op.disk_state is not None:
            node.disk_state_static = dict(op.disk_state)
        if self.new_role != self.old_role:
            old_flags, new_flags = ROLE_FLAGS[self.old_role], ROLE_FLAGS[self.new_role]
            for name, old, new in zip(FLAG_NAMES, old_flags, new_flags):
                setattr(node, name, new)
                if old != new:
                    result.append([name, str(new)])
        self.cfg.update(node)
        if self.old_role == ROLE_CANDIDATE and self.new_role != ROLE_CANDIDATE:
            self._demoted(feedback_fn)
        return result

    def _demoted(self, feedback_fn: Callable[[str], None]) -> None:
        if self.promote_others:
            adjust_candidate_pool(self.cfg, [self.node.uuid], feedback_fn)
        if self.new_role == ROLE_OFFLINE:
            return
        res = self.rpc.call_one("demote_from_mc", self.node.name, {}, timeout=30.0)
        if res.failed:
            feedback_fn("WARNING: Could not remove the configuration copy from %s: %s" %
                        (self.node.name, res.fail_msg))
