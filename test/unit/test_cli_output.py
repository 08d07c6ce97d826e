"""Listing output of the gnt-* tools (spec/cli.md §1) and the field tables."""

import time

import pytest

from corral import constants, errors
from corral.client import output, query_fields
from corral.client.output import FieldDef

N = constants.RS_NORMAL

NAME = FieldDef("name", "Node", "text", "Node name")
SIZE = FieldDef("dfree", "DFree", "unit", "Free disk")
COUNT = FieldDef("pinst_cnt", "Pinst", "number", "Primary instances")
FLAG = FieldDef("offline", "Offline", "bool", "Offline?")
TAGS = FieldDef("tags", "Tags", "other", "Tags", join_list=True)
RAW = FieldDef("ndparams", "NDParams", "other", "Params")


@pytest.fixture
def utc(monkeypatch):
    """Run with TZ=UTC so local-time formatting is predictable; restores the
    process timezone afterwards even if the test fails."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        yield
    finally:
        monkeypatch.undo()
        time.tzset()


# --- format_unit -------------------------------------------------------------

@pytest.mark.parametrize("mib,units,expected", [
    (0, "h", "0M"),
    (512, "h", "512M"),
    (1023, "h", "1023M"),
    (1024, "h", "1.0G"),
    (1536, "h", "1.5G"),
    (1024 * 1023, "h", "1023.0G"),
    (1024 * 1024 - 1, "h", "1024.0G"),
    (1024 * 1024, "h", "1.0T"),
    (2 * 1024 * 1024, "h", "2.0T"),
    (1536, "m", "1536"),
    (1536.4, "m", "1536"),
    (1536, "g", "1.5"),
    (100, "g", "0.1"),
    (3 * 1024 * 1024, "t", "3.0"),
    (512 * 1024, "t", "0.5"),
])
def test_format_unit(mib, units, expected):
    assert output.format_unit(mib, units) == expected


def test_format_unit_rejects_unknown_unit():
    with pytest.raises(errors.ProgrammerError, match="'k'"):
        output.format_unit(1, "k")


# --- format_table --------------------------------------------------------------

def test_table_alignment_and_no_trailing_spaces():
    fields = [NAME, SIZE, COUNT, TAGS]
    rows = [[(N, "node1.example.com"), (N, 1024), (N, 2), (N, ["a", "b"])],
            [(N, "n2"), (N, 512), (N, 10), (N, [])]]
    lines = output.format_table(fields, rows)
    assert lines == [
        "Node              DFree Pinst Tags",
        "node1.example.com  1.0G     2 a,b",
        "n2                 512M    10",
    ]
    assert all(line == line.rstrip() for line in lines)


def test_table_right_aligned_last_column_padded_on_the_left():
    lines = output.format_table([NAME, COUNT], [[(N, "a"), (N, 5)], [(N, "bbbb"), (N, 123)]])
    assert lines == ["Node Pinst", "a        5", "bbbb   123"]


def test_table_header_wider_than_values_and_no_headers():
    lines = output.format_table([NAME, FLAG], [[(N, "x"), (N, True)], [(N, "y"), (N, 0)]])
    assert lines == ["Node Offline", "x    Y", "y    N"]
    assert output.format_table([NAME, FLAG], [[(N, "x"), (N, True)]], headers=False) == ["x Y"]


def test_table_separator_no_padding_units_default_m():
    rows = [[(N, "node1"), (N, 2048), (N, 3)], [(N, "n2"), (N, 1536), (N, 10)]]
    lines = output.format_table([NAME, SIZE, COUNT], rows, separator="|")
    assert lines == ["Node|DFree|Pinst", "node1|2048|3", "n2|1536|10"]
    lines = output.format_table([NAME, SIZE], rows and [r[:2] for r in rows],
                                separator=" ", units="h", headers=False)
    assert lines == ["node1 2.0G", "n2 1.5G"]


@pytest.mark.parametrize("units,expected", [("m", "1536"), ("g", "1.5"), ("t", "0.0"),
                                            ("h", "1.5G")])
def test_table_units(units, expected):
    assert output.format_table([SIZE], [[(N, 1536)]], units=units, headers=False) == [expected]


def test_table_invalid_units():
    with pytest.raises(errors.ParameterError, match="'x'"):
        output.format_table([SIZE], [[(N, 1)]], units="x")


def test_unit_field_non_numeric_values():
    rows = [[(N, "2048")], [(N, "n/a")], [(N, None)]]
    assert output.format_table([SIZE], rows, headers=False) == ["2.0G", " n/a", "None"]


@pytest.mark.parametrize("status,short,verbose", [
    (constants.RS_UNKNOWN, "??", "(unknown)"),
    (constants.RS_NODATA, "?", "(nodata)"),
    (constants.RS_UNAVAIL, "-", "(unavail)"),
    (constants.RS_OFFLINE, "*", "(offline)"),
])
def test_placeholders(status, short, verbose):
    row = [[(N, "n1"), (status, None)]]
    assert output.format_table([NAME, SIZE], row, headers=False) == ["n1 " + short]
    assert output.format_table([NAME, SIZE], row, headers=False, verbose=True) == [
        "n1 " + verbose]
    assert output.format_table([NAME, SIZE], row, separator=":", headers=False,
                               verbose=True) == ["n1:" + verbose]


def test_placeholder_unknown_status_is_a_bug():
    with pytest.raises(errors.ProgrammerError):
        output.format_table([NAME], [[(99, None)]])


def test_cells_may_be_json_lists():
    assert output.format_table([NAME, COUNT], [[[0, "a"], [0, 1]]], headers=False) == ["a 1"]


def test_row_length_mismatch_is_a_bug():
    with pytest.raises(errors.ProgrammerError):
        output.format_table([NAME, COUNT], [[(N, "a")]])


def test_other_lists_and_dicts_use_python_str():
    rows = [[(N, ["a", "b"])], [(N, {"k": 1})]]
    assert output.format_table([RAW], rows, headers=False) == ["['a', 'b']", "{'k': 1}"]


def test_join_list_and_formatter():
    assert output.format_table([TAGS], [[(N, ["x", 1])]], headers=False) == ["x,1"]
    shout = FieldDef("s", "S", "text", "", formatter=lambda v: v.upper())
    assert output.format_table([shout], [[(N, "abc")], [(constants.RS_NODATA, None)]],
                               headers=False) == ["ABC", "?"]


def test_empty_table():
    assert output.format_table([NAME, COUNT], []) == ["Node Pinst"]
    assert output.format_table([NAME, COUNT], [], headers=False) == []


def test_float_field_right_aligned():
    speed = FieldDef("cpu_speed", "CPUSpeed", "float", "")
    assert output.format_table([speed, NAME], [[(N, 1.5), (N, "a")]]) == [
        "CPUSpeed Node", "     1.5 a"]


def test_bad_kind_is_rejected():
    with pytest.raises(errors.ProgrammerError, match="weird"):
        FieldDef("x", "X", "weird", "")


# --- timestamps ----------------------------------------------------------------

def test_timestamps(utc):
    assert output.format_timestamp(0) == "1970-01-01 00:00:00"
    assert output.format_timestamp(86400.9) == "1970-01-02 00:00:00"
    assert output.format_timestamp([86400, 123]) == "1970-01-02 00:00:00.000123"
    assert output.format_timestamp((60, 5)) == "1970-01-01 00:01:00.000005"
    assert output.format_timestamp(None) == "N/A"
    assert output.format_timestamp([None, None]) == "N/A"
    assert output.format_timestamp([1, 2, 3]) == "?"
    assert output.format_timestamp("x") == "?"


def test_timestamp_column_local_time(utc, monkeypatch):
    ctime = FieldDef("ctime", "CTime", "timestamp", "")
    assert output.format_table([ctime], [[(N, 3600)], [(N, None)]]) == [
        "CTime", "1970-01-01 01:00:00", "N/A"]
    monkeypatch.setenv("TZ", "Etc/GMT-2")
    time.tzset()
    assert output.format_table([ctime], [[(N, 3600)]], headers=False) == [
        "1970-01-01 03:00:00"]


# --- list-fields, -o, unknown fields -------------------------------------------

def test_list_fields_table():
    fields = [NAME, FieldDef("x", "X", "float", "doc x"), query_fields.unknown_field("bad")]
    assert output.list_fields_table(fields) == [
        "Name Type                  Title Description",
        "name Text                  Node  Node name",
        "x    Floating-point number X     doc x",
        "bad  Unknown               bad   Unknown field 'bad'",
    ]
    assert output.list_fields_table([NAME], separator="|", headers=False) == [
        "name|Text|Node|Node name"]


def test_kind_names_complete():
    assert set(output.KIND_NAMES) == output.QFT_ALL
    assert sorted(output.KIND_NAMES.values()) == sorted([
        "Text", "Boolean", "Number", "Floating-point number", "Storage size",
        "Timestamp", "Custom", "Unknown"])


def test_parse_field_list():
    default = ["name", "status"]
    assert output.parse_field_list(None, default) == ["name", "status"]
    assert output.parse_field_list("a,b", default) == ["a", "b"]
    assert output.parse_field_list("+a,b", default) == ["name", "status", "a", "b"]
    assert output.parse_field_list("+a", default) == ["name", "status", "a"]
    assert default == ["name", "status"]
    assert output.parse_field_list(None, default) is not default


def test_unknown_fields_warning_and_exit_code():
    fields = [NAME, query_fields.unknown_field("foo"), query_fields.unknown_field("bar")]
    assert output.unknown_fields_warning(fields) == (
        "Warning: Queried for unknown fields foo, bar")
    assert output.unknown_fields_warning([NAME]) is None
    assert output.table_exit_code(fields) == constants.EXIT_UNKNOWN_FIELD
    assert output.table_exit_code([NAME], [[(N, "a")]]) == constants.EXIT_SUCCESS
    assert output.table_exit_code([NAME], [[(constants.RS_UNKNOWN, None)]]) == (
        constants.EXIT_UNKNOWN_FIELD)
    assert output.table_exit_code([NAME], [[(constants.RS_NODATA, None)]]) == (
        constants.EXIT_SUCCESS)


def test_format_key_values():
    assert output.format_key_values({"b": 1, "a": "x"}) == "a=x, b=1"
    assert output.format_key_values({}) == "(empty)"
    assert output.format_key_values(None) == "None"


# --- field tables ---------------------------------------------------------------

def _titles(resource, names):
    return [f.title for f in query_fields.lookup_fields(resource, names)]


def test_default_headers():
    assert " ".join(_titles("node", query_fields.DEFAULT_NODE_FIELDS)) == (
        "Node DTotal DFree MTotal MNode MFree Pinst Sinst")
    assert " ".join(_titles("instance", query_fields.DEFAULT_INSTANCE_FIELDS)) == (
        "Instance Hypervisor OS Primary_node Status Memory")
    assert " ".join(_titles("group", query_fields.DEFAULT_GROUP_FIELDS)) == (
        "Group Nodes Instances AllocPolicy NDParams")
    assert " ".join(_titles("job", query_fields.DEFAULT_JOB_FIELDS)) == "ID Status Summary"
    assert " ".join(_titles("export", query_fields.DEFAULT_EXPORT_FIELDS)) == "Node Export"


@pytest.mark.parametrize("resource,name,title,kind", [
    ("node", "pip", "PrimaryIP", "text"),
    ("node", "master_candidate", "MasterC", "bool"),
    ("node", "mtotal", "MTotal", "unit"),
    ("node", "pinst_list", "PriInstances", "other"),
    ("node", "ctime", "CTime", "timestamp"),
    ("node", "serial_no", "SerialNo", "number"),
    ("node", "ndp/ssh_port", "SshPort", "number"),
    ("node", "ndp/cpu_speed", "CPUSpeed", "float"),
    ("instance", "snodes", "Secondary_Nodes", "other"),
    ("instance", "admin_up", "Autostart", "bool"),
    ("instance", "oper_ram", "Memory", "unit"),
    ("instance", "disk.sizes", "Disk_sizes", "other"),
    ("instance", "disk.size/0", "Disk/0", "unit"),
    ("instance", "disk.size/15", "Disk/15", "unit"),
    ("instance", "nic.mac/7", "NicMAC/7", "text"),
    ("instance", "nic.network.name/1", "NicNetworkName/1", "text"),
    ("instance", "be/maxmem", "ConfigMaxMem", "unit"),
    ("instance", "be/auto_balance", "Auto_balance", "bool"),
    ("instance", "hv/kernel_path", "Kernel_path", "text"),
    ("instance", "hv/serial_speed", "serial_speed", "text"),
    ("group", "alloc_policy", "AllocPolicy", "text"),
    ("group", "node_list", "NodeList", "other"),
    ("job", "received_ts", "Received", "other"),
    ("job", "archived", "Archived", "bool"),
])
def test_lookup_field(resource, name, title, kind):
    field = query_fields.lookup_field(resource, name)
    assert field is not None
    assert (field.name, field.title, field.kind) == (name, title, kind)
    assert field.doc


@pytest.mark.parametrize("resource,name", [
    ("node", "nonexistent"), ("node", "ndp/bogus"), ("node", "be/vcpus"),
    ("instance", "disk.size/16"), ("instance", "nic.mac/8"), ("instance", "disk.size/01"),
    ("instance", "disk.size/-1"), ("instance", "disk.bogus/0"), ("instance", "nic.mac/x"),
    ("instance", "be/bogus"), ("instance", "hv/Bad-Name"), ("instance", "hv/"),
    ("group", "vcpus"), ("job", "name"), ("bogus", "name"),
])
def test_lookup_unknown(resource, name):
    assert query_fields.lookup_field(resource, name) is None
    assert query_fields.lookup_fields(resource, [name])[0].kind == "unknown"


@pytest.mark.parametrize("alias,target", sorted(query_fields.INSTANCE_ALIASES.items()))
def test_aliases_take_target_definition(alias, target):
    field = query_fields.lookup_field("instance", alias)
    target_field = query_fields.lookup_field("instance", target)
    assert field.name == alias
    assert (field.title, field.kind, field.doc) == (
        target_field.title, target_field.kind, target_field.doc)
    assert query_fields.resolve_alias("instance", alias) == target
    assert query_fields.resolve_alias("instance", "name") == "name"


def test_hv_params_restrict_and_type():
    kinds = {"acpi": "bool", "serial_speed": "number"}
    assert query_fields.lookup_field("instance", "hv/acpi", kinds).kind == "bool"
    assert query_fields.lookup_field("instance", "hv/acpi", kinds).title == "ACPI"
    assert query_fields.lookup_field("instance", "hv/nope", kinds) is None
    names = [f.name for f in query_fields.all_fields("instance", kinds)]
    assert "hv/acpi" in names and "hv/serial_speed" in names


def test_default_fields_are_known():
    for resource, defaults in query_fields.DEFAULT_FIELDS.items():
        for name in defaults:
            assert query_fields.lookup_field(resource, name) is not None, (resource, name)


def test_all_fields_sorted_and_expanded():
    fields = query_fields.all_fields("instance")
    names = [f.name for f in fields]
    assert len(names) == len(set(names))
    assert names.index("disk.size/2") < names.index("disk.size/10")
    assert "disk.size/15" in names and "disk.size/16" not in names
    assert "nic.vlan/7" in names and "vcpus" in names and "be/memory" in names
    assert all(f.kind != "unknown" for f in fields)
    node_names = [f.name for f in query_fields.all_fields("node")]
    assert "ndp/oob_program" in node_names and "name" in node_names
    assert query_fields.all_fields("bogus") == []


def test_join_rules_follow_spec():
    inst = query_fields.INSTANCE_FIELDS
    joined = {n for n, f in inst.items() if f.join_list}
    assert {"tags", "disk.sizes", "snodes", "snodes.group", "snodes.group.uuid",
            "nic.macs", "nic.ips", "nic.modes", "nic.links", "nic.bridges",
            "nic.vlans"} <= joined
    assert not inst["disk.names"].join_list
    row = [[(N, "inst1"), (N, ["n2", "n3"]), (N, [1024, 2048]), (N, {"a": 1})]]
    fields = query_fields.lookup_fields("instance", ["name", "snodes", "disk.sizes",
                                                     "beparams"])
    assert output.format_table(fields, row, headers=False) == [
        "inst1 n2,n3 1024,2048 {'a': 1}"]


def test_job_list_rendering(utc):
    fields = query_fields.lookup_fields("job", ["id", "status", "summary", "received_ts",
                                                "opstart"])
    rows = [[(N, 7), (N, "success"), (N, ["INSTANCE_STARTUP(i1)", "TEST_DELAY(5 ns)"]),
             (N, [60, 1]), (N, [[0, 0], None])],
            [(N, 12), (N, "queued"), (N, ["CLUSTER_VERIFY"]), (N, None), (N, [None])]]
    assert output.format_table(fields, rows) == [
        "ID Status  Summary                               Received                   OpCode_start",
        " 7 success INSTANCE_STARTUP(i1),TEST_DELAY(5 ns) 1970-01-01 00:01:00.000001"
        " 1970-01-01 00:00:00.000000,N/A",
        "12 queued  CLUSTER_VERIFY                        N/A                        N/A",
    ]


def test_group_ndparams_rendering():
    fields = query_fields.lookup_fields("group", query_fields.DEFAULT_GROUP_FIELDS)
    rows = [[(N, "default"), (N, 2), (N, 1), (N, "preferred"),
             (N, {"spindle_count": 1, "oob_program": ""})]]
    assert output.format_table(fields, rows, separator="|", headers=False) == [
        "default|2|1|preferred|oob_program=, spindle_count=1"]


def test_field_to_dict():
    field = query_fields.lookup_field("node", "name")
    assert field.to_dict() == {"name": "name", "title": "Node", "kind": "text",
                               "doc": "Node name"}


def test_ordinal():
    assert [query_fields.ordinal(i) for i in (1, 2, 3, 4, 11, 12, 13, 21, 22, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "111th"]
