"""corral.osdef: discovery and validity, environment building, variant checks, logs."""

import json
import os
import re
import time

import pytest

from corral import errors, osdef

SCRIPTS = ("create", "import", "export", "rename", "verify")


def make_os(base, name, api="20\n15\n10\n", scripts=SCRIPTS, variants=None,
            parameters="filesystem The root filesystem\n", mode=0o755):
    """A fake OS directory under ``base``; returns its path."""
    path = base / name
    path.mkdir(parents=True)
    if api is not None:
        (path / "ganeti_api_version").write_text(api)
    for script in scripts:
        (path / script).write_text("#!/bin/sh\nexit 0\n")
        (path / script).chmod(mode)
    if variants is not None:
        (path / "variants.list").write_text(variants)
    if parameters is not None:
        (path / "parameters.list").write_text(parameters)
    return path


@pytest.fixture
def osdir(tmp_path, monkeypatch):
    base = tmp_path / "os"
    base.mkdir()
    monkeypatch.setenv("CORRAL_OS_SEARCH_PATH", str(base))
    return base


# ------------------------------------------------------------ discovery

def test_valid_os_fields(osdir):
    make_os(osdir, "deb", variants="# comment\nbookworm\n\nbullseye\n",
            parameters="filesystem Root fs type\nmirror\n\n")
    os_def = osdef.find_os("deb+bookworm")
    assert os_def.valid, os_def.error
    assert os_def.name == "deb"
    assert os_def.path == str(osdir / "deb")
    assert os_def.api_versions == [20, 15, 10]
    assert os_def.api_version == 20
    assert os_def.variants == ["bookworm", "bullseye"]
    assert os_def.parameters == [("filesystem", "Root fs type"), ("mirror", "")]
    assert os_def.scripts == ["create", "import", "export", "rename", "verify"]
    assert os_def.trusted
    assert osdef.full_names(os_def) == ["deb+bookworm", "deb+bullseye"]


def test_not_found(osdir):
    os_def = osdef.find_os("nope")
    assert not os_def.valid
    assert "not found" in os_def.error
    with pytest.raises(errors.OpExecError, match="not valid"):
        osdef.require_os("nope")


@pytest.mark.parametrize("api,needle", [
    ("5\n", "API versions [5] not supported (supported: 10, 15, 20)"),
    ("20\nabc\n", "invalid data"),
    ("", "API versions [] not supported"),
])
def test_bad_api_file(osdir, api, needle):
    make_os(osdir, "bad", api=api)
    os_def = osdef.find_os("bad")
    assert not os_def.valid
    assert needle in os_def.error


def test_missing_api_file_and_api_dir(osdir):
    make_os(osdir, "noapi", api=None)
    assert "missing file 'ganeti_api_version'" in osdef.find_os("noapi").error
    make_os(osdir, "dirapi", api=None)
    (osdir / "dirapi" / "ganeti_api_version").mkdir()
    assert "not a regular file" in osdef.find_os("dirapi").error


def test_missing_script(osdir):
    make_os(osdir, "noexp", scripts=("create", "import", "rename", "verify"))
    os_def = osdef.find_os("noexp")
    assert not os_def.valid
    assert os_def.error == "missing script 'export'"


def test_not_executable_script(osdir):
    path = make_os(osdir, "nx")
    (path / "rename").chmod(0o644)
    assert osdef.find_os("nx").error == "script 'rename' is not executable"


def test_create_or_untrusted_required(osdir):
    make_os(osdir, "nocreate", scripts=("import", "export", "rename", "verify"))
    assert "missing script 'create'" in osdef.find_os("nocreate").error
    make_os(osdir, "untrusted", scripts=("create_untrusted", "import", "export", "rename",
                                         "verify"))
    os_def = osdef.find_os("untrusted")
    assert os_def.valid and not os_def.trusted


def test_verify_and_parameters_required_only_for_api20(osdir):
    make_os(osdir, "old", api="5\n10\n", scripts=("create", "import", "export", "rename"),
            parameters=None, variants="ignored\n")
    old = osdef.find_os("old")
    assert old.valid, old.error
    assert old.api_version == 10
    assert old.variants == []          # variants.list is only read for API >= 15
    make_os(osdir, "noverify", scripts=("create", "import", "export", "rename"))
    assert osdef.find_os("noverify").error == "missing script 'verify'"
    make_os(osdir, "noparams", parameters=None)
    assert osdef.find_os("noparams").error == "missing file 'parameters.list'"


def test_dangling_variants_symlink_means_no_variants(osdir):
    path = make_os(osdir, "gid")
    os.symlink("/nonexistent/variants.list", path / "variants.list")
    os_def = osdef.find_os("gid")
    assert os_def.valid and os_def.variants == []


def test_diagnose_all_first_dir_wins_hidden_skipped(tmp_path, monkeypatch):
    first, second = tmp_path / "a", tmp_path / "b"
    make_os(first, "dup")
    make_os(second, "dup", api="1\n")
    make_os(second, "other", scripts=("create",))
    make_os(second, ".hidden")
    (second / "README").write_text("not an OS")
    monkeypatch.setenv("CORRAL_OS_SEARCH_PATH", "%s:%s:%s" % (first, second, tmp_path / "x"))
    found = {o.name: o for o in osdef.diagnose_all()}
    assert sorted(found) == ["README", "dup", "other"]
    assert found["dup"].valid and found["dup"].path == str(first / "dup")
    assert not found["other"].valid
    assert "not a directory" in found["README"].error
    assert osdef.find_os("dup").path == str(first / "dup")
    assert not osdef.find_os(".hidden").valid


def test_to_from_dict_roundtrip(osdir):
    make_os(osdir, "deb", variants="a\n")
    os_def = osdef.find_os("deb")
    data = os_def.to_dict()
    assert osdef.OSDefinition.from_dict(json.loads(json.dumps(data))) == os_def


def test_split_os_name():
    assert osdef.split_os_name("a+b") == ("a", "b")
    assert osdef.split_os_name("a") == ("a", "")
    assert osdef.split_os_name("a+b+c") == ("a", "b+c")


# ------------------------------------------------------------ environment

def _os(api_versions=(20, 15, 10), variants=("bookworm", "bullseye")):
    return osdef.OSDefinition(name="deb", path="/x", api_versions=list(api_versions),
                              variants=list(variants), parameters=[("filesystem", "")],
                              valid=True, trusted=True)


def test_core_env_variant_default_and_osp_names():
    env = osdef.os_core_env(_os(), "", {"filesystem": "ext4", "extra-pkgs": "a,b",
                                        "flag": True}, debug=1)
    assert env == {
        "OS_API_VERSION": "20", "OS_NAME": "deb", "OS_VARIANT": "bookworm",
        "DEBUG_LEVEL": "1", "PATH": "/sbin:/bin:/usr/sbin:/usr/bin",
        "OSP_FILESYSTEM": "ext4", "OSP_EXTRA_PKGS": "a,b", "OSP_FLAG": "True",
    }
    assert osdef.os_core_env(_os(), "bullseye", {}, 0)["OS_VARIANT"] == "bullseye"


def test_core_env_no_variants_below_api15():
    env = osdef.os_core_env(_os(api_versions=(10, 5)), "bookworm", {}, 0)
    assert env["OS_API_VERSION"] == "10"
    assert env["OS_VARIANT"] == ""
    assert osdef.os_core_env(_os(variants=()), "", {}, 0)["OS_VARIANT"] == ""


INST = {"name": "inst1.example.com", "uuid": "i-uuid", "os": "deb+bullseye",
        "primary_node": "n1-uuid", "secondary_nodes": ["n2-uuid", "n3-uuid"],
        "ctime": 1700000000.5, "mtime": 1700000100.0}
DISKS = [
    {"path": "/dev/xenvg/d0", "mode": "rw", "size": 1024, "uuid": "d0-uuid",
     "dev_type": "plain"},
    {"path": "/srv/f/d1", "mode": "ro", "size": 512, "uuid": "d1-uuid", "name": "data",
     "dev_type": "file", "file_driver": "blktap"},
    {"uri": "rbd:pool/x", "mode": "rw", "size": 10, "uuid": "d2-uuid", "dev_type": "rbd"},
]
NICS = [
    {"mac": "aa:00:00:00:00:01", "ip": None, "mode": "bridged", "link": "br0", "vlan": "",
     "uuid": "n0-uuid", "name": None, "network": None},
    {"mac": "aa:00:00:00:00:02", "ip": "192.0.2.5", "mode": "routed", "link": "",
     "uuid": "n1-uuid", "name": "eth-pub", "network": "net-uuid",
     "netinfo": {"name": "pub", "uuid": "net-uuid", "network": "192.0.2.0/24",
                 "gateway": "192.0.2.1", "network6": None, "mac_prefix": "aa:00:00",
                 "tags": ["a", "b"]}},
]


def test_instance_env_golden():
    env = osdef.os_instance_env(
        _os(), INST, DISKS, NICS, "kvm",
        {"serial_console": True, "kernel_path": "", "disk_type": "paravirtual",
         "nic_type": "virtio"},
        {"maxmem": 512, "auto_balance": True}, {"filesystem": "ext3"}, debug=0)
    assert env == {
        "OS_API_VERSION": "20", "OS_NAME": "deb", "OS_VARIANT": "bullseye",
        "DEBUG_LEVEL": "0", "PATH": "/sbin:/bin:/usr/sbin:/usr/bin",
        "OSP_FILESYSTEM": "ext3",
        "INSTANCE_NAME": "inst1.example.com", "INSTANCE_OS": "deb+bullseye",
        "INSTANCE_UUID": "i-uuid", "INSTANCE_PRIMARY_NODE": "n1-uuid",
        "INSTANCE_CTIME": "1700000000.5", "INSTANCE_MTIME": "1700000100.0",
        "INSTANCE_SECONDARY_NODES": "n2-uuid n3-uuid", "HYPERVISOR": "kvm",
        "DISK_COUNT": "3",
        "DISK_0_PATH": "/dev/xenvg/d0", "DISK_0_ACCESS": "rw", "DISK_0_SIZE": "1024",
        "DISK_0_UUID": "d0-uuid", "DISK_0_FRONTEND_TYPE": "paravirtual",
        "DISK_0_BACKEND_TYPE": "block",
        "DISK_1_PATH": "/srv/f/d1", "DISK_1_ACCESS": "ro", "DISK_1_SIZE": "512",
        "DISK_1_UUID": "d1-uuid", "DISK_1_NAME": "data",
        "DISK_1_FRONTEND_TYPE": "paravirtual", "DISK_1_BACKEND_TYPE": "file:blktap",
        "DISK_2_URI": "rbd:pool/x", "DISK_2_ACCESS": "rw", "DISK_2_SIZE": "10",
        "DISK_2_UUID": "d2-uuid", "DISK_2_FRONTEND_TYPE": "paravirtual",
        "DISK_2_BACKEND_TYPE": "block",
        "NIC_COUNT": "2",
        "NIC_0_MAC": "aa:00:00:00:00:01", "NIC_0_UUID": "n0-uuid", "NIC_0_MODE": "bridged",
        "NIC_0_BRIDGE": "br0", "NIC_0_LINK": "br0", "NIC_0_FRONTEND_TYPE": "virtio",
        "NIC_1_MAC": "aa:00:00:00:00:02", "NIC_1_UUID": "n1-uuid", "NIC_1_NAME": "eth-pub",
        "NIC_1_IP": "192.0.2.5", "NIC_1_MODE": "routed", "NIC_1_FRONTEND_TYPE": "virtio",
        "NIC_1_NETWORK_NAME": "pub", "NIC_1_NETWORK_UUID": "net-uuid",
        "NIC_1_NETWORK_SUBNET": "192.0.2.0/24", "NIC_1_NETWORK_GATEWAY": "192.0.2.1",
        "NIC_1_NETWORK_MAC_PREFIX": "aa:00:00", "NIC_1_NETWORK_TAGS": "a b",
        "INSTANCE_BE_maxmem": "512", "INSTANCE_BE_auto_balance": "True",
        "INSTANCE_HV_serial_console": "True", "INSTANCE_HV_kernel_path": "",
        "INSTANCE_HV_disk_type": "paravirtual", "INSTANCE_HV_nic_type": "virtio",
    }
    assert all(isinstance(v, str) for v in env.values())


def test_instance_env_minimal_and_no_frontend_type():
    inst = {"name": "i", "os": "deb"}
    env = osdef.os_instance_env(_os(), inst, [], [], "xen-pvm", {}, {})
    assert env["OS_VARIANT"] == "bookworm"
    assert env["INSTANCE_OS"] == "deb"
    assert env["INSTANCE_SECONDARY_NODES"] == ""
    assert env["DISK_COUNT"] == "0" and env["NIC_COUNT"] == "0"
    assert "INSTANCE_UUID" not in env and "INSTANCE_CTIME" not in env
    assert not any(k.endswith("FRONTEND_TYPE") for k in env)


def test_disk_stream_env():
    assert osdef.disk_stream_env("export", DISKS, 0) == {
        "EXPORT_INDEX": "0", "EXPORT_DISK_PATH": "/dev/xenvg/d0",
        "EXPORT_DEVICE": "/dev/xenvg/d0"}
    assert osdef.disk_stream_env("import", DISKS, 2) == {
        "IMPORT_INDEX": "2", "IMPORT_DISK_URI": "rbd:pool/x"}
    with pytest.raises(errors.OpExecError, match="out of range"):
        osdef.disk_stream_env("import", DISKS, 3)


# ------------------------------------------------------------ checks

def test_check_variant():
    with_v = _os()
    osdef.check_variant(with_v, "bookworm")
    with pytest.raises(errors.OpPrereqError, match="must include a variant") as exc:
        osdef.check_variant(with_v, "")
    assert exc.value.args[1] == errors.ECODE_INVAL
    with pytest.raises(errors.OpPrereqError, match="Unsupported OS variant 'sid'"):
        osdef.check_variant(with_v, "sid")
    osdef.check_variant(with_v, "sid", force_variant=True)
    osdef.check_variant(with_v, "", force_variant=True)
    without = _os(variants=())
    osdef.check_variant(without, "")
    for force in (False, True):
        with pytest.raises(errors.OpPrereqError, match="doesn't support variants"):
            osdef.check_variant(without, "x", force_variant=force)


def test_check_os_params():
    osdef.check_os_params(_os(), {"filesystem": "ext4"})
    with pytest.raises(errors.OpPrereqError,
                       match="The following parameters are not supported by the OS deb: "
                             "a, zz"):
        osdef.check_os_params(_os(), {"zz": 1, "filesystem": "x", "a": 2})
    osdef.check_os_params(_os(api_versions=(10,)), {"anything": 1})


# ------------------------------------------------------------ logs and runners

def test_log_file_name(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_ROOT", str(tmp_path))
    when = time.mktime((2024, 3, 5, 7, 8, 9, 0, 0, -1))
    name = osdef.log_file_name("add", "deb+bookworm", "inst1", when=when)
    assert name == str(tmp_path / "var/log/corral/os/add-deb+bookworm-inst1-"
                                  "2024-03-05_07_08_09.log")
    name = osdef.log_file_name("export", "noop", "i2", "disk0", when=when)
    assert os.path.basename(name) == "export-noop-i2-disk0-2024-03-05_07_08_09.log"
    now = os.path.basename(osdef.log_file_name("a", "b", "c"))
    assert re.search(r"^a-b-c-\d{4}-\d\d-\d\d_\d\d_\d\d_\d\d\.log$", now)


def _fail_os(osdir, lines=30, rc=3):
    path = make_os(osdir, "failing", parameters="filesystem fs\n")
    (path / "create").write_text(
        "#!/bin/bash\nfor i in $(seq 1 %d); do echo line$i; done\n"
        "echo \"cwd=$PWD vars=$(env | cut -d= -f1 | sort | tr '\\n' ' ')\" >&2\n"
        "exit %d\n" % (lines, rc))
    (path / "verify").write_text("#!/bin/bash\necho \"bad fs $OSP_FILESYSTEM args $*\"\n"
                                 "exit 1\n")
    return path


def test_create_failure_carries_last_20_lines(tmp_path, osdir, monkeypatch):
    monkeypatch.setenv("CORRAL_ROOT", str(tmp_path / "root"))
    path = _fail_os(osdir)
    inst = {"name": "inst1", "os": "failing"}
    with pytest.raises(errors.OpExecError) as exc:
        osdef.run_create("failing", inst, [], [], "kvm", {}, {}, {"filesystem": "ext4"},
                         reinstall=True)
    msg = str(exc.value)
    assert "OS create script failed (exited with exit code 3)" in msg
    tail = msg.split("\n")[1:]
    assert len(tail) == 20
    assert tail[0] == "line12" and tail[-2] == "line30"
    assert "cwd=%s" % path in tail[-1]
    # Reset environment: only the contract's variables (and CORRAL_ROOT).
    names = set(tail[-1].split("vars=")[1].split())
    assert {"PATH", "OS_API_VERSION", "INSTANCE_NAME", "INSTANCE_REINSTALL", "OSP_FILESYSTEM",
            "CORRAL_ROOT"} <= names
    assert "HOME" not in names and "PYTEST_CURRENT_TEST" not in names
    logs = os.listdir(tmp_path / "root/var/log/corral/os")
    assert len(logs) == 1 and logs[0].startswith("add-failing-inst1-")


def test_verify_param_check_and_failure(tmp_path, osdir, monkeypatch):
    monkeypatch.setenv("CORRAL_ROOT", str(tmp_path / "root"))
    _fail_os(osdir)
    with pytest.raises(errors.OpPrereqError, match="not supported by the OS failing: mirror"):
        osdef.run_verify("failing", {"mirror": "x"})
    with pytest.raises(errors.OpExecError,
                       match="OS validation script failed.*bad fs xfs args parameters"):
        osdef.run_verify("failing", {"filesystem": "xfs"})
