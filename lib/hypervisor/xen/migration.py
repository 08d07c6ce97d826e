"""Xen live migration steps over ``xl migrate`` (spec §8), as a mixin.

Sequence driven by the master: ``migration_info`` (source: the domain's
config text) → ``accept_instance`` (target: write that config, start the
one-shot ``socat TCP-LISTEN:<migration_port> EXEC:"xl migrate-receive"`` on
the secondary IP and wait until it listens) → ``migrate_instance`` (source:
``xl migrate -s "socat - TCP:<ip>:<port> #" -C <cfg> <name> <ip>`` in the
background, output to ``<name>.migrate.log``) → ``get_migration_status``
(exit code + output) → ``finalize_migration_dst``/``_src``.

``xl migrate`` is always live; ``live=False`` pauses the domain first
(``xl pause``), xl then unpauses it on the target.  On failure xl resumes
the domain at the sender itself; finalize_src unpauses what we paused.
Disk paths in the config must be the same on both nodes (the storage layer
gives node-independent paths), because the receiver uses the sent config.
State lives in this process (the node daemon); a daemon restarted in the
middle of a migration still finds the outcome in the log file.
"""

import os
import select
import subprocess
import threading
import time
from typing import IO, Any

from corral import errors
from corral.hypervisor import base
from corral.hypervisor.xen import xl
from corral.utils import io, process

LISTEN_TIMEOUT = 30.0
_state_lock = threading.Lock()
_senders: dict[str, subprocess.Popen] = {}
_receivers: dict[str, subprocess.Popen] = {}


def _paths(name: str) -> tuple[str, str]:
    from corral.hypervisor.xen import driver
    base_path = os.path.join(driver.hv_dir(), driver.check_name(name))
    return base_path + ".migrate.log", base_path + ".receive.log"


def _drain(stream: IO[bytes], log_path: str) -> None:
    with stream, open(log_path, "ab") as log:
        for chunk in iter(lambda: stream.read1(65536), b""):
            log.write(chunk)
            log.flush()


def _wait_listening(proc: subprocess.Popen, deadline: float) -> bytes:
    """Read socat's stderr until it says "listening on"; the text read so far."""
    assert proc.stderr is not None
    seen = b""
    while b"listening on" not in seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise errors.HypervisorError("socat did not start listening within %.0f s" %
                                         LISTEN_TIMEOUT)
        ready, _, _ = select.select([proc.stderr], [], [], remaining)
        if ready:
            data = os.read(proc.stderr.fileno(), 65536)
            if not data:
                proc.wait()
                raise errors.HypervisorError("Migration listener exited (code %s): %s" %
                                             (proc.returncode, seen.decode("utf-8",
                                                                           "replace").strip()))
            seen += data
    return seen


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        process.kill_and_wait(proc.pid, timeout=10)
        proc.wait()


class XenMigrationMixin:
    """Needs the driver's ``_domain``, ``_require_dom0``, ``build_config``."""

    def migration_info(self, inst: base.InstanceSpec) -> str:
        from corral.hypervisor.xen import driver
        text = io.read_file(driver.cfg_path(inst.name), default="")
        if not text or self._domain(inst.name) is None:  # type: ignore[attr-defined]
            raise errors.HypervisorError("Instance %s is not running" % inst.name)
        return text

    def accept_instance(self, inst: base.InstanceSpec, info: str, target_ip: str,
                        block_devices: list[base.DiskSpec] | None = None) -> None:
        """Write the config and start the listener; on failure nothing stays."""
        from corral.hypervisor.xen import driver
        self._require_dom0()  # type: ignore[attr-defined]
        if self._domain(inst.name) is not None:  # type: ignore[attr-defined]
            raise errors.HypervisorError("Instance %s already runs on the target" % inst.name)
        path = driver.cfg_path(inst.name)
        os.makedirs(driver.hv_dir(), mode=0o750, exist_ok=True)
        io.write_file_atomic(path, info, mode=0o600)
        port = int(inst.hvparams.get("migration_port", 8002))
        _, log_path = _paths(inst.name)
        with _state_lock:
            _stop(_receivers.pop(inst.name, None))
            try:
                proc = subprocess.Popen(xl.receive_argv(target_ip, port),
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, start_new_session=True)
            except OSError as err:
                io.remove_file(path)
                raise errors.HypervisorError("Cannot run %s: %s" % (xl.SOCAT, err))
            try:
                seen = _wait_listening(proc, time.monotonic() + LISTEN_TIMEOUT)
            except errors.HypervisorError:
                _stop(proc)
                io.remove_file(path)
                raise
            with open(log_path, "ab") as log:
                log.write(seen)
            assert proc.stderr is not None
            threading.Thread(target=_drain, args=(proc.stderr, log_path), daemon=True,
                             name="xen-receive-%s" % inst.name).start()
            _receivers[inst.name] = proc

    def migrate_instance(self, inst: base.InstanceSpec, target_ip: str, live: bool,
                         port: int | None = None) -> None:
        """Start ``xl migrate`` in the background; returns at once."""
        from corral.hypervisor.xen import driver
        cfg = driver.cfg_path(inst.name)
        if self._domain(inst.name) is None or not os.path.exists(cfg):  # type: ignore
            raise errors.HypervisorError("Instance %s is not running" % inst.name)
        port = port or int(inst.hvparams.get("migration_port", 8002))
        log_path, _ = _paths(inst.name)
        with _state_lock:
            old = _senders.get(inst.name)
            if old is not None and old.poll() is None:
                raise errors.HypervisorError("A migration of %s is already running" %
                                             inst.name)
            if not live:
                driver.check_xl(xl.pause_argv(inst.name, True))
            with open(log_path, "wb") as log:
                try:
                    _senders[inst.name] = subprocess.Popen(
                        xl.migrate_argv(inst.name, target_ip, port, cfg),
                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                        start_new_session=True)
                except OSError as err:
                    raise errors.HypervisorError("Cannot run xl migrate: %s" % err)

    def get_migration_status(self, inst: base.InstanceSpec) -> dict[str, Any]:
        log_path, _ = _paths(inst.name)
        with _state_lock:
            proc = _senders.get(inst.name)
            code = proc.poll() if proc is not None else None
        text = io.read_file(log_path, default="")
        if proc is None:
            if not text:
                return {"status": "failed", "info": "no migration of %s" % inst.name,
                        "transferred": 0, "total": 0}
            code = 0 if "Migration successful" in text else 1
        out = xl.parse_migrate(text, code)
        total = inst.memory << 20
        out.update(transferred=total if out["status"] == "completed" else 0, total=total)
        return out

    def finalize_migration_src(self, inst: base.InstanceSpec, success: bool,
                               live: bool) -> None:
        """Success: forget the config; failure: stop xl migrate, unpause what we paused."""
        from corral.hypervisor.xen import driver
        with _state_lock:
            _stop(_senders.pop(inst.name, None))
        dom = self._domain(inst.name)  # type: ignore[attr-defined]
        if success:
            if dom is None:
                io.remove_file(driver.cfg_path(inst.name))
            return
        if dom is not None and dom.state == "paused":
            driver.check_xl(xl.pause_argv(inst.name, False))

    def finalize_migration_dst(self, inst: base.InstanceSpec, info: str,
                               success: bool) -> None:
        """Stop the listener; success: the domain must run here; failure: remove it."""
        from corral.hypervisor.xen import driver
        with _state_lock:
            _stop(_receivers.pop(inst.name, None))
        dom = self._domain(inst.name)  # type: ignore[attr-defined]
        if success:
            if dom is None:
                raise errors.HypervisorError("Migrated instance %s is not running here" %
                                             inst.name)
            return
        if dom is not None:
            driver.check_xl(xl.destroy_argv(inst.name))
        io.remove_file(driver.cfg_path(inst.name))

    def _forget_migration(self, name: str) -> None:
        with _state_lock:
            _stop(_senders.pop(name, None))
            _stop(_receivers.pop(name, None))
