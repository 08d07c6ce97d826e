"""ExtStorage: a real provider (shell scripts over plain files) in tmp_path."""

import os
import stat

import pytest

from corral import errors, storage
from corral.storage import extstorage

SCRIPTS = {
    "create": 'truncate -s "${VOL_SIZE}M" "$EXTP_DIR/$VOL_NAME"',
    "attach": '[ -f "$EXTP_DIR/$VOL_NAME" ] || { echo "no such volume" >&2; exit 1; }\n'
              'echo "$EXTP_DIR/$VOL_NAME"',
    "detach": "exit 0",
    "remove": 'rm -f "$EXTP_DIR/$VOL_NAME"',
    "grow": '[ "$(stat -c %s "$EXTP_DIR/$VOL_NAME")" -eq $((VOL_SIZE * 1048576)) ] || exit 3\n'
            'truncate -s "${VOL_NEW_SIZE}M" "$EXTP_DIR/$VOL_NAME"',
    "setinfo": 'printf %s "$VOL_METADATA" > "$EXTP_DIR/$VOL_NAME.meta"',
    "verify": '[ -d "$EXTP_DIR" ] || { echo "parameter dir must name a directory" >&2; exit 1; }',
    "snapshot": 'cp "$EXTP_DIR/$VOL_NAME" "$EXTP_DIR/$VOL_SNAPSHOT_NAME"',
}
LOG_LINE = ('[ -d "$EXTP_DIR" ] && echo "$(basename "$0") $(env | grep -E "^(VOL_|EXTP_)" | sort | tr "\\n" " ")"'
            ' >> "$EXTP_DIR/calls.log"\n')


@pytest.fixture
def provider(tmp_path, monkeypatch):
    search = tmp_path / "es"
    pdir = search / "fileprov"
    pdir.mkdir(parents=True)
    for name, body in SCRIPTS.items():
        path = pdir / name
        path.write_text("#!/bin/sh\nset -e\n" + LOG_LINE + body + "\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    (pdir / "parameters.list").write_text("dir where the volumes live\n")
    vols = tmp_path / "vols"
    vols.mkdir()
    monkeypatch.setenv("CORRAL_ES_SEARCH_PATH", str(tmp_path / "empty") + ":" + str(search))
    params = {"ext_params": {"dir": str(vols)}, "name": "data", "uuid": "u-1"}
    return {"pdir": pdir, "vols": vols, "params": params}


def calls(provider):
    path = provider["vols"] / "calls.log"
    return path.read_text().splitlines() if path.exists() else []


def test_search_path_and_parameters(provider):
    prov = extstorage.find_provider("fileprov")
    assert prov.path == str(provider["pdir"])
    assert prov.parameters == {"dir": "where the volumes live"}
    assert prov.has("snapshot") and not prov.has("open")
    with pytest.raises(errors.BlockDeviceError, match="not found in"):
        extstorage.find_provider("nope")
    with pytest.raises(errors.BlockDeviceError, match="Invalid ExtStorage provider"):
        extstorage.find_provider("../etc")


def test_provider_missing_scripts_is_reported(provider):
    os.unlink(provider["pdir"] / "verify")
    msg = extstorage.ExtStorageDevice.check_environment({"provider": "fileprov"})
    assert "lacks executable scripts: verify" in msg
    assert storage.verify_environment(["ext"], {"ext": {"provider": "fileprov"}}) == \
        ["ext: " + msg]


def test_full_lifecycle(provider):
    cls = storage.get_device_class("ext")
    dev = cls.create(("fileprov", "vol1"), [], 4, provider["params"])
    vol = provider["vols"] / "vol1"
    assert vol.stat().st_size == 4 * 1024 * 1024
    first = calls(provider)[0]
    assert first.startswith("create ")
    for var in ("EXTP_DIR=%s" % provider["vols"], "VOL_NAME=vol1", "VOL_SIZE=4",
                "VOL_CNAME=data", "VOL_UUID=u-1"):
        assert var in first.split()
    dev.assemble()
    assert dev.dev_path == str(vol) and dev.get_actual_size() == 4 * 1024 * 1024
    dev.open()
    dev.close()
    dev.verify()
    dev.set_info("inst1.example.com")
    assert (provider["vols"] / "vol1.meta").read_text() == "inst1.example.com"
    dev.grow(2, dryrun=True, backingstore=True)
    dev.grow(2, dryrun=False, backingstore=True)
    assert vol.stat().st_size == 6 * 1024 * 1024
    grow_line = [c for c in calls(provider) if c.startswith("grow ")][0].split()
    assert "VOL_SIZE=4" in grow_line and "VOL_NEW_SIZE=6" in grow_line
    assert dev.snapshot("vol1-snap") == ("fileprov", "vol1-snap")
    assert (provider["vols"] / "vol1-snap").exists()
    dev.shutdown()
    assert dev.dev_path is None
    dev.remove()
    assert not vol.exists()
    assert not dev.attach()
    names = [c.split()[0] for c in calls(provider)]
    assert names[0] == "create" and names[-2:] == ["remove", "attach"]


def test_failures_carry_script_output(provider):
    dev = extstorage.ExtStorageDevice(("fileprov", "vol2"), [], 1, provider["params"])
    with pytest.raises(errors.BlockDeviceError, match="gave no usable device"):
        dev.assemble()
    bad = dict(provider["params"], ext_params={"dir": "/nonexistent-dir"})
    with pytest.raises(errors.BlockDeviceError, match="verify.*must name a directory"):
        extstorage.ExtStorageDevice(("fileprov", "v"), [], 1, bad).verify()


def test_optional_scripts_absent(provider):
    os.unlink(provider["pdir"] / "snapshot")
    dev = extstorage.ExtStorageDevice.create(("fileprov", "vol3"), [], 1, provider["params"])
    with pytest.raises(errors.BlockDeviceError, match="has no snapshot script"):
        dev.snapshot()


def test_env_building():
    env = extstorage.build_env("v", {"pool-name": "x", "Size": 3}, size=5, cname=None)
    assert env == {"EXTP_POOL_NAME": "x", "EXTP_SIZE": "3", "VOL_NAME": "v", "VOL_SIZE": "5"}
    with pytest.raises(errors.BlockDeviceError, match="parameter name"):
        extstorage.build_env("v", {"a b": 1})
    with pytest.raises(errors.BlockDeviceError, match="volume name"):
        extstorage.ExtStorageDevice(("p", "../x"), [], 1, {})
