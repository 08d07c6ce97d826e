"""Logical units turning the master IP on and off on the master node (gnt-cluster
activate-master-ip / deactivate-master-ip).  The IP moves with the master role in
master failover (corral.masterfailover), which does not go through these LUs."""

from typing import Callable

from corral import errors
from corral.cmdlib.base import NoHooksLU


def master_ip_args(cfg) -> dict:
    cluster = cfg.get_cluster_info()
    return {"ip": cluster.master_ip or "", "netmask": int(cluster.master_netmask),
            "netdev": cluster.master_netdev or ""}


class _MasterIpLU(NoHooksLU):
    PROCEDURE = ""
    VERB = ""

    def check_prereq(self) -> None:
        args = master_ip_args(self.cfg)
        if not args["netdev"] or not args["ip"]:
            raise errors.OpPrereqError("The cluster has no master netdev or master IP"
                                       " (gnt-cluster modify --master-netdev)",
                                       errors.ECODE_STATE)
        self.args = args

    def exec(self, feedback_fn: Callable[[str], None]) -> None:
        master = self.cfg.get_master_node_name()
        self.rpc.call_one(self.PROCEDURE, master, self.args).raise_if_failed(
            "Could not %s the master IP" % self.VERB)


class LUClusterActivateMasterIp(_MasterIpLU):
    PROCEDURE = "master_ip_up"
    VERB = "activate"


class LUClusterDeactivateMasterIp(_MasterIpLU):
    PROCEDURE = "master_ip_down"
    VERB = "deactivate"
