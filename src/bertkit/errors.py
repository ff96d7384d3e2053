"""The one exception type for mistakes a user can fix (bad file, key, row or label)."""


class UserError(Exception):
    """A problem with the user's input; the CLI prints its message and exits non-zero, without a traceback."""
