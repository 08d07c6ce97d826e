"""Type checks for opcode parameters.

Each check is a callable returning True/False with a human description, so a
validation error can say what was wrong and what is allowed.  The same checks
serve the CLI, RAPI and the master (one table: opcodes.py).
"""

import re
from typing import Any, Callable, Iterable


class Check:
    def __init__(self, fn: Callable[[Any], bool], desc: str) -> None:
        self._fn = fn
        self.desc = desc

    def __call__(self, value: Any) -> bool:
        try:
            return bool(self._fn(value))
        except (TypeError, ValueError):
            return False

    def __repr__(self) -> str:
        return "<Check %s>" % self.desc


TAny = Check(lambda v: True, "any value")
TNone = Check(lambda v: v is None, "None")
TBool = Check(lambda v: isinstance(v, bool), "a boolean")
TInt = Check(lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer")
TFloat = Check(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number")
TString = Check(lambda v: isinstance(v, str), "a string")
TNonEmptyString = Check(lambda v: isinstance(v, str) and v != "", "a non-empty string")
TList = Check(lambda v: isinstance(v, list), "a list")
TDict = Check(lambda v: isinstance(v, dict), "a dictionary")
TNonNegativeInt = Check(lambda v: TInt(v) and v >= 0, "a non-negative integer")
TPositiveInt = Check(lambda v: TInt(v) and v > 0, "a positive integer")
TPositiveFloat = Check(lambda v: TFloat(v) and v > 0, "a positive number")
TNonNegativeFloat = Check(lambda v: TFloat(v) and v >= 0, "a non-negative number")


def TMaybe(check: Check) -> Check:
    return Check(lambda v: v is None or check(v), "None or " + check.desc)


def TOr(*checks: Check) -> Check:
    return Check(lambda v: any(c(v) for c in checks), " or ".join(c.desc for c in checks))


def TElemOf(values: Iterable) -> Check:
    allowed = sorted(values, key=str)
    return Check(lambda v: v in allowed, "one of %s" % ", ".join(repr(a) for a in allowed))


def TListOf(check: Check) -> Check:
    return Check(lambda v: isinstance(v, list) and all(check(x) for x in v),
                 "a list of " + check.desc)


def TDictOf(key_check: Check, value_check: Check) -> Check:
    return Check(lambda v: isinstance(v, dict) and all(key_check(k) and value_check(x)
                                                       for k, x in v.items()),
                 "a dictionary of %s to %s" % (key_check.desc, value_check.desc))


def TRegex(pattern: str, desc: str) -> Check:
    rx = re.compile(pattern)
    return Check(lambda v: isinstance(v, str) and rx.match(v) is not None, desc)


def TTupleOf(*checks: Check) -> Check:
    return Check(lambda v: isinstance(v, (list, tuple)) and len(v) == len(checks)
                 and all(c(x) for c, x in zip(checks, v)),
                 "a list of (%s)" % ", ".join(c.desc for c in checks))


# Names: host names, instance names, OS names, tags
HOSTNAME_RE = r"^(?=.{1,255}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*\.?$"
THostname = TRegex(HOSTNAME_RE, "a valid host name (letters, digits, '-' and '.')")
TJobId = Check(lambda v: (TInt(v) and v >= 0) or (isinstance(v, str) and v.isdigit()),
               "a job id (non-negative integer)")
TRelativeJobId = Check(lambda v: TInt(v) and v < 0, "a relative job id (negative integer)")
TJobDependency = Check(
    lambda v: isinstance(v, list) and len(v) == 2 and (TJobId(v[0]) or TRelativeJobId(v[0]))
    and isinstance(v[1], list) and all(isinstance(s, str) for s in v[1]),
    "a job dependency [job_id, [statuses]]")
TReasonEntry = Check(lambda v: isinstance(v, list) and len(v) == 3 and isinstance(v[0], str)
                     and isinstance(v[1], str) and TInt(v[2]),
                     "a reason entry [source, text, timestamp_ns]")
