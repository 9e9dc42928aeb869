"""Fake mail servers (honest and hostile) and a line client for after the upgrade."""

from __future__ import annotations

import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.buffered import BufferedByteReceiveStream

from anyiotls import TLSStream
from anyiotls.starttls import IMAPResponse, LineBuffer, SMTPReply
from anyiotls.starttls._lines import IMAPResponseParser, SMTPReplyParser
from anyiotls.starttls._upgrade import face_io

#: Seconds any single wait in a fake server or a test may take.
TIMEOUT = 10


class ServerPeer:
    """The server's end of one connection, read through a buffered reader."""

    def __init__(self, stream: ByteStream) -> None:
        self.stream: ByteStream = stream
        self.reader = BufferedByteReceiveStream(stream)

    async def line(self) -> str:
        data = await self.reader.receive_until(b"\r\n", 65536)
        return data.decode()

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def receive(self) -> bytes:
        """Some raw bytes (buffered ones first)."""
        return await self.reader.receive()

    async def rest(self) -> bytes:
        """Everything the client sends until it closes (the connection)."""
        data = bytearray()
        try:
            while True:
                data += await self.reader.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return bytes(data)

    async def starttls(self, context: ssl.SSLContext) -> None:
        # Our client never pipelines after STARTTLS: nothing may be buffered here.
        assert self.reader.buffer == b"", self.reader.buffer
        self.stream = await TLSStream.wrap(
            self.stream, server_side=True, ssl_context=context
        )
        self.reader = BufferedByteReceiveStream(self.stream)


@dataclass
class OneConnectionServer:
    port: int
    #: set when the handler finished (normally or not)
    done: anyio.Event = field(default_factory=anyio.Event)
    #: what the handler raised, if anything
    error: BaseException | None = None


@asynccontextmanager
async def serve_one(
    handler: Callable[[ServerPeer], Awaitable[None]],
) -> AsyncIterator[OneConnectionServer]:
    """Accept one connection on 127.0.0.1 and run *handler* on it.

    On leaving, waits (bounded) for the handler to finish and re-raises what it
    raised, so a failed assertion in the server fails the test.
    """
    multi = await anyio.create_tcp_listener(local_host="127.0.0.1", family=2)
    listener = multi.listeners[0]
    server = OneConnectionServer(port=listener.extra(SocketAttribute.local_port))

    async def run() -> None:
        stream = await listener.accept()  # type: ignore[attr-defined]
        peer = ServerPeer(stream)
        try:
            with anyio.fail_after(TIMEOUT):
                await handler(peer)
        except BaseException as exc:
            server.error = exc
            raise
        finally:
            await anyio.aclose_forcefully(peer.stream)
            server.done.set()

    body_error: BaseException | None = None
    async with multi, anyio.create_task_group() as tg:
        tg.start_soon(run)
        try:
            yield server
        except BaseException as exc:
            # Raised below, outside the task group, so that it is not wrapped in
            # an exception group (tests match on it).
            body_error = exc
        with anyio.fail_after(TIMEOUT):
            await server.done.wait()
    if body_error is not None:
        raise body_error


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll *predicate* until it is true (bound the wait with ``fail_after``)."""
    while True:
        if predicate():
            return
        await anyio.sleep(0.05)


async def assert_closed(stream: Any) -> None:
    """Assert that a plaintext stream of either face was closed (by the code tested)."""
    if hasattr(stream, "send_all"):  # Trio closes its socket at once
        assert stream.socket.fileno() == -1, "the connection was left open"
    else:
        # asyncio closes the socket a moment later, but the stream knows already.
        # (anyio 4.0 does not mark a stream closed whose peer had already closed
        # it: then sending finds it broken instead.)
        with pytest.raises((anyio.ClosedResourceError, anyio.BrokenResourceError)):
            await stream.send(b"x")


async def run_in_thread(function: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking *function* in a thread; return its result (bound with fail_after).

    Not ``anyio.to_thread``: with the lowest supported anyio and trio, that warns.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = function(*args)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    await wait_until(lambda: not thread.is_alive())
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


# -- talking over the upgraded stream (either face) ------------------------------------


class LineClient:
    """Commands and replies over a stream of either face, after the upgrade."""

    def __init__(self, stream: Any, leftover: bytes = b"") -> None:
        self.stream = stream
        self.buffer = LineBuffer()
        self.buffer.feed(leftover)
        self._io = face_io(stream)

    async def _read(self, step: Callable[[LineBuffer], Any]) -> Any:
        while (result := step(self.buffer)) is None:
            data = await self._io.receive()
            assert data, "the server closed the connection"
            self.buffer.feed(data)
        return result

    async def send(self, line: str | bytes) -> None:
        data = line.encode() if isinstance(line, str) else line
        await self._io.send(data + b"\r\n")

    async def smtp(self, line: str | bytes | None) -> SMTPReply:
        if line is not None:
            await self.send(line)
        reply: SMTPReply = await self._read(SMTPReplyParser().next_reply)
        return reply

    async def line(self, line: str | None = None) -> str:
        if line is not None:
            await self.send(line)
        data: bytes = await self._read(LineBuffer.next_line)
        return data.decode()

    async def imap(self, tag: str, command: str) -> list[IMAPResponse]:
        """Send a tagged command; return its responses, the tagged one last."""
        await self.send(f"{tag} {command}")
        responses: list[IMAPResponse] = []
        parser = IMAPResponseParser()
        while True:
            response = await self._read(parser.next_response)
            responses.append(response)
            if response.tag == tag:
                return responses
