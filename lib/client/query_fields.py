"""The list fields of each queryable resource: names, titles, kinds, docs.

One table per resource (spec/cli.md §3, §4, §5, §7, §8 and spec/opcodes.md
§3), shared by the gnt-* ``list``/``list-fields`` commands, OP_QUERY_FIELDS
and RAPI ``/2/query/*/fields``.  Only descriptions live here; the master
computes the values.  Besides the static fields there are parametrised ones,
resolved by ``lookup_field``:

* instance ``disk.size/N`` ... ``nic.network.name/N`` (N < MAX_DISKS/MAX_NICS),
* instance ``be/<param>`` and ``hv/<param>``, node ``ndp/<param>``,
* instance aliases (``vcpus`` = ``be/vcpus``, ``ip`` = ``nic.ip/0``...): an
  alias keeps its own name and takes the target's title, kind and doc.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from corral.client.output import (
    QFT_BOOL, QFT_FLOAT, QFT_NUMBER, QFT_OTHER, QFT_TEXT, QFT_TIMESTAMP, QFT_UNIT,
    QFT_UNKNOWN, FieldDef, format_key_values, format_timestamp)

RESOURCE_NODE = "node"
RESOURCE_INSTANCE = "instance"
RESOURCE_GROUP = "group"
RESOURCE_JOB = "job"
RESOURCE_EXPORT = "export"
RESOURCE_OS = "os"

MAX_DISKS = 16
MAX_NICS = 8


def _table(defs: Iterable[FieldDef]) -> dict[str, FieldDef]:
    return {f.name: f for f in defs}


def _common(what: str) -> list[FieldDef]:
    return [
        FieldDef("ctime", "CTime", QFT_TIMESTAMP, "Creation timestamp"),
        FieldDef("mtime", "MTime", QFT_TIMESTAMP, "Modification timestamp"),
        FieldDef("uuid", "UUID", QFT_TEXT, "%s UUID" % what),
        FieldDef("serial_no", "SerialNo", QFT_NUMBER,
                 "%s object serial number, incremented on each modification" % what),
    ]


def _tags(join: bool) -> FieldDef:
    return FieldDef("tags", "Tags", QFT_OTHER, "Tags", join_list=join)


NODE_FIELDS = _table([
    FieldDef("name", "Node", QFT_TEXT, "Node name"),
    FieldDef("pip", "PrimaryIP", QFT_TEXT, "Primary IP address"),
    FieldDef("sip", "SecondaryIP", QFT_TEXT, "Secondary IP address"),
    FieldDef("master", "IsMaster", QFT_BOOL, "Whether node is master"),
    FieldDef("master_candidate", "MasterC", QFT_BOOL,
             "Whether node is a master candidate"),
    FieldDef("master_capable", "MasterCapable", QFT_BOOL,
             "Whether node can become a master candidate"),
    FieldDef("vm_capable", "VMCapable", QFT_BOOL, "Whether node can host instances"),
    FieldDef("drained", "Drained", QFT_BOOL, "Whether node is drained"),
    FieldDef("offline", "Offline", QFT_BOOL, "Whether node is marked offline"),
    FieldDef("role", "Role", QFT_TEXT,
             'Node role; "M" for master, "C" for master candidate, "R" for regular,'
             ' "D" for drained, "O" for offline'),
    FieldDef("group", "Group", QFT_TEXT, "Node group"),
    FieldDef("group.uuid", "GroupUUID", QFT_TEXT, "UUID of node group"),
    FieldDef("ndparams", "NodeParameters", QFT_OTHER, "Merged node parameters"),
    FieldDef("custom_ndparams", "CustomNodeParameters", QFT_OTHER, "Custom node parameters"),
    FieldDef("pinst_cnt", "Pinst", QFT_NUMBER,
             "Number of instances with this node as primary"),
    FieldDef("sinst_cnt", "Sinst", QFT_NUMBER,
             "Number of instances with this node as secondary"),
    FieldDef("pinst_list", "PriInstances", QFT_OTHER,
             "List of instances with this node as primary", join_list=True),
    FieldDef("sinst_list", "SecInstances", QFT_OTHER,
             "List of instances with this node as secondary", join_list=True),
    FieldDef("powered", "Powered", QFT_BOOL,
             "Whether node is thought to be powered on"),
    FieldDef("hv_state", "HypervisorState", QFT_OTHER, "Static hypervisor state"),
    FieldDef("disk_state", "DiskState", QFT_OTHER, "Static disk state"),
    FieldDef("bootid", "BootID", QFT_TEXT,
             "Random UUID renewed for each system reboot, can be used for detecting"
             " reboots by tracking changes"),
    FieldDef("cnodes", "CNodes", QFT_NUMBER,
             "Number of NUMA domains on node (if exported by hypervisor)"),
    FieldDef("cnos", "CNOs", QFT_NUMBER,
             "Number of logical processors used by the node OS (dom0 for Xen)"),
    FieldDef("csockets", "CSockets", QFT_NUMBER,
             "Number of physical CPU sockets (if exported by hypervisor)"),
    FieldDef("ctotal", "CTotal", QFT_NUMBER, "Number of logical processors"),
    FieldDef("dfree", "DFree", QFT_UNIT, "Available storage space in storage unit"),
    FieldDef("dtotal", "DTotal", QFT_UNIT,
             "Total storage space in storage unit used for instance disk allocation"),
    FieldDef("hv_problems", "HvProblems", QFT_OTHER,
             "What the enabled hypervisors report as wrong on the node (empty: none)"),
    FieldDef("spfree", "SpFree", QFT_NUMBER,
             "Available spindles in volume group (exclusive storage only)"),
    FieldDef("sptotal", "SpTotal", QFT_NUMBER,
             "Total spindles in volume group (exclusive storage only)"),
    FieldDef("mfree", "MFree", QFT_UNIT, "Memory available for instance allocations"),
    FieldDef("mnode", "MNode", QFT_UNIT, "Amount of memory used by node (dom0 for Xen)"),
    FieldDef("mtotal", "MTotal", QFT_UNIT, "Total amount of memory of physical machine"),
    *_common("Node"),
    _tags(True),
])

# ndparams: name -> (title, kind), spec/hypervisors-storage.md §3
NODE_PARAMS = {
    "oob_program": ("OutOfBandProgram", QFT_TEXT),
    "spindle_count": ("SpindleCount", QFT_NUMBER),
    "exclusive_storage": ("ExclusiveStorage", QFT_BOOL),
    "ovs": ("OpenvSwitch", QFT_BOOL),
    "ovs_name": ("OpenvSwitchName", QFT_TEXT),
    "ovs_link": ("OpenvSwitchLink", QFT_TEXT),
    "ssh_port": ("SshPort", QFT_NUMBER),
    "cpu_speed": ("CPUSpeed", QFT_FLOAT),
}

_INSTANCE_STATUS_DOC = (
    'Instance status; "running" if instance is set to be running and actually is,'
    ' "ADMIN_down" if instance is stopped and is not running, "ADMIN_offline" if'
    ' instance is offline, "USER_down" if the user shut it down from inside,'
    ' "ERROR_up" if instance should be stopped but is actually running,'
    ' "ERROR_down" if instance should run but does not, "ERROR_wrongnode" if'
    ' instance is running on another node than its primary, "ERROR_nodedown" if'
    " its primary node is unreachable, \"ERROR_nodeoffline\" if its primary node"
    " is marked offline")


def _inst_list(name: str, title: str, doc: str, join: bool = True) -> FieldDef:
    return FieldDef(name, title, QFT_OTHER, doc, join_list=join)


INSTANCE_FIELDS = _table([
    FieldDef("name", "Instance", QFT_TEXT, "Instance name"),
    FieldDef("hypervisor", "Hypervisor", QFT_TEXT, "Hypervisor name"),
    FieldDef("os", "OS", QFT_TEXT, "Operating system"),
    FieldDef("pnode", "Primary_node", QFT_TEXT, "Primary node"),
    FieldDef("pnode.group", "PrimaryNodeGroup", QFT_TEXT, "Primary node's group"),
    FieldDef("pnode.group.uuid", "PrimaryNodeGroupUUID", QFT_TEXT,
             "Primary node's group UUID"),
    _inst_list("snodes", "Secondary_Nodes", "Secondary nodes; usually this will just be one node"),
    _inst_list("snodes.group", "SecondaryNodesGroups", "Node groups of secondary nodes"),
    _inst_list("snodes.group.uuid", "SecondaryNodesGroupsUUID",
               "Node group UUIDs of secondary nodes"),
    FieldDef("admin_state", "InstanceState", QFT_TEXT, "Desired state of instance"),
    FieldDef("admin_state_source", "InstanceStateSource", QFT_TEXT,
             "Who last changed the desired state of the instance"),
    FieldDef("admin_up", "Autostart", QFT_BOOL,
             "Desired state of instance (true if it should be running)"),
    FieldDef("disks_active", "DisksActive", QFT_BOOL, "Desired state of instance disks"),
    FieldDef("status", "Status", QFT_TEXT, _INSTANCE_STATUS_DOC),
    FieldDef("oper_state", "Running", QFT_BOOL, "Actual state of instance"),
    FieldDef("oper_ram", "Memory", QFT_UNIT, "Actual memory usage as seen by hypervisor"),
    FieldDef("oper_vcpus", "VCPUs", QFT_NUMBER,
             "Actual number of VCPUs as seen by hypervisor"),
    FieldDef("network_port", "Network_port", QFT_OTHER,
             "Instance network port if available (e.g. for VNC console)"),
    FieldDef("disk_template", "Disk_template", QFT_TEXT, "Instance disk template"),
    FieldDef("disk_usage", "DiskUsage", QFT_UNIT,
             "Total disk space used by instance on each of its nodes; this is not the"
             " disk size visible to the instance, but the usage on the node"),
    FieldDef("disk.count", "Disks", QFT_NUMBER, "Number of disks"),
    _inst_list("disk.sizes", "Disk_sizes", "List of disk sizes"),
    _inst_list("disk.spindles", "Disk_spindles", "List of disk spindles", join=False),
    _inst_list("disk.names", "Disk_names", "List of disk names", join=False),
    _inst_list("disk.uuids", "Disk_UUIDs", "List of disk UUIDs", join=False),
    _inst_list("disk.sync", "Disk_sync", "Replication state of each disk of a running"
               " instance: in_sync, syncing NN.NN%, degraded, disconnected, or - when the"
               " disk is not replicated (mirror template)"),
    FieldDef("is_degraded", "Degraded", QFT_BOOL, "Whether a replicated disk of the"
             " running instance is not fully in sync with its secondary (mirror template)"),
    FieldDef("nic.count", "NICs", QFT_NUMBER, "Number of network interfaces"),
    _inst_list("nic.macs", "NIC_MACs", "List containing each network interface's MAC address"),
    _inst_list("nic.ips", "NIC_IPs", "List containing each network interface's IP address"),
    _inst_list("nic.modes", "NIC_modes", "List containing each network interface's mode"),
    _inst_list("nic.links", "NIC_links", "List containing each network interface's link"),
    _inst_list("nic.bridges", "NIC_bridges",
               "List containing each network interface's bridge"),
    _inst_list("nic.vlans", "NIC_VLANs", "List containing each network interface's VLAN"),
    _inst_list("nic.names", "NIC_Names", "List containing each network interface's name"),
    _inst_list("nic.uuids", "NIC_UUIDs", "List containing each network interface's UUID"),
    _inst_list("nic.networks", "NIC_networks",
               "List containing each network interface's network UUID"),
    _inst_list("nic.networks.names", "NIC_networks_names",
               "List containing each network interface's network name"),
    FieldDef("hvparams", "HypervisorParameters", QFT_OTHER, "Hypervisor parameters (merged)"),
    FieldDef("beparams", "BackendParameters", QFT_OTHER, "Backend parameters (merged)"),
    FieldDef("osparams", "OpSysParameters", QFT_OTHER,
             "Operating system parameters (merged)"),
    FieldDef("custom_hvparams", "CustomHypervisorParameters", QFT_OTHER,
             "Custom hypervisor parameters"),
    FieldDef("custom_beparams", "CustomBackendParameters", QFT_OTHER,
             "Custom backend parameters"),
    FieldDef("custom_osparams", "CustomOpSysParameters", QFT_OTHER,
             "Custom operating system parameters"),
    FieldDef("custom_nicparams", "CustomNicParameters", QFT_OTHER,
             "Custom network interface parameters"),
    FieldDef("console", "Console", QFT_OTHER, "Instance console information"),
    FieldDef("forthcoming", "Forthcoming", QFT_BOOL, "Whether the instance is forthcoming"),
    *_common("Instance"),
    _tags(True),
])

# beparams: name -> (title, kind), spec/hypervisors-storage.md §2 (``memory``
# is the alias be/memory -> be/maxmem, not a field of its own)
BACKEND_PARAMS = {
    "maxmem": ("ConfigMaxMem", QFT_UNIT),
    "minmem": ("ConfigMinMem", QFT_UNIT),
    "vcpus": ("ConfigVCPUs", QFT_NUMBER),
    "auto_balance": ("Auto_balance", QFT_BOOL),
    "always_failover": ("Always_failover", QFT_BOOL),
    "spindle_use": ("ConfigSpindleUse", QFT_NUMBER),
}

# hvparams with a title of their own; others are titled by their name
HV_PARAM_TITLES = {
    "acpi": "ACPI",
    "boot_order": "Boot_order",
    "cdrom_image_path": "CDROM_image_path",
    "cpu_mask": "CPU_mask",
    "disk_type": "Disk_type",
    "initrd_path": "Initrd_path",
    "kernel_path": "Kernel_path",
    "nic_type": "NIC_type",
    "pae": "PAE",
    "vnc_bind_address": "VNC_bind_address",
}

# indexed field "<kind>.<sub>/N": sub -> (title prefix, kind, doc start)
_DISK_INDEXED = {
    "size": ("Disk", QFT_UNIT, "Disk size of"),
    "spindles": ("DiskSpindles", QFT_NUMBER, "Spindles of"),
    "name": ("DiskName", QFT_TEXT, "Name of"),
    "uuid": ("DiskUUID", QFT_TEXT, "UUID of"),
}
_NIC_INDEXED = {
    "mac": ("NicMAC", QFT_TEXT, "MAC address of"),
    "ip": ("NicIP", QFT_TEXT, "IP address of"),
    "mode": ("NicMode", QFT_TEXT, "Mode of"),
    "link": ("NicLink", QFT_TEXT, "Link of"),
    "bridge": ("NicBridge", QFT_TEXT, "Bridge of"),
    "vlan": ("NicVLAN", QFT_TEXT, "VLAN of"),
    "name": ("NicName", QFT_TEXT, "Name of"),
    "uuid": ("NicUUID", QFT_TEXT, "UUID of"),
    "network": ("NicNetwork", QFT_TEXT, "Network of"),
    "network.name": ("NicNetworkName", QFT_TEXT, "Network name of"),
}
_INDEXED_RE = re.compile(r"^(disk|nic)\.([a-z.]+)/(0|[1-9]\d*)$")

INSTANCE_ALIASES = {
    "vcpus": "be/vcpus",
    "be/memory": "be/maxmem",
    "sda_size": "disk.size/0",
    "sdb_size": "disk.size/1",
    "ip": "nic.ip/0",
    "mac": "nic.mac/0",
    "bridge": "nic.bridge/0",
    "nic_mode": "nic.mode/0",
    "nic_link": "nic.link/0",
    "nic_network": "nic.network/0",
}

GROUP_FIELDS = _table([
    FieldDef("name", "Group", QFT_TEXT, "Group name"),
    FieldDef("alloc_policy", "AllocPolicy", QFT_TEXT, "Allocation policy for group"),
    FieldDef("node_cnt", "Nodes", QFT_NUMBER, "Number of nodes"),
    FieldDef("node_list", "NodeList", QFT_OTHER, "List of nodes", join_list=True),
    FieldDef("pinst_cnt", "Instances", QFT_NUMBER, "Number of primary instances"),
    FieldDef("pinst_list", "InstanceList", QFT_OTHER, "List of primary instances",
             join_list=True),
    FieldDef("ndparams", "NDParams", QFT_OTHER, "Node parameters",
             formatter=format_key_values),
    FieldDef("custom_ndparams", "CustomNDParams", QFT_OTHER, "Custom node parameters"),
    FieldDef("diskparams", "DiskParameters", QFT_OTHER, "Disk parameters (merged)"),
    FieldDef("custom_diskparams", "CustomDiskParameters", QFT_OTHER,
             "Custom disk parameters"),
    FieldDef("ipolicy", "InstancePolicy", QFT_OTHER, "Instance policy limitations (merged)"),
    FieldDef("custom_ipolicy", "CustomInstancePolicy", QFT_OTHER,
             "Custom instance policy limitations"),
    FieldDef("networks", "Networks", QFT_OTHER, "Node group networks"),
    *_common("Group"),
    _tags(False),
])


def _format_timestamp_list(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(format_timestamp(ts) for ts in value)
    return format_timestamp(value)


JOB_FIELDS = _table([
    FieldDef("id", "ID", QFT_NUMBER, "Job ID"),
    FieldDef("status", "Status", QFT_TEXT, "Job status"),
    FieldDef("priority", "Priority", QFT_NUMBER, "Current job priority"),
    FieldDef("archived", "Archived", QFT_BOOL, "Whether job is archived"),
    FieldDef("ops", "OpCodes", QFT_OTHER, "List of all opcodes"),
    FieldDef("opresult", "OpCode_result", QFT_OTHER, "List of opcodes results"),
    FieldDef("opstatus", "OpCode_status", QFT_OTHER, "List of opcodes status"),
    FieldDef("oplog", "OpCode_log", QFT_OTHER, "List of opcode output logs"),
    FieldDef("opstart", "OpCode_start", QFT_OTHER,
             "List of opcode start timestamps (before acquiring locks)",
             formatter=_format_timestamp_list),
    FieldDef("opexec", "OpCode_exec", QFT_OTHER,
             "List of opcode execution start timestamps (after acquiring locks)",
             formatter=_format_timestamp_list),
    FieldDef("opend", "OpCode_end", QFT_OTHER, "List of opcode execution end timestamps",
             formatter=_format_timestamp_list),
    FieldDef("oppriority", "OpCode_prio", QFT_OTHER, "List of opcode priorities"),
    FieldDef("summary", "Summary", QFT_OTHER, "List of per-opcode summaries",
             join_list=True),
    FieldDef("received_ts", "Received", QFT_OTHER, "Timestamp of when job was received",
             formatter=format_timestamp),
    FieldDef("start_ts", "Start", QFT_OTHER, "Timestamp of job start",
             formatter=format_timestamp),
    FieldDef("end_ts", "End", QFT_OTHER, "Timestamp of job end",
             formatter=format_timestamp),
])

EXPORT_FIELDS = _table([
    FieldDef("node", "Node", QFT_TEXT, "Node name"),
    FieldDef("export", "Export", QFT_TEXT, "Export name"),
])

OS_FIELDS = _table([
    FieldDef("name", "Name", QFT_TEXT, "Operating system name"),
    FieldDef("valid", "Valid", QFT_BOOL, "Whether operating system definition is valid"),
    FieldDef("variants", "Variants", QFT_OTHER, "Operating system variants"),
    FieldDef("parameters", "Parameters", QFT_OTHER, "Operating system parameters"),
    FieldDef("api_versions", "ApiVersions", QFT_OTHER, "Operating system API versions"),
    FieldDef("blacklisted", "Blacklisted", QFT_BOOL,
             "Whether operating system is blacklisted"),
    FieldDef("hidden", "Hidden", QFT_BOOL, "Whether operating system is hidden"),
    FieldDef("trusted", "Trusted", QFT_BOOL,
             "Whether this OS is trusted to run its create script on the node"),
    FieldDef("node_status", "NodeStatus", QFT_OTHER, "Status from node"),
    FieldDef("os_hvp", "OsHypervisorParams", QFT_OTHER, "Operating system specific"
             " hypervisor parameters"),
    FieldDef("osparams", "OsParameters", QFT_OTHER, "Operating system specific parameters"),
])

FIELDS = {
    RESOURCE_OS: OS_FIELDS,
    RESOURCE_NODE: NODE_FIELDS,
    RESOURCE_INSTANCE: INSTANCE_FIELDS,
    RESOURCE_GROUP: GROUP_FIELDS,
    RESOURCE_JOB: JOB_FIELDS,
    RESOURCE_EXPORT: EXPORT_FIELDS,
}

DEFAULT_NODE_FIELDS = ["name", "dtotal", "dfree", "mtotal", "mnode", "mfree",
                       "pinst_cnt", "sinst_cnt"]
DEFAULT_INSTANCE_FIELDS = ["name", "hypervisor", "os", "pnode", "status", "oper_ram"]
DEFAULT_GROUP_FIELDS = ["name", "node_cnt", "pinst_cnt", "alloc_policy", "ndparams"]
DEFAULT_JOB_FIELDS = ["id", "status", "summary"]
DEFAULT_EXPORT_FIELDS = ["node", "export"]
DEFAULT_FIELDS = {
    RESOURCE_NODE: DEFAULT_NODE_FIELDS,
    RESOURCE_INSTANCE: DEFAULT_INSTANCE_FIELDS,
    RESOURCE_GROUP: DEFAULT_GROUP_FIELDS,
    RESOURCE_JOB: DEFAULT_JOB_FIELDS,
    RESOURCE_EXPORT: DEFAULT_EXPORT_FIELDS,
}


def ordinal(number: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th``, ``11th``, ``21st``..."""
    if 10 <= number % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return "%d%s" % (number, suffix)


def _indexed_field(name: str) -> FieldDef | None:
    match = _INDEXED_RE.match(name)
    if not match:
        return None
    what, sub, index_text = match.groups()
    index = int(index_text)
    table, limit, noun = ((_DISK_INDEXED, MAX_DISKS, "disk") if what == "disk"
                          else (_NIC_INDEXED, MAX_NICS, "network interface"))
    if sub not in table or index >= limit:
        return None
    title, kind, doc = table[sub]
    return FieldDef(name, "%s/%d" % (title, index), kind,
                    "%s %s %s" % (doc, ordinal(index + 1), noun))


def _param_field(name: str, hv_params: Mapping[str, str] | None) -> FieldDef | None:
    prefix, _, param = name.partition("/")
    if prefix == "be" and param in BACKEND_PARAMS:
        title, kind = BACKEND_PARAMS[param]
        return FieldDef(name, title, kind, 'The "%s" backend parameter' % param)
    if prefix == "hv" and re.fullmatch(r"[a-z][a-z0-9_]*", param):
        if hv_params is not None and param not in hv_params:
            return None
        kind = hv_params[param] if hv_params is not None else QFT_TEXT
        return FieldDef(name, HV_PARAM_TITLES.get(param, param), kind,
                        'The "%s" hypervisor parameter' % param)
    return None


def lookup_field(resource: str, name: str,
                 hv_params: Mapping[str, str] | None = None) -> FieldDef | None:
    """The definition of field ``name`` of ``resource`` or None if unknown.

    ``hv_params`` maps the known hypervisor parameter names to field kinds
    (``bool``, ``number``, ``text``...); without it any well-formed
    ``hv/<param>`` is accepted as a text field.
    """
    table = FIELDS.get(resource)
    if table is None:
        return None
    if name in table:
        return table[name]
    if resource == RESOURCE_NODE:
        prefix, _, param = name.partition("/")
        if prefix == "ndp" and param in NODE_PARAMS:
            title, kind = NODE_PARAMS[param]
            return FieldDef(name, title, kind, 'The "%s" node parameter' % param)
        return None
    if resource != RESOURCE_INSTANCE:
        return None
    target = INSTANCE_ALIASES.get(name)
    if target is not None:
        found = lookup_field(resource, target, hv_params)
        return found.renamed(name) if found is not None else None
    return _indexed_field(name) or _param_field(name, hv_params)


def resolve_alias(resource: str, name: str) -> str:
    """The canonical field name the master computes (``vcpus`` -> ``be/vcpus``)."""
    if resource == RESOURCE_INSTANCE:
        return INSTANCE_ALIASES.get(name, name)
    return name


def unknown_field(name: str) -> FieldDef:
    """Placeholder definition returned for a field nobody knows."""
    return FieldDef(name, name, QFT_UNKNOWN, "Unknown field '%s'" % name)


def lookup_fields(resource: str, names: Iterable[str],
                  hv_params: Mapping[str, str] | None = None) -> list[FieldDef]:
    """Definitions for ``names`` in order, unknown ones as ``unknown_field``."""
    return [lookup_field(resource, name, hv_params) or unknown_field(name) for name in names]


def _nice_key(name: str) -> list[tuple[int, int | str]]:
    return [(0, int(part)) if part.isdigit() else (1, part)
            for part in re.split(r"(\d+)", name) if part]


def all_fields(resource: str, hv_params: Mapping[str, str] | None = None) -> list[FieldDef]:
    """Every field of ``resource`` (what ``list-fields`` without arguments
    shows), naturally sorted by name: indexed fields are expanded for every
    index, ``be/``/``ndp/`` for every parameter, ``hv/`` for ``hv_params``."""
    table = FIELDS.get(resource)
    if table is None:
        return []
    names = list(table)
    if resource == RESOURCE_NODE:
        names += ["ndp/" + param for param in NODE_PARAMS]
    elif resource == RESOURCE_INSTANCE:
        names += ["disk.%s/%d" % (sub, i) for sub in _DISK_INDEXED for i in range(MAX_DISKS)]
        names += ["nic.%s/%d" % (sub, i) for sub in _NIC_INDEXED for i in range(MAX_NICS)]
        names += ["be/" + param for param in BACKEND_PARAMS]
        names += ["hv/" + param for param in (hv_params or {})]
        names += list(INSTANCE_ALIASES)
    found = lookup_fields(resource, names, hv_params)
    return sorted(found, key=lambda f: _nice_key(f.name))
