"""Watcher decisions (restart counters, reboots, disk activation) and its state file."""

import os
import time

import pytest

from corral import constants, errors, watcher_groups, watcher_health, watcher_state
from corral.server import watcher
from corral.watcher_groups import InstanceInfo, NodeInfo
from corral.watcher_state import WatcherState


class Runner:
    """Records jobs; answers success unless the instance is in ``failing``."""

    def __init__(self, failing=(), verify_result=None):
        self.jobs = []
        self.failing = set(failing)
        self.verify_result = verify_result
        self.last_result = None

    def run(self, ops, what):
        self.jobs.append([(op.OP_ID, getattr(op, "instance_name", None)) for op in ops])
        if ops[0].OP_ID == "OP_GROUP_VERIFY_DISKS":
            self.last_result = [self.verify_result or [{}, [], {}]]
            return True
        return getattr(ops[0], "instance_name", None) not in self.failing


def inst(name, status, pnode="n1", snodes=(), disks_active=True, admin_up=True):
    return InstanceInfo(name, status, pnode, list(snodes), disks_active, admin_up)


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("CORRAL_ROOT", str(tmp_path))
    os.makedirs(tmp_path / "var" / "lib" / "corral")
    return tmp_path


def test_restart_counting_and_giving_up():
    state = WatcherState()
    runner = Runner(failing={"bad"})
    insts = {"bad": inst("bad", constants.INSTST_ERRORDOWN),
             "ok": inst("ok", constants.INSTST_RUNNING),
             "down": inst("down", constants.INSTST_ADMINDOWN, admin_up=False),
             "gone": inst("gone", constants.INSTST_NODEDOWN)}
    for attempt in range(1, 6):
        assert watcher_groups.check_instances(runner, state, insts) == set()
        assert state.restart_attempts("bad") == attempt
    assert len(runner.jobs) == 5
    assert all(job == [("OP_INSTANCE_STARTUP", "bad")] for job in runner.jobs)
    watcher_groups.check_instances(runner, state, insts)  # 6th: gives up, no job
    watcher_groups.check_instances(runner, state, insts)  # 7th: exhausted, no job
    assert len(runner.jobs) == 5 and state.restart_attempts("bad") == 6
    insts["bad"] = inst("bad", constants.INSTST_RUNNING)  # someone fixed it
    watcher_groups.check_instances(runner, state, insts)
    assert state.restart_attempts("bad") == 0


def test_successful_restart_and_user_down_cleanup():
    state = WatcherState()
    runner = Runner()
    insts = {"a": inst("a", constants.INSTST_ERRORDOWN),
             "u": inst("u", constants.INSTST_USERDOWN)}
    assert watcher_groups.check_instances(runner, state, insts) == {"a"}
    assert runner.jobs == [[("OP_INSTANCE_STARTUP", "a")], [("OP_INSTANCE_SHUTDOWN", "u")]]


def test_rebooted_nodes_and_disk_activation():
    state = WatcherState()
    nodes = {"n1": NodeInfo("n1", "boot-1"), "n2": NodeInfo("n2", "boot-2"),
             "off": NodeInfo("off", None, offline=True)}
    assert watcher_groups.rebooted_nodes(state, nodes) == {"n1", "n2"}  # first sight
    assert watcher_groups.rebooted_nodes(state, nodes) == set()
    nodes["n2"] = NodeInfo("n2", "boot-3")
    assert watcher_groups.rebooted_nodes(state, nodes) == {"n2"}
    insts = {"sec": inst("sec", constants.INSTST_RUNNING, "n1", ["n2"]),
             "inactive": inst("inactive", constants.INSTST_RUNNING, "n1", ["n2"],
                              disks_active=False),
             "started": inst("started", constants.INSTST_RUNNING, "n1", ["n2"]),
             "downpri": inst("downpri", constants.INSTST_ADMINDOWN, "n2", admin_up=False),
             "uppri": inst("uppri", constants.INSTST_ERRORDOWN, "n2"),
             "offsec": inst("offsec", constants.INSTST_RUNNING, "n2", ["off"])}
    assert watcher_groups.disks_to_activate(insts, {"n2"}, {"started"}, {"off"}) == \
        ["downpri", "sec"]


def test_check_group_saves_state_and_statuses(root):
    runner = Runner(verify_result=[{}, ["needy", "helpless"], {}])
    insts = {"needy": inst("needy", constants.INSTST_RUNNING),
             "helpless": inst("helpless", constants.INSTST_NODEOFFLINE),
             "dead": inst("dead", constants.INSTST_ERRORDOWN)}
    nodes = {"n1": NodeInfo("n1", "b1")}
    watcher_groups.check_group(runner, "g-uuid", insts, nodes)
    assert runner.jobs == [[("OP_INSTANCE_STARTUP", "dead")],
                           [("OP_GROUP_VERIFY_DISKS", None)],
                           [("OP_INSTANCE_ACTIVATE_DISKS", "needy")]]
    state = WatcherState.load(watcher_state.state_file("g-uuid"))
    assert state.restart_attempts("dead") == 1 and state.boot_id("n1") == "b1"
    with open(watcher_state.instance_status_file("g-uuid")) as fh:
        assert fh.read() == "dead ERROR_down\nhelpless ERROR_nodeoffline\nneedy running\n"
    watcher_state.merge_instance_status(["g-uuid", "missing"])
    with open(watcher_state.instance_status_file()) as fh:
        assert "needy running" in fh.read()
    # Counters of instances that disappeared are dropped.
    watcher_groups.check_group(Runner(), "g-uuid", {}, nodes, verify=False)
    assert WatcherState.load(watcher_state.state_file("g-uuid")).instances == {}


def test_state_file_tolerates_garbage(root):
    path = watcher_state.state_file("g")
    with open(path, "w") as fh:
        fh.write("{not json")
    assert WatcherState.load(path).instances == {}
    with open(path, "w") as fh:
        fh.write('{"instance": [], "node": {"n": {"bootid": 3}}}')
    state = WatcherState.load(path)
    assert state.instances == {} and state.boot_id("n") is None


def test_pause_file(root):
    assert watcher.paused_until() is None
    from corral.backend import watcher as backend_watcher
    until = time.time() + 3600
    assert backend_watcher.set_watcher_pause(until) == until
    assert watcher.paused_until() == int(until)
    assert backend_watcher.set_watcher_pause(time.time() - 5) is None
    assert watcher.paused_until() is None


def test_options():
    opts = watcher.build_parser().parse_args(["--interval", "5m", "-A", "2h", "--no-strict"])
    assert opts.interval == 300 and opts.job_age == 7200 and opts.strict is False
    opts = watcher.build_parser().parse_args([])
    assert opts.interval is None and opts.job_age == 6 * 3600 and opts.verify_disks
    with pytest.raises(SystemExit):
        watcher.build_parser().parse_args(["--interval", "soon"])


# ---- maintain_node_health ----------------------------------------------------------------------

def _role(serial, maintain=True, offline=True):
    return {"serial_no": serial, "maintain_node_health": maintain, "offline": offline}


@pytest.mark.parametrize("answers,act,why", [
    ({"c1": _role(7), "c2": _role(7)}, True, "offline per c1, c2 (configuration serial 7)"),
    ({"c1": _role(7), "c2": None}, True, "offline per c1 "),
    ({"c1": _role(8, offline=False), "c2": _role(7)}, False, "this node is online"),
    ({"c1": _role(8), "c2": _role(8, offline=False)}, False, "inconsistent"),
    ({"c1": _role(7, maintain=False)}, False, "maintain_node_health is off"),
    ({"c1": _role(7, offline=None)}, False, "not in the cluster configuration"),
    ({"c1": None, "c2": "garbage"}, False, "no master candidate answered"),
    ({}, False, "no master candidate answered"),
])
def test_node_health_decision(answers, act, why):
    parsed = {n: watcher_health.RoleAnswer.from_rpc(d) for n, d in answers.items()}
    got_act, got_why = watcher_health.decide(parsed)
    assert got_act is act and why in got_why


class FakeNode:
    """A node's instances and DRBD minors; stopping one removes it."""

    def __init__(self, running, minors, broken=()):
        self.running, self.minors, self.broken = dict(running), list(minors), set(broken)

    def stop(self, hv, name):
        if name in self.broken:
            raise errors.HypervisorError("cannot stop %s" % name)
        assert self.running.pop(name) == hv

    def down(self, minor):
        self.minors.remove(minor)

    def actions(self):
        return watcher_health.NodeActions(lambda: dict(self.running), self.stop,
                                          lambda: list(self.minors), self.down)


class FakeStore:
    def __init__(self, master="m", candidates=("m", "c1", "off")):
        self.master, self.candidates = master, list(candidates)

    def get_master_node(self):
        return self.master

    def get_master_candidates(self):
        return list(self.candidates)


def test_offline_node_stops_its_instances_and_drbd():
    node = FakeNode({"i1": "kvm", "i2": "fake", "stuck": "kvm"}, [0, 3], broken={"stuck"})
    asked = []

    def ask(candidates, me):
        asked.append((candidates, me))
        return {"m": _role(12), "c1": _role(12)}
    stopped = watcher_health.maintain(ask, node.actions(), FakeStore(), "off")
    assert asked == [(["m", "c1"], "off")]  # never itself
    assert stopped == (["i1", "i2"], [0, 3])
    assert node.running == {"stuck": "kvm"} and node.minors == []
    # Idempotent: the next run stops what is left and nothing else.
    node.broken.clear()
    assert watcher_health.maintain(ask, node.actions(), FakeStore(), "off") == (["stuck"], [])


def test_online_node_and_master_are_left_alone():
    node = FakeNode({"i1": "kvm"}, [1])
    online = lambda cands, me: {"m": _role(5, offline=False)}  # noqa: E731
    assert watcher_health.maintain(online, node.actions(), FakeStore(), "n2") is None
    never = lambda cands, me: pytest.fail("the master asked")  # noqa: E731
    assert watcher_health.maintain(never, node.actions(), FakeStore(), "m") is None
    assert node.running == {"i1": "kvm"} and node.minors == [1]


def test_node_role_reads_the_candidates_config_copy(root):
    from corral import pathutils, serializer
    from corral.backend import watcher as bwatcher
    with pytest.raises(errors.ConfigurationError):
        bwatcher.node_role("n2")
    with open(pathutils.config_file(), "w") as fh:
        fh.write(serializer.dumps({"serial_no": 9, "cluster": {"maintain_node_health": True},
                                   "nodes": {"u1": {"name": "n1", "offline": False},
                                             "u2": {"name": "n2", "offline": True}}}))
    assert bwatcher.node_role("n2") == {"serial_no": 9, "maintain_node_health": True,
                                        "offline": True}
    assert bwatcher.node_role("n1")["offline"] is False
    assert bwatcher.node_role("gone")["offline"] is None
