"""Host side of instance NICs: tap devices handed to QEMU as open fds.

A tap is created by opening /dev/net/tun with TUNSETIFF (not persistent), so
it disappears by itself when the last fd (QEMU's) closes: a killed QEMU leaves
no tap behind.  ``vnet_hdr=on`` is never put on the QEMU command line with
``fd=`` (QEMU 7.2 rejects it, PLATFORM.md §1); QEMU probes the header flag of
the fd itself.

Modes: ``bridged`` = tap enslaved to the NIC's link bridge (HypervisorError if
it is not a bridge), MTU copied from the bridge, VLAN filter if ``vlan``;
``routed`` = tap up plus a host route to the NIC's IP (in table ``link`` when
set); ``ext`` = tap up, nothing else; ``openvswitch`` needs ovs-vsctl.
"""

import fcntl
import os
import shutil
import struct

from corral import errors
from corral.hypervisor.base import NicSpec
from corral.utils import process

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
IFNAMSIZ = 16


def open_tap(vnet_hdr: bool = True, name: str = "tap%d") -> tuple[int, str]:
    """Create a tap; returns (fd, interface name).  The caller owns the fd."""
    flags = IFF_TAP | IFF_NO_PI | (IFF_VNET_HDR if vnet_hdr else 0)
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR)
    except OSError as err:
        raise errors.HypervisorError("Cannot open /dev/net/tun: %s" % err)
    try:
        req = struct.pack("%dsH" % IFNAMSIZ, name.encode(), flags)
        res = fcntl.ioctl(fd, TUNSETIFF, req)
    except OSError as err:
        os.close(fd)
        raise errors.HypervisorError("Cannot create tap device: %s" % err)
    ifname = res[:IFNAMSIZ].rstrip(b"\x00").decode()
    return fd, ifname


def _ip(*args: str) -> None:
    process.check_cmd(["ip", *args], error_class=errors.HypervisorError)


def is_bridge(link: str) -> bool:
    return bool(link) and os.path.isdir("/sys/class/net/%s/bridge" % link)


def _read_mtu(link: str) -> int | None:
    try:
        with open("/sys/class/net/%s/mtu" % link) as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def configure_tap(tap: str, nic: NicSpec) -> None:
    """Attach ``tap`` per the NIC's mode; HypervisorError says what is missing."""
    if nic.mode == "bridged":
        if not is_bridge(nic.link):
            raise errors.HypervisorError("NIC %s: bridge '%s' does not exist on this node" %
                                         (nic.mac, nic.link))
        # fe: first octet keeps the bridge from adopting the guest's MAC
        _ip("link", "set", "dev", tap, "address", "fe" + nic.mac[2:])
        mtu = _read_mtu(nic.link)
        if mtu:
            _ip("link", "set", "dev", tap, "mtu", str(mtu))
        _ip("link", "set", "dev", tap, "master", nic.link, "up")
        if nic.vlan:
            _apply_vlan(tap, nic.vlan)
    elif nic.mode == "routed":
        _ip("link", "set", "dev", tap, "up")
        if nic.ip:
            route = ["route", "replace", nic.ip + "/32", "dev", tap]
            if nic.link:
                route += ["table", nic.link]
            _ip(*route)
    elif nic.mode == "openvswitch":
        if not shutil.which("ovs-vsctl"):
            raise errors.HypervisorError("NIC %s: openvswitch mode needs ovs-vsctl" % nic.mac)
        _ip("link", "set", "dev", tap, "up")
        process.check_cmd(["ovs-vsctl", "add-port", nic.link, tap],
                          error_class=errors.HypervisorError)
    else:
        _ip("link", "set", "dev", tap, "up")


def _apply_vlan(tap: str, vlan: str) -> None:
    """Ganeti vlan syntax: ``.N`` untagged access, ``:N:M`` trunk, ``.N:M`` both."""
    untagged, _, tagged = vlan.lstrip(".:").partition(":")
    if vlan.startswith(".") and untagged:
        process.check_cmd(["bridge", "vlan", "add", "dev", tap, "vid", untagged, "pvid",
                           "untagged"], error_class=errors.HypervisorError)
    trunk = tagged if vlan.startswith(".") else vlan.strip(":")
    for vid in trunk.split(":"):
        if vid:
            process.check_cmd(["bridge", "vlan", "add", "dev", tap, "vid", vid],
                              error_class=errors.HypervisorError)


def link_exists(name: str) -> bool:
    return os.path.exists("/sys/class/net/%s" % name)


def remove_tap(name: str) -> None:
    """Delete a leftover tap (idempotent; fd-based taps vanish with QEMU)."""
    if name and link_exists(name):
        process.run_cmd(["ip", "link", "del", "dev", name])
