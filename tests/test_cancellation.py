"""What a cancellation leaves behind, at each await point (see _driver.py's table)."""

from __future__ import annotations

import ssl

import anyio
import anyio.lowlevel
import pytest

from anyiotls import TLSStream

from .pairs import TCP_TRANSPORTS, handshake_pair, memory_transports, tls_pair

pytestmark = pytest.mark.anyio


async def test_receive_cancelled_while_waiting_loses_nothing(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
) -> None:
    async with tls_pair(client_context, server_context) as (client, server):
        with anyio.fail_after(10):
            with anyio.move_on_after(0.05) as scope:
                await server.receive()
            assert scope.cancelled_caught
            await client.send(b"after the cancel")
            assert await server.receive() == b"after the cancel"


async def test_receive_cancelled_with_data_ready_leaves_data_for_next_receive(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
) -> None:
    async with tls_pair(client_context, server_context) as (client, server):
        await client.send(b"ready")
        await anyio.wait_all_tasks_blocked()
        with anyio.CancelScope() as scope:
            scope.cancel()
            await server.receive()
        assert await server.receive() == b"ready"


async def test_send_cancelled_before_start_sends_nothing_and_stream_stays_usable(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
) -> None:
    async with tls_pair(client_context, server_context) as (client, server):
        with anyio.CancelScope() as scope:
            scope.cancel()
            await client.send(b"never")
        await client.send(b"only this")
        with anyio.fail_after(10):
            assert await server.receive() == b"only this"


async def test_send_cancelled_inside_transport_send_breaks_the_stream(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
) -> None:
    ct, st = memory_transports(max_buffer=0)  # the send blocks: nobody reads
    client, _server = await handshake_pair(ct, st, client_context, server_context)
    with anyio.fail_after(10):
        with anyio.move_on_after(0.05) as scope:
            await client.send(b"stuck")
        assert scope.cancelled_caught
        with pytest.raises(anyio.BrokenResourceError) as info:
            await client.send(b"next")
        assert isinstance(info.value.__cause__, RuntimeError)
        assert "could not be undone" in str(info.value.__cause__)
        with pytest.raises(anyio.BrokenResourceError):
            await client.receive()


async def test_handshake_cancelled_closes_the_transport(
    client_context: ssl.SSLContext,
) -> None:
    ct, st = memory_transports()
    with anyio.fail_after(10):
        with anyio.move_on_after(0.05) as scope:
            await TLSStream.wrap(ct, hostname="localhost", ssl_context=client_context)
        assert scope.cancelled_caught
        await st.receive()  # the ClientHello was sent...
        with pytest.raises(anyio.EndOfStream):
            await st.receive()  # ...and then the transport was closed
        with pytest.raises(anyio.ClosedResourceError):
            await ct.send(b"x")


async def test_unwrap_cancelled_waiting_for_close_notify_can_be_called_again(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
) -> None:
    async with tls_pair(client_context, server_context) as (client, server):
        with anyio.fail_after(10):
            with anyio.move_on_after(0.05) as scope:
                await client.unwrap()  # the server does not answer yet
            assert scope.cancelled_caught
            result: dict[str, bytes] = {}
            async with anyio.create_task_group() as tg:

                async def server_side() -> None:
                    transport, leftover = await server.unwrap()
                    result["server"] = leftover
                    await transport.send(b"plain again")

                tg.start_soon(server_side)
                transport, leftover = await client.unwrap()
            rest = leftover or await transport.receive()
        assert result["server"] == b""
        assert rest == b"plain again"


async def test_aclose_cancelled_closes_the_transport_forcefully(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
) -> None:
    async with tls_pair(client_context, server_context) as (client, _server):
        with anyio.fail_after(10):
            with anyio.move_on_after(0.05) as scope:
                await client.aclose()  # the server never answers close_notify
            assert scope.cancelled_caught
            with pytest.raises(anyio.ClosedResourceError):
                await client.transport_stream.send(b"x")
            with pytest.raises(anyio.ClosedResourceError):
                await client.send(b"x")


@pytest.mark.parametrize("transport", TCP_TRANSPORTS)
async def test_receive_cancelled_mid_stream_keeps_order_across_many_cancels(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
    transport: str,
) -> None:
    # Repeatedly cancel receives at random moments while data flows: whatever
    # arrives, arrives once and in order.
    payload = bytes(range(256)) * 2000
    async with tls_pair(client_context, server_context, transport=transport) as (
        client,
        server,
    ):
        received = bytearray()
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:

                async def sender() -> None:
                    for offset in range(0, len(payload), 997):
                        await client.send(payload[offset : offset + 997])
                        await anyio.lowlevel.checkpoint()

                tg.start_soon(sender)
                while len(received) < len(payload):
                    with anyio.move_on_after(0.0005):
                        received += await server.receive(1500)
        assert received == payload
        assert await receive_exactly_or_nothing(server) == b""


async def receive_exactly_or_nothing(stream: TLSStream) -> bytes:
    with anyio.move_on_after(0.05):
        return await stream.receive()
    return b""
