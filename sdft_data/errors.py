"""One-line error messages: what every command prints instead of a traceback."""

from __future__ import annotations


def first_line(e: BaseException | str) -> str:
    """The first non-blank line of an exception's message, or its class name when it has none.

    Library errors (datasets, transformers, the Hub client) often run over many
    lines; a user error here is one line.
    """
    text = str(e).strip()
    return text.splitlines()[0].strip() if text else type(e).__name__
