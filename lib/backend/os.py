"""Node side of OS definitions: what this node has, and parameter validation."""

from corral import osdef


def os_diagnose() -> list[dict]:
    """Every OS definition along this node's search path (valid or not), as dicts."""
    return [d.to_dict() for d in osdef.diagnose_all()]


def os_get(name: str) -> dict:
    """The OS ``name`` (a ``+variant`` suffix is ignored) as found here; never raises.

    The result's ``valid``/``error`` say whether it can be used.
    """
    return osdef.find_os(name).to_dict()


def os_validate(name: str, osparams: dict, debug: int = 0) -> None:
    """Run the OS ``verify parameters`` check (API 20) for ``NAME[+VARIANT]``.

    OpPrereqError for parameters not in parameters.list, OpExecError when the
    script refuses them or the OS is not valid here.
    """
    osdef.run_verify(name, osparams, debug)
