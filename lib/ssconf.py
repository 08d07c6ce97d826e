"""Simple store: small cluster facts every node can read without asking the master.

The master writes one file per key (pathutils.ssconf_file(key)) on every node
through the ``write_ssconf`` node procedure, whenever the configuration
changes a value listed here.  Node-side tools (noded's default port,
daemon-util deciding whether masterd belongs here, the watcher) read them
with SimpleStore.  The files are the Ganeti ``ssconf_*`` format: plain text,
lists one item per line, maps ``name value`` per line.

Use ``format_list``/``format_pairs`` to build values, so writer and reader
agree on one format.
"""

import glob
import os

from corral import errors, pathutils
from corral.utils import io

SS_CLUSTER_NAME = "cluster_name"
SS_CLUSTER_UUID = "cluster_uuid"
SS_MASTER_NODE = "master_node"
SS_MASTER_IP = "master_ip"
SS_MASTER_NETDEV = "master_netdev"
SS_MASTER_NETMASK = "master_netmask"
SS_NODE_LIST = "node_list"
SS_NODE_PRIMARY_IPS = "node_primary_ips"
SS_NODE_SECONDARY_IPS = "node_secondary_ips"
SS_MASTER_CANDIDATES = "master_candidates"
SS_ONLINE_NODES = "online_nodes"
SS_NODED_PORT = "noded_port"
SS_PRIMARY_IP_FAMILY = "primary_ip_family"
SS_RELEASE_VERSION = "release_version"
SS_FILE_STORAGE_DIR = "file_storage_dir"
SS_SHARED_FILE_STORAGE_DIR = "shared_file_storage_dir"
SS_HYPERVISOR_LIST = "hypervisor_list"
SS_ENABLED_DISK_TEMPLATES = "enabled_disk_templates"

SSCONF_KEYS = frozenset([
    SS_CLUSTER_NAME, SS_CLUSTER_UUID, SS_MASTER_NODE, SS_MASTER_IP, SS_MASTER_NETDEV,
    SS_MASTER_NETMASK, SS_NODE_LIST, SS_NODE_PRIMARY_IPS, SS_NODE_SECONDARY_IPS,
    SS_MASTER_CANDIDATES, SS_ONLINE_NODES, SS_NODED_PORT, SS_PRIMARY_IP_FAMILY,
    SS_RELEASE_VERSION, SS_FILE_STORAGE_DIR, SS_SHARED_FILE_STORAGE_DIR,
    SS_HYPERVISOR_LIST, SS_ENABLED_DISK_TEMPLATES,
])

# Values larger than this are refused: ssconf is for small facts.
MAX_VALUE_SIZE = 1024 * 1024


def format_list(items: list[str]) -> str:
    """A list value: one item per line."""
    return "\n".join(items)


def format_pairs(mapping: dict[str, str]) -> str:
    """A map value: ``key value`` per line, sorted by key."""
    return "\n".join("%s %s" % (k, mapping[k]) for k in sorted(mapping))


def write_ssconf(values: dict[str, str]) -> None:
    """Make the ssconf files exactly ``values``.

    Each file is replaced atomically; keys not in ``values`` are removed, so
    the set on disk matches the master's.  Idempotent.  Unknown keys or
    non-string values are refused before anything is written.
    """
    for key, value in values.items():
        if key not in SSCONF_KEYS:
            raise errors.ProgrammerError("Unknown ssconf key '%s'" % key)
        if not isinstance(value, str):
            raise errors.ProgrammerError("ssconf value for '%s' must be a string, not %s"
                                         % (key, type(value).__name__))
        if len(value) > MAX_VALUE_SIZE:
            raise errors.ProgrammerError("ssconf value for '%s' is too large" % key)
    os.makedirs(pathutils.data_dir(), exist_ok=True)
    for key, value in sorted(values.items()):
        text = value if value.endswith("\n") or not value else value + "\n"
        io.write_file_atomic(pathutils.ssconf_file(key), text, mode=0o644)
    prefix = pathutils.ssconf_prefix()
    for path in glob.glob(glob.escape(prefix) + "*"):
        if path[len(prefix):] not in values:
            io.remove_file(path)


class SimpleStore:
    """Reader of the ssconf files (reads the disk on every call; nothing is cached).

    Every getter raises errors.ConfigurationError when its file is missing,
    which on a node means it is not (yet) part of a cluster.
    """

    def read(self, key: str) -> str:
        """Raw value of ``key`` without the trailing newline."""
        if key not in SSCONF_KEYS:
            raise errors.ProgrammerError("Unknown ssconf key '%s'" % key)
        path = pathutils.ssconf_file(key)
        try:
            with open(path) as fh:
                return fh.read().rstrip("\n")
        except FileNotFoundError:
            raise errors.ConfigurationError(
                "Missing ssconf file %s: this node is not part of a cluster" % path) from None
        except OSError as err:
            raise errors.ConfigurationError("Cannot read ssconf file %s: %s"
                                            % (path, err.strerror)) from err

    def read_all(self) -> dict[str, str]:
        """Every ssconf value present on this node (missing keys are left out)."""
        out = {}
        for key in sorted(SSCONF_KEYS):
            try:
                out[key] = self.read(key)
            except errors.ConfigurationError:
                pass
        return out

    def _list(self, key: str) -> list[str]:
        return [line.strip() for line in self.read(key).splitlines() if line.strip()]

    def _pairs(self, key: str) -> dict[str, str]:
        out = {}
        for line in self._list(key):
            parts = line.split()
            if len(parts) != 2:
                raise errors.ConfigurationError("Malformed line in ssconf %s: %r" % (key, line))
            out[parts[0]] = parts[1]
        return out

    def _int(self, key: str) -> int:
        value = self.read(key).strip()
        try:
            return int(value)
        except ValueError:
            raise errors.ConfigurationError("ssconf %s is not an integer: %r"
                                            % (key, value)) from None

    def get_cluster_name(self) -> str:
        return self.read(SS_CLUSTER_NAME).strip()

    def get_cluster_uuid(self) -> str:
        return self.read(SS_CLUSTER_UUID).strip()

    def get_master_node(self) -> str:
        return self.read(SS_MASTER_NODE).strip()

    def get_master_ip(self) -> str:
        return self.read(SS_MASTER_IP).strip()

    def get_master_netdev(self) -> str:
        return self.read(SS_MASTER_NETDEV).strip()

    def get_master_netmask(self) -> int:
        return self._int(SS_MASTER_NETMASK)

    def get_node_list(self) -> list[str]:
        return self._list(SS_NODE_LIST)

    def get_node_primary_ips(self) -> dict[str, str]:
        return self._pairs(SS_NODE_PRIMARY_IPS)

    def get_node_secondary_ips(self) -> dict[str, str]:
        return self._pairs(SS_NODE_SECONDARY_IPS)

    def get_master_candidates(self) -> list[str]:
        return self._list(SS_MASTER_CANDIDATES)

    def get_online_nodes(self) -> list[str]:
        return self._list(SS_ONLINE_NODES)

    def get_noded_port(self) -> int:
        return self._int(SS_NODED_PORT)

    def get_primary_ip_family(self) -> int:
        return self._int(SS_PRIMARY_IP_FAMILY)

    def get_release_version(self) -> str:
        return self.read(SS_RELEASE_VERSION).strip()

    def get_file_storage_dir(self) -> str:
        return self.read(SS_FILE_STORAGE_DIR).strip()

    def get_shared_file_storage_dir(self) -> str:
        return self.read(SS_SHARED_FILE_STORAGE_DIR).strip()

    def get_hypervisor_list(self) -> list[str]:
        return self._list(SS_HYPERVISOR_LIST)

    def get_enabled_disk_templates(self) -> list[str]:
        return self._list(SS_ENABLED_DISK_TEMPLATES)
