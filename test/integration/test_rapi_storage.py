"""Node storage and instance disk resources through the real daemons (fake hypervisor,
file storage), driven by Debian's Ganeti RAPI client and raw HTTP.

A one-node file-storage cluster cannot replace disks for real (that needs DRBD
on two nodes): the test checks that the route builds the right opcode, that
the job runs it and that the LU's refusal comes back in ``opresult`` with
Ganeti's error encoding.
"""

import glob
import os

from rapi_helpers import rapi  # noqa: F401  (fixture)

INST = "disk1.example.com"
RLIB2 = "gnt:library:rlib2:"


def finished(rapi, job_id: int) -> dict:
    """The job's status once it ended (the Ganeti client's own waiting loop)."""
    rapi.ok("c.WaitForJobCompletion(%d, period=1)" % job_id)
    status = rapi.ok("c.GetJobStatus(%d)" % job_id)
    assert status["status"] in ("success", "error"), status
    return status


def assert_job_error(status: dict, cls: str, words: str, code: str | None = None) -> None:
    assert status["status"] == "error", status
    (err,) = status["opresult"]
    assert err[0] == cls and words in err[1][0], err
    if code is not None:
        assert err[1][1] == code, err


def reason_sources(status: dict) -> list[str]:
    return [entry[0] for entry in status["ops"][0]["reason"]]


def test_node_storage_list_modify_repair(rapi):
    storage_dir = rapi.cluster.path("srv", "file")
    fields = ["name", "size", "used", "free", "allocatable"]
    status = finished(rapi, rapi.ok("c.GetNodeStorageUnits('localhost', 'file', %r)"
                                    % ",".join(fields)))
    assert status["status"] == "success", status
    (rows,) = status["opresult"]
    assert [row[0] for row in rows] == [storage_dir]
    assert all(isinstance(v, int) for v in rows[0][1:4]) and rows[0][4] is True
    assert RLIB2 + "nodes_name_storage" in reason_sources(status)
    op = status["ops"][0]
    assert op["storage_type"] == "file" and op["output_fields"] == fields
    # Listing storage needs write access, as in Ganeti.
    assert rapi.gclient("c.GetNodeStorageUnits('localhost', 'file', 'name')",
                        user="ro")["code"] == 403

    # File storage units have no modifiable field: the job fails with the LU's error.
    status = finished(rapi, rapi.ok("c.ModifyNodeStorageUnits('localhost', 'file', %r,"
                                    " allocatable=False)" % storage_dir))
    assert status["ops"][0]["changes"] == {"allocatable": False}
    assert_job_error(status, "OpPrereqError", "allocatable", "wrong_input")

    # Repair exists for LVM volume groups only; a missing group fails inside the job.
    status = finished(rapi, rapi.ok("c.RepairNodeStorageUnits('localhost', 'lvm-vg',"
                                    " 'corral-test-novg')"))
    assert status["status"] == "error" and status["ops"][0]["name"] == "corral-test-novg"
    (err,) = status["opresult"]
    assert isinstance(err[0], str) and isinstance(err[1][0], str), err

    jobs = rapi.job_count()
    with rapi.http() as c:
        for method, path in [
                ("PUT", "/2/nodes/localhost/storage/repair?storage_type=file&name=x"),
                ("PUT", "/2/nodes/localhost/storage/repair?storage_type=lvm-vg"),
                ("PUT", "/2/nodes/localhost/storage/modify?storage_type=file"),
                ("PUT", "/2/nodes/localhost/storage/modify?storage_type=file&name=x"
                        "&allocatable=maybe"),
                ("GET", "/2/nodes/localhost/storage?storage_type=nosuch&output_fields=name"),
                ("GET", "/2/nodes/localhost/storage?storage_type=file"),
                ("GET", "/2/nodes/localhost/storage?output_fields=name")]:
            resp = c.request(method, path)
            assert resp.status_code == 400, (path, resp.text)
            assert resp.json()["code"] == 400
    assert rapi.job_count() == jobs


def test_instance_disk_routes(rapi):
    job = rapi.ok("c.CreateInstance('create', %r, 'file', [{'size': 64}], [], os='busybox',"
                  " no_install=True, name_check=False, ip_check=False, hypervisor='fake',"
                  " start=False)" % INST)
    assert finished(rapi, job)["status"] == "success"

    # replace-disks, legacy query form (what the Ganeti client sends)
    status = finished(rapi, rapi.ok("c.ReplaceInstanceDisks(%r, disks=[0],"
                                    " mode='replace_on_primary', reason='because')" % INST))
    op = status["ops"][0]
    assert (op["instance_name"], op["mode"], op["disks"]) == (INST, "replace_on_primary", [0])
    assert reason_sources(status)[-2:] == ["gnt:user", RLIB2 + "instances_name_replace_disks"]
    assert_job_error(status, "OpPrereqError", "DRBD8", "wrong_input")

    jobs = rapi.job_count()
    with rapi.http() as c:
        # body form; "disks" may be a comma-separated string (old clients)
        resp = c.post("/2/instances/%s/replace-disks" % INST,
                      json={"mode": "replace_auto", "disks": "0", "early_release": True})
        assert resp.status_code == 200, resp.text
        new_job = resp.json()
        for body in ({"mode": "replace_everything"}, {"mode": "replace_auto", "disks": "x"},
                     {"mode": "replace_auto", "frobnicate": 1},
                     {"mode": "replace_auto", "disks": [-1]}):
            resp = c.post("/2/instances/%s/replace-disks" % INST, json=body)
            assert resp.status_code == 400, (body, resp.text)
        resp = c.post("/2/instances/%s/replace-disks?mode=replace_auto&disks=a,b" % INST)
        assert resp.status_code == 400, resp.text
    assert rapi.job_count() == jobs + 1
    status = finished(rapi, new_job)
    assert status["ops"][0]["disks"] == [0] and status["ops"][0]["early_release"] is True
    assert_job_error(status, "OpPrereqError", "DRBD8")

    # the other disk resources work for real on file storage
    for call in ("c.ActivateInstanceDisks(%r)" % INST,
                 "c.GrowInstanceDisk(%r, 0, 64, wait_for_sync=False)" % INST,
                 "c.DeactivateInstanceDisks(%r)" % INST):
        status = finished(rapi, rapi.ok(call))
        assert status["status"] == "success", (call, status["opresult"])
    inst = rapi.ok("c.GetInstance(%r)" % INST)
    assert inst["disk.sizes"] == [128] and inst["disk_template"] == "file"
    (disk_file,) = glob.glob(rapi.cluster.path("srv", "file", INST, "*.disk0"))
    assert os.path.getsize(disk_file) == 128 << 20
    # recreate-disks is for lost disks (an existing file is refused, as in Ganeti)
    assert_job_error(finished(rapi, rapi.ok("c.RecreateInstanceDisks(%r)" % INST)),
                     "OpExecError", "already exists")
    os.unlink(disk_file)
    status = finished(rapi, rapi.ok("c.RecreateInstanceDisks(%r, disks=[0])" % INST))
    assert status["status"] == "success", status["opresult"]
    assert os.path.getsize(disk_file) == 128 << 20
