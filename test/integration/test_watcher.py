"""corral-watcher on a one-node cluster (fake hypervisor): restarts, pause, daemons, archive."""

import json
import os
import select
import signal
import stat
import subprocess
import time

from conftest import BIN
from test_instances import ADD, fake_record, listing

WATCHER = ("corral-watcher", "--once")


def _state(cluster) -> dict:
    data_dir = cluster.path("var", "lib", "corral")
    (name,) = [n for n in os.listdir(data_dir) if n.startswith("watcher.") and
               n.endswith(".data")]
    with open(os.path.join(data_dir, name)) as fh:
        return json.load(fh)


def _kill(cluster, name: str) -> None:
    """What a crashed guest looks like to the fake hypervisor: its record is gone."""
    os.unlink(fake_record(cluster, name))
    assert listing(cluster, name) == {name: ["ERROR_down"]}


def test_watcher_restarts_a_dead_instance(cluster):
    cluster.run(*ADD, "-t", "diskless", "-o", "busybox", "--no-install", "--no-nics", "web1")
    cluster.run(*ADD, "-t", "diskless", "-o", "busybox", "--no-install", "--no-nics",
                "--no-start", "idle1")
    _kill(cluster, "web1")
    cluster.run(*WATCHER)
    assert listing(cluster) == {"web1": ["running"], "idle1": ["ADMIN_down"]}
    assert os.path.exists(fake_record(cluster, "web1"))
    assert _state(cluster)["instance"]["web1"]["restart_count"] == 1
    log = cluster.path("var", "log", "corral", "watcher.log")
    with open(log) as fh:
        assert "Restarting instance 'web1' (attempt #1)" in fh.read()
    cluster.run(*WATCHER)  # it runs again: the counter is forgotten
    assert "web1" not in _state(cluster)["instance"]
    statuses = cluster.path("var", "lib", "corral", "instance-status")
    with open(statuses) as fh:
        assert fh.read() == "idle1 ADMIN_down\nweb1 running\n"


def test_pause_stops_the_watcher_unless_ignored(cluster):
    cluster.run(*ADD, "-t", "diskless", "-o", "busybox", "--no-install", "--no-nics", "web1")
    cluster.run("gnt-cluster", "watcher", "pause", "1h")
    try:
        _kill(cluster, "web1")
        cluster.run(*WATCHER)
        assert listing(cluster, "web1") == {"web1": ["ERROR_down"]}
        cluster.run(*WATCHER, "--ignore-pause")
        assert listing(cluster, "web1") == {"web1": ["running"]}
        _kill(cluster, "web1")
    finally:
        cluster.run("gnt-cluster", "watcher", "continue")
    cluster.run(*WATCHER)
    assert listing(cluster, "web1") == {"web1": ["running"]}


def test_gives_up_after_five_attempts(cluster):
    cluster.run(*ADD, "-t", "file", "--disk", "0:size=8m", "-o", "busybox", "--no-install",
                "--no-nics", "broken")
    cluster.run("gnt-instance", "deactivate-disks", "-f", "broken", check=False)
    _kill(cluster, "broken")
    disk_dir = cluster.path("srv", "file", "broken")
    for name in os.listdir(disk_dir):
        os.chmod(os.path.join(disk_dir, name), 0)
        os.rename(os.path.join(disk_dir, name), os.path.join(disk_dir, name + ".gone"))
    for attempt in range(1, 8):
        cluster.run(*WATCHER, "--no-verify-disks")
        assert _state(cluster)["instance"]["broken"]["restart_count"] == min(attempt, 6)
    assert listing(cluster, "broken") == {"broken": ["ERROR_down"]}
    with open(cluster.path("var", "log", "corral", "watcher.log")) as fh:
        log = fh.read()
    assert log.count("Restarting instance 'broken'") == 5
    assert "Could not restart instance 'broken' after 5 attempts, giving up" in log
    assert "Not restarting instance 'broken', retries exhausted" in log


def test_restarts_daemons_runs_hooks_and_archives_jobs(cluster):
    cluster.run("corral-daemon-util", "stop", "rapi")
    assert cluster.pid("rapi") == 0 or not os.path.exists("/proc/%d" % cluster.pid("rapi"))
    hook_dir = cluster.path("etc", "corral", "hooks", "watcher")
    os.makedirs(hook_dir, exist_ok=True)
    marker = cluster.path("hook-ran")
    hook = os.path.join(hook_dir, "10-mark")
    with open(hook, "w") as fh:
        fh.write("#!/bin/sh\necho ran >> %s\n" % marker)
    os.chmod(hook, stat.S_IRWXU)
    cluster.run("gnt-debug", "test-jobqueue")
    assert cluster.run("gnt-job", "list", "--no-headers").stdout.strip()
    cluster.run(*WATCHER, "-A", "0")
    assert cluster.run("corral-daemon-util", "check", check=False).returncode == 0
    with open(marker) as fh:
        assert fh.read() == "ran\n"
    # Jobs of the watcher itself may be left; the earlier ones are archived.
    left = cluster.run("gnt-job", "list", "--no-headers", "-o", "id,summary").stdout
    assert "TEST_JQUEUE" not in left


def test_loop_mode_runs_until_sigterm(cluster):
    cluster.run(*ADD, "-t", "diskless", "-o", "busybox", "--no-install", "--no-nics", "web1")
    _kill(cluster, "web1")
    proc = subprocess.Popen(["corral-watcher", "--interval", "1h", "--debug"],
                            env=cluster.env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        seen = ""
        while "Watcher run finished" not in seen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, seen
            ready, _, _ = select.select([proc.stderr], [], [], remaining)
            if ready:
                line = proc.stderr.readline()
                assert line, "watcher exited early: %s" % seen
                seen += line
        assert listing(cluster, "web1") == {"web1": ["running"]}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_not_in_a_cluster(tmp_path):
    env = dict(os.environ, CORRAL_ROOT=str(tmp_path), PATH=BIN + ":" + os.environ["PATH"])
    proc = subprocess.run(list(WATCHER), env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 5
