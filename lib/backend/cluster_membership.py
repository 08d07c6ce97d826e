"""Node side of cluster membership: join, leave, candidate demotion, master role and IP.

Joining happens in two places: the master's node daemon (``node_join``)
creates the new node's certificate and connects to the node over SSH
(paramiko, corral.ssh); there, ``corral-prepare-node-join`` (``main`` below)
reads the cluster files as JSON on stdin, refuses if the node
belongs to another cluster, installs them and (re)starts the node daemon
(the same split as Ganeti's prepare-node-join).  Everything else here is a
node procedure (rpc/procedures.py).
"""

import json
import os
import signal
import sys
import tempfile
import threading
from typing import Any

from corral import certs, errors, netutils, pathutils, serializer, ssconf
from corral.utils import io, process

JOIN_COMMAND = ["corral-prepare-node-join"]
_JOIN_FILES = ("cluster-ca.pem", "server.pem", "rapi.pem")
EXIT_OTHER_CLUSTER = 3


# ---- master side of a join ---------------------------------------------------------------

def _new_node_certificate(node_name: str) -> str:
    """A certificate+key for ``node_name`` signed by the local cluster CA (PEM text)."""
    fd, path = tempfile.mkstemp(prefix="corral-nodecert-")
    os.close(fd)
    try:
        certs.generate_node_cert(pathutils.cluster_ca_file(), path, node_name)
        return io.read_file(path)
    finally:
        io.remove_file(path)


def join_payload(node_name: str, readd: bool) -> dict[str, Any]:
    """What a new node needs to join (secrets included: send only over SSH)."""
    store = ssconf.SimpleStore()
    files = {"cluster-ca.pem": io.read_file(pathutils.cluster_ca_file()),
             "server.pem": _new_node_certificate(node_name)}
    if os.path.exists(pathutils.rapi_cert_file()):
        files["rapi.pem"] = io.read_file(pathutils.rapi_cert_file())
    return {"node_name": node_name, "cluster_name": store.get_cluster_name(),
            "cluster_uuid": store.get_cluster_uuid(), "readd": readd, "files": files,
            "ssconf": store.read_all(),
            "known_hosts": io.read_file(pathutils.known_hosts_file(), default="")}


def node_join(node_name: str, node_ip: str, ssh_port: int, ssh_key_check: bool,
              readd: bool) -> dict:
    """Install this cluster's files on ``node_name`` over SSH and start its node daemon.

    Runs on the master.  Changes nothing in the configuration; the caller
    checks the node's daemon afterwards.  Raises errors.OpPrereqError when
    the node cannot be reached, refuses our SSH key or host key, or belongs
    to another cluster (nothing was installed on it then).
    """
    from corral import ssh
    payload = serializer.dumps(join_payload(node_name, readd))
    result = ssh.run_command(node_name, JOIN_COMMAND, stdin=payload, ip=node_ip,
                             port=ssh_port, strict_host_key_check=ssh_key_check)
    message = (result.stderr.strip() or result.stdout.strip())
    if result.exit_status == EXIT_OTHER_CLUSTER:
        raise errors.OpPrereqError(message, errors.ECODE_STATE)
    if result.failed:
        raise errors.OpExecError("Preparing node %s to join failed (exit %d): %s" %
                                 (node_name, result.exit_status, message or "no output"))
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise errors.OpExecError("Node %s answered the join with unexpected output: %r" %
                                 (node_name, result.stdout[-200:])) from None


# ---- node side of a join -----------------------------------------------------------------

def _current_membership() -> tuple[str, str] | None:
    """(cluster name, uuid) this node belongs to per its ssconf, or None."""
    store = ssconf.SimpleStore()
    try:
        return store.get_cluster_name(), store.get_cluster_uuid()
    except errors.ConfigurationError:
        return None


def prepare_storage_dirs(values: dict[str, str]) -> None:
    """Allow the file storage directories (file-storage-paths) and create those in use.

    ``values`` are ssconf values: a directory is created only when its disk
    template is enabled, so a cluster that never uses sharedfile does not get
    the default shared directory made on its nodes.
    """
    enabled = set((values.get("enabled_disk_templates") or "").split("\n"))
    allowed = []
    for key, template in (("file_storage_dir", "file"), ("shared_file_storage_dir",
                                                         "sharedfile")):
        directory = values.get(key)
        if not directory:
            continue
        allowed.append(directory)
        if template in enabled:
            os.makedirs(directory, mode=0o750, exist_ok=True)
    io.write_file_atomic(pathutils.file_storage_paths_file(),
                         "".join(d + "\n" for d in allowed))


def prepare_join(payload: dict) -> dict:
    """Install the cluster files of ``payload`` and (re)start noded; idempotent.

    Refuses (errors.OpPrereqError, nothing written) when the node is a member
    of another cluster, or when it runs a master daemon.
    """
    from corral.tools import daemon_util
    current = _current_membership()
    if current is not None and current[1] != payload["cluster_uuid"]:
        raise errors.OpPrereqError(
            "Node %s is already a member of another cluster, '%s' (uuid %s); remove it from"
            " that cluster first" % (payload["node_name"], current[0], current[1]),
            errors.ECODE_STATE)
    if daemon_util.running_pid("masterd"):
        raise errors.OpPrereqError("Node %s runs a master daemon; it cannot join another"
                                   " cluster" % payload["node_name"], errors.ECODE_STATE)
    pathutils.ensure_dirs()
    from corral.backend import files
    for name in _JOIN_FILES:
        if name in payload["files"]:
            files.upload_file(name, payload["files"][name], 0o600)
    io.remove_file(pathutils.config_file())  # a candidate gets the current one pushed
    ssconf.write_ssconf(payload["ssconf"])
    prepare_storage_dirs(payload["ssconf"])
    if payload.get("known_hosts"):
        io.write_file_atomic(pathutils.known_hosts_file(), payload["known_hosts"], mode=0o644)
    if daemon_util.running_pid("noded"):
        daemon_util.restart("noded")
    else:
        daemon_util.start("noded")
    return {"hostname": netutils.get_hostname()}


def _main_prepare_join() -> int:
    try:
        payload = json.loads(sys.stdin.read())
        result = prepare_join(payload)
    except errors.OpPrereqError as err:
        sys.stderr.write("%s\n" % err.args[0])
        return EXIT_OTHER_CLUSTER
    except (errors.GenericError, OSError, ValueError, KeyError) as err:
        sys.stderr.write("%s: %s\n" % (err.__class__.__name__, err))
        return 1
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


# ---- leaving, demotion ---------------------------------------------------------------------

def _membership_files() -> list[str]:
    return [pathutils.config_file(), pathutils.cluster_ca_file(), pathutils.node_cert_file(),
            pathutils.rapi_cert_file(), pathutils.known_hosts_file()]


def node_leave() -> None:
    """Forget the cluster (config, ssconf, certificates) and stop this node's daemons.

    The node daemon serving this call stops after the reply (SIGTERM to
    itself: the graceful shutdown finishes calls in flight).
    """
    from corral.tools import daemon_util
    for name in ("rapi", "masterd"):
        daemon_util.stop(name)
    ssconf.write_ssconf({})
    for path in _membership_files():
        io.remove_file(path)
    import shutil
    shutil.rmtree(pathutils.queue_dir(), ignore_errors=True)  # its job queue copy
    if daemon_util.running_pid("noded") == os.getpid():
        threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGTERM),
                         daemon=True).start()


def demote_from_mc() -> None:
    """Drop the local configuration copy: this node stops being a master candidate.

    Refused on the master itself (per ssconf), which must keep its config.
    """
    if ssconf.SimpleStore().get_master_node() == netutils.get_hostname():
        raise errors.OpPrereqError("This node is the master; it cannot be demoted",
                                   errors.ECODE_STATE)
    io.remove_file(pathutils.config_file())


def config_info() -> dict:
    """What this node knows: config serial/master (if it holds a copy) and ssconf master."""
    out: dict[str, Any] = {"hostname": netutils.get_hostname(), "serial_no": None,
                           "config_master": None, "cluster_uuid": None}
    try:
        out["ssconf_master"] = ssconf.SimpleStore().get_master_node()
    except errors.ConfigurationError:
        out["ssconf_master"] = None
    try:
        data = serializer.loads(io.read_file(pathutils.config_file()))
        out["serial_no"] = data["serial_no"]
        out["cluster_uuid"] = data["cluster"]["uuid"]
        out["config_master"] = data["nodes"][data["cluster"]["master_node"]]["name"]
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        pass
    return out


def get_config() -> str:
    """The text of this node's configuration copy (errors.ConfigurationError if none)."""
    try:
        return io.read_file(pathutils.config_file())
    except FileNotFoundError:
        raise errors.ConfigurationError("This node holds no configuration copy") from None


# ---- master IP and master role -------------------------------------------------------------

def _ip(*args: str) -> process.RunResult:
    return process.run_cmd(["ip"] + list(args))


def _has_address(ip: str, netdev: str) -> bool:
    result = _ip("-o", "addr", "show", "dev", netdev)
    if result.failed:
        raise errors.OpExecError("Master netdev '%s' does not exist on this node: %s" %
                                 (netdev, result.output.strip()))
    return any(" %s/" % ip in line for line in result.stdout.splitlines())


MASTER_IP_TURNUP = ("master-ip-turnup", "OP_CLUSTER_IP_TURNUP")
MASTER_IP_TURNDOWN = ("master-ip-turndown", "OP_CLUSTER_IP_TURNDOWN")


def run_local_hooks(hook: tuple[str, str], env: dict[str, Any], action: Any) -> Any:
    """Pre hooks, ``action()``, post hooks, all on this node (spec/hooks.md §3).

    A failing pre hook aborts (errors.HooksAbort) before ``action`` runs;
    post hook failures are logged.  Used where no master daemon drives the
    hooks: the master IP turnup/turndown.
    """
    import logging
    from corral import hooksmaster
    from corral.backend import hooks
    try:
        store = ssconf.SimpleStore()
        cluster, master = store.get_cluster_name(), store.get_master_node()
    except errors.ConfigurationError:
        cluster, master = "", ""
    me = netutils.get_hostname()

    def run(nodes: list[str], hpath: str, phase: str, henv: dict[str, str]) -> dict:
        return {node: (True, hooks.hooks_runner(hpath, phase, henv)) for node in nodes}

    hm = hooksmaster.HooksMaster(hook[1], hook[0], None, cluster, master, None,
                                 lambda: env, run, [me], [me])
    hm.run_pre()
    result = action()
    hm.run_post(logging.warning)
    return result


def _master_ip_env(ip: str, netmask: int, netdev: str) -> dict[str, Any]:
    return {"MASTER_NETDEV": netdev, "MASTER_IP": ip, "MASTER_NETMASK": str(netmask),
            "CLUSTER_IP_VERSION": "6" if ":" in ip else "4"}


def master_ip_up(ip: str, netmask: int, netdev: str) -> bool:
    """Configure the master IP on ``netdev``; idempotent.  True if it was added now.

    Runs the master-ip-turnup hooks around it; announces the address with a
    gratuitous ARP so neighbours stop sending to the old master at once.
    """
    if not netdev:
        return False
    return run_local_hooks(MASTER_IP_TURNUP, _master_ip_env(ip, netmask, netdev),
                           lambda: _add_master_ip(ip, netmask, netdev))


def _add_master_ip(ip: str, netmask: int, netdev: str) -> bool:
    if _has_address(ip, netdev):
        return False
    label = (netdev + ":0") if len(netdev) <= 13 else netdev
    result = _ip("addr", "add", "%s/%d" % (ip, netmask), "dev", netdev, "label", label)
    if result.failed:
        raise errors.OpExecError("Cannot add master IP %s/%d to %s: %s" %
                                 (ip, netmask, netdev, result.output.strip()))
    _send_gratuitous_arp(ip, netdev)
    return True


def _send_gratuitous_arp(ip: str, netdev: str) -> None:
    """Broadcast "ip is at our MAC" on ``netdev`` (IPv4; best effort, failures only logged)."""
    import logging
    import re
    import socket
    import struct
    if ":" in ip or not re.match(r"^[\w.-]{1,15}$", netdev):
        return
    try:
        with open("/sys/class/net/%s/address" % netdev) as fh:
            mac = bytes.fromhex(fh.read().strip().replace(":", ""))
        addr = socket.inet_aton(ip)
        frame = (b"\xff" * 6 + mac + struct.pack("!H", 0x0806)
                 + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + addr + b"\x00" * 6 + addr)
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
            sock.bind((netdev, 0))
            sock.send(frame.ljust(60, b"\x00"))
    except (OSError, ValueError) as err:
        logging.warning("Gratuitous ARP for %s on %s failed: %s", ip, netdev, err)


def master_ip_down(ip: str, netmask: int, netdev: str) -> bool:
    """Remove the master IP from ``netdev``; idempotent.  True if it was removed now.

    Runs the master-ip-turndown hooks around it.
    """
    if not netdev:
        return False
    return run_local_hooks(MASTER_IP_TURNDOWN, _master_ip_env(ip, netmask, netdev),
                           lambda: _remove_master_ip(ip, netmask, netdev))


def _remove_master_ip(ip: str, netmask: int, netdev: str) -> bool:
    if not _has_address(ip, netdev):
        return False
    result = _ip("addr", "del", "%s/%d" % (ip, netmask), "dev", netdev)
    if result.failed:
        raise errors.OpExecError("Cannot remove master IP %s from %s: %s" %
                                 (ip, netdev, result.output.strip()))
    return True


def master_stop(ip: str, netmask: int, netdev: str) -> None:
    """Give up the master role here: stop the master daemons, then drop the master IP."""
    from corral.tools import daemon_util
    for name in ("rapi", "masterd"):
        daemon_util.stop(name)
    if ip:
        master_ip_down(ip, netmask, netdev)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["prepare-join"]:
        return _main_prepare_join()
    sys.stderr.write("usage: corral-prepare-node-join < payload.json\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
