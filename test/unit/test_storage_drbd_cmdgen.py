"""DRBD command generation: exact argv of every step, 8.4 and 8.3 (spec §7)."""

import pytest

from corral import errors
from corral.storage import drbd_cmdgen as cg

DATA, META = "/dev/xenvg/u.disk0_data", "/dev/xenvg/u.disk0_meta"
LA, RA = cg.NetAddr("192.0.2.1", 11000), cg.NetAddr("192.0.2.2", 11000)
SECRET = "d9a5f0c2b9e14c8e8f0a2b3c4d5e6f708192a3b4"


@pytest.fixture
def g84():
    return cg.get_cmdgen(8, 4)


@pytest.fixture
def g83():
    return cg.get_cmdgen(8, 3)


def test_version_selection():
    assert type(cg.get_cmdgen(8, 4)) is cg.DRBD84CmdGenerator
    assert type(cg.get_cmdgen(8, 11)) is cg.DRBD84CmdGenerator
    assert type(cg.get_cmdgen(8, 3)) is cg.DRBD83CmdGenerator
    assert type(cg.get_cmdgen(8, 0)) is cg.DRBD83CmdGenerator
    with pytest.raises(errors.BlockDeviceError, match="DRBD 8.x only"):
        cg.get_cmdgen(9, 1)


def test_addresses():
    assert str(LA) == "ipv4:192.0.2.1:11000"
    assert str(cg.NetAddr("fd00::1", 11001)) == "ipv6:[fd00::1]:11001"
    with pytest.raises(errors.BlockDeviceError, match="IP address is required"):
        str(cg.NetAddr("node1.example.com", 11000))


# ----- 8.4 -------------------------------------------------------------------
def test_84_create_md(g84):
    assert g84.create_md_cmd(3, META) == \
        ["drbdmeta", "--force", "/dev/drbd3", "v08", META, "flex-external", "create-md"]


def test_84_local_attach(g84):
    assert g84.local_attach_cmds(3, DATA, META, 1024, {}) == [
        ["drbdsetup", "new-resource", "resource3"],
        ["drbdsetup", "new-minor", "resource3", "3", "0"],
        ["drbdmeta", "/dev/drbd3", "v08", META, "flex-external", "apply-al"],
        ["drbdsetup", "attach", "3", DATA, META, "flexible", "--on-io-error=detach",
         "--size", "1024m"]]


def test_84_attach_barriers_and_custom(g84):
    cmd = g84.local_attach_cmds(0, DATA, META, None, {"disk-barriers": "bfd",
                                                      "meta-barriers": True,
                                                      "disk-custom": "--al-extents 3389"})[-1]
    assert cmd == ["drbdsetup", "attach", "0", DATA, META, "flexible", "--on-io-error=detach",
                   "--disk-barrier=no", "--disk-flushes=no", "--disk-drain=no",
                   "--md-flushes=no", "--al-extents", "3389"]
    assert g84.local_attach_cmds(0, DATA, META, None, {"disk-barriers": "f"})[-1][-1] == \
        "--disk-flushes=no"
    with pytest.raises(errors.BlockDeviceError, match="disk-barriers"):
        g84.local_attach_cmds(0, DATA, META, None, {"disk-barriers": "x"})


def test_84_connect(g84):
    base = ["drbdsetup", "connect", "resource3", "ipv4:192.0.2.1:11000",
            "ipv4:192.0.2.2:11000", "--protocol", "C", "--after-sb-0pri",
            "discard-zero-changes", "--after-sb-1pri", "consensus"]
    auth = ["--cram-hmac-alg", "md5", "--shared-secret", SECRET]
    assert g84.net_attach_cmds(3, LA, RA, False, SECRET, {}) == [base + auth]
    assert g84.net_attach_cmds(3, LA, RA, True, SECRET, {}) == \
        [base + ["--allow-two-primaries"] + auth]
    cmd = g84.net_attach_cmds(3, LA, RA, False, "", {"protocol": "A",
                                                     "net-custom": "--ping-timeout 10"})[0]
    assert cmd[6] == "A" and cmd[-2:] == ["--ping-timeout", "10"]
    assert "--shared-secret" not in cmd
    with pytest.raises(errors.BlockDeviceError, match="protocol"):
        g84.net_attach_cmds(3, LA, RA, False, SECRET, {"protocol": "D"})


def test_84_sync_params(g84):
    assert g84.sync_params_cmds(3, {}) == [
        ["drbdsetup", "disk-options", "3", "--resync-rate", "61440"]]
    assert g84.sync_params_cmds(3, {"resync-rate": 1024}) == [
        ["drbdsetup", "disk-options", "3", "--resync-rate", "1024"]]
    assert g84.sync_params_cmds(3, {"dynamic-resync": True, "c-max-rate": 100000}) == [
        ["drbdsetup", "disk-options", "3", "--c-plan-ahead", "20", "--c-fill-target", "0",
         "--c-delay-target", "1", "--c-max-rate", "100000", "--c-min-rate", "4096"]]


def test_84_roles_and_teardown(g84):
    assert g84.primary_cmd(3) == ["drbdsetup", "primary", "3"]
    assert g84.primary_cmd(3, force=True) == ["drbdsetup", "primary", "3", "--force"]
    assert g84.secondary_cmd(3) == ["drbdsetup", "secondary", "3"]
    assert g84.disconnect_cmd(3, LA, RA) == ["drbdsetup", "disconnect", "ipv4:192.0.2.1:11000",
                                             "ipv4:192.0.2.2:11000"]
    assert g84.detach_cmd(3) == ["drbdsetup", "detach", "3"]
    assert g84.down_cmd(3) == ["drbdsetup", "down", "resource3"]
    assert g84.show_cmd(3) == ["drbdsetup", "show", "3"]
    assert g84.pause_sync_cmd(3) == ["drbdsetup", "pause-sync", "3"]
    assert g84.resume_sync_cmd(3) == ["drbdsetup", "resume-sync", "3"]
    assert g84.resize_cmd(3, 2048) == ["drbdsetup", "resize", "3", "--size", "2048m"]


# ----- 8.3 -------------------------------------------------------------------
def test_83_local_attach(g83):
    assert g83.create_md_cmd(1, META) == \
        ["drbdmeta", "--force", "/dev/drbd1", "v08", META, "flex-external", "create-md"]
    assert g83.local_attach_cmds(1, DATA, META, 512, {"disk-barriers": "bd",
                                                      "meta-barriers": True}) == [
        ["drbdsetup", "/dev/drbd1", "disk", DATA, META, "flexible", "-e", "detach",
         "--create-device", "-d", "512m", "--no-disk-barrier", "--no-disk-drain",
         "--no-md-flushes"]]


def test_83_net(g83):
    assert g83.net_attach_cmds(1, LA, RA, False, SECRET, {}) == [
        ["drbdsetup", "/dev/drbd1", "net", "ipv4:192.0.2.1:11000", "ipv4:192.0.2.2:11000", "C",
         "-A", "discard-zero-changes", "-B", "consensus", "--create-device",
         "-a", "md5", "-x", SECRET]]
    dual = g83.net_attach_cmds(1, LA, RA, True, SECRET, {})[0]
    assert dual[dual.index("--create-device") + 1] == "-m"


def test_83_syncer_and_others(g83):
    assert g83.sync_params_cmds(1, {}) == [["drbdsetup", "/dev/drbd1", "syncer", "-r", "61440"]]
    dyn = g83.sync_params_cmds(1, {"dynamic-resync": True})[0]
    assert dyn[:3] == ["drbdsetup", "/dev/drbd1", "syncer"] and dyn[3] == "--c-plan-ahead"
    assert g83.primary_cmd(1) == ["drbdsetup", "/dev/drbd1", "primary"]
    assert g83.primary_cmd(1, True) == ["drbdsetup", "/dev/drbd1", "primary", "-o"]
    assert g83.secondary_cmd(1) == ["drbdsetup", "/dev/drbd1", "secondary"]
    assert g83.disconnect_cmd(1, LA, RA) == ["drbdsetup", "/dev/drbd1", "disconnect"]
    assert g83.detach_cmd(1) == ["drbdsetup", "/dev/drbd1", "detach"]
    assert g83.down_cmd(1) == ["drbdsetup", "/dev/drbd1", "down"]
    assert g83.show_cmd(1) == ["drbdsetup", "/dev/drbd1", "show"]
    assert g83.pause_sync_cmd(1) == ["drbdsetup", "/dev/drbd1", "pause-sync"]
    assert g83.resume_sync_cmd(1) == ["drbdsetup", "/dev/drbd1", "resume-sync"]
    assert g83.resize_cmd(1, 100) == ["drbdsetup", "/dev/drbd1", "resize", "-s", "100m"]


def test_full_params_ignores_unknown_keys():
    p = cg.full_params({"protocol": "B", "local_ip": "1.2.3.4"})
    assert p["protocol"] == "B" and "local_ip" not in p
    assert p["resync-rate"] == 61440


def test_create_md_runs_with_real_drbdmeta(tmp_path):
    """The generated create-md works with the installed drbdmeta on a plain file
    (PLATFORM.md §5: drbdmeta needs no kernel module for this)."""
    import shutil
    from corral.utils import process
    if not shutil.which("drbdmeta", path="/sbin:/usr/sbin:/usr/bin:/bin"):
        pytest.skip("drbd-utils not installed")
    meta = tmp_path / "meta.img"
    with open(meta, "wb") as fh:
        fh.truncate(128 * 1024 * 1024)
    for gen in (cg.get_cmdgen(8, 4), cg.get_cmdgen(8, 3)):
        result = process.run_cmd(gen.create_md_cmd(0, str(meta)))
        assert not result.failed, result.describe()
        assert "successfully created" in result.output
    dump = process.run_cmd(["drbdmeta", "--force", "/dev/drbd0", "v08", str(meta),
                            "flex-external", "dump-md"])
    assert not dump.failed and 'version "v08";' in dump.stdout
