"""Errors shown to users as `spvit: error: ...` with exit status 2."""


class UsageError(Exception):
    """Bad user input (arguments, files, data); the message names the problem and the fix."""
