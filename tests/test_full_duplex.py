"""Concurrency: one task sends while another receives; conflicts; shared handshakes."""

from __future__ import annotations

import hashlib
import os
import ssl

import anyio
import pytest

from anyiotls import TLSStream

from .pairs import TRANSPORTS, memory_transports, receive_exactly, tls_pair

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_both_sides_send_and_receive_at_once_without_deadlock(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext, transport: str
) -> None:
    # Each side pushes 2 MiB while the other does the same: a send that waited for
    # a receive (or the reverse) would deadlock once the transport buffers fill.
    size = 2 * 1024 * 1024
    payloads = {"client": os.urandom(size), "server": os.urandom(size)}
    digests: dict[str, str] = {}
    async with tls_pair(client_context, server_context, transport=transport) as (
        client,
        server,
    ):
        streams = {"client": client, "server": server}

        async def pump(name: str) -> None:
            data = payloads[name]
            for offset in range(0, size, 50_000):
                await streams[name].send(data[offset : offset + 50_000])

        async def drain(name: str) -> None:
            received = await receive_exactly(streams[name], size)
            digests[name] = hashlib.sha256(received).hexdigest()

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for name in streams:
                    tg.start_soon(pump, name)
                    tg.start_soon(drain, name)
    assert digests["server"] == hashlib.sha256(payloads["client"]).hexdigest()
    assert digests["client"] == hashlib.sha256(payloads["server"]).hexdigest()


async def test_second_sender_gets_busy_at_once_and_stream_stays_usable(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    ct, st = memory_transports(max_buffer=0)  # a send blocks until the peer reads
    from .pairs import handshake_pair

    client, server = await handshake_pair(ct, st, client_context, server_context)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.send, b"first")
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(anyio.BusyResourceError):
                await client.send(b"second")
            assert await server.receive() == b"first"
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.send, b"third")
            assert await server.receive() == b"third"


async def test_second_receiver_gets_busy_at_once_and_stream_stays_usable(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    async with tls_pair(client_context, server_context) as (client, server):
        received: list[bytes] = []
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:

                async def receiver() -> None:
                    received.append(await server.receive())

                tg.start_soon(receiver)
                await anyio.wait_all_tasks_blocked()
                with pytest.raises(anyio.BusyResourceError):
                    await server.receive()
                await client.send(b"for the first receiver")
        assert received == [b"for the first receiver"]


async def test_send_while_another_task_receives_does_not_wait_for_it(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    async with tls_pair(client_context, server_context) as (client, server):
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.receive)  # blocks: the server sends nothing yet
                await anyio.wait_all_tasks_blocked()
                await client.send(b"ping")  # must not wait for the receiver
                assert await server.receive() == b"ping"
                await server.send(b"pong")


async def test_task_waiting_for_a_failed_handshake_gets_its_error(
    server_context: ssl.SSLContext,
) -> None:
    ct, st = memory_transports()
    server = TLSStream(st, server_side=True, ssl_context=server_context)
    outcomes: dict[str, BaseException] = {}

    async def handshake(name: str) -> None:
        try:
            await server.do_handshake()
        except Exception as exc:
            outcomes[name] = exc

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(handshake, "first")
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(handshake, "second")
            await anyio.wait_all_tasks_blocked()
            await ct.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(outcomes["first"], ssl.SSLError)
    assert outcomes["second"] is outcomes["first"]  # the very same error


async def test_task_waiting_for_a_cancelled_handshake_does_not_hang(
    server_context: ssl.SSLContext,
) -> None:
    _, st = memory_transports()
    server = TLSStream(st, server_side=True, ssl_context=server_context)
    outcome: list[BaseException] = []

    async def waiter() -> None:
        try:
            await server.do_handshake()
        except anyio.BrokenResourceError as exc:
            outcome.append(exc)

    runner_scope = anyio.CancelScope()

    async def runner() -> None:
        with runner_scope:
            await server.do_handshake()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            runner_scope.cancel()
    assert runner_scope.cancelled_caught
    assert len(outcome) == 1
    assert "cancel" in str(outcome[0].__cause__).lower()
