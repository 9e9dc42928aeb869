"""What a failing transport and ``send_eof()`` do, on both faces, as the anchors do.

``trio.SSLStream`` and ``anyio.streams.tls.TLSStream`` let the transport's own
exception out of the call in which it happened (AnyIO wraps ``OSError`` from its
transport in ``BrokenResourceError``); the stream is broken afterwards, and later
calls raise the face's ``BrokenResourceError`` with that exception as ``__cause__``.
Code written for them catches its transport's exceptions; a bug in a custom
transport must not look like a network failure.
"""

from __future__ import annotations

import ssl
from contextlib import suppress
from typing import Any

import anyio
import pytest
import trio
import trio.testing
from anyio.abc import ByteStream

from anyiotls import TLSStream
from anyiotls.trio import (
    HalfCloseableSSLStream,
    SSLListener,
    SSLStream,
    open_ssl_over_tcp_listeners,
    open_ssl_over_tcp_stream,
    serve_ssl_over_tcp,
)

from .pairs import handshake_pair, memory_transports, tcp_transports

pytestmark = pytest.mark.anyio

TIMEOUT = 10


class TransportBug(Exception):
    """What a custom transport with a bug raises."""


def _strict_eof(context: ssl.SSLContext) -> ssl.SSLContext:
    context.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    return context


@pytest.fixture(params=["TLSv1.2", "TLSv1.3"])
def tls_version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def contexts(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext, tls_version: str
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    client_context.maximum_version = getattr(
        ssl.TLSVersion, tls_version.replace(".", "_")
    )
    return _strict_eof(client_context), _strict_eof(server_context)


# -- the AnyIO face --------------------------------------------------------------------


class FaultyStream(ByteStream):
    """An AnyIO byte stream that raises what it is told to, once."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.send_error: BaseException | None = None
        self.receive_error: BaseException | None = None
        self.closed = False

    async def send(self, item: bytes) -> None:
        if self.send_error is not None:
            error, self.send_error = self.send_error, None
            raise error
        await self.inner.send(item)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self.receive_error is not None:
            error, self.receive_error = self.receive_error, None
            raise error
        return bytes(await self.inner.receive())

    async def send_eof(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        self.closed = True
        await self.inner.aclose()


async def _anyio_pair(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
    *,
    standard_compatible: bool = True,
) -> tuple[TLSStream, TLSStream, FaultyStream, FaultyStream]:
    a, b = memory_transports()
    client_t, server_t = FaultyStream(a), FaultyStream(b)
    streams: dict[str, TLSStream] = {}

    async def server() -> None:
        streams["server"] = await TLSStream.wrap(
            server_t,
            server_side=True,
            ssl_context=contexts[1],
            standard_compatible=standard_compatible,
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(server)
        streams["client"] = await TLSStream.wrap(
            client_t,
            hostname="localhost",
            ssl_context=contexts[0],
            standard_compatible=standard_compatible,
        )
    return streams["client"], streams["server"], client_t, server_t


async def test_anyio_handshake_lets_the_transport_error_out_and_closes_it(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    a, _ = memory_transports()
    transport = FaultyStream(a)
    transport.send_error = TransportBug("send fell over")
    with anyio.fail_after(TIMEOUT), pytest.raises(TransportBug, match="fell over"):
        await TLSStream.wrap(transport, hostname="localhost", ssl_context=contexts[0])
    assert transport.closed  # a failed handshake closes the transport


async def test_anyio_send_error_propagates_then_the_stream_is_broken(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    with anyio.fail_after(TIMEOUT):
        client, server, client_t, _ = await _anyio_pair(contexts)
        bug = TransportBug("send fell over")
        client_t.send_error = bug
        with pytest.raises(TransportBug) as excinfo:
            await client.send(b"hello")
        assert excinfo.value is bug
        assert excinfo.value.__cause__ is None  # not wrapped, not chained to itself
        for later in (lambda: client.send(b"x"), client.receive):
            with pytest.raises(anyio.BrokenResourceError) as broken:
                await later()
            assert broken.value.__cause__ is bug
        await client.aclose()
        await server.aclose()


async def test_anyio_receive_error_propagates_then_the_stream_is_broken(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    with anyio.fail_after(TIMEOUT):
        client, server, client_t, _ = await _anyio_pair(contexts)
        bug = KeyError("receive fell over")
        client_t.receive_error = bug
        with pytest.raises(KeyError) as excinfo:
            await client.receive()
        assert excinfo.value is bug
        with pytest.raises(anyio.BrokenResourceError) as broken:
            await client.receive()
        assert broken.value.__cause__ is bug
        await client.aclose()
        await server.aclose()


async def test_anyio_transports_own_resource_errors_propagate_unchanged(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    with anyio.fail_after(TIMEOUT):
        client, server, client_t, _ = await _anyio_pair(contexts)
        gone = anyio.BrokenResourceError("the socket went away")
        client_t.receive_error = gone
        with pytest.raises(anyio.BrokenResourceError) as excinfo:
            await client.receive()
        assert excinfo.value is gone
        await client.aclose()  # a vanished peer never makes aclose() raise
        await server.aclose()


async def test_anyio_oserror_is_wrapped_as_anyio_wraps_it(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    with anyio.fail_after(TIMEOUT):
        client, server, client_t, _ = await _anyio_pair(contexts)
        reset = ConnectionResetError("reset by peer")
        client_t.receive_error = reset
        with pytest.raises(anyio.BrokenResourceError) as excinfo:
            await client.receive()
        assert excinfo.value.__cause__ is reset
        with pytest.raises(anyio.BrokenResourceError) as broken:
            await client.send(b"x")
        assert broken.value.__cause__ is reset
        await client.aclose()
        await server.aclose()


async def test_anyio_own_close_during_receive_is_closed_resource_error(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    # Over TCP: closing a socket wakes a task receiving from it on every AnyIO
    # version (a memory object stream's receiver is not woken by AnyIO 4.0).
    with anyio.fail_after(TIMEOUT):
        async with tcp_transports() as (client_t, server_t):
            client, server = await handshake_pair(
                client_t, server_t, *contexts, standard_compatible=False
            )
            outcome: list[BaseException] = []

            async def receive() -> None:
                try:
                    await client.receive()
                except Exception as exc:
                    outcome.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(receive)
                await anyio.wait_all_tasks_blocked()
                await client.aclose()
            assert len(outcome) == 1
            assert isinstance(outcome[0], anyio.ClosedResourceError)
            await server.aclose()


# -- send_eof() on the AnyIO face: every state has its documented outcome --------------


async def test_anyio_send_eof_after_the_peers_close_notify_completes_the_close(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], tls_version: str
) -> None:
    with anyio.fail_after(TIMEOUT):
        client, server, _, _ = await _anyio_pair(contexts)
        if tls_version != "TLSv1.3":
            with pytest.raises(NotImplementedError, match=r"TLSv1\.2"):
                await client.send_eof()
            async with anyio.create_task_group() as tg:  # both wait for the other
                tg.start_soon(client.aclose)
                tg.start_soon(server.aclose)
            return
        await server.send_eof()
        with pytest.raises(anyio.EndOfStream):
            await client.receive()
        await client.send_eof()  # returns: both close_notify alerts have left
        with pytest.raises(anyio.EndOfStream):
            await server.receive()
        await client.aclose()
        await server.aclose()


async def test_anyio_send_eof_after_a_ragged_eof_is_broken_not_none(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], tls_version: str
) -> None:
    with anyio.fail_after(TIMEOUT):
        client, _, _, server_t = await _anyio_pair(contexts, standard_compatible=False)
        await server_t.aclose()  # TCP-style close, no close_notify
        with pytest.raises(anyio.EndOfStream):  # not standard_compatible: an end
            await client.receive()
        # broken, as send() is, whatever the version
        with pytest.raises(anyio.BrokenResourceError) as excinfo:
            await client.send_eof()
        assert isinstance(excinfo.value.__cause__, ssl.SSLEOFError)
        with pytest.raises(anyio.BrokenResourceError):
            await client.send(b"x")
        await client.aclose()


async def test_anyio_send_eof_after_the_transport_broke_or_aclose(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    with anyio.fail_after(TIMEOUT):
        client, server, client_t, _ = await _anyio_pair(contexts)
        client_t.send_error = TransportBug()
        with pytest.raises(TransportBug):
            await client.send(b"x")
        with pytest.raises(anyio.BrokenResourceError) as excinfo:
            await client.send_eof()
        assert isinstance(excinfo.value.__cause__, TransportBug)
        await client.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await client.send_eof()
        await server.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await server.send_eof()


# -- the Trio face ---------------------------------------------------------------------


class FaultyTrioStream(trio.abc.Stream):
    """A Trio stream that raises what it is told to, once."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.send_error: BaseException | None = None
        self.receive_error: BaseException | None = None

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.send_error is not None:
            error, self.send_error = self.send_error, None
            raise error
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self.receive_error is not None:
            error, self.receive_error = self.receive_error, None
            raise error
        return bytes(await self.inner.receive_some(max_bytes))

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _trio_pair(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
    *,
    https_compatible: bool = False,
    stream_class: type[SSLStream[Any]] = SSLStream,
) -> tuple[SSLStream[Any], SSLStream[Any], FaultyTrioStream, FaultyTrioStream]:
    a, b = trio.testing.memory_stream_pair()
    client_t, server_t = FaultyTrioStream(a), FaultyTrioStream(b)
    client = stream_class(
        client_t,
        contexts[0],
        server_hostname="localhost",
        https_compatible=https_compatible,
    )
    server = stream_class(
        server_t, contexts[1], server_side=True, https_compatible=https_compatible
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)
    return client, server, client_t, server_t


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_transport_errors_propagate_then_the_stream_is_broken(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    with trio.fail_after(TIMEOUT):
        client, server, client_t, server_t = await _trio_pair(contexts)
        bug = TransportBug("send fell over")
        client_t.send_error = bug
        with pytest.raises(TransportBug) as excinfo:
            await client.send_all(b"x")
        assert excinfo.value is bug
        with pytest.raises(trio.BrokenResourceError) as broken:
            await client.receive_some()
        assert broken.value.__cause__ is bug

        bug = TransportBug("receive fell over")
        server_t.receive_error = bug
        with pytest.raises(TransportBug) as excinfo:
            await server.receive_some()
        assert excinfo.value is bug
        with pytest.raises(trio.BrokenResourceError) as broken:
            await server.send_all(b"x")
        assert broken.value.__cause__ is bug
        await client.aclose()
        await server.aclose()


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_oserror_is_not_wrapped(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    # trio.SSLStream lets even an OSError through (only AnyIO's stream wraps it)
    with trio.fail_after(TIMEOUT):
        client, server, client_t, _ = await _trio_pair(contexts)
        client_t.receive_error = ConnectionResetError()
        with pytest.raises(ConnectionResetError):
            await client.receive_some()
        await client.aclose()
        await server.aclose()


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_sslstream_has_no_send_eof_as_trios(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], tls_version: str
) -> None:
    with trio.fail_after(TIMEOUT):
        client, server, _, server_t = await _trio_pair(contexts, https_compatible=True)
        for stream in (client, server, trio.SSLStream(server_t, contexts[0])):
            assert not hasattr(stream, "send_eof")
            assert not isinstance(stream, trio.abc.HalfCloseableStream)

        # What hypercorn's trio worker does when it closes a connection
        async def close_like_hypercorn(stream: Any) -> None:
            with suppress(trio.BrokenResourceError, AttributeError):
                await stream.send_eof()  # not every stream is half-closeable
            await stream.aclose()

        await client.send_all(b"request")
        assert await server.receive_some() == b"request"
        await close_like_hypercorn(server)
        assert await client.receive_some() == b""
        await client.aclose()


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.parametrize("https_compatible", [False, True], ids=["standard", "https"])
async def test_trio_half_closeable_send_eof_in_every_state(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
    tls_version: str,
    https_compatible: bool,
) -> None:
    with trio.fail_after(TIMEOUT):
        # after the peer's close_notify
        client, server, client_t, server_t = await _trio_pair(
            contexts,
            https_compatible=https_compatible,
            stream_class=HalfCloseableSSLStream,
        )
        assert isinstance(client, HalfCloseableSSLStream)
        if tls_version != "TLSv1.3":
            with pytest.raises(NotImplementedError, match=r"uses TLSv1\.2"):
                await client.send_eof()
        else:
            await server.send_eof()
            assert await client.receive_some() == b""
            await client.send_eof()
            assert await server.receive_some() == b""
        await client.aclose()
        await server.aclose()

        # after a ragged EOF: never "this connection uses None"
        client, server, client_t, server_t = await _trio_pair(
            contexts,
            https_compatible=https_compatible,
            stream_class=HalfCloseableSSLStream,
        )
        await server_t.aclose()
        if https_compatible:
            assert await client.receive_some() == b""
        else:
            with pytest.raises(trio.BrokenResourceError):
                await client.receive_some()
        # broken, as send_all() is, whatever the version
        with pytest.raises(trio.BrokenResourceError) as excinfo:
            await client.send_eof()
        assert isinstance(excinfo.value.__cause__, ssl.SSLEOFError)
        with pytest.raises(trio.BrokenResourceError):
            await client.send_all(b"x")
        await client.aclose()
        with pytest.raises(trio.ClosedResourceError):  # after aclose()
            await client.send_eof()

        # after the transport broke
        client, server, client_t, server_t = await _trio_pair(
            contexts,
            https_compatible=https_compatible,
            stream_class=HalfCloseableSSLStream,
        )
        client_t.send_error = TransportBug()
        with pytest.raises(TransportBug):
            await client.send_all(b"x")
        with pytest.raises(trio.BrokenResourceError) as excinfo:
            await client.send_eof()  # type: ignore[attr-defined]
        assert isinstance(excinfo.value.__cause__, TransportBug)
        await client.aclose()
        await server.aclose()


# -- trio's TCP helpers ----------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_tcp_helpers_serve_and_connect(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    async def echo(stream: SSLStream[trio.SocketStream]) -> None:
        assert type(stream) is SSLStream
        data = await stream.receive_some()
        await stream.send_all(data.upper())
        await stream.aclose()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(serve_ssl_over_tcp, echo, 0, server_context)
            assert all(isinstance(listener, SSLListener) for listener in listeners)
            port = listeners[0].transport_listener.socket.getsockname()[1]
            client = await open_ssl_over_tcp_stream(
                "127.0.0.1", port, ssl_context=client_context
            )
            assert type(client) is SSLStream
            assert isinstance(client.transport_stream, trio.SocketStream)
            await client.send_all(b"hello")
            assert await client.receive_some() == b"HELLO"
            assert await client.receive_some() == b""
            await client.aclose()
            nursery.cancel_scope.cancel()

        listeners = await open_ssl_over_tcp_listeners(
            0, server_context, host="127.0.0.1", https_compatible=True, backlog=5
        )
        assert len(listeners) == 1
        async with listeners[0]:
            port = listeners[0].transport_listener.socket.getsockname()[1]

            async def connect() -> None:
                # trio's default context: our test CA is unknown to it
                client = await open_ssl_over_tcp_stream("127.0.0.1", port)
                with pytest.raises(trio.BrokenResourceError) as excinfo:
                    await client.do_handshake()
                assert isinstance(excinfo.value.__cause__, ssl.SSLCertVerificationError)
                await client.aclose()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(connect)
                server = await listeners[0].accept()
                assert server.https_compatible
                with pytest.raises(trio.BrokenResourceError):
                    await server.do_handshake()
                await server.aclose()


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_listener_makes_half_closeable_streams_on_request(
    server_context: ssl.SSLContext,
) -> None:
    class OneConnection(trio.abc.Listener[trio.abc.Stream]):
        async def accept(self) -> trio.abc.Stream:
            await trio.lowlevel.checkpoint()
            return trio.testing.memory_stream_pair()[0]

        async def aclose(self) -> None:
            await trio.lowlevel.checkpoint()

    for half_closeable, stream_class in [
        (False, SSLStream),
        (True, HalfCloseableSSLStream),
    ]:
        tls_listener = SSLListener(
            OneConnection(), server_context, half_closeable=half_closeable
        )
        stream = await tls_listener.accept()
        assert type(stream) is stream_class
        assert stream.server_side
        await trio.aclose_forcefully(stream)  # no peer to handshake with
        await tls_listener.aclose()


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_tcp_helper_resumes_from_a_session_cache(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    from anyiotls import SessionCache

    async def hello(stream: SSLStream[trio.SocketStream]) -> None:
        await stream.send_all(b"hello")  # a TLS 1.3 server's tickets leave with it
        await stream.aclose()

    cache = SessionCache()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                serve_ssl_over_tcp, hello, 0, server_context
            )
            port = listeners[0].transport_listener.socket.getsockname()[1]
            with pytest.raises(ValueError, match="explicit ssl_context"):
                await open_ssl_over_tcp_stream("127.0.0.1", port, session_cache=cache)
            reused = []
            for _ in range(2):
                client = await open_ssl_over_tcp_stream(
                    "127.0.0.1", port, ssl_context=client_context, session_cache=cache
                )
                assert await client.receive_some() == b"hello"
                reused.append(client.session_reused)
                assert await client.receive_some() == b""
                await client.aclose()
            assert reused == [False, True]
            nursery.cancel_scope.cancel()
