"""Hostile and slow peers: each ends in a documented way, bounded, without piling
up memory, and the server goes on serving everyone else.

* a peer that never finishes its handshake (``TLSListener``'s ``handshake_timeout``);
* a peer that never reads (our ``send`` blocks in the transport and stays
  cancellable; nothing piles up);
* a peer that floods while the application does not read (nothing is read from
  the transport beyond what ``receive`` needs);
* close_notify followed by garbage;
* a second ClientHello: twice at the start, injected in plaintext after the
  handshake, and a real TLS 1.2 renegotiation started by the client (pyOpenSSL).
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
import trustme
from anyio.abc import SocketAttribute

import anyiotls._driver
from anyiotls import TLSListener, TLSStream

from .faces import Contexts
from .harness import FULL, Metered, memory_pair, record

pytestmark = pytest.mark.anyio

MakeContexts = Callable[[str, bool], Contexts]

#: Upper bound for one whole test.
TIMEOUT = 20

#: The most a single transport receive may ask for (the driver's read size).
MAX_READ = max(65536, getattr(anyiotls._driver, "TRANSPORT_RECEIVE_SIZE", 65536))
#: The largest TLS record on the wire (2**14 + 2048 bytes of ciphertext + header).
MAX_RECORD = 2**14 + 2048 + 5


@asynccontextmanager
async def tcp_pair(
    buffer_size: int | None = None,
) -> AsyncIterator[tuple[anyio.abc.SocketStream, anyio.abc.SocketStream]]:
    """A connected loopback TCP pair (client end, server end), optionally with
    small kernel buffers so that back-pressure sets in early."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener:
        port = listener.extra(SocketAttribute.local_port)
        inner = listener.listeners[0]
        accepted: list[Any] = []
        async with anyio.create_task_group() as tg:

            async def accept() -> None:
                accepted.append(await inner.accept())  # type: ignore[attr-defined]

            tg.start_soon(accept)
            client = await anyio.connect_tcp("127.0.0.1", port)
        server = accepted[0]
    if buffer_size is not None:
        for stream, option in ((client, socket.SO_SNDBUF), (server, socket.SO_RCVBUF)):
            raw = stream.extra(SocketAttribute.raw_socket)
            raw.setsockopt(socket.SOL_SOCKET, option, buffer_size)
    try:
        yield client, server
    finally:
        await anyio.aclose_forcefully(client)
        await anyio.aclose_forcefully(server)


async def receive_forever(stream: Any) -> None:
    while True:
        await stream.receive()


async def handshake(client: TLSStream, server: TLSStream) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.do_handshake)
        await client.do_handshake()


# -- a peer that never finishes the handshake ---------------------------------------


@pytest.mark.slow
async def test_stalled_handshakes_time_out_and_everyone_else_is_served(
    make_contexts: MakeContexts, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "anyiotls")  # the tracebacks are DEBUG records
    contexts = make_contexts("1.3", False)
    stalled_count = 40 if FULL else 10
    order: list[str] = []
    inner = await anyio.create_tcp_listener(local_host="127.0.0.1")
    listener = TLSListener(inner, contexts.server, handshake_timeout=1.0)
    port = listener.extra(SocketAttribute.local_port)

    async def handler(stream: TLSStream) -> None:
        async with stream:
            await stream.send(await stream.receive())

    async def served_client(number: int) -> None:
        stream = await TLSStream.wrap(
            await anyio.connect_tcp("127.0.0.1", port),
            hostname="localhost",
            ssl_context=contexts.client,
        )
        async with stream:
            await stream.send(b"hello %d" % number)
            assert await stream.receive() == b"hello %d" % number
        order.append("served")

    async def stalled_client(first_bytes: bytes) -> None:
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            if first_bytes:
                await stream.send(first_bytes)
            # The server gives up on us: it closes the connection.
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await receive_forever(stream)
        order.append("dropped")

    # Half a ClientHello, a record header and nothing more, or not a byte at all.
    client_hello = await first_client_hello(contexts.client)
    starts = [client_hello[: len(client_hello) // 2], client_hello[:5], b""]
    with anyio.fail_after(TIMEOUT):
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handler)
            async with anyio.create_task_group() as stalled:
                for number in range(stalled_count):
                    stalled.start_soon(stalled_client, starts[number % len(starts)])
                await anyio.wait_all_tasks_blocked()
                async with anyio.create_task_group() as served:
                    for number in range(5):
                        served.start_soon(served_client, number)
            await served_client(99)  # and still serving after the drops
            tg.cancel_scope.cancel()
    # Everyone was served while the stalled handshakes were pending.
    assert order[:5] == ["served"] * 5
    assert order.count("dropped") == stalled_count
    assert order[-1] == "served"
    timeouts = [
        r
        for r in caplog.records
        if r.exc_info and isinstance(r.exc_info[1], TimeoutError)
    ]
    assert len(timeouts) == stalled_count
    record("hostile: stalled handshakes dropped", stalled_count)


async def first_client_hello(context: ssl.SSLContext) -> bytes:
    """The bytes a client sends first (its ClientHello)."""
    ours, theirs = memory_pair()
    stream = TLSStream(ours, hostname="localhost", ssl_context=context)
    with anyio.move_on_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(stream.do_handshake)
            hello = await theirs.receive()
            tg.cancel_scope.cancel()
    return hello


# -- a peer that never reads -----------------------------------------------------------


async def test_a_peer_that_never_reads_blocks_our_send_which_stays_cancellable(
    make_contexts: MakeContexts,
) -> None:
    contexts = make_contexts("1.3", False)
    chunk = os.urandom(16384)
    completed = 0
    async with tcp_pair(buffer_size=65536) as (client_t, server_t):
        ours = Metered(client_t)
        client = TLSStream(ours, hostname="localhost", ssl_context=contexts.client)
        server = TLSStream(server_t, server_side=True, ssl_context=contexts.server)
        with anyio.fail_after(TIMEOUT):
            await handshake(client, server)  # and from now on the server never reads
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                async with anyio.create_task_group() as tg:

                    async def sender() -> None:
                        nonlocal completed
                        while True:
                            await client.send(chunk)
                            completed += 1

                    tg.start_soon(sender)
                    await anyio.wait_all_tasks_blocked()
                    handed_over = ours.sent
                    in_flight = tracemalloc.get_traced_memory()[0] - before
                    await anyio.wait_all_tasks_blocked()
                    # Blocked for good in the transport, not spinning: nothing
                    # more reached it. Not buffering either: what the process
                    # holds is about the one item being sent, however many went
                    # before it.
                    assert ours.sent == handed_over
                    assert completed >= 2
                    assert in_flight < 256 * 1024, in_flight
                    tg.cancel_scope.cancel()  # and the blocked send is cancellable
            finally:
                tracemalloc.stop()
            # Cancelled inside the transport's send: documented as broken.
            with pytest.raises(anyio.BrokenResourceError):
                await client.send(b"more")
    # What reached the transport is what the completed sends encrypted, plus at
    # most part of the record(s) of the one cancelled send.
    overhead = 22 * (len(chunk) // 16384 + 1)  # TLS 1.3 record overhead per item
    assert ours.sent <= (completed + 1) * (len(chunk) + overhead) + 1024
    record("hostile: bytes sent before a never-reading peer blocked us", ours.sent)


# -- a peer that floods while the application does not read ---------------------------


async def test_a_flood_is_not_read_beyond_what_receive_needs(
    make_contexts: MakeContexts,
) -> None:
    contexts = make_contexts("1.3", False)
    chunk = os.urandom(16384)
    flooded = 0
    async with tcp_pair() as (client_t, server_t):
        ours = Metered(server_t)
        client = TLSStream(client_t, hostname="localhost", ssl_context=contexts.client)
        server = TLSStream(ours, server_side=True, ssl_context=contexts.server)
        with anyio.fail_after(TIMEOUT):
            await handshake(client, server)
            after_handshake = ours.received
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                async with anyio.create_task_group() as tg:

                    async def flood() -> None:
                        nonlocal flooded
                        while True:
                            await client.send(chunk)
                            flooded += len(chunk)

                    tg.start_soon(flood)
                    await anyio.wait_all_tasks_blocked()
                    # The flooding peer is stopped by back-pressure...
                    stopped_at = flooded
                    await anyio.wait_all_tasks_blocked()
                    assert flooded == stopped_at
                    # ... and we have read nothing: no task of ours reads ahead.
                    assert ours.received == after_handshake
                    assert tracemalloc.get_traced_memory()[0] - before < 256 * 1024
                    # One small receive reads what one record needs: one transport
                    # read (a second one only if the first held no whole record).
                    assert len(await server.receive(100)) == 100
                    assert ours.received - after_handshake <= MAX_READ + MAX_RECORD
                    tg.cancel_scope.cancel()
            finally:
                tracemalloc.stop()
    record(
        "hostile: bytes a flooding peer got into the kernel before blocking", flooded
    )


# -- close_notify followed by garbage -----------------------------------------------


GARBAGE = b"\x17\x03\x03\x00\x10" + os.urandom(40) + b"not TLS at all\r\n"


async def closed_then_garbage(make_contexts: MakeContexts) -> tuple[TLSStream, Any]:
    """Our client, and the peer's raw transport after: data, close_notify (a TLS
    1.3 half-close), garbage, then the end of the transport."""
    contexts = make_contexts("1.3", False)
    ours_t, peer_t = memory_pair()
    client = TLSStream(ours_t, hostname="localhost", ssl_context=contexts.client)
    peer = TLSStream(peer_t, server_side=True, ssl_context=contexts.server)
    await handshake(client, peer)
    await peer.send(b"data")
    await peer.send_eof()  # close_notify
    await peer_t.send(GARBAGE)
    await peer_t.send_eof()
    return client, peer_t


async def test_close_notify_then_garbage_receive_ends_cleanly(
    make_contexts: MakeContexts,
) -> None:
    with anyio.fail_after(TIMEOUT):
        client, _ = await closed_then_garbage(make_contexts)
        assert await client.receive() == b"data"
        for _ in range(3):  # the end, and it stays the end: the garbage is ignored
            with pytest.raises(anyio.EndOfStream):
                await client.receive()
        await client.aclose()  # never raises


async def test_close_notify_then_garbage_is_the_leftover_of_unwrap(
    make_contexts: MakeContexts,
) -> None:
    with anyio.fail_after(TIMEOUT):
        client, _ = await closed_then_garbage(make_contexts)
        transport, leftover = await client.unwrap()
        rest = bytearray(leftover)
        with suppress(anyio.EndOfStream):
            while True:
                rest += await transport.receive()
        # After close_notify the bytes are plaintext again (a STARTTLS downgrade):
        # handed back exactly, never decrypted or delivered as TLS data.
        assert rest == GARBAGE


# -- a second ClientHello -------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.2", "1.3"])
async def test_a_client_hello_sent_twice_fails_the_handshake(
    make_contexts: MakeContexts, version: str
) -> None:
    contexts = make_contexts(version, False)
    hello = await first_client_hello(contexts.client)
    ours_t, peer_t = memory_pair()
    await peer_t.send(hello + hello)
    server = TLSStream(ours_t, server_side=True, ssl_context=contexts.server)

    async def handshake_and_receive() -> None:
        await server.do_handshake()
        await server.receive()  # (if the first one was answered)

    with anyio.fail_after(TIMEOUT):
        with pytest.raises((ssl.SSLError, anyio.BrokenResourceError)) as info:
            await handshake_and_receive()
    error = info.value
    if isinstance(error, anyio.BrokenResourceError):
        error = error.__cause__  # type: ignore[assignment]
    assert isinstance(error, ssl.SSLError)
    assert not isinstance(error, ssl.SSLEOFError)
    with pytest.raises(anyio.ClosedResourceError):
        await ours_t.send(b"x")  # the transport was closed


@pytest.mark.parametrize("version", ["1.2", "1.3"])
async def test_a_client_hello_injected_after_the_handshake_breaks_the_stream(
    make_contexts: MakeContexts, version: str
) -> None:
    contexts = make_contexts(version, False)
    client_t, server_t = memory_pair()
    client = TLSStream(client_t, hostname="localhost", ssl_context=contexts.client)
    server = TLSStream(server_t, server_side=True, ssl_context=contexts.server)
    hello = await first_client_hello(contexts.client)
    with anyio.fail_after(TIMEOUT):
        await handshake(client, server)
        await client.send(b"before")
        await client_t.send(hello)  # a plaintext ClientHello in the record stream
        await client.send(b"after")
        assert await server.receive() == b"before"
        with pytest.raises(anyio.BrokenResourceError) as info:
            await server.receive()
        assert isinstance(info.value.__cause__, ssl.SSLError)
        # The server told the client why (an alert), so the client fails too,
        # with a TLS error rather than a hang or a silent end.
        with pytest.raises(anyio.BrokenResourceError) as client_info:
            await client.receive()
        assert isinstance(client_info.value.__cause__, ssl.SSLError)
        assert not isinstance(client_info.value.__cause__, ssl.SSLEOFError)


async def test_a_client_that_renegotiates_tls12_is_refused(
    make_contexts: MakeContexts, tmp_path: Path, ca: trustme.CA
) -> None:
    # A real second ClientHello: pyOpenSSL's client starts a TLS 1.2 renegotiation
    # (RFC 5746) inside the encrypted connection.
    from OpenSSL import SSL

    contexts = make_contexts("1.2", False)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_max_proto_version(SSL.TLS1_2_VERSION)
    context.load_verify_locations(str(ca_file))
    context.set_verify(SSL.VERIFY_PEER, lambda *args: bool(args[-1]))
    client_t, server_t = memory_pair()
    server = TLSStream(server_t, server_side=True, ssl_context=contexts.server)
    conn = SSL.Connection(context, None)
    conn.set_connect_state()
    conn.set_tlsext_host_name(b"localhost")

    async def flush() -> None:
        out = bytearray()
        with suppress(SSL.WantReadError):
            while True:
                out += conn.bio_read(65536)
        if out:
            await client_t.send(bytes(out))

    async def drive(step: Callable[[], Any]) -> Any:
        while True:
            try:
                result = step()
            except SSL.WantReadError:
                await flush()
                conn.bio_write(await client_t.receive())
                continue
            await flush()
            return result

    server_outcome: list[BaseException] = []

    async def echo() -> None:
        try:
            while True:
                await server.send(await server.receive())
        except (anyio.EndOfStream, anyio.BrokenResourceError) as exc:
            server_outcome.append(exc)

    async def exchange(message: bytes) -> bytes:
        await drive(lambda: conn.send(message))
        return bytes(await drive(lambda: conn.recv(65536)))

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.do_handshake)
            await drive(conn.do_handshake)
        async with anyio.create_task_group() as tg:
            tg.start_soon(echo)
            assert await exchange(b"before") == b"before"
            assert conn.renegotiate()
            # OpenSSL 3 servers refuse a client's renegotiation by default (no
            # SSL_OP_ALLOW_CLIENT_RENEGOTIATION): a no_renegotiation warning, on
            # which OpenSSL's client gives up with a fatal handshake_failure alert.
            with pytest.raises(SSL.Error, match="no renegotiation"):
                await drive(conn.do_handshake)  # the second ClientHello, encrypted
            await flush()  # the client's fatal alert
            await client_t.send_eof()
        # Our server ends with the documented error, caused by that alert.
        [outcome] = server_outcome
        assert isinstance(outcome, anyio.BrokenResourceError)
        assert isinstance(outcome.__cause__, ssl.SSLError)
        assert "HANDSHAKE_FAILURE" in str(outcome.__cause__)
