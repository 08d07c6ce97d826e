"""SSH to other nodes with paramiko (node add, tools): keys, host key checking, commands.

Host keys are checked as Ganeti does: the cluster keeps its own known_hosts
file (pathutils.known_hosts_file(), not root's), a key that differs from the
recorded one is always refused, and an unknown key is refused unless the
caller disabled the check (``gnt-node add --no-ssh-key-check``), in which
case it is accepted and recorded.  Authentication uses root's key pair under
the node's root (pathutils.ssh_private_keys()); no agent, no passwords.

Every failure becomes a Corral error whose message names the host and what
to do about it; nothing here prints or prompts.
"""

import base64
import hashlib
import os
import shlex
import socket
import threading
from dataclasses import dataclass

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from corral import errors, pathutils
from corral.utils import io

CONNECT_TIMEOUT = 15.0
_KNOWN_HOSTS_LOCK = threading.Lock()


@dataclass
class CommandResult:
    exit_status: int
    stdout: str
    stderr: str

    @property
    def failed(self) -> bool:
        return self.exit_status != 0


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style ``SHA256:...`` fingerprint of a public key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


# ---- key files --------------------------------------------------------------------------

def generate_key_pair(private_path: str, comment: str = "corral") -> str:
    """Write a new Ed25519 private key (OpenSSH format, 0600); return its public key line.

    Overwrites ``private_path`` atomically; also writes ``<private_path>.pub``.
    """
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    line = "%s %s" % (public, comment)
    os.makedirs(os.path.dirname(private_path), mode=0o700, exist_ok=True)
    io.write_file_atomic(private_path, private, mode=0o600)
    io.write_file_atomic(private_path + ".pub", line + "\n", mode=0o644)
    return line


def _load_private_key(path: str) -> paramiko.PKey:
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key_file(path)
        except (paramiko.SSHException, ValueError):
            continue
    raise errors.OpExecError("Cannot load SSH private key %s (unsupported or corrupt)" % path)


def find_private_key() -> str:
    """root's first existing private key (pathutils.ssh_private_keys()); error if none."""
    for path in pathutils.ssh_private_keys():
        if os.path.exists(path):
            return path
    raise errors.OpPrereqError("No SSH key for root found (looked for %s); cannot reach other"
                               " nodes over SSH" % ", ".join(pathutils.ssh_private_keys()),
                               errors.ECODE_ENVIRON)


# ---- host keys --------------------------------------------------------------------------

def _host_keys(path: str) -> paramiko.HostKeys:
    keys = paramiko.HostKeys()
    if os.path.exists(path):
        try:
            keys.load(path)
        except (OSError, paramiko.SSHException) as err:
            raise errors.OpExecError("Cannot read known hosts file %s: %s" % (path, err)) from err
    return keys


def _lookup_names(host: str, ip: str, port: int) -> list[str]:
    names = [host, ip] if ip != host else [host]
    return names if port == 22 else ["[%s]:%d" % (n, port) for n in names]


def record_host_key(path: str, names: list[str], key: paramiko.PKey) -> None:
    """Add (or replace) the key of ``names`` in the known hosts file ``path`` (atomic)."""
    with _KNOWN_HOSTS_LOCK:
        keys = _host_keys(path)
        for name in names:
            keys.add(name, key.get_name(), key)
        lines = []
        for entry in keys._entries:  # HostKeys has no public iterator over entries
            line = entry.to_line()
            if line:
                lines.append(line)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        io.write_file_atomic(path, "".join(lines), mode=0o644)


def check_host_key(path: str, names: list[str], key: paramiko.PKey, strict: bool) -> bool:
    """Decide on a presented host key; True if it must be recorded after login.

    A key different from a recorded one is always refused; an unknown key is
    refused when ``strict``.
    """
    keys = _host_keys(path)
    for name in names:
        known = keys.lookup(name)
        if known is None:
            continue
        recorded = known.get(key.get_name())
        if recorded is not None and recorded.asbytes() == key.asbytes():
            return False
        if recorded is not None or known:
            raise errors.OpPrereqError(
                "The SSH host key of %s (%s %s) differs from the one in the cluster's known"
                " hosts file %s: possible man-in-the-middle attack. If the node was"
                " reinstalled, remove its old entry from that file" %
                (names[0], key.get_name(), fingerprint(key), path), errors.ECODE_ENVIRON)
    if strict:
        raise errors.OpPrereqError(
            "The SSH host key of %s (%s %s) is not in the cluster's known hosts file %s;"
            " verify the fingerprint and add the key there, or use --no-ssh-key-check" %
            (names[0], key.get_name(), fingerprint(key), path), errors.ECODE_ENVIRON)
    return True


# ---- running commands -------------------------------------------------------------------

def _connect(host: str, ip: str, port: int, user: str, key_path: str,
             timeout: float) -> paramiko.Transport:
    try:
        sock = socket.create_connection((ip, port), timeout=timeout)
    except OSError as err:
        raise errors.OpPrereqError("Cannot connect to %s (%s) port %d over SSH: %s" %
                                   (host, ip, port, err.strerror or err), errors.ECODE_ENVIRON)
    transport = paramiko.Transport(sock)
    transport.banner_timeout = timeout
    transport.auth_timeout = timeout
    try:
        transport.start_client(timeout=timeout)
    except (paramiko.SSHException, OSError, EOFError) as err:
        transport.close()
        raise errors.OpPrereqError("SSH negotiation with %s (%s) failed: %s" %
                                   (host, ip, err or err.__class__.__name__),
                                   errors.ECODE_ENVIRON) from None
    return transport


def _authenticate(transport: paramiko.Transport, host: str, user: str, key_path: str) -> None:
    key = _load_private_key(key_path)
    try:
        transport.auth_publickey(user, key)
    except paramiko.AuthenticationException as err:
        transport.close()
        raise errors.OpPrereqError(
            "SSH authentication as %s@%s failed with the cluster's key %s (%s): the node does"
            " not accept it; add its public key to the node's authorized_keys" %
            (user, host, key_path, err), errors.ECODE_ENVIRON) from None
    except (paramiko.SSHException, OSError, EOFError) as err:
        transport.close()
        raise errors.OpPrereqError("SSH authentication with %s failed: %s" % (host, err),
                                   errors.ECODE_ENVIRON) from None


def run_command(host: str, argv: list[str], stdin: str = "", ip: str | None = None,
                port: int = 22, user: str = "root", strict_host_key_check: bool = True,
                key_path: str | None = None, known_hosts: str | None = None,
                timeout: float = 120.0) -> CommandResult:
    """Run ``argv`` as ``user`` on ``host`` (connecting to ``ip``), feeding it ``stdin``.

    Host key policy: see the module doc.  A newly accepted key is recorded
    (under the host name and the IP) only after authentication succeeded.
    Raises errors.OpPrereqError for connection, host key and authentication
    problems, errors.OpExecError when the session breaks; a command that runs
    and fails is a result with a non-zero ``exit_status``, not an error.
    """
    ip = ip or host
    key_path = key_path or find_private_key()
    known_hosts = known_hosts or pathutils.known_hosts_file()
    transport = _connect(host, ip, port, user, key_path, min(timeout, CONNECT_TIMEOUT))
    try:
        server_key = transport.get_remote_server_key()
        names = _lookup_names(host, ip, port)
        must_record = check_host_key(known_hosts, names, server_key, strict_host_key_check)
        _authenticate(transport, host, user, key_path)
        if must_record:
            record_host_key(known_hosts, names, server_key)
        return _exec(transport, host, shlex.join(argv), stdin, timeout)
    finally:
        transport.close()


def _exec(transport: paramiko.Transport, host: str, command: str, stdin: str,
          timeout: float) -> CommandResult:
    try:
        channel = transport.open_session(timeout=timeout)
        channel.settimeout(timeout)
        channel.exec_command(command)
        if stdin:
            channel.sendall(stdin.encode("utf-8"))
        channel.shutdown_write()
        stdout = channel.makefile("rb").read()
        stderr = channel.makefile_stderr("rb").read()
        status = channel.recv_exit_status()
    except (paramiko.SSHException, OSError, EOFError) as err:
        raise errors.OpExecError("SSH session with %s broke while running '%s': %s" %
                                 (host, command, err or err.__class__.__name__)) from None
    return CommandResult(status, stdout.decode("utf-8", "replace"),
                         stderr.decode("utf-8", "replace"))
