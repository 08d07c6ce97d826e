"""Master side of hooks: environment, node lists, running both phases (spec/hooks.md).

The node side (running the scripts) is backend/hooks.py, reached through the
``hooks_runner`` RPC.
"""

import logging
from typing import Any, Callable

from corral import constants, errors


def _to_str(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


class HooksMaster:
    """Runs the pre and post hooks of one logical unit."""

    def __init__(self, opcode_id: str, hooks_path: str, object_type: str | None, cluster_name: str,
                 master_name: str, target: str | None,
                 build_env: Callable[[], dict[str, Any]],
                 run_rpc: Callable[[list[str], str, str, dict[str, str]], dict[str, Any]],
                 pre_nodes: list[str], post_nodes: list[str]) -> None:
        self._opcode = opcode_id
        self._path = hooks_path
        self._object_type = object_type
        self._cluster = cluster_name
        self._master = master_name
        self._target = target
        self._build_env = build_env
        self._run_rpc = run_rpc
        self.pre_nodes = pre_nodes
        self.post_nodes = post_nodes
        self._pre_env: dict[str, str] | None = None

    def _common_env(self, phase: str) -> dict[str, str]:
        env = {
            "GANETI_HOOKS_VERSION": str(constants.HOOKS_VERSION),
            "GANETI_HOOKS_PHASE": phase,
            "GANETI_HOOKS_PATH": self._path,
            "GANETI_OP_CODE": self._opcode,
            "GANETI_DATA_DIR": constants.GANETI_DATA_DIR_FOR_HOOKS,
            "GANETI_CLUSTER": self._cluster,
            "GANETI_MASTER": self._master,
        }
        if self._object_type:  # none for the master IP turnup/turndown hooks
            env["GANETI_OBJECT_TYPE"] = self._object_type
        if self._target is not None:
            env["GANETI_OP_TARGET"] = self._target
        return env

    def _lu_env(self, prefix: str) -> dict[str, str]:
        return {prefix + key: _to_str(value) for key, value in self._build_env().items()}

    def run_pre(self) -> None:
        """Run pre hooks; any failing script on a reachable node aborts (HooksAbort)."""
        self._pre_env = self._lu_env("GANETI_")
        env = dict(self._common_env(constants.HOOKS_PHASE_PRE), **self._pre_env)
        results = self._run(self.pre_nodes, constants.HOOKS_PHASE_PRE, env)
        failures = []
        for node, (ok, payload) in results.items():
            if not ok:
                logging.warning("Communication failure to node %s running pre hooks: %s",
                                node, payload)
                continue
            for script, status, output in payload:
                if status == constants.HKR_FAIL:
                    failures.append((node, script, output))
        if failures:
            raise errors.HooksAbort(failures)

    def run_post(self, feedback: Callable[[str], None]) -> None:
        """Run post hooks; failures are reported as warnings only."""
        if self._pre_env is None:
            self._pre_env = self._lu_env("GANETI_")
        env = dict(self._common_env(constants.HOOKS_PHASE_POST), **self._pre_env)
        env.update(self._lu_env("GANETI_POST_"))
        results = self._run(self.post_nodes, constants.HOOKS_PHASE_POST, env)
        for node, (ok, payload) in results.items():
            if not ok:
                feedback("Communication failure in hooks execution on node %s: %s" % (node, payload))
                continue
            for script, status, output in payload:
                if status == constants.HKR_FAIL:
                    feedback("Script %s failed on node %s, output: %s" % (script, node, output))

    def _run(self, nodes: list[str], phase: str, env: dict[str, str]) -> dict[str, Any]:
        if not nodes:
            return {}
        return self._run_rpc(nodes, self._path, phase, env)
