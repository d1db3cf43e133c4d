"""The one exception type the CLI turns into a one-line message instead of a traceback."""


class MirrorfleetError(Exception):
    """A problem the user can fix; the message says how."""
