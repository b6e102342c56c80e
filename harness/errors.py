"""The one exception type for bad user input (unknown names, malformed suites, bad options).

The CLI turns it into a one-line message and exit status 2; everything else is a bug or a failure
of a measured backend and is recorded as an ``error`` row instead.
"""


class UsageError(ValueError):
    """Bad input from the user; the message names the bad value and what was expected."""


class Unsupported(Exception):
    """A backend cannot run this case by design (a forced kernel path that does not fit the shape,
    say); the case is recorded as ``skipped`` with the message, not as an ``error``."""
