"""The one exception type for mistakes a user can fix (bad file, key, row or label)."""


def one_line(text: str) -> str:
    """`text` with line breaks and other control characters written as escapes: a message quoting a key,
    a value or a file name from the user's input stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class UserError(Exception):
    """A problem with the user's input; the CLI prints its message (always one line) and exits 2, without a
    traceback."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(str(message)))
