"""Running an external iallocator plugin on this node (the master) for the master daemon.

Protocol (spec/iallocator.md §1): the plugin is the first regular file
named ``name`` along ``pathutils.iallocator_search_path()``; it runs as
``<plugin> <input-file> [--key=value | --key ...]`` with the JSON input in
a temporary file (prefix ``ganeti-iallocator.``, removed afterwards, also on
failure); its standard output is returned unparsed (the master parses and
validates it).  A non-zero exit is an error carrying the plugin's output.
"""

import os
import tempfile
from typing import Any

from corral import errors, pathutils
from corral.utils import io, process

# hail answers in well under a second; a plugin that hangs must not hold the job forever.
RUN_TIMEOUT = 600.0


def find_iallocator(name: str) -> str | None:
    """Path of plugin ``name`` in the search path, or None (plain names only)."""
    if not name or os.path.basename(name) != name or name in (".", ".."):
        return None
    for directory in pathutils.iallocator_search_path():
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def plugin_argv(path: str, input_file: str, params: dict[str, Any]) -> list[str]:
    """``[path, input_file, --key=value...]`` (pure).

    A None value gives a bare ``--key`` (Ganeti); so does True, which is what
    ``gnt-cluster modify --default-iallocator-params flag`` stores; False
    leaves the option out.
    """
    argv = [path, input_file]
    for key in sorted(params):
        value = params[key]
        if value is False:
            continue
        argv.append("--%s" % key if value is None or value is True
                    else "--%s=%s" % (key, value))
    return argv


def iallocator_runner(name: str, idata: str, params: dict) -> str:
    """Run plugin ``name`` on ``idata``; its standard output (errors.OpExecError on failure)."""
    path = find_iallocator(name)
    if path is None:
        raise errors.OpExecError("iallocator module '%s' not found in the search path" % name)
    fd, input_file = tempfile.mkstemp(prefix="ganeti-iallocator.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(idata)
        result = process.run_cmd(plugin_argv(path, input_file, params), timeout=RUN_TIMEOUT)
    finally:
        io.remove_file(input_file)
    if result.failed:
        raise errors.OpExecError("iallocator module '%s' failed: %s, output '%s'"
                                 % (name, result.fail_reason, result.output.strip()))
    return result.stdout
