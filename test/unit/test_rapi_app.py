"""The RAPI application against a fake masterd: routing, access, bodies, shapes, errors."""

import base64
import json

import warnings

import pytest

with warnings.catch_warnings():  # starlette's notice about httpx versions
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from corral import constants, errors, opcodes
from corral.rapi import app as rapi_app
from corral.rapi import users as rapi_users

RS_NORMAL = constants.RS_NORMAL


class FakeMaster:
    """Answers masterd calls from tables; submitted opcodes are validated for real."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.jobs: list[list[dict]] = []
        self.raise_on: dict[str, errors.GenericError] = {}
        self.objects = {
            "instance": [{"name": "inst1.example.com", "beparams": {"maxmem": 256, "vcpus": 1},
                          "oper_state": True, "admin_state": "up", "status": "running"},
                         {"name": "inst0.example.com", "beparams": {"maxmem": 128},
                          "oper_state": False}],
            "node": [{"name": "node1", "sip": "10.0.0.1", "role": "M", "offline": False}],
            "group": [{"name": "default", "uuid": "g-uuid", "alloc_policy": "preferred"}],
        }
        self.job_rows = {1: {"id": 1, "status": "success", "opresult": [["x"]], "ops": [],
                             "summary": ["TEST_DELAY(1 ns)"], "opstatus": ["success"],
                             "received_ts": [1, 0], "start_ts": None, "end_ts": None,
                             "oplog": [[]]}}

    async def call(self, method: str, timeout: float | None = None, **args):
        self.calls.append((method, args))
        if method in self.raise_on:
            raise self.raise_on[method]
        return getattr(self, "_" + method)(**args)

    def _Query(self, what, fields, names, qfilter):
        items = sorted(self.objects[what], key=lambda o: o["name"])
        if names:
            known = {o["name"]: o for o in items}
            for name in names:
                if name not in known:
                    raise errors.OpPrereqError("%s '%s' not known" % (what, name),
                                               errors.ECODE_NOENT)
            items = [known[n] for n in names]
        rows = [[[RS_NORMAL, o[f]] if f in o else [constants.RS_UNKNOWN, None]
                 for f in fields] for o in items]
        return {"fields": [], "data": rows}

    async def call_raw(self, method: str, timeout: float | None = None, **args) -> bytes:
        return json.dumps(await self.call(method, timeout, **args)).encode()

    def _QueryDicts(self, what, fields, names):
        rows = self._Query(what, fields, names, None)["data"]
        return [dict(zip(fields, [c[1] if c[0] == RS_NORMAL else None for c in row]))
                for row in rows]

    def _QueryClusterInfo(self):
        return {"name": "cluster", "tags": ["a", "b"]}

    def _SubmitJob(self, ops):
        for op in ops:
            opcodes.from_dict(op)  # what masterd would refuse, the test refuses
        self.jobs.append(ops)
        return 100 + len(self.jobs)

    def _QueryJobs(self, job_ids, fields):
        ids = job_ids or sorted(self.job_rows)
        return [[self.job_rows[i][f] for f in fields] if i in self.job_rows else None
                for i in ids]

    def _CancelJob(self, job_id):
        return [False, "Job %d is no longer waiting in the queue" % job_id]

    def _WaitForJobChange(self, job_id, fields, prev_job_info, prev_log_serial):
        if job_id not in self.job_rows:
            raise errors.JobLost("Job %s not found" % job_id)
        return {"job_info": [self.job_rows[job_id][f] for f in fields], "log_entries": []}


def auth(user: str, password: str) -> dict:
    token = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
    return {"Authorization": "Basic " + token}


RW = auth("admin", "secret")
RO = auth("viewer", "pw")


@pytest.fixture
def master():
    return FakeMaster()


@pytest.fixture
def users_path(tmp_path):
    path = tmp_path / "users"
    path.write_text("admin {HA1}%s write\nviewer pw read\nnobody pw\n"
                    % rapi_users.ha1("admin", "secret"))
    return str(path)


@pytest.fixture
def client(master, users_path):
    app = rapi_app.RapiApp(rapi_users.UsersFile(users_path), master=master)
    with TestClient(app) as c:
        yield c


def assert_error(resp, code, word=None):
    assert resp.status_code == code, resp.text
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert set(body) == {"code", "message", "explain"} and body["code"] == code
    if word is not None:
        assert word in body["message"], body


# ---- basics and routing -------------------------------------------------------------

def test_root_version_features(client):
    assert client.get("/").json() is None
    assert client.get("/version").json() == 2
    resp = client.get("/2/features")
    assert resp.headers["content-type"] == "application/json"
    assert resp.headers["connection"] == "close"
    assert set(resp.json()) == {"instance-create-reqv1", "instance-reinstall-reqv1",
                                "node-migrate-reqv1", "node-evac-res1"}


@pytest.mark.parametrize("path", ["/2/nosuch", "/3/info", "/2/instances/",
                                  "/2/instances/.hidden", "/2/instances/a%2Fb",
                                  "/2/instances/../../etc/passwd", "/2/jobs/abc",
                                  "/2/instances/x/disk/a/grow", "/2/nodes/x y"])
def test_unknown_paths_are_404(client, master, path):
    assert_error(client.get(path), 404)
    assert not master.jobs


def test_dot_names_never_match():
    # HTTP clients normalise "..", so check the route table itself.
    for path in ("/2/instances/..", "/2/instances/../startup", "/2/nodes/./role",
                 "/2/groups/../tags", "/2/instances/a/../b"):
        assert rapi_app.match_route(path) == (None, None), path
    assert rapi_app.match_route("/2/instances/a.b-c_d")[1] == {"name": "a.b-c_d"}


def test_unsupported_methods(client):
    assert_error(client.post("/2/info", headers=RW), 501, "unsupported")
    resp = client.request("PATCH", "/2/instances", headers=RW)
    assert_error(resp, 405)
    assert resp.headers["allow"] == "GET, POST"


# ---- authentication and authorization -------------------------------------------------

def test_access_rules(client, master):
    assert client.get("/2/info").status_code == 200  # anonymous read
    resp = client.put("/2/tags?tag=x")
    assert_error(resp, 401)
    assert resp.headers["www-authenticate"] == 'Basic realm="Ganeti Remote API"'
    assert_error(client.put("/2/tags?tag=x", headers=auth("admin", "wrong")), 401)
    assert_error(client.put("/2/tags?tag=x", headers=auth("ghost", "secret")), 401)
    assert_error(client.put("/2/tags?tag=x", headers=RO), 403)
    assert_error(client.put("/2/tags?tag=x", headers=auth("nobody", "pw")), 403)
    assert not master.jobs
    assert client.put("/2/tags?tag=x", headers=RW).json() == 101
    # credentials are checked even where anonymous access would do
    assert_error(client.get("/2/info", headers=auth("admin", "wrong")), 401)
    assert client.get("/2/info", headers=auth("nobody", "pw")).status_code == 200
    assert_error(client.get("/2/info", headers={"Authorization": "Digest abc"}), 401)
    assert_error(client.get("/2/info", headers={"Authorization": "Basic !!!"}), 401)


def test_read_access_resources(client):
    assert_error(client.get("/2/instances/inst1.example.com/console"), 401)
    assert_error(client.get("/2/jobs/1/wait", headers=RO), 403)
    assert_error(client.get("/2/nodes/node1/storage?storage_type=file&output_fields=name",
                            headers=RO), 403)


def test_require_authentication(master, users_path):
    app = rapi_app.RapiApp(rapi_users.UsersFile(users_path), require_auth=True, master=master)
    with TestClient(app) as c:
        assert_error(c.get("/2/info"), 401)
        assert c.get("/2/info", headers=RO).status_code == 200
        assert c.get("/2/info", headers=auth("nobody", "pw")).status_code == 200


# ---- bodies ----------------------------------------------------------------------------

def test_body_checks(client, master):
    url = "/2/instances/inst1.example.com/rename"
    assert_error(client.put(url, content=b"{", headers=dict(RW, **{
        "Content-Type": "application/json"})), 400, "JSON")
    assert_error(client.put(url, content=b'{"new_name": "x"}', headers=dict(RW, **{
        "Content-Type": "text/plain"})), 415)
    big = b'{"new_name": "' + b"x" * (2 << 20) + b'"}'
    assert_error(client.put(url, content=big, headers=dict(RW, **{
        "Content-Type": "application/json"})), 413)
    assert_error(client.put(url, json={"new_name": "n.example.com", "frob": 1}, headers=RW),
                 400, "Invalid body parameters")
    assert_error(client.put(url, json={"new_name": 5}, headers=RW), 400, "new_name")
    assert_error(client.put(url, json={"new_name": "../../x"}, headers=RW), 400)
    assert_error(client.put(url, json={"new_name": "n", "instance_name": "other"},
                            headers=RW), 400, "static")
    assert_error(client.put(url, json=["new_name"], headers=RW), 400)
    assert_error(client.put(url, json={}, headers=RW), 400, "required")
    assert not master.jobs
    assert client.put(url, json={"new_name": "n.example.com", "name_check": False},
                      headers=RW).json() == 101
    op = master.jobs[0][0]
    assert op["OP_ID"] == "OP_INSTANCE_RENAME" and op["instance_name"] == "inst1.example.com"


def test_reason_trail_and_dry_run(client, master):
    client.post("/2/instances/inst1.example.com/reboot?dry-run=1&reason=maint", headers=RW)
    op = master.jobs[0][0]
    assert op["reboot_type"] == "hard" and op["dry_run"] is True
    assert [r[:2] for r in op["reason"]] == [
        ["gnt:user", "maint"], ["gnt:library:rlib2:instances_name_reboot", ""]]
    assert all(isinstance(r[2], int) for r in op["reason"])
    assert_error(client.post("/2/instances/i/reboot?dry-run=yes", headers=RW), 400)
    assert_error(client.post("/2/instances/i/reboot?type=gentle", headers=RW), 400)


CREATE = {"__version__": 1, "mode": "create", "name": "new.example.com",
          "disk_template": "diskless", "disks": [], "nics": [], "os": "busybox",
          "no_install": True, "ip_check": False, "name_check": False}


def test_instance_create(client, master):
    assert client.post("/2/instances", json=CREATE, headers=RW).json() == 101
    op = master.jobs[0][0]
    assert op["instance_name"] == "new.example.com" and op["os_type"] == "busybox"
    assert "__version__" not in op and "name" not in op
    cases = [
        (dict(CREATE, __version__=0), "no longer supported"),
        ({k: v for k, v in CREATE.items() if k != "__version__"}, "no longer supported"),
        (dict(CREATE, __version__=2), "version"),
        (dict(CREATE, instance_name="x.example.com"), "alias"),
        (dict(CREATE, disk_template="file", disks=[{"size": -1}]), "positive"),
        (dict(CREATE, disk_template="file", disks=[{"size": "big"}]), "positive"),
        (dict(CREATE, name="../etc/passwd"), "valid name"),
        (dict(CREATE, nics={"a": 1}), "nics"),
        (dict(CREATE, bogus=True), "bogus"),
        (dict(CREATE, file_storage_dir="../../etc"), ".."),
    ]
    for body, word in cases:
        assert_error(client.post("/2/instances", json=body, headers=RW), 400, word)
    assert len(master.jobs) == 1


def test_instance_modify_reinstall_startup(client, master):
    url = "/2/instances/inst1.example.com"
    client.put(url + "/modify", json={"custom_beparams": {"maxmem": 512}}, headers=RW)
    assert master.jobs[-1][0]["beparams"] == {"maxmem": 512}
    assert_error(client.put(url + "/modify", json={"disks": [["add", -1, {"size": -5}]]},
                            headers=RW), 400, "positive")
    client.post(url + "/reinstall", json={"os": "busybox", "start": False}, headers=RW)
    assert [o["OP_ID"] for o in master.jobs[-1]] == ["OP_INSTANCE_SHUTDOWN",
                                                    "OP_INSTANCE_REINSTALL"]
    client.post(url + "/reinstall?os=busybox", headers=RW)
    assert [o["OP_ID"] for o in master.jobs[-1]][-1] == "OP_INSTANCE_STARTUP"
    assert_error(client.post(url + "/reinstall?os=x", json={"os": "y"}, headers=RW), 400)
    client.put(url + "/startup?force=1&no_remember=1", headers=RW)
    assert master.jobs[-1][0]["force"] and master.jobs[-1][0]["no_remember"]
    client.post(url + "/replace-disks?mode=replace_auto&disks=0,1&early_release=1", headers=RW)
    op = master.jobs[-1][0]
    assert op["disks"] == [0, 1] and "early_release" not in op
    client.post(url + "/disk/0/grow", json={"amount": 1024}, headers=RW)
    assert master.jobs[-1][0]["disk"] == 0
    assert_error(client.post(url + "/disk/0/grow", json={"amount": -1}, headers=RW), 400)
    client.request("DELETE", url, json={"shutdown_timeout": 5}, headers=RW)
    assert master.jobs[-1][0]["shutdown_timeout"] == 5
    assert master.jobs[-1][0]["ignore_failures"] is False


# ---- list shapes and lookups -------------------------------------------------------------

def test_instance_lists(client, master):
    assert client.get("/2/instances").json() == [
        {"id": "inst0.example.com", "uri": "/2/instances/inst0.example.com"},
        {"id": "inst1.example.com", "uri": "/2/instances/inst1.example.com"}]
    bulk = client.get("/2/instances?bulk=1").json()
    assert [set(i) for i in bulk] == [set(rapi_app.rlib_instances.I_FIELDS)] * 2
    assert bulk[1]["beparams"]["maxmem"] == 256 and bulk[1]["oper_state"] is True
    assert bulk[0]["nic.ips"] is None
    one = client.get("/2/instances/inst1.example.com").json()
    assert one == bulk[1]
    # bulk lists are masterd's QueryDicts text, passed through undecoded
    assert ("QueryDicts", {"what": "instance", "fields": rapi_app.rlib_instances.I_FIELDS,
                           "names": []}) in master.calls
    assert_error(client.get("/2/instances/nosuch.example.com"), 404, "not known")
    assert_error(client.get("/2/instances/nosuch.example.com/tags"), 404)
    assert_error(client.get("/2/instances?bulk=x"), 400)


def test_nodes_and_groups(client, master):
    assert client.get("/2/nodes").json() == [{"id": "node1", "uri": "/2/nodes/node1"}]
    node = client.get("/2/nodes/node1").json()
    assert node["secondary_ip"] == "10.0.0.1"
    assert client.get("/2/nodes/node1/role").json() == "master"
    assert client.get("/2/groups").json() == [{"name": "default", "uri": "/2/groups/default"}]
    assert set(client.get("/2/groups?bulk=1").json()[0]) == set(rapi_app.rlib_groups.G_FIELDS)
    client.put("/2/nodes/node1/role?force=1", json="regular", headers=RW)
    op = master.jobs[-1][0]
    assert (op["master_candidate"], op["offline"], op["drained"], op["force"]) == (
        False, False, False, True)
    client.put("/2/nodes/node1/role", json="drained", headers=RW)
    assert master.jobs[-1][0]["drained"] is True and "offline" not in master.jobs[-1][0] or \
        master.jobs[-1][0]["offline"] is None
    assert_error(client.put("/2/nodes/node1/role", json="master", headers=RW), 400)
    assert_error(client.put("/2/nodes/node1/role", json="boss", headers=RW), 400)
    client.post("/2/nodes/node1/migrate?live=0", headers=RW)
    assert master.jobs[-1][0]["mode"] == "non-live"
    client.post("/2/groups", json={"name": "g2", "alloc_policy": "last_resort"}, headers=RW)
    assert master.jobs[-1][0]["group_name"] == "g2"
    assert_error(client.post("/2/groups", json={"name": ".."}, headers=RW), 400)
    client.put("/2/groups/g2/modify", json={"custom_ndparams": {"spindle_count": 2}},
               headers=RW)
    assert master.jobs[-1][0]["ndparams"] == {"spindle_count": 2}


def test_tags(client, master):
    assert client.get("/2/tags").json() == ["a", "b"]
    assert_error(client.put("/2/tags", headers=RW), 400)
    client.delete("/2/nodes/node1/tags?tag=a&tag=b&dry-run=1", headers=RW)
    op = master.jobs[-1][0]
    assert (op["OP_ID"], op["kind"], op["name"], op["tags"], op["dry_run"]) == (
        "OP_TAGS_DEL", "node", "node1", ["a", "b"], True)


# ---- jobs --------------------------------------------------------------------------------

def test_jobs(client, master):
    assert client.get("/2/jobs").json() == [{"id": 1, "uri": "/2/jobs/1"}]
    bulk = client.get("/2/jobs?bulk=1").json()
    assert set(bulk[0]) == set(rapi_app.rlib_jobs.J_FIELDS_BULK)
    job = client.get("/2/jobs/1").json()
    assert set(job) == set(rapi_app.rlib_jobs.J_FIELDS) and job["id"] == 1
    assert_error(client.get("/2/jobs/99"), 404)
    assert_error(client.delete("/2/jobs/99", headers=RW), 404)
    assert client.delete("/2/jobs/1", headers=RW).json()[0] is False
    wait = client.request("GET", "/2/jobs/1/wait", headers=RW,
                          json={"fields": ["status"], "previous_job_info": None,
                                "previous_log_serial": None})
    assert wait.json() == {"job_info": ["success"], "log_entries": []}
    assert_error(client.request("GET", "/2/jobs/99/wait", headers=RW,
                                json={"fields": ["status"]}), 404)
    for body in ({}, {"fields": "status"}, {"fields": ["status"], "previous_log_serial": "1"},
                 {"fields": ["status"], "previous_job_info": 3}):
        assert_error(client.request("GET", "/2/jobs/1/wait", headers=RW, json=body), 400)


# ---- errors from masterd ---------------------------------------------------------------------

@pytest.mark.parametrize("err,code", [
    (errors.JobQueueDrainError("Job queue is drained, refusing job"), 503),
    (errors.JobQueueFull("Job queue is full, needs archiving"), 503),
    (errors.NoMasterError("Cannot communicate with the master daemon"), 502),
    (errors.ProtocolError("Timeout waiting", "timeout"), 504),
    (errors.OpPrereqError("Bad <thing>", errors.ECODE_INVAL), 400),
    (errors.OpExecError("boom"), 500),
])
def test_master_errors(client, master, err, code):
    master.raise_on["SubmitJob"] = err
    resp = client.put("/2/tags?tag=x", headers=RW)
    assert_error(resp, code)
    if "<" in err.args[0]:
        assert "&lt;thing&gt;" in resp.json()["message"]


def test_handler_bug_is_500_and_server_goes_on(client, master, monkeypatch):
    async def broken(req):
        raise KeyError("oops")
    rte, _ = rapi_app.match_route("/2/info")
    monkeypatch.setitem(rte.methods, "GET", (broken, ()))
    assert_error(client.get("/2/info"), 500, "KeyError")
    assert client.get("/version").json() == 2


def test_console_needs_running_instance(client, master):
    assert_error(client.get("/2/instances/inst0.example.com/console", headers=RO), 503)
    assert not master.jobs


def test_every_route_name_is_unique():
    names = [r.name for r in rapi_app.ROUTES]
    assert len(names) == len(set(names))
    json.dumps(names)
