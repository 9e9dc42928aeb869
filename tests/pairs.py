"""Connected pairs of anyiotls streams for the tests (the ConnectionPair of h11)."""

from __future__ import annotations

import math
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import ByteStream
from anyio.streams.stapled import StapledObjectStream

import anyiotls
from anyiotls import TLSStream
from anyiotls._engine import TLSEngine

#: What ``tls_pair`` can run over: memory streams, AnyIO's TCP socket streams, and
#: anyiotls's own TCP transport (``anyiotls.connect_tcp(..., tls=False)`` and
#: ``create_tcp_listener(tls=False)``). Semantics tests parametrize over these.
TRANSPORTS = ["memory", "tcp", "fast"]

#: The two TCP transports, for tests that need a real socket.
TCP_TRANSPORTS = ["tcp", "fast"]

_open_memory_streams: list[Any] = []


def memory_transports(
    max_buffer: float = math.inf, reverse_buffer: float = math.inf
) -> tuple[StapledObjectStream[bytes], StapledObjectStream[bytes]]:
    """Two connected in-memory transports (each item is one "segment").

    *max_buffer* items fit from the first to the second (0: a send waits for the
    peer's receive), *reverse_buffer* the other way. Closed after each test by
    :func:`close_memory_transports` (an autouse fixture).
    """
    a_send, b_receive = anyio.create_memory_object_stream[bytes](max_buffer)
    b_send, a_receive = anyio.create_memory_object_stream[bytes](reverse_buffer)
    _open_memory_streams.extend([a_send, b_receive, b_send, a_receive])
    return StapledObjectStream(a_send, a_receive), StapledObjectStream(
        b_send, b_receive
    )


def close_memory_transports() -> None:
    """Close every memory transport the test made (no ResourceWarning)."""
    while _open_memory_streams:
        _open_memory_streams.pop().close()


@asynccontextmanager
async def tcp_transports(
    kind: str = "tcp",
) -> AsyncIterator[tuple[ByteStream, ByteStream]]:
    """Two connected loopback TCP socket streams: AnyIO's (*kind* ``"tcp"``) or
    anyiotls's own transport (``"fast"``)."""
    if kind == "fast":
        async with fast_tcp_transports() as pair:
            yield pair
        return
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        inner = listener.listeners[0]
        result: dict[str, Any] = {}
        async with anyio.create_task_group() as tg:

            async def accept() -> None:
                result["server"] = await inner.accept()  # type: ignore[attr-defined]

            tg.start_soon(accept)
            client = await anyio.connect_tcp("127.0.0.1", port)
        server = result["server"]
        try:
            yield client, server
        finally:
            await anyio.aclose_forcefully(client)
            await anyio.aclose_forcefully(server)


@asynccontextmanager
async def fast_tcp_transports() -> AsyncIterator[tuple[ByteStream, ByteStream]]:
    """Two connected loopback streams on anyiotls's own TCP transport."""
    listener = await anyiotls.create_tcp_listener(local_host="127.0.0.1", tls=False)
    async with listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        inner = listener.listeners[0]
        result: dict[str, Any] = {}
        async with anyio.create_task_group() as tg:

            async def accept() -> None:
                result["server"] = await inner.accept()

            tg.start_soon(accept)
            client = await anyiotls.connect_tcp("127.0.0.1", port, tls=False)
        server = result["server"]
        try:
            yield client, server
        finally:
            await anyio.aclose_forcefully(client)
            await anyio.aclose_forcefully(server)


async def handshake_pair(
    client_transport: Any,
    server_transport: Any,
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
    *,
    standard_compatible: bool = True,
) -> tuple[TLSStream, TLSStream]:
    """Wrap both transports and handshake them concurrently."""
    result: dict[str, TLSStream] = {}
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:

            async def server() -> None:
                result["server"] = await TLSStream.wrap(
                    server_transport,
                    server_side=True,
                    ssl_context=server_context,
                    standard_compatible=standard_compatible,
                )

            tg.start_soon(server)
            result["client"] = await TLSStream.wrap(
                client_transport,
                hostname="localhost",
                ssl_context=client_context,
                standard_compatible=standard_compatible,
            )
    return result["client"], result["server"]


@asynccontextmanager
async def tls_pair(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
    *,
    transport: str = "memory",
    standard_compatible: bool = True,
) -> AsyncIterator[tuple[TLSStream, TLSStream]]:
    """A handshaken (client, server) pair over memory streams or loopback TCP
    (*transport*: one of :data:`TRANSPORTS`)."""
    if transport == "memory":
        ct, st = memory_transports()
        client, server = await handshake_pair(
            ct,
            st,
            client_context,
            server_context,
            standard_compatible=standard_compatible,
        )
        try:
            yield client, server
        finally:
            await anyio.aclose_forcefully(client.transport_stream)
            await anyio.aclose_forcefully(server.transport_stream)
    else:
        async with tcp_transports(transport) as (ct, st):
            yield await handshake_pair(
                ct,
                st,
                client_context,
                server_context,
                standard_compatible=standard_compatible,
            )


async def receive_exactly(stream: Any, size: int) -> bytes:
    """Receive until *size* bytes arrived (fails on EOF)."""
    chunks = bytearray()
    while len(chunks) < size:
        chunks += await stream.receive()
    assert len(chunks) == size, (len(chunks), size)
    return bytes(chunks)


async def receive_all(stream: TLSStream) -> bytes:
    """Receive until EndOfStream."""
    chunks = bytearray()
    while True:
        try:
            chunks += await stream.receive()
        except anyio.EndOfStream:
            return bytes(chunks)


async def handshake_bare_server(peer: TLSEngine, transport: Any) -> None:
    """Run *peer*, a bare server engine, through its handshake over *transport*
    (anything with ``send``/``receive`` of bytes), then send its session tickets:
    a peer whose every byte a test controls (e.g. close_notify and plaintext in
    one transport item)."""
    while peer.do_handshake() is None:
        out = peer.data_to_send()
        if out:
            await transport.send(out)
        peer.receive_data(await transport.receive())
    await transport.send(peer.data_to_send())  # the session tickets
