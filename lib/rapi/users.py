"""The RAPI users file: parsing, password checks, reloading, and the vcluster helper.

Format (spec/rapi.md §2), one user per line: ``USERNAME PASSWORD [OPTIONS]``;
``#`` comments, blank lines and lines with fewer than two fields are ignored;
OPTIONS is a comma list of ``read``/``write`` (others are ignored).  A password
is plain text, ``{cleartext}TEXT``, or ``{HA1}`` + hex MD5 of
``USERNAME:Ganeti Remote API:PASSWORD``; scheme prefixes are case-insensitive
and an unknown scheme never matches.  A missing file means "no users".

``UsersFile`` re-reads the file whenever its (inode, size, mtime) changes
(one stat per request) or when ``reload()`` is called (SIGHUP), so edits take
effect without a restart.  A file that cannot be read keeps the last good set
and logs why, so a half-written edit never locks everybody out or in.
"""

import argparse
import hashlib
import hmac
import logging
import os
import secrets
import sys
import threading
from dataclasses import dataclass

from corral import constants, errors, pathutils, serializer
from corral.utils import io

REALM = "Ganeti Remote API"
ACCESS_READ = "read"
ACCESS_WRITE = "write"
VCLUSTER_WRITE_USER = "corral-admin"
VCLUSTER_RO_USER = "corral-ro"


@dataclass(frozen=True)
class User:
    name: str
    password: str
    options: frozenset[str]


def parse_users(text: str) -> dict[str, User]:
    """Users by name; a later line for the same name wins (like Ganeti)."""
    users: dict[str, User] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) < 2:
            continue
        options = frozenset(o for o in fields[2].split(",") if o) if len(fields) > 2 \
            else frozenset()
        users[fields[0]] = User(fields[0], fields[1], options)
    return users


def ha1(username: str, password: str) -> str:
    """The ``{HA1}`` hash of a password (hex MD5 of user:realm:password)."""
    return hashlib.md5(("%s:%s:%s" % (username, REALM, password)).encode("utf-8")).hexdigest()


def check_password(user: User, password: str) -> bool:
    """True if ``password`` matches the stored one (constant-time comparisons)."""
    stored = user.password
    scheme = None
    if stored.startswith("{"):
        end = stored.find("}")
        if end < 0:
            return False
        scheme, stored = stored[1:end].lower(), stored[end + 1:]
    if scheme is None or scheme == "cleartext":
        return hmac.compare_digest(stored.encode("utf-8"), password.encode("utf-8"))
    if scheme == "ha1":
        return hmac.compare_digest(stored.lower().encode("utf-8"),
                                   ha1(user.name, password).encode("ascii"))
    return False


class UsersFile:
    """The users file, re-read when it changes on disk or when asked (SIGHUP)."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or pathutils.rapi_users_file()
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._users: dict[str, User] = {}
        self._force = True

    def reload(self) -> None:
        """Re-read at the next lookup even if the file looks unchanged (signal-safe)."""
        self._force = True

    def _current_stamp(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def users(self) -> dict[str, User]:
        """The current users (reads the file if it changed)."""
        stamp = self._current_stamp()
        if stamp == self._stamp and not self._force:
            return self._users
        with self._lock:
            self._force = False
            if stamp is None:
                self._users = {}
            else:
                try:
                    self._users = parse_users(io.read_file(self.path))
                except (OSError, UnicodeDecodeError) as err:
                    logging.error("Cannot read RAPI users file %s: %s (keeping %d users)",
                                  self.path, err, len(self._users))
                    return self._users
            self._stamp = stamp
            logging.info("Loaded %d RAPI users from %s", len(self._users), self.path)
            return self._users

    def authenticate(self, username: str, password: str) -> User | None:
        user = self.users().get(username)
        if user is None or not check_password(user, password):
            return None
        return user


# ---- vcluster helper -----------------------------------------------------------------

def vcluster_info_file() -> str:
    return os.path.join(os.path.dirname(pathutils.rapi_users_file()), "vcluster-users.json")


def vcluster_setup(host: str, port: int = constants.DEFAULT_RAPI_PORT) -> dict:
    """Write a users file with a write user and a read-only user (fresh random passwords)
    and ``vcluster_info_file()`` describing how to reach the RAPI; returns that dict.

    Idempotent in effect: each call replaces both files (new passwords).  The
    write user's password is stored as ``{HA1}``, the read-only one's in plain
    text, so both schemes are exercised.  Files are mode 0600.
    """
    info = {"host": host, "port": int(port),
            "user": VCLUSTER_WRITE_USER, "password": secrets.token_urlsafe(16),
            "ro_user": VCLUSTER_RO_USER, "ro_password": secrets.token_urlsafe(16)}
    text = ("# Written by corral.rapi.users --vcluster-setup\n"
            "%s {HA1}%s write\n%s %s read\n"
            % (info["user"], ha1(info["user"], info["password"]),
               info["ro_user"], info["ro_password"]))
    os.makedirs(os.path.dirname(pathutils.rapi_users_file()), mode=0o750, exist_ok=True)
    io.write_file_atomic(pathutils.rapi_users_file(), text, mode=0o600)
    io.write_file_atomic(vcluster_info_file(), serializer.dumps(info, pretty=True), mode=0o600)
    return info


def _default_host() -> str:
    from corral import ssconf
    try:
        return ssconf.SimpleStore().get_master_ip()
    except errors.ConfigurationError:
        return "127.0.0.1"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m corral.rapi.users",
        description="Manage the Corral RAPI users file (%s)." % pathutils.rapi_users_file())
    parser.add_argument("--vcluster-setup", action="store_true",
                        help="write a write user and a read-only user with random passwords,"
                             " and a JSON file describing them (for tools/vcluster)")
    parser.add_argument("--host", default=None,
                        help="address clients use to reach the RAPI (default: master IP)")
    parser.add_argument("--port", type=int, default=None,
                        help="RAPI port (default: $CORRAL_RAPI_PORT or %d)"
                             % constants.DEFAULT_RAPI_PORT)
    parser.add_argument("--hash", nargs=2, metavar=("USER", "PASSWORD"),
                        help="print the {HA1} password field for USER and PASSWORD")
    options = parser.parse_args(argv)
    if options.hash:
        print("{HA1}" + ha1(*options.hash))
        return 0
    if not options.vcluster_setup:
        parser.error("nothing to do (use --vcluster-setup or --hash)")
    port = options.port or int(os.environ.get("CORRAL_RAPI_PORT")
                               or constants.DEFAULT_RAPI_PORT)
    info = vcluster_setup(options.host or _default_host(), port)
    print(vcluster_info_file())
    return 0 if info else 1


if __name__ == "__main__":
    sys.exit(main())
