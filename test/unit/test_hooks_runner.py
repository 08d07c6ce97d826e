"""Node side of hooks (spec/hooks.md §1): selection, order, environment, results."""

import os

import pytest

from corral import constants, errors, pathutils
from corral.backend import hooks


@pytest.fixture
def hooks_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_ROOT", str(tmp_path))
    monkeypatch.setenv("SECRET_FROM_NODED", "leak")
    d = os.path.join(pathutils.hooks_base_dir(), "instance-start-pre.d")
    os.makedirs(d)
    return d


def _script(directory, name, body, executable=True):
    path = os.path.join(directory, name)
    with open(path, "w") as fh:
        fh.write("#!/bin/sh\n" + body + "\n")
    os.chmod(path, 0o755 if executable else 0o644)
    return path


ENV = {"GANETI_HOOKS_PHASE": "pre", "GANETI_HOOKS_PATH": "instance-start",
       "GANETI_INSTANCE_NAME": "inst1.example.com", "LD_PRELOAD": "/evil.so"}


def test_selection_and_order(hooks_dir):
    _script(hooks_dir, "20-second", "echo second")
    _script(hooks_dir, "10-first", "echo first")
    _script(hooks_dir, "foo.sh", "echo never")
    _script(hooks_dir, "30-not-exec", "echo never", executable=False)
    _script(hooks_dir, ".hidden", "echo never")
    os.mkdir(os.path.join(hooks_dir, "40-dir"))
    os.chmod(os.path.join(hooks_dir, "40-dir"), 0o755)
    _script(hooks_dir, "A_upper", "echo upper")
    result = hooks.hooks_runner("instance-start", "pre", ENV)
    assert result == [
        ["10-first", constants.HKR_SUCCESS, "first\n"],
        ["20-second", constants.HKR_SUCCESS, "second\n"],
        ["30-not-exec", constants.HKR_SKIP, ""],
        ["40-dir", constants.HKR_SKIP, ""],
        ["A_upper", constants.HKR_SUCCESS, "upper\n"],
        ["foo.sh", constants.HKR_SKIP, ""],
    ]


def test_environment_is_reset(hooks_dir):
    _script(hooks_dir, "env", "env | sort; pwd; cat")
    [[name, status, output]] = hooks.hooks_runner("instance-start", "pre", ENV)
    lines = output.splitlines()
    assert status == constants.HKR_SUCCESS
    env_lines = [line for line in lines if "=" in line and not line.startswith("PWD=")]
    assert sorted(env_lines) == sorted([
        "GANETI_HOOKS_PHASE=pre", "GANETI_HOOKS_PATH=instance-start",
        "GANETI_INSTANCE_NAME=inst1.example.com", "PATH=" + constants.HOOKS_PATH])
    assert "/" in lines  # cwd is /, and stdin (cat) was /dev/null: nothing more


def test_failure_and_combined_output(hooks_dir):
    _script(hooks_dir, "bad", "echo out; echo err >&2; echo out2; exit 3")
    _script(hooks_dir, "good", "true")
    result = hooks.hooks_runner("instance-start", "pre", ENV)
    assert result == [["bad", constants.HKR_FAIL, "out\nerr\nout2\n"],
                      ["good", constants.HKR_SUCCESS, ""]]


def test_exec_error_is_a_failure(hooks_dir):
    path = os.path.join(hooks_dir, "broken")
    with open(path, "w") as fh:
        fh.write("#!/nonexistent/interpreter\n")
    os.chmod(path, 0o755)
    [[name, status, output]] = hooks.hooks_runner("instance-start", "pre", ENV)
    assert (name, status) == ("broken", constants.HKR_FAIL)
    assert output


def test_missing_directory_runs_nothing(hooks_dir):
    assert hooks.hooks_runner("instance-start", "post", ENV) == []
    assert hooks.hooks_runner("node-add", "pre", ENV) == []


def test_invalid_path_or_phase_refused(hooks_dir):
    with pytest.raises(errors.HooksFailure):
        hooks.hooks_runner("../../etc", "pre", ENV)
    with pytest.raises(errors.HooksFailure):
        hooks.hooks_runner("instance-start", "middle", ENV)
