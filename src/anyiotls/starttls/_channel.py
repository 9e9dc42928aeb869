"""A line channel over a stream of either face: what the dialogues are written in."""

from __future__ import annotations

__all__ = ("Channel", "check_hostname")

from collections.abc import Callable
from typing import Any, TypeVar

from ._exceptions import ConnectionClosedError, MalformedReplyError
from ._lines import LineBuffer
from ._upgrade import face_io

_T = TypeVar("_T")


def check_hostname(hostname: object) -> None:
    """The helpers need the server's name: the certificate is checked against it."""
    if not isinstance(hostname, str) or not hostname:
        raise ValueError(
            f"hostname must be the server's name (a non-empty str), not {hostname!r}"
        )


class Channel:
    """Commands out, parsed replies in, over one stream (plaintext or TLS).

    A new channel is made after the upgrade: nothing read before TLS survives it.
    """

    def __init__(self, stream: Any, *, protocol: str, max_line_length: int) -> None:
        self.stream = stream
        self.protocol = protocol
        self.buffer = LineBuffer(max_line_length)
        self._io = face_io(stream)

    async def send_line(self, line: str, *, strict: bool = True) -> None:
        """Send one command line.

        With *strict*, refuse to send while unread bytes are buffered: in a
        lock-step dialogue (SMTP without pipelining, POP3) the server must not
        speak before it is asked, and bytes it did send early would be taken as the
        answer to this command.
        """
        if strict and len(self.buffer):
            raise MalformedReplyError(
                f"the {self.protocol} server sent data nobody asked for: "
                f"{self.buffer.buffer[:80]!r}"
            )
        await self._io.send(line.encode("ascii") + b"\r\n")

    async def read(self, step: Callable[[LineBuffer], _T | None], what: str) -> _T:
        """Receive until *step* returns something from the buffer; return that.

        :raises ConnectionClosedError: the stream ended first
        """
        while (result := step(self.buffer)) is None:
            data = await self._io.receive()
            if not data:
                raise ConnectionClosedError(
                    f"the {self.protocol} server closed the connection while we "
                    f"waited for {what}"
                )
            self.buffer.feed(data)
        return result
