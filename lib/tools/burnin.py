"""tools/burnin: exercise a cluster the way Ganeti's burnin does, and say what passed.

Usage: ``burnin -o OS -t TEMPLATE [--disk-size SIZE[,SIZE...]] [options] INSTANCE...``

The instances are created (spread over the nodes: primary node i, secondary
node i+1), then every operation that is enabled and that the disk template
supports runs on all of them, in Ganeti's order: replace-disks on the same
nodes (secondary, then primary; mirror: the secondary only), onto a new
secondary, grow-disk, failover, migrate (and its cleanup), move, reinstall,
reboot (each type), add/remove a disk, add/remove a NIC, activate/deactivate
disks, stop/start, rename; finally the instances are removed unless ``-K``.
Each operation is one job per instance: submitted all at once with ``-p``,
else one after the other (rename is always serial: there is one spare name).

A step that the template cannot do is reported as SKIP with the reason (as
Ganeti logs it); a step the cluster cannot do fails: its job's error is shown
and the run stops (the removal still runs).  The summary lists every step
with its result and wall time; the exit code is 0 only if no step failed.
"""

import argparse
import dataclasses
import sys
import time
from typing import Callable

from corral import constants, errors, luxi, opcodes
from corral.client import base, errfmt, params

GROWABLE = frozenset([constants.DT_FILE, constants.DT_SHARED_FILE, constants.DT_PLAIN,
                      constants.DT_DRBD8, constants.DT_RBD, constants.DT_EXT,
                      constants.DT_MIRROR])
MIRRORED = constants.DTS_INT_MIRROR | constants.DTS_EXT_MIRROR
MOVABLE = frozenset([constants.DT_PLAIN, constants.DT_FILE])
SUPPORTED = frozenset([constants.DT_DISKLESS, constants.DT_FILE, constants.DT_SHARED_FILE,
                       constants.DT_PLAIN, constants.DT_DRBD8, constants.DT_RBD,
                       constants.DT_EXT, constants.DT_BLOCK, constants.DT_MIRROR])
# The replace-disks step's modes.  A mirror disk cannot be rebuilt on its primary
# (-p): the primary's image is the only current copy and the running QEMU holds it
# (doc/design-mirror.md), so only the secondary is rebuilt in place.
REPLACE1_MODES = {constants.DT_MIRROR: ("replace_on_secondary",)}
DEFAULT_REPLACE1_MODES = ("replace_on_secondary", "replace_on_primary")
MIGRATING_HVS = frozenset(["fake", "kvm", "xen-pvm", "xen-hvm"])
PASS, FAIL, SKIP, NOT_RUN = "PASS", "FAIL", "SKIP", "NOT RUN"


@dataclasses.dataclass
class StepResult:
    name: str
    status: str
    seconds: float | None = None
    detail: str = ""


class StepFailed(Exception):
    """A step's job(s) failed; the message names the instance(s) and the error."""


class Burnin:
    """One burnin run against the cluster the luxi client talks to."""

    def __init__(self, opts: argparse.Namespace, client: luxi.Client,
                 out: Callable[[str], None] = print) -> None:
        self.opts = opts
        self.client = client
        self.out = out
        self.instances: list[str] = list(opts.instances)
        self.results: list[StepResult] = []
        self.created: list[str] = []

    # ---- output ---------------------------------------------------------------------------

    def log(self, msg: str, indent: int = 0) -> None:
        prefix = {0: "- ", 1: "  * ", 2: "    "}.get(indent, "      ")
        self.out(prefix + msg)

    # ---- jobs -------------------------------------------------------------------------------

    def _feedback(self, line: str) -> None:
        if self.opts.verbose:
            self.out("      " + line)

    def execute(self, jobs: list[tuple[str, list[opcodes.OpCode]]],
                parallel: bool | None = None) -> None:
        """Run one job per instance; StepFailed naming every failed instance."""
        parallel = self.opts.parallel if parallel is None else parallel
        failures = []
        if parallel:
            ids = [(name, base.submit_opcodes(ops, None, self.client)) for name, ops in jobs]
            for name, job_id in ids:
                err = self._wait(job_id)
                if err:
                    failures.append("%s (job %d): %s" % (name, job_id, err))
        else:
            for name, ops in jobs:
                job_id = base.submit_opcodes(ops, None, self.client)
                err = self._wait(job_id)
                if err:
                    failures.append("%s (job %d): %s" % (name, job_id, err))
                    break
        if failures:
            raise StepFailed("; ".join(failures))

    def _wait(self, job_id: int) -> str | None:
        """The job's error message, or None if it succeeded (its log shown with -v)."""
        status, opstatus, opresult = base.wait_job(
            job_id, self.client, lambda e: self._feedback(base.format_log_message(e)))
        if status == constants.JOB_STATUS_SUCCESS:
            return None
        for st, res in zip(opstatus, opresult):
            if st == constants.OP_STATUS_ERROR:
                err = errors.decode_exception(res) if isinstance(res, list) and \
                    len(res) == 2 and isinstance(res[0], str) else errors.OpExecError(str(res))
                return " ".join(errfmt.format_error(err)[1].split())
        return "job ended in status %s" % status

    # ---- cluster facts --------------------------------------------------------------------

    def prepare(self) -> None:
        """Nodes, hypervisor and NIC mode; OpPrereqError for what cannot work at all."""
        opts = self.opts
        if opts.disk_template not in SUPPORTED:
            raise errors.OpPrereqError("Unknown or unsupported disk template '%s' (burnin"
                                       " supports: %s)" % (opts.disk_template,
                                                           ", ".join(sorted(SUPPORTED))),
                                       errors.ECODE_INVAL)
        info = self.client.query_cluster_info()
        enabled = info["enabled_disk_templates"]
        if opts.disk_template not in enabled:
            raise errors.OpPrereqError("Disk template '%s' is not enabled in the cluster"
                                       " (enabled: %s)" % (opts.disk_template,
                                                           ", ".join(enabled)),
                                       errors.ECODE_STATE)
        self.hypervisor = opts.hypervisor or info["default_hypervisor"]
        self.nic_mode = (info.get("nicparams") or {}).get("default", {}).get("mode", "bridged")
        rows = self.client.query("node", ["name", "offline", "drained", "vm_capable"], [])
        usable = [r[0][1] for r in rows["data"]
                  if not r[1][1] and not r[2][1] and r[3][1]]
        if opts.nodes:
            wanted = opts.nodes.split(",")
            unknown = [n for n in wanted if n not in usable]
            if unknown:
                raise errors.OpPrereqError("Node(s) %s unknown or not usable (usable: %s)" %
                                           (", ".join(unknown), ", ".join(usable)),
                                           errors.ECODE_NOENT)
            usable = wanted
        if not usable:
            raise errors.OpPrereqError("No usable nodes in the cluster", errors.ECODE_STATE)
        if opts.disk_template in constants.DTS_INT_MIRROR and len(usable) < 2:
            raise errors.OpPrereqError("Disk template %s needs at least two nodes" %
                                       opts.disk_template, errors.ECODE_STATE)
        self.nodes = usable

    def placement(self) -> dict[str, list[str]]:
        """{instance: [primary, secondaries...]} as the cluster has them now."""
        rows = self.client.query("instance", ["name", "pnode", "snodes"], [])
        wanted = set(self.instances) | ({self.opts.rename} if self.opts.rename else set())
        return {r[0][1]: [r[1][1]] + list(r[2][1] or []) for r in rows["data"]
                if r[0][1] in wanted}

    def other_node(self, used: list[str], offset: int = 0) -> str | None:
        free = [n for n in self.nodes if n not in used]
        return free[offset % len(free)] if free else None

    # ---- opcode builders ----------------------------------------------------------------------

    def op_stop(self, name: str) -> opcodes.OpCode:
        return opcodes.OpInstanceShutdown(instance_name=name, timeout=self.opts.shutdown_timeout)

    def op_start(self, name: str) -> opcodes.OpCode:
        return opcodes.OpInstanceStartup(instance_name=name, force=False)

    def op_rename(self, old: str, new: str) -> opcodes.OpCode:
        return opcodes.OpInstanceRename(instance_name=old, new_name=new,
                                        name_check=self.opts.name_check,
                                        ip_check=self.opts.ip_check)

    # ---- steps ------------------------------------------------------------------------------

    def create(self) -> None:
        self.log("Creating instances")
        opts = self.opts
        jobs = []
        for idx, name in enumerate(self.instances):
            pnode = self.nodes[idx % len(self.nodes)]
            snode = self.nodes[(idx + 1) % len(self.nodes)] \
                if opts.disk_template in constants.DTS_INT_MIRROR else None
            self.log("instance %s" % name, 1)
            self.log("on %s" % (", ".join(n for n in (pnode, snode) if n)), 2)
            disks = [] if opts.disk_template == constants.DT_DISKLESS else \
                [dict({"size": size, "mode": "rw"}, **self.extra_disk_params)
                 for size in self.disk_size]
            op = opcodes.OpInstanceCreate(
                instance_name=name, mode="create", disks=disks, nics=[{}],
                disk_template=opts.disk_template, os_type=opts.os, pnode=pnode, snode=snode,
                iallocator=opts.iallocator, start=True, ip_check=opts.ip_check,
                name_check=opts.name_check, wait_for_sync=True, hypervisor=opts.hypervisor,
                hvparams=self.hvparams, beparams=self.beparams)
            if opts.iallocator:
                op.pnode = op.snode = None
            jobs.append((name, [op]))
        self.created = []
        try:
            self.execute(jobs)
        finally:
            existing = self.placement()
            self.created = [n for n in self.instances if n in existing]

    def replace1(self) -> None:
        self.log("Replacing disks on the same nodes")
        modes = REPLACE1_MODES.get(self.opts.disk_template, DEFAULT_REPLACE1_MODES)
        jobs = []
        for name in self.instances:
            ops = [opcodes.OpInstanceReplaceDisks(instance_name=name, mode=mode,
                                                  disks=list(range(len(self.disk_size))),
                                                  early_release=self.opts.early_release)
                   for mode in modes]
            self.log("instance %s" % name, 1)
            jobs.append((name, ops))
        self.execute(jobs)

    def replace2(self) -> None:
        self.log("Changing the secondary node")
        where = self.placement()
        jobs = []
        for idx, name in enumerate(self.instances):
            target = None if self.opts.iallocator else self.other_node(where[name], idx)
            self.log("instance %s, to %s" % (name, target or "the iallocator's choice"), 1)
            jobs.append((name, [opcodes.OpInstanceReplaceDisks(
                instance_name=name, mode="replace_new_secondary", remote_node=target,
                iallocator=self.opts.iallocator, disks=[],
                early_release=self.opts.early_release)]))
        self.execute(jobs)

    def grow(self) -> None:
        self.log("Growing disks")
        jobs = []
        for name in self.instances:
            ops = [opcodes.OpInstanceGrowDisk(instance_name=name, disk=idx, amount=growth,
                                              wait_for_sync=True)
                   for idx, growth in enumerate(self.disk_growth) if growth > 0]
            self.log("instance %s: +%s MiB" % (name, "/".join(str(g) for g in
                                                              self.disk_growth)), 1)
            jobs.append((name, ops))
        self.execute(jobs)

    def _target(self, where: dict[str, list[str]], name: str, idx: int) -> str | None:
        """Externally mirrored templates need a target node (or the iallocator)."""
        if self.opts.disk_template in constants.DTS_INT_MIRROR or self.opts.iallocator:
            return None
        return self.other_node(where[name][:1], idx)

    def failover(self) -> None:
        self.log("Failing over instances")
        where = self.placement()
        jobs = []
        for idx, name in enumerate(self.instances):
            target = self._target(where, name, idx)
            self.log("instance %s%s" % (name, " to %s" % target if target else ""), 1)
            jobs.append((name, [opcodes.OpInstanceFailover(
                instance_name=name, ignore_consistency=False, target_node=target,
                iallocator=self.opts.iallocator,
                shutdown_timeout=self.opts.shutdown_timeout)]))
        self.execute(jobs)

    def migrate(self) -> None:
        self.log("Migrating instances")
        where = self.placement()
        jobs = []
        for idx, name in enumerate(self.instances):
            target = self._target(where, name, idx)
            self.log("instance %s%s (then a cleanup run)" %
                     (name, " to %s" % target if target else ""), 1)
            ops = [opcodes.OpInstanceMigrate(instance_name=name, mode=None, cleanup=cleanup,
                                             target_node=target if not cleanup else None,
                                             iallocator=self.opts.iallocator if not cleanup
                                             else None)
                   for cleanup in (False, True)]
            jobs.append((name, ops))
        self.execute(jobs)

    def move(self) -> None:
        self.log("Moving instances")
        where = self.placement()
        jobs = []
        for idx, name in enumerate(self.instances):
            target = self.other_node(where[name], idx)
            self.log("instance %s to %s" % (name, target), 1)
            jobs.append((name, [opcodes.OpInstanceMove(
                instance_name=name, target_node=target,
                shutdown_timeout=self.opts.shutdown_timeout)]))
        self.execute(jobs)

    def reinstall(self) -> None:
        self.log("Reinstalling instances")
        jobs = []
        for name in self.instances:
            self.log("instance %s: reinstall without and with the OS given" % name, 1)
            jobs.append((name, [self.op_stop(name),
                                opcodes.OpInstanceReinstall(instance_name=name),
                                opcodes.OpInstanceReinstall(instance_name=name,
                                                            os_type=self.opts.os),
                                self.op_start(name)]))
        self.execute(jobs)

    def reboot(self) -> None:
        self.log("Rebooting instances")
        jobs = []
        for name in self.instances:
            self.log("instance %s: reboot types %s" % (name, ",".join(self.reboot_types)), 1)
            jobs.append((name, [opcodes.OpInstanceReboot(
                instance_name=name, reboot_type=kind, ignore_secondaries=False,
                shutdown_timeout=self.opts.shutdown_timeout) for kind in self.reboot_types]))
        self.execute(jobs)

    def add_remove_disks(self) -> None:
        self.log("Adding and removing disks")
        jobs = []
        for name in self.instances:
            self.log("instance %s: add a disk, stop, remove the last disk, start" % name, 1)
            add = opcodes.OpInstanceSetParams(
                instance_name=name,
                disks=[["add", dict({"size": self.disk_size[0]}, **self.extra_disk_params)]])
            remove = opcodes.OpInstanceSetParams(instance_name=name, disks=[["remove", {}]])
            jobs.append((name, [add, self.op_stop(name), remove, self.op_start(name)]))
        self.execute(jobs)

    def add_remove_nics(self) -> None:
        self.log("Adding and removing NICs")
        jobs = []
        for name in self.instances:
            self.log("instance %s: add a NIC, remove the last NIC" % name, 1)
            jobs.append((name, [opcodes.OpInstanceSetParams(instance_name=name,
                                                            nics=[["add", {}]]),
                                opcodes.OpInstanceSetParams(instance_name=name,
                                                            nics=[["remove", {}]])]))
        self.execute(jobs)

    def activate_disks(self) -> None:
        self.log("Activating and deactivating disks")
        jobs = []
        for name in self.instances:
            self.log("instance %s: activate while running and stopped, deactivate" % name, 1)
            activate = opcodes.OpInstanceActivateDisks(instance_name=name)
            jobs.append((name, [self.op_start(name), activate, self.op_stop(name),
                                opcodes.OpInstanceActivateDisks(instance_name=name),
                                opcodes.OpInstanceDeactivateDisks(instance_name=name),
                                self.op_start(name)]))
        self.execute(jobs)

    def stop_start(self) -> None:
        self.log("Stopping and starting instances")
        jobs = [(name, [self.op_stop(name), self.op_start(name)]) for name in self.instances]
        for name in self.instances:
            self.log("instance %s" % name, 1)
        self.execute(jobs)

    def rename(self) -> None:
        spare = self.opts.rename
        self.log("Renaming instances (through %s)" % spare)
        for name in self.instances:
            self.log("instance %s -> %s -> %s" % (name, spare, name), 1)
            self.execute([(name, [self.op_stop(name), self.op_rename(name, spare),
                                  self.op_start(spare)])], parallel=False)
            self.execute([(name, [self.op_stop(spare), self.op_rename(spare, name),
                                  self.op_start(name)])], parallel=False)

    def remove(self) -> None:
        self.log("Removing instances")
        jobs = []
        for name in self.created:
            self.log("instance %s" % name, 1)
            jobs.append((name, [opcodes.OpInstanceRemove(
                instance_name=name, ignore_failures=True,
                shutdown_timeout=self.opts.shutdown_timeout)]))
        self.execute(jobs)


# ---- the plan -------------------------------------------------------------------------------

def _steps(b: Burnin) -> list[tuple[str, str | None, str | None, Callable[[], None]]]:
    """(name, disabling option or None, reason it does not apply or None, method).

    The order and the applicability rules are Ganeti burnin's.
    """
    t = b.opts.disk_template
    nnodes = len(b.nodes)
    return [
        ("replace-disks", "--no-replace1",
         None if t in constants.DTS_INT_MIRROR else
         "disk template %s has no internal mirror" % t, b.replace1),
        ("replace-secondary", "--no-replace2",
         ("disk template %s has no internal mirror" % t if t not in constants.DTS_INT_MIRROR
          else "needs at least 3 nodes" if nnodes < 3 else None), b.replace2),
        ("grow-disk", None,
         ("disk template %s cannot grow" % t if t not in GROWABLE
          else "--disk-growth is 0" if not any(g > 0 for g in b.disk_growth) else None),
         b.grow),
        ("failover", "--no-failover",
         None if t in MIRRORED else "disk template %s is not mirrored" % t, b.failover),
        ("migrate", "--no-migrate",
         ("disk template %s does not support it" % t if t not in MIRRORED else
          "hypervisor %s does not support it" % b.hypervisor
          if b.hypervisor not in MIGRATING_HVS else None), b.migrate),
        ("move", "--no-move",
         ("disk template %s cannot be moved" % t if t not in MOVABLE else
          "needs at least 2 nodes" if nnodes < 2 else None), b.move),
        ("reinstall", "--no-reinstall", None, b.reinstall),
        ("reboot", "--no-reboot", None if b.reboot_types else "no --reboot-types", b.reboot),
        ("add-remove-disks", "--no-add-disks",
         "diskless instances" if t == constants.DT_DISKLESS else None, b.add_remove_disks),
        ("add-remove-nics", "--no-add-nics",
         None if b.nic_mode == constants.NIC_MODE_BRIDGED else
         "the cluster's NIC mode is %s, not bridged" % b.nic_mode, b.add_remove_nics),
        ("activate-disks", "--no-activate-disks", None, b.activate_disks),
        ("stop-start", "--no-startstop", None, b.stop_start),
        ("rename", None, None if b.opts.rename else "no --rename NAME given", b.rename),
    ]


_DISABLED = {"--no-replace1": "do_replace1", "--no-replace2": "do_replace2",
             "--no-failover": "do_failover", "--no-migrate": "do_migrate",
             "--no-move": "do_move", "--no-reinstall": "do_reinstall",
             "--no-reboot": "do_reboot", "--no-add-disks": "do_addremove_disks",
             "--no-add-nics": "do_addremove_nics", "--no-activate-disks": "do_activate_disks",
             "--no-startstop": "do_startstop"}


def _timed(b: Burnin, name: str, method: Callable[[], None]) -> bool:
    start = time.monotonic()
    try:
        method()
    except (StepFailed, errors.GenericError) as err:
        msg = str(err) if isinstance(err, StepFailed) else errfmt.format_error(err)[1]
        msg = " ".join(msg.split())
        b.results.append(StepResult(name, FAIL, time.monotonic() - start, msg))
        b.out("  FAILED: %s" % msg)
        return False
    b.results.append(StepResult(name, PASS, time.monotonic() - start))
    return True


def run(b: Burnin) -> int:
    """Create, run every applicable enabled step until one fails, remove; the exit code."""
    b.prepare()
    ok = _timed(b, "create", b.create)
    try:
        for name, option, reason, method in _steps(b):
            if not ok:
                b.results.append(StepResult(name, NOT_RUN, None, "an earlier step failed"))
            elif option and not getattr(b.opts, _DISABLED[option]):
                b.results.append(StepResult(name, SKIP, None, "disabled by %s" % option))
            elif reason:
                b.log("Skipping %s (%s)" % (name, reason))
                b.results.append(StepResult(name, SKIP, None, reason))
            else:
                ok = _timed(b, name, method)
    finally:
        if b.opts.keep_instances:
            b.results.append(StepResult("remove", SKIP, None, "-K: instances kept"))
        elif b.created:
            _timed(b, "remove", b.remove)
    print_summary(b)
    return 0 if all(r.status in (PASS, SKIP) for r in b.results) else 1


def print_summary(b: Burnin) -> None:
    b.out("")
    b.out("Burnin summary (%d instances, template %s, %s):" %
          (len(b.instances), b.opts.disk_template,
           "parallel" if b.opts.parallel else "serial"))
    for r in b.results:
        secs = "%8.1fs" % r.seconds if r.seconds is not None else " " * 9
        b.out("  %-18s %-7s %s  %s" % (r.name, r.status, secs, r.detail))
    failed = [r.name for r in b.results if r.status in (FAIL, NOT_RUN)]
    passed = [r.name for r in b.results if r.status == PASS]
    total = sum(r.seconds or 0 for r in b.results)
    if failed:
        b.out("Result: FAILED (%s); %d step(s) passed, %.1fs" % (", ".join(failed),
                                                                len(passed), total))
    else:
        b.out("Result: all %d step(s) passed, %.1fs" % (len(passed), total))


# ---- command line ---------------------------------------------------------------------------

def _sizes(value: str, option: str) -> list[int]:
    try:
        return [params.parse_unit(v) for v in value.split(",")]
    except errors.GenericError as err:
        raise errors.OpPrereqError("Invalid %s '%s': %s" % (option, value, err),
                                   errors.ECODE_INVAL) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="burnin", usage="%(prog)s -o OS -t TEMPLATE [--disk-size SIZE] [options]"
        " INSTANCE...", description="Create instances and run every operation their disk"
        " template supports on them; print a summary; exit 0 only if every step passed.")
    p.add_argument("instances", nargs="+", metavar="INSTANCE", help="Instance names to use")
    p.add_argument("-o", "--os", required=True, help="OS to install on the instances")
    p.add_argument("-t", "--disk-template", default=constants.DT_DRBD8,
                   help="Disk template (default drbd): diskless, file, sharedfile, plain,"
                        " drbd, mirror, rbd, ext, blockdev")
    p.add_argument("--disk-size", default="128m",
                   help="Disk sizes, comma separated (default 128m): one disk each")
    p.add_argument("--disk-growth", default="128m",
                   help="Growth of each disk, comma separated (default 128m; 0 disables)")
    p.add_argument("--disk-param", dest="disk_params", default=None,
                   help="Extra disk parameters key=val,... (e.g. provider=NAME for ext)")
    p.add_argument("--mem-size", type=int, default=None, help="Memory of the instances (MiB)")
    p.add_argument("--maxmem-size", type=int, default=128, help="Maximum memory (MiB)")
    p.add_argument("--minmem-size", type=int, default=128, help="Minimum memory (MiB)")
    p.add_argument("--vcpu-count", type=int, default=1, help="Virtual CPUs")
    p.add_argument("-n", "--nodes", default=None, help="Nodes to use, comma separated")
    p.add_argument("-I", "--iallocator", default=None, help="Let this allocator place them")
    p.add_argument("-H", "--hypervisor", default=None,
                   help="Hypervisor and parameters: HV[:key=val,...]")
    p.add_argument("-p", "--parallel", action="store_true", default=False,
                   help="Run each operation on all instances at once")
    p.add_argument("-K", "--keep-instances", action="store_true", default=False,
                   help="Do not remove the instances at the end")
    p.add_argument("--rename", default=None, metavar="NAME",
                   help="Rename each instance to this spare name and back")
    p.add_argument("--reboot-types", default="soft,hard,full",
                   help="Reboot types to test (default soft,hard,full)")
    p.add_argument("--shutdown-timeout", type=int, default=120,
                   help="Seconds to wait for instances to shut down")
    p.add_argument("--no-name-check", dest="name_check", action="store_false", default=True,
                   help="Skip the instance name check (names need not resolve)")
    p.add_argument("--no-ip-check", dest="ip_check", action="store_false", default=True,
                   help="Skip the check that the instance IPs are free")
    p.add_argument("--early-release", action="store_true", default=False,
                   help="Release locks early during disk replacement")
    p.add_argument("-v", "--verbose", action="store_true", default=False,
                   help="Show the log of every job")
    for option, dest in sorted(_DISABLED.items()):
        p.add_argument(option, dest=dest, action="store_false", default=True,
                       help="Skip the %s step" % option[5:])
    p.add_argument("--no-importexport", action="store_true", default=False,
                   help="Accepted for compatibility (burnin does not test export/import)")
    p.add_argument("--no-confd", action="store_true", default=False,
                   help="Accepted for compatibility (Corral has no confd)")
    return p


def configure(b: Burnin) -> None:
    """Derived settings: sizes, growth, reboot types, hv/be/disk parameters."""
    opts = b.opts
    b.disk_size = _sizes(opts.disk_size, "--disk-size")
    growth = _sizes(opts.disk_growth, "--disk-growth")
    if len(growth) == 1 and len(b.disk_size) > 1:
        growth = growth * len(b.disk_size)
    if len(growth) != len(b.disk_size):
        raise errors.OpPrereqError("Wrong disk sizes/growth combination: %d sizes, %d growths"
                                   % (len(b.disk_size), len(growth)), errors.ECODE_INVAL)
    b.disk_growth = growth
    b.reboot_types = [t for t in opts.reboot_types.split(",") if t]
    bad = [t for t in b.reboot_types if t not in ("soft", "hard", "full")]
    if bad:
        raise errors.OpPrereqError("Invalid reboot type(s): %s" % ", ".join(bad),
                                   errors.ECODE_INVAL)
    if opts.rename and opts.rename in opts.instances:
        raise errors.OpPrereqError("The spare --rename name must not be one of the instances",
                                   errors.ECODE_INVAL)
    b.hvparams = {}
    if opts.hypervisor:
        opts.hypervisor, b.hvparams = params.parse_hv_option(opts.hypervisor)
    maxmem = opts.mem_size or opts.maxmem_size
    minmem = opts.mem_size or min(opts.minmem_size, maxmem)
    b.beparams = {"maxmem": maxmem, "minmem": minmem, "vcpus": opts.vcpu_count}
    b.extra_disk_params = params.parse_key_value_list(opts.disk_params, "--disk-param") \
        if opts.disk_params else {}


def main(argv: list[str] | None = None, client: luxi.Client | None = None) -> int:
    opts = build_parser().parse_args(argv)
    if len(set(opts.instances)) != len(opts.instances):
        sys.stderr.write("burnin: instance names must be unique\n")
        return 1
    try:
        b = Burnin(opts, client or luxi.Client())
        configure(b)
        return run(b)
    except errors.GenericError as err:
        sys.stderr.write("burnin: %s\n" % errfmt.format_error(err)[1])
        return 1


def bench_burnin(quick: bool, out: Callable[[str, float, str], None]) -> None:
    """tools/bench ``burnin_fake_20_s``: wall time of a parallel burnin of 20 instances
    (file template, every step it supports) on a throwaway 3-node fake vcluster."""
    from corral.tools import bench
    names = ["burn%02d" % i for i in range(20)]
    lines: list[str] = []
    with bench.multi_node_cluster(3) as (client, _root):
        opts = build_parser().parse_args(
            ["-o", "busybox", "-t", constants.DT_FILE, "-p", "--no-name-check", "--no-ip-check",
             "--disk-size", "16m", "--disk-growth", "8m", "--rename", "burnspare"] + names)
        b = Burnin(opts, client, out=lines.append)
        configure(b)
        start = time.perf_counter()
        code = run(b)
        elapsed = time.perf_counter() - start
    if code != 0:
        raise RuntimeError("burnin failed: %s" % " | ".join(lines[-20:]))
    out("burnin_fake_20_s", elapsed, "s")
