"""Reading DRBD state: ``/proc/drbd`` (8.x), ``drbdsetup status --json`` (9.x
userland output) and ``drbdsetup show``.  Pure parsing of text; no I/O.

Derived status follows spec/hypervisors-storage.md §7: ``is_degraded`` =
not Connected or local disk not UpToDate; ldisk ``faulty`` when Diskless or
StandAlone, ``syncing`` during a resync, ``okay`` when UpToDate, else
``unknown``.
"""

import json
import re
from dataclasses import dataclass, field
from typing import Any

from corral.storage import base

RESYNC_STATES = frozenset(["WFReportParams", "StartingSyncS", "StartingSyncT", "WFBitMapS",
                           "WFBitMapT", "WFSyncUUID", "SyncSource", "SyncTarget",
                           "PausedSyncS", "PausedSyncT"])
_VERSION_RE = re.compile(r"^version:\s*(\d+)\.(\d+)\.(\d+)(?:\.(\d+))?\S*\s*"
                         r"\(api:(\d+)/proto:(\d+)(?:-(\d+))?\)")
_MINOR_RE = re.compile(r"^\s*(\d+):\s+cs:(\S+)(.*)$")
_SYNC_RE = re.compile(r"sync'ed:\s*([\d.]+)%")
_FINISH_RE = re.compile(r"finish:\s*(\d+):(\d+):(\d+)")


@dataclass
class DrbdVersion:
    major: int
    minor: int
    point: int
    api: int
    proto: int
    proto2: int | None = None

    def __str__(self) -> str:
        return "%d.%d.%d" % (self.major, self.minor, self.point)


def parse_version(first_line: str) -> DrbdVersion:
    """The ``version:`` line of /proc/drbd; BlockDeviceError if malformed."""
    m = _VERSION_RE.match(first_line.strip())
    if not m:
        base.raise_bdev("Cannot parse DRBD version line %r", first_line.strip())
    return DrbdVersion(int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(5)),
                       int(m.group(6)), int(m.group(7)) if m.group(7) else None)


def check_supported(version: DrbdVersion) -> str | None:
    """None for a usable 8.x kernel; else the message to show the administrator."""
    if version.major == 8:
        return None
    if version.major >= 9:
        return ("DRBD %s kernel module loaded; Corral needs the DRBD 8.x kernel module "
                "(8.3 or 8.4); unload drbd 9 and load an 8.4 module" % version)
    return "DRBD kernel module %s is too old; Corral needs DRBD 8.x" % version


@dataclass
class MinorStatus:
    """State of one DRBD minor.  ``cstatus`` ``Unconfigured`` means free."""

    minor: int
    cstatus: str
    lrole: str = "Unknown"
    rrole: str = "Unknown"
    ldisk: str = "DUnknown"
    rdisk: str = "DUnknown"
    sync_percent: float | None = None
    est_time: int | None = None

    @property
    def is_in_use(self) -> bool:
        return self.cstatus != "Unconfigured"

    @property
    def is_standalone(self) -> bool:
        return self.cstatus == "StandAlone"

    @property
    def is_wfconn(self) -> bool:
        return self.cstatus == "WFConnection"

    @property
    def is_connected(self) -> bool:
        return self.cstatus == "Connected"

    @property
    def is_in_resync(self) -> bool:
        return self.cstatus in RESYNC_STATES

    @property
    def is_primary(self) -> bool:
        return self.lrole == "Primary"

    @property
    def is_diskless(self) -> bool:
        return self.ldisk == "Diskless"

    @property
    def is_disk_uptodate(self) -> bool:
        return self.ldisk == "UpToDate"

    def sync_status(self) -> base.SyncStatus:
        """The status reported to the master (see module docstring)."""
        if self.is_diskless or self.is_standalone:
            ldisk = base.LDS_FAULTY
        elif self.is_in_resync:
            ldisk = base.LDS_SYNC
        elif self.is_disk_uptodate:
            ldisk = base.LDS_OKAY
        else:
            ldisk = base.LDS_UNKNOWN
        percent = self.sync_percent
        if self.is_in_resync and percent is None:
            percent = 0.0
        return base.SyncStatus(sync_percent=percent, estimated_time=self.est_time,
                               is_degraded=not self.is_connected or not self.is_disk_uptodate,
                               ldisk_status=ldisk)


@dataclass
class ProcDrbd:
    version: DrbdVersion
    minors: dict[int, MinorStatus] = field(default_factory=dict)

    def used_minors(self) -> list[int]:
        return sorted(m for m, st in self.minors.items() if st.is_in_use)


def _join_minor_lines(lines: list[str]) -> list[str]:
    """One string per minor: continuation lines (no ``N:`` prefix) are appended."""
    joined: list[str] = []
    for line in lines:
        if _MINOR_RE.match(line):
            joined.append(line.strip())
        elif joined and line.strip():
            joined[-1] += " " + line.strip()
    return joined


def parse_minor_line(text: str) -> MinorStatus:
    """``M: cs:X ro:A/B ds:C/D ...`` (``st:`` on 8.0-8.3) plus joined sync lines."""
    m = _MINOR_RE.match(text)
    if not m:
        base.raise_bdev("Cannot parse /proc/drbd line %r", text)
    status = MinorStatus(int(m.group(1)), m.group(2))
    fields = dict(f.split(":", 1) for f in m.group(3).split() if ":" in f)
    roles = fields.get("ro") or fields.get("st")
    if roles and "/" in roles:
        status.lrole, status.rrole = roles.split("/", 1)
    if "ds" in fields and "/" in fields["ds"]:
        status.ldisk, status.rdisk = fields["ds"].split("/", 1)
    sync = _SYNC_RE.search(text)
    if sync:
        status.sync_percent = float(sync.group(1))
    finish = _FINISH_RE.search(text)
    if finish:
        h, mi, s = (int(x) for x in finish.groups())
        status.est_time = h * 3600 + mi * 60 + s
    return status


def parse_proc_drbd(text: str) -> ProcDrbd:
    """The whole of /proc/drbd (any 8.x); minors not listed are free."""
    lines = text.splitlines()
    if not lines:
        base.raise_bdev("/proc/drbd is empty")
    result = ProcDrbd(parse_version(lines[0]))
    for entry in _join_minor_lines(lines[1:]):
        st = parse_minor_line(entry)
        result.minors[st.minor] = st
    return result


def _status9_cstate(conn: dict[str, Any], peer_dev: dict[str, Any]) -> str:
    """DRBD 9 connection + replication state mapped onto the 8.x ``cs`` names."""
    cstate = conn.get("connection-state", "StandAlone")
    if cstate == "Connected":
        repl = peer_dev.get("replication-state", "Established")
        return "Connected" if repl in ("Established", "Off") else repl
    if cstate == "Connecting":
        return "WFConnection"
    return cstate


def _status9_eta(peer_dev: dict[str, Any]) -> int | None:
    """Seconds left from the --statistics sync details, if present."""
    oos_kib = peer_dev.get("out-of-sync")
    sectors, ms = peer_dev.get("rs-db1-sectors"), peer_dev.get("rs-dt1-ms")
    if not oos_kib or not sectors or not ms:
        return None
    kib_per_s = sectors / 2.0 / (ms / 1000.0)
    return int(oos_kib / kib_per_s) if kib_per_s > 0 else None


def parse_status_json(text: str) -> dict[int, MinorStatus]:
    """``drbdsetup status --json [--statistics]`` (drbd-utils 9) keyed by minor.

    Only the first connection of each resource counts (Corral's resources are
    two-node); a device with no connection is StandAlone.
    """
    try:
        resources = json.loads(text)
    except ValueError as err:
        base.raise_bdev("Cannot parse drbdsetup status JSON: %s", err)
    result: dict[int, MinorStatus] = {}
    for res in resources:
        conns = res.get("connections") or []
        conn = conns[0] if conns else {}
        peer_devs = {pd.get("volume"): pd for pd in conn.get("peer_devices", [])}
        for dev in res.get("devices", []):
            pd = peer_devs.get(dev.get("volume"), {})
            cs = _status9_cstate(conn, pd) if conn else "StandAlone"
            st = MinorStatus(int(dev["minor"]), cs, res.get("role", "Unknown"),
                             conn.get("peer-role", "Unknown"),
                             dev.get("disk-state", "DUnknown"),
                             pd.get("peer-disk-state", "DUnknown"))
            if st.is_in_resync and "percent-in-sync" in pd:
                st.sync_percent = float(pd["percent-in-sync"])
                st.est_time = _status9_eta(pd)
            result[st.minor] = st
    return result


# ----- drbdsetup show -------------------------------------------------------
_TOKEN_RE = re.compile(r'\s*(?:(#[^\n]*)|("(?:[^"\\]|\\.)*")|([{};])|([^\s{};"#]+))')


def _tokenize(text: str) -> list[str]:
    tokens = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            break
        pos = m.end()
        if m.group(1):
            continue
        tokens.append(m.group(2) or m.group(3) or m.group(4))
    return tokens


def _parse_block(tokens: list[str], pos: int) -> tuple[list[Any], int]:
    """Statements until the matching ``}``: each is (words, sub-block or None)."""
    stmts: list[Any] = []
    words: list[str] = []
    while pos < len(tokens):
        tok = tokens[pos]
        pos += 1
        if tok == ";":
            stmts.append((words, None))
            words = []
        elif tok == "{":
            sub, pos = _parse_block(tokens, pos)
            stmts.append((words, sub))
            words = []
        elif tok == "}":
            return stmts, pos
        else:
            words.append(tok[1:-1] if tok.startswith('"') else tok)
    return stmts, pos


@dataclass
class ShowInfo:
    """What a configured minor is attached and connected to."""

    local_dev: str | None = None
    meta_dev: str | None = None
    meta_index: str | None = None
    local_addr: tuple[str, int] | None = None
    remote_addr: tuple[str, int] | None = None


def _addr(words: list[str]) -> tuple[str, int] | None:
    # "address ipv4 10.0.0.1:11000" / "address ipv6 [fd00::1]:11000"
    if len(words) < 2:
        return None
    host, _, port = words[-1].rpartition(":")
    return host.strip("[]"), int(port)


def _walk_show(stmts: list[Any], info: ShowInfo, section: str) -> None:
    for words, sub in stmts:
        if not words:
            continue
        key = words[0]
        if sub is not None:
            name = key if key in ("_this_host", "_remote_host") else section
            _walk_show(sub, info, name)
        elif key == "address" and section == "_this_host":
            info.local_addr = _addr(words)
        elif key == "address" and section == "_remote_host":
            info.remote_addr = _addr(words)
        elif key == "disk" and section == "_this_host" and len(words) == 2:
            info.local_dev = words[1]
        elif key == "meta-disk" and section == "_this_host" and len(words) >= 2:
            info.meta_dev = words[1]
            rest = [w for w in words[2:] if w not in ("[", "]")]
            info.meta_index = rest[0].strip("[]") if rest else None


def parse_show(text: str) -> ShowInfo:
    """``drbdsetup show`` (8.3 and 8.4 layouts) reduced to devices and addresses."""
    stmts, _ = _parse_block(_tokenize(text), 0)
    info = ShowInfo()
    _walk_show(stmts, info, "")
    if info.meta_dev == "internal":
        info.meta_dev, info.meta_index = None, "internal"
    return info
