"""A few "nodes" in one process for the mobility tests: real backend functions,
fake hypervisor, real file storage and TLS disk transfers, one CORRAL_ROOT each.

``NodesRpc`` answers like rpc.client.RpcClient: it checks arguments against
the procedure table, switches CORRAL_ROOT to the node's root, rewrites the
cluster's file storage dir to the node's own (file disks are node-local, as
in a vcluster), and JSON-round-trips the result.  Nodes in ``down`` do not
answer (transport failure, like a crashed machine).
"""

import importlib
import json
import os
import threading

from corral import certs, config, constants, errors, objects
from corral.rpc import procedures, wire
from corral.rpc.client import RpcResult

NODES = ("node1.example", "node2.example", "node3.example")


class NodesRpc:
    def __init__(self, base: str, file_dir: str) -> None:
        self.base = base
        self.file_dir = file_dir
        self.down: set[str] = set()
        self.calls: list[tuple[str, str]] = []
        self.override: dict[str, object] = {}
        self.lock = threading.RLock()  # CORRAL_ROOT is process-wide: one call at a time

    def root(self, node: str) -> str:
        return os.path.join(self.base, node.split(".")[0])

    def node_file_dir(self, node: str) -> str:
        return os.path.join(self.root(node), "file")

    def _args(self, node: str, args: dict) -> dict:
        text = json.dumps(args).replace(json.dumps(self.file_dir)[1:-1],
                                        json.dumps(self.node_file_dir(node))[1:-1])
        return json.loads(text)

    def call(self, procedure, nodes, args, timeout=None):
        with self.lock:
            return self._call(procedure, nodes, args)

    def _call(self, procedure, nodes, args):
        proc = procedures.get_procedure(procedure)
        args = procedures.check_args(proc, args)
        module, _, name = proc.backend.rpartition(".")
        func = getattr(importlib.import_module("corral.backend." + module), name)
        out = {}
        for node in nodes:
            self.calls.append((procedure, node))
            if node in self.down:
                out[node] = RpcResult(node, fail_msg="Timeout connecting to node %s" % node)
                continue
            hook = self.override.get(procedure)
            saved = os.environ.get("CORRAL_ROOT")
            os.environ["CORRAL_ROOT"] = self.root(node)
            try:
                if hook is not None:
                    data = hook(node, func, **self._args(node, args))
                else:
                    data = func(**self._args(node, args))
                _ok, data, _msg, _cls = wire.decode_reply(200, wire.encode_reply(True, data))
                out[node] = RpcResult(node, data=data)
            except errors.GenericError as err:
                out[node] = RpcResult(node, fail_msg=str(err.args[0] if err.args else err),
                                      error_class=type(err).__name__)
            finally:
                if saved is None:
                    os.environ.pop("CORRAL_ROOT", None)
                else:
                    os.environ["CORRAL_ROOT"] = saved
        return out

    def call_one(self, procedure, node, args, timeout=None):
        return self.call(procedure, [node], args, timeout)[node]

    def on(self, node: str, func, *args, **kwargs):
        """Run ``func`` as node ``node`` (its CORRAL_ROOT)."""
        saved = os.environ.get("CORRAL_ROOT")
        os.environ["CORRAL_ROOT"] = self.root(node)
        try:
            return func(*args, **kwargs)
        finally:
            if saved is None:
                os.environ.pop("CORRAL_ROOT", None)
            else:
                os.environ["CORRAL_ROOT"] = saved


class Ctx:
    def __init__(self, cfg, rpc) -> None:
        self.cfg, self.rpc, self.glm = cfg, rpc, None


class Proc:
    owner = object()

    class cbs:
        job_id = 1

        @staticmethod
        def check_cancel() -> None:
            pass


def make_cluster(tmp_path) -> tuple[config.ConfigWriter, NodesRpc]:
    """Three nodes (u1..u3, 127.0.0.1 as secondary IP) with certificates and roots."""
    base = str(tmp_path)
    file_dir = os.path.join(base, "file")
    shared = os.path.join(base, "shared")
    os.makedirs(shared)
    rpc = NodesRpc(base, file_dir)
    ca = _cert_cache()
    cluster = objects.Cluster(uuid="c-uuid", cluster_name="cl.example", master_ip="127.0.0.9",
                              enabled_hypervisors=[constants.HT_FAKE],
                              file_storage_dir=file_dir, shared_file_storage_dir=shared,
                              enabled_disk_templates=["file", "sharedfile", "diskless"])
    group = objects.NodeGroup(uuid="g1", name="default")
    nodes = [objects.Node(uuid="u%d" % i, name=name, primary_ip="127.0.0.1",
                          secondary_ip="127.0.0.1", master_candidate=True, group="g1")
             for i, name in enumerate(NODES, 1)]
    cfg = config.ConfigWriter.create(os.path.join(base, "config.data"), cluster, nodes[0],
                                     group)
    for node in nodes[1:]:
        cfg.add_node(node)
    for node in NODES:
        root = rpc.root(node)
        data = os.path.join(root, "var", "lib", "corral")
        os.makedirs(data)
        os.makedirs(rpc.node_file_dir(node))
        rpc.on(node, _install_certs, ca, node)
    return cfg, rpc


_CERTS: dict[str, str] = {}


def _cert_cache() -> str:
    """The CA and node certificates, made once per test run (key generation is slow)."""
    import tempfile
    if not _CERTS:
        import atexit
        import shutil
        d = tempfile.mkdtemp(prefix="migcerts")
        atexit.register(shutil.rmtree, d, True)
        _CERTS["ca"] = os.path.join(d, "ca.pem")
        certs.generate_cluster_ca(_CERTS["ca"], "cl.example")
        for node in NODES:
            _CERTS[node] = os.path.join(d, node + ".pem")
            certs.generate_node_cert(_CERTS["ca"], _CERTS[node], node)
    return _CERTS["ca"]


def _install_certs(ca: str, node: str) -> None:
    from corral import pathutils
    import shutil
    shutil.copy(ca, pathutils.cluster_ca_file())
    shutil.copy(_CERTS[node], pathutils.node_cert_file())


def add_instance(cfg, rpc, name: str, template: str, pnode: str = "node1.example",
                 size_mib: int = 4, data: bytes = b"", start: bool = True,
                 admin_up: bool = True) -> objects.Instance:
    """An instance whose disk holds ``data`` at offset 1 MiB; running if ``start``."""
    node = cfg.get_node_by_name(pnode)
    disks = []
    if template != "diskless":
        base = cfg.get_cluster_info().file_storage_dir if template == "file" else \
            cfg.get_cluster_info().shared_file_storage_dir
        path = os.path.join(base, name, "d0.disk0")
        disks = [objects.Disk(uuid="disk-" + name, dev_type=template, logical_id=["loop", path],
                              iv_name="disk/0", size=size_mib, nodes=[node.uuid])]
        real = path.replace(rpc.file_dir, rpc.node_file_dir(pnode)) if template == "file" \
            else path
        os.makedirs(os.path.dirname(real), exist_ok=True)
        with open(real, "wb") as fh:
            fh.truncate(size_mib << 20)
            fh.seek(1 << 20)
            fh.write(data)
    inst = objects.Instance(uuid="uuid-" + name, name=name, primary_node=node.uuid,
                            hypervisor="fake", disk_template=template, disks=disks,
                            admin_state="up" if admin_up else "down",
                            beparams={"maxmem": 64, "minmem": 64}, disks_active=start)
    cfg.add_instance(inst)
    if start:
        from corral.cmdlib import instance_storage as ist
        from corral.cmdlib import instance_utils as iu

        class _Lu:
            pass
        lu = _Lu()
        lu.cfg = cfg
        res = rpc.call_one("instance_start", pnode,
                           {"instance": iu.instance_rpc(cfg, inst),
                            "disks": ist._rpc_disks(lu, inst.disks)})
        res.raise_if_failed()
    return cfg.get_instance_by_name(name)


def running_on(rpc, name: str) -> list[str]:
    from corral.hypervisor import get_hypervisor
    hv = get_hypervisor("fake")
    return [n for n in NODES if rpc.on(n, hv.get_instance_info, name) is not None]
