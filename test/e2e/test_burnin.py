"""tools/burnin on the shared 3-node vclusters (issue 7 and 9 acceptance).

Fake hypervisor: 20 instances with the file and the sharedfile template and
every operation the template supports; kvm (TCG busybox guests): 3 sharedfile
instances, and 2 mirror instances whose copies are compared afterwards.
Each run removes its instances, so the shared clusters are left as found.
"""

import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BURNIN = [sys.executable, os.path.join(REPO, "tools", "burnin")]
COMMON = ["-o", "busybox", "--no-name-check", "--no-ip-check", "--disk-size", "16m",
          "--disk-growth", "8m"]


def burnin(vc, *argv, timeout=1800) -> subprocess.CompletedProcess:
    return subprocess.run(BURNIN + list(argv), env=vc.env(), capture_output=True, text=True,
                          timeout=timeout)


def summary(out: str) -> dict[str, str]:
    """{step: PASS|FAIL|SKIP|NOT RUN} from the summary table."""
    table = out.split("Burnin summary", 1)[1].splitlines()[1:]
    rows = {}
    for line in table:
        m = re.match(r"^  (\S+)\s+(PASS|FAIL|SKIP|NOT RUN)\b", line)
        if m:
            rows[m.group(1)] = m.group(2)
    return rows


def no_instances_left(vc) -> bool:
    return vc.gnt("gnt-instance", "list", "--no-headers", "-o", "name").stdout.strip() == ""


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("template,expected", [
    ("file", {"move"}),
    ("sharedfile", {"failover", "migrate"}),
])
def test_burnin_fake_20_instances(vcluster, template, expected):
    names = ["bn%s%02d" % (template[:2], i) for i in range(20)]
    proc = burnin(vcluster, *COMMON, "-t", template, "-p", "--rename", "bnspare", *names)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    steps = summary(proc.stdout)
    must_pass = {"create", "grow-disk", "reinstall", "reboot", "add-remove-disks",
                 "add-remove-nics", "activate-disks", "stop-start", "rename", "remove"}
    assert {s for s, st in steps.items() if st == "PASS"} == must_pass | expected
    assert steps["replace-disks"] == "SKIP" and "Result: all" in proc.stdout
    assert no_instances_left(vcluster)


def test_burnin_failure_is_loud_and_cleans_up(vcluster):
    proc = burnin(vcluster, "-o", "nosuch-os", "-t", "file", "--no-name-check",
                  "--no-ip-check", "--disk-size", "16m", "bnbad1", "bnbad2")
    assert proc.returncode == 1
    steps = summary(proc.stdout)
    assert steps["create"] == "FAIL" and steps["reboot"] == "NOT RUN"
    assert "nosuch-os" in proc.stdout and "Result: FAILED" in proc.stdout
    assert no_instances_left(vcluster)
    refused = burnin(vcluster, "-o", "busybox", "-t", "plain", "--no-name-check", "bnbad3")
    assert refused.returncode == 1
    assert "Disk template 'plain' is not enabled in the cluster" in refused.stderr


@pytest.mark.timeout(3600)
def test_burnin_kvm_3_instances(kvm_vcluster):
    names = ["bnkvm%d" % i for i in range(3)]
    proc = burnin(kvm_vcluster, "-o", "busybox", "--no-name-check", "--no-ip-check", "-p",
                  "-t", "sharedfile", "--disk-size", "64m", "--disk-growth", "16m",
                  "--rename", "bnkvmspare", "--shutdown-timeout", "60", *names, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    steps = summary(proc.stdout)
    for step in ("create", "failover", "migrate", "reinstall", "reboot", "stop-start",
                 "rename", "remove"):
        assert steps[step] == "PASS", (step, proc.stdout[-3000:])
    assert no_instances_left(kvm_vcluster)



@pytest.mark.timeout(1800)
def test_burnin_mirror_kvm_2_instances(kvm_vcluster):
    """Issue 9: every step the mirror template supports, on real (TCG) guests whose
    writes are replicated (only ``move`` does not apply); afterwards each guest
    boots and, once stopped, its two images are identical."""
    from test_mirror_kvm import image_paths, md5
    from test_mobility_kvm import primary, tick
    vk = kvm_vcluster
    names = ["bnmir%d" % i for i in range(2)]
    try:
        proc = burnin(vk, "-o", "busybox", "--no-name-check", "--no-ip-check", "-p", "-K",
                      "-t", "mirror", "--disk-size", "64m", "--disk-growth", "16m",
                      "--rename", "bnmirspare", "--shutdown-timeout", "60",
                      *names, timeout=1800)
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
        steps = summary(proc.stdout)
        assert steps.pop("move") == "SKIP" and steps.pop("remove") == "SKIP"
        assert set(steps.values()) == {"PASS"}, steps
        assert {"replace-disks", "replace-secondary", "grow-disk", "failover", "migrate",
                "add-remove-disks", "rename"} <= set(steps)
        for name in names:
            tick(vk, primary(vk, name), name)
            vk.gnt("gnt-instance", "shutdown", "--timeout=60", name)
            sums = {node: md5(path) for node, path in image_paths(vk, name).items()}
            assert len(sums) == 2 and len(set(sums.values())) == 1, (name, sums)
    finally:
        for name in names + ["bnmirspare"]:
            vk.gnt("gnt-instance", "remove", "-f", name, check=False)
    assert no_instances_left(vk)
    for node in vk.vc.nodes:  # no image left behind on either end of a mirror
        for name in names + ["bnmirspare"]:
            left = os.path.join(node.root, "file", name)
            assert not os.path.isdir(left) or not os.listdir(left), (node.short, left)
