"""A Xen dom0 nested under QEMU TCG, with this machine's Corral inside it.

``prepare()`` fills a cache (``$CORRAL_XEN_CACHE``, else
``<repo>/.cache/xen-nested``) with what PLATFORM.md §5 found to work:
Debian's Xen 4.17 hypervisor (xen.gz unpacked to an ELF that QEMU's
``-kernel`` loads as multiboot), the *generic* Debian kernel (dom0 needs
CONFIG_XEN_DOM0; the same kernel boots the PV domU), the xl userland unpacked
with ``dpkg -x`` (never installed on the host: the package would pull udev and
systemd), a dom0 initramfs and a domU initramfs.  Everything comes from
``apt-get download``; an interrupted run leaves no half-built cache (the
``stamp`` file is written last).

Dom0 has no disk.  Its root is an overlay: the host's ``/`` exported
read-only over virtio-9p is the lower layer, a tmpfs the upper one, and the
xl userland tree is copied on top.  So dom0 runs the host's Python, venv and
Corral checkout at their usual paths without building a root filesystem, and
nothing it writes reaches the host except in the work directory, a second
(read-write) 9p export mounted at ``/xen-work``.  Dom0's init starts
xenstored, xen-init-dom0 and xenconsoled (guest consoles logged to
``<workdir>/console/guest-<name>.log``, readable from the host while they
run), runs ``/xen-work/scenario.sh``, prints ``XEN-NESTED-DONE rc=<code>`` on the console and powers off.

:class:`NestedXen` boots it and watches the serial console (a pipe read by a
thread; waiters are woken by a Condition, no polling); ``stop()`` always
kills QEMU.  ``run_scenario`` is the one-call form used by ``tools/xen-nested
run`` and the end-to-end test.
"""

import argparse
import gzip
import hashlib
import importlib.machinery
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from types import ModuleType

XEN_VERSION = "4.17"
KERNEL_META = "linux-image-amd64"
# The xl toolstack and the libraries it links against (PLATFORM.md §5); the
# rest of its dependencies (libc, ncurses, zlib...) come from the host's /usr.
USERLAND_PACKAGES = ("xen-utils-%s" % XEN_VERSION, "xen-utils-common", "xenstore-utils",
                     "libxencall1", "libxenevtchn1", "libxenforeignmemory1", "libxengnttab1",
                     "libxenmisc%s" % XEN_VERSION, "libxenstore4", "libxentoollog1",
                     "libxendevicemodel1", "libxentoolcore1", "libxenhypfs1", "libyajl2")
HYPERVISOR_PACKAGE = "xen-hypervisor-%s-amd64" % XEN_VERSION
# Dom0 stage 1 needs virtio-pci + 9p + overlay to reach its root; the xen
# device modules serve the toolstack.  Dependencies are added from the .ko
# files themselves (guest-image's resolver).
DOM0_MODULES = ("virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev",
                "virtio_pci", "netfs", "9pnet", "9pnet_virtio", "9p", "overlay",
                "xenfs", "xen_privcmd", "xen_evtchn", "xen_gntdev", "xen_gntalloc")
FORMAT_VERSION = "1"
DONE_RE = re.compile(r"XEN-NESTED-DONE rc=(\d+)")
XEN_ARGS = "console=com1 com1=115200,8n1 dom0_mem={mem}M,max:{mem}M dom0_max_vcpus={cpus} " \
    "loglvl=warning guest_loglvl=warning bootscrub=false"
DOM0_ARGS = "console=hvc0 quiet xn_tree={tree}"

STAGE1 = r"""#!/bin/sh
# xen-nested dom0 stage 1: reach the overlay root, then hand over to stage 2.
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /lib/modules/load.order); do
    insmod /lib/modules/$m.ko || echo "xen-nested: insmod $m failed"
done
mkdir -p /lower /rw /newroot
opts=trans=virtio,version=9p2000.L,msize=262144,cache=loose
if ! mount -t 9p -o ro,$opts hostroot /lower; then
    echo "xen-nested: cannot mount the host's root over 9p"; exec sh
fi
mount -t tmpfs -o mode=755 rw /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot
cp /stage2 /newroot/xen-nested-init
chmod 755 /newroot/xen-nested-init
mkdir -p /newroot/xen-work
mount -t 9p -o $opts work /newroot/xen-work
for d in dev proc sys; do mount --move /$d /newroot/$d || echo "xen-nested: cannot move /$d"; done
exec switch_root /newroot /xen-nested-init
"""

STAGE2 = r"""#!/bin/sh
# xen-nested dom0 stage 2 (PID 1 on the overlay root): Xen daemons, scenario, poweroff.
export PATH=/usr/lib/xen-4.17/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8
log() { echo "xen-nested: $*" > /dev/hvc0; }
mount -t tmpfs -o mode=755 run /run
mount -t tmpfs -o mode=1777 tmp /tmp
mkdir -p /dev/pts
mount -t devpts -o ptmxmode=666,gid=5,mode=620 devpts /dev/pts
mount -t xenfs xenfs /proc/xen
tree=/nonexistent
for arg in $(cat /proc/cmdline); do
    case "$arg" in xn_tree=*) tree="${arg#xn_tree=}" ;; esac
done
log "stage2 uptime=$(cut -d' ' -f1 /proc/uptime)"
cp -a "$tree"/. /
mkdir -p /run/xen /var/lib/xen /var/log/xen/console /run/xenstored
hostname localhost
ip link set lo up
xenstored --pid-file=/run/xenstored.pid
i=0
while ! xenstore-read -s / >/dev/null 2>&1; do
    i=$((i+1)); [ $i -gt 600 ] && break; sleep 0.1
done
xen-init-dom0 || log "xen-init-dom0 failed"
mkdir -p /xen-work/console
xenconsoled --pid-file=/run/xenconsoled.pid --log=guest --log-dir=/xen-work/console
log "DOM0-UP $(cat /sys/hypervisor/type 2>/dev/null) uptime=$(cut -d' ' -f1 /proc/uptime)"
cd /xen-work
rc=127
if [ -f /xen-work/scenario.sh ]; then
    /bin/sh /xen-work/scenario.sh > /xen-work/scenario.log 2>&1
    rc=$?
fi
cp -a /var/log/xen /xen-work/xen-logs 2>/dev/null
sync
log "uptime=$(cut -d' ' -f1 /proc/uptime)"
echo "XEN-NESTED-DONE rc=$rc" > /dev/hvc0
poweroff -f
"""

GUEST_INIT = r"""#!/bin/sh
# PV domU of the xen-nested test: a console marker, then ticks.
export PATH=/bin:/sbin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "CORRAL-GUEST-UP $(cat /sys/hypervisor/type 2>/dev/null)"
n=0
while true; do
    n=$((n+1)); echo "tick $n"; sleep 2
done
"""

# The kernel's Xen shutdown watcher runs /sbin/poweroff when xl asks the
# domain to shut down (xl shutdown); busybox's poweroff would signal PID 1,
# which is the script above, so power off directly.
GUEST_POWEROFF = r"""#!/bin/sh
echo "CORRAL-GUEST-DOWN" > /dev/console
exec /bin/busybox poweroff -f
"""


@dataclass(frozen=True)
class Artifacts:
    """Paths of a prepared cache (all absolute)."""

    cache: str
    xen: str           # ELF multiboot image (QEMU -kernel)
    kernel: str        # generic Debian kernel: dom0 and PV domU
    dom0_initrd: str
    guest_initrd: str  # domU: prints CORRAL-GUEST-UP and ticks on hvc0
    tree: str          # dpkg -x of the xl userland (copied over dom0's root)


class XenNestedError(Exception):
    """Preparation or boot failed; the message says which command and why."""


def repo_dir() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def default_cache() -> str:
    return os.environ.get("CORRAL_XEN_CACHE") or os.path.join(repo_dir(), ".cache",
                                                              "xen-nested")


def _guest_image() -> ModuleType:
    """tools/guest-image as a module: its cpio writer and module resolver are reused."""
    path = os.path.join(repo_dir(), "tools", "guest-image")
    loader = importlib.machinery.SourceFileLoader("corral_guest_image", path)
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _run(argv: list[str], cwd: str | None = None) -> str:
    res = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise XenNestedError("'%s' failed (%d): %s" % (" ".join(argv), res.returncode,
                                                       res.stderr.strip()[-2000:]))
    return res.stdout


def _resolve_kernel_package() -> str:
    for line in _run(["apt-cache", "depends", KERNEL_META]).splitlines():
        m = re.match(r"\s*Depends:\s*(linux-image-\S+)", line)
        if m:
            return m.group(1)
    raise XenNestedError("cannot resolve %s (run apt-get update?)" % KERNEL_META)


def _download(tmp: str, packages: list[str], into: str) -> None:
    """apt-get download the packages into ``tmp`` and dpkg -x them all into ``into``."""
    debdir = os.path.join(tmp, "debs-" + os.path.basename(into))
    os.makedirs(debdir)
    os.chmod(debdir, 0o777)  # apt-get download runs as _apt where it can
    _run(["apt-get", "download", "-q"] + packages, cwd=debdir)
    for deb in sorted(os.listdir(debdir)):
        if deb.endswith(".deb"):
            _run(["dpkg", "-x", os.path.join(debdir, deb), into])


def _module_order(gi: ModuleType, modules: dict[str, str]) -> list[str]:
    """DOM0_MODULES plus their dependencies, dependencies first."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        if name not in modules:
            raise XenNestedError("module %s not in the kernel package" % name)
        for dep in gi.module_deps(modules[name]):
            visit(dep)
        order.append(name)

    for name in DOM0_MODULES:
        visit(name)
    return order


def _build_dom0_initrd(gi: ModuleType, moddir: str) -> bytes:
    with open(os.path.join(moddir, "load.order")) as fh:
        order = fh.read().split()
    arc = gi.Cpio()
    for d in ("bin", "dev", "proc", "sys", "lib", "lib/modules"):
        arc.directory(d)
    arc.chardev("dev/console", 5, 1)
    with open(gi.busybox_path(), "rb") as fh:
        arc.file("bin/busybox", fh.read(), 0o755)
    arc.symlink("bin/sh", "busybox")
    arc.file("init", STAGE1.encode(), 0o755)
    arc.file("stage2", STAGE2.encode(), 0o755)
    for name in order + ["load.order"]:
        target = name if name == "load.order" else name + ".ko"
        with open(os.path.join(moddir, target), "rb") as fh:
            arc.file("lib/modules/" + target, fh.read())
    return gzip.compress(arc.finish(), 6)


def _build_guest_initrd(gi: ModuleType) -> bytes:
    arc = gi.Cpio()
    for d in ("bin", "sbin", "dev", "proc", "sys"):
        arc.directory(d)
    arc.chardev("dev/console", 5, 1)
    with open(gi.busybox_path(), "rb") as fh:
        arc.file("bin/busybox", fh.read(), 0o755)
    arc.symlink("bin/sh", "busybox")
    arc.file("init", GUEST_INIT.encode(), 0o755)
    arc.file("sbin/poweroff", GUEST_POWEROFF.encode(), 0o755)
    return gzip.compress(arc.finish(), 6)


def _artifacts(cache: str) -> Artifacts:
    return Artifacts(cache=cache, xen=os.path.join(cache, "xen.elf"),
                     kernel=os.path.join(cache, "vmlinuz"),
                     dom0_initrd=os.path.join(cache, "dom0-initrd.gz"),
                     guest_initrd=os.path.join(cache, "guest-initrd.gz"),
                     tree=os.path.join(cache, "userland"))


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _stamp_ok(path: str, value: str) -> bool:
    try:
        with open(path) as fh:
            return fh.read().strip() == value
    except OSError:
        return False


def _fetch(art: Artifacts, gi: ModuleType) -> None:
    """Downloads: xen.elf, vmlinuz, the xl userland tree and dom0's modules."""
    with tempfile.TemporaryDirectory(prefix=".build-", dir=art.cache) as tmp:
        os.chmod(tmp, 0o755)
        hv, kern, userland = (os.path.join(tmp, d) for d in ("hv", "kern", "userland"))
        _download(tmp, [HYPERVISOR_PACKAGE], hv)
        _download(tmp, [_resolve_kernel_package()], kern)
        _download(tmp, list(USERLAND_PACKAGES), userland)
        shutil.rmtree(os.path.join(userland, "usr", "share"), ignore_errors=True)
        with gzip.open(os.path.join(hv, "boot", "xen-%s-amd64.gz" % XEN_VERSION)) as fh:
            _publish(art.xen, fh.read())
        vmlinuz = [f for f in os.listdir(os.path.join(kern, "boot")) if f.startswith("vmlinuz-")]
        if not vmlinuz:
            raise XenNestedError("no vmlinuz in the kernel package")
        with open(os.path.join(kern, "boot", vmlinuz[0]), "rb") as fh:
            _publish(art.kernel, fh.read())
        modules = gi.find_modules(kern)
        order = _module_order(gi, modules)
        moddir = os.path.join(tmp, "modules")
        os.makedirs(moddir)
        for name in order:
            shutil.copyfile(modules[name], os.path.join(moddir, name + ".ko"))
        with open(os.path.join(moddir, "load.order"), "w") as fh:
            fh.write("\n".join(order) + "\n")
        for src, dst in ((userland, art.tree), (moddir, os.path.join(art.cache, "modules"))):
            shutil.rmtree(dst, ignore_errors=True)
            os.rename(src, dst)


def prepare(cache: str | None = None) -> Artifacts:
    """Download and build what is missing or outdated; idempotent.

    Two stamps hold fingerprints of what produced the files: the package and
    module lists (downloads) and the init scripts (both initramfs images, which
    are rebuilt from the cached modules when a script changes).  Files are
    built aside and renamed into place, the stamp last, so an interrupted run
    is simply redone.
    """
    art = _artifacts(os.path.abspath(cache or default_cache()))
    fetched = _fingerprint(FORMAT_VERSION, HYPERVISOR_PACKAGE, KERNEL_META,
                           USERLAND_PACKAGES, DOM0_MODULES)
    built = _fingerprint(fetched, STAGE1, STAGE2, GUEST_INIT, GUEST_POWEROFF)
    fetch_stamp = os.path.join(art.cache, "downloads.stamp")
    build_stamp = os.path.join(art.cache, "initrd.stamp")
    if _stamp_ok(fetch_stamp, fetched) and _stamp_ok(build_stamp, built):
        return art
    os.makedirs(art.cache, exist_ok=True)
    gi = _guest_image()
    if not _stamp_ok(fetch_stamp, fetched):
        _remove(build_stamp)
        _fetch(art, gi)
        _publish(fetch_stamp, (fetched + "\n").encode())
    _publish(art.dom0_initrd, _build_dom0_initrd(gi, os.path.join(art.cache, "modules")))
    _publish(art.guest_initrd, _build_guest_initrd(gi))
    _publish(build_stamp, (built + "\n").encode())
    return art


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _publish(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


class NestedXen:
    """One QEMU running Xen + dom0; the serial console is collected in ``console_log``.

    Use as a context manager: leaving it kills QEMU whatever happened.
    """

    def __init__(self, art: Artifacts, workdir: str, memory_mib: int = 2048,
                 dom0_mib: int = 1280, cpus: int = 2, cpu_model: str = "qemu64",
                 xen_extra: str = "") -> None:
        self.art = art
        self.cpu_model, self.xen_extra = cpu_model, xen_extra
        self.workdir = os.path.abspath(workdir)
        self.memory_mib, self.dom0_mib, self.cpus = memory_mib, dom0_mib, cpus
        self.console_log = os.path.join(self.workdir, "console.log")
        self.proc: subprocess.Popen | None = None
        self._text = ""
        self._eof = False
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None

    def argv(self) -> list[str]:
        xen_args = XEN_ARGS.format(mem=self.dom0_mib, cpus=self.cpus)
        if self.xen_extra:
            xen_args += " " + self.xen_extra
        # QEMU splits -initrd (multiboot modules) and -fsdev at commas, the
        # kernel command line at blanks: such paths cannot be passed.
        for path in (self.workdir, self.art.cache):
            if re.search(r"[,\s]", path):
                raise XenNestedError("path %r has a comma or a blank" % path)
        modules = "%s %s,%s" % (self.art.kernel, DOM0_ARGS.format(tree=self.art.tree),
                                self.art.dom0_initrd)
        fs = "-fsdev"
        return ["qemu-system-x86_64", "-name", "xen-nested", "-accel", "tcg",
                "-cpu", self.cpu_model, "-M", "pc", "-m", str(self.memory_mib),
                "-smp", str(self.cpus),
                "-display", "none", "-vga", "none", "-nodefaults", "-no-reboot",
                "-kernel", self.art.xen, "-append", xen_args, "-initrd", modules,
                fs, "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
                "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
                fs, "local,id=work,path=%s,security_model=none" % self.workdir,
                "-device", "virtio-9p-pci,fsdev=work,mount_tag=work",
                "-serial", "stdio"]

    def start(self) -> None:
        os.makedirs(self.workdir, exist_ok=True)
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True,
                                        name="xen-nested-console")
        self._reader.start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with open(self.console_log, "ab") as log:
            for chunk in iter(lambda: self.proc.stdout.read1(65536), b""):  # type: ignore
                log.write(chunk)
                log.flush()
                with self._cond:
                    self._text += chunk.decode("utf-8", "replace")
                    self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    @property
    def text(self) -> str:
        with self._cond:
            return self._text

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        """The first match of ``pattern`` on the console; XenNestedError on timeout/exit."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                m = regex.search(self._text)
                if m:
                    return m
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    why = "QEMU exited" if self._eof else "timeout (%.0f s)" % timeout
                    raise XenNestedError("%s before %r; console tail:\n%s" %
                                         (why, pattern, self._text[-3000:]))
                self._cond.wait(remaining)

    def stop(self) -> None:
        """Kill QEMU (its whole session) and wait for it; idempotent."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
        self.proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=10)

    def __enter__(self) -> "NestedXen":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_scenario(art: Artifacts, script: str, workdir: str, timeout: float = 600,
                 **vm_args: object) -> tuple[int, str]:
    """Boot, run ``script`` (shell text) as /xen-work/scenario.sh in dom0, stop.

    Returns (exit code of the script, console text).  Its output is in
    ``<workdir>/scenario.log``, dom0's /var/log/xen in ``<workdir>/xen-logs``.
    QEMU is killed on every path.
    """
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "scenario.sh"), "w") as fh:
        fh.write(script)
    with NestedXen(art, workdir, **vm_args) as vm:  # type: ignore[arg-type]
        m = vm.wait_for(DONE_RE.pattern, timeout)
        return int(m.group(1)), vm.text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xen-nested", description="Xen 4.17 dom0 nested under QEMU TCG, running this "
        "machine's Corral checkout (PLATFORM.md §5).")
    parser.add_argument("--cache", default=None,
                        help="cache directory (default $CORRAL_XEN_CACHE or "
                        "<repo>/.cache/xen-nested)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare", help="download Xen, the kernel and xl with apt-get download "
                   "and build the initramfs images (idempotent); prints the paths")
    p = sub.add_parser("run", help="boot, run SCRIPT (sh) in dom0 as root with the work "
                       "directory at /xen-work, power off; exits with the script's code")
    p.add_argument("script", help="shell script to run in dom0")
    p.add_argument("--workdir", default=None,
                   help="read-write directory shared with dom0 (default: a new one in /tmp; "
                   "holds console.log, scenario.log and xen-logs/)")
    p.add_argument("--timeout", type=float, default=900, help="seconds (default 900)")
    p.add_argument("--memory", type=int, default=2048, help="QEMU memory in MiB")
    p.add_argument("--cpus", type=int, default=2, help="QEMU and dom0 vCPUs")
    p.add_argument("--cpu-model", default="qemu64", help="QEMU -cpu (default qemu64)")
    p.add_argument("--xen-args", default="", help="extra Xen command line arguments")
    return parser


def main(argv: list[str] | None = None) -> int:
    opts = _parser().parse_args(argv)
    try:
        art = prepare(opts.cache)
        if opts.command == "prepare":
            for path in (art.xen, art.kernel, art.dom0_initrd, art.guest_initrd, art.tree):
                print(path)
            return 0
        workdir = opts.workdir or tempfile.mkdtemp(prefix="xen-nested.", dir="/tmp")
        with open(opts.script) as fh:
            script = fh.read()
        print("workdir: %s" % workdir, file=sys.stderr)
        rc, _ = run_scenario(art, script, workdir, opts.timeout, memory_mib=opts.memory,
                             cpus=opts.cpus, cpu_model=opts.cpu_model,
                             xen_extra=opts.xen_args)
        return rc
    except XenNestedError as err:
        print("xen-nested: %s" % err, file=sys.stderr)
        return 1
