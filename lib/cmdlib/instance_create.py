"""Instance creation (OP_INSTANCE_CREATE, modes ``create`` and ``import``).

Order of work, chosen so that the configuration changes once, at the end:
check everything (names, OS and variant on the node, parameters, NICs and
bridges, disk specs and paths, free memory), then create the disks, run the
OS create script, start the instance, and only then add it to the
configuration (one write).  If the disks, the OS install or anything before
the start fails, the disks made by this job are removed and the configuration
is untouched.  A failed start leaves the installed instance in the
configuration (marked up, so it shows ERROR_down) and fails the job, as
Ganeti does.

Concurrency: the new name is claimed for the job (a reservation released at
the job's end) before any lock is taken, so two jobs creating the same name
cannot both get past ``expand_names``.  The primary node is locked shared (the
node itself is not modified) and its node-res lock exclusively (memory check
until the instance runs).
"""

from typing import Any, Callable

from corral import config, constants, errors, iallocator, locking, objects, osdef
from corral.cmdlib import cluster as cluster_lu
from corral.cmdlib import instance_import, instance_mirror
from corral.cmdlib import instance_storage as ist
from corral.cmdlib import instance_utils as iu
from corral.cmdlib.base import LogicalUnit, check_tags, expand_node
from corral.hypervisor import HYPERVISORS, hvparams

_MAC_RE = r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$"


def reserve_instance_name(lu: LogicalUnit, name: str) -> None:
    """Claim ``name`` for this job, or OpPrereqError(ECODE_EXISTS).

    The claim lives in the configuration's temporary reservations, so it is
    dropped when the job ends (mcpu) or the instance enters the config.
    """
    lu.cfg.reserve_instance_name(iu.ec_id(lu), name)


def check_nic_spec(spec: Any, idx: int) -> dict:
    """A validated copy of one NIC dict (keys of spec/rapi.md §8); pure."""
    if not isinstance(spec, dict):
        raise errors.OpPrereqError("Invalid NIC %d specification %r" % (idx, spec),
                                   errors.ECODE_INVAL)
    known = {"mac", "ip", "mode", "link", "network", "name", "vlan", "bridge"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise errors.OpPrereqError("Unknown parameter(s) %s for NIC %d (known: %s)" %
                                   (", ".join(unknown), idx, ", ".join(sorted(known))),
                                   errors.ECODE_INVAL)
    out = dict(spec)
    if "bridge" in out:
        if out.get("link") and out["link"] != out["bridge"]:
            raise errors.OpPrereqError("NIC %d: both link and bridge given" % idx,
                                       errors.ECODE_INVAL)
        out["link"] = out.pop("bridge")
    if out.get("mode") is not None and out["mode"] not in constants.NIC_VALID_MODES:
        raise errors.OpPrereqError("Invalid NIC mode '%s' for NIC %d (allowed: %s)" %
                                   (out["mode"], idx, ", ".join(sorted(constants.NIC_VALID_MODES))),
                                   errors.ECODE_INVAL)
    if out.get("network"):
        raise errors.OpPrereqError("NIC %d: networks are not supported yet" % idx,
                                   errors.ECODE_INVAL)
    return out


def nic_ip(value: Any, idx: int, inst_ip: str | None) -> str | None:
    """The IP of a NIC spec value: None/"none", "auto" (the resolved name), an IPv4."""
    from corral import netutils
    if value is None or value == "" or str(value).lower() == "none":
        return None
    text = str(value)
    if text.lower() == "auto":
        if inst_ip is None:
            raise errors.OpPrereqError("IP address set to auto but name checks have been"
                                       " skipped", errors.ECODE_INVAL)
        return inst_ip
    if text.lower() == "pool":
        raise errors.OpPrereqError("NIC %d: ip=pool needs a network" % idx, errors.ECODE_INVAL)
    if not netutils.is_valid_ip4(text):
        raise errors.OpPrereqError("Invalid IP address '%s' for NIC %d" % (text, idx),
                                   errors.ECODE_INVAL)
    return text


def nic_mac(lu: LogicalUnit, value: Any, idx: int) -> str:
    """A MAC for a NIC: generated with the cluster prefix, or the given one reserved."""
    import re
    mac = str(value or "auto").lower()
    if mac in ("auto", "generate"):
        return lu.cfg.generate_mac(iu.ec_id(lu))
    if not re.match(_MAC_RE, mac):
        raise errors.OpPrereqError("Invalid MAC address '%s' for NIC %d" % (mac, idx),
                                   errors.ECODE_INVAL)
    lu.cfg.reserve_mac(iu.ec_id(lu), mac)
    return mac


def check_nic_params(cluster: objects.Cluster, nicparams: dict, ip: str | None,
                     idx: int) -> dict:
    """Filled nicparams of a NIC, refusing combinations that cannot work."""
    filled = objects.fill_dict(cluster_lu.filled_nicparams(cluster), nicparams)
    if filled["mode"] == constants.NIC_MODE_ROUTED and not ip:
        raise errors.OpPrereqError("Routed nic mode requires an ip address (NIC %d)" % idx,
                                   errors.ECODE_INVAL)
    if filled["mode"] in (constants.NIC_MODE_BRIDGED, constants.NIC_MODE_OVS) \
            and not filled.get("link"):
        raise errors.OpPrereqError("NIC %d: bridged mode needs a link (bridge)" % idx,
                                   errors.ECODE_INVAL)
    return filled


def build_nic(lu: LogicalUnit, spec: dict, idx: int, inst_ip: str | None) -> objects.NIC:
    """A NIC object from a checked spec: MAC generated/reserved, IP resolved, params checked."""
    nicparams = {k: spec[k] for k in ("mode", "link", "vlan") if spec.get(k) not in (None, "")}
    ip = nic_ip(spec.get("ip"), idx, inst_ip)
    check_nic_params(lu.cfg.get_cluster_info(), nicparams, ip, idx)
    return objects.NIC(uuid=config.new_uuid(), name=spec.get("name"),
                       mac=nic_mac(lu, spec.get("mac"), idx), ip=ip, nicparams=nicparams)


def _typed_params(hv: str, op) -> tuple[dict, dict]:
    """Parsed and syntax-checked instance-level hvparams and beparams of the opcode."""
    hvp = hvparams.parse_hvparams(hv, dict(op.hvparams))
    hvparams.check_hvparams(hv, {k: v for k, v in hvp.items() if v not in ("default", None)},
                            level="instance")
    bep = hvparams.parse_beparams(hvparams.upgrade_beparams(dict(op.beparams)))
    hvparams.check_beparams({k: v for k, v in bep.items() if v not in ("default", None)})
    return ({k: v for k, v in hvp.items() if v not in ("default", None)},
            {k: v for k, v in bep.items() if v not in ("default", None)})


class LUInstanceCreate(LogicalUnit):
    HPATH = "instance-add"
    HTYPE = constants.HTYPE_INSTANCE

    def check_arguments(self) -> None:
        op = self.op
        if op.mode not in ("create", "import"):
            raise errors.OpPrereqError("Instance creation mode '%s' is not supported (only"
                                       " 'create' and 'import')" % op.mode, errors.ECODE_INVAL)
        self.name = iu.check_instance_name(op.instance_name)
        if op.ip_check and not op.name_check:
            raise errors.OpPrereqError("Cannot do IP address check without a name check",
                                       errors.ECODE_INVAL)
        self.source: instance_import.ExportSource | None = None
        if op.mode == "import":
            instance_import.check_arguments(op)
        elif not op.no_install and not op.os_type:
            raise errors.OpPrereqError("No guest OS specified (use -o OS, or --no-install)",
                                       errors.ECODE_INVAL)
        if op.disk_template == constants.DT_DISKLESS and op.disks:
            raise errors.OpPrereqError("Diskless instance but disk information passed",
                                       errors.ECODE_INVAL)
        self.disk_specs = [ist.check_disk_spec(d, i, op.disk_template)
                           for i, d in enumerate(op.disks)]
        self.nic_specs = [check_nic_spec(n, i) for i, n in enumerate(op.nics)]
        check_tags(op.tags)
        if op.file_driver and op.file_driver != iu.FILE_DRIVER_DEFAULT:
            raise errors.OpPrereqError("File driver '%s' is not supported with this node's"
                                       " hypervisors (only 'loop')" % op.file_driver,
                                       errors.ECODE_INVAL)

    def expand_names(self) -> None:
        if self.op.mode == "import":
            # Before anything derived from the opcode: the export fills its gaps.
            self.source = instance_import.read_export(self, self.op)
            self.nic_specs = [check_nic_spec(n, i) for i, n in enumerate(self.op.nics)]
        self.inst_ip = None
        if self.op.name_check:
            self.name, self.inst_ip = iu.resolve_instance_name(self.name)
        reserve_instance_name(self, self.name)
        self.pnode = self._primary_node()
        self.snode = expand_node(self.cfg, self.op.snode) if self.op.snode else None
        if self.pnode is None:
            # An allocator chooses in check_prereq, once every node is locked.
            nodes: Any = locking.ALL_SET
        else:
            nodes = list(dict.fromkeys([self.pnode.uuid] + ([self.snode.uuid] if self.snode
                                                             else [])))
        self.needed_locks[locking.LEVEL_NODE] = nodes
        if self.source is not None and nodes is not locking.ALL_SET:
            self.needed_locks[locking.LEVEL_NODE] = list(dict.fromkeys(
                nodes + [self.source.node.uuid]))
        self.share_locks[locking.LEVEL_NODE] = True
        # Shared: memory is accounted through config reservations (node_checks),
        # so concurrent creates on one node do not queue behind each other.
        self.needed_locks[locking.LEVEL_NODE_RES] = nodes if nodes is None else list(nodes)
        self.share_locks[locking.LEVEL_NODE_RES] = True

    def _primary_node(self) -> objects.Node | None:
        """The given primary node, or None when an allocator is to choose the nodes.

        Without -n and -I the cluster's default allocator chooses ('builtin'
        while default_iallocator is unset); a cluster with a single usable
        node and no default set needs no allocator.
        """
        if self.op.pnode:
            if self.op.iallocator:
                raise errors.OpPrereqError("Do not specify both, iallocator and node",
                                           errors.ECODE_INVAL)
            return expand_node(self.cfg, self.op.pnode)
        if self.op.snode:
            raise errors.OpPrereqError("A secondary node needs a primary node (-n PRI:SEC)",
                                       errors.ECODE_INVAL)
        if not self.op.iallocator and not self.cfg.get_cluster_info().default_iallocator:
            usable = [n for n in self.cfg.get_all_nodes().values()
                      if n.vm_capable and not n.offline and not n.drained]
            if len(usable) == 1:
                return usable[0]
        return None

    def _allocate_nodes(self) -> None:
        """Run the allocator for this instance, then keep only the chosen nodes' locks."""
        request = iallocator.create_request(self.cfg, self.op, self.name)
        name = iallocator.resolve_name(self.cfg, self.op.iallocator)
        nodes = iallocator.allocate_new_instance(self, name, request)
        self.log_info("Selected nodes for instance %s via iallocator %s: %s",
                      self.name, name, ", ".join(nodes))
        self.pnode = expand_node(self.cfg, nodes[0])
        self.snode = expand_node(self.cfg, nodes[1]) if len(nodes) > 1 else None
        keep = {n.uuid for n in (self.pnode, self.snode) if n is not None}
        for level in (locking.LEVEL_NODE, locking.LEVEL_NODE_RES):
            keep_here = keep | ({self.source.node.uuid} if self.source is not None and
                                level == locking.LEVEL_NODE else set())
            others = sorted(self.owned(level) - keep_here)
            if others:
                self.context.glm.release(self.proc.owner, level, others)

    # ---- prerequisites ------------------------------------------------------------------

    def check_prereq(self) -> None:
        cluster = self.cfg.get_cluster_info()
        op = self.op
        self.hv = op.hypervisor or cluster.primary_hypervisor
        if self.hv not in cluster.enabled_hypervisors:
            raise errors.OpPrereqError("Selected hypervisor (%s) not enabled in the cluster"
                                       " (enabled: %s)" % (self.hv,
                                                           ", ".join(cluster.enabled_hypervisors)),
                                       errors.ECODE_STATE)
        self.template = op.disk_template or cluster.enabled_disk_templates[0]
        if self.template not in cluster.enabled_disk_templates:
            raise errors.OpPrereqError("Disk template '%s' is not enabled in cluster (enabled:"
                                       " %s)" % (self.template,
                                                 ", ".join(cluster.enabled_disk_templates)),
                                       errors.ECODE_STATE)
        if self.pnode is None:
            self._allocate_nodes()
        node = iu.check_node_online(self.cfg, self.pnode.uuid, "as primary node")
        if node.drained:
            raise errors.OpPrereqError("Cannot use drained node %s" % node.name,
                                       errors.ECODE_STATE)
        if not node.vm_capable:
            raise errors.OpPrereqError("Node %s is not vm capable" % node.name,
                                       errors.ECODE_STATE)
        self.hvp, self.bep = _typed_params(self.hv, op)
        self.disk_specs = [ist.check_disk_spec(d, i, self.template)
                           for i, d in enumerate(op.disks)]
        self._check_secondary()
        inst = self._new_instance(cluster)
        ist.check_node_storage(self, inst.all_nodes, self.template, inst.disks)
        self._check_on_node(inst)
        self.new_inst = inst

    def _check_secondary(self) -> None:
        """Mirrored templates need an online, vm-capable secondary other than the primary.

        Without one, the primary's storage is checked first, so a node lacking
        the DRBD module says so rather than only asking for a secondary.
        """
        if self.template not in constants.DTS_INT_MIRROR:
            if self.snode is not None:
                raise errors.OpPrereqError("A secondary node is only used by the drbd disk"
                                           " template, not by %s" % self.template,
                                           errors.ECODE_INVAL)
            return
        if self.template == constants.DT_MIRROR and not getattr(
                HYPERVISORS.get(self.hv), "CAN_REPLICATE", False):
            raise errors.OpPrereqError("The mirror disk template needs a hypervisor that"
                                       " replicates disks (kvm), not %s" % self.hv,
                                       errors.ECODE_INVAL)
        if self.snode is None:
            ist.check_node_storage(self, [self.pnode.uuid], self.template, [])
            raise errors.OpPrereqError("The networked disk templates need a mirror node"
                                       " (-n PRIMARY:SECONDARY)", errors.ECODE_INVAL)
        if self.snode.uuid == self.pnode.uuid:
            raise errors.OpPrereqError("The secondary node cannot be the primary node",
                                       errors.ECODE_INVAL)
        node = iu.check_node_online(self.cfg, self.snode.uuid, "as secondary node")
        if node.drained or not node.vm_capable:
            raise errors.OpPrereqError("Cannot use %s node %s as secondary" %
                                       ("drained" if node.drained else "non-vm-capable",
                                        node.name), errors.ECODE_STATE)

    def _new_instance(self, cluster: objects.Cluster) -> objects.Instance:
        op = self.op
        if self.template != constants.DT_DISKLESS and not self.disk_specs:
            raise errors.OpPrereqError("No disk information specified for template %s" %
                                       self.template, errors.ECODE_INVAL)
        disks = ist.generate_disks(cluster, self.template, self.name, self.disk_specs,
                                   self.pnode.uuid, file_subdir=op.file_storage_dir,
                                   file_driver=op.file_driver,
                                   snode_uuid=self.snode.uuid if self.snode else None)
        nics = [build_nic(self, spec, i, self.inst_ip) for i, spec in enumerate(self.nic_specs)]
        inst = objects.Instance(
            uuid=config.new_uuid(), name=self.name, primary_node=self.pnode.uuid,
            os=op.os_type or "", hypervisor=self.hv, hvparams=self.hvp, beparams=self.bep,
            osparams=dict(op.osparams), osparams_private=dict(op.osparams_private or {}),
            nics=nics, disks=disks, disk_template=self.template,
            secondary_nodes=[self.snode.uuid] if self.snode else [],
            admin_state=constants.ADMINST_UP if op.start else constants.ADMINST_DOWN,
            tags=list(dict.fromkeys(op.tags)))
        if op.identify_defaults:
            _drop_defaults(cluster, inst)
        return inst

    def _check_on_node(self, inst: objects.Instance) -> None:
        """Node facts in one round trip: OS, hypervisor parameters, bridges, free memory."""
        cluster = self.cfg.get_cluster_info()
        hv_filled, be_filled, _os = iu.instance_params(self.cfg, inst)
        hvparams.check_hvparams(self.hv, hv_filled, level="cluster")
        os_data = iu.node_checks(
            self, self.pnode.name, self.hv, hv_filled, inst.os,
            [iu.nic_rpc(cluster, n) for n in inst.nics],
            be_filled["maxmem"] if self.op.start else None,
            "starting instance %s" % inst.name)
        if inst.os:
            self._check_os(inst, os_data)
        ist.adopted_sizes(self, self.pnode.name, inst.disks)

    def _check_os(self, inst: objects.Instance, os_data: dict) -> None:
        """OS and variant valid on the primary; OS parameters accepted (API 20)."""
        os_def = osdef.OSDefinition.from_dict(os_data)
        if not os_def.valid:
            raise errors.OpPrereqError("OS '%s' not in supported OS list for node %s: %s" %
                                       (os_def.name, self.pnode.name, os_def.error),
                                       errors.ECODE_INVAL)
        osdef.check_variant(os_def, osdef.split_os_name(inst.os)[1], self.op.force_variant)
        osparams = iu.filled_osparams(self.cfg.get_cluster_info(), inst.os, inst.osparams)
        osparams.update(self.op.osparams_private or {})
        osparams.update(self.op.osparams_secret or {})
        osdef.check_os_params(os_def, osparams)
        if osparams and os_def.api_version >= osdef.OS_API_V20:
            res = self.rpc.call_one("os_validate", self.pnode.name,
                                    {"name": inst.os, "osparams": osparams})
            if res.failed:
                raise errors.OpPrereqError("OS parameters validation failed on node %s: %s" %
                                           (res.node, res.fail_msg), errors.ECODE_INVAL)

    # ---- hooks ----------------------------------------------------------------------------

    def hooks_target(self) -> str:
        return self.name

    def build_hooks_env(self) -> dict[str, Any]:
        env: dict[str, Any] = {"ADD_MODE": self.op.mode}
        if self.source is not None:
            env.update(self.source.hooks_env())
        env.update(iu.instance_hook_env(self.cfg, self.new_inst))
        return env

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        nodes = [self.master_uuid, self.pnode.uuid] + ([self.snode.uuid] if self.snode else [])
        return nodes, list(nodes)

    # ---- execution ------------------------------------------------------------------------

    def exec(self, feedback_fn: Callable[[str], None]) -> list[str]:
        inst = self.new_inst
        hv_filled = iu.instance_params(self.cfg, inst)[0]
        if hv_filled.get("vnc_bind_address"):
            inst.network_port = self.cfg.allocate_port(iu.ec_id(self))
        install = bool(inst.os) and not self.op.no_install and not any(
            d.get("adopt") for d in self.disk_specs) and self.source is None
        if inst.disks:
            ist.allocate_drbd_ids(inst.disks, ist.DrbdAllocator(self.cfg, iu.ec_id(self)))
            feedback_fn("* creating instance disks...")
            ist.create_disks(self, inst)
        try:
            if instance_mirror.is_mirror(inst):
                instance_mirror.set_consistent(self, inst, True)  # new images: all zeroes
            else:
                self._wait_for_sync(inst, feedback_fn)
            if install:
                feedback_fn("* running the instance OS create scripts...")
                self._install(inst)
                instance_mirror.sync_offline(self, inst, feedback_fn)
            elif self.source is not None and inst.disks:
                feedback_fn("* running the instance OS import scripts...")
                instance_import.import_disks(self, inst, self.source, self.pnode,
                                             self.op.compress, feedback_fn)
                instance_mirror.sync_offline(self, inst, feedback_fn)
        except BaseException:
            feedback_fn("* removing the disks of the failed instance")
            ist.remove_disks(self, inst, ignore_failures=True)
            raise
        start_error = None
        if self.op.start:
            res = self.rpc.call_one("instance_start", self.pnode.name,
                                    {"instance": iu.instance_rpc(self.cfg, inst),
                                     "disks": ist._rpc_disks(self, inst.disks)})
            start_error = res.fail_msg if res.failed else None
            inst.disks_active = bool(inst.disks)
        # The node now accounts for the instance's memory and disks itself.
        iu.release_node_res(self)
        self.cfg.add_instance(inst, iu.ec_id(self))
        if start_error is not None:
            raise errors.OpExecError("Could not start instance: %s" % start_error)
        return [self.pnode.name]

    def _wait_for_sync(self, inst: objects.Instance, feedback_fn: Callable[[str], None]) -> None:
        """Mirrored disks: wait for the initial sync (or only check it, without
        wait_for_sync); a degraded mirror fails the creation."""
        if inst.disk_template not in constants.DTS_INT_MIRROR:
            return
        if self.op.wait_for_sync:
            feedback_fn("* waiting for the disks to sync...")
        if not ist.wait_for_sync(self, inst, oneshot=not self.op.wait_for_sync) \
                and self.op.wait_for_sync:
            raise errors.OpExecError("There are some degraded disks for this instance")

    def _install(self, inst: objects.Instance) -> None:
        args = iu.os_install_args(self.cfg, inst, self.op.osparams_secret,
                                  debug=self.op.debug_level or 0)
        args["disks"] = ist._rpc_disks(self, inst.disks)
        res = self.rpc.call_one("instance_os_add", self.pnode.name, args)
        if res.failed:
            raise errors.OpExecError("Could not add os for instance %s on node %s: %s" %
                                     (inst.name, res.node, res.fail_msg))


def _drop_defaults(cluster: objects.Cluster, inst: objects.Instance) -> None:
    """identify_defaults: forget instance values equal to the cluster's (pure)."""
    hv_def = iu.filled_hvparams(cluster, inst.hypervisor, inst.os, {})
    inst.hvparams = {k: v for k, v in inst.hvparams.items() if hv_def.get(k) != v}
    be_def = iu.filled_beparams(cluster, {})
    inst.beparams = {k: v for k, v in inst.beparams.items() if be_def.get(k) != v}
    os_def = iu.filled_osparams(cluster, inst.os, {})
    inst.osparams = {k: v for k, v in inst.osparams.items() if os_def.get(k) != v}
