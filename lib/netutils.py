"""Host names, addresses and reachability checks.

A node's own name comes from $CORRAL_HOSTNAME when set, so several nodes can
share one machine (tests, tools/vcluster run one network namespace per node
but share the machine's host name).
"""

import errno
import ipaddress
import os
import socket

from corral import errors, serializer
from corral.utils import process


def get_hostname() -> str:
    """This node's name: $CORRAL_HOSTNAME if set, else the fully qualified host name."""
    return os.environ.get("CORRAL_HOSTNAME") or socket.getfqdn()


def is_valid_ip4(text: str) -> bool:
    """True for a dotted-quad IPv4 address (no shorthand forms like '10.1')."""
    try:
        ipaddress.IPv4Address(text)
    except (ipaddress.AddressValueError, ValueError):
        return False
    return True


def resolve(name: str) -> tuple[str, str]:
    """(fully qualified name, IPv4 address) of ``name``.

    An IPv4 address resolves to itself.  Raises errors.ResolverError with a
    message naming the host and the resolver's reason.
    """
    if is_valid_ip4(name):
        return name, name
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM, 0,
                                   socket.AI_CANONNAME)
    except (socket.gaierror, UnicodeError) as err:
        reason = err.strerror if isinstance(err, socket.gaierror) else str(err)
        raise errors.ResolverError("Cannot resolve host name '%s': %s" % (name, reason)) from err
    if not infos:
        raise errors.ResolverError("Cannot resolve host name '%s': no IPv4 address" % name)
    canon = infos[0][3] or name
    return canon, infos[0][4][0]


def tcp_ping(ip: str, port: int, timeout: float, source: str | None = None,
             live_port_needed: bool = True) -> bool:
    """True if a TCP connection to ``ip``:``port`` succeeds within ``timeout``.

    With ``live_port_needed`` false a refused connection also counts: the
    host answered, so the address is in use (Ganeti's IP conflict check).
    ``source`` binds the local end to that address first.
    """
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        if source:
            try:
                sock.bind((source, 0))
            except OSError as err:
                raise errors.OpExecError("Cannot bind to source address %s: %s"
                                         % (source, err.strerror)) from err
        try:
            sock.connect((ip, port))
        except ConnectionRefusedError:
            return not live_port_needed
        except OSError as err:
            return err.errno == errno.ECONNREFUSED and not live_port_needed
    return True


def local_ips() -> set[str]:
    """Every address (IPv4 and IPv6) configured in this network namespace."""
    result = process.run_cmd(["ip", "-j", "addr", "show"])
    if result.failed:
        raise errors.OpExecError("Cannot list local addresses: " + result.describe())
    try:
        links = serializer.loads(result.stdout)
    except serializer.JSONDecodeError as err:
        raise errors.OpExecError("Cannot parse 'ip -j addr' output: %s" % err) from err
    return {info["local"] for link in links for info in link.get("addr_info", [])
            if info.get("local")}
