"""Cluster files the master pushes to nodes.

Files are named by symbol, never by path: the master cannot make a node
write anywhere else than the allow-listed files below, whatever it sends.
Secret files (keys, the config with its DRBD secrets, RAPI users) never
become readable by others, whatever mode is asked for.
"""

import os
from typing import Callable

from corral import errors, pathutils, ssconf
from corral.utils import io

# symbolic name -> (path function, highest mode allowed)
UPLOADABLE_FILES: dict[str, tuple[Callable[[], str], int]] = {
    "config.data": (pathutils.config_file, 0o600),
    "cluster-ca.pem": (pathutils.cluster_ca_file, 0o600),
    "server.pem": (pathutils.node_cert_file, 0o600),
    "rapi.pem": (pathutils.rapi_cert_file, 0o600),
    "rapi-users": (pathutils.rapi_users_file, 0o600),
    "known_hosts": (pathutils.known_hosts_file, 0o644),
}


def upload_file(name: str, data: str, mode: int) -> None:
    """Atomically replace the allow-listed file ``name`` with ``data``.

    ``mode`` is masked by the file's highest allowed mode.  Creates the
    parent directory if needed.  Idempotent.  Unknown names (including
    anything that looks like a path) raise errors.ParameterError and write
    nothing.
    """
    try:
        path_fn, max_mode = UPLOADABLE_FILES[name]
    except KeyError:
        raise errors.ParameterError(
            "upload_file: '%s' is not a file this node accepts (allowed: %s)"
            % (name, ", ".join(sorted(UPLOADABLE_FILES)))) from None
    path = path_fn()
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    io.write_file_atomic(path, data, mode=mode & max_mode)


def write_ssconf(values: dict) -> None:
    """Replace this node's ssconf files by ``values`` (see ssconf.write_ssconf).

    The file storage directories follow the cluster's settings (created when
    their template is enabled, allowed in file-storage-paths).
    """
    from corral.backend import cluster_membership
    ssconf.write_ssconf(values)
    cluster_membership.prepare_storage_dirs(values)
