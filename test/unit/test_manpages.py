"""Every command and daemon has a man page, and the committed pages match --help."""

import os

import pytest

from corral.tools import manpages

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _executables() -> list[str]:
    names = []
    for sub in ("scripts", "daemons"):
        names += sorted(os.listdir(os.path.join(ROOT, sub)))
    return names


@pytest.mark.parametrize("name", _executables())
def test_every_executable_has_a_man_page(name):
    pages = manpages.all_pages()
    assert any(p.rsplit(".", 1)[0] == name for p in pages), \
        "%s has no man page: add it to lib/tools/manpages.py and run tools/mkman" % name


def test_committed_pages_are_current():
    for filename, text in manpages.all_pages().items():
        path = os.path.join(ROOT, "man", filename)
        assert os.path.exists(path), "man/%s missing: run tools/mkman" % filename
        with open(path) as fh:
            assert fh.read() == text, "man/%s is stale: run tools/mkman" % filename


def test_pages_list_every_subcommand():
    for name, (module, _sec, _summary, _desc) in manpages.TOOLS.items():
        import importlib
        commands = importlib.import_module(module).COMMANDS
        page = manpages.tool_page(name)
        for cmd in commands:
            assert ".SS %s" % cmd.replace("-", "\\-") in page
