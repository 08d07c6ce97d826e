"""A real one-node cluster (fake hypervisor) under a temporary CORRAL_ROOT, on loopback."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

import pytest

BIN = os.path.dirname(sys.executable)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    def __init__(self, root: str, port: int) -> None:
        self.root = root
        self.env = dict(os.environ, CORRAL_ROOT=root, CORRAL_HOSTNAME="localhost",
                        CORRAL_NODED_PORT=str(port), PATH=BIN + ":" + os.environ["PATH"])
        self.port = port
        # corral-rapi starts with the master daemons: give each cluster its own port.
        self.rapi_port = free_port()
        self.env["CORRAL_RAPI_PORT"] = str(self.rapi_port)

    def run(self, *argv: str, check: bool = True, timeout: float = 120,
            input: str | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(list(argv), env=self.env, capture_output=True, text=True,
                              timeout=timeout, input=input)
        if check and proc.returncode != 0:
            raise AssertionError("%s failed (%d):\nstdout: %s\nstderr: %s" %
                                 (" ".join(argv), proc.returncode, proc.stdout, proc.stderr))
        return proc

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def pid(self, daemon: str) -> int:
        try:
            with open(self.path("var", "run", "corral", daemon + ".pid")) as fh:
                return int(fh.read().strip())
        except (OSError, ValueError):
            return 0

    def kill_all(self) -> None:
        """Kill every process whose environment names this root (daemons and children)."""
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/environ" % pid, "rb") as fh:
                    environ = fh.read()
            except OSError:
                continue
            if ("CORRAL_ROOT=%s" % self.root).encode() + b"\0" in environ + b"\0":
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass


def new_cluster(prefix: str = "corral-it-") -> LocalCluster:
    """A cluster object for a fresh root; ``init_cluster`` then makes it real.

    Made before init so that the fixture's cleanup (destroy_local) also runs
    when init fails half-way and left daemons behind.
    """
    return LocalCluster(tempfile.mkdtemp(dir="/tmp", prefix=prefix), free_port())


def init_cluster(cluster: LocalCluster, *extra: str) -> LocalCluster:
    cluster.run("gnt-cluster", "init", "--enabled-hypervisors=fake",
                "--enabled-disk-templates=diskless,file",
                "--file-storage-dir=%s" % cluster.path("srv", "file"), *extra, "localhost")
    return cluster


def destroy_local(cluster: LocalCluster) -> None:
    """Stop everything of a test cluster, also one whose init failed half-way."""
    cluster.run("corral-daemon-util", "stop-all", check=False)
    cluster.kill_all()
    shutil.rmtree(cluster.root, ignore_errors=True)


def initialised_cluster():
    """A new initialised cluster for a fixture to yield; destroyed whatever happened."""
    cl = new_cluster()
    try:
        init_cluster(cl)
        yield cl
    finally:
        destroy_local(cl)


@pytest.fixture
def cluster():
    yield from initialised_cluster()
