"""Running hook scripts on the node (spec/hooks.md §1).

The master sends the hooks path, the phase and the GANETI_* environment;
this module runs ``<hooks_base_dir>/<hpath>-<phase>.d`` and reports every
entry.  Nothing here decides whether a failure aborts the operation; the
master does.
"""

import os
import re
import tempfile

from corral import constants, errors, pathutils
from corral.utils import process

# Both the selection rule for scripts and the shape of a hooks path.
SCRIPT_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
_PHASES = (constants.HOOKS_PHASE_PRE, constants.HOOKS_PHASE_POST)


def hook_env(env: dict[str, str]) -> dict[str, str]:
    """The complete environment of a hook: the GANETI_* variables plus PATH, nothing else."""
    out = {str(k): str(v) for k, v in env.items() if str(k).startswith("GANETI_")}
    out["PATH"] = constants.HOOKS_PATH
    return out


def _run_one(path: str, env: dict[str, str]) -> tuple[int, str]:
    """(HKR_SUCCESS or HKR_FAIL, combined stdout+stderr) of one script; no timeout."""
    # Through a file, so stdout and stderr interleave as the script wrote them.
    with tempfile.NamedTemporaryFile(prefix="corral-hook-") as out_fh:
        result = process.run_cmd([path], env=env, reset_env=True, cwd="/",
                                 output_file=out_fh.name)
        out_fh.seek(0)
        output = out_fh.read().decode("utf-8", "replace") + result.stderr
    if result.failed:
        return constants.HKR_FAIL, output or result.fail_reason
    return constants.HKR_SUCCESS, output


def run_parts(directory: str, env: dict[str, str]) -> list[list]:
    """Run the scripts of ``directory`` in byte order; [[name, HKR_*, output], ...].

    Selected: non-hidden regular files whose name matches ^[a-zA-Z0-9_-]+$ and
    that are executable; other non-hidden entries are reported as HKR_SKIP
    with empty output.  A missing directory runs nothing.  ``env`` is the
    complete environment (see hook_env); stdin is /dev/null.
    """
    try:
        names = sorted(os.listdir(directory), key=os.fsencode)
    except FileNotFoundError:
        return []
    except OSError as err:
        raise errors.HooksFailure("Cannot list hooks directory %s: %s"
                                  % (directory, err.strerror)) from err
    results: list[list] = []
    for name in names:
        if name.startswith("."):
            continue
        path = os.path.join(directory, name)
        if not (SCRIPT_NAME_RE.match(name) and os.path.isfile(path)
                and os.access(path, os.X_OK)):
            results.append([name, constants.HKR_SKIP, ""])
            continue
        status, output = _run_one(path, env)
        results.append([name, status, output])
    return results


def hooks_runner(hpath: str, phase: str, env: dict[str, str]) -> list[list]:
    """Run the ``hpath`` hooks of ``phase`` with ``env`` (non-GANETI_ keys dropped)."""
    if not SCRIPT_NAME_RE.match(hpath):
        raise errors.HooksFailure("Invalid hooks path '%s'" % hpath)
    if phase not in _PHASES:
        raise errors.HooksFailure("Invalid hooks phase '%s'" % phase)
    directory = os.path.join(pathutils.hooks_base_dir(), "%s-%s.d" % (hpath, phase))
    return run_parts(directory, hook_env(env))
