"""gnt-backup's command line (opcodes built, result handling, list) and the export query."""

import pytest

from corral import constants, errors, objects, opcodes, query
from corral.client import base, gnt_backup
from corral.cmdlib import backup_query
from corral.rpc.client import RpcResult


@pytest.fixture
def submitted(monkeypatch):
    """Capture the opcodes gnt-backup submits; ``results`` is what the job "returns"."""
    state = {"ops": [], "results": None}

    def fake_submit(ops, opts, client=None, feedback=None):
        state["ops"].extend(ops)
        base.set_generic_opcode_opts(ops, opts)
        for op in ops:
            op.validate()
        return None if opts.submit else state["results"]
    monkeypatch.setattr(base, "submit_or_send", fake_submit)
    return state


# ---- export ---------------------------------------------------------------------------

def test_export_defaults_build_local_export(submitted):
    submitted["results"] = [[True, [True, True]]]
    assert gnt_backup.main(["export", "-n", "node2", "inst1"]) == 0
    (op,) = submitted["ops"]
    assert isinstance(op, opcodes.OpBackupExport)
    assert (op.instance_name, op.target_node, op.mode) == ("inst1", "node2", "local")
    assert op.shutdown is True and op.shutdown_timeout == 120
    assert op.remove_instance is False and op.ignore_remove_failures is False
    assert op.compress == "none" and op.zero_free_space is False and op.long_sleep is False


def test_export_every_option(submitted):
    submitted["results"] = [[True, []]]
    argv = ["export", "-n", "node2", "--noshutdown", "--shutdown-timeout", "7",
            "--remove-instance", "--ignore-remove-failures",
            "--transport-compression=gzip-fast", "--zero-free-space", "--long-sleep",
            "--zeroing-timeout-fixed", "30", "--zeroing-timeout-per-mib", "0.5",
            "--priority", "high", "inst1"]
    assert gnt_backup.main(argv) == 0
    op = submitted["ops"][0]
    assert op.shutdown is False and op.shutdown_timeout == 7
    assert op.remove_instance is True and op.ignore_remove_failures is True
    assert op.compress == "gzip-fast" and op.zero_free_space is True and op.long_sleep is True
    assert op.zeroing_timeout_fixed == 30 and op.zeroing_timeout_per_mib == 0.5


@pytest.mark.parametrize("result,expected", [
    ([False, [True, True]], "Export failed, errors in finalize export"),
    ([True, [True, False, False]], "Export failed, errors in disk(s) 1, 2"),
    ([False, [False]], "Export failed, errors in finalize export and disk(s) 0"),
])
def test_export_failures_exit_1_with_message(submitted, capsys, result, expected):
    submitted["results"] = [result]
    assert gnt_backup.main(["export", "-n", "node2", "inst1"]) == constants.EXIT_FAILURE
    assert capsys.readouterr().err == expected + "\n"


def test_export_unparsable_result_is_a_failure():
    assert gnt_backup.export_failure_message(None).startswith("Cannot parse")
    assert gnt_backup.export_failure_message([True, True]).startswith("Cannot parse")
    assert gnt_backup.export_failure_message([True, [True]]) is None


def test_export_submit_and_dry_run_exit_0(submitted, capsys):
    assert gnt_backup.main(["export", "-n", "n", "--submit", "inst1"]) == 0
    submitted["results"] = [None]
    assert gnt_backup.main(["export", "-n", "n", "--dry-run", "inst1"]) == 0
    assert submitted["ops"][1].dry_run is True
    assert capsys.readouterr().err == ""


def test_export_without_target_node_is_refused(submitted, capsys):
    assert gnt_backup.main(["export", "inst1"]) == constants.EXIT_FAILURE
    err = capsys.readouterr().err
    assert "wrong_input" in err and "Target node must be specified" in err
    assert submitted["ops"] == []


def test_export_unknown_compression_is_a_usage_error(submitted, capsys):
    with pytest.raises(SystemExit) as exc:
        gnt_backup.main(["export", "-n", "n", "--transport-compression=xz", "inst1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--transport-compression: invalid choice: 'xz'" in err and "gzip-fast" in err
    assert submitted["ops"] == []


def test_export_needs_exactly_one_instance(submitted, capsys):
    assert gnt_backup.main(["export", "-n", "n"]) == constants.EXIT_FAILURE
    assert "wrong number of arguments" in capsys.readouterr().err


# ---- import / remove ---------------------------------------------------------------------

def test_import_defaults_take_everything_from_the_export(submitted):
    argv = ["import", "-n", "node1:node2", "-t", "drbd", "--src-node=node3",
            "--src-dir=/srv/ganeti/export/inst1", "inst1"]
    assert gnt_backup.main(argv) == 0
    (op,) = submitted["ops"]
    assert isinstance(op, opcodes.OpInstanceCreate)
    assert op.mode == "import" and op.instance_name == "inst1"
    assert (op.pnode, op.snode, op.disk_template) == ("node1", "node2", "drbd")
    assert (op.src_node, op.src_path) == ("node3", "/srv/ganeti/export/inst1")
    assert op.disks == [] and op.nics == [] and op.os_type is None
    assert op.start is False and op.identify_defaults is False and op.compress == "none"


def test_import_with_creation_options(submitted):
    argv = ["import", "-n", "node1", "-t", "file", "--src-node", "node3", "-o", "busybox",
            "--disk", "0:size=2g", "--net", "0:mode=bridged,link=br0", "-B", "maxmem=256",
            "-H", "fake:acpi=false", "--identify-defaults", "--compress", "gzip",
            "--no-ip-check", "--no-name-check", "--tags", "a,b", "inst1"]
    assert gnt_backup.main(argv) == 0
    op = submitted["ops"][0]
    assert op.os_type == "busybox" and op.disks == [{"size": 2048}]
    assert op.nics == [{"mode": "bridged", "link": "br0"}]
    assert op.beparams == {"maxmem": "256"}  # typed by the master
    assert op.hypervisor == "fake" and op.identify_defaults is True and op.compress == "gzip"
    assert op.ip_check is False and op.name_check is False and op.tags == ["a", "b"]


@pytest.mark.parametrize("flag", ["--no-start", "--no-install", "--forthcoming", "--commit"])
def test_import_refuses_add_only_options(submitted, flag):
    with pytest.raises(SystemExit) as exc:
        gnt_backup.main(["import", "-n", "node1", flag, "inst1"])
    assert exc.value.code == 2


def test_remove(submitted):
    assert gnt_backup.main(["remove", "--submit", "inst1"]) == 0
    (op,) = submitted["ops"]
    assert isinstance(op, opcodes.OpBackupRemove) and op.instance_name == "inst1"


# ---- list ---------------------------------------------------------------------------------

class _Client:
    def __init__(self, rows):
        self.rows = rows
        self.queries = []

    def query(self, what, fields, names):
        self.queries.append((what, list(fields), list(names)))
        cells = {"node": 0, "export": 1}
        return {"fields": [], "data": [[row[cells[f]] if f in cells else
                                        [constants.RS_UNKNOWN, None] for f in fields]
                                       for row in self.rows]}


def _rows():
    normal = constants.RS_NORMAL
    return [[[normal, "node1"], [normal, "inst1"]], [[normal, "node1"], [normal, "web"]],
            [[normal, "node2"], [constants.RS_NODATA, None]]]


@pytest.fixture
def client(monkeypatch):
    cl = _Client(_rows())
    monkeypatch.setattr(base, "get_client", lambda: cl)
    return cl


def test_list_default_fields_and_header(client, capsys):
    assert gnt_backup.main(["list"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "Node  Export", "node1 inst1", "node1 web", "node2 ?"]
    assert client.queries == [("export", ["node", "export"], [])]


def test_list_options(client, capsys):
    assert gnt_backup.main(["list", "--no-headers", "--separator=|", "-n", "node1",
                            "--node", "node2"]) == 0
    assert capsys.readouterr().out.splitlines() == ["node1|inst1", "node1|web", "node2|?"]
    assert client.queries[-1][2] == ["node1", "node2"]
    assert gnt_backup.main(["list", "-o", "export", "-v"]) == 0
    assert capsys.readouterr().out.splitlines() == ["Export", "inst1", "web", "(nodata)"]


def test_list_unknown_field_exits_14(client, capsys):
    assert gnt_backup.main(["list", "-o", "node,nosuch"]) == constants.EXIT_UNKNOWN_FIELD
    assert "unknown fields" in capsys.readouterr().err.lower()


# ---- the export query resource ----------------------------------------------------------

class _Rpc:
    def __init__(self, answers):
        self.answers = answers  # node -> list of names, or None (no answer)
        self.calls = []

    def call(self, proc, nodes, args):
        self.calls.append((proc, list(nodes), args))
        return {n: (RpcResult(n, data=self.answers[n]) if self.answers.get(n) is not None
                    else RpcResult(n, fail_msg="connection refused")) for n in nodes}


class _Cfg:
    def __init__(self, nodes):
        self.nodes = {n.uuid: n for n in nodes}

    def get_all_nodes(self):
        return dict(self.nodes)

    def expand_node_name(self, name):
        for node in self.nodes.values():
            if name in (node.name, node.uuid, node.name.split(".")[0]):
                return node
        return None


class _Ctx:
    def __init__(self, answers, offline=()):
        names = ["node3.example", "node1.example", "node2.example", "node4.example"]
        self.cfg = _Cfg([objects.Node(uuid="u-" + n, name=n, offline=n in offline)
                         for n in names])
        self.rpc = _Rpc(answers)


def _query(ctx, names=(), fields=("node", "export")):
    return query.query(ctx, "export", list(fields), list(names))


def test_query_rows_sorted_by_node_then_name_in_one_fanout():
    ctx = _Ctx({"node1.example": ["zeta", "alpha"], "node2.example": [],
                "node3.example": ["beta"]}, offline=("node4.example",))
    result = _query(ctx)
    n = constants.RS_NORMAL
    assert result["data"] == [
        [[n, "node1.example"], [n, "alpha"]], [[n, "node1.example"], [n, "zeta"]],
        [[n, "node3.example"], [n, "beta"]]]
    assert [f["title"] for f in result["fields"]] == ["Node", "Export"]
    assert ctx.rpc.calls == [("export_list", ["node1.example", "node2.example",
                                              "node3.example"], {})]


def test_query_silent_node_gives_one_row_without_data():
    ctx = _Ctx({"node1.example": ["a"]}, offline=("node4.example",))
    rows = _query(ctx)["data"]
    n = constants.RS_NORMAL
    assert [[n, "node2.example"], [constants.RS_NODATA, None]] in rows
    assert [[n, "node3.example"], [constants.RS_NODATA, None]] in rows
    assert len(rows) == 3


def test_query_names_restrict_nodes_and_expand_short_names():
    ctx = _Ctx({"node1.example": ["a"], "node2.example": ["b"], "node3.example": ["c"]})
    rows = _query(ctx, names=["node3", "node1.example"])["data"]
    assert [r[0][1] for r in rows] == ["node1.example", "node3.example"]
    assert ctx.rpc.calls[0][1] == ["node1.example", "node3.example"]


def test_query_offline_named_node_is_not_contacted():
    ctx = _Ctx({}, offline=("node4.example",))
    assert _query(ctx, names=["node4"])["data"] == []
    assert ctx.rpc.calls == []


def test_query_unknown_node_is_noent():
    with pytest.raises(errors.OpPrereqError) as exc:
        _query(_Ctx({}), names=["nosuch"])
    assert exc.value.args[1] == errors.ECODE_NOENT and "nosuch" in str(exc.value)


def test_query_fields_of_export():
    fields = query.query_fields("export", None)["fields"]
    assert {(f["name"], f["title"], f["kind"]) for f in fields} == {
        ("node", "Node", "text"), ("export", "Export", "text")}
    assert backup_query.EXPORT_GETTERS.keys() == {"node", "export"}


def test_gnt_instance_add_still_builds_a_create_op(submitted):
    """The creation-op builder is shared with gnt-instance add (refactored for import)."""
    from corral.client import gnt_instance
    assert gnt_instance.main(["add", "-n", "node1", "-t", "file", "-s", "1g", "-o", "busybox",
                              "--no-start", "--forthcoming", "--submit", "inst1"]) == 0
    op = submitted["ops"][0]
    assert op.mode == "create" and op.disks == [{"size": 1024}] and op.nics == [{}]
    assert op.start is False and op.forthcoming is True and op.src_node is None
    assert gnt_instance.main(["add", "-o", "busybox", "--submit", "inst2"]) == 0
    assert submitted["ops"][1].disks == [] and submitted["ops"][1].start is True
