"""tools/vcluster: a real multi-node Corral cluster on one machine, in network namespaces.

Layout of a vcluster under ``--base DIR`` (see doc/design-multinode.md):

* a "hub" namespace holding bridge ``br0``; each node namespace is joined to
  it by a veth pair (``eth0`` in the node, enslaved to the node's own ``br0``,
  which carries the node's address and takes instance NICs), so all nodes
  share one L2 segment and nothing is added to the machine's own namespace;
* per node: ``DIR/n<i>`` as CORRAL_ROOT, CORRAL_HOSTNAME ``node<i>.<vc>.test``,
  names resolved through ``/etc/netns/<ns>/hosts``, its own sshd (key pair
  shared by the cluster's root, as after Ganeti's node setup) and node daemon;
  ``DIR/file`` is bind-mounted per node onto ``DIR/n<i>/file`` (the file
  storage dir), ``DIR/shared`` is the same directory everywhere (sharedfile);
* ``--hypervisor libvirt``: per node a libvirtd of its own in its namespace
  (state in ``DIR/n<i>/libvirt``, see :mod:`corral.tools.vcluster_libvirt`),
  started before the node daemon, which reaches it through
  ``$CORRAL_LIBVIRT_URI``; peers migrate over TCP on the node addresses;
* ``--hypervisor xen-pvm`` only where this machine is a Xen dom0;
* the cluster ``cluster.<vc>.test`` with its master IP on the master's br0;
* the RAPI (corral-rapi on the master, a write and a read-only user made by
  ``python -m corral.rapi.users --vcluster-setup`` and copied to every node)
  reachable from the machine's own namespace at ``127.0.0.1:<port>``: a
  forwarder process (``_forward``) runs in the hub namespace, which has an
  address on the segment (``.254``), and accepts on a listening socket made
  in the machine's namespace (a socket keeps the namespace it was made in),
  connecting each client to the master IP's RAPI port, so it follows the
  master on failover.  ``env`` exports it as ``CORRAL_RAPI_*``.

Every process of a node runs with ``ip netns exec`` through ``_enter`` (bind
mount, then exec), so "every process of that node" is exactly the processes
of its namespace.  State is kept in ``DIR/vcluster.json``.

Python API (tools/bench, tests): ``create``, ``load``, ``destroy``, ``env``,
``run_on``, ``stop_node``, ``start_node``, ``partition``, ``heal``.
"""

import argparse
import dataclasses
import hashlib
import json
import os
import select
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
from typing import Callable

from corral import ssh
from corral.tools import vcluster_libvirt as lvsetup

STATE_FILE = "vcluster.json"
NETNS_ETC = "/etc/netns"
BIN_DIR = os.path.dirname(os.path.abspath(sys.executable))
PATH = BIN_DIR + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MASTER_HOST = 250
HUB_HOST = 254  # the hub's own address on the segment (RAPI forwarder's source)
FIRST_NODE_HOST = 10
RAPI_PORT = 5080
DEFAULT_TEMPLATES = "file,sharedfile,diskless,mirror"
CMD_TIMEOUT = 300
Feedback = Callable[[str], None]


class VClusterError(Exception):
    """A vcluster operation failed; the message says which step and why."""


@dataclasses.dataclass
class Node:
    index: int
    name: str
    ns: str
    ip: str
    root: str
    hub_link: str

    @property
    def short(self) -> str:
        return self.name.split(".")[0]


@dataclasses.dataclass
class VCluster:
    base: str
    vcname: str
    uid: str
    subnet: str  # first three octets
    hub_ns: str
    hub_owner: str  # base dir of the vcluster that made the hub
    cluster_name: str
    master_ip: str
    hypervisor: str
    nodes: list[Node]
    rapi: dict | None = None  # {"port", "pid", "user", "password", "ro_user", "ro_password"}

    def node(self, ident: str) -> Node:
        """A node by full name, short name (node2), index (2) or namespace."""
        for node in self.nodes:
            if ident in (node.name, node.short, str(node.index), node.ns):
                return node
        raise VClusterError("No node '%s' in vcluster %s (nodes: %s)" %
                            (ident, self.base, ", ".join(n.name for n in self.nodes)))

    @property
    def file_dir(self) -> str:
        return os.path.join(self.base, "file")

    @property
    def shared_dir(self) -> str:
        return os.path.join(self.base, "shared")

    def node_env(self, node: Node) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
        env.update(CORRAL_ROOT=node.root, CORRAL_HOSTNAME=node.name, PATH=PATH, HOME="/root")
        if os.environ.get("CORRAL_GUEST_CACHE"):
            env["CORRAL_GUEST_CACHE"] = os.environ["CORRAL_GUEST_CACHE"]
        env.update(_hypervisor_env(self, node))
        return env

    def save(self) -> None:
        data = dataclasses.asdict(self)
        tmp = os.path.join(self.base, STATE_FILE + ".tmp")
        with open(tmp, "w") as fh:
            json.dump(data, fh, indent=1)
        os.rename(tmp, os.path.join(self.base, STATE_FILE))


def load(base: str) -> VCluster:
    """The vcluster under ``base`` (VClusterError if there is none)."""
    base = os.path.realpath(base)
    try:
        with open(os.path.join(base, STATE_FILE)) as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise VClusterError("No vcluster under %s" % base) from None
    data["nodes"] = [Node(**n) for n in data["nodes"]]
    return VCluster(**data)


# ---- commands ---------------------------------------------------------------------------

def _run(argv: list[str], check: bool = True, env: dict | None = None,
         input_text: str | None = None,
         timeout: float = CMD_TIMEOUT) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, input=input_text,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise VClusterError("%s failed (exit %d): %s" % (" ".join(argv), proc.returncode,
                                                         (proc.stderr or proc.stdout).strip()))
    return proc


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return _run(["ip"] + list(args), check=check)


def enter_argv(vc: VCluster, node: Node, argv: list[str]) -> list[str]:
    """The command line running ``argv`` as a process of ``node`` (netns + bind mount)."""
    return ["ip", "netns", "exec", node.ns, sys.executable, "-m", "corral.tools.vcluster",
            "_enter", "--bind", "%s:%s" % (os.path.join(node.root, "file"), vc.file_dir),
            "--"] + list(argv)


def run_on(vc: VCluster, node: Node, argv: list[str], check: bool = True,
           input_text: str | None = None, timeout: float = CMD_TIMEOUT
           ) -> subprocess.CompletedProcess:
    """Run ``argv`` on ``node`` with its environment; captured output."""
    return _run(enter_argv(vc, node, argv), check=check, env=vc.node_env(node),
                input_text=input_text, timeout=timeout)


def _enter(binds: list[str], argv: list[str]) -> int:
    """Inside ``ip netns exec`` (a private mount namespace): bind mounts, then exec."""
    for bind in binds:
        src, _, dst = bind.partition(":")
        result = subprocess.run(["mount", "--bind", src, dst], capture_output=True, text=True)
        if result.returncode != 0:
            sys.stderr.write("vcluster: cannot bind %s on %s: %s" % (src, dst, result.stderr))
            return 1
    try:
        os.execvp(argv[0], argv)
    except OSError as err:
        sys.stderr.write("vcluster: cannot run %s: %s\n" % (argv[0], err.strerror))
        return 127


# ---- naming and addresses -----------------------------------------------------------------

def _identity(base: str) -> tuple[str, str, str]:
    """(vcname, uid, subnet) derived from the base dir, so each base dir gets its own."""
    vcname = "".join(c for c in os.path.basename(base).lower() if c.isalnum())[:20] or "vc"
    digest = int(hashlib.sha1(base.encode()).hexdigest(), 16)
    uid = "%05x" % (digest % 0xFFFFF)
    subnet = "10.%d.%d" % (100 + digest % 100, (digest // 100) % 250)
    return vcname, uid, subnet


def _plan(base: str, count: int, hypervisor: str, share: VCluster | None) -> VCluster:
    vcname, uid, subnet = _identity(base)
    hub_ns, hub_owner = "cv%s-hub" % uid, base
    first, master_host = FIRST_NODE_HOST, MASTER_HOST
    if share is not None:
        subnet, hub_ns, hub_owner = share.subnet, share.hub_ns, share.hub_owner
        taken = {int(n.ip.rsplit(".", 1)[1]) for n in _segment_nodes(share)}
        first = max(taken) + 1
        master_host = MASTER_HOST - len(_segment_members(share))
    nodes = [Node(index=i, name="node%d.%s.test" % (i, vcname), ns="cv%s-n%d" % (uid, i),
                  ip="%s.%d" % (subnet, first + i - 1), root=os.path.join(base, "n%d" % i),
                  hub_link="cv%sn%d" % (uid, i)) for i in range(1, count + 1)]
    return VCluster(base=base, vcname=vcname, uid=uid, subnet=subnet, hub_ns=hub_ns,
                    hub_owner=hub_owner, cluster_name="cluster.%s.test" % vcname,
                    master_ip="%s.%d" % (subnet, master_host), hypervisor=hypervisor,
                    nodes=nodes)


def _segment_members(vc: VCluster) -> list[VCluster]:
    """Every vcluster on ``vc``'s L2 segment (the hub owner's list)."""
    path = os.path.join(vc.hub_owner, "segment.json")
    try:
        with open(path) as fh:
            bases = json.load(fh)
    except FileNotFoundError:
        bases = [vc.hub_owner]
    out = []
    for base in bases:
        try:
            out.append(vc if base == vc.base else load(base))
        except VClusterError:
            continue
    return out


def _segment_nodes(vc: VCluster) -> list[Node]:
    return [n for member in _segment_members(vc) for n in member.nodes]


def _set_segment(owner: str, bases: list[str]) -> None:
    with open(os.path.join(owner, "segment.json"), "w") as fh:
        json.dump(bases, fh)


def _hosts_text(vc: VCluster, members: list[VCluster]) -> str:
    lines = ["127.0.0.1 localhost"]
    for member in members:
        for node in member.nodes:
            names = [node.name] + ([node.short] if member.base == vc.base else [])
            lines.append("%s %s" % (node.ip, " ".join(names)))
        lines.append("%s %s" % (member.master_ip, member.cluster_name))
    return "\n".join(lines) + "\n"


def _write_hosts(vc: VCluster) -> None:
    """Rewrite the hosts file of every node on the segment (they all know each other)."""
    members = _segment_members(vc)
    for member in members:
        for node in member.nodes:
            os.makedirs(os.path.join(NETNS_ETC, node.ns), exist_ok=True)
            with open(os.path.join(NETNS_ETC, node.ns, "hosts"), "w") as fh:
                fh.write(_hosts_text(member, members))


# ---- network --------------------------------------------------------------------------------

def _netns_exists(ns: str) -> bool:
    return os.path.exists(os.path.join("/run/netns", ns))


def _make_hub(vc: VCluster) -> None:
    _ip("netns", "add", vc.hub_ns)
    _ip("-n", vc.hub_ns, "link", "set", "lo", "up")
    _ip("-n", vc.hub_ns, "link", "add", "br0", "type", "bridge")
    _ip("-n", vc.hub_ns, "link", "set", "br0", "up")
    _ip("-n", vc.hub_ns, "addr", "add", "%s.%d/24" % (vc.subnet, HUB_HOST), "dev", "br0")


def _make_node_net(vc: VCluster, node: Node) -> None:
    """Namespace, veth to the hub, the node's bridge br0 carrying its address."""
    _ip("netns", "add", node.ns)
    _ip("-n", vc.hub_ns, "link", "add", node.hub_link, "type", "veth", "peer", "name", "eth0",
        "netns", node.ns)
    _ip("-n", vc.hub_ns, "link", "set", node.hub_link, "master", "br0")
    _ip("-n", vc.hub_ns, "link", "set", node.hub_link, "up")
    for args in (("link", "set", "lo", "up"), ("link", "add", "br0", "type", "bridge"),
                 ("link", "set", "eth0", "master", "br0"), ("link", "set", "eth0", "up"),
                 ("link", "set", "br0", "up"), ("addr", "add", node.ip + "/24", "dev", "br0")):
        _ip("-n", node.ns, *args)
    _pin_bridge_mac(node)


def _set_link(vc: VCluster, node: Node, up: bool) -> None:
    _ip("-n", vc.hub_ns, "link", "set", node.hub_link, "up" if up else "down")


def _drop_master_ip(vc: VCluster, node: Node) -> None:
    """A crashed or rebooted node holds no master IP any more."""
    _ip("-n", node.ns, "addr", "del", vc.master_ip + "/32", "dev", "br0", check=False)


# ---- per node files, sshd, daemons -----------------------------------------------------------

def _sshd_config(vc: VCluster, node: Node) -> str:
    d = os.path.join(node.root, "ssh")
    env = vc.node_env(node)
    setenv = " ".join("%s=%s" % (k, env[k]) for k in
                      ("CORRAL_ROOT", "CORRAL_HOSTNAME", "PATH", lvsetup.URI_ENV) if k in env)
    return "\n".join([
        "ListenAddress %s" % node.ip, "Port 22",
        "HostKey %s/ssh_host_ed25519_key" % d, "PidFile %s/sshd.pid" % d,
        "AuthorizedKeysFile %s/authorized_keys" % d, "StrictModes no", "UsePAM no",
        "PermitRootLogin prohibit-password", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "SetEnv %s" % setenv,
        "Subsystem sftp internal-sftp", ""])


def _prepare_node_files(vc: VCluster, node: Node, root_key: str, pubkey: str) -> None:
    ssh_dir = os.path.join(node.root, "ssh")
    key_dir = os.path.join(node.root, "root", ".ssh")
    for d in (ssh_dir, key_dir, os.path.join(node.root, "file")):
        os.makedirs(d, mode=0o700, exist_ok=True)
    ssh.generate_key_pair(os.path.join(ssh_dir, "ssh_host_ed25519_key"), node.name)
    with open(os.path.join(ssh_dir, "authorized_keys"), "w") as fh:
        fh.write(pubkey + "\n")
    with open(os.path.join(ssh_dir, "sshd_config"), "w") as fh:
        fh.write(_sshd_config(vc, node))
    shutil.copy(root_key, os.path.join(key_dir, "id_ed25519"))
    shutil.copy(root_key + ".pub", os.path.join(key_dir, "id_ed25519.pub"))
    os.chmod(os.path.join(key_dir, "id_ed25519"), 0o600)


def _start_sshd(vc: VCluster, node: Node) -> None:
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    d = os.path.join(node.root, "ssh")
    run_on(vc, node, ["/usr/sbin/sshd", "-f", os.path.join(d, "sshd_config"),
                      "-E", os.path.join(d, "sshd.log")])


def _start_daemons(vc: VCluster, node: Node) -> str | None:
    """Start the node's daemons; the failure message of the master ones, if any.

    The node daemon must start; a master daemon that refuses (an old master
    after a failover) is reported, not an error of the vcluster.
    """
    if not os.path.exists(os.path.join(node.root, "var", "lib", "corral", "server.pem")):
        return None  # not (or no longer) a member: only sshd runs there
    run_on(vc, node, ["corral-daemon-util", "start", "noded"])
    proc = run_on(vc, node, ["corral-daemon-util", "start-all"], check=False)
    return None if proc.returncode == 0 else (proc.stderr or proc.stdout).strip()


# ---- per node hypervisor setup (libvirt, xen-pvm) ----------------------------------------------

HYPERVISORS = ("fake", "kvm", "libvirt", "xen-pvm")


def libvirt_dir(node: Node) -> str:
    """The node's libvirtd state, bind-mounted over libvirt's dirs (see vcluster_libvirt)."""
    return os.path.join(node.root, "libvirt")


def _hypervisor_env(vc: VCluster, node: Node) -> dict[str, str]:
    """Variables every process of the node gets for its hypervisor (libvirt: its own daemon)."""
    if vc.hypervisor == "libvirt":
        return {lvsetup.URI_ENV: lvsetup.libvirt_uri(libvirt_dir(node))}
    return {}


def _check_hypervisor(hypervisor: str) -> None:
    """Refuse, before anything is made, a hypervisor this machine cannot run."""
    if hypervisor not in HYPERVISORS:
        raise VClusterError("Unknown hypervisor %s (choose from %s)" %
                            (hypervisor, ", ".join(HYPERVISORS)))
    if hypervisor == "libvirt":
        try:
            lvsetup.check_host()
        except lvsetup.LibvirtSetupError as err:
            raise VClusterError(str(err)) from None
    elif hypervisor == "xen-pvm":
        from corral.hypervisor.xen import driver as xen_driver
        problem = xen_driver.dom0_problem()
        if problem:
            raise VClusterError("--hypervisor xen-pvm needs a Xen dom0 (control_d in "
                                "/proc/xen/capabilities): %s" % problem)


def bridge_mac(node: Node) -> str:
    """The fixed MAC of the node's br0: locally administered, from its (unique) address."""
    return "02:00:%02x:%02x:%02x:%02x" % tuple(int(o) for o in node.ip.split("."))


def _pin_bridge_mac(node: Node) -> None:
    """Give the node's br0 a MAC of its own, set explicitly (idempotent).

    A bridge whose MAC was never set takes the lowest MAC of its ports.
    libvirt and the kvm driver make a guest's tap MAC fe:<guest MAC[1:]>, the
    same on both nodes of a migration; a node whose eth0 MAC sorts above it would adopt
    it, and the migration target's bridge would then drop every packet of
    that node as carrying its own address: the nodes lose each other.
    """
    _ip("-n", node.ns, "link", "set", "br0", "address", bridge_mac(node))


def _start_node_hypervisor(vc: VCluster, node: Node,
                           feedback: Feedback = lambda msg: None) -> None:
    """libvirt: start the node's libvirtd unless it runs (before its node daemon).

    It gets the node's file storage bind too, so its QEMUs open disks at the
    paths the node daemon gave.  A stopped node (stop-node) left a stale pid
    file: only a pid inside the node's namespace counts as running.
    """
    if vc.hypervisor != "libvirt":
        return
    lvdir = libvirt_dir(node)
    pid = lvsetup.pid_of(lvdir)
    if pid is not None and str(pid) in _ip("netns", "pids", node.ns, check=False).stdout.split():
        return
    feedback("Starting libvirtd of %s" % node.name)
    try:
        lvsetup.start(node.ns, lvdir, node.ip, env=vc.node_env(node),
                      binds=("%s:%s" % (os.path.join(node.root, "file"), vc.file_dir),))
    except (lvsetup.LibvirtSetupError, subprocess.TimeoutExpired) as err:
        raise VClusterError(str(err)) from None


def _pidfd_wait(pids: list[int], timeout: float) -> None:
    """Wait (pidfd, no polling) until every process in ``pids`` is gone."""
    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))
        except ProcessLookupError:
            continue
    try:
        for fd in fds:
            select.select([fd], [], [], timeout)
    finally:
        for fd in fds:
            os.close(fd)


def _kill_namespace(ns: str) -> None:
    """SIGKILL every process of network namespace ``ns`` and wait until they are gone."""
    for _attempt in range(5):
        proc = _ip("netns", "pids", ns, check=False)
        pids = [int(p) for p in proc.stdout.split() if p.isdigit()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _pidfd_wait(pids, 10.0)


# ---- create / destroy ----------------------------------------------------------------------

def _check_host() -> None:
    if os.geteuid() != 0:
        raise VClusterError("vcluster needs root (network namespaces, bind mounts)")
    for tool in ("ip", "/usr/sbin/sshd", "mount"):
        if shutil.which(tool) is None:
            raise VClusterError("%s is not installed (package %s)" %
                                (tool, "openssh-server" if "sshd" in tool else "iproute2"))
    if shutil.which("corral-daemon-util", path=BIN_DIR) is None:
        raise VClusterError("corral-daemon-util not found next to %s; install Corral"
                            % sys.executable)


# Cluster-level hvparams booting the cached guest kernel (tools/guest-image) directly.
GUEST_HVPARAMS = {
    "kvm": "kvm:kernel_path=%(kernel)s,initrd_path=%(initrd)s,kvm_flag=disabled,"
           "root_path=/dev/vda",
    "libvirt": "libvirt:kernel_path=%(kernel)s,initrd_path=%(initrd)s,root_path=/dev/vda",
    "xen-pvm": "xen-pvm:kernel_path=%(kernel)s,initrd_path=%(initrd)s,root_path=/dev/xvda",
}


def _guest_hvparams(hypervisor: str = "kvm") -> list[str]:
    cache = os.environ.get("CORRAL_GUEST_CACHE") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        ".cache", "guest")
    kernel, initrd = os.path.join(cache, "vmlinuz"), os.path.join(cache, "initrd.img")
    if not (os.path.exists(kernel) and os.path.exists(initrd)):
        raise VClusterError("Guest kernel/initrd missing in %s: run tools/guest-image" % cache)
    return ["-H", GUEST_HVPARAMS[hypervisor] % {"kernel": kernel, "initrd": initrd}]


def _init_argv(vc: VCluster, templates: str) -> list[str]:
    argv = ["gnt-cluster", "init", "--enabled-hypervisors=%s" % vc.hypervisor,
            "--enabled-disk-templates=%s" % templates, "--master-netdev=br0",
            "--file-storage-dir=%s" % vc.file_dir,
            "--shared-file-storage-dir=%s" % vc.shared_dir, "-N", "link=br0"]
    if vc.hypervisor in GUEST_HVPARAMS:
        argv += _guest_hvparams(vc.hypervisor)
    return argv + [vc.cluster_name]


def create(base: str, nodes: int = 3, hypervisor: str = "fake",
           enabled_disk_templates: str = DEFAULT_TEMPLATES, share_network: str | None = None,
           feedback: Feedback = lambda msg: None) -> VCluster:
    """Build the namespaces, start sshd everywhere, init on node1 and add the others.

    On failure everything made so far is destroyed again.  ``share_network``
    (another vcluster's base) puts the nodes on that vcluster's L2 segment.
    """
    _check_host()
    _check_hypervisor(hypervisor)
    base = os.path.realpath(base)
    if os.path.exists(os.path.join(base, STATE_FILE)):
        raise VClusterError("A vcluster already exists under %s; destroy it first" % base)
    if not 1 <= nodes <= 200:
        raise VClusterError("--nodes must be between 1 and 200")
    share = load(share_network) if share_network else None
    vc = _plan(base, nodes, hypervisor, share)
    for other in [n for n in vc.nodes if _netns_exists(n.ns)] + \
            ([vc] if share is None and _netns_exists(vc.hub_ns) else []):
        raise VClusterError("Namespace %s already exists (stale vcluster?)" %
                            getattr(other, "ns", vc.hub_ns))
    os.makedirs(base, exist_ok=True)
    for d in (vc.file_dir, vc.shared_dir):
        os.makedirs(d, exist_ok=True)
    vc.save()
    try:
        _build(vc, share, enabled_disk_templates, feedback)
    except BaseException:
        destroy(base)
        raise
    return vc


def _build(vc: VCluster, share: VCluster | None, templates: str, feedback: Feedback) -> None:
    if share is None:
        _make_hub(vc)
    else:
        _set_segment(vc.hub_owner, [m.base for m in _segment_members(share)] + [vc.base])
    root_key = os.path.join(vc.base, "ssh", "id_ed25519")
    pubkey = ssh.generate_key_pair(root_key, "root@%s" % vc.cluster_name)
    for node in vc.nodes:
        feedback("Setting up %s (%s, namespace %s)" % (node.name, node.ip, node.ns))
        _make_node_net(vc, node)
        _prepare_node_files(vc, node, root_key, pubkey)
    _write_hosts(vc)
    for node in vc.nodes:
        _start_sshd(vc, node)
    for node in vc.nodes:
        _start_node_hypervisor(vc, node, feedback)
    feedback("Initialising cluster %s on %s" % (vc.cluster_name, vc.nodes[0].name))
    run_on(vc, vc.nodes[0], _init_argv(vc, templates))
    for node in vc.nodes[1:]:
        feedback("Adding %s" % node.name)
        run_on(vc, vc.nodes[0], ["gnt-node", "add", "--no-ssh-key-check", node.name])
    feedback("Setting up the RAPI users and a forwarder on 127.0.0.1")
    _setup_rapi(vc)


def _unmount_below(path: str) -> None:
    with open("/proc/self/mounts") as fh:
        points = [line.split()[1] for line in fh]
    for point in sorted(points, key=len, reverse=True):
        if point == path or point.startswith(path + "/"):
            _run(["umount", "-l", point], check=False)


def destroy(base: str) -> None:
    """Kill every process, remove namespaces, links, hosts files, mounts and ``base``.

    Idempotent; works on a half-built vcluster.  Destroying the vcluster that
    made a shared segment's hub destroys the vclusters sharing it first.
    """
    base = os.path.realpath(base)
    try:
        vc = load(base)
    except VClusterError:
        shutil.rmtree(base, ignore_errors=True)
        return
    if vc.hub_owner == vc.base:
        for other in _segment_members(vc):
            if other.base != vc.base:
                destroy(other.base)
    _stop_forwarder(vc)
    for node in vc.nodes:
        if _netns_exists(node.ns):
            _kill_namespace(node.ns)
            _ip("netns", "del", node.ns, check=False)
        shutil.rmtree(os.path.join(NETNS_ETC, node.ns), ignore_errors=True)
    if vc.hub_owner == vc.base:
        if _netns_exists(vc.hub_ns):
            _kill_namespace(vc.hub_ns)
            _ip("netns", "del", vc.hub_ns, check=False)
    elif os.path.exists(os.path.join(vc.hub_owner, STATE_FILE)):
        # Our veth pairs went with our namespaces; the hub stays with its owner.
        _set_segment(vc.hub_owner, [m.base for m in _segment_members(vc) if m.base != vc.base])
        _write_hosts(load(vc.hub_owner))
    _unmount_below(base)
    shutil.rmtree(base, ignore_errors=True)
    try:
        os.rmdir(NETNS_ETC)  # only if no other namespace still has files there
    except OSError:
        pass


# ---- RAPI from the machine's own namespace ---------------------------------------------------

def _setup_rapi(vc: VCluster) -> None:
    """Users (on the master, then on every node via redist-conf) and the forwarder."""
    master = vc.nodes[0]
    run_on(vc, master, [sys.executable, "-m", "corral.rapi.users", "--vcluster-setup",
                        "--host", vc.master_ip, "--port", str(RAPI_PORT)])
    info_path = os.path.join(master.root, "var", "lib", "corral", "rapi", "vcluster-users.json")
    with open(info_path) as fh:
        info = json.load(fh)
    run_on(vc, master, ["gnt-cluster", "redist-conf"])  # the users file reaches every node
    pid, port = _start_forwarder(vc)
    vc.rapi = {"port": port, "pid": pid, "user": info["user"], "password": info["password"],
               "ro_user": info["ro_user"], "ro_password": info["ro_password"]}
    vc.save()


def _start_forwarder(vc: VCluster) -> tuple[int, int]:
    """(pid, port) of a new forwarder: 127.0.0.1:port here -> master IP:5080 in the hub."""
    _ip("-n", vc.hub_ns, "addr", "add", "%s.%d/24" % (vc.subnet, HUB_HOST), "dev", "br0",
        check=False)  # idempotent: already there unless the hub predates the forwarder
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    log = open(os.path.join(vc.base, "rapi-forward.log"), "ab")
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        fd = sock.fileno()
        proc = subprocess.Popen(
            ["ip", "netns", "exec", vc.hub_ns, sys.executable, "-m", "corral.tools.vcluster",
             "_forward", "--listen-fd", str(fd), "--to", "%s:%d" % (vc.master_ip, RAPI_PORT),
             "--base", vc.base],
            pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True)
        return proc.pid, sock.getsockname()[1]
    finally:
        sock.close()  # the forwarder holds its own copy
        log.close()


def _stop_forwarder(vc: VCluster) -> None:
    pid = (vc.rapi or {}).get("pid")
    if not pid:
        return
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as fh:
            cmdline = fh.read().split(b"\0")
    except OSError:
        return
    if b"_forward" in cmdline and vc.base.encode() in cmdline:  # not a recycled pid
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        _pidfd_wait([pid], 10.0)


def _pump(client: socket.socket, target: tuple[str, int]) -> None:
    """Copy bytes both ways between ``client`` and a new connection to ``target``."""
    with client:
        try:
            upstream = socket.create_connection(target, timeout=10.0)
        except OSError as err:
            sys.stderr.write("vcluster forwarder: cannot reach %s:%d: %s\n" % (target + (err,)))
            return
        with upstream, selectors.DefaultSelector() as sel:
            upstream.settimeout(None)
            peers = {client: upstream, upstream: client}
            for sock in peers:
                sel.register(sock, selectors.EVENT_READ)
            try:
                while peers:
                    for key, _ in sel.select():
                        src = key.fileobj
                        data = src.recv(65536)
                        if data:
                            peers[src].sendall(data)
                            continue
                        peers[src].shutdown(socket.SHUT_WR)  # pass the half-close on
                        sel.unregister(src)
                        del peers[src]
            except OSError:
                return  # a reset on either side ends both


def _forward(listen_fd: int, to: str) -> int:
    """Accept on the inherited socket; each connection goes to ``to`` (HOST:PORT)."""
    host, _, port = to.rpartition(":")
    server = socket.socket(fileno=listen_fd)
    while True:
        client, _addr = server.accept()
        threading.Thread(target=_pump, args=(client, (host, int(port))), daemon=True).start()


# ---- node operations -------------------------------------------------------------------------

def stop_node(base: str, ident: str) -> None:
    """Crash a node: SIGKILL all its processes (daemons, sshd, libvirtd, guests), cut its link."""
    vc = load(base)
    node = vc.node(ident)
    _kill_namespace(node.ns)
    _drop_master_ip(vc, node)
    _set_link(vc, node, False)


def start_node(base: str, ident: str) -> str | None:
    """Boot a stopped node again: link up, sshd, daemons.

    Returns the message of a master daemon that refused to start (an old
    master that is not the master any more), else None.
    """
    vc = load(base)
    node = vc.node(ident)
    _drop_master_ip(vc, node)
    _set_link(vc, node, True)
    if not os.path.exists(os.path.join(node.root, "ssh", "sshd.pid")) or \
            not _ip("netns", "pids", node.ns, check=False).stdout.strip():
        _start_sshd(vc, node)
    _start_node_hypervisor(vc, node)
    return _start_daemons(vc, node)


def partition(base: str, ident: str) -> None:
    """Cut the node off the network (its processes keep running)."""
    vc = load(base)
    _set_link(vc, vc.node(ident), False)


def heal(base: str, ident: str) -> None:
    """Reconnect a partitioned node."""
    vc = load(base)
    _set_link(vc, vc.node(ident), True)


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def current_master(vc: VCluster) -> Node:
    """The node most nodes' ssconf names as master (ties: the lowest index)."""
    votes: dict[str, int] = {}
    for node in vc.nodes:
        name = _read(os.path.join(node.root, "var", "lib", "corral", "ssconf_master_node"))
        if name:
            votes[name] = votes.get(name, 0) + 1
    if not votes:
        raise VClusterError("No node of %s knows a master" % vc.base)
    best = max(votes.items(), key=lambda kv: kv[1])[0]
    return vc.node(best)


def env(base: str) -> dict[str, str]:
    """Environment for gnt-* in this namespace to reach the master, and its RAPI.

    The RAPI variables name the forwarder on 127.0.0.1 (it follows the master
    IP); a vcluster made before the forwarder existed falls back to the
    master's ``vcluster-users.json``.
    """
    vc = load(base)
    master = current_master(vc)
    out = {"CORRAL_ROOT": master.root, "CORRAL_HOSTNAME": master.name,
           "PATH": BIN_DIR + ":" + os.environ.get("PATH", "/usr/bin:/bin")}
    if vc.rapi:
        out.update(CORRAL_RAPI_HOST="127.0.0.1", CORRAL_RAPI_PORT=str(vc.rapi["port"]))
        for key in ("user", "password", "ro_user", "ro_password"):
            out["CORRAL_RAPI_" + key.upper()] = str(vc.rapi[key])
        return out
    users = os.path.join(master.root, "var", "lib", "corral", "rapi", "vcluster-users.json")
    try:
        with open(users) as fh:
            rapi = json.load(fh)
    except (OSError, ValueError):
        rapi = None
    if isinstance(rapi, dict):
        for key in ("host", "port", "user", "password", "ro_user", "ro_password"):
            if rapi.get(key) is not None:
                out["CORRAL_RAPI_" + key.upper()] = str(rapi[key])
    return out


# ---- command line ----------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vcluster", description="Multi-node Corral clusters"
                                     " in network namespaces on this machine")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str, node: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--base", required=True, help="directory of the vcluster (keep it"
                       " short: unix socket paths under it must stay below 108 bytes)")
        if node:
            p.add_argument("node", help="node name (node2.<vc>.test), short name or index")
        return p

    p = add("create", "create a cluster: namespaces, sshd, gnt-cluster init, gnt-node add")
    p.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3)")
    p.add_argument("--hypervisor", choices=list(HYPERVISORS), default="fake",
                   help="hypervisor of the cluster: fake, kvm (TCG guests), libvirt (a"
                        " libvirtd per node, TCG guests) or xen-pvm (only on a Xen dom0)")
    p.add_argument("--enabled-disk-templates", default=DEFAULT_TEMPLATES,
                   help="comma-separated disk templates (default %s)" % DEFAULT_TEMPLATES)
    p.add_argument("--share-network", metavar="BASE", default=None,
                   help="put the nodes on the network segment of the vcluster at BASE")
    add("env", "print shell exports making gnt-* here talk to the cluster's master")
    p = add("exec", "run a command on a node (in its namespace, with its environment)", True)
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- command and arguments")
    add("stop-node", "kill every process of a node (daemons, libvirtd, guests) and cut its"
        " link (a crash)", True)
    add("start-node", "bring a stopped node back: link, sshd, libvirtd, daemons", True)
    add("partition", "cut a node's network", True)
    add("heal", "restore a node's network", True)
    add("destroy", "remove every namespace, process, link, mount and file of the vcluster")
    p = sub.add_parser("_forward", help=argparse.SUPPRESS)
    p.add_argument("--listen-fd", type=int, required=True)
    p.add_argument("--to", required=True)
    p.add_argument("--base", required=True)  # only to recognise the process
    p = sub.add_parser("_enter", help=argparse.SUPPRESS)
    p.add_argument("--bind", action="append", default=[])
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    return parser


def _strip_dashes(cmd: list[str]) -> list[str]:
    return cmd[1:] if cmd and cmd[0] == "--" else cmd


def _dispatch(opts: argparse.Namespace) -> int:
    if opts.command == "create":
        vc = create(opts.base, opts.nodes, opts.hypervisor, opts.enabled_disk_templates,
                    opts.share_network, feedback=lambda m: print(m, flush=True))
        print("vcluster %s ready: %s" % (vc.cluster_name, ", ".join(n.name for n in vc.nodes)))
    elif opts.command == "env":
        import shlex
        for key, value in sorted(env(opts.base).items()):
            print("export %s=%s" % (key, shlex.quote(value)))
    elif opts.command == "exec":
        vc = load(opts.base)
        node = vc.node(opts.node)
        cmd = _strip_dashes(opts.cmd)
        if not cmd:
            raise VClusterError("exec needs a command after --")
        return subprocess.run(enter_argv(vc, node, cmd), env=vc.node_env(node)).returncode
    elif opts.command == "start-node":
        problem = start_node(opts.base, opts.node)
        if problem:
            sys.stderr.write("vcluster: warning: %s\n" % problem)
    elif opts.command == "destroy":
        destroy(opts.base)
    else:
        {"stop-node": stop_node, "partition": partition, "heal": heal}[opts.command](
            opts.base, opts.node)
    return 0


def main(argv: list[str] | None = None) -> int:
    opts = _parser().parse_args(argv)
    if opts.command == "_enter":
        return _enter(opts.bind, _strip_dashes(opts.cmd))
    if opts.command == "_forward":
        return _forward(opts.listen_fd, opts.to)
    try:
        return _dispatch(opts)
    except (VClusterError, subprocess.TimeoutExpired) as err:
        sys.stderr.write("vcluster: %s\n" % err)
        return 1


if __name__ == "__main__":
    sys.exit(main())
