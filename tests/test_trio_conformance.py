"""trio's own generic stream checks and checkpoint rules, on ``anyiotls.trio``.

``trio.testing.check_two_way_stream`` / ``check_half_closeable_stream`` are the
checks trio runs on its own ``SSLStream``; here they run on ours, over trio's memory
and lockstep stream pairs, in both ``https_compatible`` modes and both TLS versions.
All tests run on the trio backend only (this module's ``anyio_backend``).
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
from trio.testing import (
    assert_checkpoints,
    check_half_closeable_stream,
    check_two_way_stream,
    lockstep_stream_pair,
    memory_stream_pair,
)

from anyiotls import PostHandshakeAuthError
from anyiotls.trio import AnyIOStreamAsTrio, HalfCloseableSSLStream, SSLStream

pytestmark = pytest.mark.anyio

#: Every test's whole body runs under this limit (trio's checks have no timeouts).
TIMEOUT = 30


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


@pytest.fixture(params=["TLSv1.2", "TLSv1.3"])
def tls_version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _no_ignored_eof(context: ssl.SSLContext) -> ssl.SSLContext:
    # A truncated connection must be an error, not a clean close, in standard mode.
    context.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    return context


@pytest.fixture
def contexts(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext, tls_version: str
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(client, server) contexts; the client allows at most *tls_version*."""
    client_context.maximum_version = getattr(
        ssl.TLSVersion, tls_version.replace(".", "_")
    )
    return _no_ignored_eof(client_context), _no_ignored_eof(server_context)


Pair = tuple[SSLStream[Any], SSLStream[Any]]


def wrap_pair(
    transports: tuple[trio.abc.Stream, trio.abc.Stream],
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
    *,
    https_compatible: bool = False,
    stream_class: type[SSLStream[Any]] = HalfCloseableSSLStream,
) -> Pair:
    """A client and a server; by default the half-closeable class, which has every
    method :class:`SSLStream` has and ``send_eof``."""
    client_transport, server_transport = transports
    client = stream_class(
        client_transport,
        contexts[0],
        server_hostname="localhost",
        https_compatible=https_compatible,
    )
    server = stream_class(
        server_transport,
        contexts[1],
        server_side=True,
        https_compatible=https_compatible,
    )
    return client, server


async def handshake(pair: Pair) -> Pair:
    async with trio.open_nursery() as nursery:
        for stream in pair:
            nursery.start_soon(stream.do_handshake)
    return pair


def makers(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
    https_compatible: bool,
    stream_class: type[SSLStream[Any]] = HalfCloseableSSLStream,
) -> tuple[Callable[[], Awaitable[Pair]], Callable[[], Awaitable[Pair]]]:
    """trio's (stream_maker, clogged_stream_maker) for our SSLStream."""

    async def stream_maker() -> Pair:
        return wrap_pair(
            memory_stream_pair(),
            contexts,
            https_compatible=https_compatible,
            stream_class=stream_class,
        )

    async def clogged_stream_maker() -> Pair:
        # Handshake first, as trio's own test does: otherwise a receive_some that
        # is supposed to unclog the peer would start the handshake and get stuck.
        pair = wrap_pair(
            lockstep_stream_pair(),
            contexts,
            https_compatible=https_compatible,
            stream_class=stream_class,
        )
        return await handshake(pair)

    return stream_maker, clogged_stream_maker


@pytest.mark.parametrize("https_compatible", [False, True], ids=["standard", "https"])
async def test_trio_generic_stream_checks_pass(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
    tls_version: str,
    https_compatible: bool,
) -> None:
    with trio.fail_after(TIMEOUT):
        # SSLStream is a plain trio Stream, as trio's is
        await check_two_way_stream(
            *makers(contexts, https_compatible, stream_class=SSLStream)
        )
        if tls_version == "TLSv1.3":
            # a superset of check_two_way_stream: send_eof is TLS 1.3's half-close
            await check_half_closeable_stream(*makers(contexts, https_compatible))


async def test_trio_generic_checks_pass_over_lockstep_in_https_mode(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    # lockstep as the *main* maker: every send waits for the peer's receive. Only in
    # https mode: in standard mode trio's check makes one side close (sending
    # close_notify) while the other only sends, which deadlocks trio.SSLStream over
    # lockstep streams exactly as it does ours.
    async def stream_maker() -> Pair:
        return wrap_pair(lockstep_stream_pair(), contexts, https_compatible=True)

    with trio.fail_after(TIMEOUT):
        await check_two_way_stream(stream_maker, None)


async def test_trio_generic_checks_pass_over_the_anyio_bridge(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    # The transport is an AnyIO memory object stream pair seen through
    # AnyIOStreamAsTrio: the bridge must carry trio's stream contract.
    import anyio
    from anyio.streams.stapled import StapledObjectStream

    async def stream_maker() -> Pair:
        a_send, b_receive = anyio.create_memory_object_stream[bytes](1000)
        b_send, a_receive = anyio.create_memory_object_stream[bytes](1000)
        transports = (
            AnyIOStreamAsTrio(StapledObjectStream(a_send, a_receive)),
            AnyIOStreamAsTrio(StapledObjectStream(b_send, b_receive)),
        )
        return wrap_pair(transports, contexts)

    with trio.fail_after(TIMEOUT):
        await check_two_way_stream(stream_maker, None)


# -- checkpoints -------------------------------------------------------------------


async def test_every_method_is_a_checkpoint_on_success(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], tls_version: str
) -> None:
    contexts[1].post_handshake_auth = True
    contexts[1].verify_mode = ssl.CERT_OPTIONAL
    contexts[0].post_handshake_auth = True
    client, server = wrap_pair(memory_stream_pair(), contexts)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.do_handshake)
            with assert_checkpoints():
                await client.do_handshake()
        with assert_checkpoints():
            await client.do_handshake()  # already done: a checkpoint only
        with assert_checkpoints():
            await client.wait_send_all_might_not_block()
        with assert_checkpoints():
            await client.send_all(b"abc")
        with assert_checkpoints():
            await client.send_all(b"")
        with assert_checkpoints():
            assert await server.receive_some(1) == b"a"
        # "bc" is decrypted and buffered: no transport I/O, still a checkpoint
        with assert_checkpoints():
            assert await server.receive_some(1) == b"b"
        with assert_checkpoints():
            assert await server.receive_some() == b"c"

        if tls_version == "TLSv1.3":
            with assert_checkpoints():
                await server.request_client_certificate()
            with assert_checkpoints():
                await server.request_client_certificate()  # pending: no-op

            async def client_reads() -> None:
                assert await client.receive_some() == b"go"

            async with trio.open_nursery() as nursery:
                nursery.start_soon(client_reads)
                with assert_checkpoints():
                    assert await server.verify_client_post_handshake() is None
                await server.send_all(b"go")
            with assert_checkpoints():
                await client.send_eof()
            with assert_checkpoints():
                await client.send_eof()  # again: a checkpoint only
            with assert_checkpoints():
                assert await server.receive_some() == b""
        else:
            with pytest.raises(PostHandshakeAuthError):
                await server.verify_client_post_handshake()

        async def client_unwraps() -> None:
            with assert_checkpoints():
                await client.unwrap()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(client_unwraps)
            with assert_checkpoints():
                await server.unwrap()
        with assert_checkpoints():
            await client.aclose()  # unwrapped: closed already, a checkpoint only


@pytest.mark.parametrize("https_compatible", [False, True], ids=["standard", "https"])
async def test_aclose_is_a_checkpoint_in_every_state(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], https_compatible: bool
) -> None:
    with trio.fail_after(TIMEOUT):
        client, server = await handshake(
            wrap_pair(memory_stream_pair(), contexts, https_compatible=https_compatible)
        )
        with assert_checkpoints():
            await client.aclose()
        with assert_checkpoints():
            await client.aclose()
        with assert_checkpoints():
            assert await server.receive_some() == b""
        with assert_checkpoints():
            await server.aclose()


async def _raises_cancelled_first(call: Callable[[], Awaitable[object]]) -> None:
    """A failing call still executes a checkpoint before it raises: in a cancelled
    scope it raises Cancelled, not its own error."""
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await call()


async def test_every_method_is_a_checkpoint_when_it_fails(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    with trio.fail_after(TIMEOUT):
        client, server = await handshake(wrap_pair(memory_stream_pair(), contexts))
        await client.aclose()
        for call in (
            client.do_handshake,
            lambda: client.send_all(b"x"),
            lambda: client.send_all(b""),
            client.receive_some,
            client.wait_send_all_might_not_block,
            client.unwrap,
            client.send_eof,
            client.request_client_certificate,
        ):
            await _raises_cancelled_first(call)
            with pytest.raises(trio.ClosedResourceError):
                await call()
        await _raises_cancelled_first(client.aclose)  # closing again: no error
        await server.aclose()


async def test_every_method_raises_cancelled_on_a_broken_stream(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    # A broken stream (here: the handshake was cancelled) raises BrokenResourceError
    # from every method, after a checkpoint.
    with trio.fail_after(TIMEOUT):
        client, server = wrap_pair(memory_stream_pair(), contexts)
        with trio.CancelScope() as scope:
            scope.cancel()
            await client.do_handshake()
        for call in (
            client.do_handshake,
            lambda: client.send_all(b"x"),
            client.receive_some,
            client.wait_send_all_might_not_block,
            client.unwrap,
        ):
            await _raises_cancelled_first(call)
            with pytest.raises(trio.BrokenResourceError):
                await call()
        with assert_checkpoints():
            await client.aclose()
        # the server never completed a handshake: its standard-mode aclose tries one,
        # as trio's does, and finds the transport closed
        with pytest.raises(trio.BrokenResourceError):
            await server.aclose()
