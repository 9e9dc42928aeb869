"""The exceptions of :mod:`anyiotls.starttls`: every failure of a dialogue is one."""

from __future__ import annotations

__all__ = (
    "ConnectionClosedError",
    "InjectedDataError",
    "MalformedReplyError",
    "NotOfferedError",
    "RefusedError",
    "ReplyError",
    "StartTLSError",
)

from typing import Any


class StartTLSError(Exception):
    """Base class: the upgrade to TLS did not happen; the connection was closed.

    Never continue in plaintext after one of these: that is exactly what an attacker
    who strips or answers the STARTTLS command wants.
    """


class NotOfferedError(StartTLSError):
    """The server did not offer STARTTLS (or ``STLS``) in its capabilities.

    :var capabilities: what the server advertised, in plaintext (untrusted)
    """

    def __init__(self, message: str, capabilities: Any = None) -> None:
        super().__init__(message)
        self.capabilities = capabilities


class ReplyError(StartTLSError):
    """The server answered a command (or greeted) with an error or unexpected reply.

    :var command: the command that was answered (``None`` for the greeting)
    :var reply: the parsed reply (an :class:`~anyiotls.starttls.SMTPReply`,
        :class:`~anyiotls.starttls.IMAPResponse` or :class:`str` for POP3)
    """

    def __init__(self, message: str, command: str | None, reply: Any) -> None:
        super().__init__(message)
        self.command = command
        self.reply = reply


class RefusedError(ReplyError):
    """The server answered the STARTTLS command with something other than go-ahead."""


class InjectedDataError(StartTLSError):
    """Bytes arrived after the server's go-ahead and before the TLS handshake.

    A correct server sends nothing between its go-ahead line and the TLS handshake,
    so these bytes were put there by an attacker (or a broken server) to be read as
    if they had come over TLS: STARTTLS response injection, CVE-2011-0411 class.

    :var data: the injected bytes (attacker-controlled: do not interpret them)
    """

    def __init__(self, data: bytes) -> None:
        shown = data[:60]
        more = "..." if len(data) > len(shown) else ""
        super().__init__(
            f"the server sent {len(data)} byte(s) after its STARTTLS go-ahead and "
            f"before the TLS handshake ({shown!r}{more}); refusing to continue: they "
            "would be read as if they had come over TLS (STARTTLS response injection)"
        )
        self.data = data


class MalformedReplyError(StartTLSError):
    """The server sent something that is not a reply of the protocol.

    Also raised for a line (or reply) longer than the allowed maximum, so a hostile
    server cannot make the client buffer without bound.
    """


class ConnectionClosedError(StartTLSError):
    """The connection ended (or broke) in the middle of the dialogue.

    ``__cause__`` is the transport's exception when it broke rather than ended.
    """
