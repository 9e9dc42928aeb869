"""The driver's fast paths and what they change on the wire.

``send`` and ``receive`` first try one step without the retry loop and hand anything
unusual to it (see ``_driver.py``); the rest of the suite runs through both. These
tests pin what the fast paths promise on their own, and the one wire-visible change
made with them: a TLS 1.3 server's session tickets leave with its first flush.
"""

from __future__ import annotations

import ssl
from typing import Any

import anyio
import pytest
from anyio.abc import ObjectStream
from anyio.streams.tls import TLSAttribute

from anyiotls import TLSStream
from anyiotls._driver import _PUBLIC_CHECKPOINTS, _backend_checkpoints

from .pairs import handshake_pair, memory_transports

pytestmark = pytest.mark.anyio


class CountingTransport(ObjectStream[bytes]):
    """An object-stream transport that records every item it sends."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sent: list[bytes] = []

    async def send(self, item: bytes) -> None:
        self.sent.append(bytes(item))
        await self.inner.send(item)

    async def receive(self) -> bytes:
        data: bytes = await self.inner.receive()
        return data

    async def send_eof(self) -> None:
        pass

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_tls13_server_sends_its_tickets_with_its_first_send(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    ct, st = memory_transports()
    counting = CountingTransport(st)
    client, server = await handshake_pair(ct, counting, client_context, server_context)
    assert server.extra(TLSAttribute.tls_version) == "TLSv1.3"
    # One flight in the handshake: ServerHello ... Finished. No tickets yet.
    assert len(counting.sent) == 1
    with anyio.fail_after(10):
        await server.send(b"first")
        assert len(counting.sent) == 2  # the tickets and the data, in one send
        assert await client.receive() == b"first"
        # The client has read them: it has a session to resume.
        assert client.extra(TLSAttribute.ssl_object).session
        await server.send(b"second")
        assert await client.receive() == b"second"
    tickets_and_first, second = counting.sent[1], counting.sent[2]
    assert len(tickets_and_first) > len(second) + 200  # two tickets came along


async def test_tls12_server_finishes_its_handshake_at_once(
    client_context_tls12: ssl.SSLContext, server_context_tls12: ssl.SSLContext
) -> None:
    # Only TLS 1.3 tickets are held: a TLS 1.2 server's last flight is its Finished.
    ct, st = memory_transports()
    counting = CountingTransport(st)
    client, server = await handshake_pair(
        ct, counting, client_context_tls12, server_context_tls12
    )
    assert len(counting.sent) == 2
    with anyio.fail_after(10):
        await client.send(b"x")
        assert await server.receive() == b"x"


async def test_client_that_only_sends_over_an_unbuffered_transport_does_not_hang(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    # Both directions hold nothing: a send waits for the peer's receive. Had the
    # server sent its tickets at the end of its handshake, it would wait for a
    # client that only sends, while the client's first send waited for a server
    # still in its handshake.
    ct, st = memory_transports(max_buffer=0, reverse_buffer=0)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            result: dict[str, bytes] = {}

            async def serve() -> None:
                server = await TLSStream.wrap(
                    st, server_side=True, ssl_context=server_context
                )
                result["received"] = await server.receive()

            tg.start_soon(serve)
            client = await TLSStream.wrap(
                ct, hostname="localhost", ssl_context=client_context
            )
            await client.send(b"the client only sends")
    assert result["received"] == b"the client only sends"


async def test_checkpoints_are_the_running_event_loops_own(
    anyio_backend_name: str,
) -> None:
    found = _backend_checkpoints()
    assert found is not _PUBLIC_CHECKPOINTS
    assert found is _backend_checkpoints()  # one per backend, shared by all streams
    module = found.checkpoint_if_cancelled.__module__
    expected = "trio" if anyio_backend_name == "trio" else "anyio._backends._asyncio"
    assert module.startswith(expected)
    # They behave as AnyIO's public ones do: a cancelled scope raises at the check.
    with anyio.CancelScope() as scope:
        scope.cancel()
        await found.checkpoint_if_cancelled()
        pytest.fail("not cancelled")  # pragma: no cover
    assert scope.cancelled_caught


async def test_send_in_a_cancelled_scope_takes_no_fast_path_past_the_check(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    # The cancellation check comes before the write, in the fast path too: a send
    # made in an already-cancelled scope encrypts nothing (the peer would see a
    # gap in the record sequence numbers otherwise, and fail).
    ct, st = memory_transports()
    counting = CountingTransport(ct)
    client, server = await handshake_pair(counting, st, client_context, server_context)
    sends = len(counting.sent)
    for _ in range(3):
        with anyio.CancelScope() as scope:
            scope.cancel()
            await client.send(b"never")
        assert scope.cancelled_caught
    assert len(counting.sent) == sends
    with anyio.fail_after(10):
        await client.send(b"only this")
        assert await server.receive() == b"only this"
