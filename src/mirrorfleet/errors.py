"""The exceptions every part of mirrorfleet shares.

MirrorfleetError is the one base (as dnspython's DNSException is), so a caller can
catch anything mirrorfleet raises in one clause. UserError is the subclass the CLI
turns into a one-line message instead of a traceback: a problem the user can fix.
The other subclasses (a bad signature, a failed sync, an unreachable mirror) are
caught and judged where they happen; they are not messages for the user as they are.
"""


class MirrorfleetError(Exception):
    """Anything mirrorfleet raises on purpose."""


class UserError(MirrorfleetError):
    """A problem the user can fix; the message says how."""


def missing_extra(exc: ModuleNotFoundError, extra: str) -> UserError:
    """One line for a command that needs an optional dependency which is not installed."""
    return UserError(f"{exc.name} is not installed: pip install 'mirrorfleet[{extra}]'")
