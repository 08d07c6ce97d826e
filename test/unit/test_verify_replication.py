"""gnt-cluster verify's replication checks: stale config copies on candidates and
nodes whose last configuration or job queue replication failed (ECLUSTERFILECHECK)."""

from corral import opcodes
from corral.cmdlib import verify
from corral.rpc.client import RpcResult
from test_node_roles import FakeContext, FakeProc, FakeRpc, make_cfg


class SerialRpc(FakeRpc):
    """node_verify answers with a config serial per node (missing key: an old node)."""

    def __init__(self, serials: dict) -> None:
        super().__init__()
        self.serials = serials

    def call(self, procedure, nodes, args, timeout=None):
        if procedure != "node_verify":
            return super().call(procedure, nodes, args, timeout)
        assert args["checks"]["config_serial"] is True
        out = {}
        for n in nodes:
            data = {"version": [3010000, "3.1.0"]}
            if n in self.serials:
                data["config_serial"] = self.serials[n]
            out[n] = RpcResult(n, data=data)
        return out


def _run(lu_class, op, ctx) -> list[str]:
    lines: list[str] = []
    lu = lu_class(FakeProc(), op, ctx, lines.append)
    lu.expand_names()
    lu.check_prereq()
    lu.exec(lines.append)
    return lines


def test_stale_and_missing_candidate_copies(tmp_path):
    cfg = make_cfg(tmp_path, count=4)
    serial = cfg.serial_no
    rpc = SerialRpc({"node1.example": serial, "node2.example": serial - 1,
                     "node3.example": None})  # node4 answers without the key (older node)
    op = opcodes.OpClusterVerifyGroup(group_name="default", error_codes=True)
    lines = _run(verify.LUClusterVerifyGroup, op, FakeContext(cfg, rpc))
    found = [line for line in lines if "ECLUSTERFILECHECK" in line]
    assert len(found) == 2, lines
    assert "out of date on node node2.example (serial %d, the master's is %d)" % (
        serial - 1, serial) in found[0]
    assert "missing on master candidate node3.example" in found[1]


def test_replication_failures_reported(tmp_path):
    cfg = make_cfg(tmp_path)
    ctx = FakeContext(cfg, FakeRpc())
    ctx.replication_failures = {"node3.example": "Timeout connecting"}
    ctx.queue_replication_failures = {"node2.example": "No answer"}
    op = opcodes.OpClusterVerifyConfig(error_codes=True)
    lines = _run(verify.LUClusterVerifyConfig, op, ctx)
    text = "\n".join(lines)
    assert "ERROR:ECLUSTERFILECHECK:cluster:cl.example:configuration replication to node" \
           " node3.example failed" in text
    assert "job queue replication to node node2.example failed" in text
    ctx.replication_failures, ctx.queue_replication_failures = {}, {}
    assert "ECLUSTERFILECHECK" not in "\n".join(_run(verify.LUClusterVerifyConfig, op, ctx))
