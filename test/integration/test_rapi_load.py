"""corral-rapi under load: 20 clients, mixed reads and job submissions, for a minute."""

import os
import threading
import time

import pytest

from corral import luxi, opcodes

from rapi_helpers import rapi  # noqa: F401  (fixture)

CLIENTS = 20
DURATION = 60.0
INSTANCES = 20  # so that bulk reads carry rows with live data


def _tcp_inodes() -> set[str]:
    inodes = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(name) as fh:
            inodes.update(line.split()[9] for line in list(fh)[1:])
    return inodes


def _proc_stats(pid: int) -> dict:
    """Threads, RSS, fds, and TCP sockets (the listener + client connections)."""
    with open("/proc/%d/status" % pid) as fh:
        status = dict(line.split(":", 1) for line in fh if ":" in line)
    links = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            links.append(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
        except FileNotFoundError:
            pass
    tcp = _tcp_inodes()
    tcp_fds = sum(1 for link in links if link.startswith("socket:[") and link[8:-1] in tcp)
    return {"threads": int(status["Threads"]), "rss_kb": int(status["VmRSS"].split()[0]),
            "fds": len(links), "tcp": tcp_fds}


def _settled(pid: int, baseline: dict, deadline: float) -> dict:
    """Stats once client connections are closed (TCP fds back to the baseline) and calls
    to masterd still running have ended (the pool keeps up to luxi.ASYNC_KEEPALIVE
    connections), or at the deadline."""
    while True:
        stats = _proc_stats(pid)
        if (stats["tcp"] <= baseline["tcp"]
                and stats["fds"] <= baseline["fds"] + luxi.ASYNC_KEEPALIVE) \
                or time.monotonic() > deadline:
            return stats
        time.sleep(0.2)


def _worker(rapi, idx: int, stop: float, counts: dict, failures: list) -> None:
    reads = ["/2/info", "/2/instances?bulk=1", "/2/nodes?bulk=1", "/2/groups", "/2/jobs",
             "/version", "/2/features", "/2/instances", "/2/instances/load00.example.com"]
    n = 0
    with rapi.http("rw") as c:
        while time.monotonic() < stop:
            n += 1
            try:
                if n % 4 == 0:
                    resp = c.put("/2/tags?tag=load%d&dry-run=1" % idx)
                    ok = resp.status_code == 200 and isinstance(resp.json(), int)
                    kind = "submit"
                else:
                    resp = c.get(reads[(n + idx) % len(reads)])
                    ok = resp.status_code == 200
                    kind = "read"
                if not ok:
                    failures.append((resp.request.url.path, resp.status_code, resp.text[:200]))
                counts[kind] = counts.get(kind, 0) + 1
            except Exception as err:  # a transport error is a failure too
                failures.append(("exception", repr(err)))


def _add_instances(rapi) -> None:
    sock = rapi.cluster.path("var", "run", "corral", "socket", "master.sock")
    with luxi.Client(sock) as client:
        ops = [[opcodes.OpInstanceCreate(
            instance_name="load%02d.example.com" % i, mode="create", disks=[], nics=[],
            disk_template="diskless", os_type="busybox", no_install=True, name_check=False,
            ip_check=False, pnode="localhost", start=i % 2 == 0).to_dict()]
            for i in range(INSTANCES)]
        for ok, job_id in client.submit_many_jobs(ops):
            assert ok, job_id
            info = None
            while info is None or info[0] not in ("success", "error", "canceled"):
                change = client.wait_for_job_change(job_id, ["status"], info, None)
                info = change["job_info"] if change else info
            assert info[0] == "success", job_id


def _rss_sampler(pid: int, at: float, out: dict) -> threading.Timer:
    timer = threading.Timer(at, lambda: out.update(_proc_stats(pid)))
    timer.start()
    return timer


@pytest.mark.slow
def test_twenty_clients_no_errors_no_leaks(rapi):
    _add_instances(rapi)
    pid = rapi.rapi_pid()
    with rapi.http() as c:  # warm up: imports, masterd connection pool
        for path in ("/2/info", "/2/instances?bulk=1", "/2/nodes?bulk=1", "/2/jobs"):
            assert c.get(path).status_code == 200
        assert c.put("/2/tags?tag=warm&dry-run=1").status_code == 200
    before = _proc_stats(pid)
    counts: dict = {}
    failures: list = []
    middle: dict = {}
    sampler = _rss_sampler(pid, DURATION / 2, middle)
    stop = time.monotonic() + DURATION
    threads = [threading.Thread(target=_worker, args=(rapi, i, stop, counts, failures))
               for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DURATION + 120)
    sampler.cancel()
    assert not any(t.is_alive() for t in threads)
    assert not failures, failures[:5]
    assert counts.get("read", 0) > CLIENTS and counts.get("submit", 0) > CLIENTS, counts
    after = _settled(pid, before, time.monotonic() + 30)
    assert rapi.rapi_pid() == pid
    print("requests:", counts, "before:", before, "middle:", middle, "after:", after)
    assert after["tcp"] <= before["tcp"], (before, after)  # every client connection closed
    assert after["fds"] <= before["fds"] + luxi.ASYNC_KEEPALIVE, (before, after)
    # the masterd client's threads (reused, bounded), nothing else
    assert after["threads"] <= before["threads"] + luxi.ASYNC_MAX_CALLS, (before, after)
    assert after["rss_kb"] - before["rss_kb"] < 30 * 1024, (before, after)
    # flat: the second half of the run adds (almost) nothing
    assert middle and after["rss_kb"] - middle["rss_kb"] < 8 * 1024, (middle, after)
    with rapi.http(None) as c:
        assert c.get("/version").json() == 2
