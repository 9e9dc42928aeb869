"""TLSStream basics: handshake, data, attributes, defaults, checkpoints, nesting."""

from __future__ import annotations

import ssl

import anyio
import anyio.streams.tls
import pytest
from anyio.abc import SocketAttribute

from anyiotls import ChannelBindingError, TLSAttribute, TLSStream

from .pairs import (
    TCP_TRANSPORTS,
    TRANSPORTS,
    memory_transports,
    receive_exactly,
    tls_pair,
)

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
async def test_wrap_handshakes_and_moves_data_both_ways(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
    transport: str,
    version: str,
) -> None:
    client_context.maximum_version = ssl.TLSVersion[version.replace(".", "_")]
    async with tls_pair(client_context, server_context, transport=transport) as (
        client,
        server,
    ):
        assert client.extra(TLSAttribute.tls_version) == version
        assert server.extra(TLSAttribute.tls_version) == version
        payload = bytes(range(256)) * 1000
        with anyio.fail_after(10):
            await client.send(payload)
            assert await receive_exactly(server, len(payload)) == payload
            await server.send(b"pong")
            assert await client.receive() == b"pong"


@pytest.mark.parametrize("transport", TCP_TRANSPORTS)
async def test_attributes_are_anyios_own_and_transport_attributes_pass_through(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
    transport: str,
) -> None:
    server_context.set_alpn_protocols(["h2", "http/1.1"])
    client_context.set_alpn_protocols(["http/1.1"])
    async with tls_pair(client_context, server_context, transport=transport) as (
        client,
        server,
    ):
        assert TLSAttribute is anyio.streams.tls.TLSAttribute
        assert client.extra(anyio.streams.tls.TLSAttribute.alpn_protocol) == "http/1.1"
        assert client.extra(TLSAttribute.cipher)[1] == "TLSv1.3"
        assert client.extra(TLSAttribute.server_side) is False
        assert server.extra(TLSAttribute.server_side) is True
        assert client.extra(TLSAttribute.shared_ciphers) is None
        assert server.extra(TLSAttribute.shared_ciphers)
        assert client.extra(TLSAttribute.standard_compatible) is True
        assert isinstance(client.extra(TLSAttribute.ssl_object), ssl.SSLObject)
        cert = client.extra(TLSAttribute.peer_certificate)
        assert cert is not None
        assert "subjectAltName" in cert
        assert isinstance(client.extra(TLSAttribute.peer_certificate_binary), bytes)
        assert server.extra(TLSAttribute.peer_certificate) is None
        # deliberately unlike anyio: tls-unique is not defined for TLS 1.3 (RFC 9266)
        with pytest.raises(ChannelBindingError, match="RFC 9266"):
            client.extra(TLSAttribute.channel_binding_tls_unique)
        # the socket's own attributes survive the wrapping
        assert client.extra(SocketAttribute.remote_address)[0] == "127.0.0.1"


async def test_wrap_without_context_builds_default_for_the_side() -> None:
    client_transport, server_transport = memory_transports()
    stream = TLSStream(client_transport, hostname="localhost")
    sslobj = stream.extra(TLSAttribute.ssl_object)
    assert sslobj.server_side is False  # hostname given: client
    assert sslobj.server_hostname == "localhost"
    assert sslobj.context.verify_mode == ssl.CERT_REQUIRED
    assert sslobj.context.check_hostname
    if hasattr(ssl, "OP_IGNORE_UNEXPECTED_EOF"):
        assert not sslobj.context.options & ssl.OP_IGNORE_UNEXPECTED_EOF
    server = TLSStream(server_transport)
    assert server.extra(TLSAttribute.server_side) is True  # no hostname: server


async def test_international_hostname_is_resolved_with_idna2008() -> None:
    transport, _ = memory_transports()
    stream = TLSStream(transport, hostname="faß.de")  # IDNA 2003 would map to fass.de
    assert stream.extra(TLSAttribute.ssl_object).server_hostname == "xn--fa-hia.de"


async def test_two_step_construction_then_do_handshake(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
) -> None:
    ct, st = memory_transports()
    client = TLSStream(ct, hostname="localhost", ssl_context=client_context)
    server = TLSStream(st, server_side=True, ssl_context=server_context)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.do_handshake)
            await client.do_handshake()
        await client.send(b"hi")
        assert await server.receive() == b"hi"


@pytest.mark.parametrize("transport", TCP_TRANSPORTS)
async def test_receive_never_returns_more_than_max_bytes(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
    transport: str,
) -> None:
    async with tls_pair(client_context, server_context, transport=transport) as (
        client,
        server,
    ):
        data = bytes(range(256)) * 400
        with anyio.fail_after(10):
            for offset in range(0, len(data), 1000):
                await client.send(data[offset : offset + 1000])
            received = bytearray()
            while len(received) < len(data):
                chunk = await server.receive(777)
                assert 0 < len(chunk) <= 777
                received += chunk
        assert received == data
        with pytest.raises(ValueError):
            await server.receive(0)


@pytest.mark.parametrize("transport", TCP_TRANSPORTS)
async def test_tls_over_tls(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
    transport: str,
) -> None:
    async with tls_pair(client_context, server_context, transport=transport) as (
        outer_client,
        outer_server,
    ):
        result: dict[str, TLSStream] = {}
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:

                async def inner_server() -> None:
                    result["s"] = await TLSStream.wrap(
                        outer_server, server_side=True, ssl_context=server_context
                    )

                tg.start_soon(inner_server)
                inner_client = await TLSStream.wrap(
                    outer_client, hostname="localhost", ssl_context=client_context
                )
            inner_server_stream = result["s"]
            await inner_client.send(b"inside" * 10000)
            assert (
                await receive_exactly(inner_server_stream, 60000) == b"inside" * 10000
            )
            async with anyio.create_task_group() as tg:
                tg.start_soon(inner_server_stream.aclose)
                await inner_client.aclose()


async def test_no_background_tasks(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
) -> None:
    before = len(anyio.get_running_tasks())
    async with tls_pair(client_context, server_context) as (client, server):
        assert len(anyio.get_running_tasks()) == before
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.receive)
            await anyio.wait_all_tasks_blocked()
            # the receiver is the only extra task: nothing was spawned for it
            assert len(anyio.get_running_tasks()) == before + 1
            await client.send(b"x")
        assert len(anyio.get_running_tasks()) == before


async def test_every_public_method_is_a_cancellation_point(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
) -> None:
    async with tls_pair(client_context, server_context) as (client, server):
        await client.send(b"buffered")
        await anyio.wait_all_tasks_blocked()
        calls = {
            "receive (data ready)": lambda: server.receive(),
            "receive (nothing ready)": lambda: client.receive(),
            "send": lambda: client.send(b"x"),
            "send empty": lambda: client.send(b""),
            "send_eof": lambda: client.send_eof(),
            "unwrap": lambda: client.unwrap(),
            "do_handshake (done)": lambda: client.do_handshake(),
        }
        for name, call in calls.items():
            with anyio.CancelScope() as scope:
                scope.cancel()
                await call()
                pytest.fail(f"{name} did not check for cancellation")
            assert scope.cancelled_caught, name
        # the stream is intact after all of that: nothing was sent or consumed
        assert await server.receive() == b"buffered"
        await client.send(b"after")
        assert await server.receive() == b"after"


@pytest.mark.parametrize("anyio_backend", ["trio"])  # assert_checkpoints is trio's
async def test_every_public_method_is_a_trio_checkpoint(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
) -> None:
    from trio.testing import assert_checkpoints

    async with tls_pair(client_context, server_context) as (client, server):
        await client.send(b"ready")
        await anyio.wait_all_tasks_blocked()
        with assert_checkpoints():
            assert await server.receive() == b"ready"  # no transport I/O needed
        with assert_checkpoints():
            await client.send(b"x")
        with assert_checkpoints():
            await client.send(b"")
        with assert_checkpoints():
            await client.do_handshake()
        assert await server.receive() == b"x"
