"""Opcodes: the operations a job is made of, each with one typed parameter table.

An opcode class declares ``OP_PARAMS`` (name, default, check, doc); the OP_ID
is derived from the class name (``OpInstanceCreate`` -> ``OP_INSTANCE_CREATE``).
The same table validates CLI-built opcodes, RAPI bodies and submitted JSON, and
documents the parameters.  Serialized form: ``{"OP_ID": ..., param: value}``
(spec/opcodes.md §1).  Each opcode is executed by the logical unit of the same
name in cmdlib/ (a test checks that every opcode has one).
"""

import re
from typing import Any, ClassVar, NamedTuple

from corral import constants, errors, ht

REQUIRED = object()


class Param(NamedTuple):
    name: str
    default: Any
    check: ht.Check
    doc: str


def _p(name: str, default: Any, check: ht.Check, doc: str = "") -> Param:
    return Param(name, default, check, doc)


TPriority = ht.Check(lambda v: ht.TInt(v) and constants.OP_PRIO_HIGHEST <= v <= constants.OP_PRIO_LOWEST,
                     "a priority: 10 (low), 0 (normal) or -10 (high)")

COMMON_PARAMS = [
    _p("dry_run", False, ht.TMaybe(ht.TBool), "Run prerequisite checks only"),
    _p("debug_level", 0, ht.TMaybe(ht.TNonNegativeInt), "Debug level"),
    _p("priority", constants.OP_PRIO_DEFAULT, TPriority, "Opcode priority"),
    _p("depends", None, ht.TMaybe(ht.TListOf(ht.TJobDependency)), "Job dependencies"),
    _p("comment", None, ht.TMaybe(ht.TString), "Comment"),
    _p("reason", list, ht.TListOf(ht.TReasonEntry), "Reason trail"),
]
COMMON_PARAM_NAMES = frozenset(p.name for p in COMMON_PARAMS)

# Reusable parameter definitions
P_INSTANCE_NAME = _p("instance_name", REQUIRED, ht.TNonEmptyString, "Instance name")
P_INSTANCE_UUID = _p("instance_uuid", None, ht.TMaybe(ht.TNonEmptyString), "Instance UUID")
P_NODE_NAME = _p("node_name", REQUIRED, ht.TNonEmptyString, "Node name")
P_NODE_UUID = _p("node_uuid", None, ht.TMaybe(ht.TNonEmptyString), "Node UUID")
P_GROUP_NAME = _p("group_name", REQUIRED, ht.TNonEmptyString, "Node group name")
P_FORCE = _p("force", False, ht.TBool, "Force the operation")
P_SHUTDOWN_TIMEOUT = _p("shutdown_timeout", 120, ht.TNonNegativeInt,
                        "How long to wait for a clean shutdown, in seconds")
P_IGNORE_OFFLINE = _p("ignore_offline_nodes", False, ht.TBool, "Ignore offline nodes")
P_VERIFY_COMMON = [
    _p("ignore_errors", list, ht.TListOf(ht.TNonEmptyString), "Error codes to demote to warnings"),
    _p("error_codes", False, ht.TBool, "Report error codes"),
    _p("verbose", False, ht.TBool, "Verbose output"),
    _p("debug_simulate_errors", False, ht.TBool, "Simulate errors"),
]
TTagKind = ht.TElemOf(constants.VALID_TAG_TYPES)


def _op_id_from_class(name: str) -> str:
    assert name.startswith("Op")
    return "OP_" + re.sub(r"(?<!^)(?=[A-Z])", "_", name[2:]).upper()


class OpCode:
    """Base of all opcodes; instances hold validated parameter values."""

    OP_ID: ClassVar[str] = ""
    OP_PARAMS: ClassVar[list[Param]] = []
    OP_DSC_FIELD: ClassVar[str | None] = None
    OP_RESULT: ClassVar[ht.Check | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.OP_ID = _op_id_from_class(cls.__name__)
        OP_MAPPING[cls.OP_ID] = cls

    def __init__(self, **kwargs: Any) -> None:
        for p in self.all_params():
            if p.name in kwargs:
                value = kwargs.pop(p.name)
            elif p.default is REQUIRED:
                value = None
            else:
                value = p.default() if callable(p.default) else p.default
            setattr(self, p.name, value)
        if kwargs:
            raise errors.OpPrereqError(
                "Parameter%s %s unknown for %s" % ("s" if len(kwargs) > 1 else "",
                                                   ", ".join("'%s'" % k for k in sorted(kwargs)),
                                                   self.OP_ID), errors.ECODE_INVAL)

    @classmethod
    def all_params(cls) -> list[Param]:
        return cls.OP_PARAMS + COMMON_PARAMS

    def validate(self) -> None:
        """Check every parameter's type; raise OpPrereqError naming the first bad one."""
        for p in self.all_params():
            value = getattr(self, p.name)
            if p.default is REQUIRED and value is None:
                raise errors.OpPrereqError("Parameter '%s.%s' is required (%s)" %
                                           (self.OP_ID, p.name, p.check.desc), errors.ECODE_INVAL)
            if value is None and p.default is None:
                continue
            if not p.check(value):
                raise errors.OpPrereqError("Parameter '%s.%s' fails validation: got %r, expected %s"
                                           % (self.OP_ID, p.name, value, p.check.desc),
                                           errors.ECODE_INVAL)

    def to_dict(self) -> dict:
        out = {"OP_ID": self.OP_ID}
        for p in self.all_params():
            out[p.name] = getattr(self, p.name)
        return out

    def summary(self) -> str:
        """``OP_ID`` minus ``OP_``, plus the target in parentheses (spec/opcodes.md §3)."""
        text = self.OP_ID[3:]
        target = self.summary_target()
        if target is not None:
            text += "(%s)" % target
        return text

    def summary_target(self) -> str | None:
        if self.OP_DSC_FIELD is None:
            return None
        value = getattr(self, self.OP_DSC_FIELD, None)
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        return None if value is None else str(value)

    def __repr__(self) -> str:
        return "<%s>" % self.summary()


OP_MAPPING: dict[str, type[OpCode]] = {}


def from_dict(data: Any) -> OpCode:
    """Build and validate an opcode from its serialized form."""
    if not isinstance(data, dict):
        raise errors.OpPrereqError("Invalid opcode: expected a JSON object, got %s" %
                                   type(data).__name__, errors.ECODE_INVAL)
    data = dict(data)
    op_id = data.pop("OP_ID", None)
    cls = OP_MAPPING.get(op_id) if isinstance(op_id, str) else None
    if cls is None:
        raise errors.OpPrereqError("Unknown opcode %r (known: OP_ID values such as %s)" %
                                   (op_id, ", ".join(sorted(OP_MAPPING)[:3]) + ", ..."),
                                   errors.ECODE_INVAL)
    op = cls(**data)
    op.validate()
    return op


# ---- cluster -------------------------------------------------------------------

class OpClusterPostInit(OpCode):
    pass


class OpClusterDestroy(OpCode):
    pass


class OpClusterQuery(OpCode):
    pass


class OpClusterVerify(OpCode):
    OP_PARAMS = [
        _p("group_name", None, ht.TMaybe(ht.TNonEmptyString), "Verify only this group"),
        _p("skip_checks", list, ht.TListOf(ht.TElemOf(["nplusone_mem"])), "Checks to skip"),
        _p("verify_clutter", False, ht.TBool, "Check for clutter in authorized_keys"),
    ] + P_VERIFY_COMMON


class OpClusterVerifyConfig(OpCode):
    OP_PARAMS = list(P_VERIFY_COMMON)


class OpClusterVerifyGroup(OpCode):
    OP_DSC_FIELD = "group_name"
    OP_PARAMS = [
        P_GROUP_NAME,
        _p("skip_checks", list, ht.TListOf(ht.TElemOf(["nplusone_mem"])), "Checks to skip"),
        _p("verify_clutter", False, ht.TBool, "Check for clutter in authorized_keys"),
    ] + P_VERIFY_COMMON


class OpClusterRedistConf(OpCode):
    pass


TDictOfDicts = ht.TDictOf(ht.TNonEmptyString, ht.TDict)
TOsListMod = ht.TListOf(ht.TTupleOf(ht.TElemOf(["add", "remove"]), ht.TNonEmptyString))


class OpClusterSetParams(OpCode):
    OP_PARAMS = [
        P_FORCE,
        _p("vg_name", None, ht.TMaybe(ht.TString), "Volume group name"),
        _p("enabled_hypervisors", None, ht.TMaybe(ht.TListOf(ht.TElemOf(constants.HYPER_TYPES))),
           "Enabled hypervisors"),
        _p("hvparams", None, ht.TMaybe(TDictOfDicts), "Cluster-wide hypervisor parameters"),
        _p("beparams", None, ht.TMaybe(ht.TDict), "Cluster-wide backend parameters"),
        _p("os_hvp", None, ht.TMaybe(TDictOfDicts), "Per-OS hypervisor parameters"),
        _p("osparams", None, ht.TMaybe(TDictOfDicts), "Per-OS parameters"),
        _p("osparams_private_cluster", None, ht.TMaybe(TDictOfDicts), "Private OS parameters"),
        _p("diskparams", None, ht.TMaybe(TDictOfDicts), "Disk template parameters"),
        _p("nicparams", None, ht.TMaybe(ht.TDict), "Cluster-wide NIC parameters"),
        _p("ndparams", None, ht.TMaybe(ht.TDict), "Cluster-wide node parameters"),
        _p("ipolicy", None, ht.TMaybe(ht.TDict), "Instance policy"),
        _p("candidate_pool_size", None, ht.TMaybe(ht.TPositiveInt), "Master candidate pool size"),
        _p("max_running_jobs", None, ht.TMaybe(ht.TPositiveInt), "Maximum running jobs"),
        _p("max_tracked_jobs", None, ht.TMaybe(ht.TPositiveInt), "Maximum tracked jobs"),
        _p("uid_pool", None, ht.TMaybe(ht.TList), "UID pool"),
        _p("add_uids", None, ht.TMaybe(ht.TList), "UIDs to add"),
        _p("remove_uids", None, ht.TMaybe(ht.TList), "UIDs to remove"),
        _p("maintain_node_health", None, ht.TMaybe(ht.TBool), "Maintain node health"),
        _p("prealloc_wipe_disks", None, ht.TMaybe(ht.TBool), "Wipe disks before allocation"),
        _p("drbd_helper", None, ht.TMaybe(ht.TString), "DRBD usermode helper"),
        _p("default_iallocator", None, ht.TMaybe(ht.TString), "Default iallocator"),
        _p("default_iallocator_params", None, ht.TMaybe(ht.TDict), "Default iallocator params"),
        _p("mac_prefix", None, ht.TMaybe(ht.TRegex(r"^[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}$",
                                                     "a MAC prefix like aa:00:00")), "MAC prefix"),
        _p("master_netdev", None, ht.TMaybe(ht.TString), "Master network device"),
        _p("master_netmask", None, ht.TMaybe(ht.TNonNegativeInt), "Master netmask"),
        _p("reserved_lvs", None, ht.TMaybe(ht.TListOf(ht.TNonEmptyString)), "Reserved LVs"),
        _p("hidden_os", None, ht.TMaybe(TOsListMod), "Hidden OS modifications"),
        _p("blacklisted_os", None, ht.TMaybe(TOsListMod), "Blacklisted OS modifications"),
        _p("use_external_mip_script", None, ht.TMaybe(ht.TBool), "Use external master IP script"),
        _p("enabled_disk_templates", None, ht.TMaybe(ht.TListOf(ht.TElemOf(constants.DISK_TEMPLATES))),
           "Enabled disk templates"),
        _p("modify_etc_hosts", None, ht.TMaybe(ht.TBool), "Modify /etc/hosts"),
        _p("file_storage_dir", None, ht.TMaybe(ht.TString), "File storage directory"),
        _p("shared_file_storage_dir", None, ht.TMaybe(ht.TString), "Shared file storage directory"),
        _p("gluster_storage_dir", None, ht.TMaybe(ht.TString), "Gluster storage directory"),
        _p("install_image", None, ht.TMaybe(ht.TString), "Install image"),
        _p("instance_communication_network", None, ht.TMaybe(ht.TString), "Communication network"),
        _p("zeroing_image", None, ht.TMaybe(ht.TString), "Zeroing image"),
        _p("compression_tools", None, ht.TMaybe(ht.TListOf(ht.TNonEmptyString)), "Compression tools"),
        _p("enabled_user_shutdown", None, ht.TMaybe(ht.TBool), "Enable user shutdown"),
        _p("enabled_data_collectors", None, ht.TMaybe(ht.TDict), "Data collectors"),
        _p("data_collector_interval", None, ht.TMaybe(ht.TDict), "Data collector intervals"),
        _p("hv_state", None, ht.TMaybe(ht.TDict), "Hypervisor state"),
        _p("disk_state", None, ht.TMaybe(ht.TDict), "Disk state"),
    ]


class OpClusterRename(OpCode):
    OP_DSC_FIELD = "name"
    OP_PARAMS = [_p("name", REQUIRED, ht.THostname, "New cluster name")]


# ---- queries -------------------------------------------------------------------

QR_VIA_OP = ("cluster", "instance", "node", "group", "os", "export", "job", "lock",
             "network", "filter", "extstorage")


class OpQuery(OpCode):
    OP_DSC_FIELD = "what"
    OP_PARAMS = [
        _p("what", REQUIRED, ht.TElemOf(QR_VIA_OP), "Resource to query"),
        _p("fields", REQUIRED, ht.TListOf(ht.TNonEmptyString), "Fields to return"),
        _p("qfilter", None, ht.TMaybe(ht.TList), "Query filter"),
        _p("use_locking", False, ht.TBool, "Use locking"),
    ]


class OpQueryFields(OpCode):
    OP_DSC_FIELD = "what"
    OP_PARAMS = [
        _p("what", REQUIRED, ht.TElemOf(QR_VIA_OP), "Resource to query"),
        _p("fields", None, ht.TMaybe(ht.TListOf(ht.TNonEmptyString)), "Fields to describe"),
    ]


# ---- tags ------------------------------------------------------------------------

class OpTagsGet(OpCode):
    OP_DSC_FIELD = "kind"
    OP_PARAMS = [
        _p("kind", REQUIRED, TTagKind, "Kind of object"),
        _p("name", None, ht.TMaybe(ht.TNonEmptyString), "Object name"),
        _p("use_locking", False, ht.TBool, "Use locking"),
    ]


class OpTagsSet(OpCode):
    OP_DSC_FIELD = "name"
    OP_PARAMS = [
        _p("kind", REQUIRED, TTagKind, "Kind of object"),
        _p("tags", REQUIRED, ht.TListOf(ht.TString), "Tags"),
        _p("name", None, ht.TMaybe(ht.TNonEmptyString), "Object name"),
    ]


class OpTagsDel(OpCode):
    OP_DSC_FIELD = "name"
    OP_PARAMS = OpTagsSet.OP_PARAMS


class OpTagsSearch(OpCode):
    OP_DSC_FIELD = "pattern"
    OP_PARAMS = [_p("pattern", REQUIRED, ht.TNonEmptyString, "Regular expression")]


# ---- tests -----------------------------------------------------------------------

class OpTestDelay(OpCode):
    OP_PARAMS = [
        _p("duration", REQUIRED, ht.TNonNegativeFloat, "Duration in seconds"),
        _p("on_master", True, ht.TBool, "Sleep on the master"),
        _p("on_nodes", list, ht.TListOf(ht.TNonEmptyString), "Nodes to sleep on"),
        _p("on_node_uuids", None, ht.TMaybe(ht.TListOf(ht.TNonEmptyString)), "Node UUIDs"),
        _p("repeat", 0, ht.TNonNegativeInt, "Repeat count"),
        _p("interruptible", False, ht.TBool, "Allow cancelling while sleeping"),
        _p("no_locks", True, ht.TBool, "Take no locks"),
    ]

    def summary_target(self) -> str | None:
        return "%d ns" % int(round(self.duration * 1e9))


class OpTestJqueue(OpCode):
    OP_PARAMS = [
        _p("notify_waitlock", False, ht.TBool, "Notify when waiting for locks"),
        _p("notify_exec", False, ht.TBool, "Notify when executing"),
        _p("log_messages", list, ht.TListOf(ht.TString), "Messages to log"),
        _p("fail", False, ht.TBool, "Fail the opcode"),
    ]
