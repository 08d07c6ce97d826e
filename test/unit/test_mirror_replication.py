"""The mirror template's logic outside the node driver: QEMU job states, the
replication commands, role derivation on the nodes and disk generation."""

import pytest

from corral import constants, errors, objects
from corral.backend import disks as bdisks
from corral.cmdlib import instance_mirror
from corral.cmdlib import instance_storage as ist
from corral.hypervisor import DiskSpec
from corral.hypervisor.kvm import cmdline, replication


def _job(**kw):
    job = {"device": "corral-rep-disk0", "status": "ready", "ready": True, "paused": False,
           "io-status": "ok", "offset": 100, "len": 100, "type": "mirror"}
    job.update(kw)
    return job


@pytest.mark.parametrize("job, dirty, again, state, percent, settled", [
    (_job(), 0, _job(), "in_sync", None, True),
    (_job(len=110), 0, _job(offset=105), "in_sync", None, False),  # a write in flight
    (_job(len=110), 0, _job(offset=110), "in_sync", None, True),
    (_job(offset=25, ready=False, status="running"), 75, None, "syncing", 25.0, False),
    (_job(offset=90), 10, _job(), "syncing", 90.0, False),  # resumed: blocks left to copy
    (_job(paused=True, status="standby", **{"io-status": "failed"}), 4, None, "degraded",
     100.0, False),
    (None, 0, None, "disconnected", None, False),
])
def test_disk_state(job, dirty, again, state, percent, settled):
    out = replication.disk_state(job, dirty, again)
    assert out["state"] == state
    assert out["percent"] == percent
    assert out["settled"] is settled


class FakeMonitor:
    """Records QMP commands; answers the two queries from the given state."""

    def __init__(self, jobs=(), nodes=(), resume_errors=0):
        self.jobs, self.nodes, self.calls = list(jobs), list(nodes), []
        self.events, self.resume_errors = [], resume_errors

    def wait_event(self, names, timeout):
        if "BLOCK_JOB_ERROR" in names and self.resume_errors:
            self.resume_errors -= 1
            return {"event": "BLOCK_JOB_ERROR"}
        return None

    def execute(self, command, arguments=None, timeout=None):
        self.calls.append((command, arguments))
        if command == "query-block-jobs":
            return self.jobs
        if command == "query-named-block-nodes":
            return [{"node-name": n} for n in self.nodes]
        if command == "blockdev-add" and arguments["file"]["server"]["path"] == "/dead":
            raise replication.qmp.QmpError("Failed to connect to '/dead'")
        return {}


def test_replicate_starts_resumes_and_reports():
    mon = FakeMonitor(jobs=[_job(device="corral-rep-disk1", paused=True, status="standby")],
                      nodes=["disk0-local", "disk2-mirror"])
    problems = replication.replicate(mon, [(0, "/s0"), (1, "/s1"), (2, "/dead")])
    issued = [c for c, _a in mon.calls if not c.startswith("query")]
    assert issued == ["blockdev-add", "blockdev-mirror", "block-job-resume",
                      "blockdev-del", "blockdev-add"]
    add = mon.calls[2][1]
    assert add["file"] == {"driver": "nbd", "server": {"type": "unix", "path": "/s0"},
                           "export": "disk", "reconnect-delay": replication.RECONNECT_DELAY}
    mirror = mon.calls[3][1]
    assert mirror["copy-mode"] == "write-blocking" and mirror["sync"] == "full"
    assert mirror["on-target-error"] == "stop"
    assert mirror["device"] == "disk0-local" and mirror["target"] == "disk0-mirror"
    assert len(problems) == 1 and problems[0].startswith("disk/2:")


def test_resume_retries_until_the_secondary_answers():
    paused = _job(paused=True, status="standby", **{"io-status": "failed"})
    mon = FakeMonitor(jobs=[paused], resume_errors=2)
    assert replication.replicate(mon, [(0, "/s0")]) == []
    assert [c for c, _a in mon.calls].count("block-job-resume") == 3
    mon = FakeMonitor(jobs=[paused], resume_errors=99)
    problems = replication.replicate(mon, [(0, "/s0")])
    assert problems == ["disk/0: the secondary is still unreachable"]
    assert [c for c, _a in mon.calls].count("block-job-resume") == replication.RESUME_TRIES


def test_replicate_leaves_running_job_alone():
    mon = FakeMonitor(jobs=[_job()])
    assert replication.replicate(mon, [(0, "/s0")]) == []
    assert [c for c, _a in mon.calls if not c.startswith("query")] == []


def test_mirror_drive_has_no_lock_and_direct_io():
    hvp = {"disk_cache": "writeback", "disk_aio": "threads", "disk_discard": "ignore"}
    opts = cmdline._drive_opts(DiskSpec(path="/f/img", dev_type="mirror"), hvp, "disk0")
    assert "cache=none" in opts and "file.locking=off" in opts
    assert "node-name=disk0-local" in opts
    plain = cmdline._drive_opts(DiskSpec(path="/f/img"), hvp, "disk0")
    assert "locking" not in plain and "cache=writeback" in plain


def _mirror_rpc(primary="u-a"):
    return {"dev_type": "mirror", "logical_id": [primary, "u-b" if primary == "u-a" else "u-a",
                                                 11000],
            "uuid": "d1", "size": 64, "children": [],
            "params": {"mirror_nodes": {"u-a": ["node-a", "10.0.0.1"],
                                        "u-b": ["node-b", "10.0.0.2"]}}}


def test_localize_mirror_roles_follow_logical_id():
    out = bdisks.localize(_mirror_rpc(), hostname="node-a")["params"]
    assert out["role"] == "primary" and out["local_ip"] == "10.0.0.1"
    assert out["remote_ip"] == "10.0.0.2" and out["remote_name"] == "node-b"
    assert out["disk_uuid"] == "d1"
    out = bdisks.localize(_mirror_rpc(), hostname="node-b")["params"]
    assert out["role"] == "secondary" and out["remote_ip"] == "10.0.0.1"
    assert bdisks.localize(_mirror_rpc("u-b"), hostname="node-b")["params"]["role"] == "primary"
    with pytest.raises(errors.BlockDeviceError, match="neither end of mirror disk"):
        bdisks.localize(_mirror_rpc(), hostname="node-c")


def _cluster():
    return objects.Cluster(file_storage_dir="/srv/file", enabled_disk_templates=["mirror"])


class _Alloc:
    def port(self):
        return 11005


def test_generate_mirror_disks_and_swap_roles():
    disks = ist.generate_disks(_cluster(), constants.DT_MIRROR, "inst1", [{"size": 64}],
                               "u-a", snode_uuid="u-b", alloc=_Alloc())
    (disk,) = disks
    assert disk.logical_id == ["u-a", "u-b", 11005]
    (child,) = disk.children
    assert child.dev_type == constants.DT_FILE
    assert child.logical_id == ["loop", "/srv/file/inst1/%s.disk0" % disk.uuid]
    inst = objects.Instance(name="inst1", disk_template=constants.DT_MIRROR, disks=disks,
                            primary_node="u-a")
    instance_mirror.swap_roles(inst, "u-b")
    assert disk.logical_id == ["u-b", "u-a", 11005]
    assert instance_mirror.secondary_uuid(inst) == "u-a"
    with pytest.raises(errors.OpPrereqError, match="needs a secondary node"):
        ist.generate_disks(_cluster(), constants.DT_MIRROR, "inst1", [{"size": 64}], "u-a")


def test_status_dict_maps_live_states():
    assert instance_mirror._status_dict({"state": "in_sync"})["is_degraded"] is False
    syncing = instance_mirror._status_dict({"state": "syncing", "percent": 40.0})
    assert syncing["sync_percent"] == 40.0 and not syncing["is_degraded"]
    for state in ("degraded", "disconnected"):
        assert instance_mirror._status_dict({"state": state})["is_degraded"] is True
