"""Every filesystem path Corral uses, derived from one root.

``CORRAL_ROOT`` (default ``/``) prefixes all of Corral's own state, so several
nodes and clusters can live on one machine (tests, tools/vcluster).  Paths are
functions, not module constants, because tests switch roots inside one process.
System-wide search paths for third-party OS definitions and iallocators are not
prefixed: they name software installed on the machine, not Corral state.
"""

import os

_SHARE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def root() -> str:
    """The state root: $CORRAL_ROOT, or '/'."""
    return os.environ.get("CORRAL_ROOT") or "/"


def _r(*parts: str) -> str:
    return os.path.join(root(), *parts)


def conf_dir() -> str:
    return _r("etc", "corral")


def data_dir() -> str:
    return _r("var", "lib", "corral")


def run_dir() -> str:
    return _r("var", "run", "corral")


def log_dir() -> str:
    return _r("var", "log", "corral")


def config_file() -> str:
    return os.path.join(data_dir(), "config.data")


def queue_dir() -> str:
    return os.path.join(data_dir(), "queue")


def queue_archive_dir() -> str:
    return os.path.join(queue_dir(), "archive")


def ssconf_prefix() -> str:
    return os.path.join(data_dir(), "ssconf_")


def ssconf_file(key: str) -> str:
    return ssconf_prefix() + key


def cluster_ca_file() -> str:
    """The cluster's CA certificate and key (PEM), made at init."""
    return os.path.join(data_dir(), "cluster-ca.pem")


def node_cert_file() -> str:
    """This node's certificate and key, signed by the cluster CA."""
    return os.path.join(data_dir(), "server.pem")


def rapi_cert_file() -> str:
    return os.path.join(data_dir(), "rapi.pem")


def rapi_users_file() -> str:
    return os.path.join(data_dir(), "rapi", "users")


def master_socket() -> str:
    return os.path.join(run_dir(), "socket", "master.sock")


def pid_file(daemon: str) -> str:
    return os.path.join(run_dir(), daemon + ".pid")


def daemon_log_file(daemon: str) -> str:
    return os.path.join(log_dir(), daemon + ".log")


def commands_log_file() -> str:
    return os.path.join(log_dir(), "commands.log")


def hooks_base_dir() -> str:
    return os.path.join(conf_dir(), "hooks")


def watcher_pause_file() -> str:
    return os.path.join(data_dir(), "watcher.pause")


def export_dir() -> str:
    """Instance exports of this node (Ganeti's /srv/ganeti/export), one directory each."""
    return _r("srv", "ganeti", "export")


def os_log_dir() -> str:
    return os.path.join(log_dir(), "os")


def hypervisor_run_dir(hv_name: str) -> str:
    return os.path.join(run_dir(), hv_name + "-hypervisor")


def mirror_run_dir(disk_uuid: str) -> str:
    """Per-disk state of a ``mirror`` disk on this node: pid files, sockets, logs and
    the consistency marker (storage/mirror.py)."""
    return os.path.join(run_dir(), "mirror", disk_uuid)


def known_hosts_file() -> str:
    """SSH host keys of the cluster's nodes, kept by the cluster (as Ganeti's known_hosts)."""
    return os.path.join(data_dir(), "known_hosts")


def ssh_root_dir() -> str:
    """root's ~/.ssh under this root: the key pair used to reach other nodes over SSH."""
    return _r("root", ".ssh")


def ssh_private_keys() -> list[str]:
    """Candidate private keys of root for node SSH, in order of preference."""
    return [os.path.join(ssh_root_dir(), name) for name in ("id_ed25519", "id_ecdsa", "id_rsa")]


def file_storage_paths_file() -> str:
    """Allowed file-storage directories, one per line (as Ganeti's file-storage-paths)."""
    return os.path.join(conf_dir(), "file-storage-paths")


def shipped_os_dir() -> str:
    """OS definitions shipped with Corral (os-definitions/ in the source tree)."""
    return os.environ.get("CORRAL_SHIPPED_OS_DIR") or os.path.join(_SHARE_DIR, "os-definitions")


def os_search_path() -> list[str]:
    """Directories searched for OS definitions, in order.

    $CORRAL_OS_SEARCH_PATH (colon separated) replaces the default, which is the
    node's own ``srv/ganeti/os``, Debian's list, then the shipped definitions.
    """
    env = os.environ.get("CORRAL_OS_SEARCH_PATH")
    if env:
        return [p for p in env.split(":") if p]
    return [_r("srv", "ganeti", "os"), "/srv/ganeti/os", "/usr/local/lib/ganeti/os",
            "/usr/lib/ganeti/os", "/usr/share/ganeti/os", shipped_os_dir()]


def iallocator_search_path() -> list[str]:
    env = os.environ.get("CORRAL_IALLOCATOR_SEARCH_PATH")
    if env:
        return [p for p in env.split(":") if p]
    return [_r("usr", "lib", "corral", "iallocators"), "/usr/local/lib/ganeti/iallocators",
            "/usr/lib/ganeti/iallocators"]


def ensure_dirs() -> None:
    """Create the state directories of this root (idempotent)."""
    for d in (conf_dir(), data_dir(), run_dir(), log_dir(), queue_dir(),
              queue_archive_dir(), os.path.dirname(master_socket()),
              os.path.dirname(rapi_users_file()), os_log_dir()):
        os.makedirs(d, mode=0o755, exist_ok=True)
