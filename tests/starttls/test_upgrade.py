"""The upgrade primitive: the buffered-plaintext rule, faces, failures, cancellation."""

from __future__ import annotations

import ssl
from functools import partial
from typing import Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.stapled import StapledObjectStream

from anyiotls import TLSStream
from anyiotls.starttls import (
    ConnectionClosedError,
    InjectedDataError,
    LineBuffer,
    upgrade,
    wrap_anyio,
)

from .conftest import MAIL_HOSTNAME, connect
from .helpers import TIMEOUT, ServerPeer, assert_closed, serve_one

try:
    from anyio.streams.buffered import BufferedByteStream
except ImportError:  # anyio < 4.10
    BufferedByteStream = None  # type: ignore[assignment,misc]

pytestmark = pytest.mark.anyio

GO_AHEAD = b"220 go ahead\r\n"


def tls_echo_server(context: ssl.SSLContext, after_go_ahead: bytes = b"") -> Any:
    """Says go-ahead (plus *after_go_ahead*), then echoes one line over TLS."""

    async def handler(peer: ServerPeer) -> None:
        await peer.send(GO_AHEAD + after_go_ahead)
        if after_go_ahead:
            # A client that refuses sends nothing at all, not even a ClientHello.
            assert await peer.rest() == b""
            return
        await peer.starttls(context)
        await peer.send(("echo " + await peer.line() + "\r\n").encode())
        await peer.rest()

    return handler


async def echo(stream: Any) -> bytes:
    if hasattr(stream, "send_all"):
        await stream.send_all(b"ping\r\n")
        return bytes(await stream.receive_some())
    await stream.send(b"ping\r\n")
    return bytes(await stream.receive())


@pytest.mark.parametrize("reader_kind", ["anyio", "linebuffer", "bytes"])
async def test_upgrade_after_clean_go_ahead(
    reader_kind: str,
    mail_server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    async with serve_one(tls_echo_server(mail_server_context)) as server:
        with anyio.fail_after(TIMEOUT):
            stream = await anyio.connect_tcp("127.0.0.1", server.port)
            buffered: Any
            if reader_kind == "anyio":
                buffered = BufferedByteReceiveStream(stream)
                assert await buffered.receive_until(b"\r\n", 100) == GO_AHEAD[:-2]
            else:
                line_buffer = LineBuffer()
                while (line := line_buffer.next_line()) is None:
                    line_buffer.feed(await stream.receive())
                assert line == GO_AHEAD[:-2]
                buffered = line_buffer if reader_kind == "linebuffer" else b""
            tls = await upgrade(
                stream, buffered, hostname=MAIL_HOSTNAME, ssl_context=client_context
            )
            assert isinstance(tls, TLSStream)
            assert tls.transport_stream is stream
            assert await echo(tls) == b"echo ping\r\n"
            await tls.aclose()


def memory_pair() -> tuple[StapledObjectStream[bytes], StapledObjectStream[bytes]]:
    """Two connected in-memory transports; each item sent arrives as one chunk."""
    a_send, b_receive = anyio.create_memory_object_stream[bytes](100)
    b_send, a_receive = anyio.create_memory_object_stream[bytes](100)
    a = StapledObjectStream(a_send, a_receive)
    return a, StapledObjectStream(b_send, b_receive)


async def injecting_server(
    transport: StapledObjectStream[bytes],
    context: ssl.SSLContext,
    injected: bytes,
    *,
    handshake: bool,
) -> None:
    """Sends the go-ahead and *injected* as one segment; then TLS echo if asked."""
    await transport.send(GO_AHEAD + injected)
    if not handshake:
        # The client refused: it sends nothing, not even a ClientHello.
        with pytest.raises(anyio.EndOfStream):
            await transport.receive()
        return
    tls = await TLSStream.wrap(transport, server_side=True, ssl_context=context)
    line = await tls.receive()
    await tls.send(b"echo " + line)
    await tls.aclose()


@pytest.mark.parametrize("reader_kind", ["anyio", "linebuffer", "bytes"])
@pytest.mark.parametrize("discard", [False, True])
async def test_upgrade_refuses_or_discards_bytes_buffered_past_the_go_ahead(
    reader_kind: str,
    discard: bool,
    mail_server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    injected = b"250 AUTH INJECTED\r\n"
    client_transport, server_transport = memory_pair()
    with anyio.fail_after(TIMEOUT):
        async with client_transport, server_transport, anyio.create_task_group() as tg:
            tg.start_soon(
                partial(
                    injecting_server,
                    server_transport,
                    mail_server_context,
                    injected,
                    handshake=discard,
                )
            )
            reader = BufferedByteReceiveStream(client_transport)
            assert await reader.receive_until(b"\r\n", 100) == GO_AHEAD[:-2]
            assert reader.buffer == injected
            line_buffer = LineBuffer()
            line_buffer.feed(reader.buffer)
            buffered: Any = {
                "anyio": reader,
                "linebuffer": line_buffer,
                "bytes": reader.buffer,
            }[reader_kind]
            if not discard:
                with pytest.raises(InjectedDataError) as info:
                    await upgrade(
                        client_transport,
                        buffered,
                        hostname=MAIL_HOSTNAME,
                        ssl_context=client_context,
                    )
                assert info.value.data == injected
                assert "19 byte(s)" in str(info.value)
                # The transport was closed.
                with pytest.raises(anyio.ClosedResourceError):
                    await client_transport.send(b"x")
                return
            tls = await upgrade(
                client_transport,
                buffered,
                hostname=MAIL_HOSTNAME,
                ssl_context=client_context,
                discard_injected=True,
            )
            # Over TLS, only what the server sent over TLS.
            assert await echo(tls) == b"echo ping\r\n"
            await tls.aclose()
    assert "discarding 19 byte(s)" in caplog.text


# anyio >= 4.10 only (not a skip on older ones: the test does not exist there).
if BufferedByteStream is not None:

    @pytest.mark.parametrize("injected", [b"", b"x\r\n"])
    async def test_upgrade_of_a_buffered_byte_stream_checks_its_buffer(
        injected: bytes,
        mail_server_context: ssl.SSLContext,
        client_context: ssl.SSLContext,
    ) -> None:
        """A BufferedByteStream is checked, then the stream under it is upgraded."""
        client_transport, server_transport = memory_pair()
        server = partial(
            injecting_server,
            server_transport,
            mail_server_context,
            injected,
            handshake=not injected,
        )
        async with client_transport, server_transport:
            with anyio.fail_after(TIMEOUT):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(server)
                    stream = BufferedByteStream(client_transport)
                    await stream.receive_until(b"\r\n", 100)
                    if injected:
                        with pytest.raises(InjectedDataError):
                            await upgrade(stream, hostname="x")
                        return
                    tls = await upgrade(
                        stream, hostname=MAIL_HOSTNAME, ssl_context=client_context
                    )
                    # The buffered wrapper is gone: TLS runs on the stream under it.
                    assert tls.transport_stream is client_transport
                    assert await echo(tls) == b"echo ping\r\n"
                    await tls.aclose()


async def test_upgrade_of_a_receive_only_buffer_is_a_type_error() -> None:
    send, receive = anyio.create_memory_object_stream[bytes](1)
    async with send, receive:
        with pytest.raises(TypeError, match="cannot send"):
            await upgrade(BufferedByteReceiveStream(receive), hostname="x")


async def test_upgrade_with_a_custom_wrap(
    mail_server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    calls: list[tuple[Any, str | None, ssl.SSLContext | None]] = []

    async def wrap(
        stream: Any, /, *, hostname: str | None, ssl_context: ssl.SSLContext | None
    ) -> TLSStream:
        calls.append((stream, hostname, ssl_context))
        return await wrap_anyio(stream, hostname=hostname, ssl_context=ssl_context)

    async with serve_one(tls_echo_server(mail_server_context)) as server:
        with anyio.fail_after(TIMEOUT):
            stream = await anyio.connect_tcp("127.0.0.1", server.port)
            reader = BufferedByteReceiveStream(stream)
            await reader.receive_until(b"\r\n", 100)
            tls = await upgrade(
                stream,
                reader,
                hostname=MAIL_HOSTNAME,
                ssl_context=client_context,
                wrap=wrap,
            )
            assert calls == [(stream, MAIL_HOSTNAME, client_context)]
            assert await echo(tls) == b"echo ping\r\n"
            await tls.aclose()


async def test_upgrade_trio_face(
    face: str,
    mail_server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    """A Trio stream gets ``anyiotls.trio.SSLStream``; an AnyIO one ``TLSStream``."""
    async with serve_one(tls_echo_server(mail_server_context)) as server:
        with anyio.fail_after(TIMEOUT):
            stream = await connect("127.0.0.1", server.port, face)
            line_buffer = LineBuffer()
            while line_buffer.next_line() is None:
                data = await (
                    stream.receive_some() if face == "trio" else stream.receive()
                )
                line_buffer.feed(data)
            tls = await upgrade(
                stream, line_buffer, hostname=MAIL_HOSTNAME, ssl_context=client_context
            )
            expected = "SSLStream" if face == "trio" else "TLSStream"
            assert type(tls).__name__ == expected
            assert await echo(tls) == b"echo ping\r\n"
            await tls.aclose()


async def test_upgrade_unknown_ca_raises_ssl_error(
    face: str, mail_server_context: ssl.SSLContext
) -> None:
    async def handler(peer: ServerPeer) -> None:
        with pytest.raises((ssl.SSLError, anyio.BrokenResourceError)):
            await peer.starttls(mail_server_context)

    async with serve_one(handler) as server:
        with anyio.fail_after(TIMEOUT):
            stream = await connect("127.0.0.1", server.port, face)
            with pytest.raises(ssl.SSLCertVerificationError):
                await upgrade(stream, hostname=MAIL_HOSTNAME)


async def test_upgrade_peer_closing_during_handshake(
    face: str, client_context: ssl.SSLContext
) -> None:
    async def handler(peer: ServerPeer) -> None:
        assert (await peer.receive())[0] == 0x16  # the ClientHello, then close

    async with serve_one(handler) as server:
        with anyio.fail_after(TIMEOUT):
            stream = await connect("127.0.0.1", server.port, face)
            with pytest.raises(ConnectionClosedError, match="during the TLS handshake"):
                await upgrade(
                    stream, hostname=MAIL_HOSTNAME, ssl_context=client_context
                )


async def test_upgrade_cancelled_during_handshake_closes_the_transport(
    client_context: ssl.SSLContext,
) -> None:
    got_hello = anyio.Event()

    async def handler(peer: ServerPeer) -> None:
        assert (await peer.receive())[0] == 0x16
        got_hello.set()
        assert await peer.rest() == b""

    async with serve_one(handler) as server:
        with anyio.fail_after(TIMEOUT):
            stream = await anyio.connect_tcp("127.0.0.1", server.port)
            async with anyio.create_task_group() as tg:

                async def cancel_when_hello_arrived() -> None:
                    await got_hello.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(cancel_when_hello_arrived)
                await upgrade(
                    stream, hostname=MAIL_HOSTNAME, ssl_context=client_context
                )
            assert tg.cancel_scope.cancelled_caught
            await assert_closed(stream)


async def test_upgrade_is_a_checkpoint_even_when_refusing() -> None:
    """Refusing injected data still passes through a checkpoint (cancellable)."""
    stream, other = memory_pair()
    async with stream, other:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await upgrade(stream, b"injected", hostname="x")
        assert scope.cancelled_caught
