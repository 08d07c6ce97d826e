"""corral.ssh: key generation and Ganeti-style host key checking against known_hosts."""

import os

import paramiko
import pytest

from corral import errors, ssh


def _key(tmp_path, name):
    path = str(tmp_path / name)
    ssh.generate_key_pair(path)
    return paramiko.Ed25519Key.from_private_key_file(path)


def test_generated_pair_loads_and_public_line_matches(tmp_path):
    path = str(tmp_path / "id_ed25519")
    line = ssh.generate_key_pair(path, "root@test")
    key = paramiko.Ed25519Key.from_private_key_file(path)
    assert line == "ssh-ed25519 %s root@test" % key.get_base64()
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert ssh.fingerprint(key).startswith("SHA256:")


def test_unknown_key_refused_when_strict_accepted_otherwise(tmp_path):
    known = str(tmp_path / "known_hosts")
    key = _key(tmp_path, "host")
    with pytest.raises(errors.OpPrereqError, match="not in the cluster's known hosts") as exc:
        ssh.check_host_key(known, ["node2", "10.0.0.2"], key, strict=True)
    assert ssh.fingerprint(key) in exc.value.args[0]
    assert ssh.check_host_key(known, ["node2", "10.0.0.2"], key, strict=False) is True
    ssh.record_host_key(known, ["node2", "10.0.0.2"], key)
    assert ssh.check_host_key(known, ["node2"], key, strict=True) is False
    assert ssh.check_host_key(known, ["10.0.0.2"], key, strict=True) is False


def test_changed_key_always_refused(tmp_path):
    known = str(tmp_path / "known_hosts")
    ssh.record_host_key(known, ["node2"], _key(tmp_path, "old"))
    for strict in (True, False):
        with pytest.raises(errors.OpPrereqError, match="man-in-the-middle"):
            ssh.check_host_key(known, ["node2"], _key(tmp_path, "new"), strict=strict)


def test_lookup_names_use_port_syntax():
    assert ssh._lookup_names("n", "10.0.0.1", 22) == ["n", "10.0.0.1"]
    assert ssh._lookup_names("n", "10.0.0.1", 2222) == ["[n]:2222", "[10.0.0.1]:2222"]


def test_unreachable_host_is_a_clear_error(tmp_path):
    key = str(tmp_path / "id")
    ssh.generate_key_pair(key)
    with pytest.raises(errors.OpPrereqError, match="Cannot connect to n1 .* port 1 over SSH"):
        ssh.run_command("n1", ["true"], ip="127.0.0.1", port=1, key_path=key,
                        known_hosts=str(tmp_path / "kh"), timeout=5)
