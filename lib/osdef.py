"""OS definitions: discovery, validity, script environment and the node-side runners.

An OS definition is a directory of scripts (spec/os-api.md).  This module
finds them along ``pathutils.os_search_path()``, decides whether each is valid
(§2), builds the environment its scripts receive (§4, pure functions of JSON
data, so the master can compute or test them too) and runs the scripts on a
node (§3) with their output in a per-run log file.

Input shapes (plain JSON dicts, the keys of Ganeti's objects):

* ``inst``: ``name``, ``uuid``, ``os`` (full name, ``NAME[+VARIANT]``),
  ``primary_node``, ``secondary_nodes`` (list), ``ctime``, ``mtime`` (floats).
* disk: ``path`` (device or file on this node, optional), ``uri`` (userspace
  access, optional), ``mode`` (``rw``/``ro``), ``size`` (MiB), ``uuid``,
  ``name`` (optional), ``dev_type`` (disk template: ``file``, ``plain``...),
  ``file_driver`` (``loop`` when absent; used for file-based templates).
* nic: ``mac``, ``ip``, ``mode``, ``link``, ``vlan`` (not exported), ``uuid``,
  ``name``, ``network`` (network UUID) and, when attached to a network,
  ``netinfo``: ``name``, ``uuid``, ``family``, ``network`` (subnet),
  ``gateway``, ``network6``, ``gateway6``, ``mac_prefix``, ``tags`` (list).
"""

import os
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import IO, Any

from corral import constants, errors, pathutils
from corral.utils import process

API_FILE = "ganeti_api_version"
VARIANTS_FILE = "variants.list"
PARAMETERS_FILE = "parameters.list"
SCRIPT_CREATE = "create"
SCRIPT_CREATE_UNTRUSTED = "create_untrusted"
SCRIPT_IMPORT = "import"
SCRIPT_EXPORT = "export"
SCRIPT_RENAME = "rename"
SCRIPT_VERIFY = "verify"
ALL_SCRIPTS = (SCRIPT_CREATE, SCRIPT_CREATE_UNTRUSTED, SCRIPT_IMPORT, SCRIPT_EXPORT,
               SCRIPT_RENAME, SCRIPT_VERIFY)
OS_API_V15 = 15
OS_API_V20 = 20
VERIFY_PARAMETERS = "parameters"
SCRIPT_PATH = "/sbin:/bin:/usr/sbin:/usr/bin"
LOG_TAIL_LINES = 20
HV_DISK_TYPE = "disk_type"
HV_NIC_TYPE = "nic_type"
_BLOCK_BACKENDS = frozenset([constants.DT_PLAIN, constants.DT_DRBD8, constants.DT_BLOCK,
                             constants.DT_RBD, constants.DT_EXT])
_FILE_BACKENDS = frozenset([constants.DT_FILE, constants.DT_SHARED_FILE,
                            constants.DT_GLUSTER])


@dataclass
class OSDefinition:
    """One OS directory as found on this node; ``error`` says why it is invalid."""

    name: str
    path: str
    api_versions: list[int] = field(default_factory=list)
    variants: list[str] = field(default_factory=list)
    parameters: list[tuple[str, str]] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)
    trusted: bool = False
    valid: bool = False
    error: str = ""

    @property
    def api_version(self) -> int:
        """Effective API version: highest declared one Corral supports (0 if none)."""
        usable = set(self.api_versions) & constants.OS_API_VERSIONS
        return max(usable) if usable else 0

    @property
    def parameter_names(self) -> list[str]:
        return [p[0] for p in self.parameters]

    def script_path(self, script: str) -> str:
        return os.path.join(self.path, script)

    def to_dict(self) -> dict[str, Any]:
        """JSON form for RPC (``gnt-os diagnose``); inverse of from_dict."""
        data = asdict(self)
        data["parameters"] = [list(p) for p in self.parameters]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "OSDefinition":
        data = dict(data)
        data["parameters"] = [tuple(p) for p in data.get("parameters", [])]
        return cls(**data)


def split_os_name(full_name: str) -> tuple[str, str]:
    """``"a+b"`` -> ``("a", "b")``; ``"a"`` -> ``("a", "")``.  Splits at the first '+'."""
    name, _, variant = full_name.partition("+")
    return name, variant


def full_names(os_def: OSDefinition) -> list[str]:
    """Names as listed by ``gnt-os list``: ``NAME+V`` per variant, else ``NAME``."""
    if os_def.variants:
        return ["%s+%s" % (os_def.name, v) for v in os_def.variants]
    return [os_def.name]


# ---------------------------------------------------------------- discovery

def _visible_entries(directory: str) -> list[str]:
    try:
        return sorted(e for e in os.listdir(directory) if not e.startswith("."))
    except OSError:
        return []


def diagnose_all(search_path: list[str] | None = None) -> list[OSDefinition]:
    """Every OS found along the search path, valid or not, sorted by name.

    The first directory in path order wins for a given name, as in Ganeti;
    shadowed entries further down the path are not reported.
    """
    seen: dict[str, str] = {}
    for directory in search_path if search_path is not None else pathutils.os_search_path():
        for entry in _visible_entries(directory):
            seen.setdefault(entry, directory)
    return [load_os(name, os.path.join(d, name)) for name, d in sorted(seen.items())]


def find_os(name: str, search_path: list[str] | None = None) -> OSDefinition:
    """The OS called ``name`` (a variant suffix is ignored), valid or not.

    Never raises for a bad or missing OS: the result carries the reason.
    """
    base, _ = split_os_name(name)
    for directory in search_path if search_path is not None else pathutils.os_search_path():
        path = os.path.join(directory, base)
        if base and not base.startswith(".") and "/" not in base and os.path.lexists(path):
            return load_os(base, path)
    return OSDefinition(name=base, path="", error="OS dir not found in search path")


def require_os(os_ref: "OSDefinition | str") -> OSDefinition:
    """``os_ref`` resolved and checked: raises OpExecError if not valid here."""
    os_def = find_os(os_ref) if isinstance(os_ref, str) else os_ref
    if not os_def.valid:
        raise errors.OpExecError("OS '%s' is not valid on this node: %s"
                                 % (os_def.name, os_def.error))
    return os_def


def load_os(name: str, path: str) -> OSDefinition:
    """Read and validate the OS directory ``path`` (§2 validity rules)."""
    os_def = OSDefinition(name=name, path=path)
    try:
        _load_into(os_def)
    except _Invalid as err:
        os_def.error = str(err)
        return os_def
    os_def.valid = True
    return os_def


class _Invalid(Exception):
    pass


def _load_into(os_def: OSDefinition) -> None:
    if not os.path.isdir(os_def.path):
        raise _Invalid("'%s' is not a directory" % os_def.path)
    os_def.api_versions = _read_api_versions(os_def.path)
    if not os_def.api_version:
        raise _Invalid("API versions %s not supported (supported: %s)"
                       % (os_def.api_versions,
                          ", ".join(str(v) for v in sorted(constants.OS_API_VERSIONS))))
    max_api = max(os_def.api_versions)
    required = [SCRIPT_IMPORT, SCRIPT_EXPORT, SCRIPT_RENAME]
    if max_api >= OS_API_V20:
        required.append(SCRIPT_VERIFY)
    for script in ALL_SCRIPTS:
        if _check_file(os_def.path, script, script in required, executable=True):
            os_def.scripts.append(script)
    if SCRIPT_CREATE not in os_def.scripts and SCRIPT_CREATE_UNTRUSTED not in os_def.scripts:
        raise _Invalid("missing script 'create' (or 'create_untrusted')")
    os_def.trusted = SCRIPT_CREATE in os_def.scripts
    if max_api >= OS_API_V15 and _check_file(os_def.path, VARIANTS_FILE, False):
        os_def.variants = _read_variants(os.path.join(os_def.path, VARIANTS_FILE))
    if max_api >= OS_API_V20 and _check_file(os_def.path, PARAMETERS_FILE, True):
        os_def.parameters = _read_parameters(os.path.join(os_def.path, PARAMETERS_FILE))


def _read_api_versions(path: str) -> list[int]:
    api_file = os.path.join(path, API_FILE)
    try:
        st = os.stat(api_file)
    except OSError as err:
        raise _Invalid("missing file '%s': %s" % (API_FILE, err.strerror))
    if not stat.S_ISREG(st.st_mode):
        raise _Invalid("'%s' is not a regular file" % API_FILE)
    try:
        with open(api_file) as fh:
            words = fh.read().split()
    except (OSError, UnicodeDecodeError) as err:
        raise _Invalid("cannot read '%s': %s" % (API_FILE, err))
    try:
        return [int(w) for w in words]
    except ValueError:
        raise _Invalid("'%s' contains invalid data (not one integer per line)" % API_FILE)


def _check_file(path: str, fname: str, required: bool, executable: bool = False) -> bool:
    """True if ``fname`` is present and usable; raises _Invalid if it must be and is not.

    Symlinks are followed (Debian's instance-debootstrap links variants.list
    into /etc); a dangling link counts as absent.
    """
    kind = "script" if executable else "file"
    try:
        st = os.stat(os.path.join(path, fname))
    except OSError:
        if required:
            raise _Invalid("missing %s '%s'" % (kind, fname))
        return False
    if not stat.S_ISREG(st.st_mode):
        raise _Invalid("%s '%s' is not a regular file" % (kind, fname))
    if executable and not st.st_mode & stat.S_IXUSR:
        raise _Invalid("script '%s' is not executable" % fname)
    return True


def _read_lines(fpath: str) -> list[str]:
    try:
        with open(fpath) as fh:
            return [ln.strip() for ln in fh.read().splitlines()]
    except (OSError, UnicodeDecodeError) as err:
        raise _Invalid("cannot read '%s': %s" % (os.path.basename(fpath), err))


def _read_variants(fpath: str) -> list[str]:
    return [ln for ln in _read_lines(fpath) if ln and not ln.startswith("#")]


def _read_parameters(fpath: str) -> list[tuple[str, str]]:
    params = []
    for line in _read_lines(fpath):
        if not line:
            continue
        parts = line.split(None, 1)
        params.append((parts[0], parts[1] if len(parts) > 1 else ""))
    return params


# ---------------------------------------------------------- master-side checks

def check_variant(os_def: OSDefinition, variant: str, force_variant: bool = False) -> None:
    """Raise OpPrereqError unless ``variant`` may be used with ``os_def`` (§5).

    ``variant`` is "" when none was given.  ``force_variant`` accepts a missing
    or unlisted variant for an OS with variants, never a variant for an OS
    without any.
    """
    if not os_def.variants:
        if variant:
            raise errors.OpPrereqError("OS '%s' doesn't support variants ('%s' passed)"
                                       % (os_def.name, variant), errors.ECODE_INVAL)
        return
    if force_variant:
        return
    if not variant:
        raise errors.OpPrereqError("OS name must include a variant (OS '%s' has: %s)"
                                   % (os_def.name, ", ".join(os_def.variants)),
                                   errors.ECODE_INVAL)
    if variant not in os_def.variants:
        raise errors.OpPrereqError("Unsupported OS variant '%s' for OS '%s' (supported: %s)"
                                   % (variant, os_def.name, ", ".join(os_def.variants)),
                                   errors.ECODE_INVAL)


def check_os_params(os_def: OSDefinition, osparams: dict[str, Any]) -> None:
    """Raise OpPrereqError if a parameter is not in parameters.list (API 20 only)."""
    if os_def.api_version < OS_API_V20:
        return
    unknown = sorted(set(osparams) - set(os_def.parameter_names))
    if unknown:
        raise errors.OpPrereqError("The following parameters are not supported by the OS %s: %s"
                                   % (os_def.name, ", ".join(unknown)), errors.ECODE_INVAL)


# ------------------------------------------------------------- environment

def _envstr(value: Any) -> str:
    return "" if value is None else str(value)


def os_core_env(os_def: OSDefinition, variant: str, osparams: dict[str, Any],
                debug: int = 0) -> dict[str, str]:
    """The §4.1 variables every script gets (verify gets only these).

    Pure: no file is read; ``os_def`` supplies the API version and variants.
    """
    api = os_def.api_version
    if api >= OS_API_V15 and os_def.variants:
        variant = variant or os_def.variants[0]
    else:
        variant = ""
    env = {
        "OS_API_VERSION": str(api),
        "OS_NAME": os_def.name,
        "OS_VARIANT": variant,
        "DEBUG_LEVEL": "%d" % int(debug),
        "PATH": SCRIPT_PATH,
    }
    for pname, pvalue in osparams.items():
        env["OSP_" + pname.upper().replace("-", "_")] = _envstr(pvalue)
    return env


def os_instance_env(os_def: OSDefinition, inst: dict[str, Any], disks: list[dict[str, Any]],
                    nics: list[dict[str, Any]], hv_name: str, hvparams: dict[str, Any],
                    beparams: dict[str, Any], osparams: dict[str, Any] | None = None,
                    debug: int = 0) -> dict[str, str]:
    """Core plus §4.2 variables for create/import/export/rename.

    The variant comes from ``inst["os"]`` so OS_VARIANT and INSTANCE_OS always
    agree.  ``osparams`` are the merged parameters (cluster defaults, instance,
    private, and secret at install time).  Pure, JSON in, strings out.
    """
    env = os_core_env(os_def, split_os_name(inst["os"])[1], osparams or {}, debug)
    env["INSTANCE_NAME"] = inst["name"]
    env["INSTANCE_OS"] = inst["os"]
    for key in ("uuid", "primary_node", "ctime", "mtime"):
        if inst.get(key) is not None:
            env["INSTANCE_" + key.upper()] = _envstr(inst[key])
    env["INSTANCE_SECONDARY_NODES"] = " ".join(inst.get("secondary_nodes") or [])
    env["HYPERVISOR"] = hv_name
    env["DISK_COUNT"] = "%d" % len(disks)
    for idx, disk in enumerate(disks):
        env.update(_disk_env(idx, disk, hvparams))
    env["NIC_COUNT"] = "%d" % len(nics)
    for idx, nic in enumerate(nics):
        env.update(_nic_env(idx, nic, hvparams))
    for key, value in beparams.items():
        env["INSTANCE_BE_%s" % key] = _envstr(value)
    for key, value in hvparams.items():
        env["INSTANCE_HV_%s" % key] = _envstr(value)
    return env


def _disk_env(idx: int, disk: dict[str, Any], hvparams: dict[str, Any]) -> dict[str, str]:
    pre = "DISK_%d_" % idx
    env = {pre + "ACCESS": _envstr(disk.get("mode", constants.DISK_RDWR))}
    if disk.get("path"):
        env[pre + "PATH"] = disk["path"]
    if disk.get("uri"):
        env[pre + "URI"] = disk["uri"]
    if disk.get("size") is not None:
        env[pre + "SIZE"] = _envstr(disk["size"])
    if disk.get("uuid"):
        env[pre + "UUID"] = disk["uuid"]
    if disk.get("name"):
        env[pre + "NAME"] = disk["name"]
    if HV_DISK_TYPE in hvparams:
        env[pre + "FRONTEND_TYPE"] = _envstr(hvparams[HV_DISK_TYPE])
    dev_type = disk.get("dev_type")
    if dev_type in _BLOCK_BACKENDS:
        env[pre + "BACKEND_TYPE"] = "block"
    elif dev_type in _FILE_BACKENDS:
        env[pre + "BACKEND_TYPE"] = "file:%s" % (disk.get("file_driver") or "loop")
    return env


_NETINFO_KEYS = (("name", "NAME"), ("uuid", "UUID"), ("family", "FAMILY"),
                 ("network", "SUBNET"), ("gateway", "GATEWAY"), ("network6", "SUBNET6"),
                 ("gateway6", "GATEWAY6"), ("mac_prefix", "MAC_PREFIX"))


def _nic_env(idx: int, nic: dict[str, Any], hvparams: dict[str, Any]) -> dict[str, str]:
    pre = "NIC_%d_" % idx
    env = {pre + "MAC": _envstr(nic.get("mac")), pre + "MODE": _envstr(nic.get("mode"))}
    if nic.get("uuid"):
        env[pre + "UUID"] = nic["uuid"]
    if nic.get("name"):
        env[pre + "NAME"] = nic["name"]
    if nic.get("ip"):
        env[pre + "IP"] = nic["ip"]
    if nic.get("mode") == constants.NIC_MODE_BRIDGED:
        env[pre + "BRIDGE"] = _envstr(nic.get("link"))
    if nic.get("link"):
        env[pre + "LINK"] = nic["link"]
    netinfo = nic.get("netinfo")
    if nic.get("network") and netinfo:
        for key, suffix in _NETINFO_KEYS:
            if netinfo.get(key):
                env[pre + "NETWORK_" + suffix] = _envstr(netinfo[key])
        env[pre + "NETWORK_TAGS"] = " ".join(netinfo.get("tags") or [])
    if HV_NIC_TYPE in hvparams:
        env[pre + "FRONTEND_TYPE"] = _envstr(hvparams[HV_NIC_TYPE])
    return env


def disk_stream_env(kind: str, disks: list[dict[str, Any]], index: int) -> dict[str, str]:
    """EXPORT_*/IMPORT_* variables (§4.3) for disk ``index``; kind 'export'/'import'."""
    if not 0 <= index < len(disks):
        raise errors.OpExecError("Disk index %d out of range (instance has %d disks)"
                                 % (index, len(disks)))
    pre = kind.upper() + "_"
    disk = disks[index]
    env = {pre + "INDEX": "%d" % index}
    if disk.get("path"):
        env[pre + "DISK_PATH"] = disk["path"]
        env[pre + "DEVICE"] = disk["path"]
    if disk.get("uri"):
        env[pre + "DISK_URI"] = disk["uri"]
    return env


# ------------------------------------------------------------------ logging

def log_file_name(kind: str, os_name: str, instance: str, component: str = "",
                  when: float | None = None) -> str:
    """``<os_log_dir>/<kind>-<os>-<instance>[-<component>]-<YYYY-MM-DD_HH_MM_SS>.log``.

    Local time, as Ganeti.  Two runs in the same second share (append to) one file.
    """
    stamp = time.strftime("%Y-%m-%d_%H_%M_%S", time.localtime(when))
    parts = [kind, os_name, instance] + ([component] if component else []) + [stamp]
    base = "-".join(p.replace("/", "_") for p in parts) + ".log"
    return os.path.join(pathutils.os_log_dir(), base)


def tail_file(path: str, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of ``path`` ([] if unreadable)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    return data.rstrip("\n").splitlines()[-lines:] if data.strip() else []


def _new_log(kind: str, os_name: str, instance: str, component: str = "") -> str:
    os.makedirs(pathutils.os_log_dir(), mode=0o750, exist_ok=True)
    return log_file_name(kind, os_name, instance, component)


def _fail(what: str, reason: str, logfile: str) -> errors.OpExecError:
    return errors.OpExecError("%s failed (%s), last lines in the log file:\n%s"
                              % (what, reason, "\n".join(tail_file(logfile))))


def _script_env_extra() -> dict[str, str]:
    # Not in Ganeti's contract: lets Corral's own OS definitions find their
    # per-root configuration (hooks, cache) when several nodes share a machine.
    # Scripts written for Ganeti ignore it.
    root = os.environ.get("CORRAL_ROOT")
    return {"CORRAL_ROOT": root} if root else {}


# ------------------------------------------------------------------ runners
#
# Node side, called by the node daemon.  None imposes a timeout (Ganeti
# does not); callers hold the instance lock, so one create/rename runs per
# instance at a time.

def _run_logged(os_def: OSDefinition, script: str, env: dict[str, str], logfile: str,
                what: str) -> None:
    env = dict(env, **_script_env_extra())
    result = process.run_cmd([os_def.script_path(script)], env=env, reset_env=True,
                             cwd=os_def.path, output_file=logfile)
    if result.failed:
        raise _fail(what, result.fail_reason, logfile)


def run_create(os_ref: "OSDefinition | str", inst: dict[str, Any], disks: list[dict[str, Any]],
               nics: list[dict[str, Any]], hv_name: str, hvparams: dict[str, Any],
               beparams: dict[str, Any], osparams: dict[str, Any] | None = None,
               debug: int = 0, reinstall: bool = False) -> str:
    """Run the OS ``create`` script for ``inst``; return the log file path.

    The disks must be assembled and their ``path`` set.  The environment is
    reset to §4 (plus INSTANCE_REINSTALL=1 when ``reinstall``), cwd is the OS
    directory, stdin is empty.  Raises OpExecError with the script's last log
    lines if it fails; what it left on the disks is the caller's to discard.
    """
    os_def = require_os(os_ref)
    if not os_def.trusted:
        raise errors.OpExecError("OS '%s' only has 'create_untrusted'; untrusted installs"
                                 " are not supported" % os_def.name)
    env = os_instance_env(os_def, inst, disks, nics, hv_name, hvparams, beparams,
                          osparams, debug)
    if reinstall:
        env["INSTANCE_REINSTALL"] = "1"
    logfile = _new_log("add", inst["os"], inst["name"])
    _run_logged(os_def, SCRIPT_CREATE, env, logfile, "OS create script")
    return logfile


def run_rename(os_ref: "OSDefinition | str", inst: dict[str, Any], disks: list[dict[str, Any]],
               nics: list[dict[str, Any]], hv_name: str, hvparams: dict[str, Any],
               beparams: dict[str, Any], osparams: dict[str, Any] | None = None,
               debug: int = 0, *, old_name: str) -> str:
    """Run ``rename`` for ``inst`` (already carrying its new name); return the log path.

    Raises OpExecError on failure; the master turns that into a warning.
    """
    os_def = require_os(os_ref)
    env = os_instance_env(os_def, inst, disks, nics, hv_name, hvparams, beparams,
                          osparams, debug)
    env["OLD_INSTANCE_NAME"] = old_name
    logfile = _new_log("rename", inst["os"], "%s-%s" % (old_name, inst["name"]))
    _run_logged(os_def, SCRIPT_RENAME, env, logfile, "OS rename script")
    return logfile


def run_verify(os_ref: "OSDefinition | str", osparams: dict[str, Any], debug: int = 0) -> None:
    """Validate ``osparams`` for the OS ``NAME[+VARIANT]`` on this node.

    Does nothing for OSes below API 20.  Unknown parameter names raise
    OpPrereqError before the script runs; a failing ``verify parameters``
    raises OpExecError carrying the script's output (no log file).
    """
    os_def = require_os(os_ref)
    if max(os_def.api_versions) < OS_API_V20:
        return
    check_os_params(os_def, osparams)
    variant = split_os_name(os_ref)[1] if isinstance(os_ref, str) else ""
    env = dict(os_core_env(os_def, variant, osparams, debug), **_script_env_extra())
    result = process.run_cmd([os_def.script_path(SCRIPT_VERIFY), VERIFY_PARAMETERS],
                             env=env, reset_env=True, cwd=os_def.path)
    if result.failed:
        raise errors.OpExecError("OS validation script failed (%s), output: %s"
                                 % (result.fail_reason, result.output.strip()))


def run_export(os_ref: "OSDefinition | str", inst: dict[str, Any], disks: list[dict[str, Any]],
               nics: list[dict[str, Any]], hv_name: str, hvparams: dict[str, Any],
               beparams: dict[str, Any], osparams: dict[str, Any] | None = None,
               debug: int = 0, *, disk_index: int, out_fh: "IO[bytes] | int",
               size_cb: Callable[[int], None] | None = None) -> int | None:
    """Stream disk ``disk_index`` through the OS ``export`` script into ``out_fh``.

    ``out_fh`` is a file object or descriptor (flush buffered data first);
    the script's stderr goes to the log.  With ``size_cb`` the script gets
    EXP_SIZE_FD and ``size_cb`` is called with the predicted byte size as soon
    as it is written; the size (or None) is also returned.  Blocks until the
    script exits; raises OpExecError with the log tail on failure.
    """
    os_def = require_os(os_ref)
    env = os_instance_env(os_def, inst, disks, nics, hv_name, hvparams, beparams,
                          osparams, debug)
    env.update(disk_stream_env(SCRIPT_EXPORT, disks, disk_index))
    logfile = _new_log("export", inst["os"], inst["name"], "disk%d" % disk_index)
    return _run_stream(os_def, SCRIPT_EXPORT, env, logfile, subprocess.DEVNULL, out_fh,
                       size_cb)


def run_import(os_ref: "OSDefinition | str", inst: dict[str, Any], disks: list[dict[str, Any]],
               nics: list[dict[str, Any]], hv_name: str, hvparams: dict[str, Any],
               beparams: dict[str, Any], osparams: dict[str, Any] | None = None,
               debug: int = 0, *, disk_index: int, in_fh: "IO[bytes] | int") -> None:
    """Feed ``in_fh`` (an export stream) to the OS ``import`` script for one disk.

    stdout and stderr go to the log.  Blocks until the script exits; raises
    OpExecError with the log tail on failure (the disk is then partly written).
    """
    os_def = require_os(os_ref)
    env = os_instance_env(os_def, inst, disks, nics, hv_name, hvparams, beparams,
                          osparams, debug)
    env.update(disk_stream_env(SCRIPT_IMPORT, disks, disk_index))
    logfile = _new_log("import", inst["os"], inst["name"], "disk%d" % disk_index)
    _run_stream(os_def, SCRIPT_IMPORT, env, logfile, in_fh, None, None)


def _run_stream(os_def: OSDefinition, script: str, env: dict[str, str], logfile: str,
                stdin: Any, stdout: Any, size_cb: Callable[[int], None] | None) -> int | None:
    """Run an import/export script on top of the daemon's environment (§3)."""
    full_env = dict(os.environ)
    full_env.update(env)
    full_env["LC_ALL"] = "C"
    size_reader = None
    pass_fds: tuple[int, ...] = ()
    if size_cb is not None:
        size_reader = _SizeReader(size_cb)
        full_env["EXP_SIZE_FD"] = str(size_reader.write_fd)
        pass_fds = (size_reader.write_fd,)
    try:
        with open(logfile, "ab") as log:
            proc = subprocess.Popen([os_def.script_path(script)], env=full_env,
                                    cwd=os_def.path, stdin=stdin,
                                    stdout=stdout if stdout is not None else log,
                                    stderr=log, pass_fds=pass_fds, close_fds=True,
                                    start_new_session=True)
    except OSError as err:
        if size_reader:
            size_reader.abandon()
        raise errors.OpExecError("Cannot run OS %s script: %s" % (script, err))
    if size_reader:
        size_reader.start()
    rc = proc.wait()
    size = size_reader.finish() if size_reader else None
    if rc != 0:
        reason = ("killed by signal %d" % -rc) if rc < 0 else ("exited with exit code %d" % rc)
        raise _fail("OS %s script" % script, reason, logfile)
    return size


class _SizeReader:
    """Reads the first line an export script writes to EXP_SIZE_FD, in a thread.

    The thread stops at the first newline or at EOF, so a script that never
    writes its size costs nothing once every copy of the fd is closed.
    """

    def __init__(self, callback: Callable[[int], None]) -> None:
        self._callback = callback
        self.read_fd, self.write_fd = os.pipe()
        self.size: int | None = None
        self._thread = threading.Thread(target=self._read, daemon=True, name="exp-size")

    def start(self) -> None:
        os.close(self.write_fd)
        self._thread.start()

    def abandon(self) -> None:
        os.close(self.write_fd)
        os.close(self.read_fd)

    def _read(self) -> None:
        buf = b""
        try:
            while b"\n" not in buf:
                chunk = os.read(self.read_fd, 64)
                if not chunk:
                    break
                buf += chunk
        finally:
            os.close(self.read_fd)
        try:
            self.size = int(buf.split(b"\n", 1)[0].strip())
        except ValueError:
            return
        self._callback(self.size)

    def finish(self) -> int | None:
        # The script has exited; only a leftover child still holding the fd
        # could keep the reader blocked, and then the size is simply unknown.
        self._thread.join(timeout=5)
        return self.size
