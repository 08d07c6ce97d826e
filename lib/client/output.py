"""Rendering of query results for the gnt-* ``list``/``list-fields`` commands.

The contract is spec/cli.md §1 "Listing output": what Ganeti's ``gnt-*`` tools
print, byte for byte, because users script against it (``--no-headers
--separator=|`` output is parsed by shell scripts and monitoring).

Everything here is pure: values in, lines out; nothing is printed and nothing
talks to the master.  The field descriptions (titles, kinds) come from
``corral.client.query_fields``; the values (``(status, value)`` cells) come
from the master's query.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from corral import constants, errors

# Field kinds (Ganeti's QFT_* values, also what RAPI /2/query/*/fields shows)
QFT_UNKNOWN = "unknown"
QFT_TEXT = "text"
QFT_BOOL = "bool"
QFT_NUMBER = "number"
QFT_FLOAT = "float"
QFT_UNIT = "unit"
QFT_TIMESTAMP = "timestamp"
QFT_OTHER = "other"
QFT_ALL = frozenset([QFT_UNKNOWN, QFT_TEXT, QFT_BOOL, QFT_NUMBER, QFT_FLOAT, QFT_UNIT,
                     QFT_TIMESTAMP, QFT_OTHER])

# Names shown by ``list-fields`` in its Type column
KIND_NAMES = {
    QFT_UNKNOWN: "Unknown",
    QFT_TEXT: "Text",
    QFT_BOOL: "Boolean",
    QFT_NUMBER: "Number",
    QFT_FLOAT: "Floating-point number",
    QFT_UNIT: "Storage size",
    QFT_TIMESTAMP: "Timestamp",
    QFT_OTHER: "Custom",
}

_RIGHT_ALIGNED = frozenset([QFT_NUMBER, QFT_FLOAT, QFT_UNIT])

# status -> (verbose text, short text)
RESULT_STATUS_TEXT = {
    constants.RS_UNKNOWN: ("(unknown)", "??"),
    constants.RS_NODATA: ("(nodata)", "?"),
    constants.RS_UNAVAIL: ("(unavail)", "-"),
    constants.RS_OFFLINE: ("(offline)", "*"),
}

UNITS = ("h", "m", "g", "t")
_MIB_PER_TIB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class FieldDef:
    """Description of one list field.

    ``join_list`` renders a list value comma-joined without spaces (``a,b``)
    instead of Python's ``str()``; ``formatter`` overrides the rendering of a
    normal value completely (placeholders for missing data still apply).
    """

    name: str
    title: str
    kind: str
    doc: str
    join_list: bool = False
    formatter: Callable[[Any], str] | None = dataclasses.field(
        default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in QFT_ALL:
            raise errors.ProgrammerError("Unknown field kind %r for field %r"
                                         % (self.kind, self.name))

    def to_dict(self) -> dict[str, str]:
        """The wire form used by OP_QUERY_FIELDS and RAPI ``/2/query/*/fields``."""
        return {"name": self.name, "title": self.title, "kind": self.kind, "doc": self.doc}

    def renamed(self, name: str) -> FieldDef:
        """Same field under another name (aliases keep the target's title and kind)."""
        return dataclasses.replace(self, name=name)


def format_unit(mib: int | float, units: str) -> str:
    """Render a size in MiB as Ganeti's FormatUnit does.

    ``m`` -> integer MiB; ``g``/``t`` -> one decimal without suffix; ``h`` ->
    ``512M`` below 1 GiB, ``1.5G`` below 1 TiB, ``2.0T`` above.
    """
    if units not in UNITS:
        raise errors.ProgrammerError("Invalid unit %r, expected one of %s"
                                     % (units, ", ".join(UNITS)))
    value = float(mib)
    if units == "m":
        return "%0.0f" % value
    if units == "g":
        return "%0.1f" % (value / 1024)
    if units == "t":
        return "%0.1f" % (value / _MIB_PER_TIB)
    if value < 1024:
        return "%0.0fM" % value
    if value < _MIB_PER_TIB:
        return "%0.1fG" % (value / 1024)
    return "%0.1fT" % (value / _MIB_PER_TIB)


def format_time(sec: Any, usec: Any = None) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in local time (``.uuuuuu`` appended if usec is
    given); ``N/A`` for anything that is not a number (unset timestamps)."""
    if isinstance(sec, bool) or not isinstance(sec, (int, float)):
        return "N/A"
    text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(sec))
    if usec is not None:
        text += ".%06d" % int(usec)
    return text


def format_timestamp(ts: Any) -> str:
    """Render a timestamp as Ganeti does.

    ``[sec, usec]`` pairs (job timestamps) -> ``2024-05-01 12:00:00.000123``;
    plain numbers (ctime/mtime) -> ``2024-05-01 12:00:00``; ``None`` -> ``N/A``;
    anything else (malformed pair) -> ``?``.
    """
    if ts is None:
        return "N/A"
    if isinstance(ts, (list, tuple)):
        if len(ts) != 2:
            return "?"
        return format_time(ts[0], usec=ts[1] if isinstance(ts[1], int) else None)
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        return "?"
    return format_time(ts)


def format_bool(value: Any) -> str:
    return "Y" if value else "N"


def join_list(value: Any) -> str:
    """``a,b`` for lists (items via str()); other values via str()."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value)
    return str(value)


def format_key_values(value: Any) -> str:
    """``k1=v1, k2=v2`` (sorted by key) for dicts, ``(empty)`` for an empty
    dict, as Ganeti's group list shows ``ndparams``; other values via str()."""
    if isinstance(value, dict):
        if not value:
            return "(empty)"
        return ", ".join("%s=%s" % (key, value[key]) for key in sorted(value))
    return str(value)


def format_result_status(status: int, verbose: bool) -> str:
    """Placeholder for a cell without a normal value."""
    try:
        verbose_text, short_text = RESULT_STATUS_TEXT[status]
    except KeyError:
        raise errors.ProgrammerError("Unknown result status %r" % (status,)) from None
    return verbose_text if verbose else short_text


def _unit_cell(value: Any, units: str) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            return value
    if isinstance(value, (int, float)):
        return format_unit(value, units)
    return str(value)


def format_value(field: FieldDef, value: Any, units: str = "h") -> str:
    """Render one normal (RS_NORMAL) value of ``field``."""
    if field.formatter is not None:
        return field.formatter(value)
    if field.join_list and isinstance(value, (list, tuple)):
        return join_list(value)
    kind = field.kind
    if kind == QFT_BOOL:
        return format_bool(value)
    if kind == QFT_UNIT:
        return _unit_cell(value, units)
    if kind == QFT_TIMESTAMP:
        return format_timestamp(value)
    return str(value)


def format_cell(field: FieldDef, cell: Sequence[Any], units: str = "h",
                verbose: bool = False) -> str:
    """Render one ``(status, value)`` cell: the value if RS_NORMAL, else the
    short or verbose placeholder."""
    status, value = cell
    if status == constants.RS_NORMAL:
        return format_value(field, value, units)
    return format_result_status(status, verbose)


def _default_units(units: str | None, separator: str | None) -> str:
    if units is None:
        return "m" if separator is not None else "h"
    if units not in UNITS:
        raise errors.ParameterError("Invalid units '%s', expected one of %s"
                                    % (units, ", ".join(UNITS)))
    return units


def render_columns(titles: Sequence[str], right_aligned: Sequence[bool],
                   rows: Iterable[Sequence[str]], headers: bool = True,
                   separator: str | None = None) -> list[str]:
    """Lay out already formatted cells.

    With a separator: cells joined by it, no padding.  Otherwise columns are
    padded to their widest cell (header included) and joined by one space;
    right-aligned columns are padded on the left; a left-aligned last column is
    not padded and lines are right-stripped, so no line ends in spaces (even
    when the last cell is empty).
    """
    if len(titles) != len(right_aligned):
        raise errors.ProgrammerError("titles and alignments differ in length")
    data: list[list[str]] = [list(titles)] if headers else []
    for row in rows:
        if len(row) != len(titles):
            raise errors.ProgrammerError("Row has %d cells, expected %d"
                                         % (len(row), len(titles)))
        data.append(list(row))
    if separator is not None:
        return [separator.join(row) for row in data]
    widths = [0] * len(titles)
    for row in data:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row)]
    if titles and not right_aligned[-1]:
        widths[-1] = 0
    lines = []
    for row in data:
        cells = [cell.rjust(width) if right else cell.ljust(width)
                 for cell, width, right in zip(row, widths, right_aligned)]
        lines.append(" ".join(cells).rstrip())
    return lines


def format_table(fields: list[FieldDef], rows: list[list[tuple[int, Any]]],
                 headers: bool = True, separator: str | None = None,
                 units: str | None = None, verbose: bool = False) -> list[str]:
    """Render a query result as the lines of a ``gnt-* list`` table.

    ``rows`` holds one ``(status, value)`` pair (tuple or 2-list) per field.
    ``units`` defaults to ``h`` without a separator and ``m`` with one.
    """
    unit = _default_units(units, separator)
    formatted = []
    for row in rows:
        if len(row) != len(fields):
            raise errors.ProgrammerError("Row has %d cells, expected %d"
                                         % (len(row), len(fields)))
        formatted.append([format_cell(field, cell, unit, verbose)
                          for field, cell in zip(fields, row)])
    return render_columns([f.title for f in fields],
                          [f.kind in _RIGHT_ALIGNED for f in fields],
                          formatted, headers=headers, separator=separator)


def list_fields_table(fields: list[FieldDef], headers: bool = True,
                      separator: str | None = None) -> list[str]:
    """Lines of ``list-fields``: columns ``Name Type Title Description``."""
    rows = [[f.name, KIND_NAMES.get(f.kind, KIND_NAMES[QFT_UNKNOWN]), f.title, f.doc]
            for f in fields]
    return render_columns(["Name", "Type", "Title", "Description"], [False] * 4,
                          rows, headers=headers, separator=separator)


def parse_field_list(arg: str | None, default: list[str]) -> list[str]:
    """Fields selected by ``-o``: None -> the default list, ``+a,b`` ->
    default plus a and b, ``a,b`` -> exactly those.  Never mutates ``default``."""
    if arg is None:
        return list(default)
    if arg.startswith("+"):
        return list(default) + arg[1:].split(",")
    return arg.split(",")


def unknown_field_names(fields: Iterable[FieldDef]) -> list[str]:
    return [f.name for f in fields if f.kind == QFT_UNKNOWN]


def unknown_fields_warning(fields: Iterable[FieldDef]) -> str | None:
    """The stderr warning printed before the table when unknown fields were
    asked for, or None if all fields are known."""
    names = unknown_field_names(fields)
    if not names:
        return None
    return "Warning: Queried for unknown fields %s" % ", ".join(names)


def table_exit_code(fields: Sequence[FieldDef],
                    rows: Iterable[Sequence[Sequence[Any]]] = ()) -> int:
    """EXIT_UNKNOWN_FIELD if an unknown field was queried (by its kind or by an
    RS_UNKNOWN cell), else EXIT_SUCCESS (missing data is not an error)."""
    if unknown_field_names(fields):
        return constants.EXIT_UNKNOWN_FIELD
    for row in rows:
        if any(cell[0] == constants.RS_UNKNOWN for cell in row):
            return constants.EXIT_UNKNOWN_FIELD
    return constants.EXIT_SUCCESS
