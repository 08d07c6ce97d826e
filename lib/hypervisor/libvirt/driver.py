"""The libvirt driver: persistent domains defined from generated XML.

Flow (doc/design-xen-libvirt.md): start = connect to the hvparam ``uri``
(first, so an unreachable libvirt changes nothing), generate the XML
(:mod:`.domxml`), save ``<hv_dir>/<name>/runtime.json`` (uri, spec, disks),
``defineXML`` + ``create``; stop = ``shutdown`` (ACPI), wait for the
lifecycle event up to the timeout, ``destroy``, ``undefine``, remove the
runtime dir (the serial log under ``<hv_dir>/log`` stays).

The URI is the hvparam, except that $CORRAL_LIBVIRT_URI (a vcluster node with
its own libvirtd) replaces the default. Calls that get only a name use the
URI saved in the runtime file; node-wide
calls (list, node info, verify) use the node's URI: ``$CORRAL_LIBVIRT_URI``
if set (a vcluster node with its own libvirtd), else the table default
``qemu:///system``, plus every URI a running instance was started with.
"""

import os
import shutil
import socket
import time
from typing import Any

from corral import errors, pathutils, serializer
from corral.hypervisor import base, common
from corral.hypervisor import hvparams as hvp
from corral.hypervisor.libvirt import conn as lvc
from corral.hypervisor.libvirt import domxml
from corral.hypervisor.libvirt.migration import LibvirtMigrationMixin
from corral.utils import io

SOCAT = "socat"
UNIX_PATH_MAX = 107
URI_ENV = "CORRAL_LIBVIRT_URI"
# Seconds between ACPI power button presses during a graceful shutdown.
POWERDOWN_REPEAT = 5.0


def _lock(name: str):
    return common.instance_lock("libvirt", name)


check_name = common.check_name


def hv_dir() -> str:
    return pathutils.hypervisor_run_dir("libvirt")


def paths_for(name: str) -> domxml.DomainPaths:
    d = os.path.join(hv_dir(), check_name(name))
    return domxml.DomainPaths(dir=d, serial_socket=os.path.join(d, "serial.sock"),
                              serial_log=os.path.join(hv_dir(), "log", name + ".serial.log"),
                              runtime=os.path.join(d, "runtime.json"))


def node_uri() -> str:
    return os.environ.get(URI_ENV) or hvp.HV_PARAMS["libvirt"]["uri"].default


def effective_uri(params: dict[str, Any]) -> str:
    """The hvparam ``uri``; the node's $CORRAL_LIBVIRT_URI replaces the default only.

    The hvparam is cluster-wide, but a node of a vcluster reaches its own
    libvirtd through a node-specific socket: the node daemon's environment
    says which, without overriding an explicitly chosen URI.
    """
    uri = params.get("uri") or ""
    if not uri or uri == hvp.HV_PARAMS["libvirt"]["uri"].default:
        return node_uri()
    return str(uri)


def load_runtime(name: str) -> dict[str, Any] | None:
    try:
        return serializer.loads(io.read_file(paths_for(name).runtime))
    except FileNotFoundError:
        return None
    except ValueError as err:
        raise errors.HypervisorError("Corrupt libvirt runtime file of %s: %s" % (name, err))


def save_runtime(name: str, data: dict[str, Any]) -> None:
    paths = paths_for(name)
    os.makedirs(paths.dir, mode=0o700, exist_ok=True)
    io.write_file_atomic(paths.runtime, serializer.dumps(data, pretty=True), mode=0o600)


def kvm_usable() -> bool:
    """Whether auto domain_type may use KVM (same rule as the kvm driver, PLATFORM.md)."""
    if os.path.exists("/sys/module/kvm_pvm"):
        return False
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError:
        return False
    return True


def socket_served(path: str) -> bool:
    """Whether something listens on the unix socket ``path`` (a migrated QEMU)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(2)
        sock.connect(path)
        return True
    except OSError:
        return False
    finally:
        sock.close()


def remove_runtime_dir(name: str) -> None:
    """Remove the runtime dir unless a serial socket in it is still served.

    On one machine (vcluster) a domain migrated to another node has its
    socket in the source's dir (see migration); removing it would cut that
    node's console.
    """
    paths = paths_for(name)
    try:
        socks = [os.path.join(paths.dir, e) for e in os.listdir(paths.dir)
                 if e.endswith(".sock")]
    except FileNotFoundError:
        return
    if any(socket_served(sock) for sock in socks):
        io.remove_file(paths.runtime)
        return
    shutil.rmtree(paths.dir, ignore_errors=True)


def remove_foreign_socket_dir(name: str, sock: str | None) -> None:
    """Remove the other node's runtime dir that held our domain's serial socket.

    Only on one machine (vcluster): a domain migrated in kept its socket in
    the source node's dir of the same name (see migration.dest_xml), which
    the source could not remove while the socket was served.  Once the
    domain is gone, that dir goes too if nothing else in it is served.
    """
    if not sock:
        return
    directory = os.path.dirname(sock)
    if directory == paths_for(name).dir or os.path.basename(directory) != name:
        return
    try:
        entries = [os.path.join(directory, e) for e in os.listdir(directory)]
    except FileNotFoundError:
        return
    if any(e.endswith(".sock") and socket_served(e) for e in entries) or \
            any(not e.endswith(".sock") for e in entries):
        return
    shutil.rmtree(directory, ignore_errors=True)


class LibvirtHypervisor(LibvirtMigrationMixin, base.BaseHypervisor):
    """Domains through libvirt-python; qemu:///system by default."""

    NAME = "libvirt"
    CAN_MIGRATE = True
    CAN_BALLOON = True

    # --- helpers -------------------------------------------------------------
    @staticmethod
    def _uri_of(name: str) -> str:
        saved = load_runtime(name)
        return str(saved["uri"]) if saved and saved.get("uri") else node_uri()

    @staticmethod
    def _node_uris() -> list[str]:
        uris = [node_uri()]
        try:
            names = os.listdir(hv_dir())
        except FileNotFoundError:
            names = []
        for name in names:
            if name == "log" or name.startswith("."):
                continue
            try:
                saved = load_runtime(name)
            except errors.HypervisorError:
                continue
            if saved and saved.get("uri") and saved["uri"] not in uris:
                uris.append(saved["uri"])
        return uris

    @staticmethod
    def _vnc_listen(params: dict[str, Any]) -> str | None:
        return common.vnc_bind_ip(params)

    def build_xml(self, inst: base.InstanceSpec, disks: list[base.DiskSpec]) -> str:
        """Domain XML for this node (resolves domain type and VNC address)."""
        uri = effective_uri(inst.hvparams)
        dtype = domxml.resolve_domain_type(inst.hvparams, uri, kvm_usable())
        paths = paths_for(inst.name)
        if len(paths.serial_socket.encode()) > UNIX_PATH_MAX:
            raise errors.HypervisorError("Serial socket path %s is longer than %d bytes: use a "
                                         "shorter CORRAL_ROOT or instance name" %
                                         (paths.serial_socket, UNIX_PATH_MAX))
        return domxml.build_domain_xml(inst, disks, dtype, paths,
                                       self._vnc_listen(inst.hvparams))

    @staticmethod
    def _owned(dom: Any) -> bool:
        try:
            return domxml.is_corral_domain(dom.XMLDesc(0))
        except Exception:  # noqa: BLE001 - libvirtError: domain vanished
            return False

    def _undefine(self, dom: Any) -> None:
        lv = lvc.libvirt_module()
        try:
            if dom.isPersistent():
                dom.undefine()
        except lv.libvirtError as err:
            if err.get_error_code() != lv.VIR_ERR_NO_DOMAIN:
                raise errors.HypervisorError("Cannot undefine %s: %s" % (dom.name(), err))

    # --- lifecycle -------------------------------------------------------------
    def start_instance(self, inst: base.InstanceSpec, block_devices: list[base.DiskSpec],
                       startup_paused: bool = False) -> None:
        self.check_parameters(inst.hvparams)
        uri = effective_uri(inst.hvparams)
        conn = lvc.connect(uri)           # unreachable libvirt: nothing created yet
        with _lock(check_name(inst.name)):
            old = lvc.lookup(conn, inst.name)
            if old is not None and lvc.is_active(old):
                raise errors.HypervisorError("Instance %s is already running" % inst.name)
            if old is not None and not self._owned(old):
                raise errors.HypervisorError("A libvirt domain named %s exists at %s and is "
                                             "not managed by Corral" % (inst.name, uri))
            for disk in block_devices:
                if not os.path.exists(disk.path):
                    raise errors.HypervisorError("Disk %s of %s does not exist" %
                                                 (disk.path, inst.name))
            xml = self.build_xml(inst, block_devices)
            self._define_and_start(conn, uri, inst, block_devices, xml, startup_paused)

    def _define_and_start(self, conn: Any, uri: str, inst: base.InstanceSpec,
                          disks: list[base.DiskSpec], xml: str, paused: bool) -> None:
        """defineXML + create; on failure the definition and runtime dir are removed."""
        lv = lvc.libvirt_module()
        paths = paths_for(inst.name)
        os.makedirs(os.path.dirname(paths.serial_log), mode=0o750, exist_ok=True)
        save_runtime(inst.name, {"uri": uri, "spec": inst.to_dict(),
                                 "disks": [d.to_dict() for d in disks]})
        dom = None
        try:
            dom = conn.defineXML(xml)
            self._create(dom, paused)
        except lv.libvirtError as err:
            if dom is not None:
                self._undefine(dom)
            shutil.rmtree(paths.dir, ignore_errors=True)
            raise errors.HypervisorError("Cannot start %s through libvirt (%s): %s" %
                                         (inst.name, uri, err.get_error_message() or err))

    @staticmethod
    def _create(dom: Any, paused: bool) -> None:
        """Start ``dom``; paused via START_PAUSED, or create+suspend where unsupported."""
        lv = lvc.libvirt_module()
        if not paused:
            dom.create()
            return
        try:
            dom.createWithFlags(lv.VIR_DOMAIN_START_PAUSED)
        except lv.libvirtError as err:
            if err.get_error_code() not in (lv.VIR_ERR_INVALID_ARG, lv.VIR_ERR_NO_SUPPORT):
                raise
            dom.create()
            dom.suspend()

    def stop_instance(self, name: str, force: bool = False, timeout: int = 120) -> None:
        """Idempotent: ACPI shutdown, destroy after ``timeout``, undefine, clean up."""
        with _lock(check_name(name)):
            conn = lvc.connect(self._uri_of(name))
            dom = lvc.lookup(conn, name)
            sock = None
            if dom is not None:
                sock = self._live_serial_socket(name)
                if lvc.is_active(dom):
                    self._halt(conn, dom, force, timeout)
                if self._owned(dom):
                    self._undefine(dom)
            remove_runtime_dir(name)
            remove_foreign_socket_dir(name, sock)

    @staticmethod
    def _halt(conn: Any, dom: Any, force: bool, timeout: float) -> None:
        """ACPI shutdown unless ``force``, destroy after ``timeout``.

        A power button press while the guest is still booting (before its
        ACPI daemon runs) is lost, so it is pressed again every
        POWERDOWN_REPEAT seconds; each wait ends at the STOPPED event.
        """
        lv = lvc.libvirt_module()
        deadline = time.monotonic() + timeout
        while not force:
            try:
                dom.shutdown()
            except lv.libvirtError:
                break   # guest without ACPI, or it stopped meanwhile: destroy below
            remaining = deadline - time.monotonic()
            if lvc.wait_stopped(conn, dom, min(POWERDOWN_REPEAT, max(remaining, 0))) or \
                    remaining <= POWERDOWN_REPEAT:
                break
        if lvc.is_active(dom):
            try:
                dom.destroy()
            except lv.libvirtError as err:
                if lvc.is_active(dom):
                    raise errors.HypervisorError("Cannot destroy %s: %s" % (dom.name(), err))

    def reboot_instance(self, inst: base.InstanceSpec, block_devices: list[base.DiskSpec],
                        reboot_type: str = "soft", timeout: int = 120) -> None:
        """soft: clean shutdown (destroy after timeout) then start; hard: destroy, start."""
        lv = lvc.libvirt_module()
        with _lock(check_name(inst.name)):
            conn = lvc.connect(self._uri_of(inst.name))
            dom = lvc.lookup(conn, inst.name)
            if dom is None or not lvc.is_active(dom):
                raise errors.HypervisorError("Instance %s is not running" % inst.name)
            self._halt(conn, dom, reboot_type != "soft", timeout)
            try:
                dom.create()
            except lv.libvirtError as err:
                raise errors.HypervisorError("Cannot restart %s: %s" % (inst.name, err))

    def cleanup_instance(self, name: str) -> None:
        with _lock(check_name(name)):
            conn = lvc.connect(self._uri_of(name))
            dom = lvc.lookup(conn, name)
            if dom is not None and lvc.is_active(dom):
                raise errors.HypervisorError("Instance %s is still running" % name)
            sock = self._live_serial_socket(name) if dom is not None else None
            if dom is not None and self._owned(dom):
                self._undefine(dom)
            remove_runtime_dir(name)
            remove_foreign_socket_dir(name, sock)

    # --- queries ---------------------------------------------------------------
    def list_instances(self) -> list[str]:
        lv = lvc.libvirt_module()
        names: set[str] = set()
        for uri in self._node_uris():
            conn = lvc.connect(uri)
            try:
                doms = conn.listAllDomains(lv.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
            except lv.libvirtError as err:
                raise errors.HypervisorError("Cannot list domains at %s: %s" % (uri, err))
            names.update(d.name() for d in doms)
        return sorted(names)

    def get_instance_info(self, name: str) -> dict[str, Any] | None:
        lv = lvc.libvirt_module()
        conn = lvc.connect(self._uri_of(check_name(name)))
        dom = lvc.lookup(conn, name)
        if dom is None:
            return None
        try:
            state, _maxmem, mem_kib, vcpus, cpu_ns = dom.info()
        except lv.libvirtError:
            return None
        if state == lv.VIR_DOMAIN_SHUTOFF:
            return None
        if state in (lv.VIR_DOMAIN_PAUSED, lv.VIR_DOMAIN_PMSUSPENDED):
            st = base.STATE_PAUSED
        elif state in (lv.VIR_DOMAIN_SHUTDOWN, lv.VIR_DOMAIN_CRASHED):
            st = base.STATE_SHUTDOWN
        else:
            st = base.STATE_RUNNING
        return {"name": name, "state": st, "memory": int(mem_kib) >> 10, "vcpus": int(vcpus),
                "time": round(cpu_ns / 1e9, 2)}

    def get_node_info(self) -> dict[str, Any]:
        """Memory/CPUs from the node's libvirt; zero memory and ``hv_error`` if unreachable."""
        uri = node_uri()
        try:
            lv = lvc.libvirt_module()
        except errors.HypervisorError as err:
            return {"memory_total": 0, "memory_free": 0, "memory_dom0": 0,
                    "cpu_total": os.cpu_count() or 1, "hv_version": [], "hv_error": str(err)}
        try:
            conn = lvc.connect(uri)
            _model, mem_mib, cpus, _mhz, nodes, sockets, _cores, _threads = conn.getInfo()
            free = int(conn.getFreeMemory()) >> 20
            ver = int(conn.getVersion())
            lib = int(conn.getLibVersion())
            used = sum(int(d.info()[2]) >> 10 for d in
                       conn.listAllDomains(lv.VIR_CONNECT_LIST_DOMAINS_ACTIVE))
        except (errors.HypervisorError, lv.libvirtError) as err:
            return {"memory_total": 0, "memory_free": 0, "memory_dom0": 0,
                    "cpu_total": os.cpu_count() or 1, "hv_version": [],
                    "hv_error": str(err)}
        return {"memory_total": int(mem_mib), "memory_free": free,
                "memory_dom0": max(int(mem_mib) - free - used, 0), "cpu_total": int(cpus),
                "cpu_nodes": int(nodes), "cpu_sockets": int(sockets) * int(nodes),
                "hv_version": [ver // 1000000, ver // 1000 % 1000, ver % 1000],
                "libvirt_version": [lib // 1000000, lib // 1000 % 1000, lib % 1000],
                "uri": uri}

    def verify(self) -> str | None:
        try:
            conn = lvc.connect(node_uri())
            conn.getCapabilities()
        except errors.HypervisorError as err:
            return str(err)
        except Exception as err:  # noqa: BLE001 - libvirtError, reported as the problem
            return "libvirt at %s does not answer: %s" % (node_uri(), err)
        directory = hv_dir()
        if os.path.exists(directory) and not os.access(directory, os.W_OK):
            return "libvirt runtime directory %s is not writable" % directory
        return None

    def validate_parameters(self, hvparams: dict[str, Any]) -> None:
        """Syntax, files exist, and the URI connects (clear error otherwise)."""
        self.check_parameters(hvparams)
        for key in ("kernel_path", "initrd_path", "cdrom_image_path"):
            if hvparams.get(key) and not os.path.isfile(hvparams[key]):
                raise errors.HypervisorError("Parameter '%s': file %s does not exist" %
                                             (key, hvparams[key]))
        if "uri" in hvparams:
            lvc.connect(effective_uri(hvparams))
        if hvparams.get("vnc_bind_address"):
            self._vnc_listen(hvparams)

    def get_console(self, inst: base.InstanceSpec, node_name: str = "",
                    ssh_port: int = 22) -> dict[str, Any]:
        host = node_name or socket.gethostname()
        params = inst.hvparams
        if params.get("serial_console", True):
            path = self._live_serial_socket(inst.name) or paths_for(inst.name).serial_socket
            return {"instance": inst.name, "kind": "ssh", "host": host, "port": ssh_port,
                    "user": "root", "socket": path,
                    "command": [SOCAT, "STDIO,raw,echo=0,escape=0x1d", "UNIX-CONNECT:%s" % path]}
        if params.get("vnc_bind_address") and inst.network_port:
            return {"instance": inst.name, "kind": "vnc", "host": host,
                    "port": inst.network_port, "display": inst.network_port - 5900}
        return {"instance": inst.name, "kind": "msg",
                "message": "No serial console or VNC configured for %s" % inst.name}

    def _live_serial_socket(self, name: str) -> str | None:
        """The socket path in the live XML (after a migration it may be the source's)."""
        try:
            dom = lvc.lookup(lvc.connect(self._uri_of(name)), name)
            return domxml.serial_socket_of(dom.XMLDesc(0)) if dom is not None else None
        except Exception:  # noqa: BLE001 - libvirt unreachable: fall back to our path
            return None

    def balloon_instance_memory(self, inst: base.InstanceSpec, mem_mib: int) -> None:
        lv = lvc.libvirt_module()
        dom = lvc.lookup(lvc.connect(self._uri_of(inst.name)), inst.name)
        if dom is None or not lvc.is_active(dom):
            raise errors.HypervisorError("Instance %s is not running" % inst.name)
        try:
            dom.setMemoryFlags(int(mem_mib) << 10, lv.VIR_DOMAIN_AFFECT_LIVE)
        except lv.libvirtError as err:
            raise errors.HypervisorError("Cannot balloon %s: %s" % (inst.name, err))
