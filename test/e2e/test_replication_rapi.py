"""Job queue replication, verify's replication checks and the RAPI of a vcluster
(issues 3 and 5): jobs survive a master failover, RAPI follows the master.

All tests share the session vcluster (conftest.py) and put it back as they
found it; the master may move, so names are resolved at run time.
"""

import os
import re

import httpx
import pytest

from corral import constants, luxi
from corral.tools import vcluster as vcluster_api

pytestmark = pytest.mark.slow


def _candidates(vcluster, exclude: str) -> list[str]:
    return sorted(n for n, r in vcluster.roles().items() if r == "C" and n != exclude)


def _rapi(env: dict, method: str, path: str, user: str = "RO_USER",
          password: str = "RO_PASSWORD", **kw) -> httpx.Response:
    url = "https://%s:%s%s" % (env["CORRAL_RAPI_HOST"], env["CORRAL_RAPI_PORT"], path)
    return httpx.request(method, url, auth=(env["CORRAL_RAPI_" + user],
                                            env["CORRAL_RAPI_" + password]),
                         verify=False, timeout=60.0, **kw)


def _rapi_get_info(env: dict) -> dict:
    """GET /2/info; a connection refused right after a failover is retried (bounded)."""
    last: Exception | None = None
    for _attempt in range(10):
        try:
            resp = _rapi(env, "GET", "/2/info")
            assert resp.status_code == 200, resp.text
            return resp.json()
        except httpx.TransportError as err:  # each attempt waits for the network itself
            last = err
    raise AssertionError("RAPI not reachable through the forwarder: %s" % last)


def test_rapi_reachable_from_this_namespace(vcluster):
    env = vcluster.env()
    assert env["CORRAL_RAPI_HOST"] == "127.0.0.1"
    assert env["CORRAL_RAPI_USER"] and env["CORRAL_RAPI_RO_USER"]
    assert _rapi_get_info(env)["master"] == vcluster.current_master().name
    refused = _rapi(env, "PUT", "/2/redistribute-config")
    assert refused.status_code == 403, refused.text
    wrong = _rapi(env, "GET", "/2/info", password="PASSWORD")  # ro user, write user's password
    assert wrong.status_code == 401
    writer = _rapi(env, "GET", "/2/nodes", user="USER", password="PASSWORD")
    assert writer.status_code == 200 and len(writer.json()) == 3


def _submit_delay(vcluster, seconds: str) -> int:
    proc = vcluster.gnt("gnt-debug", "delay", "--submit", seconds)
    match = re.search(r"JobID: (\d+)", proc.stdout + proc.stderr)
    assert match, proc.stdout + proc.stderr
    return int(match.group(1))


def _wait_status(client: luxi.Client, job_id: int, wanted: set[str]) -> str:
    """Event-driven wait (long-poll) until the job's status is in ``wanted``."""
    info = None
    for _round in range(100):
        change = client.wait_for_job_change(job_id, ["status"], info, None)
        if change is not None:
            info = change["job_info"]
            if info[0] in wanted:
                return info[0]
    raise AssertionError("job %d never reached %s (last %s)" % (job_id, wanted, info))


def _master_client(vcluster) -> luxi.Client:
    root = vcluster.current_master().root
    return luxi.Client(os.path.join(root, "var", "run", "corral", "socket", "master.sock"))


def test_failover_keeps_jobs_and_rapi_follows(vcluster):
    old = vcluster.current_master()
    new = _candidates(vcluster, old.name)[0]
    # One worker: the long job runs, the others stay queued behind it.  It is
    # long enough to be running at the crash, short enough that the cleanup's
    # modify job (queued behind it if the test fails early) does not hang.
    vcluster.gnt("gnt-cluster", "modify", "--max-running-jobs", "1")
    try:
        running = _submit_delay(vcluster, "90")
        queued = [_submit_delay(vcluster, "0.01") for _ in range(3)]
        with _master_client(vcluster) as client:
            _wait_status(client, running, {constants.JOB_STATUS_RUNNING})
        for job_id in [running] + queued:  # acknowledged = on every candidate
            assert os.path.exists(vcluster.data_path(new, "queue", "job-%d" % job_id))
        vcluster_api.stop_node(vcluster.base, old.name)
        try:
            vcluster.on(new, "gnt-cluster", "master-failover")
            assert vcluster.current_master().name == new
            listing = vcluster.gnt("gnt-job", "list", "--no-headers", "-o", "id,status").stdout
            statuses = dict(line.split() for line in listing.splitlines())
            assert {str(j) for j in [running] + queued} <= set(statuses)
            assert statuses[str(running)] == "error"
            info = vcluster.gnt("gnt-job", "info", str(running)).stdout
            assert "Unclean master daemon shutdown" in info
            with _master_client(vcluster) as client:
                for job_id in queued:
                    assert _wait_status(client, job_id, constants.JOBS_FINALIZED) == "success"
            assert _rapi_get_info(vcluster.env())["master"] == new
        finally:
            vcluster_api.start_node(vcluster.base, old.name)
    finally:
        vcluster.gnt("gnt-cluster", "modify", "--max-running-jobs",
                     str(constants.DEFAULT_MAX_RUNNING_JOBS))
    # The old master caught up with the queue once it answered again.
    vcluster.gnt("gnt-cluster", "redist-conf")
    assert os.path.exists(vcluster.data_path(old.name, "queue", "job-%d" % queued[-1]))
    verify = vcluster.gnt("gnt-cluster", "verify")
    assert "ERROR" not in verify.stdout, verify.stdout


def test_verify_reports_failed_replication_until_caught_up(vcluster):
    master = vcluster.current_master().name
    target = _candidates(vcluster, master)[-1]
    vcluster_api.partition(vcluster.base, target)
    try:
        vcluster.gnt("gnt-cluster", "add-tags", "replication-check")
        verify = vcluster.gnt("gnt-cluster", "verify", "--error-codes", check=False)
        assert verify.returncode == 1
        for what in ("configuration", "job queue"):
            assert re.search(r"ERROR:ECLUSTERFILECHECK:cluster:[^:]+:%s replication to node %s"
                             r" failed" % (what, re.escape(target)), verify.stdout), verify.stdout
    finally:
        vcluster_api.heal(vcluster.base, target)
    vcluster.gnt("gnt-cluster", "redist-conf")
    vcluster.gnt("gnt-cluster", "remove-tags", "replication-check")
    verify = vcluster.gnt("gnt-cluster", "verify", "--error-codes")
    assert "ECLUSTERFILECHECK" not in verify.stdout, verify.stdout
