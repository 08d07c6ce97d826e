"""A one-node cluster driven through the gnt-* commands as an administrator would."""

import json
import os
import re
import signal

from corral import luxi
from corral.client import base as client_base


def submit(cluster, *argv):
    proc = cluster.run(*argv, "--submit")
    match = re.fullmatch(r"JobID: (\d+)\n", proc.stderr)
    assert match, proc.stderr
    return int(match.group(1))


def test_init_verify_info_version(cluster):
    cluster.run("gnt-cluster", "verify")
    assert cluster.run("gnt-cluster", "getmaster").stdout == "localhost\n"
    version = cluster.run("gnt-cluster", "version").stdout.splitlines()
    assert [line.split(":")[0] for line in version] == [
        "Software version", "Internode protocol", "Configuration format", "OS api version",
        "Export interface", "VCS version"]
    info = cluster.run("gnt-cluster", "info").stdout
    assert "Cluster name: localhost" in info and "Enabled hypervisors: fake" in info
    again = cluster.run("gnt-cluster", "init", "localhost", check=False)
    assert again.returncode == 1 and "already initialised" in again.stderr


def test_delay_submit_watch_and_list(cluster):
    job = submit(cluster, "gnt-debug", "delay", "-r", "2", "0.5")
    watch = cluster.run("gnt-job", "watch", str(job))
    lines = watch.stdout.splitlines()
    assert lines[0] == "Output from job %d follows" % job
    assert set(lines[1]) == {"-"}
    assert any(line.endswith("Test delay iteration 0/2") for line in lines)
    assert any(line.endswith("Test delay iteration 1/2") for line in lines)
    listing = cluster.run("gnt-job", "list").stdout.splitlines()
    assert listing[0].split() == ["ID", "Status", "Summary"]
    assert re.search(r"^\s*%d success TEST_DELAY\(500000000 ns\)$" % job, "\n".join(listing), re.M)
    bare = cluster.run("gnt-job", "list", "--no-headers", "--separator=|", "-o", "id,status")
    assert "%d|success" % job in bare.stdout.splitlines()
    assert not bare.stdout.startswith("ID")
    extra = cluster.run("gnt-job", "list", "-o", "+priority").stdout.splitlines()
    assert extra[0].split() == ["ID", "Status", "Summary", "Priority"]
    unknown = cluster.run("gnt-job", "list", "-o", "id,nosuchfield", check=False)
    assert unknown.returncode == 14 and "unknown fields" in unknown.stderr.lower()


def test_cancel_queued_refuse_running(cluster):
    cluster.run("gnt-cluster", "modify", "--max-running-jobs", "1")
    running = submit(cluster, "gnt-debug", "delay", "5")
    queued = submit(cluster, "gnt-debug", "delay", "1")
    cluster.run("gnt-job", "wait", str(queued), check=False, timeout=1) if False else None
    status = cluster.run("gnt-job", "list", "--no-headers", "-o", "id,status").stdout
    assert re.search(r"%d queued" % queued, status), status
    refused = cluster.run("gnt-job", "cancel", str(running), check=False)
    assert refused.returncode == 1
    assert "Job %d is no longer waiting in the queue" % running in refused.stdout
    cancel = cluster.run("gnt-job", "cancel", str(queued))
    assert "canceled" in cancel.stdout
    cluster.run("gnt-job", "wait", str(running))
    final = cluster.run("gnt-job", "list", "--no-headers", "-o", "id,status",
                        str(running), str(queued)).stdout.split()
    assert final == [str(running), "success", str(queued), "canceled"]


def test_bad_input_is_refused_and_creates_nothing(cluster, tmp_path):
    jobs_before = cluster.run("gnt-job", "list", "--no-headers").stdout
    cases = [
        ([{"OP_ID": "OP_TEST_DELAY", "duration": 1, "frobnicate": True}], "frobnicate"),
        ([{"OP_ID": "OP_TEST_DELAY", "duration": "long"}], "duration"),
        ([{"OP_ID": "OP_TEST_DELAY", "duration": 1, "priority": 3}], "priority"),
        ([{"OP_ID": "OP_TEST_DELAY", "duration": 1, "depends": [[4242, []]]}], "4242"),
    ]
    for ops, word in cases:
        path = tmp_path / "job.json"
        path.write_text(json.dumps(ops))
        proc = cluster.run("gnt-debug", "submit-job", str(path), check=False)
        assert proc.returncode == 1, proc
        assert word in proc.stderr and "Traceback" not in proc.stderr
    bad_prio = cluster.run("gnt-debug", "delay", "--priority", "urgent", "1", check=False)
    assert bad_prio.returncode != 0 and "urgent" in bad_prio.stderr
    assert cluster.run("gnt-job", "list", "--no-headers").stdout == jobs_before


def test_queue_drain_and_watcher_pause(cluster):
    cluster.run("gnt-cluster", "queue", "drain")
    assert cluster.run("gnt-cluster", "queue", "info").stdout == "The drain flag is set\n"
    refused = cluster.run("gnt-debug", "delay", "0.1", check=False)
    assert refused.returncode == 1
    assert "marked for drain" in refused.stderr
    cluster.run("gnt-cluster", "queue", "undrain")
    assert cluster.run("gnt-cluster", "queue", "info").stdout == "The drain flag is unset\n"
    cluster.run("gnt-debug", "delay", "0.1")
    assert "is paused until" in cluster.run("gnt-cluster", "watcher", "pause", "1h").stdout
    assert "is paused until" in cluster.run("gnt-cluster", "watcher", "info").stdout
    cluster.run("gnt-cluster", "watcher", "continue")
    assert cluster.run("gnt-cluster", "watcher", "info").stdout == "The watcher is not paused.\n"


def test_tags(cluster):
    cluster.run("gnt-cluster", "add-tags", "web", "db:primary")
    assert cluster.run("gnt-cluster", "list-tags").stdout.split() == ["db:primary", "web"]
    assert cluster.run("gnt-cluster", "search-tags", "^db").stdout == "/cluster db:primary\n"
    bad = cluster.run("gnt-cluster", "add-tags", "no spaces", check=False)
    assert bad.returncode == 1 and "invalid characters" in bad.stderr
    cluster.run("gnt-cluster", "remove-tags", "web")
    assert cluster.run("gnt-cluster", "list-tags").stdout.split() == ["db:primary"]


def test_masterd_crash_loses_no_job(cluster, tmp_path):
    """SIGKILL the master daemon with 50 jobs queued or running, then restart it."""
    cluster.run("gnt-cluster", "modify", "--max-running-jobs", "5")
    ops = [{"OP_ID": "OP_TEST_DELAY", "duration": 0.3}]
    path = tmp_path / "job.json"
    path.write_text(json.dumps(ops))
    out = cluster.run("gnt-debug", "submit-job", "--job-repeat", "50", str(path)).stdout
    ids = [int(x) for x in re.findall(r"Submitted job ID (\d+)", out)]
    assert len(ids) == 50
    os.kill(cluster.pid("masterd"), signal.SIGKILL)
    cluster.run("corral-daemon-util", "start-all")
    # Follow the jobs on one luxi connection (50 gnt-job processes cost ~15 s of
    # CPU); the last one also through the CLI, as an administrator would.
    sock = cluster.path("var", "run", "corral", "socket", "master.sock")
    with luxi.Client(sock) as client:
        for job in ids[:-1]:
            client_base.wait_job(job, client, None)
    cluster.run("gnt-job", "wait", str(ids[-1]), check=False)
    rows = cluster.run("gnt-job", "list", "--no-headers", "-o", "id,status",
                       *map(str, ids)).stdout.split("\n")
    found = dict(line.split() for line in rows if line.strip())
    assert sorted(int(k) for k in found) == ids
    assert set(found.values()) <= {"success", "error"}
    errors_ = cluster.run("gnt-job", "list", "--no-headers", "--error", "-o", "id").stdout.split()
    for job in errors_:
        assert "Unclean master daemon shutdown" in cluster.run("gnt-job", "info", job).stdout
    cluster.run("gnt-cluster", "verify")
    assert submit(cluster, "gnt-debug", "delay", "0.1") > max(ids)


def test_destroy_leaves_nothing(cluster):
    cluster.run("gnt-cluster", "destroy", "--yes-do-it")
    assert cluster.pid("masterd") == 0 and cluster.pid("noded") == 0
    assert os.listdir(cluster.path("var", "lib", "corral")) == []
    down = cluster.run("gnt-cluster", "getmaster", check=False)
    assert down.returncode == 1 and "Cannot communicate with the master daemon" in down.stderr


def test_queries_as_opcodes_answer_like_luxi(cluster):
    """OP_QUERY, OP_QUERY_FIELDS and OP_CLUSTER_CONFIG_QUERY inside a job give what
    the direct luxi calls give (scripts submit them with gnt-debug submit-job)."""
    sock = cluster.path("var", "run", "corral", "socket", "master.sock")
    with luxi.Client(sock) as client:
        job = client.submit_job([
            {"OP_ID": "OP_QUERY", "what": "node", "fields": ["name", "role"],
             "qfilter": ["=", "name", "localhost"]},
            {"OP_ID": "OP_QUERY_FIELDS", "what": "node", "fields": ["name"]},
            {"OP_ID": "OP_CLUSTER_CONFIG_QUERY",
             "output_fields": ["master_node", "drain_flag", "volume_group_name"]}])
        client_base.wait_job(job, client, None)
        status, result = client.query_jobs([job], ["status", "opresult"])[0]
        assert status == "success", result
        assert result[0] == client.query("node", ["name", "role"], ["localhost"])
        assert result[0]["data"] == [[[0, "localhost"], [0, "M"]]]
        assert result[1] == client.query_fields("node", ["name"])
        assert result[2] == ["localhost", False, None]
        bad = client.submit_job([{"OP_ID": "OP_CLUSTER_CONFIG_QUERY",
                                  "output_fields": ["nosuch"]}])
        client_base.wait_job(bad, client, None)
        status, result = client.query_jobs([bad], ["status", "opresult"])[0]
        assert status == "error" and "Unknown config value 'nosuch'" in json.dumps(result)
