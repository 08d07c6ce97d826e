"""OP_INSTANCE_SET_PARAMS (gnt-instance modify): parameters, disks, NICs, offline.

Everything is computed on copies in ``check_prereq`` (which changes nothing);
``exec`` creates new disks on the node, removes dropped ones, and then writes
the configuration once.  The result is Ganeti's list of ``[param, new value]``.
Disk and NIC changes take effect at the instance's next start (no hotplug).
"""

import copy
from typing import Any, Callable

from corral import constants, errors, objects, osdef
from corral.cmdlib import instance_convert
from corral.cmdlib import instance_create as ic
from corral.cmdlib import instance_mirror_rebuild
from corral.cmdlib import instance_storage as ist
from corral.cmdlib import instance_utils as iu
from corral.cmdlib.base import expand_node
from corral.hypervisor import hvparams

ADD, MODIFY, REMOVE = "add", "modify", "remove"


def normalize_mods(mods: list, kind: str) -> list[tuple[str, Any, dict]]:
    """``[[action, ident, params]]`` or legacy ``[[index|"add"|"remove", params]]`` -> triples."""
    out = []
    for mod in mods:
        if len(mod) == 2:
            ident, params = mod
            if ident in (ADD, REMOVE):
                action, ident = ident, -1
            else:
                action = MODIFY
        else:
            action, ident, params = mod
        if action not in (ADD, MODIFY, REMOVE):
            raise errors.OpPrereqError("Unsupported %s operation '%s' (supported: add,"
                                       " modify, remove)" % (kind, action), errors.ECODE_INVAL)
        if not isinstance(params, dict):
            raise errors.OpPrereqError("Invalid %s parameters %r" % (kind, params),
                                       errors.ECODE_INVAL)
        if action == REMOVE and params:
            raise errors.OpPrereqError("No parameters accepted when removing a %s" % kind,
                                       errors.ECODE_INVAL)
        out.append((action, ident, dict(params)))
    return out


def find_item(items: list, ident: Any, kind: str, for_add: bool = False) -> int:
    """Index of the item named by ``ident`` (index, -1 = last, name or UUID)."""
    if isinstance(ident, str) and ident.lstrip("-").isdigit():
        ident = int(ident)
    if isinstance(ident, int):
        limit = len(items) + (1 if for_add else 0)
        if ident == -1:
            return limit - 1 if not for_add else len(items)
        if not 0 <= ident < limit:
            raise errors.OpPrereqError("Invalid %s index %s (there are %d)" %
                                       (kind, ident, len(items)), errors.ECODE_INVAL)
        return ident
    for idx, item in enumerate(items):
        if ident in (item.name, item.uuid):
            return idx
    raise errors.OpPrereqError("Cannot find %s '%s'" % (kind, ident), errors.ECODE_NOENT)


def merge_params(old: dict, changes: dict) -> dict:
    """``changes`` over ``old``; a value of ``default`` or None removes the override."""
    out = dict(old)
    for key, value in changes.items():
        if value in ("default", None):
            out.pop(key, None)
        else:
            out[key] = value
    return out


class LUInstanceSetParams(iu.InstanceLU):
    HPATH = "instance-modify"
    LOCK_NODE_RES = True

    def check_arguments(self) -> None:
        op = self.op
        for name in ("pnode", "iallocator"):
            if getattr(op, name):
                raise errors.OpPrereqError("Changing '%s' is not supported yet" % name,
                                           errors.ECODE_INVAL)
        if op.remote_node and not op.disk_template:
            raise errors.OpPrereqError("A secondary node (-n) is only used with a disk"
                                       " template conversion (-t)", errors.ECODE_INVAL)
        if op.disk_template and op.disks:
            raise errors.OpPrereqError("Disk template conversion and other disk changes are"
                                       " not supported at the same time", errors.ECODE_INVAL)
        if op.runtime_mem is not None:
            raise errors.OpPrereqError("Changing the runtime memory is not supported yet",
                                       errors.ECODE_INVAL)
        if op.hotplug:
            raise errors.OpPrereqError("Hotplug is not supported by this cluster's"
                                       " hypervisors", errors.ECODE_INVAL)
        self.disk_mods = normalize_mods(op.disks, "disk")
        self.nic_mods = normalize_mods(op.nics, "NIC")
        if not (self.disk_mods or self.nic_mods or op.beparams or op.hvparams
                or op.osparams is not None or op.osparams_private is not None
                or op.os_name or op.offline is not None or op.disk_template):
            raise errors.OpPrereqError("No changes submitted", errors.ECODE_INVAL)

    def expand_names(self) -> None:
        super().expand_names()
        self.remote = expand_node(self.cfg, self.op.remote_node) if self.op.remote_node \
            else None

    def lock_node_uuids(self, inst: objects.Instance) -> list[str]:
        nodes = list(inst.all_nodes)
        if self.remote is not None and self.remote.uuid not in nodes:
            nodes.append(self.remote.uuid)
        return nodes

    # ---- prerequisites ---------------------------------------------------------------

    def check_prereq(self) -> None:
        super().check_prereq()
        inst = self.instance
        self.result: list[list] = []
        self.new = objects.Instance.from_dict(inst.to_dict())
        self.added: list[objects.Disk] = []
        self.removed: list[objects.Disk] = []
        self.conversion = None
        if self.op.disk_template:
            self.conversion = instance_convert.TemplateConversion(
                self, self.op.disk_template, self.remote.uuid if self.remote else None)
            self.conversion.check()
            self.result.append(["disk_template", self.op.disk_template])
        self._check_offline()
        self._check_beparams()
        self._check_hvparams()
        self._check_os()
        if self.disk_mods:
            self._check_disks()
        for action, ident, params in self.nic_mods:
            self._apply_nic(action, ident, params)
        if self.nic_mods and not self.pnode.offline:
            nics = [iu.nic_rpc(self.cfg.get_cluster_info(), n) for n in self.new.nics]
            iu.node_checks(self, self.pnode.name, self.instance.hypervisor, nics=nics)

    def _running(self) -> bool:
        if not hasattr(self, "_is_running"):
            self._is_running = (not self.pnode.offline and
                                iu.running_on_primary(self, self.instance))
        return self._is_running

    def _check_offline(self) -> None:
        if self.op.offline is None:
            return
        inst = self.instance
        if self.op.offline:
            if inst.admin_state == constants.ADMINST_UP or self._running():
                raise errors.OpPrereqError("Instance %s is running or marked up, cannot mark"
                                           " it offline" % inst.name, errors.ECODE_STATE)
            self.new.admin_state = constants.ADMINST_OFFLINE
        else:
            if inst.admin_state != constants.ADMINST_OFFLINE:
                raise errors.OpPrereqError("Instance %s is not offline" % inst.name,
                                           errors.ECODE_STATE)
            self.new.admin_state = constants.ADMINST_DOWN
        self.result.append(["admin_state", self.new.admin_state])

    def _check_beparams(self) -> None:
        if not self.op.beparams:
            return
        typed = hvparams.parse_beparams(hvparams.upgrade_beparams(dict(self.op.beparams)))
        hvparams.check_beparams({k: v for k, v in typed.items() if v not in ("default", None)})
        self.new.beparams = merge_params(self.instance.beparams, typed)
        filled = iu.filled_beparams(self.cfg.get_cluster_info(), self.new.beparams)
        hvparams.check_beparams(filled)
        self.result += [["be/%s" % k, filled.get(k)] for k in sorted(typed)]

    def _check_hvparams(self) -> None:
        if not self.op.hvparams:
            return
        hv = self.instance.hypervisor
        typed = hvparams.parse_hvparams(hv, dict(self.op.hvparams))
        hvparams.check_hvparams(hv, {k: v for k, v in typed.items()
                                     if v not in ("default", None)}, level="instance")
        self.new.hvparams = merge_params(self.instance.hvparams, typed)
        filled = iu.filled_hvparams(self.cfg.get_cluster_info(), hv, self.new.os,
                                    self.new.hvparams)
        hvparams.check_hvparams(hv, filled, level="cluster")
        iu.node_checks(self, self.pnode.name, hv, hvparams=filled)
        self.result += [["hv/%s" % k, filled.get(k)] for k in sorted(typed)]

    def _check_os(self) -> None:
        op = self.op
        if not (op.os_name or op.osparams is not None or op.osparams_private is not None):
            return
        if op.os_name:
            self.new.os = op.os_name
            self.result.append(["os_name", op.os_name])
        self.new.osparams = merge_params(self.instance.osparams, op.osparams or {})
        self.new.osparams_private = merge_params(self.instance.osparams_private,
                                                 op.osparams_private or {})
        if not self.new.os:
            raise errors.OpPrereqError("Instance %s has no OS to take parameters" %
                                       self.instance.name, errors.ECODE_INVAL)
        res = self.rpc.call_one("os_get", self.pnode.name, {"name": self.new.os})
        res.raise_if_failed("Cannot get OS %s" % self.new.os)
        os_def = osdef.OSDefinition.from_dict(res.data)
        if not os_def.valid:
            raise errors.OpPrereqError("OS '%s' not in supported OS list for node %s: %s" %
                                       (os_def.name, self.pnode.name, os_def.error),
                                       errors.ECODE_INVAL)
        osdef.check_variant(os_def, osdef.split_os_name(self.new.os)[1], op.force_variant)
        merged = iu.filled_osparams(self.cfg.get_cluster_info(), self.new.os,
                                    self.new.osparams)
        merged.update(self.new.osparams_private)
        osdef.check_os_params(os_def, merged)
        if merged and os_def.api_version >= osdef.OS_API_V20:
            res = self.rpc.call_one("os_validate", self.pnode.name,
                                    {"name": self.new.os, "osparams": merged})
            if res.failed:
                raise errors.OpPrereqError("OS parameters validation failed on node %s: %s" %
                                           (res.node, res.fail_msg), errors.ECODE_INVAL)
        self.result += [["os/%s" % k, v] for k, v in sorted((op.osparams or {}).items())]

    # ---- disks and NICs ------------------------------------------------------------------

    def _check_disks(self) -> None:
        if self.instance.disk_template == constants.DT_DISKLESS:
            raise errors.OpPrereqError("Disk operations not supported for diskless instances",
                                       errors.ECODE_INVAL)
        for action, ident, params in self.disk_mods:
            if action == REMOVE and self._running():
                raise errors.OpPrereqError("Cannot remove disks of instance %s while it is"
                                           " running" % self.instance.name, errors.ECODE_STATE)
            self._apply_disk(action, ident, params)
        ist.renumber_disks(self.new.disks)
        ist.adopted_sizes(self, self.pnode.name, self.added)
        if self.added:
            ist.check_node_storage(self, self.instance.all_nodes, self.instance.disk_template,
                                   self.added)

    def _apply_disk(self, action: str, ident: Any, params: dict) -> None:
        disks = self.new.disks
        if action == ADD:
            idx = find_item(disks, ident, "disk", for_add=True)
            spec = ist.check_disk_spec(params, idx, self.instance.disk_template)
            disk = ist.generate_disks(self.cfg.get_cluster_info(), self.instance.disk_template,
                                      self.instance.name, [spec], self.instance.primary_node,
                                      base_index=idx, file_subdir=None,
                                      file_driver=self._file_driver(),
                                      snode_uuid=(self.instance.secondary_nodes or [None])[0])[0]
            disks.insert(idx, disk)
            self.added.append(disk)
            self.result.append(["disk/%d" % idx, "add:size=%s,mode=%s" %
                                (disk.size, disk.mode)])
        elif action == REMOVE:
            idx = find_item(disks, ident, "disk")
            self.removed.append(disks.pop(idx))
            self.result.append(["disk/%d" % idx, "remove"])
        else:
            idx = find_item(disks, ident, "disk")
            unknown = set(params) - {"mode", "name"}
            if unknown:
                raise errors.OpPrereqError("Disk parameter(s) %s cannot be modified (only mode"
                                           " and name)" % ", ".join(sorted(unknown)),
                                           errors.ECODE_INVAL)
            spec = ist.check_disk_spec(dict(params, size=1), idx, None)
            if "mode" in params:
                disks[idx].mode = spec["mode"]
                self.result.append(["disk.mode/%d" % idx, spec["mode"]])
            if "name" in params:
                disks[idx].name = params["name"] or None
                self.result.append(["disk.name/%d" % idx, params["name"]])

    def _file_driver(self) -> str | None:
        for disk in self.instance.disks:
            if disk.dev_type in constants.DTS_FILEBASED and disk.logical_id:
                return disk.logical_id[0]
        return None

    def _apply_nic(self, action: str, ident: Any, params: dict) -> None:
        nics = self.new.nics
        if action == ADD:
            idx = find_item(nics, ident, "NIC", for_add=True)
            nic = ic.build_nic(self, ic.check_nic_spec(params, idx), idx, None)
            nics.insert(idx, nic)
            filled = iu.filled_nicparams(self.cfg.get_cluster_info(), nic)
            self.result.append(["nic.%d" % idx, "add:mac=%s,ip=%s,mode=%s,link=%s,network=%s" %
                                (nic.mac, nic.ip, filled.get("mode"), filled.get("link"),
                                 nic.network)])
        elif action == REMOVE:
            idx = find_item(nics, ident, "NIC")
            nics.pop(idx)
            self.result.append(["nic.%d" % idx, "remove"])
        else:
            idx = find_item(nics, ident, "NIC")
            self._modify_nic(idx, ic.check_nic_spec(params, idx))

    def _modify_nic(self, idx: int, spec: dict) -> None:
        old = self.new.nics[idx]
        nic = copy.deepcopy(old)
        if "mac" in spec and str(spec["mac"]).lower() != (old.mac or ""):
            nic.mac = ic.nic_mac(self, spec["mac"], idx)
        if "ip" in spec:
            nic.ip = ic.nic_ip(spec["ip"], idx, None)
        if "name" in spec:
            nic.name = spec["name"] or None
        nic.nicparams = merge_params(old.nicparams, {k: (spec[k] if spec[k] != "" else None)
                                                     for k in ("mode", "link", "vlan")
                                                     if k in spec})
        ic.check_nic_params(self.cfg.get_cluster_info(), nic.nicparams, nic.ip, idx)
        self.new.nics[idx] = nic
        for key in sorted(spec):
            value = getattr(nic, key) if key in ("mac", "ip", "name") else spec[key]
            self.result.append(["nic.%s/%d" % (key, idx), value])

    # ---- hooks and execution ---------------------------------------------------------------

    def extra_hooks_env(self) -> dict:
        env: dict[str, Any] = {}
        if self.op.disk_template:
            env["NEW_DISK_TEMPLATE"] = self.op.disk_template
        if self.op.runtime_mem:
            env["RUNTIME_MEMORY"] = self.op.runtime_mem
        return env

    def exec(self, feedback_fn: Callable[[str], None]) -> list[list]:
        inst = self.instance
        if self.conversion is not None:
            self.conversion.run(feedback_fn, self.op.wait_for_sync)
            self.new.disks, self.new.disks_active = inst.disks, inst.disks_active
        if self.added:
            ist.allocate_drbd_ids(self.added, ist.DrbdAllocator(self.cfg, iu.ec_id(self)))
            ist.create_disks(self, inst, self.added)
            instance_mirror_rebuild.after_add(self, inst, self.added)
        if self.removed and not ist.remove_disks(self, inst, self.removed,
                                                 ignore_failures=True):
            self.log_warning("Continuing although removing the old disks failed")
        for attr in ("admin_state", "beparams", "hvparams", "os", "osparams",
                     "osparams_private", "nics", "disks"):
            setattr(inst, attr, getattr(self.new, attr))
        self.cfg.update(inst)
        if self.nic_mods or self.disk_mods:
            if self._running():
                feedback_fn("The changes of disks and NICs take effect at the next start")
        return self.result
