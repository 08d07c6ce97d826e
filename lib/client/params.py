"""Parsing of gnt-* option values (spec/cli.md §1 "Param syntax").

Pure functions from the strings a user typed to the plain values opcodes
take (spec/opcodes.md): sizes in MiB, seconds, parameter dicts, disk and NIC
lists, modification triples.  Nothing here talks to the master; type checks
that need the parameter tables (is ``acpi`` a bool?) happen where the
parameters are applied.  Every error names the bad value and what is allowed:

* ``UnitParseError`` - a size could not be parsed;
* ``ParameterError`` - a ``key=value`` list, boolean or priority is malformed;
* ``TypeEnforcementError`` - an unknown NIC parameter (as Ganeti);
* ``OpPrereqError(msg, ECODE_INVAL)`` - inconsistent disk/NIC options and bad
  time specifications, with Ganeti's texts, because that is what Ganeti's
  tools print for them.
"""

from __future__ import annotations

import re
from typing import Any

from corral import constants, errors

NO_PREFIX = "no_"
UN_PREFIX = "-"
VALUE_DEFAULT = "default"

DDM_ADD = "add"
DDM_ATTACH = "attach"
DDM_MODIFY = "modify"
DDM_REMOVE = "remove"
DDM_DETACH = "detach"
DDM_ACTIONS = (DDM_ADD, DDM_ATTACH, DDM_MODIFY, DDM_REMOVE, DDM_DETACH)

IDISK_SIZE = "size"
IDISK_SPINDLES = "spindles"
IDISK_MODE = "mode"
IDISK_ADOPT = "adopt"
INIC_PARAMS = frozenset(["mac", "ip", "mode", "link", "network", "name", "vlan"])

_UNIT_RE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]+)?$")
_UNIT_FACTORS = {"m": 1, "mb": 1, "mib": 1,
                 "g": 1024, "gb": 1024, "gib": 1024,
                 "t": 1024 * 1024, "tb": 1024 * 1024, "tib": 1024 * 1024}
_TIME_SUFFIXES = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_BOOL_VALUES = {"yes": True, "true": True, "no": False, "false": False}


def _inval(msg: str) -> errors.OpPrereqError:
    return errors.OpPrereqError(msg, errors.ECODE_INVAL)


def parse_unit(value: str | int | float) -> int:
    """Size in MiB from ``512``, ``1.5g``, ``2T``, ``100 MiB``...

    No suffix means MiB.  Like Ganeti, the result is rounded up to a whole
    MiB and then up to a multiple of 4 MiB (the LVM extent granularity), so
    ``1`` gives 4 and ``1.5g`` gives 1536.
    """
    text = str(value).strip()
    match = _UNIT_RE.match(text)
    if not match:
        raise errors.UnitParseError(
            "Invalid size '%s': expected a non-negative number with an optional"
            " unit m, g or t (MiB, GiB, TiB)" % (value,))
    number, unit = match.groups()
    factor = _UNIT_FACTORS.get((unit or "m").lower())
    if factor is None:
        raise errors.UnitParseError("Invalid size '%s': unknown unit '%s', expected m, g or t"
                                    % (value, unit))
    mib = float(number) * factor
    result = int(mib)
    if result < mib:
        result += 1
    if result % 4:
        result += 4 - result % 4
    return result


def parse_timespec(value: str | int) -> int:
    """Seconds from ``45s``, ``30m``, ``1h``, ``2d``, ``1w`` or plain ``120``."""
    text = str(value).strip()
    if not text:
        raise _inval("Empty time specification passed")
    multiplier = _TIME_SUFFIXES.get(text[-1], 1)
    number = text[:-1] if text[-1] in _TIME_SUFFIXES else text
    if not number:
        raise _inval("Invalid time specification (only suffix passed)")
    if not number.isdigit():
        raise _inval("Invalid time specification '%s': expected a non-negative"
                     " integer with an optional suffix s, m, h, d or w" % text)
    return int(number) * multiplier


def parse_bool(value: str | bool) -> bool:
    """``yes``/``true`` -> True, ``no``/``false`` -> False (any case)."""
    if isinstance(value, bool):
        return value
    result = _BOOL_VALUES.get(str(value).strip().lower())
    if result is None:
        raise errors.ParameterError("Invalid boolean value '%s', expected yes or no"
                                    " (or true/false)" % value)
    return result


def parse_priority(value: str) -> int:
    """``low``/``normal``/``high`` -> 10/0/-10."""
    try:
        return constants.PRIORITY_NAMES[str(value).strip().lower()]
    except KeyError:
        raise errors.ParameterError("Invalid priority '%s', expected one of %s"
                                    % (value, ", ".join(constants.PRIORITY_NAMES))) from None


def split_escaped(text: str, sep: str = ",") -> list[str]:
    r"""Split on ``sep`` except where it is escaped: ``\,`` is a literal
    comma and ``\\`` a literal backslash; other backslashes are kept."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] in (sep, "\\"):
            current.append(text[i + 1])
            i += 2
            continue
        if char == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    return parts


def parse_key_value_list(data: str | None, option: str = "",
                         parse_prefixes: bool = True) -> dict[str, Any]:
    """``a=1,b=2,no_c,-d,e,f=default`` -> ``{"a": "1", "b": "2", "c": False,
    "d": None, "e": True, "f": "default"}``.

    Values stay strings (converted by the parameter's type table later);
    ``default`` is kept as is and means "reset to the inherited value"; a
    bare ``key`` is True, ``no_key`` False and ``-key`` None (remove the
    override).  Without ``parse_prefixes`` every element needs ``=``.
    """
    result: dict[str, Any] = {}
    if not data:
        return result
    where = " in option %s" % option if option else ""
    for elem in split_escaped(data):
        key, val = _split_element(elem, where, parse_prefixes)
        if not key:
            raise errors.ParameterError("Empty parameter name in '%s'%s" % (elem, where))
        if key in result:
            raise errors.ParameterError("Duplicate key '%s'%s" % (key, where))
        result[key] = val
    return result


def _split_element(elem: str, where: str, parse_prefixes: bool) -> tuple[str, Any]:
    if "=" in elem:
        key, val = elem.split("=", 1)
        return key, val
    if not parse_prefixes:
        raise errors.ParameterError("Missing value for key '%s'%s, expected key=value"
                                    % (elem, where))
    if elem.startswith(NO_PREFIX):
        return elem[len(NO_PREFIX):], False
    if elem.startswith(UN_PREFIX):
        return elem[len(UN_PREFIX):], None
    return elem, True


def parse_ident_key_value(value: str, option: str = "",
                          parse_prefixes: bool = True) -> tuple[str, Any]:
    """``ident:k=v,...`` -> ``(ident, {k: v})``; ``ident`` alone -> ``(ident, {})``.

    With ``parse_prefixes``, ``no_ident`` -> ``(ident, False)`` and ``-ident``
    -> ``(ident, None)`` (remove a whole parameter group); those forms take
    no parameters.  ``-`` followed by a digit is an index, not a prefix.
    """
    ident, _, rest = value.partition(":")
    removal = None
    if parse_prefixes and ident.startswith(NO_PREFIX):
        removal = (ident[len(NO_PREFIX):], False)
    elif (parse_prefixes and ident.startswith(UN_PREFIX)
          and not ident[len(UN_PREFIX):len(UN_PREFIX) + 1].isdigit()):
        removal = (ident[len(UN_PREFIX):], None)
    if removal is not None:
        if rest:
            raise errors.ParameterError("Cannot pass options when removing parameter"
                                        " groups: %s" % value)
        return removal
    return ident, parse_key_value_list(rest, option, parse_prefixes)


def parse_hv_option(value: str) -> tuple[str, dict[str, Any]]:
    """``-H kvm:acpi=false,kernel_path=`` -> ``("kvm", {"acpi": "false",
    "kernel_path": ""})``."""
    hv_name, params = parse_ident_key_value(value, "-H")
    if not hv_name:
        raise errors.ParameterError("Missing hypervisor name in -H '%s', expected"
                                    " HYPERVISOR[:key=value,...]" % value)
    if not isinstance(params, dict):
        raise errors.ParameterError("Invalid -H '%s': a hypervisor cannot be removed here,"
                                    " expected HYPERVISOR[:key=value,...]" % value)
    return hv_name, params


def parse_hv_options(values: list[str] | None) -> dict[str, dict[str, Any]]:
    """Repeated ``-H`` options -> ``{hv: params}``; a hypervisor given twice
    is an error rather than silently losing one of them."""
    result: dict[str, dict[str, Any]] = {}
    for value in values or []:
        hv_name, params = parse_hv_option(value)
        if hv_name in result:
            raise errors.ParameterError("Hypervisor '%s' given more than once in -H" % hv_name)
        result[hv_name] = params
    return result


def _parse_index(ident: str, what: str) -> int:
    try:
        index = int(ident)
    except ValueError:
        index = -1
    if index < 0 or not ident.strip().isdigit():
        raise _inval("Invalid %s index passed: '%s', expected a non-negative integer"
                     % (what, ident))
    return index


def parse_disk_option(value: str) -> tuple[int, dict[str, Any]]:
    """``--disk 0:size=1g,mode=rw`` -> ``(0, {"size": 1024, "mode": "rw"})``.

    Exactly one of ``size`` and ``adopt`` is required (adoption gives size 0,
    the real size is taken from the adopted volume); ``spindles`` becomes an
    int, ``mode`` must be ``ro`` or ``rw``; other keys (``vg``, ``metavg``,
    ``name``, ``provider``, ``access``, ext provider parameters) pass through.
    """
    ident, params = parse_ident_key_value(value, "--disk", parse_prefixes=False)
    index = _parse_index(ident, "disk")
    if IDISK_SIZE in params:
        if IDISK_ADOPT in params:
            raise _inval("Only one of 'size' and 'adopt' allowed for disk %d" % index)
        params[IDISK_SIZE] = _parse_disk_size(params[IDISK_SIZE], index)
    elif IDISK_ADOPT in params:
        if IDISK_SPINDLES in params:
            raise _inval("spindles is not a valid option when adopting a disk")
        params[IDISK_SIZE] = 0
    else:
        raise _inval("Missing size or adoption source for disk %d" % index)
    _check_disk_params(params, index)
    return index, params


def _parse_disk_size(value: Any, index: int | str) -> int:
    try:
        return parse_unit(value)
    except errors.UnitParseError as err:
        raise _inval("Invalid disk size for disk %s: %s" % (index, err)) from None


def _check_disk_params(params: dict[str, Any], index: int | str) -> None:
    if IDISK_SPINDLES in params:
        try:
            params[IDISK_SPINDLES] = int(params[IDISK_SPINDLES])
        except ValueError:
            raise _inval("Invalid spindles '%s' for disk %s, expected an integer"
                         % (params[IDISK_SPINDLES], index)) from None
    mode = params.get(IDISK_MODE)
    if mode is not None and mode not in constants.DISK_ACCESS_SET:
        raise _inval("Invalid disk access mode '%s' for disk %s, expected %s or %s"
                     % (mode, index, constants.DISK_RDWR, constants.DISK_RDONLY))


def parse_disk_options(values: list[str] | None, sd_size: str | int | None = None,
                       disk_template: str | None = None,
                       mode: str = "create") -> list[dict[str, Any]]:
    """The ``disks`` list of OP_INSTANCE_CREATE from ``--disk`` options or ``-s``.

    ``mode`` is ``create`` or ``import`` (an import may omit disks: they come
    from the export).  Indices must cover 0..N-1 without gaps.
    """
    values = values or []
    if disk_template == constants.DT_DISKLESS:
        if values or sd_size is not None:
            raise _inval("Diskless instance but disk information passed")
        return []
    if values and sd_size is not None:
        raise _inval("Please use either the '--disk' or '-s' option")
    if sd_size is not None:
        size = sd_size if isinstance(sd_size, int) else _parse_disk_size(sd_size, 0)
        return [{IDISK_SIZE: size}]
    if not values:
        if mode == "create":
            raise _inval("No disk information specified")
        return []
    by_index: dict[int, dict[str, Any]] = {}
    for value in values:
        index, params = parse_disk_option(value)
        if index in by_index:
            raise _inval("Disk %d given more than once" % index)
        if IDISK_ADOPT in params and mode != "create":
            raise _inval("Disk adoption not allowed for instance import")
        by_index[index] = params
    missing = [i for i in range(max(by_index) + 1) if i not in by_index]
    if missing:
        raise _inval("Missing information for disk %d (disk indices must be"
                     " consecutive from 0)" % missing[0])
    return [by_index[i] for i in range(len(by_index))]


def _check_nic_params(params: dict[str, Any], index: int | str) -> None:
    for key, val in params.items():
        if key not in INIC_PARAMS:
            raise errors.TypeEnforcementError(
                "Unknown parameter '%s' for NIC %s, expected one of %s"
                % (key, index, ", ".join(sorted(INIC_PARAMS))))
        if not isinstance(val, str):
            raise errors.TypeEnforcementError("NIC %s parameter '%s' needs a value"
                                              " (%s=VALUE)" % (index, key, key))


def parse_nic_option(value: str) -> tuple[int, dict[str, Any]]:
    """``--net 0:mac=auto,link=br0`` -> ``(0, {"mac": "auto", "link": "br0"})``."""
    ident, params = parse_ident_key_value(value, "--net")
    index = _parse_index(ident, "NIC")
    if not isinstance(params, dict):
        raise _inval("Invalid nic/%d value: expected key=value parameters" % index)
    _check_nic_params(params, index)
    return index, params


def parse_nic_options(values: list[str] | None, no_nics: bool = False,
                      mode: str = "create") -> list[dict[str, Any]]:
    """The ``nics`` list of OP_INSTANCE_CREATE.

    Without ``--net``: one all-default NIC on create, none with ``--no-nics``
    or on import.  Indices not given become all-default NICs (``{}``).
    """
    values = values or []
    if values and no_nics:
        raise _inval("Please use either the '--net' or '--no-nics' option")
    if not values:
        return [{}] if mode == "create" and not no_nics else []
    by_index: dict[int, dict[str, Any]] = {}
    for value in values:
        index, params = parse_nic_option(value)
        if index in by_index:
            raise _inval("NIC %d given more than once" % index)
        by_index[index] = params
    return [by_index.get(i, {}) for i in range(max(by_index) + 1)]


def _modification_action(ident: str, params: dict[str, Any]) -> tuple[str, int | str]:
    if ident in DDM_ACTIONS and ident != DDM_MODIFY:
        return ident, -1
    flags = [action for action in DDM_ACTIONS if action in params]
    for action in flags:
        if params[action] is not True:
            raise _inval("'%s' takes no value, got '%s=%s'" % (action, action, params[action]))
        del params[action]
    if len(flags) > 1:
        raise _inval("Cannot do more than one of the following operations at the"
                     " same time: %s" % ", ".join(flags))
    identifier: int | str = ident
    if re.fullmatch(r"-?\d+", ident):
        identifier = int(ident)
    elif not ident:
        raise _inval("Missing index or name before ':'")
    return (flags[0] if flags else DDM_MODIFY), identifier


def parse_modification(value: str, kind: str) -> list[Any]:
    """One ``--disk``/``--net`` value of ``gnt-instance modify`` ->
    ``[action, identifier, params]`` (spec/rapi.md §9.2).

    ``add:k=v`` / ``remove`` (legacy: act on the last item, identifier -1),
    ``N:add,k=v`` (insert at N), ``N:remove``, ``N:modify,k=v`` or ``N:k=v``;
    N may be an index or a disk/NIC name or UUID.  Removal and detach take no
    parameters.  ``kind`` is ``disk`` or ``nic``.
    """
    ident, params = parse_ident_key_value(value, "--disk" if kind == "disk" else "--net")
    if not isinstance(params, dict):
        raise _inval("Invalid %s modification '%s'" % (kind, value))
    action, identifier = _modification_action(ident, params)
    if action in (DDM_REMOVE, DDM_DETACH) and params:
        raise _inval("Not accepting parameters on removal (got %s)"
                     % ", ".join(sorted(params)))
    if kind == "disk":
        if IDISK_SIZE in params:
            params[IDISK_SIZE] = _parse_disk_size(params[IDISK_SIZE], identifier)
        _check_disk_params(params, identifier)
    else:
        _check_nic_params(params, identifier)
    return [action, identifier, params]


def parse_disk_modifications(values: list[str] | None) -> list[list[Any]]:
    """``disks`` of OP_INSTANCE_SET_PARAMS from repeated ``--disk``."""
    return [parse_modification(value, "disk") for value in values or []]


def parse_nic_modifications(values: list[str] | None) -> list[list[Any]]:
    """``nics`` of OP_INSTANCE_SET_PARAMS from repeated ``--net``."""
    return [parse_modification(value, "nic") for value in values or []]
