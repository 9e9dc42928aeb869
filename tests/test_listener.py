"""TLSListener and TLSConnectable, as anyio has them."""

from __future__ import annotations

import logging
import ssl

import anyio
import pytest
from anyio.abc import SocketAttribute

from anyiotls import TLSAttribute, TLSConnectable, TLSListener, TLSStream

pytestmark = pytest.mark.anyio


async def test_listener_serves_and_survives_bad_and_slow_handshakes(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, "anyiotls")
    inner = await anyio.create_tcp_listener(local_host="127.0.0.1")
    listener = TLSListener(inner, server_context, handshake_timeout=0.2)
    port = listener.extra(SocketAttribute.local_port)  # passes through
    assert listener.extra(TLSAttribute.standard_compatible) is True

    async def handler(stream: TLSStream) -> None:
        async with stream:
            await stream.send(b"echo:" + await stream.receive())

    with anyio.fail_after(20):
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handler)
            # a client that speaks garbage, and one that never speaks
            garbage = await anyio.connect_tcp("127.0.0.1", port)
            await garbage.send(b"GET / HTTP/1.0\r\n\r\n")
            silent = await anyio.connect_tcp("127.0.0.1", port)
            # both are closed by the server, which goes on serving
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await garbage.receive()
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await silent.receive()
            client = await TLSStream.wrap(
                await anyio.connect_tcp("127.0.0.1", port),
                hostname="localhost",
                ssl_context=client_context,
            )
            await client.send(b"hello")
            assert await client.receive() == b"echo:hello"
            await client.aclose()
            await garbage.aclose()
            await silent.aclose()
            tg.cancel_scope.cancel()
    messages = [record.getMessage() for record in caplog.records]
    assert len([m for m in messages if "handshake" in m.lower()]) >= 2


async def test_handle_handshake_error_can_be_overridden(
    server_context: ssl.SSLContext,
) -> None:
    seen: list[BaseException] = []
    handled = anyio.Event()

    class MyListener(TLSListener):
        @staticmethod
        async def handle_handshake_error(
            exc: BaseException, stream: anyio.abc.AnyByteStream
        ) -> None:
            seen.append(exc)
            handled.set()
            await anyio.aclose_forcefully(stream)

    inner = await anyio.create_tcp_listener(local_host="127.0.0.1")
    listener = MyListener(inner, server_context)
    port = listener.extra(SocketAttribute.local_port)

    async def handler(stream: TLSStream) -> None:
        pytest.fail("no handshake can succeed here")

    with anyio.fail_after(10):
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handler)
            bad = await anyio.connect_tcp("127.0.0.1", port)
            await bad.send(b"\x00" * 64)
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await bad.receive()
            await bad.aclose()
            await handled.wait()  # the server may still be closing its side
            tg.cancel_scope.cancel()
    assert len(seen) == 1
    assert isinstance(seen[0], ssl.SSLError)


class _TCPConnectable:
    """The smallest connectable (anyio < 4.10 has none of its own)."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def connect(self) -> anyio.abc.SocketStream:
        return await anyio.connect_tcp("127.0.0.1", self.port)


async def test_tls_connectable_connects_and_handshakes(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    inner = await anyio.create_tcp_listener(local_host="127.0.0.1")
    listener = TLSListener(inner, server_context)
    port = listener.extra(SocketAttribute.local_port)

    async def handler(stream: TLSStream) -> None:
        async with stream:
            await stream.send(await stream.receive())

    with anyio.fail_after(10):
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handler)
            connectable = TLSConnectable(
                _TCPConnectable(port), hostname="localhost", ssl_context=client_context
            )
            stream = await connectable.connect()
            assert isinstance(stream, TLSStream)
            await stream.send(b"round trip")
            assert await stream.receive() == b"round trip"
            await stream.aclose()
            tg.cancel_scope.cancel()


def test_tls_connectable_is_an_anyio_connectable_where_anyio_has_them() -> None:
    base = getattr(anyio.abc, "ByteStreamConnectable", object)
    assert issubclass(TLSConnectable, base)
