"""xl command lines and the parsing of xl's outputs: pure functions.

Every operation's exact argv is built here (tests compare them with the xl(1)
manual); the driver only runs them.  Parsers take the text xl printed and
raise HypervisorError on output they do not understand, so a format change
is reported instead of being misread.

Migration is ssh-less: ``xl migrate -s "socat - TCP:<ip>:<port> #" ...``.
xl hands the ``-s`` string to ``sh`` followed by ``<host> xl migrate-receive``;
the trailing ``#`` turns those words into a comment, so the save stream goes
to the target's ``socat TCP-LISTEN:<port>`` which runs ``xl migrate-receive``
(started by ``accept_instance``).  Ganeti 3 uses ``-s "ssh -l root ..."``
with the cluster's known_hosts instead; Corral avoids the root-ssh
dependency and uses migration_port on the secondary network like KVM does.
"""

import re
from dataclasses import dataclass
from typing import Any

from corral import errors

XL = "xl"
SOCAT = "socat"
DOM0_NAME = "Domain-0"

# What xl prints when there is no usable Xen dom0 (PLATFORM.md §5).
_NO_DOM0_MARKERS = (
    "Could not obtain handle on privileged command interface",
    "cannot open libxc handle",
    "cannot init xl context",
    "Can't find hypervisor information in sysfs",
)


# --- command lines ---------------------------------------------------------
def create_argv(cfg_path: str, paused: bool = False) -> list[str]:
    return [XL, "create"] + (["-p"] if paused else []) + [cfg_path]


def shutdown_argv(name: str) -> list[str]:
    """Clean shutdown that waits for the domain to go (run with a timeout)."""
    return [XL, "shutdown", "-w", name]


def destroy_argv(name: str) -> list[str]:
    return [XL, "destroy", name]


def reboot_argv(name: str) -> list[str]:
    return [XL, "reboot", name]


def list_argv(name: str | None = None) -> list[str]:
    return [XL, "list"] + ([name] if name else [])


def info_argv() -> list[str]:
    return [XL, "info"]


def mem_set_argv(name: str, mem_mib: int) -> list[str]:
    return [XL, "mem-set", name, "%dm" % int(mem_mib)]


def pause_argv(name: str, paused: bool) -> list[str]:
    return [XL, "pause" if paused else "unpause", name]


def console_argv(name: str) -> list[str]:
    return [XL, "console", name]


def _host(ip: str) -> str:
    return "[%s]" % ip if ":" in ip else ip


def migrate_argv(name: str, target_ip: str, port: int, cfg_path: str) -> list[str]:
    """Sender side: stream to the target's socat listener (see module doc)."""
    transport = "%s - TCP:%s:%d #" % (SOCAT, _host(target_ip), int(port))
    return [XL, "migrate", "-s", transport, "-C", cfg_path, name, target_ip]


def receive_argv(bind_ip: str, port: int) -> list[str]:
    """Target side: one connection on bind_ip:port, handed to ``xl migrate-receive``.

    ``-d -d`` makes socat say "listening on", which the driver waits for.
    """
    listen = "TCP6-LISTEN" if ":" in bind_ip else "TCP4-LISTEN"
    return [SOCAT, "-d", "-d", "%s:%d,bind=%s,reuseaddr" % (listen, int(port), _host(bind_ip)),
            "EXEC:%s migrate-receive" % XL]


# --- xl list -----------------------------------------------------------------
@dataclass(frozen=True)
class Domain:
    """One row of ``xl list``; memory in MiB, time in seconds."""

    name: str
    domid: int
    memory: int
    vcpus: int
    flags: str
    time: float

    @property
    def state(self) -> str:
        return state_from_flags(self.flags)


def state_from_flags(flags: str) -> str:
    """running/paused/shutdown/crashed/dying from the rbpscd flags column."""
    for letter, state in (("d", "dying"), ("c", "crashed"), ("s", "shutdown"),
                          ("p", "paused")):
        if letter in flags:
            return state
    return "running"   # r, b or ------ (runnable, not scheduled right now)


def parse_list(text: str) -> list[Domain]:
    """Rows of ``xl list`` (header skipped); Domain-0 included."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("Name "):
            continue
        fields = line.split()
        if len(fields) < 6:
            raise errors.HypervisorError("Cannot parse xl list line %r" % line)
        try:
            out.append(Domain(name=" ".join(fields[:-5]), domid=int(fields[-5]),
                              memory=int(fields[-4]), vcpus=int(fields[-3]),
                              flags=fields[-2], time=float(fields[-1])))
        except ValueError:
            raise errors.HypervisorError("Cannot parse xl list line %r" % line)
    return out


# --- xl info -------------------------------------------------------------------
def parse_info(text: str) -> dict[str, str]:
    """``name : value`` lines of ``xl info``; HypervisorError if none are found."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and " " not in key.strip():
            out[key.strip()] = value.strip()
    if "total_memory" not in out:
        raise errors.HypervisorError("xl info printed no total_memory: %r" % text[:200])
    return out


def node_info(info: dict[str, str], domains: list[Domain]) -> dict[str, Any]:
    """Node facts in the hypervisor interface's shape (memory in MiB)."""
    def num(key: str, default: int = 0) -> int:
        try:
            return int(info.get(key, default))
        except ValueError:
            return default

    dom0 = [d for d in domains if d.domid == 0 or d.name == DOM0_NAME]
    cpus = max(num("nr_cpus", 1), 1)
    per_socket = max(num("cores_per_socket", 1) * num("threads_per_core", 1), 1)
    return {"memory_total": num("total_memory"), "memory_free": num("free_memory"),
            "memory_dom0": dom0[0].memory if dom0 else 0, "cpu_total": cpus,
            "cpu_nodes": max(num("nr_nodes", 1), 1),
            "cpu_sockets": max(cpus // per_socket, 1),
            "hv_version": [num("xen_major"), num("xen_minor")],
            "hv_version_text": "%s.%s%s" % (info.get("xen_major", "?"),
                                            info.get("xen_minor", "?"),
                                            info.get("xen_extra", ""))}


# --- xl migrate ----------------------------------------------------------------
_MIG_DONE = re.compile(r"^Migration successful\.?\s*$", re.M)
_MIG_FAIL = re.compile(r"^(migration (?:sender|target): .*(?:[Ff]ail|abort).*|"
                       r"Migration failed.*|xl: error: .*|libxl: error: .*|"
                       r".*Connection refused.*)$", re.M)


def parse_migrate(text: str, exit_code: int | None) -> dict[str, Any]:
    """Status of an ``xl migrate`` from its output and exit code (None: still running).

    ``{"status": "active"|"completed"|"failed", "info": <last relevant line>}``.
    """
    if exit_code is None:
        last = [ln for ln in text.splitlines() if ln.strip()]
        return {"status": "active", "info": last[-1].strip() if last else ""}
    if exit_code == 0 and _MIG_DONE.search(text):
        return {"status": "completed", "info": "Migration successful."}
    fails = _MIG_FAIL.findall(text)
    reason = "; ".join(f.strip() for f in fails[-4:]) if fails else \
        "xl migrate exited with code %s" % exit_code
    return {"status": "failed", "info": reason}


def no_dom0_reason(output: str) -> str | None:
    """A clear message when xl's output says there is no Xen dom0 here, else None."""
    for marker in _NO_DOM0_MARKERS:
        if marker in output:
            return ("this node is not running as a Xen dom0 (xl: %s): Xen instances "
                    "cannot run here" % marker)
    return None
