"""Exit codes of the ``anyiotls`` command, and the one exception that carries them.

Every failure the command line expects ends as a :class:`CLIError`: one line on
standard error, no traceback, and the exit code that names the kind of failure.
``docs/cli.md`` documents the same table.
"""

from __future__ import annotations

__all__ = ("CLIError", "ExitCode", "find_cli_error", "leaves")

import enum


class ExitCode(enum.IntEnum):
    """The exit status of ``anyiotls``; each kind of failure has its own."""

    #: everything worked
    OK = 0
    #: an unexpected failure (a demo step failed, the connection broke mid-session)
    ERROR = 1
    #: bad command line: unknown option, bad ``HOST:PORT``, conflicting options
    USAGE = 2
    #: a certificate, key or CA file is unreadable, malformed or does not match
    BAD_FILE = 3
    #: an optional dependency is missing (``cryptography``, or ``trio`` for
    #: ``--backend trio``)
    MISSING_DEPENDENCY = 4
    #: could not connect: refused, unreachable, unknown host, timed out; or
    #: ``serve`` could not listen on the address
    CONNECT = 5
    #: the TLS handshake failed (including "the peer does not speak TLS")
    HANDSHAKE = 6
    #: the peer's certificate failed verification
    VERIFY = 7
    #: the server did not offer STARTTLS, or refused it
    STARTTLS = 8
    #: interrupted by Ctrl-C (``connect``; ``serve`` treats Ctrl-C as a clean stop)
    INTERRUPTED = 130


class CLIError(Exception):
    """An expected failure: *message* is printed as one line, *code* is the status."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or ``[exc]``.

    AnyIO 4 task groups wrap whatever a task raised in an exception group.
    """
    inner = getattr(exc, "exceptions", None)
    if isinstance(inner, tuple):
        return [leaf for member in inner for leaf in leaves(member)]
    return [exc]


def find_cli_error(exc: BaseException) -> CLIError | None:
    """The first :class:`CLIError` in *exc* or the groups it is made of."""
    for leaf in leaves(exc):
        if isinstance(leaf, CLIError):
            return leaf
    return None
