"""A PV guest's life through Corral on a real Xen 4.17 dom0 (issue 8 acceptance).

tools/xen-nested boots Xen nested under QEMU TCG; dom0 runs this checkout's
Corral from the host's read-only filesystem.  The scenario below runs in dom0
as root: a one-node cluster with only xen-pvm, a diskless PV instance booting
the generic kernel and the busybox initrd of the xen-nested cache (it prints
CORRAL-GUEST-UP on hvc0), list, shutdown, remove.  Each step leaves
``<name>.out`` and ``<name>.rc`` in the shared work directory, which the test
reads.  The domU console log is written by dom0's xenconsoled into the same
directory.  Diskless and without NICs because disks and vifs need the Xen
hotplug scripts (and a bridge) in dom0, which this minimal dom0 does not
set up.

Slow: with a warm cache, 4 to 8 minutes on a loaded 2-core machine, almost
all of it Python start-up inside the nested dom0.  The first run also downloads
about 75 MB with apt-get.
"""

import os
import shutil
import subprocess

import pytest

from corral.tools import xen_nested

# Booting Xen and a Python node daemon in a dom0 under TCG takes about 9 minutes
# on this 2-core machine, beyond what the whole suite may spend in CI; the test
# runs on demand: CORRAL_TEST_XEN_NESTED=1 pytest -m slow test/e2e/test_xen_nested.py
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.environ.get("CORRAL_TEST_XEN_NESTED") != "1",
                                 reason="nested Xen runs on demand (CORRAL_TEST_XEN_NESTED=1):"
                                        " about 9 minutes, over CI's time budget")]

NAME = "pv1.xen.test"
TIMEOUT = 1200.0
REPO = xen_nested.repo_dir()

# corral-rapi is left off dom0's PATH: daemon_util starts only daemons it
# finds, and every Python daemon costs half a minute of start-up nested.
SCENARIO = r"""
export CORRAL_ROOT=/tmp/corral CORRAL_HOSTNAME=localhost CORRAL_NODED_PORT=1811
mkdir -p /opt/corral-bin $CORRAL_ROOT
for f in {venv_bin}/*; do
    case "$f" in *corral-rapi) ;; *) ln -s "$f" /opt/corral-bin/ ;; esac
done
export PATH=/opt/corral-bin:$PATH
step() {{
    n=$1; shift
    "$@" > /xen-work/$n.out 2>&1
    rc=$?; echo $rc > /xen-work/$n.rc
    echo "step $n rc=$rc uptime=$(cut -d' ' -f1 /proc/uptime)" > /dev/hvc0
    return $rc
}}
step init gnt-cluster init --enabled-hypervisors=xen-pvm \
    --enabled-disk-templates=diskless localhost || exit 1
step add gnt-instance add -t diskless --no-install --no-nics --no-name-check \
    --no-ip-check -B maxmem=128,minmem=128 \
    -H xen-pvm:kernel_path={kernel},initrd_path={initrd},root_path=,kernel_args=quiet \
    {name} &&
step marker timeout 300 sh -c \
    "tail -n +1 -F /xen-work/console/guest-{name}.log 2>/dev/null | grep -m1 CORRAL-GUEST-UP"
step list_up gnt-instance list --no-headers -o name,status,oper_state,oper_ram {name}
step xl_up xl list
step shutdown gnt-instance shutdown --timeout=120 {name}
step xl_down xl list
step list_down gnt-instance list --no-headers -o name,status {name}
step remove gnt-instance remove -f {name}
step list_removed gnt-instance list --no-headers -o name
step leftovers sh -c "xl list; find $CORRAL_ROOT -name '*{name}*' -not -path '*/log/*'"
cp -a $CORRAL_ROOT/var/log/corral /xen-work/corral-logs
"""


def _step(workdir: str, name: str) -> tuple[int | None, str]:
    try:
        with open(os.path.join(workdir, name + ".rc")) as fh:
            rc: int | None = int(fh.read().strip())
    except (OSError, ValueError):
        rc = None
    try:
        with open(os.path.join(workdir, name + ".out"), errors="replace") as fh:
            return rc, fh.read()
    except OSError:
        return rc, ""


def _ok(workdir: str, name: str) -> str:
    rc, out = _step(workdir, name)
    assert rc == 0, "step %s: rc=%s\n%s" % (name, rc, out)
    return out


@pytest.fixture
def xen_workdir(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root (9p export of /, apt-get download)")
    for tool in ("qemu-system-x86_64", "apt-get", "dpkg"):
        if not shutil.which(tool):
            pytest.skip("%s missing" % tool)
    if not os.path.exists("/bin/busybox"):
        pytest.skip("busybox-static missing")
    yield str(tmp_path)


def test_pv_guest_lifecycle_on_nested_xen(xen_workdir):
    art = xen_nested.prepare()
    script = SCENARIO.format(venv_bin=os.path.join(REPO, ".venv", "bin"), kernel=art.kernel,
                             initrd=art.guest_initrd, name=NAME)
    try:
        rc, console = xen_nested.run_scenario(art, script, xen_workdir, timeout=TIMEOUT)
    finally:
        # run_scenario kills QEMU on every path; make sure nothing of ours stayed.
        leftover = subprocess.run(["pgrep", "-f", "fsdev local,id=work,path=%s," % xen_workdir],
                                  capture_output=True, text=True).stdout.split()
        assert leftover == []
    assert "DOM0-UP xen" in console
    _ok(xen_workdir, "init")
    assert "Failure" not in _ok(xen_workdir, "add")
    guest_log = os.path.join(xen_workdir, "console", "guest-%s.log" % NAME)
    assert "CORRAL-GUEST-UP xen" in _ok(xen_workdir, "marker")
    assert _ok(xen_workdir, "list_up").split() == [NAME, "running", "Y", "128M"]
    up = [line.split() for line in _ok(xen_workdir, "xl_up").splitlines()]
    assert [row[0] for row in up[1:]] == ["Domain-0", NAME]
    _ok(xen_workdir, "shutdown")
    # xl shutdown asked the guest: its kernel ran /sbin/poweroff (a clean shutdown).
    with open(guest_log, errors="replace") as fh:
        assert "CORRAL-GUEST-DOWN" in fh.read()
    assert NAME not in _ok(xen_workdir, "xl_down")
    assert _ok(xen_workdir, "list_down").split() == [NAME, "ADMIN_down"]
    _ok(xen_workdir, "remove")
    assert _ok(xen_workdir, "list_removed").strip() == ""
    leftovers = _ok(xen_workdir, "leftovers")
    assert NAME not in leftovers and "Domain-0" in leftovers
    assert rc == 0
