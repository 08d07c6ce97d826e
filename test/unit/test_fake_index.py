"""The fake hypervisor's record index: queries follow the files, with and without inotify."""

import json
import os
import shutil
import time

import pytest

from corral import errors, serializer
from corral.backend import instance as binst
from corral.hypervisor import fake_index, get_hypervisor
from corral.hypervisor.hv_fake import FakeHypervisor


@pytest.fixture(params=["inotify", "stat"])
def hv(request, tmp_path, monkeypatch):
    """A fresh fake hypervisor under a temporary root, with inotify or without it."""
    monkeypatch.setenv("CORRAL_ROOT", str(tmp_path / "node"))
    if request.param == "stat":
        def no_inotify(**_kwargs):
            raise OSError(24, "Too many open files")
        monkeypatch.setattr(fake_index, "INotify", no_inotify)
    driver = FakeHypervisor()
    try:
        yield driver
    finally:
        driver._index.close()


def _put(hv: FakeHypervisor, name: str, mem: int, in_place: bool = False) -> None:
    """Write a record as another process would (in place, or replaced by a rename)."""
    path = os.path.join(hv._dir(), name + ".json")
    os.makedirs(hv._dir(), exist_ok=True)
    text = json.dumps({"spec": {"beparams": {"maxmem": mem, "vcpus": 2}}, "state": "running",
                       "start_time": time.time() - 5})
    if in_place:
        with open(path, "w") as fh:
            fh.write(text)
    else:
        with open(path + ".tmp", "w") as fh:
            fh.write(text)
        os.rename(path + ".tmp", path)


def _mem(hv: FakeHypervisor) -> dict[str, int]:
    return {name: info["memory"] for name, info in hv.get_all_instances_info().items()}


def test_queries_follow_external_changes(hv):
    assert hv.get_all_instances_info() == {}          # no directory yet
    _put(hv, "b", 128)
    _put(hv, "a", 256)
    assert list(_mem(hv).items()) == [("a", 256), ("b", 128)]
    _put(hv, "a", 512, in_place=True)                 # same inode, rewritten
    _put(hv, "b", 64)                                 # replaced by a rename
    _put(hv, "c", 32)
    assert _mem(hv) == {"a": 512, "b": 64, "c": 32}
    os.unlink(os.path.join(hv._dir(), "b.json"))      # stopped by someone else
    assert _mem(hv) == {"a": 512, "c": 32}
    with open(os.path.join(hv._dir(), ".a.json.tmp"), "w") as fh:
        fh.write("{")                                 # temporary files are not records
    assert list(_mem(hv)) == ["a", "c"]


def test_directory_removed_and_recreated(hv):
    _put(hv, "a", 128)
    assert _mem(hv) == {"a": 128}
    shutil.rmtree(hv._dir())
    assert _mem(hv) == {}
    _put(hv, "x", 64)
    assert _mem(hv) == {"x": 64}
    moved = hv._dir() + ".old"
    os.rename(hv._dir(), moved)                       # the watch must not follow it
    _put(hv, "y", 32)
    assert _mem(hv) == {"y": 32}
    _put(hv, "z", 16)
    os.rename(os.path.join(hv._dir(), "z.json"), os.path.join(moved, "z.json"))
    assert _mem(hv) == {"y": 32}


def test_corrupt_record_fails_until_fixed(hv):
    _put(hv, "a", 128)
    assert _mem(hv) == {"a": 128}
    with open(os.path.join(hv._dir(), "a.json"), "w") as fh:
        fh.write("{not json")
    with pytest.raises(errors.HypervisorError, match="Corrupt fake record"):
        hv.get_all_instances_info()
    _put(hv, "a", 96)
    assert _mem(hv) == {"a": 96}


def test_lost_events_mean_a_rescan(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_ROOT", str(tmp_path / "node"))
    driver = FakeHypervisor()
    try:
        _put(driver, "a", 128)
        assert _mem(driver) == {"a": 128}
        state = driver._index._dirs[driver._dir()]
        if state.wd is None:
            pytest.skip("no inotify instance available on this machine")
        real = driver._index._inotify.read

        def overflowed(timeout=None):
            real(timeout=timeout)  # the kernel dropped these: only the overflow is reported
            return [(-1, fake_index.flags.Q_OVERFLOW, 0, "")]
        monkeypatch.setattr(driver._index._inotify, "read", overflowed)
        _put(driver, "b", 64)
        assert _mem(driver) == {"a": 128, "b": 64}
    finally:
        driver._index.close()


def test_watched_directories_are_bounded(tmp_path, monkeypatch):
    driver = FakeHypervisor()
    try:
        for i in range(fake_index.MAX_DIRS + 2):
            monkeypatch.setenv("CORRAL_ROOT", str(tmp_path / ("n%d" % i)))
            _put(driver, "i%d" % i, 8 + i)
            assert _mem(driver) == {"i%d" % i: 8 + i}
        assert len(driver._index._dirs) == fake_index.MAX_DIRS
        monkeypatch.setenv("CORRAL_ROOT", str(tmp_path / "n0"))  # evicted: rescanned
        assert _mem(driver) == {"i0": 8}
    finally:
        driver._index.close()


def test_json_answer_is_what_dumps_makes(hv, monkeypatch):
    for name, mem in (("b-1", 128), ("a", 256), ("ünï", 64)):
        _put(hv, name, mem)
    os.utime(os.path.join(hv._dir(), "a.json"), (1, 1))
    monkeypatch.setattr(time, "time", lambda: 1700000000.25)
    expected = {name: dict(info, hypervisor="fake")
                for name, info in hv.get_all_instances_info().items()}
    text = hv.get_all_instances_info_json({"hypervisor": "fake"})
    assert text == serializer.dumps(expected)
    assert hv.get_all_instances_info_json({}) == serializer.dumps(
        hv.get_all_instances_info())
    assert list(json.loads(text)) == ["a", "b-1", "ünï"]


def test_backend_answer_and_hypervisors_without_json(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_ROOT", str(tmp_path / "node"))
    fake = get_hypervisor("fake")
    _put(fake, "a", 128)

    class Plain:
        def get_all_instances_info(self):
            return {"a": {"memory": 1}, "k": {"memory": 2}}
    monkeypatch.setattr(binst, "get_hypervisor",
                        lambda name: Plain() if name == "plain" else fake)
    one = serializer.loads(binst.all_instances_info(["fake"]).text)
    assert one["a"]["memory"] == 128 and one["a"]["hypervisor"] == "fake"
    both = serializer.loads(binst.all_instances_info(["fake", "plain"]).text)
    # as dict.update: a later hypervisor's info wins, at the first position
    assert list(both) == ["a", "k"] and both["a"] == {"memory": 1, "hypervisor": "plain"}
    assert binst.all_instances_info([]).text == "{}"
