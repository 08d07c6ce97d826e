"""Man pages for every gnt-* command and corral-* daemon, made from their own tables.

The synopsis, subcommands and options come from the same Command tables and
argparse parsers the programs use, so a man page cannot drift from ``--help``;
the prose (what the tool is for, files, environment) is written here.
``tools/mkman`` rewrites man/; a test checks the committed pages are current.
"""

import argparse
import importlib
import os
from typing import Any

MAN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "man")

COMMON_FILES = """.TP
.I $CORRAL_ROOT/var/lib/corral/config.data
The cluster configuration (master and master candidates).
.TP
.I $CORRAL_ROOT/var/lib/corral/queue/
The job queue: one file per job, archive/ for archived jobs.
.TP
.I $CORRAL_ROOT/var/run/corral/socket/master.sock
The master daemon's socket, used by every gnt-* command.
.TP
.I $CORRAL_ROOT/var/log/corral/
Daemon logs, commands.log, and os/ for OS installation logs.
"""

ENVIRONMENT = """.TP
.B CORRAL_ROOT
Prefix of every path Corral uses (configuration, queue, certificates, sockets,
logs); default
.IR / .
Several nodes or clusters can share one machine with different roots.
.TP
.B CORRAL_HOSTNAME
The name of this node, instead of the host's fully qualified name.
"""

EXIT_STATUS = """0 on success; 1 on failure (the error is printed on standard error); 2 if the
configuration is corrupt; 5 if this node is not part of a cluster; 11 if a
command needs the master and this is not it; 13 if a confirmation was declined
(gnt-node, gnt-job); 14 if a list asked for an unknown field.
"""

# tool name -> (module, section, one-line summary, description paragraphs)
TOOLS: dict[str, tuple[str, int, str, str]] = {
    "gnt-cluster": ("corral.client.gnt_cluster", 8, "Corral administration, cluster-wide",
                    "Initialises, inspects, verifies, modifies and destroys a Corral cluster. "
                    "Corral is compatible with Ganeti: the subcommands, options and output "
                    "formats are those of Ganeti's gnt-cluster, so scripts written for Ganeti "
                    "keep working. Commands that change the cluster submit a job to the master "
                    "daemon and follow it, printing its log; with --submit they print the job "
                    "ID and return at once."),
    "gnt-job": ("corral.client.gnt_job", 8, "Corral job queue administration",
                "Lists, shows, follows, cancels, reprioritises and archives jobs. Every change "
                "to a Corral cluster is a job of one or more opcodes in a persistent queue; a "
                "job is on disk before its ID is returned, and survives a crash of the master "
                "daemon."),
    "gnt-debug": ("corral.client.gnt_debug", 8, "Corral debugging and testing commands",
                  "Commands to exercise the job queue and the node daemons: delay jobs that "
                  "sleep on the master or on nodes, submission of raw opcodes from JSON files, "
                  "a job queue self-test, and the input and answers of instance allocators "
                  "(iallocator)."),
    "gnt-node": ("corral.client.gnt_node", 8, "Corral node administration",
                 "Adds nodes to the cluster (over SSH, copying the cluster certificates and "
                 "configuration), removes them, lists them with live data, and changes their "
                 "roles: master candidate, drained, offline, and the master_capable and "
                 "vm_capable flags. Offline nodes are never contacted by the master."),
    "gnt-instance": ("corral.client.gnt_instance", 8, "Corral instance administration",
                     "Creates, starts, stops, reboots, modifies, renames, reinstalls and "
                     "removes instances (virtual machines), manages their disks, gives "
                     "access to their consoles, and lists them with the fields Ganeti's "
                     "gnt-instance offers."),
    "gnt-os": ("corral.client.gnt_os", 8, "Corral OS definition administration",
               "Lists and diagnoses the OS definitions found on the nodes (along the OS "
               "search path), shows their variants, parameters and API versions, and sets "
               "cluster-wide OS parameters, hypervisor parameters, and hidden or blacklisted "
               "flags."),
    "gnt-group": ("corral.client.gnt_group", 8, "Corral node group administration",
                  "Adds, removes, renames and modifies node groups, assigns nodes to them and "
                  "lists them."),
    "gnt-backup": ("corral.client.gnt_backup", 8, "Corral instance export and import",
                   "Exports instances (their configuration in config.ini and one image per "
                   "disk, made by the OS definition's export script) to a directory "
                   "$CORRAL_ROOT/srv/ganeti/export/<instance> on a node, creates instances "
                   "from such exports, lists the exports each node holds and removes them. "
                   "The directory layout and config.ini format are Ganeti's."),
}

DAEMONS: dict[str, tuple[str, str, str]] = {
    "corral-masterd": ("corral.server.masterd", "Corral master daemon",
                       "Runs on the master node only. It owns the cluster configuration (kept "
                       "in memory, written atomically after every change and replicated to the "
                       "master candidates) and the job queue, runs jobs on a pool of worker "
                       "threads (cluster parameter max_running_jobs) and answers the gnt-* "
                       "commands and corral-rapi on a unix socket. After a crash it recovers "
                       "the queue: queued jobs run, interrupted ones end in error."),
    "corral-noded": ("corral.server.noded", "Corral node daemon",
                     "Runs on every node as root and does what the master asks: starting and "
                     "stopping instances, creating disks, running OS definition scripts and "
                     "hooks, reporting node resources. It accepts only TLS clients whose "
                     "certificate is signed by the cluster's CA (made at cluster init)."),
    "corral-daemon-util": ("corral.tools.daemon_util", "start, stop and check Corral daemons",
                           "Starts or stops the daemons this node should run (corral-noded "
                           "everywhere; corral-masterd and corral-rapi on the master) and "
                           "checks that they run. Each daemon's extra options can be given in "
                           "the environment variable CORRAL_<NAME>_ARGS."),
    "corral-rapi": ("corral.server.rapi", "Corral remote API daemon",
                    "Serves Ganeti's RAPI version 2 over HTTPS (port 5080 by default) on the "
                    "master node: every request becomes a query or a job through the master "
                    "daemon. Users and their rights (read, write) are in "
                    "$CORRAL_ROOT/var/lib/corral/rapi/users, re-read when it changes or on "
                    "SIGHUP; passwords may be plain or {HA1} hashed."),
    "corral-watcher": ("corral.server.watcher", "Corral cluster watcher",
                       "Run from cron every few minutes (or with --interval) on every node. "
                       "Unless paused with gnt-cluster watcher pause, it starts the Corral "
                       "daemons that should run on the node and runs the scripts in "
                       "$CORRAL_ROOT/etc/corral/hooks/watcher/. On the master it also makes "
                       "sure the master and RAPI daemons answer, archives finished jobs "
                       "older than --job-age, restarts instances that should run but do not "
                       "(at most 5 attempts each), re-activates disks after a node reboot "
                       "and runs verify-disks. Its state is in "
                       "$CORRAL_ROOT/var/lib/corral/watcher.*.data, its log in "
                       "$CORRAL_ROOT/var/log/corral/watcher.log."),
    "corral-prepare-node-join": ("corral.backend.cluster_membership",
                                 "prepare a machine to join a Corral cluster",
                                 "Run by the master over SSH during gnt-node add, not by "
                                 "hand: receives the cluster certificates and configuration on "
                                 "standard input, installs them under $CORRAL_ROOT and starts "
                                 "the node daemon."),
}


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace("-", "\\-")


def _opt_line(o: Any) -> tuple[str, str]:
    flags = ", ".join(o.flags)
    kw = o.kwargs
    if kw.get("action") not in ("store_true", "store_false", "count") and \
            kw.get("help") is not argparse.SUPPRESS:
        metavar = kw.get("metavar") or (kw.get("dest") or o.flags[-1].lstrip("-")).upper()
        if kw.get("choices"):
            metavar = "{" + ",".join(str(c) for c in kw["choices"]) + "}"
        flags += " " + metavar
    return flags, kw.get("help") or ""


def tool_page(name: str) -> str:
    module, section, summary, description = TOOLS[name]
    mod = importlib.import_module(module)
    lines = [".TH %s %d \"\" \"Corral\" \"Corral manual\"" % (name.upper(), section),
             ".SH NAME", "%s \\- %s" % (_esc(name), _esc(summary)),
             ".SH SYNOPSIS", ".B %s" % _esc(name), ".I command", "[options] [arguments]",
             ".SH DESCRIPTION", _esc(description), ".SH COMMANDS"]
    for cmd_name, cmd in sorted(mod.COMMANDS.items()):
        lines.append(".SS %s" % _esc(cmd_name))
        lines.append(".B %s %s" % (_esc(name), _esc(cmd_name)))
        lines.append("[options] %s" % _esc(cmd.args))
        lines.append(".PP")
        lines.append(_esc(cmd.help) + ".")
        if cmd.aliases:
            lines.append("Alias: %s." % _esc(", ".join(cmd.aliases)))
        for o in cmd.options:
            flags, help_text = _opt_line(o)
            if help_text is argparse.SUPPRESS:
                continue
            lines.extend([".TP", ".B %s" % _esc(flags), _esc(help_text)])
    lines += [".SH EXIT STATUS", _esc(EXIT_STATUS), ".SH ENVIRONMENT", ENVIRONMENT.strip(),
              ".SH FILES", COMMON_FILES.strip(), ".SH SEE ALSO",
              ", ".join("\\fB%s\\fR(%d)" % (_esc(t), TOOLS[t][1]) for t in sorted(TOOLS)
                        if t != name)]
    return "\n".join(lines) + "\n"


def daemon_page(name: str) -> str:
    module, summary, description = DAEMONS[name]
    mod = importlib.import_module(module)
    parser = mod.build_parser() if hasattr(mod, "build_parser") else None
    lines = [".TH %s 8 \"\" \"Corral\" \"Corral manual\"" % name.upper(), ".SH NAME",
             "%s \\- %s" % (_esc(name), _esc(summary)), ".SH SYNOPSIS", ".B %s" % _esc(name),
             "[options]", ".SH DESCRIPTION", _esc(description)]
    if parser is not None:
        lines.append(".SH OPTIONS")
        for action in parser._actions:
            if not action.option_strings or action.help is argparse.SUPPRESS:
                continue
            flags = ", ".join(action.option_strings)
            if action.nargs != 0:
                flags += " " + (action.metavar or action.dest.upper())
            lines.extend([".TP", ".B %s" % _esc(flags), _esc(action.help or "")])
    lines += [".SH ENVIRONMENT", ENVIRONMENT.strip(), ".SH FILES", COMMON_FILES.strip(),
              ".SH SEE ALSO", "\\fBgnt\\-cluster\\fR(8), \\fBcorral\\-daemon\\-util\\fR(8)"]
    return "\n".join(lines) + "\n"


def all_pages() -> dict[str, str]:
    pages = {"%s.%d" % (name, TOOLS[name][1]): tool_page(name) for name in TOOLS}
    pages.update({"%s.8" % name: daemon_page(name) for name in DAEMONS})
    return pages


def main() -> int:
    os.makedirs(MAN_DIR, exist_ok=True)
    for filename, text in sorted(all_pages().items()):
        with open(os.path.join(MAN_DIR, filename), "w") as fh:
            fh.write(text)
        print(os.path.join("man", filename))
    return 0
