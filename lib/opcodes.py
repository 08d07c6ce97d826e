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


class OpClusterConfigQuery(OpCode):
    OP_PARAMS = [_p("output_fields", REQUIRED, ht.TListOf(ht.TNonEmptyString), "Fields")]


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


class OpClusterVerifyDisks(OpCode):
    OP_PARAMS = [
        _p("group_name", None, ht.TMaybe(ht.TNonEmptyString), "Verify only this group"),
        _p("is_strict", True, ht.TBool, "Whether to check offline and drained nodes too"),
    ]


class OpGroupVerifyDisks(OpCode):
    OP_DSC_FIELD = "group_name"
    OP_PARAMS = [
        P_GROUP_NAME,
        _p("is_strict", True, ht.TBool, "Whether to check offline and drained nodes too"),
    ]


class OpClusterRepairDiskSizes(OpCode):
    OP_PARAMS = [_p("instances", list, ht.TListOf(ht.TNonEmptyString),
                    "Instances to check (default all)")]


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


class OpClusterActivateMasterIp(OpCode):
    pass


class OpClusterDeactivateMasterIp(OpCode):
    pass


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


# ---- nodes ---------------------------------------------------------------------------

TNodeEvacMode = ht.TElemOf(["primary-only", "secondary-only", "all"])
TMigrationMode = ht.TElemOf(["live", "non-live"])
TStorageType = ht.TElemOf(["lvm-pv", "lvm-vg", "file", "sharedfile", "gluster", "ext", "rbd",
                           "diskless"])


class OpNodeAdd(OpCode):
    OP_DSC_FIELD = "node_name"
    OP_PARAMS = [
        P_NODE_NAME,
        _p("primary_ip", None, ht.TMaybe(ht.TNonEmptyString), "Primary IP"),
        _p("secondary_ip", None, ht.TMaybe(ht.TNonEmptyString), "Secondary IP"),
        _p("readd", False, ht.TBool, "Re-add a node that was in the cluster"),
        _p("group", None, ht.TMaybe(ht.TNonEmptyString), "Node group"),
        _p("master_capable", None, ht.TMaybe(ht.TBool), "May become master"),
        _p("vm_capable", None, ht.TMaybe(ht.TBool), "May host instances"),
        _p("ndparams", None, ht.TMaybe(ht.TDict), "Node parameters"),
        _p("node_setup", False, ht.TBool, "Set up the node over SSH"),
        _p("ssh_key_check", True, ht.TBool,
           "Refuse a node whose SSH host key is not in the cluster's known_hosts"),
        _p("hv_state", None, ht.TMaybe(ht.TDict), "Hypervisor state"),
        _p("disk_state", None, ht.TMaybe(ht.TDict), "Disk state"),
    ]


class OpNodeRemove(OpCode):
    OP_DSC_FIELD = "node_name"
    OP_PARAMS = [P_NODE_NAME, P_NODE_UUID]


class OpNodeSetParams(OpCode):
    OP_DSC_FIELD = "node_name"
    OP_PARAMS = [
        P_NODE_NAME, P_NODE_UUID, P_FORCE,
        _p("master_candidate", None, ht.TMaybe(ht.TBool), "Master candidate flag"),
        _p("offline", None, ht.TMaybe(ht.TBool), "Offline flag"),
        _p("drained", None, ht.TMaybe(ht.TBool), "Drained flag"),
        _p("auto_promote", False, ht.TBool, "Promote other nodes if needed"),
        _p("master_capable", None, ht.TMaybe(ht.TBool), "Master capable flag"),
        _p("vm_capable", None, ht.TMaybe(ht.TBool), "VM capable flag"),
        _p("secondary_ip", None, ht.TMaybe(ht.TNonEmptyString), "Secondary IP"),
        _p("ndparams", None, ht.TMaybe(ht.TDict), "Node parameters"),
        _p("powered", None, ht.TMaybe(ht.TBool), "Powered state"),
        _p("hv_state", None, ht.TMaybe(ht.TDict), "Hypervisor state"),
        _p("disk_state", None, ht.TMaybe(ht.TDict), "Disk state"),
    ]


class OpNodePowercycle(OpCode):
    OP_DSC_FIELD = "node_name"
    OP_PARAMS = [P_NODE_NAME, P_NODE_UUID, P_FORCE]


class OpNodeEvacuate(OpCode):
    OP_DSC_FIELD = "node_name"
    OP_PARAMS = [
        P_NODE_NAME, P_NODE_UUID,
        _p("mode", REQUIRED, TNodeEvacMode, "Evacuation mode"),
        _p("remote_node", None, ht.TMaybe(ht.TNonEmptyString), "New secondary node"),
        _p("remote_node_uuid", None, ht.TMaybe(ht.TNonEmptyString), "New secondary UUID"),
        _p("iallocator", None, ht.TMaybe(ht.TNonEmptyString), "Instance allocator"),
        _p("early_release", False, ht.TBool, "Release locks early"),
        _p("ignore_soft_errors", None, ht.TMaybe(ht.TBool), "Ignore soft allocator errors"),
    ]


class OpNodeMigrate(OpCode):
    OP_DSC_FIELD = "node_name"
    OP_PARAMS = [
        P_NODE_NAME, P_NODE_UUID,
        _p("mode", None, ht.TMaybe(TMigrationMode), "Migration mode"),
        _p("live", None, ht.TMaybe(ht.TBool), "Live migration (deprecated)"),
        _p("target_node", None, ht.TMaybe(ht.TNonEmptyString), "Target node"),
        _p("target_node_uuid", None, ht.TMaybe(ht.TNonEmptyString), "Target node UUID"),
        _p("iallocator", None, ht.TMaybe(ht.TNonEmptyString), "Instance allocator"),
        _p("allow_runtime_changes", True, ht.TBool, "Allow runtime changes (ballooning)"),
        _p("ignore_ipolicy", False, ht.TBool, "Ignore the instance policy"),
    ]


class OpNodeQueryvols(OpCode):
    OP_PARAMS = [
        _p("output_fields", REQUIRED, ht.TListOf(ht.TNonEmptyString), "Fields"),
        _p("nodes", list, ht.TListOf(ht.TNonEmptyString), "Nodes"),
    ]


class OpNodeQueryStorage(OpCode):
    OP_PARAMS = [
        _p("output_fields", REQUIRED, ht.TListOf(ht.TNonEmptyString), "Fields"),
        _p("storage_type", None, ht.TMaybe(TStorageType), "Storage type"),
        _p("nodes", list, ht.TListOf(ht.TNonEmptyString), "Nodes"),
        _p("name", None, ht.TMaybe(ht.TNonEmptyString), "Storage unit name"),
    ]


class OpNodeModifyStorage(OpCode):
    OP_DSC_FIELD = "node_name"
    OP_PARAMS = [
        P_NODE_NAME, P_NODE_UUID,
        _p("storage_type", REQUIRED, TStorageType, "Storage type"),
        _p("name", None, ht.TMaybe(ht.TNonEmptyString), "Storage unit name"),
        _p("changes", REQUIRED, ht.TDict, "Changes ({'allocatable': bool})"),
    ]


class OpRepairNodeStorage(OpCode):
    OP_DSC_FIELD = "node_name"
    OP_PARAMS = [
        P_NODE_NAME, P_NODE_UUID,
        _p("storage_type", REQUIRED, TStorageType, "Storage type"),
        _p("name", None, ht.TMaybe(ht.TNonEmptyString), "Storage unit name"),
        _p("ignore_consistency", False, ht.TBool, "Ignore consistency"),
    ]


# ---- node groups ---------------------------------------------------------------------

TAllocPolicy = ht.TElemOf(constants.VALID_ALLOC_POLICIES)
_GROUP_PARAMS = [
    _p("alloc_policy", None, ht.TMaybe(TAllocPolicy), "Allocation policy"),
    _p("ndparams", None, ht.TMaybe(ht.TDict), "Node parameters"),
    _p("diskparams", None, ht.TMaybe(TDictOfDicts), "Disk parameters"),
    _p("ipolicy", None, ht.TMaybe(ht.TDict), "Instance policy"),
    _p("hv_state", None, ht.TMaybe(ht.TDict), "Hypervisor state"),
    _p("disk_state", None, ht.TMaybe(ht.TDict), "Disk state"),
]


class OpGroupAdd(OpCode):
    OP_DSC_FIELD = "group_name"
    OP_PARAMS = [P_GROUP_NAME] + _GROUP_PARAMS


class OpGroupAssignNodes(OpCode):
    OP_DSC_FIELD = "group_name"
    OP_PARAMS = [P_GROUP_NAME, P_FORCE,
                 _p("nodes", REQUIRED, ht.TListOf(ht.TNonEmptyString), "Nodes to assign"),
                 _p("node_uuids", None, ht.TMaybe(ht.TListOf(ht.TNonEmptyString)), "Node UUIDs")]


class OpGroupSetParams(OpCode):
    OP_DSC_FIELD = "group_name"
    OP_PARAMS = [P_GROUP_NAME] + _GROUP_PARAMS


class OpGroupRemove(OpCode):
    OP_DSC_FIELD = "group_name"
    OP_PARAMS = [P_GROUP_NAME]


class OpGroupRename(OpCode):
    OP_DSC_FIELD = "group_name"
    OP_PARAMS = [P_GROUP_NAME, _p("new_name", REQUIRED, ht.TNonEmptyString, "New name")]


class OpGroupEvacuate(OpCode):
    OP_DSC_FIELD = "group_name"
    OP_PARAMS = [
        P_GROUP_NAME,
        _p("target_groups", None, ht.TMaybe(ht.TListOf(ht.TNonEmptyString)), "Target groups"),
        _p("iallocator", None, ht.TMaybe(ht.TNonEmptyString), "Instance allocator"),
        _p("early_release", False, ht.TBool, "Release locks early"),
        _p("sequential", False, ht.TBool, "Sequential jobs"),
        _p("force_failover", False, ht.TBool, "Fail over instead of migrating"),
    ]


# ---- instances -----------------------------------------------------------------------

TInstCreateMode = ht.TElemOf(["create", "import", "remote-import"])
TDiskTemplate = ht.TElemOf(constants.DISK_TEMPLATES)
TRebootType = ht.TElemOf(["soft", "hard", "full"])
TReplaceMode = ht.TElemOf(["replace_on_primary", "replace_on_secondary",
                           "replace_new_secondary", "replace_auto"])
TDiskSpec = ht.TDictOf(ht.TNonEmptyString, ht.TAny)
TNicSpec = ht.TDictOf(ht.TNonEmptyString, ht.TAny)
TModList = ht.TListOf(ht.Check(lambda v: isinstance(v, list) and len(v) in (2, 3),
                               "a modification [action, identifier, params]"))
TCompress = ht.TNonEmptyString


class OpInstanceCreate(OpCode):
    OP_DSC_FIELD = "instance_name"
    OP_PARAMS = [
        P_INSTANCE_NAME,
        _p("mode", REQUIRED, TInstCreateMode, "Creation mode"),
        _p("disks", REQUIRED, ht.TListOf(TDiskSpec), "Disks"),
        _p("nics", REQUIRED, ht.TListOf(TNicSpec), "NICs"),
        _p("disk_template", None, ht.TMaybe(TDiskTemplate), "Disk template"),
        _p("os_type", None, ht.TMaybe(ht.TNonEmptyString), "OS (name or name+variant)"),
        _p("osparams", dict, ht.TDict, "OS parameters"),
        _p("osparams_private", None, ht.TMaybe(ht.TDict), "Private OS parameters"),
        _p("osparams_secret", None, ht.TMaybe(ht.TDict), "Secret OS parameters"),
        _p("pnode", None, ht.TMaybe(ht.TNonEmptyString), "Primary node"),
        _p("pnode_uuid", None, ht.TMaybe(ht.TNonEmptyString), "Primary node UUID"),
        _p("snode", None, ht.TMaybe(ht.TNonEmptyString), "Secondary node"),
        _p("snode_uuid", None, ht.TMaybe(ht.TNonEmptyString), "Secondary node UUID"),
        _p("iallocator", None, ht.TMaybe(ht.TNonEmptyString), "Instance allocator"),
        _p("group_name", None, ht.TMaybe(ht.TNonEmptyString), "Node group"),
        _p("hypervisor", None, ht.TMaybe(ht.TElemOf(constants.HYPER_TYPES)), "Hypervisor"),
        _p("hvparams", dict, ht.TDict, "Hypervisor parameters"),
        _p("beparams", dict, ht.TDict, "Backend parameters"),
        _p("start", True, ht.TBool, "Start after creation"),
        _p("no_install", None, ht.TMaybe(ht.TBool), "Do not install the OS"),
        _p("ip_check", True, ht.TBool, "Check the IP is not in use"),
        _p("name_check", True, ht.TBool, "Check the name resolves"),
        _p("conflicts_check", True, ht.TBool, "Check for IP conflicts"),
        _p("wait_for_sync", True, ht.TBool, "Wait for disk sync"),
        _p("file_storage_dir", None, ht.TMaybe(ht.TNonEmptyString), "File storage directory"),
        _p("file_driver", None, ht.TMaybe(ht.TElemOf(["loop", "blktap", "blktap2"])),
           "File driver"),
        _p("identify_defaults", False, ht.TBool, "Reset parameters equal to defaults"),
        _p("force_variant", False, ht.TBool, "Accept an unknown OS variant"),
        _p("ignore_ipolicy", False, ht.TBool, "Ignore the instance policy"),
        _p("opportunistic_locking", False, ht.TBool, "Lock only free nodes"),
        _p("src_node", None, ht.TMaybe(ht.TNonEmptyString), "Import source node"),
        _p("src_node_uuid", None, ht.TMaybe(ht.TNonEmptyString), "Import source node UUID"),
        _p("src_path", None, ht.TMaybe(ht.TNonEmptyString), "Import source path"),
        _p("source_handshake", None, ht.TMaybe(ht.TList), "Remote import handshake"),
        _p("source_x509_ca", None, ht.TMaybe(ht.TString), "Remote import CA"),
        _p("source_instance_name", None, ht.TMaybe(ht.TString), "Remote source instance"),
        _p("source_shutdown_timeout", 120, ht.TNonNegativeInt, "Remote source shutdown timeout"),
        _p("compress", "none", TCompress, "Import compression"),
        _p("tags", list, ht.TListOf(ht.TString), "Instance tags"),
        _p("forthcoming", False, ht.TBool, "Only reserve resources"),
        _p("commit", False, ht.TBool, "Commit a forthcoming instance"),
        _p("instance_communication", False, ht.TBool, "Instance communication"),
        _p("helper_startup_timeout", None, ht.TMaybe(ht.TPositiveInt), "Helper startup timeout"),
        _p("helper_shutdown_timeout", None, ht.TMaybe(ht.TPositiveInt),
           "Helper shutdown timeout"),
    ]


class OpInstanceMultiAlloc(OpCode):
    OP_PARAMS = [
        _p("instances", list, ht.TListOf(ht.TDict), "OP_INSTANCE_CREATE dicts"),
        _p("iallocator", None, ht.TMaybe(ht.TNonEmptyString), "Instance allocator"),
        _p("opportunistic_locking", False, ht.TBool, "Lock only free nodes"),
    ]


class OpInstanceReinstall(OpCode):
    OP_DSC_FIELD = "instance_name"
    OP_PARAMS = [
        P_INSTANCE_NAME, P_INSTANCE_UUID,
        _p("os_type", None, ht.TMaybe(ht.TNonEmptyString), "New OS"),
        _p("force_variant", False, ht.TBool, "Accept an unknown OS variant"),
        _p("osparams", None, ht.TMaybe(ht.TDict), "OS parameters"),
        _p("osparams_private", None, ht.TMaybe(ht.TDict), "Private OS parameters"),
        _p("osparams_secret", None, ht.TMaybe(ht.TDict), "Secret OS parameters"),
    ]


class OpInstanceRemove(OpCode):
    OP_DSC_FIELD = "instance_name"
    OP_PARAMS = [P_INSTANCE_NAME, P_INSTANCE_UUID, P_SHUTDOWN_TIMEOUT,
                 _p("ignore_failures", False, ht.TBool, "Ignore failures")]


class OpInstanceRename(OpCode):
    OP_DSC_FIELD = "instance_name"
    OP_PARAMS = [P_INSTANCE_NAME, P_INSTANCE_UUID,
                 _p("new_name", REQUIRED, ht.TNonEmptyString, "New name"),
                 _p("ip_check", True, ht.TBool, "Check the IP is not in use"),
                 _p("name_check", True, ht.TBool, "Check the name resolves")]


class OpInstanceStartup(OpCode):
    OP_DSC_FIELD = "instance_name"
    OP_PARAMS = [P_INSTANCE_NAME, P_INSTANCE_UUID, P_FORCE, P_IGNORE_OFFLINE,
                 _p("hvparams", dict, ht.TDict, "One-shot hypervisor parameters"),
                 _p("beparams", dict, ht.TDict, "One-shot backend parameters"),
                 _p("no_remember", False, ht.TBool, "Do not remember the state change"),
                 _p("startup_paused", False, ht.TBool, "Start paused"),
                 P_SHUTDOWN_TIMEOUT]


class OpInstanceShutdown(OpCode):
    OP_DSC_FIELD = "instance_name"
    OP_PARAMS = [P_INSTANCE_NAME, P_INSTANCE_UUID, P_FORCE, P_IGNORE_OFFLINE,
                 _p("timeout", 120, ht.TNonNegativeInt, "Shutdown timeout"),
                 _p("no_remember", False, ht.TBool, "Do not remember the state change"),
                 _p("admin_state_source", None, ht.TMaybe(ht.TElemOf(["admin", "user"])),
                    "Who requested the shutdown")]


class OpInstanceReboot(OpCode):
    OP_DSC_FIELD = "instance_name"
    OP_PARAMS = [P_INSTANCE_NAME, P_INSTANCE_UUID,
                 _p("reboot_type", REQUIRED, TRebootType, "Reboot type"),
                 _p("ignore_secondaries", False, ht.TBool, "Ignore secondaries"),
                 P_SHUTDOWN_TIMEOUT]


class OpInstanceMove(OpCode):
    OP_DSC_FIELD = "instance_name"
    OP_PARAMS = [P_INSTANCE_NAME, P_INSTANCE_UUID,
                 _p("target_node", REQUIRED, ht.TNonEmptyString, "Target node"),
                 _p("target_node_uuid", None, ht.TMaybe(ht.TNonEmptyString), "Target node UUID"),
                 P_SHUTDOWN_TIMEOUT,
                 _p("ignore_consistency", False, ht.TBool, "Ignore disk consistency"),
                 _p("ignore_ipolicy", False, ht.TBool, "Ignore the instance policy"),
                 _p("compress", "none", TCompress, "Transfer compression")]


class OpInstanceConsole(OpCode):
    OP_DSC_FIELD = "instance_name"
    OP_PARAMS = [P_INSTANCE_NAME, P_INSTANCE_UUID]


class OpInstanceActivateDisks(OpCode):
    OP_DSC_FIELD = "instance_name"
    OP_PARAMS = [P_INSTANCE_NAME, P_INSTANCE_UUID,
                 _p("ignore_size", False, ht.TBool, "Ignore recorded sizes"),
                 _p("wait_for_sync", False, ht.TBool, "Wait for disk sync")]


class OpInstanceDeactivateDisks(OpCode):
    OP_DSC_FIELD = "instance_name"
    OP_PARAMS = [P_INSTANCE_NAME, P_INSTANCE_UUID, P_FORCE]


class OpInstanceRecreateDisks(OpCode):
    OP_DSC_FIELD = "instance_name"
    OP_PARAMS = [P_INSTANCE_NAME, P_INSTANCE_UUID,
                 _p("disks", list, ht.TList, "Disk indices or [index, params]"),
                 _p("nodes", list, ht.TListOf(ht.TNonEmptyString), "New nodes"),
                 _p("node_uuids", None, ht.TMaybe(ht.TListOf(ht.TNonEmptyString)), "Node UUIDs"),
                 _p("iallocator", None, ht.TMaybe(ht.TNonEmptyString), "Instance allocator")]


class OpInstanceQueryData(OpCode):
    OP_PARAMS = [_p("instances", list, ht.TListOf(ht.TNonEmptyString), "Instances"),
                 _p("static", False, ht.TBool, "Only configuration data"),
                 _p("use_locking", False, ht.TBool, "Use locking")]


class OpInstanceSetParams(OpCode):
    OP_DSC_FIELD = "instance_name"
    OP_PARAMS = [
        P_INSTANCE_NAME, P_INSTANCE_UUID, P_FORCE,
        _p("nics", list, TModList, "NIC modifications"),
        _p("disks", list, TModList, "Disk modifications"),
        _p("beparams", dict, ht.TDict, "Backend parameters"),
        _p("runtime_mem", None, ht.TMaybe(ht.TPositiveInt), "Runtime memory (ballooning)"),
        _p("hvparams", dict, ht.TDict, "Hypervisor parameters"),
        _p("disk_template", None, ht.TMaybe(TDiskTemplate), "New disk template"),
        _p("ext_params", dict, ht.TDict, "ExtStorage parameters"),
        _p("file_driver", None, ht.TMaybe(ht.TElemOf(["loop", "blktap", "blktap2"])),
           "File driver"),
        _p("file_storage_dir", None, ht.TMaybe(ht.TNonEmptyString), "File storage directory"),
        _p("pnode", None, ht.TMaybe(ht.TNonEmptyString), "New primary node"),
        _p("pnode_uuid", None, ht.TMaybe(ht.TNonEmptyString), "New primary node UUID"),
        _p("remote_node", None, ht.TMaybe(ht.TNonEmptyString), "Secondary node (conversion)"),
        _p("remote_node_uuid", None, ht.TMaybe(ht.TNonEmptyString), "Secondary node UUID"),
        _p("iallocator", None, ht.TMaybe(ht.TNonEmptyString), "Instance allocator"),
        _p("os_name", None, ht.TMaybe(ht.TNonEmptyString), "New OS"),
        _p("osparams", None, ht.TMaybe(ht.TDict), "OS parameters"),
        _p("osparams_private", None, ht.TMaybe(ht.TDict), "Private OS parameters"),
        _p("force_variant", False, ht.TBool, "Accept an unknown OS variant"),
        _p("offline", None, ht.TMaybe(ht.TBool), "Mark offline/online"),
        _p("conflicts_check", True, ht.TBool, "Check for IP conflicts"),
        _p("hotplug", False, ht.TBool, "Hotplug devices"),
        _p("hotplug_if_possible", False, ht.TBool, "Hotplug if possible"),
        _p("instance_communication", None, ht.TMaybe(ht.TBool), "Instance communication"),
        _p("wait_for_sync", True, ht.TBool, "Wait for disk sync"),
        _p("ignore_ipolicy", False, ht.TBool, "Ignore the instance policy"),
    ]


class OpInstanceGrowDisk(OpCode):
    OP_DSC_FIELD = "instance_name"
    OP_PARAMS = [P_INSTANCE_NAME, P_INSTANCE_UUID,
                 _p("disk", REQUIRED, ht.TNonNegativeInt, "Disk index"),
                 _p("amount", REQUIRED, ht.TNonNegativeInt, "Amount (MiB)"),
                 _p("absolute", False, ht.TBool, "Amount is the new size"),
                 _p("wait_for_sync", True, ht.TBool, "Wait for disk sync"),
                 _p("ignore_ipolicy", False, ht.TBool, "Ignore the instance policy")]


class OpInstanceChangeGroup(OpCode):
    OP_DSC_FIELD = "instance_name"
    OP_PARAMS = [P_INSTANCE_NAME, P_INSTANCE_UUID,
                 _p("target_groups", None, ht.TMaybe(ht.TListOf(ht.TNonEmptyString)),
                    "Target groups"),
                 _p("iallocator", None, ht.TMaybe(ht.TNonEmptyString), "Instance allocator"),
                 _p("early_release", False, ht.TBool, "Release locks early")]


class OpInstanceReplaceDisks(OpCode):
    OP_DSC_FIELD = "instance_name"
    OP_PARAMS = [P_INSTANCE_NAME, P_INSTANCE_UUID,
                 _p("mode", REQUIRED, TReplaceMode, "Replacement mode"),
                 _p("disks", list, ht.TListOf(ht.TNonNegativeInt), "Disk indices"),
                 _p("remote_node", None, ht.TMaybe(ht.TNonEmptyString), "New secondary"),
                 _p("remote_node_uuid", None, ht.TMaybe(ht.TNonEmptyString), "New secondary UUID"),
                 _p("iallocator", None, ht.TMaybe(ht.TNonEmptyString), "Instance allocator"),
                 _p("early_release", False, ht.TBool, "Release locks early"),
                 _p("ignore_ipolicy", False, ht.TBool, "Ignore the instance policy")]


class OpInstanceFailover(OpCode):
    OP_DSC_FIELD = "instance_name"
    OP_PARAMS = [P_INSTANCE_NAME, P_INSTANCE_UUID, P_SHUTDOWN_TIMEOUT,
                 _p("ignore_consistency", False, ht.TBool, "Ignore disk consistency"),
                 _p("target_node", None, ht.TMaybe(ht.TNonEmptyString), "Target node"),
                 _p("target_node_uuid", None, ht.TMaybe(ht.TNonEmptyString), "Target node UUID"),
                 _p("iallocator", None, ht.TMaybe(ht.TNonEmptyString), "Instance allocator"),
                 _p("cleanup", False, ht.TBool, "Clean up after a failed failover"),
                 _p("ignore_ipolicy", False, ht.TBool, "Ignore the instance policy")]


class OpInstanceMigrate(OpCode):
    OP_DSC_FIELD = "instance_name"
    OP_PARAMS = [P_INSTANCE_NAME, P_INSTANCE_UUID,
                 _p("mode", None, ht.TMaybe(TMigrationMode), "Migration mode"),
                 _p("live", None, ht.TMaybe(ht.TBool), "Live migration (deprecated)"),
                 _p("target_node", None, ht.TMaybe(ht.TNonEmptyString), "Target node"),
                 _p("target_node_uuid", None, ht.TMaybe(ht.TNonEmptyString), "Target node UUID"),
                 _p("iallocator", None, ht.TMaybe(ht.TNonEmptyString), "Instance allocator"),
                 _p("cleanup", False, ht.TBool, "Clean up after a failed migration"),
                 _p("allow_failover", False, ht.TBool, "Fail over if migration is impossible"),
                 _p("allow_runtime_changes", True, ht.TBool, "Allow runtime changes"),
                 _p("ignore_ipolicy", False, ht.TBool, "Ignore the instance policy"),
                 _p("ignore_hvversions", False, ht.TBool, "Ignore hypervisor versions")]


# ---- OS, backup, allocator -------------------------------------------------------------

class OpOsDiagnose(OpCode):
    OP_PARAMS = [_p("output_fields", REQUIRED, ht.TListOf(ht.TNonEmptyString), "Fields"),
                 _p("names", list, ht.TListOf(ht.TNonEmptyString), "OS names")]


class OpBackupPrepare(OpCode):
    OP_DSC_FIELD = "instance_name"
    OP_PARAMS = [P_INSTANCE_NAME, P_INSTANCE_UUID,
                 _p("mode", REQUIRED, ht.TElemOf(["local", "remote"]), "Export mode")]


class OpBackupExport(OpCode):
    OP_DSC_FIELD = "instance_name"
    OP_PARAMS = [P_INSTANCE_NAME, P_INSTANCE_UUID, P_SHUTDOWN_TIMEOUT,
                 _p("target_node", REQUIRED, ht.TOr(ht.TNonEmptyString, ht.TList), "Target"),
                 _p("target_node_uuid", None, ht.TMaybe(ht.TNonEmptyString), "Target UUID"),
                 _p("mode", "local", ht.TElemOf(["local", "remote"]), "Export mode"),
                 _p("shutdown", True, ht.TBool, "Shut the instance down first"),
                 _p("remove_instance", False, ht.TBool, "Remove the instance afterwards"),
                 _p("ignore_remove_failures", False, ht.TBool, "Ignore removal failures"),
                 _p("x509_key_name", None, ht.TMaybe(ht.TList), "X509 key name"),
                 _p("destination_x509_ca", None, ht.TMaybe(ht.TString), "Destination CA"),
                 _p("compress", "none", TCompress, "Compression"),
                 _p("zero_free_space", False, ht.TBool, "Zero free space first"),
                 _p("zeroing_timeout_fixed", None, ht.TMaybe(ht.TNonNegativeInt), "Timeout"),
                 _p("zeroing_timeout_per_mib", None, ht.TMaybe(ht.TNonNegativeFloat), "Timeout"),
                 _p("long_sleep", False, ht.TBool, "Long sleep")]


class OpBackupRemove(OpCode):
    OP_DSC_FIELD = "instance_name"
    OP_PARAMS = [P_INSTANCE_NAME, P_INSTANCE_UUID]


class OpTestAllocator(OpCode):
    OP_DSC_FIELD = "name"
    OP_PARAMS = [
        _p("direction", REQUIRED, ht.TElemOf(["in", "out"]), "Direction"),
        _p("mode", REQUIRED, ht.TElemOf(["allocate", "relocate", "node-evacuate",
                                         "change-group", "multi-allocate"]), "Request type"),
        _p("name", REQUIRED, ht.TNonEmptyString, "Instance name"),
        _p("nics", None, ht.TMaybe(ht.TList), "NICs"),
        _p("disks", None, ht.TMaybe(ht.TList), "Disks"),
        _p("hypervisor", None, ht.TMaybe(ht.TNonEmptyString), "Hypervisor"),
        _p("iallocator", None, ht.TMaybe(ht.TNonEmptyString), "Allocator"),
        _p("tags", list, ht.TListOf(ht.TString), "Tags"),
        _p("memory", None, ht.TMaybe(ht.TNonNegativeInt), "Memory"),
        _p("vcpus", None, ht.TMaybe(ht.TNonNegativeInt), "VCPUs"),
        _p("os", None, ht.TMaybe(ht.TNonEmptyString), "OS"),
        _p("disk_template", None, ht.TMaybe(TDiskTemplate), "Disk template"),
        _p("instances", None, ht.TMaybe(ht.TList), "Instances"),
        _p("evac_mode", None, ht.TMaybe(TNodeEvacMode), "Evacuation mode"),
        _p("target_groups", None, ht.TMaybe(ht.TList), "Target groups"),
        _p("spindle_use", 1, ht.TNonNegativeInt, "Spindle use"),
        _p("count", 1, ht.TPositiveInt, "Count"),
        _p("group_name", None, ht.TMaybe(ht.TNonEmptyString), "Group"),
    ]
