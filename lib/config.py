"""The configuration writer: the one owner of config.data on the master.

The configuration lives in memory; every change goes through a method here,
which bumps the changed object's and the file's ``serial_no`` and writes the
whole file atomically (temp file, fsync, rename) before returning.  Listeners
(ssconf writer, replication to master candidates) are called after each write,
under the config lock, so they observe changes in serial order.

Reservations (MACs, IPs, TCP ports, DRBD minors) are held per execution
context (a job id) until the job ends, so two concurrent jobs never pick the
same value before either has committed it to the config.

Callers must hold the Corral locks (locking.py) that protect the objects they
change; the internal lock here only keeps the in-memory structures and the file
consistent.
"""

import random
import threading
import time
import uuid as uuidlib
from typing import Callable, Iterable

from corral import constants, errors, objects, serializer
from corral.utils import io

WriteListener = Callable[[str, int], None]


def new_uuid() -> str:
    return str(uuidlib.uuid4())


class TemporaryReservationManager:
    """Values reserved by running jobs but not yet in the configuration."""

    def __init__(self) -> None:
        self._by_ec: dict[object, set] = {}

    def reserved(self) -> set:
        out: set = set()
        for values in self._by_ec.values():
            out |= values
        return out

    def reserve(self, ec_id: object, value: object) -> None:
        if value in self.reserved():
            raise errors.ConfigurationError("%s is already reserved" % (value,))
        self._by_ec.setdefault(ec_id, set()).add(value)

    def release(self, ec_id: object) -> None:
        self._by_ec.pop(ec_id, None)


class ConfigWriter:
    """In-memory configuration with atomic, serial-numbered persistence."""

    def __init__(self, path: str, data: objects.ConfigData | None = None) -> None:
        self._path = path
        self._lock = threading.RLock()
        self._listeners: list[WriteListener] = []
        self._macs = TemporaryReservationManager()
        self._ips = TemporaryReservationManager()
        self._ports = TemporaryReservationManager()
        self._minors = TemporaryReservationManager()
        self._names = TemporaryReservationManager()
        self._memory: dict[object, list[tuple[str, int]]] = {}
        self._inst_json: dict[str, str] = {}
        if data is None:
            data = self._load(path)
        self._data = data
        self._rebuild_indexes()

    # ---- loading and writing -------------------------------------------------

    @staticmethod
    def _load(path: str) -> objects.ConfigData:
        try:
            text = io.read_file(path)
        except FileNotFoundError:
            raise errors.ConfigurationError(
                "cannot read %s: this node is not part of a cluster" % path) from None
        try:
            raw = serializer.loads(text)
        except serializer.JSONDecodeError as err:
            raise errors.ConfigurationError("configuration %s is corrupt: %s" % (path, err)) from None
        return objects.ConfigData.from_dict(raw)

    @classmethod
    def create(cls, path: str, cluster: objects.Cluster, master: objects.Node,
               group: objects.NodeGroup) -> "ConfigWriter":
        """Write the first configuration of a new cluster and return its writer."""
        now = time.time()
        for obj in (cluster, master, group):
            obj.ctime = obj.mtime = now
        master.group = group.uuid
        cluster.master_node = master.uuid
        data = objects.ConfigData(cluster=cluster, nodes={master.uuid: master},
                                  nodegroups={group.uuid: group}, serial_no=1,
                                  ctime=now, mtime=now)
        writer = cls(path, data)
        writer._write()
        return writer

    def add_write_listener(self, listener: WriteListener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def _write(self) -> None:
        text = self._serialize()
        io.write_file_atomic(self._path, text, mode=0o600)
        for listener in self._listeners:
            listener(text, self._data.serial_no)

    def _serialize(self) -> str:
        """The config as JSON, reusing the text of instances that did not change.

        Instances are most of a large config; each one's JSON is kept until a
        commit names it as changed (update, rename) or it is removed, so a write
        costs one string join instead of re-encoding every instance.
        """
        d = self._data
        dumps = serializer.dumps
        inst_parts = []
        for uuid, inst in d.instances.items():
            text = self._inst_json.get(uuid)
            if text is None:
                text = self._inst_json[uuid] = dumps(inst.to_dict())
            inst_parts.append("%s:%s" % (dumps(uuid), text))
        head = {"version": d.version, "cluster": d.cluster.to_dict(),
                "nodes": {k: v.to_dict() for k, v in d.nodes.items()},
                "nodegroups": {k: v.to_dict() for k, v in d.nodegroups.items()},
                "networks": d.networks, "serial_no": d.serial_no, "ctime": d.ctime,
                "mtime": d.mtime}
        return dumps(head)[:-1] + ',"instances":{' + ",".join(inst_parts) + "}}"

    def _commit(self, *changed: objects.ConfigObject) -> None:
        now = time.time()
        for obj in changed:
            obj.serial_no = getattr(obj, "serial_no", 0) + 1
            obj.mtime = now
            self._inst_json.pop(getattr(obj, "uuid", None), None)
        self._data.serial_no += 1
        self._data.mtime = now
        self._write()

    def _rebuild_indexes(self) -> None:
        self._node_by_name = {n.name: u for u, n in self._data.nodes.items()}
        self._inst_by_name = {i.name: u for u, i in self._data.instances.items()}
        self._group_by_name = {g.name: u for u, g in self._data.nodegroups.items()}

    def dump_text(self) -> str:
        with self._lock:
            return self._serialize()

    @property
    def serial_no(self) -> int:
        return self._data.serial_no

    # ---- generic update --------------------------------------------------------

    def update(self, obj: objects.ConfigObject) -> None:
        """Persist changes made to ``obj`` (a live object obtained from this writer)."""
        with self._lock:
            known = (obj is self._data.cluster or
                     self._data.nodes.get(getattr(obj, "uuid", None)) is obj or
                     self._data.instances.get(getattr(obj, "uuid", None)) is obj or
                     self._data.nodegroups.get(getattr(obj, "uuid", None)) is obj)
            if not known:
                raise errors.ConfigurationError("%r is not part of the configuration" % obj)
            self._commit(obj)

    # ---- cluster -------------------------------------------------------------

    def get_cluster_info(self) -> objects.Cluster:
        return self._data.cluster

    def get_cluster_name(self) -> str:
        return self._data.cluster.cluster_name

    def get_master_node(self) -> str:
        return self._data.cluster.master_node

    def get_master_node_name(self) -> str:
        return self._data.nodes[self._data.cluster.master_node].name

    def get_master_node_info(self) -> objects.Node:
        return self._data.nodes[self._data.cluster.master_node]

    # ---- nodes ---------------------------------------------------------------

    def get_node_info(self, node_uuid: str) -> objects.Node | None:
        return self._data.nodes.get(node_uuid)

    def get_node_by_name(self, name: str) -> objects.Node | None:
        uuid = self._node_by_name.get(name)
        return self._data.nodes.get(uuid) if uuid else None

    def get_all_nodes(self) -> dict[str, objects.Node]:
        return dict(self._data.nodes)

    def get_node_list(self) -> list[str]:
        return list(self._data.nodes)

    def get_node_names(self, uuids: Iterable[str]) -> list[str]:
        return [self._data.nodes[u].name for u in uuids]

    def get_online_node_list(self) -> list[str]:
        return [u for u, n in self._data.nodes.items() if not n.offline]

    def get_master_candidates(self) -> list[objects.Node]:
        return [n for n in self._data.nodes.values()
                if n.master_candidate or n.uuid == self._data.cluster.master_node]

    def expand_node_name(self, name: str) -> objects.Node | None:
        """A node by full name, UUID, or unambiguous short name (``node1`` for ``node1.example``)."""
        return _expand(name, self._node_by_name, self._data.nodes)

    def add_node(self, node: objects.Node) -> None:
        with self._lock:
            if node.name in self._node_by_name:
                raise errors.OpPrereqError("Node '%s' is already in the configuration" % node.name,
                                           errors.ECODE_EXISTS)
            node.uuid = node.uuid or new_uuid()
            node.ctime = node.mtime = time.time()
            self._data.nodes[node.uuid] = node
            self._rebuild_indexes()
            self._commit()

    def remove_node(self, node_uuid: str) -> None:
        with self._lock:
            if node_uuid not in self._data.nodes:
                raise errors.ConfigurationError("unknown node %s" % node_uuid)
            del self._data.nodes[node_uuid]
            self._rebuild_indexes()
            self._commit()

    # ---- node groups -----------------------------------------------------------

    def get_node_group(self, group_uuid: str) -> objects.NodeGroup | None:
        return self._data.nodegroups.get(group_uuid)

    def get_all_node_groups(self) -> dict[str, objects.NodeGroup]:
        return dict(self._data.nodegroups)

    def lookup_node_group(self, name_or_uuid: str | None) -> str:
        """The UUID of a group given by name or UUID; None means the default (first) group."""
        if name_or_uuid is None:
            return next(iter(self._data.nodegroups))
        if name_or_uuid in self._data.nodegroups:
            return name_or_uuid
        uuid = self._group_by_name.get(name_or_uuid)
        if uuid is None:
            raise errors.OpPrereqError("Node group '%s' not found" % name_or_uuid,
                                       errors.ECODE_NOENT)
        return uuid

    def get_group_members(self, group_uuid: str) -> list[str]:
        return [u for u, n in self._data.nodes.items() if n.group == group_uuid]

    def add_node_group(self, group: objects.NodeGroup) -> None:
        with self._lock:
            if group.name in self._group_by_name:
                raise errors.OpPrereqError("Desired group name '%s' already exists as a node group"
                                           " (UUID: %s)" % (group.name, self._group_by_name[group.name]),
                                           errors.ECODE_EXISTS)
            group.uuid = group.uuid or new_uuid()
            group.ctime = group.mtime = time.time()
            self._data.nodegroups[group.uuid] = group
            self._rebuild_indexes()
            self._commit()

    def remove_node_group(self, group_uuid: str) -> None:
        with self._lock:
            del self._data.nodegroups[group_uuid]
            self._rebuild_indexes()
            self._commit()

    def rename_node_group(self, group_uuid: str, new_name: str) -> None:
        with self._lock:
            group = self._data.nodegroups[group_uuid]
            group.name = new_name
            self._rebuild_indexes()
            self._commit(group)

    # ---- instances -------------------------------------------------------------

    def get_instance_info(self, inst_uuid: str) -> objects.Instance | None:
        return self._data.instances.get(inst_uuid)

    def get_instance_by_name(self, name: str) -> objects.Instance | None:
        uuid = self._inst_by_name.get(name)
        return self._data.instances.get(uuid) if uuid else None

    def expand_instance_name(self, name: str) -> objects.Instance | None:
        return _expand(name, self._inst_by_name, self._data.instances)

    def get_all_instances(self) -> dict[str, objects.Instance]:
        return dict(self._data.instances)

    def get_node_instances(self, node_uuid: str) -> tuple[list[str], list[str]]:
        """(primary instance uuids, secondary instance uuids) of a node."""
        pri, sec = [], []
        for u, inst in self._data.instances.items():
            if inst.primary_node == node_uuid:
                pri.append(u)
            elif node_uuid in inst.secondary_nodes:
                sec.append(u)
        return pri, sec

    def add_instance(self, inst: objects.Instance, ec_id: object = None) -> None:
        with self._lock:
            if inst.name in self._inst_by_name:
                raise errors.OpPrereqError("Instance '%s' is already in the cluster" % inst.name,
                                           errors.ECODE_EXISTS)
            inst.uuid = inst.uuid or new_uuid()
            inst.ctime = inst.mtime = time.time()
            self._data.instances[inst.uuid] = inst
            self._rebuild_indexes()
            if ec_id is not None:
                # Now in the config itself; memory stays claimed until the job ends.
                for mgr in (self._macs, self._ips, self._names):
                    mgr.release(ec_id)
            self._commit()

    def remove_instance(self, inst_uuid: str) -> None:
        with self._lock:
            del self._data.instances[inst_uuid]
            self._inst_json.pop(inst_uuid, None)
            self._rebuild_indexes()
            self._commit()

    def rename_instance(self, inst_uuid: str, new_name: str) -> None:
        with self._lock:
            inst = self._data.instances[inst_uuid]
            if new_name in self._inst_by_name:
                raise errors.OpPrereqError("Instance '%s' is already in the cluster" % new_name,
                                           errors.ECODE_EXISTS)
            inst.name = new_name
            self._rebuild_indexes()
            self._commit(inst)

    # ---- reservations ----------------------------------------------------------

    def release_reservations(self, ec_id: object) -> None:
        with self._lock:
            for mgr in (self._macs, self._ips, self._ports, self._minors, self._names):
                mgr.release(ec_id)
            self._memory.pop(ec_id, None)

    def reserve_instance_name(self, ec_id: object, name: str) -> None:
        """Claim a new instance name for a job (create, rename) until the job ends.

        OpPrereqError(ECODE_EXISTS) if an instance has it or another job claimed it.
        """
        with self._lock:
            if name in self._inst_by_name:
                raise errors.OpPrereqError("Instance '%s' is already in the cluster" % name,
                                           errors.ECODE_EXISTS)
            if name in self._names.reserved():
                raise errors.OpPrereqError("Instance '%s' is being created or renamed by"
                                           " another job" % name, errors.ECODE_EXISTS)
            self._names.reserve(ec_id, name)

    def reserve_node_memory(self, ec_id: object, node_uuid: str, mib: int, free_mib: int,
                            node_name: str, reason: str) -> None:
        """Account ``mib`` MiB of ``node_uuid`` to a job until it ends.

        ``free_mib`` is what the node reported; memory other running jobs have
        claimed on the node is subtracted, so concurrent instance starts cannot
        overcommit a node without serializing on its node-res lock.  Raises
        OpPrereqError(ECODE_NORES) if it does not fit.
        """
        with self._lock:
            claimed = sum(m for ec, claims in self._memory.items() if ec != ec_id
                          for node, m in claims if node == node_uuid)
            available = free_mib - claimed
            if mib > available:
                extra = " (%d MiB claimed by other running jobs)" % claimed if claimed else ""
                raise errors.OpPrereqError("Not enough memory on node %s for %s: needed %s MiB,"
                                           " available %s MiB%s" % (node_name, reason, mib,
                                                                    max(available, 0), extra),
                                           errors.ECODE_NORES)
            self._memory.setdefault(ec_id, []).append((node_uuid, mib))

    def generate_mac(self, ec_id: object, prefix: str | None = None) -> str:
        """A MAC with the cluster prefix used by no NIC and reserved by no job."""
        with self._lock:
            prefix = prefix or self._data.cluster.mac_prefix
            used = {n.mac for i in self._data.instances.values() for n in i.nics}
            used |= self._macs.reserved()
            for _ in range(1000):
                mac = "%s:%02x:%02x:%02x" % (prefix, random.randrange(256), random.randrange(256),
                                             random.randrange(256))
                if mac not in used:
                    self._macs.reserve(ec_id, mac)
                    return mac
            raise errors.OpPrereqError("Cannot generate a unique MAC address",
                                       errors.ECODE_NORES)

    def reserve_mac(self, ec_id: object, mac: str) -> None:
        with self._lock:
            used = {n.mac for i in self._data.instances.values() for n in i.nics}
            if mac in used or mac in self._macs.reserved():
                raise errors.OpPrereqError("MAC address %s already in use in cluster" % mac,
                                           errors.ECODE_NOTUNIQUE)
            self._macs.reserve(ec_id, mac)

    def reserve_ip(self, ec_id: object, ip: str) -> None:
        with self._lock:
            self._ips.reserve(ec_id, ip)

    def allocate_port(self, ec_id: object) -> int:
        """A TCP port from the pool, or above the highest used one (DRBD, VNC)."""
        with self._lock:
            cluster = self._data.cluster
            reserved = self._ports.reserved()
            for port in sorted(cluster.tcpudp_port_pool):
                if port not in reserved:
                    cluster.tcpudp_port_pool.remove(port)
                    self._ports.reserve(ec_id, port)
                    self._commit(cluster)
                    return port
            port = max([cluster.highest_used_port] + list(reserved)) + 1
            if port > constants.LAST_DRBD_PORT:
                raise errors.ConfigurationError("The highest used port is greater than %s. Aborting."
                                                % constants.LAST_DRBD_PORT)
            cluster.highest_used_port = port
            self._ports.reserve(ec_id, port)
            self._commit(cluster)
            return port

    def allocate_drbd_minors(self, ec_id: object, node_uuids: list[str]) -> list[int]:
        """For each node (in order), the lowest minor not used by config or reservations."""
        with self._lock:
            used: dict[str, set[int]] = {}
            for inst in self._data.instances.values():
                for disk in inst.disks:
                    _collect_minors(disk, used)
            for node, minor in self._minors.reserved():
                used.setdefault(node, set()).add(minor)
            result = []
            for node in node_uuids:
                taken = used.setdefault(node, set())
                minor = 0
                while minor in taken:
                    minor += 1
                taken.add(minor)
                self._minors.reserve(ec_id, (node, minor))
                result.append(minor)
            return result

    # ---- ssconf ----------------------------------------------------------------

    def get_ssconf_values(self) -> dict[str, str]:
        cluster = self._data.cluster
        nodes = sorted(self._data.nodes.values(), key=lambda n: n.name)
        master = self._data.nodes[cluster.master_node]
        return {
            "cluster_name": cluster.cluster_name,
            "cluster_uuid": cluster.uuid,
            "master_node": master.name,
            "master_ip": cluster.master_ip or "",
            "master_netdev": cluster.master_netdev or "",
            "master_netmask": str(cluster.master_netmask),
            "node_list": "\n".join(n.name for n in nodes),
            "node_primary_ips": "\n".join("%s %s" % (n.name, n.primary_ip) for n in nodes),
            "node_secondary_ips": "\n".join("%s %s" % (n.name, n.secondary_ip) for n in nodes),
            "master_candidates": "\n".join(n.name for n in nodes
                                           if n.master_candidate or n.uuid == master.uuid),
            "online_nodes": "\n".join(n.name for n in nodes if not n.offline),
            "noded_port": str(cluster.noded_port),
            "primary_ip_family": str(cluster.primary_ip_family),
            "release_version": constants.RELEASE_VERSION,
            "file_storage_dir": cluster.file_storage_dir or "",
            "shared_file_storage_dir": cluster.shared_file_storage_dir or "",
            "hypervisor_list": "\n".join(cluster.enabled_hypervisors),
            "enabled_disk_templates": "\n".join(cluster.enabled_disk_templates),
        }


def _collect_minors(disk: objects.Disk, used: dict[str, set[int]]) -> None:
    if disk.dev_type in constants.DTS_INT_MIRROR and disk.logical_id and len(disk.logical_id) >= 5:
        node_a, node_b, _port, minor_a, minor_b = disk.logical_id[:5]
        used.setdefault(node_a, set()).add(minor_a)
        used.setdefault(node_b, set()).add(minor_b)
    for child in disk.children:
        _collect_minors(child, used)


def _expand(name: str, by_name: dict[str, str], by_uuid: dict) -> object | None:
    if name in by_name:
        return by_uuid[by_name[name]]
    if name in by_uuid:
        return by_uuid[name]
    matches = [u for n, u in by_name.items() if n.startswith(name + ".")]
    if len(matches) == 1:
        return by_uuid[matches[0]]
    return None
