"""ExtStorage providers (disk template ``ext``).

A provider is a directory ``<search dir>/<provider>/`` holding executable
scripts, called with the volume described in the environment:

=========  ========================================  ==========================
script     environment (besides EXTP_<PARAM>...)      result
=========  ========================================  ==========================
create     VOL_NAME VOL_SIZE (MiB) [VOL_CNAME ...]    volume exists
attach     VOL_NAME [VOL_SIZE]                        first stdout line: device
detach     VOL_NAME                                   device released
remove     VOL_NAME                                   volume destroyed
grow       VOL_NAME VOL_SIZE VOL_NEW_SIZE             bigger volume
setinfo    VOL_NAME VOL_METADATA                      metadata stored
verify     EXTP_* (parameter check)                   rc 0 if valid
snapshot   VOL_NAME VOL_SNAPSHOT_NAME VOL_SNAPSHOT_SIZE   (optional)
open/close VOL_NAME [VOL_OPEN_EXCLUSIVE]              (optional)
=========  ========================================  ==========================

Also set when known: ``VOL_CNAME`` (disk name), ``VOL_UUID`` (disk uuid).
An optional ``parameters.list`` names the provider's parameters
(``name description`` per line).  ``logical_id = (provider, volume name)``.
"""

import os
import re
from typing import Any, Sequence

from corral import errors, pathutils
from corral.storage import base

REQUIRED_SCRIPTS = ("create", "remove", "grow", "attach", "detach", "setinfo", "verify")
OPTIONAL_SCRIPTS = ("snapshot", "open", "close")
PARAMETERS_FILE = "parameters.list"
DEFAULT_SEARCH_PATH = ["/srv/ganeti/extstorage", "/usr/local/lib/ganeti/extstorage",
                       "/usr/lib/ganeti/extstorage", "/usr/share/ganeti/extstorage"]
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_PARAM_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
SCRIPT_TIMEOUT = 300.0


def es_search_path() -> list[str]:
    """Provider directories in search order.

    ``$CORRAL_ES_SEARCH_PATH`` (colon separated) replaces the default, which
    is the node root's ``srv/ganeti/extstorage`` then the system locations.
    """
    env = os.environ.get("CORRAL_ES_SEARCH_PATH")
    if env:
        return [p for p in env.split(":") if p]
    own = os.path.join(pathutils.root(), "srv", "ganeti", "extstorage")
    return list(dict.fromkeys([own] + DEFAULT_SEARCH_PATH))


class ExtProvider:
    """A provider found on disk: its directory, scripts and declared parameters."""

    def __init__(self, name: str, path: str) -> None:
        self.name = name
        self.path = path
        self.scripts = {s: os.path.join(path, s) for s in REQUIRED_SCRIPTS + OPTIONAL_SCRIPTS
                        if os.access(os.path.join(path, s), os.X_OK)}
        self.parameters = self._read_parameters()

    def _read_parameters(self) -> dict[str, str]:
        try:
            with open(os.path.join(self.path, PARAMETERS_FILE)) as fh:
                lines = fh.read().splitlines()
        except FileNotFoundError:
            return {}
        params = {}
        for line in lines:
            name, _, doc = line.strip().partition(" ")
            if name:
                params[name] = doc.strip()
        return params

    def has(self, script: str) -> bool:
        return script in self.scripts


def find_provider(name: str, search_path: Sequence[str] | None = None) -> ExtProvider:
    """The first provider called ``name`` on the search path, with all required scripts."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        base.raise_bdev("Invalid ExtStorage provider name %r", name)
    dirs = list(search_path or es_search_path())
    for d in dirs:
        path = os.path.join(d, name)
        if os.path.isdir(path):
            prov = ExtProvider(name, path)
            missing = [s for s in REQUIRED_SCRIPTS if not prov.has(s)]
            if missing:
                base.raise_bdev("ExtStorage provider %s (%s) lacks executable scripts: %s",
                                name, path, ", ".join(missing))
            return prov
    base.raise_bdev("ExtStorage provider %s not found in %s", name, ":".join(dirs))


def build_env(vol_name: str | None, ext_params: dict[str, Any],
              **extra: Any) -> dict[str, str]:
    """The scripts' environment: EXTP_<PARAM> plus VOL_* (None values left out)."""
    env = {}
    for key, value in ext_params.items():
        if not _PARAM_RE.match(str(key)):
            base.raise_bdev("Invalid ExtStorage parameter name %r", key)
        env["EXTP_" + str(key).upper().replace("-", "_")] = str(value)
    if vol_name is not None:
        env["VOL_NAME"] = vol_name
    for key, value in extra.items():
        if value is not None:
            env["VOL_" + key.upper()] = str(value)
    return env


class ExtStorageDevice(base.BlockDev):
    """A volume managed by a provider.

    ``params``: ``ext_params`` (dict of provider parameters -> EXTP_*),
    ``search_path`` (list, optional), ``name`` and ``uuid`` of the disk
    (VOL_CNAME, VOL_UUID).  Snapshots need the provider's optional script.
    """

    DEV_TYPE = "ext"
    CAN_GROW = True
    CAN_SNAPSHOT = True

    def __init__(self, unique_id: Sequence[Any], children: Sequence[base.BlockDev] | None,
                 size: int, params: dict[str, Any] | None = None) -> None:
        super().__init__(unique_id, children, size, params)
        if len(self.unique_id) != 2:
            base.raise_bdev("Invalid ext logical_id %r: expected (provider, name)", unique_id)
        self.provider_name, self.vol_name = self.unique_id
        if not isinstance(self.vol_name, str) or not _NAME_RE.match(self.vol_name):
            base.raise_bdev("Invalid ExtStorage volume name %r", self.vol_name)
        self._provider: ExtProvider | None = None

    @property
    def provider(self) -> ExtProvider:
        if self._provider is None:
            self._provider = find_provider(self.provider_name, self.params.get("search_path"))
        return self._provider

    def _action(self, script: str, timeout: float = SCRIPT_TIMEOUT, **extra: Any) -> str:
        """Run one provider script; its stdout, or BlockDeviceError with its output."""
        prov = self.provider
        if not prov.has(script):
            base.raise_bdev("ExtStorage provider %s has no %s script", prov.name, script)
        env = build_env(self.vol_name, self.params.get("ext_params") or {},
                        cname=self.params.get("name"), uuid=self.params.get("uuid"),
                        **extra)
        result = type(self).runner([prov.scripts[script]], env=env, cwd=prov.path,
                                   timeout=timeout)
        base.check_result(result, "ExtStorage %s %s of %s" % (prov.name, script,
                                                              self.vol_name))
        return result.stdout

    @classmethod
    def check_environment(cls, params: dict[str, Any] | None = None) -> str | None:
        provider = (params or {}).get("provider")
        if provider is None:
            return None
        try:
            find_provider(provider, (params or {}).get("search_path"))
        except errors.BlockDeviceError as err:
            return str(err)
        return None

    def verify(self) -> None:
        """Ask the provider whether ``ext_params`` are valid (BlockDeviceError if not)."""
        self._action("verify")

    @classmethod
    def create(cls, unique_id: Sequence[Any], children: Sequence[base.BlockDev], size: int,
               params: dict[str, Any], excl_stor: bool = False) -> "ExtStorageDevice":
        """Run ``create``; the provider is responsible for its own cleanup on failure."""
        dev = cls(unique_id, children, size, params)
        dev._action("create", size=size)
        return dev

    def remove(self) -> None:
        self._action("remove")
        self.attached, self.dev_path = False, None

    def attach(self) -> bool:
        """Run ``attach``; the first stdout line is the device path (must exist)."""
        try:
            out = self._action("attach", size=self.size)
        except errors.BlockDeviceError:
            self.attached, self.dev_path = False, None
            return False
        lines = out.splitlines()
        path = lines[0].strip() if lines else ""
        self.attached = bool(path) and os.path.exists(path)
        self.dev_path = path if self.attached else None
        return self.attached

    def assemble(self) -> None:
        if not self.attach():
            base.raise_bdev("ExtStorage %s: attach of %s gave no usable device",
                            self.provider_name, self.vol_name)

    def shutdown(self) -> None:
        """Run ``detach`` (providers must treat a detached volume as success)."""
        self._action("detach")
        self.attached, self.dev_path = False, None

    def open(self, force: bool = False) -> None:
        if self.provider.has("open"):
            self._action("open", open_exclusive="true" if force else "false")

    def close(self) -> None:
        if self.provider.has("close"):
            self._action("close")

    def grow(self, amount: int, dryrun: bool, backingstore: bool) -> None:
        if not backingstore or dryrun:
            return
        self._action("grow", size=self.size, new_size=self.size + amount)
        self.size += amount

    def set_info(self, text: str) -> None:
        self._action("setinfo", metadata=text)

    def snapshot(self, snap_name: str | None = None, snap_size: int | None = None) -> tuple:
        snap_name = snap_name or self.vol_name + ".snap"
        self._action("snapshot", snapshot_name=snap_name, snapshot_size=snap_size or self.size)
        return (self.provider_name, snap_name)
