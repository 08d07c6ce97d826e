"""gnt-backup list/list-fields/remove and its argument checks on a one-node cluster.

Exports are made by hand (a directory with config.ini under the node's export
directory): the export and import data paths are tested elsewhere.
"""

import os
import shutil

import pytest

from conftest import initialised_cluster


@pytest.fixture(scope="module")
def shared_cluster():
    """One cluster for every case; each case removes the exports it made (see exports())."""
    yield from initialised_cluster()


def export_dir(cluster) -> str:
    return cluster.path("srv", "ganeti", "export")


@pytest.fixture
def exports(shared_cluster):
    """make(name, complete=True): an export directory; all removed after the test."""
    made = []

    def make(name: str, complete: bool = True) -> str:
        path = os.path.join(export_dir(shared_cluster), name)
        os.makedirs(path)
        made.append(path)
        if complete:
            with open(os.path.join(path, "config.ini"), "w") as fh:
                fh.write("[export]\nversion = 0\nos = busybox\n\n[instance]\nname = %s\n" % name)
        return path
    try:
        yield make
    finally:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)


def backup(cluster, *argv, check=True):
    return cluster.run("gnt-backup", *argv, check=check)


def test_list_shows_complete_exports_sorted(shared_cluster, exports):
    exports("web.example")
    exports("db.example")
    exports("half.example.new")           # an export being written
    exports("broken", complete=False)     # no config.ini
    out = backup(shared_cluster, "list").stdout
    assert out == ("Node      Export\n"
                   "localhost db.example\n"
                   "localhost web.example\n")


def test_list_options(shared_cluster, exports):
    exports("web.example")
    assert backup(shared_cluster, "list", "--no-headers").stdout == "localhost web.example\n"
    assert backup(shared_cluster, "list", "-o", "export").stdout == "Export\nweb.example\n"
    assert backup(shared_cluster, "list", "--separator=|", "--node", "localhost").stdout == \
        "Node|Export\nlocalhost|web.example\n"
    assert backup(shared_cluster, "list", "-o", "+node", "--no-headers").stdout == \
        "localhost web.example localhost\n"


def test_list_without_exports_prints_the_header(shared_cluster):
    assert backup(shared_cluster, "list").stdout == "Node Export\n"


def test_list_unknown_node_and_field(shared_cluster):
    proc = backup(shared_cluster, "list", "--node", "nosuch", check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "Failure: prerequisites not met" in proc.stderr and "'nosuch' not known" in proc.stderr
    proc = backup(shared_cluster, "list", "-o", "node,nosuch", check=False)
    assert proc.returncode == 14 and "unknown fields" in proc.stderr.lower()


def test_list_fields(shared_cluster):
    lines = backup(shared_cluster, "list-fields").stdout.splitlines()
    assert lines[0].split() == ["Name", "Type", "Title", "Description"]
    assert sorted(line.split()[:3] for line in lines[1:]) == [
        ["export", "Text", "Export"], ["node", "Text", "Node"]]
    one = backup(shared_cluster, "list-fields", "--no-headers", "--separator=|", "node").stdout
    assert one == "node|Text|Node|Node name\n"


def test_remove_an_export_of_a_gone_instance(shared_cluster, exports):
    path = exports("gone.example")
    backup(shared_cluster, "remove", "gone.example")
    assert not os.path.exists(path)
    assert backup(shared_cluster, "list", "--no-headers").stdout == ""


def test_remove_without_an_export_says_so(shared_cluster):
    proc = backup(shared_cluster, "remove", "nosuch")
    assert "Export not found" in proc.stdout


def test_export_argument_checks(shared_cluster):
    proc = backup(shared_cluster, "export", "inst1", check=False)
    assert proc.returncode == 1 and "Target node must be specified" in proc.stderr
    proc = backup(shared_cluster, "export", "-n", "localhost", "--transport-compression=xz",
                  "inst1", check=False)
    assert proc.returncode == 2 and "invalid choice: 'xz'" in proc.stderr
    proc = backup(shared_cluster, "export", "-n", "localhost", "nosuch", check=False)
    assert proc.returncode == 1 and "nosuch" in proc.stderr
    proc = backup(shared_cluster, "import", "--no-start", "inst1", check=False)
    assert proc.returncode == 2 and "--no-start" in proc.stderr


def test_help_and_no_command(shared_cluster):
    assert "list-fields" in backup(shared_cluster, "--help").stdout
    proc = backup(shared_cluster, check=False)
    assert proc.returncode == 1 and "export" in proc.stdout
