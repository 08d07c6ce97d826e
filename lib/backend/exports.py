"""Instance exports kept on a node (gnt-backup): list, read, finalize, remove.

An export is a directory ``<export_dir>/<name>/`` holding ``config.ini``
(Ganeti's export description, written by the master) and one file per
exported disk.  The disk files arrive through disk transfers into the
staging directory ``<name>.new/``; ``export_finalize`` writes ``config.ini``
there and renames the directory into place, so ``<name>`` is always either
the complete old export, the complete new one, or absent: never half written.
A directory counts as an export only once it has ``config.ini`` and its name
does not end in ``.new``.

Every name coming from the master is checked here (``check_name``) before it
touches the filesystem, so no request can reach outside ``export_dir()``.
"""

import hashlib
import os
import shutil
import string

from corral import errors, pathutils
from corral.utils import io

CONFIG_FILE = "config.ini"
STAGING_SUFFIX = ".new"
_OLD_SUFFIX = ".old"
MAX_NAME = 255
_PRINTABLE = frozenset(string.printable) - frozenset("\t\n\r\x0b\x0c")


def check_name(name: object, what: str = "export name") -> str:
    """``name`` if it is one safe path component; OpPrereqError (wrong_input) otherwise.

    Safe = a non-empty printable string of at most 255 characters, without
    "/", not starting with "." (which also excludes "." and "..").  The
    staging dir ``<name>.new`` must fit the filesystem's 255 bytes too, so
    exports with names over 251 bytes fail at the first transfer (OpExecError).
    """
    if not isinstance(name, str) or not name:
        raise errors.OpPrereqError("Invalid %s %r: must be a non-empty string" % (what, name),
                                   errors.ECODE_INVAL)
    if len(name) > MAX_NAME:
        raise errors.OpPrereqError("Invalid %s %r: longer than %d characters" %
                                   (what, name[:40] + "...", MAX_NAME), errors.ECODE_INVAL)
    if "/" in name or name.startswith(".") or not set(name) <= _PRINTABLE:
        raise errors.OpPrereqError("Invalid %s %r: must be one path component, printable,"
                                   " without '/' and not starting with '.'" % (what, name),
                                   errors.ECODE_INVAL)
    return name


def export_path(name: str) -> str:
    """``<export_dir>/<name>`` for a checked ``name``."""
    return os.path.join(pathutils.export_dir(), check_name(name))


def file_path(rel: object, staging: bool = False) -> str:
    """Absolute path of ``"<export>/<file>"``, both components checked.

    With ``staging`` the export component must be a staging dir (``<name>.new``):
    transfers only ever write there, never into a finalized export.
    """
    parts = rel.split("/") if isinstance(rel, str) else []
    if len(parts) != 2:
        raise errors.OpPrereqError("Invalid export file path %r: must be"
                                   " '<export name>/<file name>'" % (rel,), errors.ECODE_INVAL)
    directory, fname = check_name(parts[0]), check_name(parts[1], "export file name")
    if staging and (not directory.endswith(STAGING_SUFFIX) or directory == STAGING_SUFFIX):
        raise errors.OpPrereqError("Export data can only be written into a staging directory"
                                   " '<name>%s', not %r" % (STAGING_SUFFIX, directory),
                                   errors.ECODE_INVAL)
    path = os.path.join(pathutils.export_dir(), directory, fname)
    if not io.is_below_dir(pathutils.export_dir(), path):
        raise errors.OpPrereqError("Export file path %r leads outside the export directory"
                                   % rel, errors.ECODE_INVAL)
    return path


def export_list() -> list[str]:
    """Sorted names of the complete exports on this node ([] without an export dir)."""
    base = pathutils.export_dir()
    try:
        entries = os.listdir(base)
    except FileNotFoundError:
        return []
    return sorted(e for e in entries
                  if not e.endswith(STAGING_SUFFIX) and not e.startswith(".")
                  and os.path.isfile(os.path.join(base, e, CONFIG_FILE)))


def export_info(name: str) -> str:
    """The text of the export's ``config.ini``; OpExecError if there is no such export."""
    path = os.path.join(export_path(name), CONFIG_FILE)
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        raise errors.OpExecError("Export '%s' not found on this node (no %s)" %
                                 (name, path)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise errors.OpExecError("Cannot read export '%s': %s" % (name, err)) from err


def export_finalize(name: str, config_text: str) -> None:
    """Write ``config.ini`` into ``<name>.new/`` and make it the export ``<name>``.

    Crash safety: config.ini is written atomically and fsynced; an older
    ``<name>`` is first renamed to a hidden ``.<sha1 of name>.old`` (not listed), the
    staging dir renamed to ``<name>``, the parent fsynced, and only then the
    old one removed.  So ``<name>`` never exists half written.  The staging
    dir is created when missing (diskless instances).  Idempotent: repeated
    with the same ``config_text`` after success (no staging dir left), it
    changes nothing.
    """
    final = export_path(name)
    if name.endswith(STAGING_SUFFIX):
        raise errors.OpPrereqError("Export name %r must not end in '%s'" %
                                   (name, STAGING_SUFFIX), errors.ECODE_INVAL)
    try:
        if not os.path.isdir(final + STAGING_SUFFIX) and _config_of(final) == config_text:
            return
        _swap_in(name, final, config_text)
    except OSError as err:
        raise errors.OpExecError("Cannot finalize export '%s': %s" % (name, err)) from err


def _config_of(path: str) -> str | None:
    try:
        with open(os.path.join(path, CONFIG_FILE), encoding="utf-8") as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError):
        return None


def _swap_in(name: str, final: str, config_text: str) -> None:
    base = pathutils.export_dir()
    staging = final + STAGING_SUFFIX
    old = os.path.join(base, _old_name(name))
    os.makedirs(staging, mode=0o750, exist_ok=True)
    io.write_file_atomic(os.path.join(staging, CONFIG_FILE), config_text, mode=0o640)
    _remove_tree(old)  # a leftover of a crash after the swap below
    if os.path.lexists(final):
        os.rename(final, old)
    try:
        os.rename(staging, final)
    except OSError:
        if os.path.lexists(old) and not os.path.lexists(final):
            os.rename(old, final)
        raise
    io.fsync_dir(base)
    _remove_tree(old)


def export_remove(name: str) -> None:
    """Remove the export ``<name>`` or a staging dir ``<name>.new``.

    Idempotent: a missing directory is not an error.  Removes the whole tree
    (disk files and config.ini).
    """
    path = export_path(name)
    try:
        _remove_tree(path)
    except OSError as err:
        raise errors.OpExecError("Cannot remove export '%s': %s" % (name, err)) from err


def _old_name(name: str) -> str:
    # Hidden (never listed, never a valid export name) and short whatever the
    # length of ``name``: "<name>.old" could exceed the filesystem's NAME_MAX.
    return "." + hashlib.sha1(name.encode("utf-8")).hexdigest() + _OLD_SUFFIX


def _remove_tree(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)
