"""Rules for the whole suite.

`make check` installs every dependency the tests use (make deps), so a test
skipped because a tool, package or privilege is missing would report a broken
setup as a pass: such skips are turned into failures.  Skips that describe the
machine being different (it has a DRBD module, it is a Xen dom0) stay skips.
"""

import re

import pytest

_MISSING_DEPENDENCY = re.compile(r"not installed|missing|needs root|make deps|"
                                 r"could not import", re.I)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
        if _MISSING_DEPENDENCY.search(reason):
            report.outcome = "failed"
            report.longrepr = "dependency missing, install it with `make deps`: " + reason
