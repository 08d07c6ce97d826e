"""Shared pieces of the RAPI integration tests: the fixture and a Ganeti client runner.

The client is Debian's python3-ganeti-rapi (the real one), which lives in the
system python's dist-packages, so each call runs ``/usr/bin/python3`` on a
small script; the answer comes back as JSON on stdout.
"""

import json
import os
import subprocess
import textwrap

import httpx
import pytest

from conftest import BIN, LocalCluster, destroy_local, init_cluster, new_cluster

SYSTEM_PYTHON = "/usr/bin/python3"
_PRELUDE = textwrap.dedent("""\
    import json, os, sys
    from ganeti.rapi import client as rc
    user = os.environ.get("RAPI_USER") or None
    c = rc.GanetiRapiClient(os.environ["RAPI_HOST"], port=int(os.environ["RAPI_PORT"]),
                            username=user, password=os.environ.get("RAPI_PASSWORD") if user
                            else None)
    try:
        result = eval(sys.argv[1])
        print(json.dumps({"ok": result}))
    except rc.GanetiApiError as err:
        print(json.dumps({"error": str(err), "code": err.code}))
    """)


def ganeti_client_available() -> bool:
    return os.path.exists(SYSTEM_PYTHON) and subprocess.run(
        [SYSTEM_PYTHON, "-c", "import ganeti.rapi.client"], capture_output=True).returncode == 0


class RapiCluster:
    def __init__(self, cluster: LocalCluster, info: dict) -> None:
        self.cluster = cluster
        self.info = info
        self.port = cluster.rapi_port
        self.base = "https://127.0.0.1:%d" % self.port

    def http(self, user: str | None = "rw") -> httpx.Client:
        auth = None
        if user == "rw":
            auth = (self.info["user"], self.info["password"])
        elif user == "ro":
            auth = (self.info["ro_user"], self.info["ro_password"])
        return httpx.Client(base_url=self.base, verify=False, auth=auth, timeout=60)

    def gclient(self, expr: str, user: str | None = "rw", password: str | None = None,
                timeout: float = 120) -> dict:
        """Evaluate ``expr`` (using the client ``c``) in the system python; its JSON result."""
        env = dict(os.environ, RAPI_HOST="127.0.0.1", RAPI_PORT=str(self.port))
        env.pop("PYTHONPATH", None)
        if user == "rw":
            env.update(RAPI_USER=self.info["user"], RAPI_PASSWORD=self.info["password"])
        elif user == "ro":
            env.update(RAPI_USER=self.info["ro_user"], RAPI_PASSWORD=self.info["ro_password"])
        elif user is not None:
            env.update(RAPI_USER=user, RAPI_PASSWORD=password or "")
        proc = subprocess.run([SYSTEM_PYTHON, "-c", _PRELUDE, expr], env=env, cwd="/",
                              capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def ok(self, expr: str, user: str | None = "rw"):
        answer = self.gclient(expr, user)
        assert "ok" in answer, answer
        return answer["ok"]

    def job_count(self) -> int:
        with self.http(None) as c:
            return len(c.get("/2/jobs").json())

    def rapi_pid(self) -> int:
        return self.cluster.pid("rapi")


@pytest.fixture
def rapi():
    """A one-node cluster whose corral-rapi runs on its own port with two users."""
    if not ganeti_client_available():
        pytest.fail("python3-ganeti-rapi is not installed (make deps)")
    cl = new_cluster("corral-rapi-it-")
    try:
        init_cluster(cl)
        proc = cl.run(os.path.join(BIN, "python"), "-m", "corral.rapi.users",
                      "--vcluster-setup", "--host", "127.0.0.1")
        with open(proc.stdout.strip()) as fh:
            info = json.load(fh)
        assert cl.pid("rapi"), "corral-rapi was not started with the master daemons"
        yield RapiCluster(cl, info)
    finally:
        destroy_local(cl)
