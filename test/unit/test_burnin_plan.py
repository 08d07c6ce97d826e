"""tools/burnin against a fake luxi client: which steps run or are skipped per
template, how jobs are submitted, the summary and the exit code."""

import pytest

from corral import constants
from corral.tools import burnin


class FakeClient:
    """Accepts jobs, finishes them at once; ``fail`` maps an OP_ID to an error."""

    def __init__(self, templates=("file", "sharedfile", "drbd", "diskless"), nodes=3,
                 fail=None, nic_mode="bridged"):
        self.jobs: list[list[dict]] = []
        self.fail = fail or {}
        self.templates = list(templates)
        self.nodes = ["node%d" % i for i in range(1, nodes + 1)]
        self.nic_mode = nic_mode
        self.instances: dict[str, list[str]] = {}

    def query_cluster_info(self):
        return {"enabled_disk_templates": self.templates, "default_hypervisor": "fake",
                "nicparams": {"default": {"mode": self.nic_mode, "link": "br0"}}}

    def query(self, what, fields, names):
        if what == "node":
            return {"data": [[(0, n), (0, False), (0, False), (0, True)] for n in self.nodes]}
        return {"data": [[(0, n), (0, nodes[0]), (0, nodes[1:])]
                         for n, nodes in self.instances.items()]}

    def submit_job(self, ops):
        self.jobs.append(ops)
        for op in ops:
            if op["OP_ID"] == "OP_INSTANCE_CREATE" and op["OP_ID"] not in self.fail:
                self.instances[op["instance_name"]] = [op["pnode"]] + \
                    ([op["snode"]] if op["snode"] else [])
            if op["OP_ID"] == "OP_INSTANCE_REMOVE":
                self.instances.pop(op["instance_name"], None)
        return len(self.jobs)

    def wait_for_job_change(self, job_id, fields, prev_info, prev_serial):
        return {"job_info": ["success"], "log_entries": []}

    def query_jobs(self, ids, fields):
        ops = self.jobs[ids[0] - 1]
        failed = [op["OP_ID"] for op in ops if op["OP_ID"] in self.fail]
        if failed:
            return [["error", ["error"] * len(ops),
                     [["OpExecError", [self.fail[failed[0]]]]] * len(ops)]]
        return [["success", ["success"] * len(ops), [None] * len(ops)]]

    def op_ids(self):
        return [[op["OP_ID"] for op in job] for job in self.jobs]


def run(client, *argv):
    lines: list[str] = []
    opts = burnin.build_parser().parse_args(["-o", "busybox", "--no-name-check"] + list(argv))
    b = burnin.Burnin(opts, client, out=lines.append)
    burnin.configure(b)
    code = burnin.run(b)
    return code, {r.name: r for r in b.results}, lines


def test_file_template_runs_what_it_supports(capsys):
    client = FakeClient()
    code, results, lines = run(client, "-t", "file", "--rename", "spare", "i1", "i2")
    assert code == 0
    status = {name: r.status for name, r in results.items()}
    assert status["create"] == status["move"] == status["rename"] == "PASS"
    assert status["replace-disks"] == status["failover"] == status["migrate"] == "SKIP"
    assert results["migrate"].detail == "disk template file does not support it"
    assert status["remove"] == "PASS" and client.instances == {}
    creates = [job[0] for job in client.jobs if job[0]["OP_ID"] == "OP_INSTANCE_CREATE"]
    assert [(c["pnode"], c["snode"]) for c in creates] == [("node1", None), ("node2", None)]
    assert creates[0]["disks"] == [{"size": 128, "mode": "rw"}]
    moves = [job[0] for job in client.jobs if job[0]["OP_ID"] == "OP_INSTANCE_MOVE"]
    assert [m["target_node"] for m in moves] == ["node2", "node3"]
    assert lines[-1].startswith("Result: all 11 step(s) passed")


def test_drbd_runs_replace_steps_and_picks_a_new_secondary():
    client = FakeClient()
    code, results, _ = run(client, "-t", "drbd", "--no-reinstall", "i1")
    assert code == 0
    assert results["replace-disks"].status == results["replace-secondary"].status == "PASS"
    assert results["reinstall"].detail == "disabled by --no-reinstall"
    assert results["move"].status == "SKIP"
    replace = [j for j in client.jobs if j[0]["OP_ID"] == "OP_INSTANCE_REPLACE_DISKS"]
    assert [op["mode"] for op in replace[0]] == ["replace_on_secondary", "replace_on_primary"]
    assert replace[1][0]["remote_node"] == "node3"
    failover = [j[0] for j in client.jobs if j[0]["OP_ID"] == "OP_INSTANCE_FAILOVER"]
    assert failover[0]["target_node"] is None  # DRBD fails over to its secondary


def test_sharedfile_failover_and_migrate_get_a_target():
    client = FakeClient()
    code, _results, _ = run(client, "-t", "sharedfile", "i1")
    assert code == 0
    migrate = [j for j in client.jobs if j[0]["OP_ID"] == "OP_INSTANCE_MIGRATE"][0]
    assert [(op["cleanup"], op["target_node"]) for op in migrate] == [(False, "node2"),
                                                                      (True, None)]


def test_a_failing_step_stops_the_run_and_fails_loudly():
    client = FakeClient(fail={"OP_INSTANCE_MIGRATE": "Opcode OP_INSTANCE_MIGRATE has no"
                                                      " logical unit"})
    code, results, lines = run(client, "-t", "sharedfile", "i1", "i2")
    assert code == 1
    assert results["migrate"].status == "FAIL"
    assert "i1 (job" in results["migrate"].detail and "no logical unit" in \
        results["migrate"].detail
    assert results["reboot"].status == "NOT RUN"
    assert results["remove"].status == "PASS"  # cleanup still happens
    assert lines[-1].startswith("Result: FAILED (migrate, ")


def test_parallel_submits_all_before_waiting(monkeypatch):
    client = FakeClient()
    order = []
    submit, wait = client.submit_job, client.wait_for_job_change
    monkeypatch.setattr(client, "submit_job", lambda ops: order.append("s") or submit(ops))
    monkeypatch.setattr(client, "wait_for_job_change",
                        lambda *a: order.append("w") or wait(*a))
    run(client, "-t", "file", "-p", "--no-move", "--no-reboot", "--no-reinstall",
        "--no-add-disks", "--no-add-nics", "--no-activate-disks", "--no-startstop",
        "--disk-growth", "0", "i1", "i2", "i3")
    assert "".join(order) == "sssww" + "w" + "sssw" + "ww"  # create, remove


def test_keep_instances_and_bad_arguments():
    client = FakeClient()
    code, results, _ = run(client, "-t", "diskless", "-K", "i1")
    assert code == 0 and results["remove"].status == "SKIP" and "i1" in client.instances
    assert results["add-remove-disks"].detail == "diskless instances"
    assert burnin.main(["-o", "b", "-t", "plain", "--no-name-check", "x"],
                       client=FakeClient()) == 1
    assert burnin.main(["-o", "b", "-t", "file", "--reboot-types", "warm", "x"],
                       client=FakeClient()) == 1
    assert burnin.main(["-o", "b", "-t", "file", "x", "x"], client=FakeClient()) == 1
    code, results, _ = run(FakeClient(nic_mode="routed"), "-t", "file", "i1")
    assert results["add-remove-nics"].detail == "the cluster's NIC mode is routed, not bridged"


def test_disk_sizes_and_growth_per_disk():
    client = FakeClient()
    code, _results, _ = run(client, "-t", "file", "--disk-size", "64m,1g", "--disk-growth",
                            "0,32m", "i1")
    assert code == 0
    create = client.jobs[0][0]
    assert [d["size"] for d in create["disks"]] == [64, 1024]
    grow = [j for j in client.jobs if j[0]["OP_ID"] == "OP_INSTANCE_GROW_DISK"][0]
    assert [(op["disk"], op["amount"]) for op in grow] == [(1, 32)]
    with pytest.raises(Exception, match="Wrong disk sizes/growth"):
        run(FakeClient(), "-t", "file", "--disk-size", "1g,1g,1g", "--disk-growth", "1m,2m",
            "i1")


def test_constants_match_the_cluster():
    assert constants.DT_DRBD8 in burnin.MIRRORED and constants.DT_SHARED_FILE in burnin.MIRRORED
    assert constants.DT_FILE not in burnin.MIRRORED


def test_mirror_rebuilds_only_the_secondary_and_follows_its_peer():
    client = FakeClient(templates=("file", "mirror"))
    code, results, _ = run(client, "-t", "mirror", "--rename", "spare", "i1", "i2")
    assert code == 0
    status = {name: r.status for name, r in results.items()}
    for step in ("replace-disks", "replace-secondary", "grow-disk", "failover", "migrate",
                 "add-remove-disks", "rename"):
        assert status[step] == "PASS", step
    assert results["move"].detail == "disk template mirror cannot be moved"
    creates = [j[0] for j in client.jobs if j[0]["OP_ID"] == "OP_INSTANCE_CREATE"]
    assert [(c["pnode"], c["snode"]) for c in creates] == [("node1", "node2"),
                                                          ("node2", "node3")]
    replace = [j for j in client.jobs if j[0]["OP_ID"] == "OP_INSTANCE_REPLACE_DISKS"]
    assert [[op["mode"] for op in job] for job in replace[:2]] == \
        [["replace_on_secondary"]] * 2  # never -p: the primary holds the only copy
    assert [job[0]["remote_node"] for job in replace[2:]] == ["node3", "node1"]
    moves = [j[0] for j in client.jobs if j[0]["OP_ID"] in ("OP_INSTANCE_FAILOVER",
                                                             "OP_INSTANCE_MIGRATE")]
    assert {m["target_node"] for m in moves} == {None}  # to the secondary, like DRBD


def test_mirror_needs_three_nodes_to_change_the_secondary():
    code, results, _ = run(FakeClient(templates=("mirror",), nodes=2), "-t", "mirror", "i1")
    assert code == 0
    assert results["replace-secondary"].detail == "needs at least 3 nodes"
    assert results["replace-disks"].status == "PASS"
    with pytest.raises(Exception, match="needs at least two nodes"):
        run(FakeClient(templates=("mirror",), nodes=1), "-t", "mirror", "i1")
