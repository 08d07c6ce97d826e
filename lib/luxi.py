"""Client of the master daemon's unix socket (used by gnt-*, corral-rapi, the watcher).

One method per master method (server/masterd.py METHODS); errors raised on the
master come back as the same Corral error classes.

The synchronous ``Client`` (every gnt-* command) speaks HTTP/1.1 with the
standard library's http.client over the unix socket: a command's start-up is
part of its latency, and importing httpx costs over 100 ms here.  The asyncio
``AsyncClient`` (corral-rapi) runs the same client in threads (see there).
"""

import asyncio
import http.client
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from corral import constants, errors, pathutils, serializer

DEFAULT_TIMEOUT = 60.0


# Second argument of the ProtocolError raised when masterd does not answer in
# time (RAPI maps it to 504 instead of 502).
TIMEOUT_MARK = "timeout"
# Idle connections AsyncClient keeps open to masterd (more are opened under load).
ASYNC_KEEPALIVE = 8
# Calls AsyncClient runs at once (threads); corral-rapi admits 20 handlers by default.
ASYNC_MAX_CALLS = 32
# How masterd's successful answers start (compact JSON, "success" first): what
# follows, minus the closing brace, is the result's JSON text (call_raw).
RAW_RESULT_PREFIX = b'{"success":true,"result":'


def raw_result(content: bytes, status_code: int) -> bytes:
    """The result's JSON text of a masterd answer (see RAW_RESULT_PREFIX), or raise
    the error it carries."""
    if status_code == 200 and content.startswith(RAW_RESULT_PREFIX) and content.endswith(b"}"):
        return content[len(RAW_RESULT_PREFIX):-1]
    return serializer.dumps(decode_answer(content, status_code)).encode("utf-8")


def decode_answer(content: bytes, status_code: int) -> Any:
    """The result of a masterd answer, or raise the error it carries."""
    try:
        data = serializer.loads(content)
    except serializer.JSONDecodeError:
        raise errors.ProtocolError("Invalid answer from the master daemon (HTTP %d)" %
                                   status_code) from None
    if not isinstance(data, dict) or "success" not in data:
        raise errors.ProtocolError("Invalid answer from the master daemon")
    if data["success"]:
        return data.get("result")
    raise errors.decode_exception(data.get("error"))


class AsyncClient:
    """asyncio face of ``Client`` for servers (corral-rapi).

    Each call runs a pooled ``Client`` in a thread of this client's own pool:
    the standard library's HTTP over the unix socket costs a third of what
    httpx's asyncio stack did per call (1.5 against 4.7 ms for
    QueryClusterInfo, measured), more than the thread hop.  Long polls
    (WaitForJobChange) hold a thread each; ``max_calls`` bounds the calls in
    flight (RAPI admits fewer handlers at once).  Same errors as ``Client``.
    """

    def __init__(self, socket_path: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 max_calls: int = ASYNC_MAX_CALLS) -> None:
        self._path = socket_path or pathutils.master_socket()
        self._timeout = timeout
        self._idle: list[Client] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max_calls, thread_name_prefix="luxi")

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            idle, self._idle = self._idle, []
        for client in idle:
            client.close()

    async def call(self, method: str, timeout: float | None = None, **args: Any) -> Any:
        return await self._run(Client.call, method, timeout, args)

    async def call_raw(self, method: str, timeout: float | None = None, **args: Any) -> bytes:
        """See ``Client.call_raw``."""
        return await self._run(Client.call_raw, method, timeout, args)

    async def _run(self, func: Any, method: str, timeout: float | None, args: dict) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._call_pooled, func, method,
                                          timeout, args)

    def _call_pooled(self, func: Any, method: str, timeout: float | None, args: dict) -> Any:
        with self._lock:
            client = self._idle.pop() if self._idle else None
        if client is None:
            client = Client(self._path, self._timeout)
        try:
            result = func(client, method, timeout, **args)
        except BaseException:
            client.close()
            raise
        with self._lock:
            if len(self._idle) < ASYNC_KEEPALIVE:
                self._idle.append(client)
                return result
        client.close()
        return result


class _UnixConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a unix socket (keep-alive between calls of one client)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("masterd", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


# A kept-alive connection the server already closed fails like this; the request
# was not processed, so it is sent again once on a new connection.
_STALE_CONNECTION = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class Client:
    def __init__(self, socket_path: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._path = socket_path or pathutils.master_socket()
        self._timeout = timeout
        self._conn = _UnixConnection(self._path, timeout)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def call(self, method: str, timeout: float | None = None, **args: Any) -> Any:
        return decode_answer(*self._exchange(method, timeout, args))

    def call_raw(self, method: str, timeout: float | None = None, **args: Any) -> bytes:
        """Like ``call``, but the result as JSON text, not decoded (corral-rapi passes
        large answers through).  Errors are raised as by ``call``."""
        return raw_result(*self._exchange(method, timeout, args))

    def _exchange(self, method: str, timeout: float | None, args: dict) -> tuple[bytes, int]:
        """(answer body, HTTP status) of one call; transport errors raised as Corral's."""
        body = serializer.dumps(args).encode("utf-8")
        timeout = timeout or self._timeout
        for attempt in (1, 2):
            reused = self._conn.sock is not None
            self._conn.timeout = timeout
            if reused:
                self._conn.sock.settimeout(timeout)
            try:
                self._conn.request("POST", "/" + method, body,
                                   {"Content-Type": "application/json"})
                resp = self._conn.getresponse()
                return resp.read(), resp.status
            except (FileNotFoundError, ConnectionRefusedError) as err:
                self._conn.close()
                raise errors.NoMasterError("Cannot communicate with the master daemon at %s:"
                                           " %s" % (self._path, err)) from None
            except socket.timeout:
                self._conn.close()
                raise errors.ProtocolError("Timeout waiting for the master daemon (%s)" % method,
                                           TIMEOUT_MARK) from None
            except _STALE_CONNECTION as err:
                self._conn.close()
                if reused and attempt == 1:
                    continue
                raise errors.ProtocolError("Error talking to the master daemon: %s" % err) \
                    from None
            except (http.client.HTTPException, OSError) as err:
                self._conn.close()
                raise errors.ProtocolError("Error talking to the master daemon: %s" % err) \
                    from None
        raise errors.ProgrammerError("unreachable")

    # ---- jobs ----------------------------------------------------------------------

    def submit_job(self, ops: list[dict]) -> int:
        return self.call("SubmitJob", ops=ops)

    def submit_many_jobs(self, jobs: list[list[dict]]) -> list[list]:
        return self.call("SubmitManyJobs", jobs=jobs)

    def query_jobs(self, job_ids: list[int] | None, fields: list[str],
                   archived: bool = False) -> list:
        return self.call("QueryJobs", job_ids=job_ids or [], fields=fields, archived=archived)

    def wait_for_job_change(self, job_id: int, fields: list[str], prev_job_info: list | None,
                            prev_log_serial: int | None,
                            timeout: float = constants.WAIT_FOR_CHANGE_TIMEOUT) -> dict | None:
        return self.call("WaitForJobChange", timeout=timeout + 10, job_id=job_id, fields=fields,
                         prev_job_info=prev_job_info, prev_log_serial=prev_log_serial)

    def cancel_job(self, job_id: int) -> list:
        return self.call("CancelJob", job_id=job_id)

    def change_job_priority(self, job_id: int, priority: int) -> list:
        return self.call("ChangeJobPriority", job_id=job_id, priority=priority)

    def archive_job(self, job_id: int) -> bool:
        return self.call("ArchiveJob", job_id=job_id)

    def auto_archive_jobs(self, age: float, timeout: float | None = None) -> list:
        return self.call("AutoArchiveJobs", age=age, timeout=timeout)

    def set_drain_flag(self, drain: bool) -> bool:
        return self.call("SetDrainFlag", drain=drain)

    def query_queue_info(self) -> dict:
        return self.call("QueryQueueInfo")

    # ---- cluster and objects -------------------------------------------------------

    def query_cluster_info(self) -> dict:
        return self.call("QueryClusterInfo")

    def query_config_values(self, fields: list[str]) -> list:
        return self.call("QueryConfigValues", fields=fields)

    def query(self, what: str, fields: list[str], names: list[str] | None = None,
              qfilter: Any = None) -> dict:
        return self.call("Query", what=what, fields=fields, names=names or [], qfilter=qfilter)

    def query_fields(self, what: str, fields: list[str] | None = None) -> dict:
        return self.call("QueryFields", what=what, fields=fields)

    def set_watcher_pause(self, until: float | None) -> Any:
        return self.call("SetWatcherPause", until=until)

    def query_node_drbd(self, node: str) -> list:
        """``[node, minor, instance, disk, role, peer]`` rows (cmdlib/node_drbd.py)."""
        return self.call("QueryNodeDrbd", node=node)
