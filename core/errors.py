"""The two kinds of error tinyexit raises.

`UserError` is for user mistakes and unsupported inputs: its message names the
offending file or value and the next step, and the CLI prints it as one line
without a traceback.  `InternalError` marks a broken invariant (a bug).
"""


class UserError(Exception):
    """A problem the user can fix; the message says what and how."""


class InternalError(AssertionError):
    """A broken internal invariant; report it as a bug."""
