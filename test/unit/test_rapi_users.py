"""RAPI users file: format, password schemes, reloading, the vcluster helper."""

import json
import os

import pytest

from corral.rapi import users


def test_parse_skips_comments_blank_and_short_lines():
    text = ("# comment\n\n   \nlonely\nalice secret write\nbob pw read,write\n"
            "carol pw\n  dave  pw  read  extra\n")
    parsed = users.parse_users(text)
    assert sorted(parsed) == ["alice", "bob", "carol", "dave"]
    assert parsed["alice"].options == {"write"}
    assert parsed["bob"].options == {"read", "write"}
    assert parsed["carol"].options == frozenset()
    assert parsed["dave"].options == {"read"}


@pytest.mark.parametrize("stored,given,ok", [
    ("secret", "secret", True),
    ("secret", "Secret", False),
    ("{cleartext}secret", "secret", True),
    ("{CLEARTEXT}secret", "secret", True),
    ("{cleartext}secret", "{cleartext}secret", False),
    ("{HA1}" + users.ha1("u", "pw"), "pw", True),
    ("{ha1}" + users.ha1("u", "pw").upper(), "pw", True),
    ("{HA1}" + users.ha1("u", "pw"), "other", False),
    ("{HA1}" + users.ha1("someoneelse", "pw"), "pw", False),
    ("{SHA}abcdef", "abcdef", False),
    ("{broken", "{broken", False),
])
def test_password_schemes(stored, given, ok):
    assert users.check_password(users.User("u", stored, frozenset()), given) is ok


def test_ha1_matches_ganeti_definition():
    import hashlib
    assert users.ha1("jack", "abc123") == hashlib.md5(
        b"jack:Ganeti Remote API:abc123").hexdigest()


def test_users_file_rereads_on_change_and_reload(tmp_path):
    path = tmp_path / "users"
    uf = users.UsersFile(str(path))
    assert uf.users() == {}
    assert uf.authenticate("a", "x") is None
    path.write_text("a x write\n")
    assert uf.authenticate("a", "x").options == {"write"}
    path.write_text("a y read\n")  # same size, new content
    os.utime(path, ns=(1, 1))
    assert uf.authenticate("a", "y").options == {"read"}
    assert uf.authenticate("a", "x") is None
    # Content changed behind a stamp that looks identical: only reload() sees it.
    stamp = os.stat(path)
    with open(path, "r+") as fh:
        fh.write("a z read\n")
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert uf.authenticate("a", "z") is None
    uf.reload()
    assert uf.authenticate("a", "z") is not None
    path.unlink()
    assert uf.users() == {}


def test_unreadable_file_keeps_last_users(tmp_path):
    path = tmp_path / "users"
    path.write_text("a x write\n")
    uf = users.UsersFile(str(path))
    assert uf.authenticate("a", "x")
    path.write_bytes(b"\xff\xfe broken\n")
    assert uf.authenticate("a", "x")


def test_vcluster_setup_writes_users_and_info(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_ROOT", str(tmp_path))
    info = users.vcluster_setup("10.0.0.1", 5080)
    assert info["host"] == "10.0.0.1" and info["port"] == 5080
    with open(users.vcluster_info_file()) as fh:
        assert json.load(fh) == info
    assert users.vcluster_info_file() == str(
        tmp_path / "var/lib/corral/rapi/vcluster-users.json")
    uf = users.UsersFile()
    assert uf.authenticate(info["user"], info["password"]).options == {"write"}
    assert uf.authenticate(info["ro_user"], info["ro_password"]).options == {"read"}
    assert uf.authenticate(info["user"], info["ro_password"]) is None
    assert os.stat(uf.path).st_mode & 0o777 == 0o600
    assert users.vcluster_setup("h", 1)["password"] != info["password"]


def test_cli_vcluster_setup(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CORRAL_ROOT", str(tmp_path))
    monkeypatch.setenv("CORRAL_RAPI_PORT", "6001")
    assert users.main(["--vcluster-setup", "--host", "192.0.2.1"]) == 0
    path = capsys.readouterr().out.strip()
    with open(path) as fh:
        data = json.load(fh)
    assert data["host"] == "192.0.2.1" and data["port"] == 6001
    assert users.main(["--hash", "u", "pw"]) == 0
    assert capsys.readouterr().out.strip() == "{HA1}" + users.ha1("u", "pw")
