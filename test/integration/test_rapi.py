"""corral-rapi driven by Debian's real Ganeti RAPI client, hbal, and raw HTTP."""

import json
import subprocess
import time

from rapi_helpers import rapi  # noqa: F401  (fixture)

INST = "inst1.example.com"


def create_instance(rapi, name=INST, **extra) -> int:
    kwargs = dict(os="busybox", no_install=True, name_check=False, ip_check=False,
                  hypervisor="fake", start=False)
    kwargs.update(extra)
    return rapi.ok("c.CreateInstance('create', %r, 'diskless', [], [], **%r)" % (name, kwargs))


def wait_ok(rapi, job_id: int) -> None:
    assert rapi.ok("c.WaitForJobCompletion(%d, period=1)" % job_id) is True, \
        rapi.ok("c.GetJobStatus(%d)" % job_id)["opresult"]


def test_read_resources(rapi):
    assert rapi.ok("c.GetVersion()", user=None) == 2
    info = rapi.ok("c.GetInfo()", user=None)
    assert info["name"] == "localhost" and info["master"] == "localhost"
    assert info["default_hypervisor"] == "fake" and info["os_api_version"] == 20
    assert set(rapi.ok("c.GetFeatures()", user=None)) == {
        "instance-create-reqv1", "instance-reinstall-reqv1", "node-migrate-reqv1",
        "node-evac-res1"}
    assert "busybox" in rapi.ok("c.GetOperatingSystems()", user=None)
    assert rapi.ok("c.GetNodes()", user=None) == ["localhost"]
    nodes = rapi.ok("c.GetNodes(bulk=True)", user=None)
    assert nodes[0]["name"] == "localhost" and nodes[0]["role"] == "M"
    assert isinstance(nodes[0]["mtotal"], int) and nodes[0]["group.uuid"]
    node = rapi.ok("c.GetNode('localhost')", user=None)
    assert node["secondary_ip"] == node["sip"]
    assert rapi.ok("c.GetNodeRole('localhost')", user=None) == "master"
    groups = rapi.ok("c.GetGroups(bulk=True)", user=None)
    assert groups[0]["name"] == "default" and groups[0]["node_list"] == ["localhost"]
    assert rapi.ok("c.GetGroup('default')", user=None)["alloc_policy"] == "preferred"
    assert rapi.ok("c.GetInstances()", user=None) == []
    assert rapi.ok("c.GetInstances(bulk=True)", user=None) == []
    assert isinstance(rapi.ok("c.GetJobs()", user=None), list)
    missing = rapi.gclient("c.GetInstance('nosuch.example.com')", user=None)
    assert missing["code"] == 404


def test_instance_lifecycle(rapi):
    job = create_instance(rapi)
    assert isinstance(job, int)
    wait_ok(rapi, job)
    status = rapi.ok("c.GetJobStatus(%d)" % job)
    assert status["status"] == "success" and status["opresult"] == [["localhost"]]
    assert status["summary"] == ["INSTANCE_CREATE(%s)" % INST]
    assert rapi.ok("c.GetInstances()") == [INST]
    inst = rapi.ok("c.GetInstances(bulk=True)")[0]
    assert inst["name"] == INST and inst["pnode"] == "localhost"
    assert inst["admin_state"] == "down" and inst["status"] == "ADMIN_down"
    assert inst["beparams"]["memory"] == inst["beparams"]["maxmem"]

    wait_ok(rapi, rapi.ok("c.StartupInstance(%r)" % INST))
    assert rapi.ok("c.GetInstance(%r)" % INST)["status"] == "running"
    wait_ok(rapi, rapi.ok("c.RebootInstance(%r, reboot_type='soft')" % INST))
    wait_ok(rapi, rapi.ok("c.ShutdownInstance(%r, timeout=10)" % INST))
    assert rapi.ok("c.GetInstance(%r)" % INST)["oper_state"] is False

    wait_ok(rapi, rapi.ok("c.ModifyInstance(%r, beparams={'maxmem': 256, 'minmem': 256})"
                          % INST))
    assert rapi.ok("c.GetInstance(%r)" % INST)["beparams"]["maxmem"] == 256

    new = "inst2.example.com"
    wait_ok(rapi, rapi.ok("c.RenameInstance(%r, %r, ip_check=False, name_check=False)"
                          % (INST, new)))
    assert rapi.ok("c.GetInstances()") == [new]

    wait_ok(rapi, rapi.ok("c.DeleteInstance(%r)" % new))
    assert rapi.ok("c.GetInstances()") == []
    jobs = rapi.ok("c.GetJobs(bulk=True)")
    assert job in [j["id"] for j in jobs]
    assert all(j["status"] == "success" for j in jobs)


def test_instance_node_group_tags(rapi):
    wait_ok(rapi, rapi.ok("c.AddNodeTags('localhost', ['rack1'])"))
    assert rapi.ok("c.GetNodeTags('localhost')") == ["rack1"]
    wait_ok(rapi, rapi.ok("c.AddGroupTags('default', ['g'])"))
    assert rapi.ok("c.GetGroupTags('default')") == ["g"]
    wait_ok(rapi, create_instance(rapi))
    wait_ok(rapi, rapi.ok("c.AddInstanceTags(%r, ['web', 'prod'])" % INST))
    assert sorted(rapi.ok("c.GetInstanceTags(%r)" % INST)) == ["prod", "web"]
    wait_ok(rapi, rapi.ok("c.DeleteInstanceTags(%r, ['prod'])" % INST))
    assert rapi.ok("c.GetInstanceTags(%r)" % INST) == ["web"]


def test_cluster_tags_and_job_change(rapi):
    job = rapi.ok("c.AddClusterTags(['alpha'])")
    change = rapi.ok("c.WaitForJobChange(%d, ['status'], None, None)" % job)
    assert change["job_info"][0] in ("queued", "waiting", "running", "success")
    wait_ok(rapi, job)
    assert rapi.ok("c.GetClusterTags()", user=None) == ["alpha"]


def test_wait_is_a_long_poll(rapi):
    """/wait returns when the job changes, not at the 10 s timeout."""
    proc = rapi.cluster.run("gnt-debug", "delay", "--submit", "2")
    job = int(proc.stderr.split(":")[1])
    with rapi.http() as c:
        body = {"fields": ["status"], "previous_job_info": None, "previous_log_serial": None}
        first = c.request("GET", "/2/jobs/%d/wait" % job, json=body).json()
        status = first["job_info"][0]
        while status != "success":
            start = time.monotonic()
            body["previous_job_info"] = [status]
            answer = c.request("GET", "/2/jobs/%d/wait" % job, json=body).json()
            assert answer is not None and time.monotonic() - start < 8
            status = answer["job_info"][0]
        final = c.request("GET", "/2/jobs/%d/wait" % job, json=body).json()
        assert final["job_info"] == ["success"]  # finalized: answers at once
        assert c.request("GET", "/2/jobs/424242/wait", json=body).status_code == 404


def test_access_control(rapi):
    assert rapi.gclient("c.AddClusterTags(['x'])", user="ro")["code"] == 403
    assert rapi.gclient("c.AddClusterTags(['x'])", user="corral-admin",
                        password="wrong")["code"] == 401
    assert rapi.gclient("c.AddClusterTags(['x'])", user=None)["code"] == 401
    assert rapi.gclient("c.GetInfo()", user="ro")["ok"]["name"] == "localhost"
    with rapi.http(None) as c:
        resp = c.put("/2/tags?tag=x")
        assert resp.status_code == 401
        assert resp.headers["www-authenticate"] == 'Basic realm="Ganeti Remote API"'
    assert rapi.job_count() == 1  # only the cluster init job
    cl = rapi.cluster
    cl.env["CORRAL_RAPI_ARGS"] = "--require-authentication"
    cl.run("corral-daemon-util", "restart", "rapi")
    assert rapi.gclient("c.GetInfo()", user=None)["code"] == 401
    assert rapi.gclient("c.GetInfo()", user="ro")["ok"]["name"] == "localhost"


def test_users_file_changes_take_effect(rapi):
    path = rapi.cluster.path("var/lib/corral/rapi/users")
    with open(path, "a") as fh:
        fh.write("extra pw write\n")
    assert rapi.gclient("c.GetInfo()", user="extra", password="pw")["ok"]
    with open(path, "w") as fh:
        fh.write("# nobody\n")
    assert rapi.gclient("c.GetInfo()", user="extra", password="pw")["code"] == 401


BAD_REQUESTS = [
    # (method, path, kwargs, status)
    ("POST", "/2/instances", {"content": b'{"__version__": 1, "mode": ',
                              "headers": {"Content-Type": "application/json"}}, 400),
    ("POST", "/2/instances", {"content": b'{"__version__": 1}',
                              "headers": {"Content-Type": "text/plain"}}, 415),
    ("POST", "/2/instances", {"json": {"__version__": 1, "mode": "create", "name": "x.example.com",
                                       "disk_template": "diskless", "disks": [], "nics": [],
                                       "frobnicate": True}}, 400),
    ("POST", "/2/instances", {"json": {"__version__": 1, "mode": "create", "name": "y.example.com",
                                       "disk_template": "file", "disks": [{"size": -1024}],
                                       "nics": [], "os": "busybox"}}, 400),
    ("POST", "/2/instances", {"json": {"__version__": 1, "mode": "create",
                                       "name": "../../../etc/passwd",
                                       "disk_template": "diskless", "disks": [], "nics": []}},
     400),
    ("POST", "/2/instances", {"content": b'{"x": "' + b"a" * (4 << 20) + b'"}',
                              "headers": {"Content-Type": "application/json"}}, 413),
    ("PUT", "/2/instances/%2E%2E/startup", {}, 404),
    ("PUT", "/2/instances/..%2F..%2Fetc/startup", {}, 404),
    ("GET", "/2/instances/.hidden", {}, 404),
    ("GET", "/2/nosuchresource", {}, 404),
    ("GET", "/2/instances/nosuch.example.com", {}, 404),
    ("GET", "/2/jobs/999999", {}, 404),
    ("POST", "/2/info", {}, 501),
    ("PATCH", "/2/instances", {}, 405),
    ("PUT", "/2/groups/default/rename", {"json": {"new_name": "a/b"}}, 400),
    ("POST", "/2/instances/x/disk/0/grow", {"json": {"amount": -5}}, 400),
    ("GET", "/2/instances?bulk=yes", {}, 400),
    ("POST", "/2/instances", {"json": {"__version__": 1, "mode": "create",
                                       "name": "z.example.com", "disk_template": "file",
                                       "disks": [{"size": 64}], "nics": [], "os": "busybox",
                                       "file_storage_dir": "../../etc"}}, 400),
    ("PUT", "/2/instances/x.example.com/modify", {"json": [1, 2]}, 400),
    ("PUT", "/2/instances/x.example.com/modify", {"json": {"disks": [["add", -1,
                                                                      {"size": -5}]]}}, 400),
]


def test_bad_input_is_refused_and_creates_nothing(rapi):
    jobs = rapi.job_count()
    pid = rapi.rapi_pid()
    with rapi.http() as c:
        for method, path, kwargs, status in BAD_REQUESTS:
            resp = c.request(method, path, **kwargs)
            assert resp.status_code == status, (method, path, resp.text)
            assert resp.headers["content-type"] == "application/json"
            body = resp.json()
            assert set(body) == {"code", "message", "explain"} and body["code"] == status
            assert c.get("/version").json() == 2  # still serving
    assert rapi.job_count() == jobs
    assert rapi.rapi_pid() == pid
    assert rapi.ok("c.GetInstances()") == []


def test_hbal_reads_the_cluster(rapi):
    wait_ok(rapi, create_instance(rapi))
    # hbal -m HOST:PORT speaks plain HTTP; with a URL it uses HTTPS without cert checks.
    proc = subprocess.run(["hbal", "-m", "https://127.0.0.1:%d" % rapi.port],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Loaded 1 nodes, 1 instances" in proc.stdout
    assert "Initial score: " in proc.stdout
    assert "Error" not in proc.stdout + proc.stderr


def test_os_bulk_and_query_resources(rapi):
    with rapi.http(None) as c:
        oses = c.get("/2/os?bulk=1").json()
        busybox = [o for o in oses if o["name"] == "busybox"][0]
        assert busybox["valid"] is True and isinstance(busybox["parameters"], list)
        fields = c.get("/2/query/node/fields").json()["fields"]
        assert "name" in [f["name"] for f in fields]
    with rapi.http("ro") as c:
        data = c.get("/2/query/node?fields=name,role").json()
        assert data["data"] == [[[0, "localhost"], [0, "M"]]]
        body = {"fields": ["name"], "qfilter": ["=", "name", "localhost"]}
        assert json.loads(c.put("/2/query/node", json=body).text)["data"] == [[[0, "localhost"]]]


def test_export_through_the_client(rapi):
    """Ganeti's client: PrepareExport, ExportInstance, the export query and the
    DELETE that removes the export (gnt-backup's data path: test_backup.py)."""
    name = "exp1.example.com"
    wait_ok(rapi, rapi.ok("c.CreateInstance('create', %r, 'file', [{'size': 8}], [], os='busybox',"
                          " name_check=False, ip_check=False, hypervisor='fake', start=False)"
                          % name))
    job = rapi.ok("c.PrepareExport(%r, 'local')" % name)
    wait_ok(rapi, job)
    assert rapi.ok("c.GetJobStatus(%d)" % job)["opresult"] == [None]
    job = rapi.ok("c.PrepareExport(%r, 'remote')" % name)
    rapi.ok("c.WaitForJobCompletion(%d, period=1)" % job)
    status = rapi.ok("c.GetJobStatus(%d)" % job)
    assert status["status"] == "error" and "only exports to its own nodes" in \
        json.dumps(status["opresult"])

    job = rapi.ok("c.ExportInstance(%r, 'local', 'localhost', shutdown=True)" % name)
    wait_ok(rapi, job)
    assert rapi.ok("c.GetJobStatus(%d)" % job)["opresult"] == [[True, [True]]]
    assert rapi.ok("c.Query('export', ['node', 'export'])")["data"] == \
        [[[0, "localhost"], [0, name]]]
    with rapi.http() as c:
        job = int(c.delete("/2/instances/%s/export" % name).text)
    wait_ok(rapi, job)
    assert rapi.ok("c.Query('export', ['node', 'export'])")["data"] == []
    wait_ok(rapi, rapi.ok("c.DeleteInstance(%r)" % name))
