"""The fake hypervisor: instances are JSON records, nothing runs.

Used by tests and scale benchmarks.  Each node keeps its records under its
own ``pathutils.hypervisor_run_dir("fake")`` (so several nodes share one
machine), one ``<name>.json`` per running instance.  Node memory is the real
/proc/meminfo total unless ``.node.json`` in that directory overrides
``memory_total``/``memory_dom0``/``cpu_total``; running instances' ``maxmem``
is subtracted from the free memory, so allocation behaves as on a real node.

Migration is node-local on each side: ``accept_instance`` writes the record
on the target, ``migrate_instance`` moves the source record aside (kept until
``finalize_migration_src`` so a failed migration can be undone).
"""

import os
import re
import time
from typing import Any

from corral import errors, pathutils, serializer
from corral.hypervisor import base
from corral.hypervisor import hvparams as hvp
from corral.utils import io

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
DEFAULT_DOM0_MIB = 512


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise errors.HypervisorError("Invalid instance name %r" % (name,))
    return name


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
        self._cache: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}

    # --- paths -------------------------------------------------------------
    @staticmethod
    def _dir() -> str:
        return pathutils.hypervisor_run_dir("fake")

    def _record_path(self, name: str) -> str:
        return os.path.join(self._dir(), _check_name(name) + ".json")

    def _stash_path(self, name: str) -> str:
        return os.path.join(self._dir(), "migrated", _check_name(name) + ".json")

    def _read(self, path: str) -> dict[str, Any] | None:
        """The record at ``path``, parsed once per file version (queries read all of them).

        Callers get their own (shallow) copy: they may change its top-level keys
        and write it back, which makes a new version.
        """
        try:
            st = os.stat(path)
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
            cached = self._cache.get(path)
            if cached is not None and cached[0] == key:
                return dict(cached[1])
            record = serializer.loads(io.read_file(path))
        except FileNotFoundError:
            self._cache.pop(path, None)
            return None
        except (ValueError, OSError) as err:
            raise errors.HypervisorError("Corrupt fake record %s: %s" % (path, err))
        self._cache[path] = (key, record)
        return dict(record)

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
        return sorted(e[:-5] for e in entries if e.endswith(".json") and not e.startswith("."))

    def get_instance_info(self, name: str) -> dict[str, Any] | None:
        return self._info(name, self._read(self._record_path(name)), time.time())

    def get_all_instances_info(self) -> dict[str, dict[str, Any]]:
        """All records in one pass over the directory (queries and node memory use it)."""
        directory = self._dir()
        now = time.time()
        out = {}
        for name in self.list_instances():
            info = self._info(name, self._read(os.path.join(directory, name + ".json")), now)
            if info is not None:
                out[name] = info
        return out

    @staticmethod
    def _info(name: str, record: dict[str, Any] | None, now: float) -> dict[str, Any] | None:
        if record is None:
            return None
        beparams = record["spec"].get("beparams") or {}
        maxmem = beparams.get("maxmem", hvp.BE_PARAMS["maxmem"].default)
        return {"name": name, "state": record.get("state", base.STATE_RUNNING),
                "memory": int(record.get("memory", maxmem)),
                "vcpus": int(beparams.get("vcpus", hvp.BE_PARAMS["vcpus"].default)),
                "time": round(now - record.get("start_time", now), 1)}

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
