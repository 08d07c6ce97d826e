"""Mobility benchmarks for tools/bench (registered in bench.BENCHMARKS).

``migrate_fake``: a 3-node vcluster with the fake hypervisor; median wall time
of OP_INSTANCE_MIGRATE and OP_INSTANCE_FAILOVER jobs (submit to finalized),
back and forth between two nodes.

``migrate_kvm``: a 3-node kvm vcluster and the busybox guest on sharedfile
disks.  ``migrate_kvm_total_ms`` is the median job wall time of a live
migration, ``migrate_kvm_downtime_ms`` the downtime QEMU measured (from the
job log); ``migrate_qemu_raw_total_ms`` migrates the same guest (same kernel,
disk, NIC, memory, bandwidth and downtime limits) between the same node
namespaces with nothing but QEMU and QMP: from starting the target QEMU to
``completed``.  The ratio of the two is what Corral adds.
"""

import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from typing import Callable, Iterator

from corral import constants, luxi, opcodes
from corral.hypervisor.kvm import qmp
from corral.tools import vcluster as vc_api
from corral.utils.console import GuestConsole

Out = Callable[[str, float, str], None]


@contextlib.contextmanager
def _vcluster(hypervisor: str) -> Iterator[vc_api.VCluster]:
    base = tempfile.mkdtemp(prefix="bm", dir="/tmp")
    try:
        yield vc_api.create(base, nodes=3, hypervisor=hypervisor)
    finally:
        vc_api.destroy(base)


def _client(vc: vc_api.VCluster) -> luxi.Client:
    master = vc_api.current_master(vc)
    return luxi.Client(os.path.join(master.root, "var", "run", "corral", "socket",
                                    "master.sock"))


def _run_job(client: luxi.Client, op: opcodes.OpCode) -> tuple[float, list[str]]:
    """(wall ms from submit to finalized, log messages); RuntimeError if it failed."""
    start = time.perf_counter()
    job_id = client.submit_job([op.to_dict()])
    info, serial, log = None, None, []
    while True:
        change = client.wait_for_job_change(job_id, ["status"], info, serial)
        if change is None:
            continue
        for entry in change["log_entries"]:
            serial = max(serial or 0, entry[0])
            log.append(str(entry[3]))
        info = change["job_info"]
        if info[0] in constants.JOBS_FINALIZED:
            break
    elapsed = (time.perf_counter() - start) * 1000
    if info[0] != constants.JOB_STATUS_SUCCESS:
        result = client.query_jobs([job_id], ["opresult"])
        raise RuntimeError("job %s (%s) ended %s: %s" % (job_id, op.OP_ID, info[0], result))
    return elapsed, log


def _gnt(vc: vc_api.VCluster, *argv: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update(vc_api.env(vc.base))
    proc = subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError("%s failed: %s%s" % (" ".join(argv), proc.stdout, proc.stderr))
    return proc.stdout


def bench_migrate_fake(quick: bool, out: Out) -> None:
    """migrate_fake_median_ms, failover_fake_median_ms (3-node fake vcluster)."""
    with _vcluster("fake") as vc:
        name = "bench1.%s.test" % vc.vcname
        _gnt(vc, "gnt-instance", "add", "-t", "diskless", "-o", "noop", "-n", "node2",
             "--no-name-check", "--no-ip-check", "--no-nics", name)
        client = _client(vc)
        nodes = [vc.node("node2").name, vc.node("node3").name]
        count = 10 if quick else 30
        for opname, metric in ((opcodes.OpInstanceMigrate, "migrate_fake_median_ms"),
                               (opcodes.OpInstanceFailover, "failover_fake_median_ms")):
            samples = []
            for i in range(count + 2):
                ms, _log = _run_job(client, opname(instance_name=name,
                                                   target_node=nodes[(i + 1) % 2]))
                if i >= 2:  # the first jobs warm up connections and code paths
                    samples.append(ms)
            out(metric, statistics.median(samples), "ms")
        client.close()


# ---- kvm ---------------------------------------------------------------------------------

def _hv_dir(node: vc_api.Node) -> str:
    return os.path.join(node.root, "var", "run", "corral", "kvm-hypervisor")


def _wait_tick(sock: str, timeout: float = 240.0) -> None:
    with GuestConsole(sock) as con:
        con.wait_for(r"tick \d+", timeout)


def bench_migrate_kvm(quick: bool, out: Out) -> None:
    """migrate_kvm_total_ms, migrate_kvm_downtime_ms and migrate_qemu_raw_total_ms."""
    if not shutil.which("qemu-system-x86_64"):
        raise RuntimeError("qemu-system-x86_64 is not installed")
    count = 3 if quick else 5
    with _vcluster("kvm") as vc:
        name = "bench2.%s.test" % vc.vcname
        _gnt(vc, "gnt-instance", "add", "-t", "sharedfile", "-s", "64m", "-o", "busybox",
             "-n", "node2", "--net", "0:link=br0", "-B", "maxmem=128,minmem=128",
             "--no-name-check", "--no-ip-check", name)
        hosts = [vc.node("node2"), vc.node("node3")]
        _wait_tick(os.path.join(_hv_dir(hosts[0]), name, "serial.sock"))
        client = _client(vc)
        totals, downtimes = [], []
        for i in range(count):
            ms, log = _run_job(client, opcodes.OpInstanceMigrate(
                instance_name=name, target_node=hosts[(i + 1) % 2].name))
            totals.append(ms)
            found = [int(m.group(1)) for m in map(re.compile(r"downtime (\d+) ms").search, log)
                     if m]
            downtimes += found[-1:]
        client.close()
        out("migrate_kvm_total_ms", statistics.median(totals), "ms")
        out("migrate_kvm_downtime_ms", statistics.median(downtimes), "ms")
        at = hosts[count % 2]
        with open(os.path.join(_hv_dir(at), name, "runtime.json")) as fh:
            saved = json.load(fh)
        _gnt(vc, "gnt-instance", "shutdown", "--timeout", "0", name)
        raw = _RawPair(vc, saved, hosts)
        try:
            out("migrate_qemu_raw_total_ms", statistics.median(raw.run(count)), "ms")
        finally:
            raw.close()


class _RawPair:
    """The same guest migrated between two node namespaces by QEMU and QMP alone."""

    def __init__(self, vc: vc_api.VCluster, saved: dict, hosts: list[vc_api.Node]) -> None:
        self.vc, self.hosts = vc, hosts
        self.hvp = saved["spec"]["hvparams"]
        self.argv = list(saved["argv"])
        self.dir = tempfile.mkdtemp(prefix="raw", dir="/tmp")
        self.pids: dict[str, int] = {}
        for node in hosts:
            self._ip(node, "tuntap", "add", "dev", "rawtap0", "mode", "tap")
            self._ip(node, "link", "set", "rawtap0", "master", "br0", "up")

    def _ip(self, node: vc_api.Node, *args: str) -> None:
        subprocess.run(["ip", "-n", node.ns] + list(args), check=True, capture_output=True)

    def _argv(self, node: vc_api.Node, incoming: str | None) -> list[str]:
        out, skip = [], False
        d = os.path.join(self.dir, node.short)
        os.makedirs(d, exist_ok=True)
        for idx, arg in enumerate(self.argv):
            if skip:
                skip = False
                continue
            prev = self.argv[idx - 1] if idx else ""
            if prev == "-netdev":
                arg = re.sub(r"fd=\d+", "ifname=rawtap0,script=no,downscript=no", arg)
            elif prev == "-chardev" and "serial0" in arg:
                arg = "socket,id=serial0,path=%s/serial.sock,server=on,wait=off" % d
            elif prev == "-qmp":
                arg = "unix:%s/qmp.sock,server=on,wait=off" % d
            elif prev == "-pidfile":
                arg = "%s/pid" % d
            elif prev == "-name":
                arg = "raw-bench"
            elif arg in ("-incoming", "-S"):
                skip = arg == "-incoming"
                continue
            out.append(arg)
        if incoming:
            out[-1:-1] = ["-incoming", incoming]
        return ["ip", "netns", "exec", node.ns] + out

    def _start(self, node: vc_api.Node, incoming: str | None = None) -> None:
        subprocess.run(self._argv(node, incoming), check=True, capture_output=True, timeout=60)
        with open(os.path.join(self.dir, node.short, "pid")) as fh:
            self.pids[node.short] = int(fh.read())

    def _qmp(self, node: vc_api.Node) -> qmp.QmpClient:
        return qmp.QmpClient(os.path.join(self.dir, node.short, "qmp.sock"), timeout=60)

    def _kill(self, node: vc_api.Node) -> None:
        pid = self.pids.pop(node.short, 0)
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
            with contextlib.suppress(OSError):
                fd = os.pidfd_open(pid)
                import select
                select.select([fd], [], [], 10)
                os.close(fd)

    def run(self, count: int) -> list[float]:
        self._start(self.hosts[0])
        _wait_tick(os.path.join(self.dir, self.hosts[0].short, "serial.sock"))
        port = int(self.hvp.get("migration_port", 8102))
        samples = []
        for i in range(count):
            src, dst = self.hosts[i % 2], self.hosts[(i + 1) % 2]
            start = time.perf_counter()
            self._start(dst, "tcp:%s:%d" % (dst.ip, port))
            with self._qmp(src) as mon:
                mon.execute("migrate-set-parameters", {
                    "max-bandwidth": int(self.hvp.get("migration_bandwidth", 32)) << 20,
                    "downtime-limit": int(self.hvp.get("migration_downtime", 30))})
                mon.execute("migrate-set-capabilities",
                            {"capabilities": [{"capability": "events", "state": True}]})
                mon.execute("migrate", {"uri": "tcp:%s:%d" % (dst.ip, port)})
                while (mon.execute("query-migrate") or {}).get("status") not in (
                        "completed", "failed", "cancelled"):
                    mon.wait_event(frozenset(["MIGRATION"]), 60)
                status = mon.execute("query-migrate")["status"]
            samples.append((time.perf_counter() - start) * 1000)
            if status != "completed":
                raise RuntimeError("raw migration %s" % status)
            self._kill(src)
        return samples

    def close(self) -> None:
        for node in self.hosts:
            self._kill(node)
            subprocess.run(["ip", "-n", node.ns, "link", "del", "rawtap0"], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
