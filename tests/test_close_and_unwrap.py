"""Closing, EOF, unwrap (STARTTLS downgrade) and TLS 1.3 half-close."""

from __future__ import annotations

import os
import ssl

import anyio
import pytest

from anyiotls import TLSStream
from anyiotls._engine import TLSEngine

from .pairs import (
    TCP_TRANSPORTS,
    handshake_bare_server,
    handshake_pair,
    memory_transports,
    receive_all,
    receive_exactly,
    tcp_transports,
    tls_pair,
)

pytestmark = pytest.mark.anyio


async def close_both(a: TLSStream, b: TLSStream) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(a.aclose)
        await b.aclose()


@pytest.mark.parametrize("transport", TCP_TRANSPORTS)
async def test_aclose_exchanges_close_notify_and_peer_sees_end_of_stream(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
    transport: str,
) -> None:
    async with tls_pair(client_context, server_context, transport=transport) as (
        client,
        server,
    ):
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.aclose)
                with pytest.raises(anyio.EndOfStream):
                    await server.receive()
                await server.aclose()


@pytest.mark.parametrize("transport", TCP_TRANSPORTS)
async def test_aclose_with_unread_application_data_does_not_raise(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
    transport: str,
) -> None:
    # anyio's own TLSStream raises APPLICATION_DATA_AFTER_CLOSE_NOTIFY here.
    async with tls_pair(client_context, server_context, transport=transport) as (
        client,
        server,
    ):
        await server.send(b"never read" * 1000)
        await client.send(b"also never read" * 1000)
        with anyio.fail_after(10):
            await close_both(client, server)


@pytest.mark.parametrize("transport", TCP_TRANSPORTS)
@pytest.mark.parametrize("size", [1, 4 * 1024 * 1024])
async def test_client_that_only_sends_then_closes_loses_nothing(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
    size: int,
    transport: str,
) -> None:
    # The client never reads, so the server's session tickets sit unread in its
    # socket; a plain close() would turn into a TCP reset and the server could lose
    # the tail of the data. aclose() reads them while waiting for close_notify.
    payload = os.urandom(size)
    async with tls_pair(client_context, server_context, transport=transport) as (
        client,
        server,
    ):
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:

                async def client_side() -> None:
                    await client.send(payload)
                    await client.aclose()

                tg.start_soon(client_side)
                await anyio.sleep(0.05)  # let the client finish first if it can
                assert await receive_all(server) == payload
                await server.aclose()


async def test_aclose_of_peer_that_never_answers_is_bounded_by_caller_scope(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
) -> None:
    async with tls_pair(client_context, server_context) as (client, _server):
        with anyio.fail_after(10):
            with anyio.move_on_after(0.1):
                await client.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await client.transport_stream.send(b"x")


async def test_aclose_twice_and_after_broken_does_not_raise(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
) -> None:
    async with tls_pair(client_context, server_context) as (client, server):
        await server.transport_stream.aclose()  # the peer vanishes
        with anyio.fail_after(10):
            await client.aclose()
            await client.aclose()


@pytest.mark.parametrize("standard_compatible", [True, False])
async def test_ragged_eof(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
    standard_compatible: bool,
) -> None:
    async with tls_pair(
        client_context, server_context, standard_compatible=standard_compatible
    ) as (client, server):
        await server.send(b"last words")
        await server.transport_stream.aclose()  # no close_notify
        with anyio.fail_after(10):
            assert await client.receive() == b"last words"
            expected = (
                anyio.BrokenResourceError if standard_compatible else anyio.EndOfStream
            )
            with pytest.raises(expected) as info:
                await client.receive()
            if standard_compatible:
                assert isinstance(info.value.__cause__, ssl.SSLError)
            with pytest.raises(expected):  # and again, as anyio does
                await client.receive()


async def test_receive_after_end_of_stream_and_after_close(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
) -> None:
    async with tls_pair(client_context, server_context) as (client, server):
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(server.aclose)  # waits for our close_notify
                with pytest.raises(anyio.EndOfStream):
                    await client.receive()
                with pytest.raises(anyio.EndOfStream):
                    await client.receive()
                await client.send(b"the peer may still receive this")
                await client.aclose()
            with pytest.raises(anyio.ClosedResourceError):
                await client.receive()
            with pytest.raises(anyio.ClosedResourceError):
                await client.send(b"x")


@pytest.mark.parametrize("transport", TCP_TRANSPORTS)
async def test_unwrap_returns_plaintext_sent_after_close_notify(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
    transport: str,
) -> None:
    async with tls_pair(client_context, server_context, transport=transport) as (
        client,
        server,
    ):
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:

                async def server_side() -> None:
                    transport, leftover = await server.unwrap()
                    assert leftover == b""
                    await transport.send(b"plaintext again")

                tg.start_soon(server_side)
                transport, leftover = await client.unwrap()
            received = bytearray(leftover)
            while len(received) < len(b"plaintext again"):
                received += await transport.receive()
        assert received == b"plaintext again"
        with pytest.raises(anyio.ClosedResourceError):
            await client.send(b"x")


async def test_unwrap_leftover_in_same_segment_as_close_notify(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
) -> None:
    # The peer here is a bare engine, so its close_notify and the plaintext that
    # follows can be put into one transport item: one "segment".
    ct, st = memory_transports()
    peer = TLSEngine(server_context, server_side=True, server_hostname=None)
    client = TLSStream(ct, hostname="localhost", ssl_context=client_context)

    async def serve_peer() -> None:
        await handshake_bare_server(peer, st)
        peer.receive_data(await st.receive())  # the client's close_notify
        assert peer.read(100) == b""
        assert peer.unwrap() is True
        await st.send(peer.data_to_send() + b"EHLO plaintext\r\n")

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve_peer)
            await client.do_handshake()
            transport, leftover = await client.unwrap()
    assert leftover == b"EHLO plaintext\r\n"
    assert transport is ct


@pytest.mark.parametrize("transport", TCP_TRANSPORTS)
async def test_send_eof_half_closes_under_tls13(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
    transport: str,
) -> None:
    async with tls_pair(client_context, server_context, transport=transport) as (
        client,
        server,
    ):
        with anyio.fail_after(10):
            await client.send(b"request")
            await client.send_eof()
            await client.send_eof()  # idempotent
            with pytest.raises(anyio.ClosedResourceError):
                await client.send(b"too late")
            assert await receive_all(server) == b"request"
            await server.send(b"response after the client's EOF")
            assert await client.receive() == b"response after the client's EOF"
            async with anyio.create_task_group() as tg:
                tg.start_soon(server.aclose)
                assert await receive_all(client) == b""
            await client.aclose()


async def test_send_eof_under_tls12_raises_not_implemented(
    client_context_tls12: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    async with tls_pair(client_context_tls12, server_context) as (client, server):
        with pytest.raises(NotImplementedError, match=r"TLS 1\.3"):
            await client.send_eof()
        await client.send(b"still usable")
        assert await server.receive() == b"still usable"


@pytest.mark.parametrize("transport", TCP_TRANSPORTS)
async def test_standard_compatible_false_closes_without_waiting(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
    transport: str,
) -> None:
    # Without the closing handshake, the closer must have read everything the peer
    # sent, or its close becomes a TCP reset (see docs/closing.md). The server here
    # has: the client sent nothing after its Finished.
    async with tcp_transports(transport) as (ct, st):
        client, server = await handshake_pair(
            ct, st, client_context, server_context, standard_compatible=False
        )
        with anyio.fail_after(10):
            await server.send(b"bye")
            await server.aclose()  # no close_notify exchange: returns at once
            assert await receive_exactly(client, 3) == b"bye"
            with pytest.raises(anyio.EndOfStream):  # a ragged EOF is just EOF here
                await client.receive()
            await client.aclose()
