"""Cluster verification (spec/hypervisors-storage.md §12).

OP_CLUSTER_VERIFY only submits one OP_CLUSTER_VERIFY_CONFIG job and one
OP_CLUSTER_VERIFY_GROUP job per group; the findings are reported as job log
lines ``  - ERROR: node n1: message`` (or ``  - ERROR:ENODERPC:node:n1:message``
with error codes), and each job's result is False if an ERROR remains.
"""

import time
from typing import Any, Callable

import os

from corral import certs, constants, locking, opcodes, pathutils
from corral.cmdlib.base import LogicalUnit, NoHooksLU, ResultWithJobs

ETYPE_ERROR = "ERROR"
ETYPE_WARNING = "WARNING"
NODE_MAX_CLOCK_SKEW = 150.0


CERT_WARN_DAYS = 30


def _certificate_problems() -> list[str]:
    """Cluster certificates that are missing, unreadable, expired or about to expire."""
    problems = []
    for path in (pathutils.cluster_ca_file(), pathutils.node_cert_file()):
        if not os.path.exists(path):
            problems.append("certificate %s is missing" % path)
            continue
        try:
            expiry = certs.cert_expiry(path)
        except Exception as err:  # any parse failure is a finding, not a crash
            problems.append("certificate %s cannot be read: %s" % (path, err))
            continue
        left = expiry - time.time()
        if left < 0:
            problems.append("certificate %s expired" % path)
        elif left < CERT_WARN_DAYS * 86400:
            problems.append("certificate %s expires in %d days" % (path, left // 86400))
    return problems


class _Verifier:
    """Collects findings and formats them as Ganeti does."""

    def __init__(self, op: Any, feedback: Callable[[str], None]) -> None:
        self.op = op
        self.feedback = feedback
        self.bad = False

    def error(self, code: str, obj_type: str, name: str, msg: str,
              severity: str = ETYPE_ERROR) -> None:
        if code in (self.op.ignore_errors or []):
            severity = ETYPE_WARNING
        if self.op.error_codes:
            line = "%s:%s:%s:%s:%s" % (severity, code, obj_type, name, msg)
        else:
            line = "%s: %s %s: %s" % (severity, obj_type, name, msg)
        self.feedback("  - " + line)
        if severity == ETYPE_ERROR:
            self.bad = True


class LUClusterVerify(NoHooksLU):
    def exec(self, feedback_fn: Callable[[str], None]) -> ResultWithJobs:
        common = {"ignore_errors": self.op.ignore_errors, "error_codes": self.op.error_codes,
                  "verbose": self.op.verbose, "debug_simulate_errors": self.op.debug_simulate_errors,
                  "priority": self.op.priority}
        jobs: list[list[opcodes.OpCode]] = []
        if self.op.group_name is None:
            jobs.append([opcodes.OpClusterVerifyConfig(**common)])
            groups = [g.name for g in self.cfg.get_all_node_groups().values()]
        else:
            self.cfg.lookup_node_group(self.op.group_name)
            groups = [self.op.group_name]
        for name in sorted(groups):
            jobs.append([opcodes.OpClusterVerifyGroup(group_name=name,
                                                      skip_checks=self.op.skip_checks,
                                                      verify_clutter=self.op.verify_clutter,
                                                      **common)])
        return ResultWithJobs(jobs)


class LUClusterVerifyConfig(NoHooksLU):
    """Global checks: configuration consistency and certificates."""

    def expand_names(self) -> None:
        self.share_locks = {level: True for level in locking.LEVELS}
        self.needed_locks[locking.LEVEL_NODE] = locking.ALL_SET
        self.needed_locks[locking.LEVEL_INSTANCE] = locking.ALL_SET
        self.needed_locks[locking.LEVEL_NODEGROUP] = locking.ALL_SET

    def exec(self, feedback_fn: Callable[[str], None]) -> bool:
        v = _Verifier(self.op, feedback_fn)
        feedback_fn("* Verifying cluster config")
        self._verify_config(v)
        feedback_fn("* Verifying cluster certificate files")
        for problem in _certificate_problems():
            v.error("ECLUSTERCERT", "cluster", self.cfg.get_cluster_name(), problem)
        feedback_fn("* Verifying replication to the master candidates")
        self._verify_replication(v)
        if self.op.debug_simulate_errors:
            v.error("ECLUSTERCFG", "cluster", self.cfg.get_cluster_name(), "simulated error")
        return not v.bad

    def _verify_replication(self, v: _Verifier) -> None:
        """Nodes whose last configuration or job queue replication failed (still lagging)."""
        name = self.cfg.get_cluster_name()
        for what, failures in (
                ("configuration", getattr(self.context, "replication_failures", {})),
                ("job queue", getattr(self.context, "queue_replication_failures", {}))):
            for node, msg in sorted(dict(failures).items()):
                v.error("ECLUSTERFILECHECK", "cluster", name,
                        "%s replication to node %s failed, its copy is out of date until it"
                        " answers again or 'gnt-cluster redist-conf': %s" % (what, node, msg))

    def _verify_config(self, v: _Verifier) -> None:
        cluster = self.cfg.get_cluster_info()
        nodes = self.cfg.get_all_nodes()
        groups = self.cfg.get_all_node_groups()
        name = cluster.cluster_name
        if cluster.master_node not in nodes:
            v.error("ECLUSTERCFG", "cluster", name, "master node %s unknown" % cluster.master_node)
        seen_ips: dict[str, str] = {}
        for node in nodes.values():
            if node.group not in groups:
                v.error("ECLUSTERDANGLINGNODES", "node", node.name,
                        "node is in unknown group %s" % node.group)
            for ip in {node.primary_ip, node.secondary_ip}:
                if ip in seen_ips and seen_ips[ip] != node.name:
                    v.error("ECLUSTERCFG", "node", node.name,
                            "IP %s also used by node %s" % (ip, seen_ips[ip]))
                seen_ips[ip] = node.name
            if sum([node.master_candidate, node.drained, node.offline]) > 1:
                v.error("ECLUSTERCFG", "node", node.name,
                        "more than one of master candidate, drained, offline is set")
        candidates = [n for n in nodes.values() if n.master_candidate and not n.offline]
        capable = [n for n in nodes.values() if n.master_capable and not n.offline]
        wanted = min(cluster.candidate_pool_size, len(capable))
        if len(candidates) < wanted - 1 and len(nodes) > 1:
            v.error("ECLUSTERCFG", "cluster", name,
                    "not enough master candidates (%d, wanted %d)" % (len(candidates), wanted),
                    severity=ETYPE_WARNING)
        macs: dict[str, str] = {}
        for inst in self.cfg.get_all_instances().values():
            for node_uuid in inst.all_nodes:
                if node_uuid not in nodes:
                    v.error("ECLUSTERDANGLINGINST", "instance", inst.name,
                            "instance uses unknown node %s" % node_uuid)
            for nic in inst.nics:
                if nic.mac in macs:
                    v.error("ECLUSTERCFG", "instance", inst.name,
                            "MAC %s also used by %s" % (nic.mac, macs[nic.mac]))
                macs[nic.mac] = inst.name


class LUClusterVerifyGroup(LogicalUnit):
    """Per-group checks: node daemons, versions, clocks, hypervisors, instances."""

    HPATH = "cluster-verify"
    HTYPE = constants.HTYPE_CLUSTER

    def expand_names(self) -> None:
        self.group_uuid = self.cfg.lookup_node_group(self.op.group_name)
        self.share_locks = {level: True for level in locking.LEVELS}
        self.needed_locks[locking.LEVEL_NODEGROUP] = [self.group_uuid]
        self.needed_locks[locking.LEVEL_NODE] = self.cfg.get_group_members(self.group_uuid)

    def hooks_target(self) -> str:
        return self.op.group_name

    def build_hooks_env(self) -> dict:
        env = {"CLUSTER_TAGS": " ".join(self.cfg.get_cluster_info().tags)}
        for uuid in self.cfg.get_group_members(self.group_uuid):
            node = self.cfg.get_node_info(uuid)
            env["NODE_TAGS_%s" % node.name] = " ".join(node.tags)
        return env

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        return [], self.cfg.get_group_members(self.group_uuid)

    def exec(self, feedback_fn: Callable[[str], None]) -> bool:
        v = _Verifier(self.op, feedback_fn)
        members = [self.cfg.get_node_info(u) for u in self.cfg.get_group_members(self.group_uuid)]
        online = [n for n in members if not n.offline]
        offline = [n for n in members if n.offline]
        feedback_fn("* Verifying %d node(s) of group %s" % (len(online), self.op.group_name))
        hypervisors = list(self.cfg.get_cluster_info().enabled_hypervisors)
        serial = self.cfg.serial_no  # before asking: a later write may not be there yet
        results = self.rpc.call("node_verify", [n.name for n in online],
                                {"checks": {"hypervisors": hypervisors, "config_serial": True}})
        for node in online:
            self._verify_node(v, node, results[node.name])
        self._verify_config_copies(v, online, results, serial)
        if offline:
            feedback_fn("  - NOTICE: %d offline node(s) found." % len(offline))
        self._verify_instances(v, members, results)
        self._verify_storage(v, [n for n in online if n.vm_capable])
        if self.op.debug_simulate_errors:
            v.error("ENODERPC", "node", online[0].name if online else "-", "simulated error")
        return not v.bad

    def _verify_node(self, v: _Verifier, node, res) -> None:
        if res.failed:
            v.error("ENODERPC", "node", node.name,
                    "while contacting node: %s" % res.fail_msg)
            return
        data = res.data or {}
        version = data.get("version")
        if isinstance(version, list):  # [protocol, release]
            version = version[0]
        if version != constants.PROTOCOL_VERSION:
            v.error("ENODEVERSION", "node", node.name,
                    "incompatible protocol versions: master %s, node %s" %
                    (constants.PROTOCOL_VERSION, version))
        node_time = data.get("time")
        if node_time is not None and abs(node_time - time.time()) > NODE_MAX_CLOCK_SKEW:
            v.error("ENODETIME", "node", node.name,
                    "Node time diverges by at least %.1fs from master node time" %
                    abs(node_time - time.time()))
        for hv, problem in sorted((data.get("hypervisor") or {}).items()):
            if problem:
                v.error("ENODEHV", "node", node.name, "hypervisor %s verify failure: '%s'" %
                        (hv, problem))
        for problem in data.get("problems") or []:
            v.error("ENODESETUP", "node", node.name, problem)

    def _verify_config_copies(self, v: _Verifier, online, results, serial: int) -> None:
        """Every master candidate holds the configuration the master had when we asked."""
        master = self.cfg.get_master_node()
        path = pathutils.config_file()
        for node in online:
            res = results[node.name]
            data = res.data or {}
            if node.uuid == master or not node.master_candidate or res.failed or \
                    "config_serial" not in data:  # not a candidate, no answer, or too old
                continue
            theirs = data["config_serial"]
            if theirs is None:
                v.error("ECLUSTERFILECHECK", "cluster", self.cfg.get_cluster_name(),
                        "File %s is missing on master candidate %s" % (path, node.name))
            elif theirs < serial:
                v.error("ECLUSTERFILECHECK", "cluster", self.cfg.get_cluster_name(),
                        "File %s is out of date on node %s (serial %s, the master's is %s)"
                        % (path, node.name, theirs, serial))

    def _verify_storage(self, v: _Verifier, nodes) -> None:
        """ENODELVM / ENODEDRBD / ENODEDRBDHELPER for the enabled LVM and DRBD templates."""
        cluster = self.cfg.get_cluster_info()
        enabled = set(cluster.enabled_disk_templates)
        vg = cluster.volume_group_name if enabled & constants.DTS_LVM else ""
        want_drbd = constants.DT_DRBD8 in enabled
        if not nodes or not (vg or want_drbd):
            return
        results = self.rpc.call("storage_verify", [n.name for n in nodes],
                                {"vg_name": vg or "", "drbd": want_drbd,
                                 "drbd_helper": cluster.drbd_usermode_helper or ""})
        minors = _configured_minors(self.cfg)
        for node in nodes:
            res = results[node.name]
            if res.failed:
                continue  # ENODERPC was reported by the node checks already
            data = res.data or {}
            if vg and data.get("lvm"):
                v.error("ENODELVM", "node", node.name, data["lvm"])
            if not want_drbd:
                continue
            if data.get("drbd"):
                v.error("ENODEDRBD", "node", node.name, data["drbd"])
                continue
            if data.get("drbd_helper_problem"):
                v.error("ENODEDRBDHELPER", "node", node.name, data["drbd_helper_problem"])
            used = set(data.get("drbd_minors") or [])
            for minor, (inst_name, active) in sorted(minors.get(node.uuid, {}).items()):
                if active and minor not in used:
                    v.error("ENODEDRBD", "node", node.name, "drbd minor %d of instance %s is"
                            " not active" % (minor, inst_name))
            for minor in sorted(used - set(minors.get(node.uuid, {}))):
                v.error("ENODEDRBD", "node", node.name, "unallocated drbd minor %d is in use"
                        % minor)

    def _verify_instances(self, v: _Verifier, members, results) -> None:
        member_uuids = {n.uuid for n in members}
        running: dict[str, list[str]] = {}
        for node in members:
            res = results.get(node.name)
            if res is None or res.failed:
                continue
            for inst_name in (res.data or {}).get("instances") or []:
                running.setdefault(inst_name, []).append(node.uuid)
        for inst in self.cfg.get_all_instances().values():
            if inst.primary_node not in member_uuids:
                continue
            pnode = self.cfg.get_node_info(inst.primary_node)
            where = running.get(inst.name, [])
            if pnode.offline:
                continue
            pres = results.get(pnode.name)
            if pres is None or pres.failed:
                continue
            if inst.admin_state == constants.ADMINST_UP and inst.primary_node not in where:
                v.error("EINSTANCEDOWN", "instance", inst.name, "instance not running on its"
                        " primary node %s" % pnode.name)
            for other in where:
                if other != inst.primary_node:
                    v.error("EINSTANCEWRONGNODE", "instance", inst.name, "instance should not run"
                            " on node %s" % self.cfg.get_node_info(other).name)
        known = {i.name for i in self.cfg.get_all_instances().values()}
        for name, nodes in sorted(running.items()):
            if name not in known:
                for node_uuid in nodes:
                    v.error("ENODEORPHANINSTANCE", "node", self.cfg.get_node_info(node_uuid).name,
                            "instance %s is running but not in the configuration" % name)


def _configured_minors(cfg) -> dict[str, dict[int, tuple[str, bool]]]:
    """{node uuid: {minor: (instance name, disks should be active)}} from the config."""
    out: dict[str, dict[int, tuple[str, bool]]] = {}
    for inst in cfg.get_all_instances().values():
        for disk in inst.disks:
            if disk.dev_type != constants.DT_DRBD8 or not disk.logical_id:
                continue
            node_a, node_b, _port, minor_a, minor_b = disk.logical_id[:5]
            for node, minor in ((node_a, minor_a), (node_b, minor_b)):
                if isinstance(minor, int):
                    out.setdefault(node, {})[minor] = (inst.name, bool(inst.disks_active))
    return out
