"""tools/bench: Corral's benchmarks, printed as ``metric value unit`` lines.

Each benchmark builds what it needs under a temporary CORRAL_ROOT (a one-node
cluster with the fake hypervisor unless it says otherwise), measures, and tears
everything down, also on failure.  Benchmarks are registered in ``BENCHMARKS``
in the order they run; ``--quick`` asks each for a shorter run of the same
metric.  Tests never assert on timing; this tool is where timing is measured.

``--nodes N`` (N > 1) runs the control-plane metrics on an N-node vcluster
(lib/tools/vcluster.py, fake hypervisor, every other node a master candidate,
so each job queue and config change is replicated to N-1 candidates before it
is acknowledged) instead of the one-node cluster, and prints them with an
``_<N>nodes`` suffix (``job_latency_median_ms_3nodes``, ...), so that one-node
and multi-node numbers never get mixed up in a results file.  It needs root
(network namespaces).
"""

import argparse
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Iterator

from corral import constants, luxi, opcodes

BIN_DIR = os.path.dirname(os.path.abspath(sys.executable))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BenchCluster:
    """A throwaway one-node cluster (fake hypervisor) on loopback."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.env = dict(os.environ, CORRAL_ROOT=root, CORRAL_HOSTNAME="localhost",
                        CORRAL_NODED_PORT=str(_free_port()),
                        CORRAL_RAPI_PORT=str(_free_port()),
                        PATH=BIN_DIR + ":" + os.environ.get("PATH", ""))

    def run(self, *argv: str) -> str:
        proc = subprocess.run(list(argv), env=self.env, capture_output=True, text=True,
                              timeout=600)
        if proc.returncode != 0:
            raise RuntimeError("%s failed: %s%s" % (" ".join(argv), proc.stdout, proc.stderr))
        return proc.stdout

    def client(self) -> luxi.Client:
        return luxi.Client(os.path.join(self.root, "var", "run", "corral", "socket",
                                        "master.sock"))

    def daemon_pids(self) -> list[int]:
        return _daemon_pids(self.root)


def _daemon_pids(root: str) -> list[int]:
    pids = []
    run = os.path.join(root, "var", "run", "corral")
    for name in sorted(os.listdir(run)):
        if name.endswith(".pid"):
            with open(os.path.join(run, name)) as fh:
                pids.append(int(fh.read().strip()))
    return pids


@contextlib.contextmanager
def multi_node_cluster(nodes: int) -> Iterator[tuple[luxi.Client, str]]:
    """(luxi client of the master, master's CORRAL_ROOT) of a throwaway N-node vcluster."""
    from corral.tools import vcluster
    if os.geteuid() != 0:
        raise RuntimeError("--nodes > 1 needs root (tools/vcluster uses network namespaces)")
    base = tempfile.mkdtemp(prefix="cbv", dir="/tmp")
    try:
        vc = vcluster.create(base, nodes=nodes)
        master = vcluster.current_master(vc)
        client = luxi.Client(os.path.join(master.root, "var", "run", "corral", "socket",
                                          "master.sock"))
        try:
            yield client, master.root
        finally:
            client.close()
    finally:
        vcluster.destroy(base)


@contextlib.contextmanager
def one_node_cluster(*init_args: str) -> Iterator[BenchCluster]:
    root = tempfile.mkdtemp(prefix="cb", dir="/tmp")
    cluster = BenchCluster(root)
    try:
        cluster.run("gnt-cluster", "init", "--enabled-hypervisors=fake",
                    "--enabled-disk-templates=diskless,file",
                    "--file-storage-dir=%s/srv/file" % root, *init_args, "localhost")
        yield cluster
    finally:
        subprocess.run(["corral-daemon-util", "stop-all"], env=cluster.env,
                       capture_output=True, timeout=120)
        _kill_leftovers(root)
        shutil.rmtree(root, ignore_errors=True)


def _kill_leftovers(root: str) -> None:
    """Kill processes (guests) whose command line mentions the throwaway root."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as fh:
                cmdline = fh.read()
        except OSError:
            continue
        if root.encode() + b"/" in cmdline:
            try:
                os.kill(int(pid), 9)
            except ProcessLookupError:
                pass


def wait_done(client: luxi.Client, job_id: int) -> str:
    info = None
    while True:
        change = client.wait_for_job_change(job_id, ["status"], info, None)
        if change is None:
            continue
        info = change["job_info"]
        if info[0] in constants.JOBS_FINALIZED:
            return info[0]


def _delay_op() -> dict:
    return opcodes.OpTestDelay(duration=0.001).to_dict()


def bench_control_plane(quick: bool, out: Callable[[str, float, str], None],
                        nodes: int = 1) -> None:
    """Job latency (median of 50), throughput (1000 jobs at once), daemon memory.

    With ``nodes`` > 1 on a vcluster, metric names get an ``_<N>nodes`` suffix.
    """
    if nodes <= 1:
        with one_node_cluster() as cluster:
            client = cluster.client()
            try:
                _measure_control_plane(client, quick, out, "")
                out("daemons_rss_total_mib",
                    sum(_rss_mib(p) for p in cluster.daemon_pids()), "MiB")
            finally:
                client.close()
        return
    suffix = "_%dnodes" % nodes
    with multi_node_cluster(nodes) as (client, root):
        _measure_control_plane(client, quick, out, suffix)
        out("daemons_rss_total_mib" + suffix, sum(_rss_mib(p) for p in _daemon_pids(root)),
            "MiB")


def _measure_control_plane(client: luxi.Client, quick: bool,
                           out: Callable[[str, float, str], None], suffix: str) -> None:
    for _ in range(5):  # warm up connections and code paths
        wait_done(client, client.submit_job([_delay_op()]))
    samples = []
    for _ in range(20 if quick else 50):
        start = time.perf_counter()
        job_id = client.submit_job([_delay_op()])
        wait_done(client, job_id)
        samples.append((time.perf_counter() - start) * 1000)
    out("job_latency_median_ms" + suffix, statistics.median(samples), "ms")
    count = 300 if quick else 1000
    start = time.perf_counter()
    results = client.submit_many_jobs([[_delay_op()] for _ in range(count)])
    ids = [job_id for ok, job_id in results if ok]
    failed = [s for s in (wait_done(client, j) for j in ids) if s != "success"]
    elapsed = time.perf_counter() - start
    if failed or len(ids) != count:
        raise RuntimeError("throughput run: %d jobs not successful" % (count - len(ids)
                                                                      + len(failed)))
    out("job_throughput_jobs_per_s" + suffix, count / elapsed, "jobs/s")


def _rss_mib(pid: int) -> float:
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


BENCHMARKS: list[Callable[[bool, Callable[[str, float, str], None]], None]] = [
    bench_control_plane,
]


def _register_mobility() -> None:
    """Mobility benchmarks live in bench_migration.py (they build vclusters)."""
    from corral.tools import bench_migration
    BENCHMARKS.extend([bench_migration.bench_migrate_fake, bench_migration.bench_migrate_kvm])


_register_mobility()


def _register_more() -> None:
    """Benchmarks living in their own modules (one per domain)."""
    from corral.tools import bench_instances
    BENCHMARKS.append(bench_instances.bench_instances)
    BENCHMARKS.append(bench_instances.bench_rapi)
    BENCHMARKS.append(bench_instances.bench_kvm_boot)
    from corral.tools import burnin
    BENCHMARKS.append(burnin.bench_burnin)
    from corral.tools import bench_mirror
    BENCHMARKS.append(bench_mirror.bench_mirror)


_register_more()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description="Corral benchmarks: prints"
                                     " `metric value unit` lines; builds and removes its own"
                                     " throwaway clusters.")
    parser.add_argument("--quick", action="store_true", help="shorter runs of the same metrics")
    parser.add_argument("--nodes", type=int, default=1,
                        help="number of nodes for the multi-node benchmarks (default 1)")
    parser.add_argument("--only", default=None,
                        help="comma-separated benchmark names to run (default: all)")
    opts = parser.parse_args(argv)

    def out(metric: str, value: float, unit: str) -> None:
        print("%s %.2f %s" % (metric, value, unit), flush=True)

    wanted = set(opts.only.split(",")) if opts.only else None
    code = 0
    for bench in BENCHMARKS:
        name = bench.__name__[len("bench_"):]
        if wanted is not None and name not in wanted:
            continue
        try:
            if "nodes" in bench.__code__.co_varnames[:bench.__code__.co_argcount]:
                bench(opts.quick, out, nodes=opts.nodes)  # type: ignore[call-arg]
            else:
                bench(opts.quick, out)
        except Exception as err:  # one broken benchmark must not hide the others
            sys.stderr.write("benchmark %s failed: %s\n" % (name, err))
            code = 1
    return code
