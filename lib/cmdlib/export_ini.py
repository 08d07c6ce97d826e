"""config.ini of an instance export (spec/cli.md §8): what it holds, both ways; pure.

The file is Ganeti's format, so exports move between Ganeti and Corral: sections
``export``, ``instance``, ``hypervisor``, ``backend``, ``os`` and ``os_private``.
Parameters are written filled with the cluster's defaults (as Ganeti does), so an
export carries everything needed to rebuild the instance elsewhere; ``gnt-backup
import --identify-defaults`` drops the values equal to the importing cluster's.
Absent values are written ``None``, which Ganeti (and this reader) take as "none".
"""

import configparser
import io
import time
from dataclasses import dataclass, field
from typing import Any

from corral import constants, errors, objects
from corral.hypervisor import hvparams

NIC_KEYS = ("mac", "ip", "network", "name", "mode", "link", "vlan")
_EXPORT, _INSTANCE = "export", "instance"


@dataclass
class ExportInfo:
    """What an import takes from an export (only what the file says)."""

    os: str
    source: str
    disk_template: str
    hypervisor: str | None
    tags: list[str]
    disks: list[dict]            # {"size": MiB, "name": str|None, "dump": file|None}
    nics: list[dict]             # the keys of NIC_KEYS present, "None" values dropped
    hvparams: dict = field(default_factory=dict)
    beparams: dict = field(default_factory=dict)
    osparams: dict = field(default_factory=dict)
    osparams_private: dict = field(default_factory=dict)


def _text(value: Any) -> str:
    return "None" if value is None or value == "" else str(value)


def _new_parser() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep key case
    return parser


def build(inst: objects.Instance, source: str, filled: tuple[dict, dict, dict],
          nics: list[dict], dumps: list[str], now: float | None = None) -> str:
    """config.ini text for ``inst`` exported from node ``source``.

    ``filled`` = (hvparams, beparams, osparams) filled with the cluster's defaults,
    ``nics`` = per NIC the filled values of NIC_KEYS, ``dumps`` = the file name of
    each disk's data in the export directory.
    """
    hvp, bep, osp = filled
    parser = _new_parser()
    parser.add_section(_EXPORT)
    for key, value in (("version", constants.EXPORT_VERSION),
                       ("timestamp", int(now if now is not None else time.time())),
                       ("source", source), ("os", inst.os), ("compression", "none")):
        parser.set(_EXPORT, key, str(value))
    parser.add_section(_INSTANCE)
    values: list[tuple[str, Any]] = [
        ("name", inst.name), ("maxmem", bep.get("maxmem")), ("minmem", bep.get("minmem")),
        ("memory", bep.get("maxmem")), ("vcpus", bep.get("vcpus")),
        ("disk_template", inst.disk_template), ("hypervisor", inst.hypervisor),
        ("tags", " ".join(inst.tags)), ("nic_count", len(nics))]
    for idx, nic in enumerate(nics):
        values.extend(("nic%d_%s" % (idx, key), nic.get(key)) for key in NIC_KEYS)
    values.append(("disk_count", len(inst.disks)))
    for idx, (disk, dump) in enumerate(zip(inst.disks, dumps)):
        values.extend([("disk%d_ivname" % idx, "disk/%d" % idx), ("disk%d_dump" % idx, dump),
                       ("disk%d_size" % idx, disk.size), ("disk%d_name" % idx, disk.name)])
    for key, value in values:
        parser.set(_INSTANCE, key, "" if key == "tags" and not value else _text(value))
    sections = (("hypervisor", {k: v for k, v in hvp.items() if k not in hvparams.HV_GLOBALS}),
                ("backend", bep), ("os", osp),
                ("os_private", dict(inst.osparams_private or {})))
    for section, params in sections:
        parser.add_section(section)
        for key in sorted(params):
            parser.set(section, key, _text(params[key]))
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


def _none(value: str | None) -> str | None:
    return None if value is None or value.strip().lower() in ("", "none") else value


def parse(text: str, where: str) -> ExportInfo:
    """The export described by ``text``; OpPrereqError saying what is wrong with it."""
    parser = _new_parser()
    try:
        parser.read_string(text, source=where)
    except configparser.Error as err:
        raise errors.OpPrereqError("Export %s has an unreadable config.ini: %s" % (where, err),
                                   errors.ECODE_INVAL)
    for section in (_EXPORT, _INSTANCE):
        if not parser.has_section(section):
            raise errors.OpPrereqError("Export %s is not valid: section '%s' missing from"
                                       " config.ini" % (where, section), errors.ECODE_INVAL)
    version = parser.get(_EXPORT, "version", fallback=None)
    if version != str(constants.EXPORT_VERSION):
        raise errors.OpPrereqError("Wrong export version %s (wanted %d) in export %s" %
                                   (version, constants.EXPORT_VERSION, where),
                                   errors.ECODE_ENVIRON)
    ins = dict(parser.items(_INSTANCE))
    try:
        disks = [{"size": int(ins["disk%d_size" % i]), "name": _none(ins.get("disk%d_name" % i)),
                  "dump": _none(ins.get("disk%d_dump" % i))}
                 for i in range(int(ins.get("disk_count", "0")))]
        nics = [{k: ins["nic%d_%s" % (i, k)] for k in NIC_KEYS
                 if _none(ins.get("nic%d_%s" % (i, k))) is not None}
                for i in range(int(ins.get("nic_count", "0")))]
    except (KeyError, ValueError) as err:
        raise errors.OpPrereqError("Export %s is not valid: bad or missing disk/NIC entry in"
                                   " config.ini (%s)" % (where, err), errors.ECODE_INVAL)

    def section(name: str) -> dict:
        if not parser.has_section(name):
            return {}
        return {k: v for k, v in parser.items(name) if _none(v) is not None}

    bep = section("backend")
    for old, new in (("memory", "maxmem"), ("vcpus", "vcpus")):  # exports without [backend]
        if new not in bep and _none(ins.get(old)) is not None:
            bep[new] = ins[old]
    return ExportInfo(
        os=parser.get(_EXPORT, "os", fallback=""), source=parser.get(_EXPORT, "source",
                                                                      fallback=""),
        disk_template=ins.get("disk_template", ""), hypervisor=_none(ins.get("hypervisor")),
        tags=(ins.get("tags") or "").split(), disks=disks, nics=nics,
        hvparams=section("hypervisor"), beparams=bep, osparams=section("os"),
        osparams_private=section("os_private"))
