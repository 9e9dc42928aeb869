"""Leaving TLS again: FTP's CCC command (RFC 4217 section 6) with ``unwrap()``.

An FTP client protects its control connection with ``AUTH TLS`` (a STARTTLS), logs
in over TLS, then sends ``CCC`` ("clear command channel"): after the server's
``200`` both sides close TLS with close_notify and the same TCP connection goes on
in plaintext. (NAT devices that must read the PORT commands are why it exists.)

On the client, :meth:`anyiotls.TLSStream.unwrap` does the closing handshake and
returns ``(transport, leftover)``: *leftover* is plaintext the server sent right
after its close_notify that arrived along with it. It is the start of the
plaintext stream: read it before anything the transport delivers next.

The server here is Python's own :class:`ssl.SSLSocket` (blocking, in a thread),
whose :meth:`~ssl.SSLSocket.unwrap` is the peer's half of the downgrade. Run
``python examples/ftp_ccc_downgrade.py`` (needs ``pip install
'anyiotls[examples]'`` for a test certificate) to see the transcript.
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any

import anyio
from anyio.abc import ByteStream

from anyiotls import starttls

#: Seconds the demo server waits for anything before giving up.
SERVER_TIMEOUT = 10.0


class FTPReplyError(Exception):
    """The server answered with an unexpected reply."""


class ControlChannel:
    """FTP replies and commands over one stream (plaintext or TLS)."""

    def __init__(self, stream: ByteStream, leftover: bytes = b"") -> None:
        self.stream = stream
        self.buffer = starttls.LineBuffer(max_line_length=1024)
        self.buffer.feed(leftover)

    async def _line(self) -> str:
        while (line := self.buffer.next_line()) is None:
            self.buffer.feed(await self.stream.receive())
        return line.decode("utf-8", "replace")

    async def reply(self, expected: str) -> str:
        """Read one reply (multi-line ones too); it must start with *expected*."""
        line = await self._line()
        text = line
        if line[3:4] == "-":  # multi-line: up to "NNN " with the same code
            while not (line := await self._line()).startswith(text[:3] + " "):
                text += "\n" + line
            text += "\n" + line
        if not text.startswith(expected):
            raise FTPReplyError(f"expected {expected}, got {text!r}")
        return text

    async def command(self, command: str, expected: str) -> str:
        await self.stream.send(command.encode() + b"\r\n")
        return await self.reply(expected)


async def ccc_session(
    stream: ByteStream,
    *,
    hostname: str,
    ssl_context: ssl.SSLContext | None = None,
    user: str = "anonymous",
    password: str = "guest",
) -> list[str]:
    """AUTH TLS, log in over TLS, CCC back to plaintext, PWD and QUIT in plaintext.

    Returns the replies, in order. The upgrade uses :func:`anyiotls.starttls.upgrade`
    (bytes after the ``234`` go-ahead are refused); the downgrade uses
    :meth:`anyiotls.TLSStream.unwrap`.
    """
    transcript: list[str] = []
    control = ControlChannel(stream)
    transcript.append(await control.reply("220"))
    transcript.append(await control.command("AUTH TLS", "234"))
    tls = await starttls.upgrade(
        stream, control.buffer, hostname=hostname, ssl_context=ssl_context
    )

    control = ControlChannel(tls)
    transcript.append(await control.command(f"USER {user}", "331"))
    transcript.append(await control.command(f"PASS {password}", "230"))
    transcript.append(await control.command("PBSZ 0", "200"))
    transcript.append(await control.command("CCC", "200"))
    if control.buffer.buffer:
        raise FTPReplyError("the server sent more than its reply to CCC")

    # Both sides now exchange close_notify; what follows is plaintext.
    transport, leftover = await tls.unwrap()
    assert isinstance(transport, ByteStream)
    control = ControlChannel(transport, leftover)
    transcript.append(await control.command("PWD", "257"))
    transcript.append(await control.command("QUIT", "221"))
    await transport.aclose()
    return transcript


# -- the peer: a blocking server on ssl.SSLSocket ---------------------------------


class _Lines:
    """Reads CRLF lines from a blocking socket without reading past them."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def line(self) -> str:
        while b"\r\n" not in self.buffer:
            data = self.sock.recv(4096)
            if not data:
                raise EOFError("the client closed the connection")
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line.decode()


def serve_ccc(
    listener: socket.socket, context: ssl.SSLContext, *, after_ccc: bytes = b""
) -> list[str]:
    """Serve one FTP control connection with AUTH TLS and CCC; return the commands.

    *after_ccc*: plaintext to send right after the TLS layer is closed, unasked
    (tests use it to check that nothing is lost at the switch).
    """
    listener.settimeout(SERVER_TIMEOUT)
    conn, _ = listener.accept()
    conn.settimeout(SERVER_TIMEOUT)
    commands: list[str] = []
    sock: Any = conn
    try:
        sock.sendall(b"220 anyiotls CCC demo\r\n")
        lines = _Lines(sock)
        replies = {
            "USER": "331 Password required",
            "PASS": "230 Logged in",
            "PBSZ": "200 PBSZ=0",
            "PWD": '257 "/" is the current directory',
        }
        while True:
            command = lines.line()
            commands.append(command)
            verb = command.partition(" ")[0].upper()
            if verb == "AUTH" and not isinstance(sock, ssl.SSLSocket):
                sock.sendall(b"234 AUTH TLS successful\r\n")
                assert not lines.buffer, "client pipelined after AUTH TLS"
                sock = context.wrap_socket(sock, server_side=True)
                lines = _Lines(sock)
            elif verb == "CCC" and isinstance(sock, ssl.SSLSocket):
                sock.sendall(b"200 CCC OK, back to plaintext\r\n")
                sock = sock.unwrap()  # close_notify both ways; the socket remains
                sock.sendall(after_ccc)
                lines = _Lines(sock)
            elif verb == "QUIT":
                sock.sendall(b"221 Goodbye\r\n")
                return commands
            elif verb in replies:
                sock.sendall(replies[verb].encode() + b"\r\n")
            else:
                sock.sendall(b"502 Command not implemented\r\n")
    finally:
        sock.close()


def _import_trustme() -> Any:
    """trustme, which makes the throw-away certificates (the ``examples`` extra)."""
    try:
        import trustme
    except ImportError:
        raise SystemExit(
            "this needs trustme (throw-away certificates): "
            "pip install 'anyiotls[examples]'"
        ) from None
    return trustme


def main() -> None:
    trustme = _import_trustme()

    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("ftp.example").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = threading.Thread(target=serve_ccc, args=(listener, server_context))
    server.start()

    async def client() -> list[str]:
        stream = await anyio.connect_tcp("127.0.0.1", port)
        with anyio.fail_after(SERVER_TIMEOUT):
            return await ccc_session(
                stream, hostname="ftp.example", ssl_context=client_context
            )

    try:
        for reply in anyio.run(client):
            print(reply)
    finally:
        server.join()
        listener.close()


if __name__ == "__main__":
    main()
