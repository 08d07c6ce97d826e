"""Parsing of gnt-* option values (spec/cli.md §1 "Param syntax")."""

import pytest

from corral import constants, errors
from corral.client import params


def _prereq(excinfo):
    assert excinfo.value.args[1] == errors.ECODE_INVAL
    return excinfo.value.args[0]


# --- sizes ------------------------------------------------------------------------

@pytest.mark.parametrize("text,mib", [
    ("0", 0), ("1", 4), ("3", 4), ("4", 4), ("124", 124), ("125", 128),
    ("512", 512), ("512m", 512), ("512M", 512), ("512MiB", 512), ("512mb", 512),
    ("1g", 1024), ("1G", 1024), ("1.5g", 1536), ("1.5 g", 1536), ("0.5GB", 512),
    ("1t", 1024 * 1024), ("2TiB", 2 * 1024 * 1024), (".5g", 512), ("1.", 4),
    ("0.1", 4), ("1023.1", 1024), (1024, 1024), (1.5, 4), (" 10g ", 10240),
])
def test_parse_unit_accepts(text, mib):
    assert params.parse_unit(text) == mib


@pytest.mark.parametrize("text", ["", "-1", "-1g", "abc", "g", "1.5.3", "1e3", "1x",
                                  "1kb", "1 2", "1,5g", "+5"])
def test_parse_unit_rejects(text):
    with pytest.raises(errors.UnitParseError) as excinfo:
        params.parse_unit(text)
    msg = str(excinfo.value)
    assert "'%s'" % text in msg
    assert "m, g or t" in msg


# --- timespecs -------------------------------------------------------------------

@pytest.mark.parametrize("text,seconds", [
    ("120", 120), ("45s", 45), ("30m", 1800), ("1h", 3600), ("2d", 172800),
    ("1w", 604800), ("0", 0), (90, 90),
])
def test_parse_timespec_accepts(text, seconds):
    assert params.parse_timespec(text) == seconds


@pytest.mark.parametrize("text,fragment", [
    ("", "Empty time specification"),
    ("h", "only suffix passed"),
    ("1x", "'1x'"),
    ("-5", "'-5'"),
    ("1.5h", "'1.5h'"),
    ("abc", "'abc'"),
    ("1H", "'1H'"),
])
def test_parse_timespec_rejects(text, fragment):
    with pytest.raises(errors.OpPrereqError) as excinfo:
        params.parse_timespec(text)
    assert fragment in _prereq(excinfo)


# --- booleans and priorities -----------------------------------------------------

@pytest.mark.parametrize("text,value", [("yes", True), ("YES", True), ("true", True),
                                        ("True", True), ("no", False), ("false", False),
                                        ("No", False), (True, True), (False, False)])
def test_parse_bool(text, value):
    assert params.parse_bool(text) is value


@pytest.mark.parametrize("text", ["", "y", "1", "0", "maybe", "on"])
def test_parse_bool_rejects(text):
    with pytest.raises(errors.ParameterError, match="'%s'.*yes or no" % text):
        params.parse_bool(text)


def test_parse_priority():
    assert params.parse_priority("low") == 10
    assert params.parse_priority("normal") == 0
    assert params.parse_priority("HIGH") == -10
    for bad in ("urgent", "", "-10", "0"):
        with pytest.raises(errors.ParameterError, match="low, normal, high"):
            params.parse_priority(bad)


# --- key=value lists --------------------------------------------------------------

def test_key_value_list_forms():
    assert params.parse_key_value_list("a=1,b=2,no_c,-d,e,f=default,g=") == {
        "a": "1", "b": "2", "c": False, "d": None, "e": True, "f": "default", "g": ""}
    assert params.parse_key_value_list("") == {}
    assert params.parse_key_value_list(None) == {}


def test_key_value_list_value_keeps_equals_and_escapes():
    assert params.parse_key_value_list("kernel_args=ro console=ttyS0,x=a=b") == {
        "kernel_args": "ro console=ttyS0", "x": "a=b"}
    assert params.parse_key_value_list(r"cpu_mask=1\,3-5,b=c\\") == {
        "cpu_mask": "1,3-5", "b": "c\\"}
    assert params.parse_key_value_list(r"a=x\y") == {"a": r"x\y"}


def test_key_value_list_errors():
    with pytest.raises(errors.ParameterError, match="Duplicate key 'a' in option -B"):
        params.parse_key_value_list("a=1,a=2", "-B")
    with pytest.raises(errors.ParameterError, match="Empty parameter name"):
        params.parse_key_value_list("a=1,,b=2")
    with pytest.raises(errors.ParameterError, match="Empty parameter name"):
        params.parse_key_value_list("=5")
    with pytest.raises(errors.ParameterError, match="Missing value for key 'c'.*key=value"):
        params.parse_key_value_list("a=1,c", parse_prefixes=False)


def test_split_escaped():
    assert params.split_escaped("a,b") == ["a", "b"]
    assert params.split_escaped(r"a\,b,c") == ["a,b", "c"]
    assert params.split_escaped("") == [""]
    assert params.split_escaped("a:b", sep=":") == ["a", "b"]


def test_ident_key_value():
    assert params.parse_ident_key_value("kvm:acpi=false") == ("kvm", {"acpi": "false"})
    assert params.parse_ident_key_value("kvm") == ("kvm", {})
    assert params.parse_ident_key_value("no_kvm") == ("kvm", False)
    assert params.parse_ident_key_value("-kvm") == ("kvm", None)
    assert params.parse_ident_key_value("-1:a=b") == ("-1", {"a": "b"})
    assert params.parse_ident_key_value("x:a=b:c") == ("x", {"a": "b:c"})
    with pytest.raises(errors.ParameterError, match="Cannot pass options when removing"):
        params.parse_ident_key_value("no_kvm:acpi=true")


def test_hv_option():
    assert params.parse_hv_option("kvm:acpi=false,kernel_path=") == (
        "kvm", {"acpi": "false", "kernel_path": ""})
    assert params.parse_hv_option("xen-pvm") == ("xen-pvm", {})
    with pytest.raises(errors.ParameterError, match="Missing hypervisor name"):
        params.parse_hv_option(":acpi=true")
    with pytest.raises(errors.ParameterError, match="HYPERVISOR"):
        params.parse_hv_option("no_kvm")


def test_hv_options():
    assert params.parse_hv_options(["kvm:acpi=true", "fake"]) == {
        "kvm": {"acpi": "true"}, "fake": {}}
    assert params.parse_hv_options(None) == {}
    with pytest.raises(errors.ParameterError, match="'kvm' given more than once"):
        params.parse_hv_options(["kvm:a=1", "kvm:b=2"])


# --- disks (create) -----------------------------------------------------------------

def test_disk_option():
    assert params.parse_disk_option("0:size=1g,mode=rw") == (0, {"size": 1024, "mode": "rw"})
    assert params.parse_disk_option("1:size=10,vg=xenvg,name=data,spindles=2") == (
        1, {"size": 12, "vg": "xenvg", "name": "data", "spindles": 2})
    assert params.parse_disk_option("0:adopt=lv0") == (0, {"adopt": "lv0", "size": 0})


@pytest.mark.parametrize("value,fragment", [
    ("0:mode=rw", "Missing size or adoption source for disk 0"),
    ("0", "Missing size or adoption source for disk 0"),
    ("0:size=1g,adopt=x", "Only one of 'size' and 'adopt' allowed for disk 0"),
    ("0:adopt=x,spindles=1", "spindles is not a valid option when adopting"),
    ("0:size=lots", "Invalid disk size for disk 0: Invalid size 'lots'"),
    ("0:size=1g,mode=rx", "Invalid disk access mode 'rx' for disk 0"),
    ("0:size=1g,spindles=many", "Invalid spindles 'many' for disk 0"),
    ("x:size=1g", "Invalid disk index passed: 'x'"),
    ("-1:size=1g", "Invalid disk index passed: '-1'"),
])
def test_disk_option_rejects(value, fragment):
    with pytest.raises(errors.OpPrereqError) as excinfo:
        params.parse_disk_option(value)
    assert fragment in _prereq(excinfo)


def test_disk_option_bare_key_rejected():
    with pytest.raises(errors.ParameterError, match="Missing value for key 'size'"):
        params.parse_disk_option("0:size")


def test_disk_options():
    assert params.parse_disk_options(["1:size=2g", "0:size=1g"]) == [
        {"size": 1024}, {"size": 2048}]
    assert params.parse_disk_options(None, sd_size="10g") == [{"size": 10240}]
    assert params.parse_disk_options([], sd_size=512) == [{"size": 512}]
    assert params.parse_disk_options(None, disk_template="diskless") == []
    assert params.parse_disk_options(None, mode="import") == []


@pytest.mark.parametrize("kwargs,fragment", [
    (dict(values=["0:size=1g"], disk_template=constants.DT_DISKLESS),
     "Diskless instance but disk information passed"),
    (dict(values=None, sd_size="1g", disk_template=constants.DT_DISKLESS),
     "Diskless instance but disk information passed"),
    (dict(values=["0:size=1g"], sd_size="1g"), "either the '--disk' or '-s' option"),
    (dict(values=None), "No disk information specified"),
    (dict(values=["1:size=1g"]), "Missing information for disk 0"),
    (dict(values=["0:size=1g", "0:size=2g"]), "Disk 0 given more than once"),
    (dict(values=["0:adopt=lv"], mode="import"), "Disk adoption not allowed"),
    (dict(values=None, sd_size="huge"), "Invalid disk size for disk 0"),
])
def test_disk_options_reject(kwargs, fragment):
    with pytest.raises(errors.OpPrereqError) as excinfo:
        params.parse_disk_options(**kwargs)
    assert fragment in _prereq(excinfo)


# --- NICs (create) --------------------------------------------------------------------

def test_nic_options():
    assert params.parse_nic_option("0:mac=auto,ip=pool,link=br0,network=net1") == (
        0, {"mac": "auto", "ip": "pool", "link": "br0", "network": "net1"})
    assert params.parse_nic_option("2") == (2, {})
    assert params.parse_nic_options(["1:link=br1"]) == [{}, {"link": "br1"}]
    assert params.parse_nic_options(None) == [{}]
    assert params.parse_nic_options(None, no_nics=True) == []
    assert params.parse_nic_options(None, mode="import") == []
    assert params.parse_nic_options(["0:vlan=.100,mode=bridged,name=eth0"]) == [
        {"vlan": ".100", "mode": "bridged", "name": "eth0"}]


def test_nic_options_reject():
    with pytest.raises(errors.TypeEnforcementError, match="Unknown parameter 'speed'"):
        params.parse_nic_option("0:speed=10")
    with pytest.raises(errors.TypeEnforcementError, match="'mac' needs a value"):
        params.parse_nic_option("0:mac")
    with pytest.raises(errors.OpPrereqError) as excinfo:
        params.parse_nic_options(["0:link=a", "0:link=b"])
    assert "NIC 0 given more than once" in _prereq(excinfo)
    with pytest.raises(errors.OpPrereqError) as excinfo:
        params.parse_nic_options(["0:link=a"], no_nics=True)
    assert "--no-nics" in _prereq(excinfo)
    with pytest.raises(errors.OpPrereqError) as excinfo:
        params.parse_nic_option("eth0:link=a")
    assert "Invalid NIC index passed: 'eth0'" in _prereq(excinfo)
    with pytest.raises(errors.OpPrereqError) as excinfo:
        params.parse_nic_option("no_0")
    assert "nic/0" in _prereq(excinfo)


# --- modifications -------------------------------------------------------------------

@pytest.mark.parametrize("value,expected", [
    ("add:size=1g", ["add", -1, {"size": 1024}]),
    ("add:size=1g,mode=ro,name=d2", ["add", -1, {"size": 1024, "mode": "ro", "name": "d2"}]),
    ("remove", ["remove", -1, {}]),
    ("detach", ["detach", -1, {}]),
    ("attach:name=shared0", ["attach", -1, {"name": "shared0"}]),
    ("1:remove", ["remove", 1, {}]),
    ("0:modify,mode=ro", ["modify", 0, {"mode": "ro"}]),
    ("0:mode=ro", ["modify", 0, {"mode": "ro"}]),
    ("2:add,size=512", ["add", 2, {"size": 512}]),
    ("-1:remove", ["remove", -1, {}]),
    ("data:modify,name=data2", ["modify", "data", {"name": "data2"}]),
    ("0:detach", ["detach", 0, {}]),
])
def test_disk_modifications(value, expected):
    assert params.parse_disk_modifications([value]) == [expected]


@pytest.mark.parametrize("value,fragment", [
    ("1:remove,size=1g", "Not accepting parameters on removal"),
    ("remove:name=x", "Not accepting parameters on removal"),
    ("0:add,remove", "Cannot do more than one of the following operations"),
    ("0:modify=yes", "'modify' takes no value"),
    ("add:size=big", "Invalid disk size for disk -1"),
    ("0:mode=wr", "Invalid disk access mode 'wr'"),
    (":mode=ro", "Missing index or name"),
])
def test_disk_modifications_reject(value, fragment):
    with pytest.raises(errors.OpPrereqError) as excinfo:
        params.parse_disk_modifications([value])
    assert fragment in _prereq(excinfo)


def test_nic_modifications():
    assert params.parse_nic_modifications(["add:mac=auto,link=br0", "1:remove",
                                           "0:ip=10.0.0.2", "eth1:modify,link=br2"]) == [
        ["add", -1, {"mac": "auto", "link": "br0"}],
        ["remove", 1, {}],
        ["modify", 0, {"ip": "10.0.0.2"}],
        ["modify", "eth1", {"link": "br2"}],
    ]
    assert params.parse_nic_modifications(None) == []
    with pytest.raises(errors.TypeEnforcementError, match="Unknown parameter 'size'"):
        params.parse_nic_modifications(["add:size=1g"])
