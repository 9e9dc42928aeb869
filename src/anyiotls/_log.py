"""One-line descriptions of handshake failures, for the listener's log.

A server meets failing handshakes all day (scanners, plaintext clients, clients
that give up): the log says each in one line with its cause, and keeps the
traceback for ``DEBUG``.
"""

from __future__ import annotations

__all__ = ("describe_handshake_error",)

import ssl

from anyio import BrokenResourceError, EndOfStream


def describe_handshake_error(exc: BaseException) -> str:
    """The cause of a failed handshake, in one line."""
    cause = exc.__cause__ if isinstance(exc, BrokenResourceError) else exc
    if cause is None or isinstance(cause, EndOfStream):
        return "the client closed the connection"
    if isinstance(cause, ssl.SSLEOFError):
        return "the client closed the connection (without close_notify)"
    if isinstance(cause, TimeoutError) and not str(cause):
        return "TimeoutError: the client did not complete the handshake in time"
    text = " ".join(str(cause).split())  # never more than one line
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__
