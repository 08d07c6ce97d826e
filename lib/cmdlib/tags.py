"""Logical units for tags on the cluster, nodes, instances and node groups."""

import re
from typing import Callable

from corral import constants, errors, locking
from corral.cmdlib.base import NoHooksLU, check_tags, expand_instance, expand_node


class _TagsLU(NoHooksLU):
    """Resolves (kind, name) to the tagged object and locks it."""

    def expand_names(self) -> None:
        kind, name = self.op.kind, self.op.name
        if kind == constants.TAG_CLUSTER:
            return
        if not name:
            raise errors.OpPrereqError("Tags of a %s need its name" % kind, errors.ECODE_INVAL)
        if kind == constants.TAG_NODE:
            self.needed_locks[locking.LEVEL_NODE] = [expand_node(self.cfg, name).uuid]
        elif kind == constants.TAG_INSTANCE:
            self.needed_locks[locking.LEVEL_INSTANCE] = [expand_instance(self.cfg, name).name]
        elif kind == constants.TAG_NODEGROUP:
            self.needed_locks[locking.LEVEL_NODEGROUP] = [self.cfg.lookup_node_group(name)]
        else:
            raise errors.OpPrereqError("Tags on %s objects are not supported" % kind,
                                       errors.ECODE_INVAL)
        if getattr(self, "READ_ONLY", False):
            self.share_locks = {level: True for level in self.share_locks}

    def target(self):
        kind, name = self.op.kind, self.op.name
        if kind == constants.TAG_CLUSTER:
            return self.cfg.get_cluster_info()
        if kind == constants.TAG_NODE:
            return expand_node(self.cfg, name)
        if kind == constants.TAG_INSTANCE:
            return expand_instance(self.cfg, name)
        return self.cfg.get_node_group(self.cfg.lookup_node_group(name))


class LUTagsGet(_TagsLU):
    READ_ONLY = True

    def exec(self, feedback_fn: Callable[[str], None]) -> list[str]:
        return sorted(self.target().tags)


class LUTagsSet(_TagsLU):
    def check_prereq(self) -> None:
        check_tags(self.op.tags)
        self.obj = self.target()
        if len(set(self.obj.tags) | set(self.op.tags)) > constants.MAX_TAGS_PER_OBJ:
            raise errors.TagError("Too many tags (maximum %d per object)" %
                                  constants.MAX_TAGS_PER_OBJ)

    def exec(self, feedback_fn: Callable[[str], None]) -> None:
        for tag in self.op.tags:
            if tag not in self.obj.tags:
                self.obj.tags.append(tag)
        self.cfg.update(self.obj)


class LUTagsDel(_TagsLU):
    def check_prereq(self) -> None:
        check_tags(self.op.tags)
        self.obj = self.target()
        missing = sorted(set(self.op.tags) - set(self.obj.tags))
        if missing:
            raise errors.OpPrereqError("Tag(s) %s not found" % ", ".join("'%s'" % t for t in missing),
                                       errors.ECODE_NOENT)

    def exec(self, feedback_fn: Callable[[str], None]) -> None:
        self.obj.tags = [t for t in self.obj.tags if t not in self.op.tags]
        self.cfg.update(self.obj)


class LUTagsSearch(NoHooksLU):
    def check_prereq(self) -> None:
        try:
            self.rx = re.compile(self.op.pattern)
        except re.error as err:
            raise errors.OpPrereqError("Invalid search pattern '%s': %s" % (self.op.pattern, err),
                                       errors.ECODE_INVAL) from None

    def exec(self, feedback_fn: Callable[[str], None]) -> list[list[str]]:
        objs = [("/cluster", self.cfg.get_cluster_info())]
        objs += [("/instances/%s" % i.name, i) for i in self.cfg.get_all_instances().values()]
        objs += [("/nodes/%s" % n.name, n) for n in self.cfg.get_all_nodes().values()]
        objs += [("/nodegroup/%s" % g.name, g) for g in self.cfg.get_all_node_groups().values()]
        out = []
        for path, obj in sorted(objs, key=lambda x: x[0]):
            for tag in sorted(obj.tags):
                if self.rx.search(tag):
                    out.append([path, tag])
        return out
