"""libvirt connections, the event loop, and waiting for a domain to stop.

libvirt-python is imported lazily: a node without it still loads Corral, and
``verify()`` says what is missing.  One connection per URI is kept (libvirt
connections are thread safe) and reopened when it died.  The default event
loop runs in one daemon thread, registered before the first connection is
opened, so shutdown waits on lifecycle events instead of polling.
"""

import atexit
import threading
from typing import Any

from corral import errors

_lock = threading.Lock()
_conns: dict[str, Any] = {}
_loop_started = False


def libvirt_module() -> Any:
    """The libvirt module; HypervisorError naming the fix when it is missing."""
    try:
        import libvirt
    except ImportError as err:
        raise errors.HypervisorError(
            "libvirt-python is not installed (%s): pip install libvirt-python "
            "(building it needs Debian libvirt-dev, pkg-config and gcc)" % err)
    return libvirt


def _ensure_event_loop(lv: Any) -> None:
    """Register and run libvirt's default event loop once per process (idempotent)."""
    global _loop_started
    if _loop_started:
        return
    lv.registerErrorHandler(lambda _ctx, _err: None, None)   # errors come as exceptions
    lv.virEventRegisterDefaultImpl()

    def run() -> None:
        while True:
            lv.virEventRunDefaultImpl()

    threading.Thread(target=run, daemon=True, name="libvirt-events").start()
    _loop_started = True


def connect(uri: str) -> Any:
    """A live connection to ``uri``; HypervisorError when libvirt cannot be reached."""
    lv = libvirt_module()
    with _lock:
        _ensure_event_loop(lv)
        conn = _conns.get(uri)
        if conn is not None:
            try:
                if conn.isAlive():
                    return conn
            except lv.libvirtError:
                pass
            _conns.pop(uri, None)
        try:
            conn = lv.open(uri)
        except lv.libvirtError as err:
            raise errors.HypervisorError("Cannot connect to libvirt at %s: %s" %
                                         (uri, err.get_error_message() or err))
        if conn is None:
            raise errors.HypervisorError("Cannot connect to libvirt at %s" % uri)
        _conns[uri] = conn
        return conn


def forget(uri: str) -> None:
    """Drop a cached connection (tests; after the daemon went away)."""
    with _lock:
        conn = _conns.pop(uri, None)
    if conn is not None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - closing a dead connection may fail any way
            pass


@atexit.register
def _close_all() -> None:
    """Close cached connections before the interpreter tears libvirt down."""
    for uri in list(_conns):
        forget(uri)


def lookup(conn: Any, name: str) -> Any | None:
    """The domain named ``name`` (active or only defined), or None."""
    lv = libvirt_module()
    try:
        return conn.lookupByName(name)
    except lv.libvirtError as err:
        if err.get_error_code() == lv.VIR_ERR_NO_DOMAIN:
            return None
        raise errors.HypervisorError("libvirt lookup of %s failed: %s" % (name, err))


def is_active(dom: Any) -> bool:
    lv = libvirt_module()
    try:
        return bool(dom.isActive())
    except lv.libvirtError:
        return False   # undefined meanwhile


def wait_stopped(conn: Any, dom: Any, timeout: float) -> bool:
    """Block until ``dom`` is no longer active (lifecycle event) or ``timeout``."""
    lv = libvirt_module()
    done = threading.Event()
    uuid = dom.UUIDString()

    def on_event(_conn: Any, ev_dom: Any, event: int, _detail: int, _opaque: Any) -> None:
        if ev_dom.UUIDString() == uuid and event in (lv.VIR_DOMAIN_EVENT_STOPPED,
                                                     lv.VIR_DOMAIN_EVENT_UNDEFINED):
            done.set()

    try:
        cb_id = conn.domainEventRegisterAny(dom, lv.VIR_DOMAIN_EVENT_ID_LIFECYCLE, on_event,
                                            None)
    except lv.libvirtError:
        cb_id = None
    try:
        if not is_active(dom):
            return True
        if cb_id is not None:
            done.wait(max(timeout, 0))
        return not is_active(dom)
    finally:
        if cb_id is not None:
            try:
                conn.domainEventDeregisterAny(cb_id)
            except lv.libvirtError:
                pass
