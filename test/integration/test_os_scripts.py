"""Real OS definitions run through corral.osdef's runners.

* Debian's ganeti-os-noop (apt package, /usr/share/ganeti/os/noop): create,
  export and import of a raw file.
* Debian's ganeti-instance-debootstrap: fetched with `apt-get download` and
  unpacked with `dpkg -x` into a cache dir, because installing it pulls udev
  (PLATFORM.md §6); verify here (its full create is
  test_instances_debootstrap's, through gnt-instance add).
* Corral's own os-definitions/debootstrap: verify, export/import, rename,
  the failing "disk too small" create, mirror detection and (slow) a full create.

Needs root (losetup, mount), the packages ganeti-os-noop, debootstrap and
e2fsprogs, and for the slow tests the machine's configured Debian mirror.
"""

import fcntl
import glob
import os
import shutil
import subprocess
import time

import pytest

from corral import errors, osdef, pathutils

NOOP_DIR = "/usr/share/ganeti/os"
CACHE_DIR = os.environ.get("CORRAL_TEST_CACHE", "/var/tmp/corral-test-cache")
SHIPPED = pathutils.shipped_os_dir()
MiB = 1024 * 1024


def run(argv, **kwargs):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)


def loops_of(path):
    """Loop devices currently backed by ``path``."""
    out = run(["losetup", "-j", str(path), "-O", "NAME", "-n"]).stdout
    return [ln.strip() for ln in out.splitlines() if ln.strip()]


def release_loops(path):
    """Unmount and detach whatever a failed script left attached to ``path``."""
    for dev in loops_of(path):
        targets = subprocess.run(["findmnt", "-n", "-o", "TARGET", "-S", dev],
                                 capture_output=True, text=True).stdout.split()
        for target in reversed(targets):
            subprocess.run(["umount", "-R", "-l", target], check=False)
        subprocess.run(["losetup", "-d", dev], check=False)


@pytest.fixture
def root(tmp_path, monkeypatch):
    r = tmp_path / "root"
    r.mkdir()
    monkeypatch.setenv("CORRAL_ROOT", str(r))
    return r


@pytest.fixture
def raw_files(tmp_path):
    """Factory of raw disk files; any loop device left on them is released."""
    made = []

    def make(name, size, data=None):
        path = tmp_path / name
        with open(path, "wb") as fh:
            if data is not None:
                fh.write(data)
            fh.truncate(size)
        made.append(path)
        return path

    yield make
    for path in made:
        release_loops(path)


def inst_args(os_name, name, disk_paths, sizes_mib, hvparams=None):
    inst = {"name": name, "uuid": "uuid-" + name, "os": os_name, "primary_node": "node1",
            "secondary_nodes": [], "ctime": 1.0, "mtime": 2.0}
    disks = [{"path": str(p), "mode": "rw", "size": s, "uuid": "d%d" % i, "dev_type": "file",
              "file_driver": "loop"}
             for i, (p, s) in enumerate(zip(disk_paths, sizes_mib))]
    nics = [{"mac": "aa:00:00:11:22:33", "ip": None, "mode": "bridged", "link": "br0",
             "uuid": "nic0"}]
    return inst, disks, nics, "kvm", hvparams or {"serial_console": True}, {"maxmem": 512}


def roundtrip(os_name, src, dst, tmp_path, name="inst1"):
    """Export ``src`` and import it into ``dst`` through the runners; return the size."""
    sizes = [os.path.getsize(src) // MiB]
    exp_args = inst_args(os_name, name, [src], sizes)
    stream = tmp_path / "stream.bin"
    reported = []
    with open(stream, "wb") as out:
        size = osdef.run_export(os_name, *exp_args, disk_index=0, out_fh=out,
                                size_cb=reported.append)
    with open(stream, "rb") as inp:
        osdef.run_import(os_name, *inst_args(os_name, name, [dst], sizes), disk_index=0,
                         in_fh=inp)
    assert reported == [size]
    return size


# ------------------------------------------------------------ ganeti-os-noop

@pytest.fixture
def noop(monkeypatch):
    assert os.path.isdir(os.path.join(NOOP_DIR, "noop")), \
        "Debian's ganeti-os-noop is missing: apt-get install ganeti-os-noop"
    monkeypatch.setenv("CORRAL_OS_SEARCH_PATH", NOOP_DIR)


def test_noop_create_export_import(noop, root, raw_files, tmp_path):
    os_def = osdef.find_os("noop")
    assert os_def.valid and os_def.api_version == 10 and os_def.variants == []
    data = os.urandom(3 * MiB + 4096)
    src = raw_files("src.img", 4 * MiB, data)
    dst = raw_files("dst.img", 4 * MiB)
    log = osdef.run_create("noop", *inst_args("noop", "inst1", [src], [4]))
    assert os.path.basename(log).startswith("add-noop-inst1-") and os.path.exists(log)
    size = roundtrip("noop", src, dst, tmp_path)
    assert size == 4 * MiB
    assert dst.read_bytes() == src.read_bytes()
    assert (tmp_path / "stream.bin").stat().st_size == 4 * MiB
    logs = sorted(os.listdir(pathutils.os_log_dir()))
    assert [ln.split("-")[0] for ln in logs] == ["add", "export", "import"]
    assert any(ln.startswith("export-noop-inst1-disk0-") for ln in logs)


def test_noop_export_failure_reports_log_tail(noop, root, tmp_path):
    args = inst_args("noop", "inst1", [tmp_path / "missing.img"], [1])
    with open(tmp_path / "out", "wb") as out:
        with pytest.raises(errors.OpExecError) as exc:
            osdef.run_export("noop", *args, disk_index=0, out_fh=out)
    assert "OS export script failed (exited with exit code" in str(exc.value)
    assert "missing.img" in str(exc.value)


def test_noop_import_refuses_missing_target(noop, root, tmp_path):
    args = inst_args("noop", "inst1", [tmp_path / "absent.img"], [1])
    with pytest.raises(errors.OpExecError, match="OS import script failed"):
        osdef.run_import("noop", *args, disk_index=0, in_fh=subprocess.DEVNULL)
    assert not (tmp_path / "absent.img").exists()


# ------------------------------------------------- ganeti-instance-debootstrap

@pytest.fixture(scope="session")
def gid_tree():
    """Debian's ganeti-instance-debootstrap unpacked (not installed) in the cache."""
    base = os.path.join(CACHE_DIR, "ganeti-instance-debootstrap")
    os.makedirs(base, exist_ok=True)
    with open(os.path.join(base, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        tree = os.path.join(base, "tree")
        if not os.path.exists(os.path.join(base, ".done")):
            shutil.rmtree(tree, ignore_errors=True)
            for deb in glob.glob(os.path.join(base, "*.deb")):
                os.unlink(deb)
            run(["apt-get", "download", "ganeti-instance-debootstrap"], cwd=base)
            run(["dpkg", "-x", glob.glob(os.path.join(base, "*.deb"))[0], tree])
            open(os.path.join(base, ".done"), "w").close()
    return tree


def test_gid_verify(gid_tree, root, monkeypatch):
    monkeypatch.setenv("CORRAL_OS_SEARCH_PATH", os.path.join(gid_tree, "usr/share/ganeti/os"))
    os_def = osdef.find_os("debootstrap")
    assert os_def.valid, os_def.error
    assert os_def.api_versions == [20, 15, 10, 5] and os_def.api_version == 20
    assert os_def.parameter_names == ["filesystem"]
    osdef.run_verify("debootstrap", {"filesystem": "ext3"})
    osdef.run_verify("debootstrap", {})
    with pytest.raises(errors.OpExecError, match="Invalid value 'xfs'"):
        osdef.run_verify("debootstrap", {"filesystem": "xfs"})
    with pytest.raises(errors.OpPrereqError, match="not supported by the OS debootstrap: x"):
        osdef.run_verify("debootstrap", {"x": "1"})


def _gid_wrapper(gid_tree, tmp_path):
    """An OS dir whose scripts run Debian's after setting what the node lacks.

    The runner resets the environment, so the knobs instance-debootstrap reads
    (PARTITION_STYLE, SUITE, MIRROR...) and the no-op udevadm (udev is not
    installed here) are set by these wrappers, not by osdef.
    """
    real = os.path.join(gid_tree, "usr/share/ganeti/os/debootstrap")
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "udevadm").write_text("#!/bin/sh\nexit 0\n")
    (shim / "udevadm").chmod(0o755)
    hooks = tmp_path / "gid-hooks"
    hooks.mkdir()
    mirror = run(["bash", "-c", ". ./common.sh; apt_default_mirror"], cwd=SHIPPED + "/debootstrap"
                 ).stdout.strip()
    wrap = tmp_path / "gidos" / "debootstrap"
    wrap.mkdir(parents=True)
    for fname in ("ganeti_api_version", "parameters.list"):
        shutil.copy(os.path.join(real, fname), wrap / fname)
    for script in ("create", "import", "export", "rename", "verify"):
        (wrap / script).write_text(
            "#!/bin/bash\ncd %s\nexport PATH=%s:$PATH PARTITION_STYLE=none SUITE=bookworm"
            " MIRROR=%s GENERATE_CACHE=no CUSTOMIZE_DIR=%s\nexec ./%s \"$@\"\n"
            % (real, shim, mirror, hooks, script))
        (wrap / script).chmod(0o755)
    return wrap.parent


# ------------------------------------------------------ Corral's debootstrap

@pytest.fixture
def shipped(monkeypatch):
    monkeypatch.setenv("CORRAL_OS_SEARCH_PATH", SHIPPED)


def test_debootstrap_definition_valid(shipped):
    os_def = osdef.find_os("debootstrap+bookworm")
    assert os_def.valid, os_def.error
    assert os_def.api_version == 20
    assert os_def.variants[:2] == ["bookworm", "bullseye"]
    assert {"suite", "mirror", "arch", "extra_pkgs", "filesystem"} <= set(os_def.parameter_names)


def test_debootstrap_verify(shipped, root):
    osdef.run_verify("debootstrap+bookworm",
                     {"filesystem": "ext3", "mirror": "http://deb.debian.org/debian",
                      "extra_pkgs": "openssh-server,less", "suite": "bookworm",
                      "minimal": "yes", "arch": "amd64", "components": "main,contrib"})
    with pytest.raises(errors.OpExecError) as exc:
        osdef.run_verify("debootstrap", {"filesystem": "xfs", "mirror": "not a url",
                                         "extra_pkgs": "ok,Bad_Pkg", "minimal": "maybe"})
    msg = str(exc.value)
    for needle in ("'xfs' for parameter filesystem", "'not a url' for parameter mirror",
                   "'Bad_Pkg' in parameter extra_pkgs", "'maybe' for parameter minimal"):
        assert needle in msg
    with pytest.raises(errors.OpPrereqError, match="not supported by the OS debootstrap: "
                                                   "partition"):
        osdef.run_verify("debootstrap", {"partition": "msdos"})


def test_debootstrap_export_import(shipped, root, raw_files, tmp_path):
    src = raw_files("src.img", 2 * MiB, os.urandom(2 * MiB - 17))
    dst = raw_files("dst.img", 2 * MiB)
    assert roundtrip("debootstrap+bookworm", src, dst, tmp_path) == 2 * MiB
    assert dst.read_bytes() == src.read_bytes()


def test_debootstrap_create_too_small_cleans_up(shipped, root, raw_files):
    img = raw_files("small.img", 64 * MiB)
    args = inst_args("debootstrap+bookworm", "small1", [img], [64])
    with pytest.raises(errors.OpExecError) as exc:
        osdef.run_create("debootstrap+bookworm", *args)
    assert "disk 0 is too small: 64 MiB" in str(exc.value)
    assert loops_of(img) == []


def test_debootstrap_create_failure_after_mount_cleans_up(shipped, root, raw_files):
    """debootstrap fails (unreachable mirror) with the target mounted: all released."""
    img = raw_files("big.img", 600 * MiB)
    args = inst_args("debootstrap+bookworm", "fail1", [img], [600])
    before = set(glob.glob("/tmp/debootstrap-os.*"))
    with pytest.raises(errors.OpExecError) as exc:
        osdef.run_create("debootstrap+bookworm", *args,
                         osparams={"mirror": "http://127.0.0.1:9/debian"})
    assert "OS create script failed" in str(exc.value)
    assert "debootstrap --arch=" in str(exc.value) or "127.0.0.1:9" in str(exc.value)
    assert loops_of(img) == []
    assert set(glob.glob("/tmp/debootstrap-os.*")) <= before
    assert run(["blkid", "-p", "-o", "value", "-s", "TYPE", str(img)]).stdout.strip() == "ext4"


def test_debootstrap_rename(shipped, root, raw_files, tmp_path):
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/hostname").write_text("old.example\n")
    (tree / "etc/hosts").write_text("127.0.0.1 localhost\n127.0.1.1 old.example old\n")
    img = raw_files("fs.img", 16 * MiB)
    run(["mke2fs", "-q", "-F", "-t", "ext4", "-d", str(tree), str(img)])
    args = inst_args("debootstrap", "new.example", [img], [16])
    log = osdef.run_rename("debootstrap", *args, old_name="old.example")
    assert os.path.basename(log).startswith("rename-debootstrap-old.example-new.example-")
    assert loops_of(img) == []
    cat = run(["debugfs", "-R", "cat /etc/hosts", str(img)]).stdout
    assert "127.0.1.1 new.example new" in cat and "old" not in cat
    assert run(["debugfs", "-R", "cat /etc/hostname", str(img)]).stdout == "new.example\n"
    blank = raw_files("blank.img", 1 * MiB)
    osdef.run_rename("debootstrap", *inst_args("debootstrap", "x", [blank], [1]),
                     old_name="y")


def test_debootstrap_default_mirror_parsing(tmp_path):
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list.d/debian.sources").write_text(
        "Types: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://off.example/\nSuites: bookworm\nEnabled: no\n\n"
        "types: deb-src deb\nuris: http://good.example/debian http://b.example/\n"
        "suites: bookworm\n")

    def mirror():
        return run(["bash", "-c", ". ./common.sh; apt_default_mirror"],
                   cwd=os.path.join(SHIPPED, "debootstrap"),
                   env={"APT_ETC_DIR": str(apt), "PATH": "/usr/bin:/bin"}).stdout.strip()

    assert mirror() == "http://good.example/debian"
    (apt / "sources.list").write_text(
        "# x\ndeb-src http://src.example/ bookworm main\n"
        "deb [arch=amd64] http://sec.example/ bookworm-security main\n"
        " deb [ arch=amd64 ] http://one.example/debian bookworm main\n")
    assert mirror() == "http://one.example/debian"
    (apt / "sources.list").unlink()
    (apt / "sources.list.d/debian.sources").unlink()
    assert mirror() == "http://deb.debian.org/debian"


@pytest.mark.slow
def test_debootstrap_full_create_and_cached_reinstall(shipped, root, raw_files):
    hooks = root / "etc/corral/instance-debootstrap/hooks"
    hooks.mkdir(parents=True)
    (hooks / "10-mark").write_text('#!/bin/sh\necho "hook $INSTANCE_NAME" > "$TARGET/etc/hooked"\n')
    (hooks / "10-mark").chmod(0o755)
    (hooks / "skipped.sh").write_text("#!/bin/sh\nexit 1\n")   # not run-parts style: ignored
    (hooks / "skipped.sh").chmod(0o755)
    img = raw_files("deb.img", 1024 * MiB)
    args = inst_args("debootstrap+bookworm", "deb1.example", [img], [1024])
    start = time.monotonic()
    osdef.run_create("debootstrap+bookworm", *args, osparams={"minimal": "yes"})
    first = time.monotonic() - start
    assert loops_of(img) == []

    def cat(path):
        return run(["debugfs", "-R", "cat " + path, str(img)]).stdout

    assert "bookworm" in cat("/usr/lib/os-release")
    assert cat("/etc/hostname") == "deb1.example\n"
    assert cat("/etc/hooked") == "hook deb1.example\n"
    uuid = run(["blkid", "-o", "value", "-s", "UUID", str(img)]).stdout.strip()
    assert "UUID=%s / ext4" % uuid in cat("/etc/fstab")
    wants = run(["debugfs", "-R", "ls /etc/systemd/system/getty.target.wants",
                 str(img)]).stdout
    assert "serial-getty@ttyS0.service" in wants
    caches = glob.glob(str(root / "var/cache/corral/instance-debootstrap/cache-bookworm-*.tar"))
    assert len(caches) == 1

    start = time.monotonic()
    osdef.run_create("debootstrap+bookworm", *args, osparams={"minimal": "yes"},
                     reinstall=True)
    assert time.monotonic() - start < first
    assert cat("/etc/hostname") == "deb1.example\n"
    assert loops_of(img) == []
