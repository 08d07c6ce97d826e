"""The fake hypervisor: instances are JSON records, nothing runs.

Used by tests and scale benchmarks.  Each node keeps its records under its
own ``pathutils.hypervisor_run_dir("fake")`` (so several nodes share one
machine), one ``<name>.json`` per running instance.  Node memory is the real
/proc/meminfo total unless ``.node.json`` in that directory overrides
``memory_total``/``memory_dom0``/``cpu_total``; running instances' ``maxmem``
is subtracted from the free memory, so allocation behaves as on a real node.
Queries read the records through an in-memory index that inotify keeps in
step with the directory (fake_index.py), so a query does not touch 1000 files.

Migration is node-local on each side: ``accept_instance`` writes the record
on the target, ``migrate_instance`` moves the source record aside (kept until
``finalize_migration_src`` so a failed migration can be undone).
"""

import os
import re
import time
from json.encoder import encode_basestring_ascii as _encode_str  # type: ignore[attr-defined]
from typing import Any

from corral import errors, pathutils, serializer
from corral.hypervisor import base, fake_index
from corral.hypervisor import hvparams as hvp
from corral.utils import io

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
DEFAULT_DOM0_MIB = 512
# Coarser than any file system's timestamp granularity we run on (see _load).
_RACY_NS = 2 * 10**9


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise errors.HypervisorError("Invalid instance name %r" % (name,))
    return name


class _Cached:
    """One parsed record version; its query answers are computed once, except ``time``."""

    __slots__ = ("key", "record", "_static", "_text")

    def __init__(self, key: tuple[int, int, int], record: dict[str, Any]) -> None:
        self.key = key
        self.record = record
        self._static: tuple[dict[str, Any], float | None] | None = None
        self._text: tuple[str, str, str] | None = None  # (extra, head, tail)

    def _constant(self, name: str) -> tuple[dict[str, Any], float | None]:
        if self._static is None:
            record = self.record
            beparams = record["spec"].get("beparams") or {}
            maxmem = beparams.get("maxmem", hvp.BE_PARAMS["maxmem"].default)
            self._static = ({"name": name, "state": record.get("state", base.STATE_RUNNING),
                             "memory": int(record.get("memory", maxmem)),
                             "vcpus": int(beparams.get("vcpus",
                                                       hvp.BE_PARAMS["vcpus"].default))},
                            record.get("start_time"))
        return self._static

    def info(self, name: str, now: float) -> dict[str, Any]:
        """What get_instance_info answers (a new dict; ``time`` = seconds running)."""
        static, start = self._constant(name)
        out = dict(static)
        out["time"] = _uptime(start, now)
        return out

    def json(self, name: str, now: float, extra: str) -> str:
        """``"<name>":<info + extra>`` as serializer.dumps writes it; ``extra`` is the
        JSON text of a dict of keys to add after ``time``."""
        static, start = self._constant(name)
        text = self._text
        if text is None or text[0] != extra:
            head = "%s:%s,\"time\":" % (_encode_str(name), serializer.dumps(static)[:-1])
            tail = ("," + extra[1:-1] if extra != "{}" else "") + "}"
            text = self._text = (extra, head, tail)
        return text[1] + repr(_uptime(start, now)) + text[2]


def _uptime(start: float | None, now: float) -> float:
    return round(now - start, 1) if start is not None else 0.0


class FakeHypervisor(base.BaseHypervisor):
    """Records instead of processes; the full interface, migration included."""

    NAME = "fake"
    CAN_MIGRATE = True
    CAN_BALLOON = True
    # Disks of non-shared templates move by an offline copy before the record
    # (nothing writes to a fake instance's disks while it "runs").
    STORAGE_MIGRATION = "copy"

    def __init__(self) -> None:
        super().__init__()
        self._cache: dict[str, _Cached] = {}
        self._index: fake_index.RecordIndex[_Cached] = fake_index.RecordIndex(self._load)

    # --- paths -------------------------------------------------------------
    @staticmethod
    def _dir() -> str:
        return pathutils.hypervisor_run_dir("fake")

    def _record_path(self, name: str) -> str:
        return os.path.join(self._dir(), _check_name(name) + ".json")

    def _stash_path(self, name: str) -> str:
        return os.path.join(self._dir(), "migrated", _check_name(name) + ".json")

    def _load(self, path: str) -> "_Cached | None":
        """The cache entry of the record at ``path`` (None: no record), parsed once per
        file version.

        The files stay the truth: every call stats the file, and a new inode,
        mtime or size (every write replaces the file) means a new read.  A
        record changed less than ``_RACY_NS`` ago is not kept, since a second
        change within the same file-system timestamp tick could keep all three.
        """
        try:
            st = os.stat(path)
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
            cached = self._cache.get(path)
            if cached is not None and cached.key == key:
                return cached
            record = serializer.loads(io.read_file(path))
        except FileNotFoundError:
            self._cache.pop(path, None)
            return None
        except (ValueError, OSError) as err:
            raise errors.HypervisorError("Corrupt fake record %s: %s" % (path, err))
        entry = _Cached(key, record)
        if time.time_ns() - st.st_mtime_ns > _RACY_NS:
            self._cache[path] = entry
        else:
            self._cache.pop(path, None)
        return entry

    def _read(self, path: str) -> dict[str, Any] | None:
        """The record at ``path``, or None.  Callers get their own (shallow) copy: they
        may change its top-level keys and write it back, which makes a new version."""
        entry = self._load(path)
        return dict(entry.record) if entry is not None else None

    def _write(self, path: str, record: dict[str, Any]) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        io.write_file_atomic(path, serializer.dumps(record), fsync=False)

    @staticmethod
    def _new_record(inst: base.InstanceSpec, disks: list[base.DiskSpec],
                    state: str) -> dict[str, Any]:
        return {"spec": inst.to_dict(), "disks": [d.to_dict() for d in disks],
                "state": state, "start_time": time.time()}

    # --- lifecycle ---------------------------------------------------------
    def start_instance(self, inst: base.InstanceSpec, block_devices: list[base.DiskSpec],
                       startup_paused: bool = False) -> None:
        path = self._record_path(inst.name)
        if os.path.exists(path):
            raise errors.HypervisorError("Instance %s is already running" % inst.name)
        for disk in block_devices:
            if not os.path.exists(disk.path):
                raise errors.HypervisorError("Disk %s of %s does not exist" %
                                             (disk.path, inst.name))
        state = base.STATE_PAUSED if startup_paused else base.STATE_RUNNING
        self._write(path, self._new_record(inst, block_devices, state))

    def stop_instance(self, name: str, force: bool = False, timeout: int = 120) -> None:
        io.remove_file(self._record_path(name))

    def reboot_instance(self, inst: base.InstanceSpec, block_devices: list[base.DiskSpec],
                        reboot_type: str = "soft", timeout: int = 120) -> None:
        path = self._record_path(inst.name)
        record = self._read(path)
        if record is None:
            raise errors.HypervisorError("Instance %s is not running" % inst.name)
        record["start_time"] = time.time()
        self._write(path, record)

    def cleanup_instance(self, name: str) -> None:
        io.remove_file(self._record_path(name))
        io.remove_file(self._stash_path(name))

    def pause_instance(self, name: str, paused: bool) -> None:
        """Fake equivalent of QMP stop/cont (used by startup_paused flows)."""
        path = self._record_path(name)
        record = self._read(path)
        if record is None:
            raise errors.HypervisorError("Instance %s is not running" % name)
        record["state"] = base.STATE_PAUSED if paused else base.STATE_RUNNING
        self._write(path, record)

    # --- queries -----------------------------------------------------------
    def list_instances(self) -> list[str]:
        try:
            entries = os.listdir(self._dir())
        except FileNotFoundError:
            return []
        return sorted(n for n in map(fake_index.record_name, entries) if n is not None)

    def get_instance_info(self, name: str) -> dict[str, Any] | None:
        entry = self._load(self._record_path(name))
        return entry.info(name, time.time()) if entry is not None else None

    def get_all_instances_info(self) -> dict[str, dict[str, Any]]:
        """All running instances (queries and node memory use it), from the record
        index: no file is read unless it changed (fake_index)."""
        now = time.time()
        return {name: entry.info(name, now)
                for name, entry in self._index.records(self._dir())}

    def get_all_instances_info_json(self, extra: dict[str, Any]) -> str:
        """get_all_instances_info() with ``extra`` added to every info, as the JSON
        text serializer.dumps would make of it (pre-encoded per record version;
        node daemons send it as is)."""
        now = time.time()
        extra_text = serializer.dumps(extra)
        return "{" + ",".join([entry.json(name, now, extra_text) for name, entry
                               in self._index.records(self._dir())]) + "}"

    def get_node_info(self) -> dict[str, Any]:
        info = base.host_node_info("fake-1.0")
        override = self._read(os.path.join(self._dir(), ".node.json")) or {}
        info["memory_total"] = int(override.get("memory_total", info["memory_total"]))
        info["memory_dom0"] = int(override.get("memory_dom0", DEFAULT_DOM0_MIB))
        info["cpu_total"] = int(override.get("cpu_total", info["cpu_total"]))
        used = sum(i["memory"] for i in self.get_all_instances_info().values())
        info["memory_free"] = max(info["memory_total"] - info["memory_dom0"] - used, 0)
        return info

    def set_node_info(self, memory_total: int, memory_dom0: int = DEFAULT_DOM0_MIB,
                      cpu_total: int | None = None) -> None:
        """Make this fake node report the given capacity (tests, vcluster)."""
        data: dict[str, Any] = {"memory_total": memory_total, "memory_dom0": memory_dom0}
        if cpu_total is not None:
            data["cpu_total"] = cpu_total
        self._write(os.path.join(self._dir(), ".node.json"), data)

    def get_console(self, inst: base.InstanceSpec, node_name: str = "",
                    ssh_port: int = 22) -> dict[str, Any]:
        return {"instance": inst.name, "kind": "msg",
                "message": "the fake hypervisor has no console"}

    def verify(self) -> str | None:
        directory = self._dir()
        if os.path.exists(directory) and not os.access(directory, os.W_OK):
            return "fake hypervisor directory %s is not writable" % directory
        return None

    def balloon_instance_memory(self, inst: base.InstanceSpec, mem_mib: int) -> None:
        path = self._record_path(inst.name)
        record = self._read(path)
        if record is None:
            raise errors.HypervisorError("Instance %s is not running" % inst.name)
        record["memory"] = int(mem_mib)
        self._write(path, record)

    # --- migration -----------------------------------------------------------
    def migration_info(self, inst: base.InstanceSpec) -> str:
        record = self._read(self._record_path(inst.name))
        if record is None:
            raise errors.HypervisorError("Instance %s is not running" % inst.name)
        return serializer.dumps(record)

    def accept_instance(self, inst: base.InstanceSpec, info: str, target_ip: str,
                        block_devices: list[base.DiskSpec] | None = None) -> None:
        path = self._record_path(inst.name)
        if os.path.exists(path):
            raise errors.HypervisorError("Instance %s already exists on the target" %
                                         inst.name)
        record = serializer.loads(info)
        record["spec"] = inst.to_dict()
        record["state"] = base.STATE_PAUSED
        record["incoming"] = True
        self._write(path, record)

    def migrate_instance(self, inst: base.InstanceSpec, target_ip: str, live: bool,
                         port: int | None = None) -> None:
        path = self._record_path(inst.name)
        record = self._read(path)
        if record is None:
            raise errors.HypervisorError("Instance %s is not running" % inst.name)
        record["migration"] = {"status": "completed", "target": target_ip, "live": live}
        self._write(self._stash_path(inst.name), record)
        io.remove_file(path)

    def get_migration_status(self, inst: base.InstanceSpec) -> dict[str, Any]:
        record = self._read(self._stash_path(inst.name))
        if record is None:
            return {"status": "failed", "info": "no migration of %s" % inst.name}
        return {"status": record["migration"]["status"], "transferred": inst.memory,
                "total": inst.memory}

    def finalize_migration_src(self, inst: base.InstanceSpec, success: bool,
                               live: bool) -> None:
        stash = self._stash_path(inst.name)
        record = self._read(stash)
        if not success and record is not None:
            record.pop("migration", None)
            self._write(self._record_path(inst.name), record)
        io.remove_file(stash)

    def finalize_migration_dst(self, inst: base.InstanceSpec, info: str,
                               success: bool) -> None:
        path = self._record_path(inst.name)
        if not success:
            io.remove_file(path)
            return
        record = self._read(path)
        if record is None:
            raise errors.HypervisorError("Instance %s was not accepted here" % inst.name)
        record.pop("incoming", None)
        record["state"] = base.STATE_RUNNING
        self._write(path, record)

    def migration_state(self, name: str) -> dict[str, Any]:
        """``{"running", "status"}`` for cleanup: ``inmigrate`` = accepted but not
        finalized here, ``postmigrate`` = sent away but not finalized here."""
        record = self._read(self._record_path(name))
        if record is not None:
            return {"running": True,
                    "status": "inmigrate" if record.get("incoming") else record.get("state")}
        if self._read(self._stash_path(name)) is not None:
            return {"running": True, "status": "postmigrate"}
        return {"running": False, "status": None}

    def abort_migration(self, inst: base.InstanceSpec) -> None:
        """Source side of the abort path: the record comes back (idempotent)."""
        self.finalize_migration_src(inst, False, True)
