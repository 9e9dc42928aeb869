"""The driver's fast paths and what they change on the wire.

``send`` and ``receive`` first try one step without the retry loop and hand anything
unusual to it (see ``_driver.py``); the rest of the suite runs through both. These
tests pin what the fast paths promise on their own, the one wire-visible change
made with them (a TLS 1.3 server's session tickets leave with its first flush), and
what was changed to make a stream cheaper to build.
"""

from __future__ import annotations

import ssl
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream, ObjectStream
from anyio.streams.tls import TLSAttribute

from anyiotls import TLSStream
from anyiotls._context import encode_hostname
from anyiotls._driver import (
    _PUBLIC_CHECKPOINTS,
    TRANSPORT_RECEIVE_SIZE,
    _backend_checkpoints,
    _receive_size,
    _receive_sizes,
)
from anyiotls._engine import TLSEngine

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


# -- cheaper construction -----------------------------------------------------------


async def test_ascii_host_name_reaches_wrap_bio_as_bytes_and_reads_back_as_str(
    client_context: ssl.SSLContext,
) -> None:
    # Bytes skip Python's idna codec in wrap_bio(); what the SSLObject reports is
    # the same str as before.
    assert encode_hostname("LocalHost") == b"LocalHost"
    assert encode_hostname("faß.de") == b"xn--fa-hia.de"  # IDNA 2008, as anyio
    assert encode_hostname(None) is None
    transport, _ = memory_transports()
    stream = TLSStream(transport, hostname="localhost", ssl_context=client_context)
    assert stream.extra(TLSAttribute.ssl_object).server_hostname == "localhost"


async def test_malformed_ascii_host_name_is_passed_on_as_anyio_does(
    client_context: ssl.SSLContext,
) -> None:
    # Python's idna codec used to reject an empty label at construction; anyio
    # passes ASCII names on as they are (the handshake then fails verification).
    transport, _ = memory_transports()
    stream = TLSStream(transport, hostname="a..b", ssl_context=client_context)
    assert stream.extra(TLSAttribute.ssl_object).server_hostname == "a..b"


class ByteTransport(ByteStream):
    async def receive(self, max_bytes: int = 65536) -> bytes:
        raise NotImplementedError  # pragma: no cover

    async def send(self, item: bytes) -> None:
        raise NotImplementedError  # pragma: no cover

    async def send_eof(self) -> None:
        raise NotImplementedError  # pragma: no cover

    async def aclose(self) -> None:
        raise NotImplementedError  # pragma: no cover


def test_receive_size_is_remembered_per_transport_type() -> None:
    objects = CountingTransport(None)
    raw = ByteTransport()
    for _ in range(2):  # the second answer comes from the per-type memory
        assert _receive_size(raw.receive) == TRANSPORT_RECEIVE_SIZE
        assert _receive_size(objects.receive) is None
        assert _receive_size(raw.send) is None  # not a receive method
    assert (ByteTransport, "receive") in _receive_sizes
    assert (CountingTransport, "receive") in _receive_sizes


def test_only_a_server_engine_reads_the_client_auth_settings(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    for context in (client_context, server_context):
        context.post_handshake_auth = True
    server_context.verify_mode = ssl.CERT_OPTIONAL
    client = TLSEngine(client_context, server_side=False, server_hostname=b"x")
    server = TLSEngine(server_context, server_side=True, server_hostname=None)
    assert (client.server_side, client.client_auth_configured) == (False, False)
    assert (server.server_side, server.client_auth_configured) == (True, True)
    # Read at creation, as OpenSSL copies them in wrap_bio().
    server_context.verify_mode = ssl.CERT_NONE
    assert server.client_auth_configured is True
    later = TLSEngine(server_context, server_side=True, server_hostname=None)
    assert later.client_auth_configured is False
