"""Bad input from the peer or the caller: a clear error, never a hang."""

from __future__ import annotations

import ssl

import anyio
import pytest

from anyiotls import TLSStream

from .pairs import memory_transports, tcp_transports, tls_pair

pytestmark = pytest.mark.anyio


async def assert_closed(transport: object) -> None:
    with pytest.raises(anyio.ClosedResourceError):
        await transport.send(b"x")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n", id="http"),
        pytest.param(bytes(range(256)) * 4, id="random"),
        pytest.param(b"\x16\x03\x01\xff\xff" + b"\x00" * 100, id="absurd-length"),
    ],
)
async def test_server_fed_garbage_raises_ssl_error_and_closes_transport(
    server_context: ssl.SSLContext, garbage: bytes
) -> None:
    ct, st = memory_transports()
    await ct.send(garbage)
    await ct.send_stream.aclose()  # then EOF: nothing more will come
    with anyio.fail_after(10):
        with pytest.raises((ssl.SSLError, anyio.BrokenResourceError)) as info:
            await TLSStream.wrap(st, server_side=True, ssl_context=server_context)
    if isinstance(info.value, anyio.BrokenResourceError):
        assert isinstance(info.value.__cause__, ssl.SSLError)
    await assert_closed(st)


async def test_http_request_instead_of_client_hello_is_an_ssl_error(
    server_context: ssl.SSLContext,
) -> None:
    ct, st = memory_transports()
    await ct.send(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n")
    with anyio.fail_after(10):
        with pytest.raises(ssl.SSLError, match=r"WRONG_VERSION_NUMBER|HTTP_REQUEST"):
            await TLSStream.wrap(st, server_side=True, ssl_context=server_context)


async def test_peer_closing_mid_handshake_is_broken_resource(
    client_context: ssl.SSLContext,
) -> None:
    async with tcp_transports() as (ct, st):
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:

                async def rude_server() -> None:
                    await st.receive()  # the ClientHello
                    await st.aclose()

                tg.start_soon(rude_server)
                with pytest.raises(anyio.BrokenResourceError):
                    await TLSStream.wrap(
                        ct, hostname="localhost", ssl_context=client_context
                    )
        await assert_closed(ct)


async def test_wrong_hostname_keeps_the_verification_error_type(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    ct, st = memory_transports()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:

            async def server_side() -> None:
                with pytest.raises((ssl.SSLError, anyio.BrokenResourceError)):
                    await TLSStream.wrap(
                        st, server_side=True, ssl_context=server_context
                    )

            tg.start_soon(server_side)
            with pytest.raises(ssl.SSLCertVerificationError):
                await TLSStream.wrap(
                    ct, hostname="wrong.example", ssl_context=client_context
                )
    await assert_closed(ct)


async def test_truncated_record_then_eof_is_broken_resource(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    async with tls_pair(client_context, server_context) as (client, server):
        await server.transport_stream.send(b"\x17\x03\x03\x00\x40" + b"\x00" * 10)
        await server.transport_stream.aclose()
        with anyio.fail_after(10):
            with pytest.raises(anyio.BrokenResourceError):
                await client.receive()


async def test_corrupted_record_breaks_the_stream_with_the_first_error(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    async with tls_pair(client_context, server_context) as (client, server):
        await server.transport_stream.send(b"\x17\x03\x03\x00\x20" + b"\x01" * 32)
        with anyio.fail_after(10):
            with pytest.raises(anyio.BrokenResourceError) as first:
                await client.receive()
            with pytest.raises(anyio.BrokenResourceError) as second:
                await client.receive()
        assert isinstance(first.value.__cause__, ssl.SSLError)
        assert not isinstance(first.value.__cause__, ssl.SSLEOFError)
        assert second.value.__cause__ is first.value.__cause__


async def test_send_of_text_raises_type_error_and_stream_stays_usable(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    async with tls_pair(client_context, server_context) as (client, server):
        with pytest.raises(TypeError):
            await client.send("text")  # type: ignore[arg-type]
        await client.send(b"bytes")
        with anyio.fail_after(10):
            assert await server.receive() == b"bytes"


async def test_ssl_context_of_wrong_type_is_a_type_error() -> None:
    ct, _ = memory_transports()
    with pytest.raises(TypeError, match="SSLContext"):
        TLSStream(ct, ssl_context=object())  # type: ignore[arg-type]
