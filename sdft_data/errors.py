"""One-line error messages: what every command prints instead of a traceback; SIGTERM handled like Ctrl-C."""

from __future__ import annotations

import contextlib
import errno
import signal
import threading


def first_line(e: BaseException | str) -> str:
    """The first non-blank line of an exception's message, or its class name when it has none.

    Library errors (datasets, transformers, the Hub client) often run over many
    lines; a user error here is one line.
    """
    text = str(e).strip()
    return text.splitlines()[0].strip() if text else type(e).__name__


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's or a shell's `kill`), raised where Ctrl-C raises KeyboardInterrupt.

    A subclass, so that every `finally` and every handler that saves finished
    work on Ctrl-C does the same on SIGTERM.
    """


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises Terminated in the main thread instead of killing the process outright.

    Long runs use it so that a SIGTERM flushes the rows already finished, as Ctrl-C does. Nothing
    changes outside the main thread (Python delivers signals there only) or when the program
    has a SIGTERM handler of its own.
    """
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


# errno values, and the words libraries use when they drop the errno (Polars, pyarrow), for the OS
# failures a command explains in one line.
_DISK_FULL = {errno.ENOSPC: "No space left on device", getattr(errno, "EDQUOT", -1): "Disk quota exceeded"}
_READ_ONLY = {errno.EROFS: "Read-only file system"}
_DENIED = {errno.EACCES: "Permission denied", errno.EPERM: "Operation not permitted"}


def os_failure(e: BaseException) -> tuple[str, str | None] | None:
    """("disk full" | "read-only" | "denied", the file or None) when e's chain holds such an OS failure, else None.

    Looks through causes and contexts: a library often re-raises an OSError as its own error, and
    Polars and pyarrow raise an OSError whose errno is unset, with the words in the message.
    """
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        for kind, table in (("disk full", _DISK_FULL), ("read-only", _READ_ONLY), ("denied", _DENIED)):
            if isinstance(e, OSError) and e.errno in table:
                return kind, e.filename
            text = str(e)
            words = next((w for w in table.values() if w in text), None)
            if words:
                # Polars: "Read-only file system (os error 30): /path"
                tail = text.split("):", 1)[1].strip() if "(os error" in text and "):" in text else None
                return kind, tail or None
        e = e.__cause__ or e.__context__
    return None


def os_failure_line(kind: str, filename: str | None) -> str:
    """The one line a command prints for an os_failure()."""
    where = f" writing {filename}" if filename else ""
    if kind == "disk full":
        return (f"disk full{where} (No space left on device): free space on that disk and run the same command "
                "again; nothing already saved is lost (files are written whole or not at all)")
    if kind == "read-only":
        return (f"read-only file system{where}: nothing was changed there; write to a writable folder (another "
                "--out), or copy the folder to a writable disk and run the command on the copy")
    return (f"permission denied{where}: nothing was changed there; write to a folder you may write to, or ask "
            "its owner")
