"""Instance benchmarks for tools/bench (fake hypervisor, one node; kvm boot under TCG)."""

import os
import statistics
import subprocess
import time
from typing import Any, Callable

from corral import opcodes
from corral.tools import bench

Out = Callable[[str, float, str], None]


def _create_op(name: str, start: bool = True) -> dict:
    return opcodes.OpInstanceCreate(
        instance_name=name, mode="create", disks=[], nics=[], disk_template="diskless",
        os_type="busybox", no_install=True, name_check=False, ip_check=False, pnode="localhost",
        start=start).to_dict()


def _big_fake_node(cluster: bench.BenchCluster) -> None:
    """Let the fake node report enough memory for a thousand running instances."""
    subprocess.run([os.path.join(bench.BIN_DIR, "python"), "-c",
                    "from corral.hypervisor import get_hypervisor;"
                    "get_hypervisor('fake').set_node_info(memory_total=4 * 1024 * 1024)"],
                   env=cluster.env, check=True)


def bench_instances(quick: bool, out: Out) -> None:
    """Add latency, parallel adds, and `gnt-instance list` at 1000 instances."""
    with bench.one_node_cluster() as cluster:
        _big_fake_node(cluster)
        client = cluster.client()
        samples = []
        for i in range(10 if quick else 30):
            start = time.perf_counter()
            job_id = client.submit_job([_create_op("lat%03d.example.com" % i)])
            if bench.wait_done(client, job_id) != "success":
                raise RuntimeError("instance add failed (job %s)" % job_id)
            samples.append((time.perf_counter() - start) * 1000)
        out("instance_add_fake_median_ms", statistics.median(samples), "ms")
        start = time.perf_counter()
        results = client.submit_many_jobs([[_create_op("par%03d.example.com" % i)]
                                           for i in range(100)])
        states = [bench.wait_done(client, job_id) for ok, job_id in results if ok]
        elapsed = time.perf_counter() - start
        if states.count("success") != 100:
            raise RuntimeError("parallel adds: %d of 100 succeeded" % states.count("success"))
        out("instance_add_fake_parallel_per_s", 100 / elapsed, "adds/s")
        have = len(samples) + 100
        total = 300 if quick else 1000
        results = client.submit_many_jobs([[_create_op("lst%04d.example.com" % i)]
                                           for i in range(total - have)])
        for ok, job_id in results:
            if not ok or bench.wait_done(client, job_id) != "success":
                raise RuntimeError("filling the cluster failed")
        timings = []
        for _ in range(5):
            start = time.perf_counter()
            proc = subprocess.run(["gnt-instance", "list"], env=cluster.env, capture_output=True)
            timings.append((time.perf_counter() - start) * 1000)
            if proc.returncode != 0 or proc.stdout.count(b"\n") != total + 1:
                raise RuntimeError("gnt-instance list failed: %s" % proc.stderr[-500:])
        out("instance_list_ms", statistics.median(timings), "ms")
        client.close()


def bench_kvm_boot(quick: bool, out: Out) -> None:
    """Startup of a busybox guest under TCG until its CORRAL-GUEST-UP console marker."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    cache = os.environ.get("CORRAL_GUEST_CACHE") or os.path.join(repo, ".cache", "guest")
    kernel, initrd = subprocess.run(
        [os.path.join(bench.BIN_DIR, "python"), os.path.join(repo, "tools", "guest-image"),
         cache], check=True, capture_output=True, text=True).stdout.split()[:2]
    hv = ("kvm:kernel_path=%s,initrd_path=%s,root_path=/dev/vda,kvm_flag=disabled,"
          "serial_console=true" % (kernel, initrd))
    with bench.one_node_cluster("--enabled-hypervisors=kvm", "-H", hv,
                                "--enabled-disk-templates=file,diskless") as cluster:
        name = "boot1.example.com"
        cluster.run("gnt-instance", "add", "-t", "file", "-s", "64m", "-o", "busybox",
                    "--no-nics", "--no-name-check", "--no-ip-check", "--no-start",
                    "-B", "maxmem=128", "-n", "localhost", name)
        os.environ["CORRAL_ROOT"] = cluster.root
        from corral.hypervisor.kvm import runtime
        from corral.utils import console
        paths = runtime.paths_for(name)
        samples = []
        for _ in range(1 if quick else 3):
            start = time.perf_counter()
            cluster.run("gnt-instance", "startup", name)
            console.wait_for_marker(paths.serial, None, "CORRAL-GUEST-UP", 300)
            samples.append((time.perf_counter() - start) * 1000)
            cluster.run("gnt-instance", "shutdown", "--timeout=0", name)
        out("kvm_boot_to_marker_ms", statistics.median(samples), "ms")
        cluster.run("gnt-instance", "remove", "-f", name)


def _fill_instances(client, prefix: str, count: int, start: bool = True) -> None:
    """``count`` running diskless fake instances, submitted as parallel jobs (no OS install)."""
    results = client.submit_many_jobs([[_create_op("%s%04d.example.com" % (prefix, i),
                                                   start=start)] for i in range(count)])
    for ok, job_id in results:
        if not ok or bench.wait_done(client, job_id) != "success":
            raise RuntimeError("filling the cluster failed (job %s)" % job_id)


def _median_get_ms(http, path: str, count: int, check: Callable[[Any], None]) -> float:
    """Median wall time of ``count`` GETs of ``path`` (each a new TLS connection, as the
    daemon closes every connection); the first answer is checked with ``check``."""
    for _ in range(3):  # warm up: imports, masterd connection pool, caches
        resp = http.get(path)
        resp.raise_for_status()
    check(resp.json())
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        resp = http.get(path)
        resp.content  # noqa: B018  (the body is part of the time)
        samples.append((time.perf_counter() - start) * 1000)
        if resp.status_code != 200:
            raise RuntimeError("GET %s: HTTP %d %s" % (path, resp.status_code, resp.text[:200]))
    return statistics.median(samples)


def bench_rapi(quick: bool, out: Out) -> None:
    """RAPI reads through corral-rapi (HTTPS, anonymous): ``/2/instances?bulk=1`` at 1000
    running instances and ``/2/info``, median of N GETs with an httpx client."""
    import httpx
    total = 300 if quick else 1000
    with bench.one_node_cluster() as cluster:
        _big_fake_node(cluster)
        client = cluster.client()
        try:
            _fill_instances(client, "rapi", total)
        finally:
            client.close()
        port = int(cluster.env["CORRAL_RAPI_PORT"])

        def check_bulk(items: Any) -> None:
            if len(items) != total or not all(i.get("oper_state") for i in items):
                raise RuntimeError("bulk list: %d items, not %d running" % (len(items), total))

        def check_info(info: Any) -> None:
            if info.get("name") != "localhost":
                raise RuntimeError("unexpected /2/info answer: %r" % (info,))
        with httpx.Client(base_url="https://127.0.0.1:%d" % port, verify=False,
                          timeout=60) as http:
            suffix = "" if total == 1000 else "_%d" % total
            out("rapi_instances_bulk_ms" + suffix,
                _median_get_ms(http, "/2/instances?bulk=1", 10 if quick else 30, check_bulk),
                "ms")
            out("rapi_info_ms", _median_get_ms(http, "/2/info", 20 if quick else 50,
                                               check_info), "ms")
