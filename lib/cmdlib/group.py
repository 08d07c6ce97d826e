"""Logical units for node groups: add, remove, rename, assign nodes, modify (spec/cli.md §7)."""

import copy
from typing import Callable

from corral import constants, errors, locking, objects
from corral.cmdlib.base import LogicalUnit, expand_node

_GROUP_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-+")


def _check_group_name(name: str) -> None:
    if not name or not set(name) <= _GROUP_NAME_CHARS or len(name) > 128:
        raise errors.OpPrereqError("Invalid node group name '%s' (letters, digits and ._-+"
                                   " only)" % name, errors.ECODE_INVAL)


def _check_group_params(op) -> dict:
    """Validated attribute -> value changes from the common group parameters of ``op``."""
    from corral.cmdlib.cluster import DISKPARAMS_DEFAULTS, IPOLICY_DEFAULTS
    from corral.cmdlib.node import check_ndparams
    out: dict = {}
    if op.alloc_policy is not None:
        out["alloc_policy"] = op.alloc_policy
    if op.ndparams is not None:
        out["ndparams"] = check_ndparams(op.ndparams)
    if op.diskparams is not None:
        for tmpl, params in op.diskparams.items():
            if tmpl not in DISKPARAMS_DEFAULTS:
                raise errors.OpPrereqError("Unknown disk template '%s'" % tmpl,
                                           errors.ECODE_INVAL)
            unknown = set(params) - set(DISKPARAMS_DEFAULTS[tmpl])
            if unknown:
                raise errors.OpPrereqError("Unknown disk parameters for %s: %s" %
                                           (tmpl, ", ".join(sorted(unknown))), errors.ECODE_INVAL)
        out["diskparams"] = copy.deepcopy(op.diskparams)
    if op.ipolicy is not None:
        unknown = set(op.ipolicy) - set(IPOLICY_DEFAULTS)
        if unknown:
            raise errors.OpPrereqError("Unknown instance policy keys: %s" %
                                       ", ".join(sorted(unknown)), errors.ECODE_INVAL)
        out["ipolicy"] = copy.deepcopy(op.ipolicy)
    if op.hv_state is not None:
        out["hv_state_static"] = copy.deepcopy(op.hv_state)
    if op.disk_state is not None:
        out["disk_state_static"] = copy.deepcopy(op.disk_state)
    return out


class _GroupLU(LogicalUnit):
    HTYPE = constants.HTYPE_GROUP

    def hooks_target(self) -> str:
        return self.op.group_name

    def build_hooks_env(self) -> dict:
        return {"GROUP_NAME": self.op.group_name}

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        return [self.master_uuid], [self.master_uuid]


class LUGroupAdd(_GroupLU):
    HPATH = "group-add"

    def check_arguments(self) -> None:
        _check_group_name(self.op.group_name)

    def check_prereq(self) -> None:
        try:
            uuid = self.cfg.lookup_node_group(self.op.group_name)
        except errors.OpPrereqError:
            uuid = None
        if uuid is not None:
            raise errors.OpPrereqError("Desired group name '%s' already exists as a node group"
                                       " (UUID: %s)" % (self.op.group_name, uuid),
                                       errors.ECODE_EXISTS)
        self.changes = _check_group_params(self.op)

    def exec(self, feedback_fn: Callable[[str], None]) -> None:
        group = objects.NodeGroup(name=self.op.group_name, **self.changes)
        self.cfg.add_node_group(group)


class LUGroupRemove(_GroupLU):
    HPATH = "group-remove"

    def expand_names(self) -> None:
        self.group_uuid = self.cfg.lookup_node_group(self.op.group_name)
        self.needed_locks[locking.LEVEL_NODEGROUP] = [self.group_uuid]

    def check_prereq(self) -> None:
        members = self.cfg.get_group_members(self.group_uuid)
        if members:
            raise errors.OpPrereqError("Group '%s' not empty, has the following nodes: %s" %
                                       (self.op.group_name,
                                        ", ".join(sorted(self.cfg.get_node_names(members)))),
                                       errors.ECODE_STATE)
        if len(self.cfg.get_all_node_groups()) == 1:
            raise errors.OpPrereqError("Group '%s' is the only group, cannot be removed" %
                                       self.op.group_name, errors.ECODE_STATE)

    def exec(self, feedback_fn: Callable[[str], None]) -> None:
        self.cfg.remove_node_group(self.group_uuid)


class LUGroupRename(_GroupLU):
    HPATH = "group-rename"

    def check_arguments(self) -> None:
        _check_group_name(self.op.new_name)

    def expand_names(self) -> None:
        self.group_uuid = self.cfg.lookup_node_group(self.op.group_name)
        self.needed_locks[locking.LEVEL_NODEGROUP] = [self.group_uuid]

    def build_hooks_env(self) -> dict:
        return {"OLD_NAME": self.op.group_name, "NEW_NAME": self.op.new_name}

    def build_hooks_nodes(self) -> tuple[list[str], list[str]]:
        nodes = [self.master_uuid] + self.cfg.get_group_members(self.group_uuid)
        return nodes, list(nodes)

    def check_prereq(self) -> None:
        try:
            other = self.cfg.lookup_node_group(self.op.new_name)
        except errors.OpPrereqError:
            other = None
        if other is not None:
            raise errors.OpPrereqError("Desired new name '%s' clashes with existing node group"
                                       " (UUID: %s)" % (self.op.new_name, other),
                                       errors.ECODE_EXISTS)

    def exec(self, feedback_fn: Callable[[str], None]) -> str:
        self.cfg.rename_node_group(self.group_uuid, self.op.new_name)
        return self.op.new_name


class LUGroupSetParams(_GroupLU):
    HPATH = "group-modify"

    def expand_names(self) -> None:
        self.group_uuid = self.cfg.lookup_node_group(self.op.group_name)
        self.needed_locks[locking.LEVEL_NODEGROUP] = [self.group_uuid]

    def build_hooks_env(self) -> dict:
        return {"GROUP_NAME": self.op.group_name,
                "NEW_ALLOC_POLICY": self.op.alloc_policy}

    def check_prereq(self) -> None:
        self.changes = _check_group_params(self.op)
        if not self.changes:
            raise errors.OpPrereqError("Please pass at least one modification",
                                       errors.ECODE_INVAL)

    def exec(self, feedback_fn: Callable[[str], None]) -> list[list]:
        from corral.cmdlib.cluster import _merge_params
        group = self.cfg.get_node_group(self.group_uuid)
        result = []
        for attr, value in self.changes.items():
            if attr in ("ndparams", "ipolicy"):
                value = _merge_params(getattr(group, attr), value)
            elif attr == "diskparams":
                merged = copy.deepcopy(group.diskparams)
                for tmpl, params in value.items():
                    merged[tmpl] = _merge_params(merged.get(tmpl, {}), params)
                value = merged
            setattr(group, attr, value)
            result.append([attr, str(value)])
        self.cfg.update(group)
        return result


class LUGroupAssignNodes(LogicalUnit):
    """Move nodes to a group; refuses to split mirrored instances across groups unless forced."""

    HPATH = None
    REQ_BGL = True

    def expand_names(self) -> None:
        self.group_uuid = self.cfg.lookup_node_group(self.op.group_name)
        self.nodes = [expand_node(self.cfg, name) for name in self.op.nodes]

    def check_prereq(self) -> None:
        moving = {n.uuid for n in self.nodes}
        after = {u: (self.group_uuid if u in moving else n.group)
                 for u, n in self.cfg.get_all_nodes().items()}
        split = []
        for inst in self.cfg.get_all_instances().values():
            groups = {after.get(u) for u in inst.all_nodes}
            if len(groups) > 1:
                split.append(inst.name)
        if split and not self.op.force:
            raise errors.OpPrereqError("Instances would be split across node groups: %s; use"
                                       " --force to do it anyway" % ", ".join(sorted(split)),
                                       errors.ECODE_INVAL)
        self.split = split

    def exec(self, feedback_fn: Callable[[str], None]) -> None:
        if self.split:
            feedback_fn("WARNING: instances split across node groups: %s" %
                        ", ".join(sorted(self.split)))
        for node in self.nodes:
            if node.group != self.group_uuid:
                node.group = self.group_uuid
                self.cfg.update(node)
