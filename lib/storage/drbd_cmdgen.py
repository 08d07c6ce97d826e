"""DRBD 8.x command lines, as pure functions of (minor, devices, addresses, params).

Nothing here runs a process or reads the system: ``drbd.py`` picks a
generator from the kernel's version (``get_cmdgen``) and executes its output.
The 8.4 syntax (resources, ``drbdsetup attach|connect|disk-options``) and the
8.3 one (``drbdsetup /dev/drbdM disk|net|syncer``) are spelled out in
spec/hypervisors-storage.md §7.  Both use external "flex" metadata.

``params`` uses the drbd disk-parameter names of the cluster configuration:
``protocol``, ``resync-rate``, ``dynamic-resync``, ``c-plan-ahead``,
``c-fill-target``, ``c-delay-target``, ``c-max-rate``, ``c-min-rate``,
``disk-barriers``, ``meta-barriers``, ``disk-custom``, ``net-custom``.
"""

import ipaddress
import shlex
from dataclasses import dataclass
from typing import Any

from corral.storage import base

DRBDSETUP = "drbdsetup"
DRBDMETA = "drbdmeta"
AFTER_SB_0PRI = "discard-zero-changes"
AFTER_SB_1PRI = "consensus"
DEFAULT_HMAC = "md5"
PROTOCOLS = frozenset(["A", "B", "C"])
BARRIER_LETTERS = frozenset("bfd")
DEFAULT_PARAMS: dict[str, Any] = {
    "protocol": "C", "resync-rate": 61440, "dynamic-resync": False, "c-plan-ahead": 20,
    "c-fill-target": 0, "c-delay-target": 1, "c-max-rate": 61440, "c-min-rate": 4096,
    "disk-barriers": "n", "meta-barriers": False, "disk-custom": "", "net-custom": "",
}
_C_PARAMS = ("c-plan-ahead", "c-fill-target", "c-delay-target", "c-max-rate", "c-min-rate")


@dataclass(frozen=True)
class NetAddr:
    """One end of a DRBD connection; ``family`` is ``ipv4`` or ``ipv6``."""

    host: str
    port: int
    family: str = ""

    def __str__(self) -> str:
        family = self.family or address_family(self.host)
        host = "[%s]" % self.host if family == "ipv6" else self.host
        return "%s:%s:%d" % (family, host, self.port)


def address_family(host: str) -> str:
    """``ipv4``/``ipv6`` for an IP literal; BlockDeviceError for anything else."""
    try:
        return "ipv6" if ipaddress.ip_address(host).version == 6 else "ipv4"
    except ValueError:
        base.raise_bdev("Invalid DRBD address %r (an IP address is required)", host)


def full_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """``params`` over the defaults, validated (BlockDeviceError on bad values)."""
    result = dict(DEFAULT_PARAMS)
    result.update({k: v for k, v in (params or {}).items() if k in DEFAULT_PARAMS})
    if result["protocol"] not in PROTOCOLS:
        base.raise_bdev("Invalid DRBD protocol %r (A, B or C)", result["protocol"])
    barriers = result["disk-barriers"] or "n"
    if barriers != "n" and not set(barriers) <= BARRIER_LETTERS:
        base.raise_bdev("Invalid disk-barriers %r: 'n' or letters from 'bfd'", barriers)
    result["disk-barriers"] = barriers
    return result


def _custom(text: str) -> list[str]:
    return shlex.split(text) if text else []


class DRBD84CmdGenerator:
    """drbdsetup/drbdmeta syntax of DRBD 8.4 (resource ``resource<M>``, volume 0)."""

    @staticmethod
    def resource(minor: int) -> str:
        return "resource%d" % minor

    @staticmethod
    def dev_path(minor: int) -> str:
        return "/dev/drbd%d" % minor

    def create_md_cmd(self, minor: int, meta_dev: str) -> list[str]:
        return [DRBDMETA, "--force", self.dev_path(minor), "v08", meta_dev, "flex-external",
                "create-md"]

    def barrier_args(self, params: dict[str, Any]) -> list[str]:
        args = []
        letters = params["disk-barriers"]
        for letter, opt in (("b", "--disk-barrier=no"), ("f", "--disk-flushes=no"),
                            ("d", "--disk-drain=no")):
            if letter in letters:
                args.append(opt)
        if params["meta-barriers"]:
            args.append("--md-flushes=no")
        return args

    def local_attach_cmds(self, minor: int, data_dev: str, meta_dev: str,
                          size: int | None, params: dict[str, Any] | None) -> list[list[str]]:
        """new-resource, new-minor, apply-al, attach (size in MiB, None = whole)."""
        p = full_params(params)
        res = self.resource(minor)
        attach = [DRBDSETUP, "attach", str(minor), data_dev, meta_dev, "flexible",
                  "--on-io-error=detach"]
        if size:
            attach += ["--size", "%dm" % size]
        attach += self.barrier_args(p) + _custom(p["disk-custom"])
        return [[DRBDSETUP, "new-resource", res],
                [DRBDSETUP, "new-minor", res, str(minor), "0"],
                [DRBDMETA, self.dev_path(minor), "v08", meta_dev, "flex-external", "apply-al"],
                attach]

    def net_attach_cmds(self, minor: int, local: NetAddr, remote: NetAddr, dual_pri: bool,
                        secret: str | None, params: dict[str, Any] | None,
                        hmac: str = DEFAULT_HMAC) -> list[list[str]]:
        p = full_params(params)
        cmd = [DRBDSETUP, "connect", self.resource(minor), str(local), str(remote),
               "--protocol", p["protocol"], "--after-sb-0pri", AFTER_SB_0PRI,
               "--after-sb-1pri", AFTER_SB_1PRI]
        if dual_pri:
            cmd.append("--allow-two-primaries")
        if secret:
            cmd += ["--cram-hmac-alg", hmac, "--shared-secret", secret]
        return [cmd + _custom(p["net-custom"])]

    def sync_params_cmds(self, minor: int, params: dict[str, Any] | None) -> list[list[str]]:
        p = full_params(params)
        cmd = [DRBDSETUP, "disk-options", str(minor)]
        if p["dynamic-resync"]:
            for name in _C_PARAMS:
                cmd += ["--" + name, str(p[name])]
        else:
            cmd += ["--resync-rate", str(p["resync-rate"])]
        return [cmd]

    def primary_cmd(self, minor: int, force: bool = False) -> list[str]:
        return [DRBDSETUP, "primary", str(minor)] + (["--force"] if force else [])

    def secondary_cmd(self, minor: int) -> list[str]:
        return [DRBDSETUP, "secondary", str(minor)]

    def disconnect_cmd(self, minor: int, local: NetAddr, remote: NetAddr) -> list[str]:
        return [DRBDSETUP, "disconnect", str(local), str(remote)]

    def detach_cmd(self, minor: int) -> list[str]:
        return [DRBDSETUP, "detach", str(minor)]

    def down_cmd(self, minor: int) -> list[str]:
        return [DRBDSETUP, "down", self.resource(minor)]

    def show_cmd(self, minor: int) -> list[str]:
        return [DRBDSETUP, "show", str(minor)]

    def pause_sync_cmd(self, minor: int) -> list[str]:
        return [DRBDSETUP, "pause-sync", str(minor)]

    def resume_sync_cmd(self, minor: int) -> list[str]:
        return [DRBDSETUP, "resume-sync", str(minor)]

    def resize_cmd(self, minor: int, size: int) -> list[str]:
        return [DRBDSETUP, "resize", str(minor), "--size", "%dm" % size]


class DRBD83CmdGenerator(DRBD84CmdGenerator):
    """DRBD 8.3 and older: every command addresses the device ``/dev/drbdM``."""

    def barrier_args(self, params: dict[str, Any]) -> list[str]:
        args = []
        letters = params["disk-barriers"]
        for letter, opt in (("b", "--no-disk-barrier"), ("f", "--no-disk-flushes"),
                            ("d", "--no-disk-drain")):
            if letter in letters:
                args.append(opt)
        if params["meta-barriers"]:
            args.append("--no-md-flushes")
        return args

    def local_attach_cmds(self, minor: int, data_dev: str, meta_dev: str,
                          size: int | None, params: dict[str, Any] | None) -> list[list[str]]:
        p = full_params(params)
        cmd = [DRBDSETUP, self.dev_path(minor), "disk", data_dev, meta_dev, "flexible",
               "-e", "detach", "--create-device"]
        if size:
            cmd += ["-d", "%dm" % size]
        return [cmd + self.barrier_args(p) + _custom(p["disk-custom"])]

    def net_attach_cmds(self, minor: int, local: NetAddr, remote: NetAddr, dual_pri: bool,
                        secret: str | None, params: dict[str, Any] | None,
                        hmac: str = DEFAULT_HMAC) -> list[list[str]]:
        p = full_params(params)
        cmd = [DRBDSETUP, self.dev_path(minor), "net", str(local), str(remote), p["protocol"],
               "-A", AFTER_SB_0PRI, "-B", AFTER_SB_1PRI, "--create-device"]
        if dual_pri:
            cmd.append("-m")
        if secret:
            cmd += ["-a", hmac, "-x", secret]
        return [cmd + _custom(p["net-custom"])]

    def sync_params_cmds(self, minor: int, params: dict[str, Any] | None) -> list[list[str]]:
        p = full_params(params)
        cmd = [DRBDSETUP, self.dev_path(minor), "syncer"]
        if p["dynamic-resync"]:
            for name in _C_PARAMS:
                cmd += ["--" + name, str(p[name])]
        else:
            cmd += ["-r", str(p["resync-rate"])]
        return [cmd]

    def _dev_cmd(self, minor: int, *args: str) -> list[str]:
        return [DRBDSETUP, self.dev_path(minor)] + list(args)

    def primary_cmd(self, minor: int, force: bool = False) -> list[str]:
        return self._dev_cmd(minor, "primary", *(["-o"] if force else []))

    def secondary_cmd(self, minor: int) -> list[str]:
        return self._dev_cmd(minor, "secondary")

    def disconnect_cmd(self, minor: int, local: NetAddr, remote: NetAddr) -> list[str]:
        return self._dev_cmd(minor, "disconnect")

    def detach_cmd(self, minor: int) -> list[str]:
        return self._dev_cmd(minor, "detach")

    def down_cmd(self, minor: int) -> list[str]:
        return self._dev_cmd(minor, "down")

    def show_cmd(self, minor: int) -> list[str]:
        return self._dev_cmd(minor, "show")

    def pause_sync_cmd(self, minor: int) -> list[str]:
        return self._dev_cmd(minor, "pause-sync")

    def resume_sync_cmd(self, minor: int) -> list[str]:
        return self._dev_cmd(minor, "resume-sync")

    def resize_cmd(self, minor: int, size: int) -> list[str]:
        return self._dev_cmd(minor, "resize", "-s", "%dm" % size)


def get_cmdgen(major: int, minor: int) -> DRBD84CmdGenerator:
    """The generator for a kernel DRBD ``major.minor`` (8.4+ vs 8.0-8.3)."""
    if major != 8:
        base.raise_bdev("Unsupported DRBD version %d.%d: Corral drives DRBD 8.x only",
                        major, minor)
    return DRBD84CmdGenerator() if minor >= 4 else DRBD83CmdGenerator()
