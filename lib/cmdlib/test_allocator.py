"""OP_TEST_ALLOCATOR (gnt-debug iallocator): show an allocator's input, or its raw answer.

``direction=in`` returns the input text that would be given to an
allocator, without running one; ``direction=out`` runs the allocator and
returns its output text unvalidated (so a broken plugin can be debugged).
Runs under the exclusive BGL (spec/opcodes.md §5), so the cluster it
describes does not move meanwhile.
"""

from typing import Callable

from corral import constants, errors, iallocator
from corral.cmdlib.base import NoHooksLU, expand_instance

_MODES_WITH_SPEC = ("allocate", "multi-allocate")


def _check_disks(disks: list) -> list[dict]:
    out = []
    for idx, disk in enumerate(disks):
        if not isinstance(disk, dict) or not isinstance(disk.get("size"), int) \
                or disk.get("mode", constants.DISK_RDWR) not in constants.DISK_ACCESS_SET:
            raise errors.OpPrereqError("Invalid disk %d: expected a dict with an integer 'size'"
                                       " and a mode 'rw' or 'ro'" % idx, errors.ECODE_INVAL)
        out.append({"size": disk["size"], "mode": disk.get("mode", constants.DISK_RDWR)})
    return out


def _check_nics(nics: list) -> list[dict]:
    out = []
    for idx, nic in enumerate(nics):
        if not isinstance(nic, dict):
            raise errors.OpPrereqError("Invalid NIC %d: expected a dict" % idx,
                                       errors.ECODE_INVAL)
        entry = {k: nic.get(k) for k in ("mac", "ip", "mode", "link", "network", "name",
                                         "vlan", "bridge")}
        if entry["bridge"] and not entry["link"]:
            entry["link"] = entry["bridge"]
            entry["mode"] = entry["mode"] or constants.NIC_MODE_BRIDGED
        out.append(entry)
    return out


class LUTestAllocator(NoHooksLU):
    REQ_BGL = True

    def check_arguments(self) -> None:
        op = self.op
        if op.mode in _MODES_WITH_SPEC:
            if op.memory is None or op.disks is None:
                raise errors.OpPrereqError("Mode %s needs memory and disks" % op.mode,
                                           errors.ECODE_INVAL)
            self.disks = _check_disks(op.disks)
            self.nics = _check_nics(op.nics or [])
        elif op.mode in ("node-evacuate", "change-group") and not op.instances:
            raise errors.OpPrereqError("Mode %s needs a list of instances" % op.mode,
                                       errors.ECODE_INVAL)
        if op.mode == "node-evacuate" and op.evac_mode is None:
            raise errors.OpPrereqError("Mode node-evacuate needs an evacuation mode",
                                       errors.ECODE_INVAL)

    def check_prereq(self) -> None:
        self.request = self._request()

    def _alloc(self, name: str) -> iallocator.AllocRequest:
        op = self.op
        cluster = self.cfg.get_cluster_info()
        return iallocator.AllocRequest(
            name, op.disk_template or cluster.enabled_disk_templates[0], op.memory,
            op.vcpus or 1, self.disks, self.nics, op.hypervisor or cluster.primary_hypervisor,
            os=op.os or "", tags=op.tags, spindle_use=op.spindle_use,
            group_name=op.group_name)

    def _request(self) -> iallocator.Request:
        op = self.op
        if op.mode == "allocate":
            if self.cfg.get_instance_by_name(op.name) is not None:
                raise errors.OpPrereqError("Instance '%s' already in the cluster" % op.name,
                                           errors.ECODE_EXISTS)
            return self._alloc(op.name)
        if op.mode == "multi-allocate":
            return iallocator.MultiAllocRequest([self._alloc("%s%d" % (op.name, idx))
                                                 for idx in range(op.count)])
        if op.mode == "relocate":
            inst = expand_instance(self.cfg, op.name)
            return iallocator.RelocRequest(
                inst.name, self.cfg.get_node_names(inst.secondary_nodes or [inst.primary_node]))
        names = [expand_instance(self.cfg, n).name for n in op.instances]
        if op.mode == "node-evacuate":
            return iallocator.NodeEvacRequest(names, op.evac_mode)
        groups = [self.cfg.lookup_node_group(g) for g in op.target_groups or []]
        return iallocator.ChangeGroupRequest(names, groups)

    def exec(self, feedback_fn: Callable[[str], None]) -> str:
        ial = iallocator.IAllocator(self.cfg, self.rpc, self.request)
        if self.op.direction == "in":
            return ial.build()
        ial.run(self.op.iallocator, validate=False)
        return ial.out_text
