"""An SMTP server that offers STARTTLS (RFC 3207), on anyiotls.

The server-side half of the buffered-plaintext rule: bytes that a client sent
right after its ``STARTTLS`` command, before our ``220`` go-ahead reached it, may
legitimately be its TLS ClientHello. They are fed into TLS, never executed as SMTP
commands; so an attacker's ``STARTTLS\\r\\nRSET\\r\\nMAIL FROM:...`` in one packet
(the CVE-2011-0411 command injection) just fails the TLS handshake.

After the upgrade everything learned before it is forgotten (RFC 3207 section
4.2): the client must say EHLO again, and STARTTLS is no longer offered. By
default mail is only accepted over TLS (``530 Must issue a STARTTLS command
first``).

Run it (a certificate and key in one PEM file; ``anyiotls serve --certs-dir
certs`` makes test ones, see docs/getting-started.md)::

    python examples/smtp_starttls_server.py --cert certs/server.pem --port 8025

and try it with ``openssl s_client -starttls smtp -connect 127.0.0.1:8025`` or
Python's :mod:`smtplib`. Messages are printed. It is an example: one message at a
time in memory, no relaying, no authentication.
"""

from __future__ import annotations

import argparse
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import ByteStream
from anyio.lowlevel import checkpoint
from anyio.streams.buffered import BufferedByteReceiveStream

from anyiotls import TLSAttribute, TLSStream

logger = logging.getLogger("smtp_starttls_server")

#: RFC 5321 section 4.5.3.1.4: a command line is at most 512 octets with its CRLF;
#: a text line of a message at most 1000.
MAX_COMMAND_LINE = 512
MAX_TEXT_LINE = 1000


@dataclass
class Message:
    """A message as received: envelope, content (dot-unstuffed) and how it came."""

    mail_from: str
    rcpt_to: list[str]
    content: bytes
    #: the TLS version it came over (``None``: plaintext)
    tls_version: str | None


class PrefixedStream(ByteStream):
    """A byte stream that first delivers *prefix*, then what *stream* receives.

    This is how bytes already read past the ``STARTTLS`` line are handed to TLS.
    """

    def __init__(self, stream: ByteStream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self._prefix:
            await checkpoint()
            data, self._prefix = self._prefix[:max_bytes], self._prefix[max_bytes:]
            return data
        return await self._stream.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        await self._stream.send(item)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._stream.extra_attributes


class _Quit(Exception):
    """The session is over."""


class SMTPServer:
    """Serves SMTP with STARTTLS on each connection given to :meth:`handle`.

    :param ssl_context: the server's context (its certificate)
    :param on_message: called with each accepted :class:`Message`
    :param hostname: the name the server greets with
    :param require_tls: refuse ``MAIL`` before STARTTLS (``530``)
    :param max_message_size: the largest message accepted, in bytes
    """

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        on_message: Callable[[Message], Awaitable[None]],
        *,
        hostname: str = "mx.example",
        require_tls: bool = True,
        max_message_size: int = 1_000_000,
        handshake_timeout: float = 30,
    ) -> None:
        self.ssl_context = ssl_context
        self.on_message = on_message
        self.hostname = hostname
        self.require_tls = require_tls
        self.max_message_size = max_message_size
        self.handshake_timeout = handshake_timeout

    async def serve(self, host: str = "127.0.0.1", port: int = 8025) -> None:
        """Listen on *host*:*port* and serve every connection, forever."""
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        await listener.serve(self.handle)

    async def handle(self, transport: ByteStream) -> None:
        """Run one SMTP session on *transport* (a connected plaintext stream)."""
        session = _Session(self, transport)
        try:
            await session.run()
        except _Quit:
            pass
        except Exception as exc:
            # The client went away, or its TLS handshake failed (or timed out):
            # one bad connection never stops the server.
            logger.info("session ended: %r", exc)
        finally:
            # Over TLS, a clean close sends close_notify (a client that vanished
            # cannot make this wait for long); then the socket is closed anyway.
            with anyio.move_on_after(5):
                await session.stream.aclose()
            await anyio.aclose_forcefully(session.stream)


class _Session:
    def __init__(self, server: SMTPServer, transport: ByteStream) -> None:
        self.server = server
        self.stream: ByteStream = transport
        self.reader = BufferedByteReceiveStream(transport)
        self.tls_version: str | None = None
        self._reset_all()

    def _reset_all(self) -> None:
        """Forget everything: at the start and after STARTTLS (RFC 3207 4.2)."""
        self.helo: str | None = None
        self._reset_transaction()

    def _reset_transaction(self) -> None:
        self.mail_from: str | None = None
        self.rcpt_to: list[str] = []

    async def reply(self, text: str) -> None:
        await self.stream.send(text.encode() + b"\r\n")

    async def read_line(self, limit: int, error: str) -> bytes:
        """A line without its CRLF; a longer line ends the session with *error*."""
        try:
            return await self.reader.receive_until(b"\r\n", limit)
        except anyio.DelimiterNotFound:
            await self.reply(error)
            raise _Quit from None

    async def run(self) -> None:
        await self.reply(f"220 {self.server.hostname} ESMTP ready")
        while True:
            line = await self.read_line(MAX_COMMAND_LINE, "500 5.5.2 Line too long")
            verb, _, argument = line.decode("utf-8", "replace").partition(" ")
            handler = getattr(self, f"smtp_{verb.upper()}", None)
            if handler is None:
                await self.reply("502 5.5.2 Command not recognized")
            else:
                await handler(argument.strip())

    async def smtp_EHLO(self, argument: str) -> None:
        if not argument:
            await self.reply("501 5.5.4 EHLO needs a domain")
            return
        self._reset_all()
        self.helo = argument
        lines = [self.server.hostname, "PIPELINING", "8BITMIME"]
        lines.append(f"SIZE {self.server.max_message_size}")
        if self.tls_version is None:
            lines.append("STARTTLS")
        lines.append("ENHANCEDSTATUSCODES")
        await self.stream.send(
            b"".join(
                f"250{'-' if i < len(lines) - 1 else ' '}{line}\r\n".encode()
                for i, line in enumerate(lines)
            )
        )

    async def smtp_HELO(self, argument: str) -> None:
        self._reset_all()
        self.helo = argument or "unknown"
        await self.reply(f"250 {self.server.hostname}")

    async def smtp_STARTTLS(self, argument: str) -> None:
        if argument:
            await self.reply("501 5.5.4 Syntax error (no parameters allowed)")
            return
        if self.tls_version is not None:
            await self.reply("503 5.5.1 TLS already active")
            return
        await self.reply("220 2.0.0 Ready to start TLS")
        # Whatever the client sent after its STARTTLS line belongs to TLS: hand it
        # to the handshake (it is the ClientHello of a client that did not wait),
        # never to the command loop.
        pipelined = self.reader.buffer
        with anyio.fail_after(self.server.handshake_timeout):
            tls = await TLSStream.wrap(
                PrefixedStream(self.stream, pipelined),
                server_side=True,
                ssl_context=self.server.ssl_context,
            )
        self.stream = tls
        self.reader = BufferedByteReceiveStream(tls)
        self.tls_version = tls.extra(TLSAttribute.tls_version)
        self._reset_all()

    async def smtp_MAIL(self, argument: str) -> None:
        if self.helo is None:
            await self.reply("503 5.5.1 Say EHLO first")
        elif self.server.require_tls and self.tls_version is None:
            await self.reply("530 5.7.0 Must issue a STARTTLS command first")
        elif self.mail_from is not None:
            await self.reply("503 5.5.1 Nested MAIL command")
        elif not argument.upper().startswith("FROM:"):
            await self.reply("501 5.5.4 Syntax: MAIL FROM:<address>")
        else:
            self.mail_from = _address(argument[5:])
            await self.reply("250 2.1.0 OK")

    async def smtp_RCPT(self, argument: str) -> None:
        if self.mail_from is None:
            await self.reply("503 5.5.1 Need MAIL before RCPT")
        elif not argument.upper().startswith("TO:"):
            await self.reply("501 5.5.4 Syntax: RCPT TO:<address>")
        else:
            self.rcpt_to.append(_address(argument[3:]))
            await self.reply("250 2.1.5 OK")

    async def smtp_DATA(self, argument: str) -> None:
        if not self.rcpt_to or self.mail_from is None:
            await self.reply("503 5.5.1 Need RCPT before DATA")
            return
        await self.reply("354 End data with <CR><LF>.<CR><LF>")
        content = bytearray()
        too_big = False
        while True:
            line = await self.read_line(MAX_TEXT_LINE, "500 5.5.2 Line too long")
            if line == b".":
                break
            if line.startswith(b"."):
                line = line[1:]
            if len(content) + len(line) + 2 > self.server.max_message_size:
                too_big = True
            if not too_big:
                content += line + b"\r\n"
        if too_big:
            await self.reply("552 5.3.4 Message too big")
        else:
            message = Message(
                self.mail_from, self.rcpt_to, bytes(content), self.tls_version
            )
            await self.server.on_message(message)
            await self.reply("250 2.0.0 OK: queued")
        self._reset_transaction()

    async def smtp_RSET(self, argument: str) -> None:
        self._reset_transaction()
        await self.reply("250 2.0.0 OK")

    async def smtp_NOOP(self, argument: str) -> None:
        await self.reply("250 2.0.0 OK")

    async def smtp_QUIT(self, argument: str) -> None:
        await self.reply("221 2.0.0 Bye")
        raise _Quit


def _address(text: str) -> str:
    address = text.strip().partition(" ")[0]
    if address.startswith("<") and address.endswith(">"):
        return address[1:-1]
    return address


async def _print_message(message: Message) -> None:
    print(
        f"From {message.mail_from} to {', '.join(message.rcpt_to)} over "
        f"{message.tls_version or 'plaintext'}:"
    )
    print(message.content.decode("utf-8", "replace"))


def main() -> None:
    parser = argparse.ArgumentParser(description="An SMTP server with STARTTLS")
    parser.add_argument("--cert", required=True, help="PEM file: key and chain")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert)
    server = SMTPServer(context, _print_message)
    anyio.run(server.serve, args.host, args.port)


if __name__ == "__main__":
    main()
