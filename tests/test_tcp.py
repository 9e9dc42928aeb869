"""connect_tcp / create_tcp_listener and the own TCP transport under them.

The TLS semantics over this transport are the shared suite's (``pairs.TRANSPORTS``
and ``TCP_TRANSPORTS`` include ``"fast"``); here: what the transport itself must do
as an AnyIO socket stream (flow control both ways, EOF and half-close, errors,
cancellation, attributes) and what the two functions add (addresses, happy
eyeballs, IPv6, listeners, STARTTLS in place).
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import struct
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup
from anyio.abc import SocketAttribute

import anyiotls
import anyiotls.starttls
from anyiotls import TLSAttribute, TLSListener, TLSStream
from anyiotls import _asyncio_transport as asyncio_transport
from anyiotls._engine import NEED_DATA, TLSEngine

from .pairs import (
    fast_tcp_transports,
    handshake_bare_server,
    handshake_pair,
    receive_exactly,
    tcp_transports,
)

pytestmark = pytest.mark.anyio

CHUNK = b"x" * 65536


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


HAS_IPV6 = _ipv6_loopback()


@asynccontextmanager
async def tls_server(
    server_context: ssl.SSLContext, **kwargs: Any
) -> AsyncIterator[tuple[TLSListener, int]]:
    """A running echo server from ``create_tcp_listener``; yields (listener, port)."""

    async def echo(stream: TLSStream) -> None:
        async with stream:
            while True:
                try:
                    data = await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                await stream.send(data)

    listener = await anyiotls.create_tcp_listener(ssl_context=server_context, **kwargs)
    port = listener.extra(SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, echo)
        yield listener, port
        tg.cancel_scope.cancel()


# -- connect_tcp and create_tcp_listener ----------------------------------------------


async def test_connect_tcp_returns_tls_stream_with_socket_attributes(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    with anyio.fail_after(10):
        async with tls_server(server_context, local_host="127.0.0.1") as (_, port):
            stream = await anyiotls.connect_tcp(
                "127.0.0.1", port, ssl_context=client_context, tls_hostname="localhost"
            )
            async with stream:
                assert type(stream) is TLSStream
                assert isinstance(stream.transport_stream, anyio.abc.SocketStream)
                assert stream.extra(TLSAttribute.tls_version) == "TLSv1.3"
                assert stream.extra(SocketAttribute.remote_address) == (
                    "127.0.0.1",
                    port,
                )
                assert stream.extra(SocketAttribute.remote_port) == port
                assert stream.extra(SocketAttribute.family) == socket.AF_INET
                local = stream.extra(SocketAttribute.local_address)
                assert local[0] == "127.0.0.1"
                assert stream.extra(SocketAttribute.local_port) == local[1]
                raw = stream.extra(SocketAttribute.raw_socket)
                assert raw.getsockname() == local
                assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                await stream.send(b"ping")
                assert await stream.receive() == b"ping"


async def test_attributes_match_anyios_socket_stream_on_both_ends() -> None:
    async with (
        fast_tcp_transports() as (fast_client, fast_server),
        tcp_transports() as (anyio_client, anyio_server),
    ):
        for fast, reference in (
            (fast_client, anyio_client),
            (fast_server, anyio_server),
        ):
            assert set(fast.extra_attributes) == set(reference.extra_attributes)
            assert fast.extra(SocketAttribute.family) == reference.extra(
                SocketAttribute.family
            )
        assert fast_server.extra(SocketAttribute.remote_address) == fast_client.extra(
            SocketAttribute.local_address
        )


async def test_hostname_defaults_to_remote_host_and_is_checked(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    with anyio.fail_after(10):
        async with tls_server(server_context, local_host="127.0.0.1") as (_, port):
            # the certificate is for localhost and 127.0.0.1: the IP checks out
            async with await anyiotls.connect_tcp(
                "127.0.0.1", port, ssl_context=client_context
            ) as stream:
                await stream.send(b"a")
                assert await stream.receive() == b"a"
            with pytest.raises(ssl.SSLCertVerificationError):
                await anyiotls.connect_tcp(
                    "127.0.0.1",
                    port,
                    ssl_context=client_context,
                    tls_hostname="other.example",
                )


@pytest.mark.skipif(not HAS_IPV6, reason="no IPv6 loopback (::1) on this host")
async def test_ipv6_and_one_listener_on_several_addresses(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    with anyio.fail_after(10):
        # no local_host: every interface, IPv4 and IPv6, one listener
        async with tls_server(server_context) as (listener, _):
            # One dual-stack socket (newer AnyIO) or one socket per family (AnyIO
            # 4.0, which may give each its own ephemeral port): as anyio's listener.
            ports = {
                inner.extra(SocketAttribute.family): inner.extra(
                    SocketAttribute.local_port
                )
                for inner in listener.listener.listeners  # type: ignore[attr-defined]
            }
            for host, family in (
                ("::1", socket.AF_INET6),
                ("127.0.0.1", socket.AF_INET),
            ):
                port = ports.get(family, ports.get(socket.AF_INET6))
                async with await anyiotls.connect_tcp(
                    host, port, ssl_context=client_context, tls_hostname="localhost"
                ) as stream:
                    assert stream.extra(SocketAttribute.family) == family
                    assert stream.extra(SocketAttribute.remote_address)[0] == host
                    await stream.send(host.encode())
                    assert await stream.receive() == host.encode()


def _fake_resolver(
    monkeypatch: pytest.MonkeyPatch, addresses: list[tuple[int, tuple[Any, ...]]]
) -> list[str]:
    """Make every name resolve to *addresses*; return the names looked up."""
    looked_up: list[str] = []

    async def getaddrinfo(host: str, port: Any, **kwargs: Any) -> list[Any]:
        looked_up.append(host)
        return [(af, socket.SOCK_STREAM, 6, "", sa) for af, sa in addresses]

    monkeypatch.setattr(anyio, "getaddrinfo", getaddrinfo)
    return looked_up


async def _closed_port(family: int, host: str) -> int:
    """A port nothing listens on (bound and released)."""
    with socket.socket(family) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


async def test_happy_eyeballs_falls_back_to_the_next_address(
    monkeypatch: pytest.MonkeyPatch,
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
) -> None:
    with anyio.fail_after(10):
        async with tls_server(server_context, local_host="127.0.0.1") as (_, port):
            dead = await _closed_port(socket.AF_INET, "127.0.0.2")
            looked_up = _fake_resolver(
                monkeypatch,
                [
                    (socket.AF_INET, ("127.0.0.2", dead)),  # refused
                    (socket.AF_INET, ("127.0.0.1", port)),
                ],
            )
            async with await anyiotls.connect_tcp(
                "service.test",
                port,
                ssl_context=client_context,
                tls_hostname="localhost",
            ) as stream:
                assert looked_up == ["service.test"]
                assert stream.extra(SocketAttribute.remote_address) == (
                    "127.0.0.1",
                    port,
                )


async def test_happy_eyeballs_starts_the_next_attempt_when_one_hangs(
    monkeypatch: pytest.MonkeyPatch,
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
) -> None:
    """The first address accepts nothing (a full backlog): the second one wins."""
    with anyio.fail_after(20):
        async with tls_server(server_context, local_host="127.0.0.1") as (_, port):
            with socket.socket() as stuck:
                stuck.bind(("127.0.0.3", 0))
                stuck.listen(0)
                fillers = []
                stuck_address = stuck.getsockname()
                try:
                    # fill the backlog: further SYNs are dropped, connect() hangs
                    for _ in range(8):
                        filler = socket.socket()
                        filler.setblocking(False)
                        filler.connect_ex(stuck_address)
                        fillers.append(filler)
                    _fake_resolver(
                        monkeypatch,
                        [
                            (socket.AF_INET, stuck_address),
                            (socket.AF_INET, ("127.0.0.1", port)),
                        ],
                    )
                    async with await anyiotls.connect_tcp(
                        "service.test",
                        port,
                        ssl_context=client_context,
                        tls_hostname="localhost",
                        happy_eyeballs_delay=0.05,
                    ) as stream:
                        assert stream.extra(SocketAttribute.remote_port) == port
                finally:
                    for filler in fillers:
                        filler.close()


async def test_all_attempts_failing_raises_oserror_with_the_causes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dead = [await _closed_port(socket.AF_INET, "127.0.0.1") for _ in range(2)]
    with pytest.raises(OSError, match="All connection attempts failed") as info:
        await anyiotls.connect_tcp("127.0.0.1", dead[0], tls=False)
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    _fake_resolver(
        monkeypatch,
        [
            (socket.AF_INET, ("127.0.0.1", dead[0])),
            (socket.AF_INET, ("127.0.0.1", dead[1])),
        ],
    )
    with pytest.raises(OSError, match="All connection attempts failed") as info:
        await anyiotls.connect_tcp("service.test", dead[0], tls=False)
    group = info.value.__cause__
    assert isinstance(group, BaseExceptionGroup)
    assert len(group.exceptions) == 2


async def test_local_host_binds_the_client_socket() -> None:
    listener = await anyiotls.create_tcp_listener(local_host="127.0.0.1", tls=False)
    async with listener:
        port = listener.extra(SocketAttribute.local_port)
        accepted: list[anyio.abc.SocketStream] = []
        async with anyio.create_task_group() as tg:

            async def accept() -> None:
                accepted.append(await listener.listeners[0].accept())

            tg.start_soon(accept)
            client = await anyiotls.connect_tcp(
                "127.0.0.1", port, local_host="127.0.0.2", tls=False
            )
        async with client, accepted[0]:
            assert client.extra(SocketAttribute.local_address)[0] == "127.0.0.2"
            remote = accepted[0].extra(SocketAttribute.remote_address)
            assert remote == client.extra(SocketAttribute.local_address)


async def test_bad_arguments_raise_clear_errors(server_context: ssl.SSLContext) -> None:
    with pytest.raises(TypeError, match="ssl_context"):
        await anyiotls.create_tcp_listener(local_host="127.0.0.1")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="SSLContext"):
        await anyiotls.create_tcp_listener(ssl_context="no")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="tls=False"):
        await anyiotls.create_tcp_listener(ssl_context=server_context, tls=False)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="tls=False"):
        await anyiotls.connect_tcp(
            "127.0.0.1", 1, ssl_context=server_context, tls=False
        )  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="SSLContext"):
        await anyiotls.connect_tcp("127.0.0.1", 1, ssl_context="no")  # type: ignore[call-overload]


async def test_listener_serves_and_survives_bad_handshakes(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, "anyiotls")
    with anyio.fail_after(20):
        async with tls_server(
            server_context, local_host="127.0.0.1", handshake_timeout=0.2
        ) as (listener, port):
            assert isinstance(listener, TLSListener)
            assert listener.extra(TLSAttribute.standard_compatible) is True
            garbage = await anyiotls.connect_tcp("127.0.0.1", port, tls=False)
            await garbage.send(b"GET / HTTP/1.0\r\n\r\n")
            silent = await anyiotls.connect_tcp("127.0.0.1", port, tls=False)
            for stream in (garbage, silent):
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    await stream.receive()
                await stream.aclose()
            async with await anyiotls.connect_tcp(
                "127.0.0.1", port, ssl_context=client_context, tls_hostname="localhost"
            ) as client:
                await client.send(b"still serving")
                assert await client.receive() == b"still serving"
    assert any("handshake" in r.getMessage().lower() for r in caplog.records)


async def test_closed_listener_raises_closed_resource_error_in_accept() -> None:
    listener = await anyiotls.create_tcp_listener(local_host="127.0.0.1", tls=False)
    inner = listener.listeners[0]
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:

            async def accept() -> None:
                with pytest.raises(anyio.ClosedResourceError):
                    await inner.accept()

            tg.start_soon(accept)
            await anyio.wait_all_tasks_blocked()
            await listener.aclose()
    with pytest.raises(anyio.ClosedResourceError):
        await inner.accept()


# -- STARTTLS: the plaintext stream is upgraded in place ------------------------------


async def test_plaintext_stream_upgrades_in_place_and_unwrap_hands_it_back(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    with anyio.fail_after(10):
        async with fast_tcp_transports() as (client_plain, server_plain):
            await client_plain.send(b"STARTTLS\r\n")
            assert await server_plain.receive() == b"STARTTLS\r\n"
            await server_plain.send(b"220 go ahead\r\n")
            assert await client_plain.receive() == b"220 go ahead\r\n"
            result: dict[str, TLSStream] = {}
            async with anyio.create_task_group() as tg:

                async def server_side() -> None:
                    result["server"] = await TLSStream.wrap(
                        server_plain, server_side=True, ssl_context=server_context
                    )

                tg.start_soon(server_side)
                client = await anyiotls.starttls.upgrade(
                    client_plain, b"", hostname="localhost", ssl_context=client_context
                )
            server = result["server"]
            assert client.transport_stream is client_plain
            assert client.extra(SocketAttribute.remote_port) == server_plain.extra(
                SocketAttribute.local_port
            )
            await client.send(b"secret")
            assert await server.receive() == b"secret"

            async def server_unwrap() -> None:
                transport, leftover = await server.unwrap()
                assert transport is server_plain
                assert leftover == b""
                await transport.send(b"plain again")

            async with anyio.create_task_group() as tg:
                tg.start_soon(server_unwrap)
                transport, leftover = await client.unwrap()
            assert transport is client_plain
            expected = b"plain again"
            rest = await receive_exactly(transport, len(expected) - len(leftover))
            assert leftover + rest == expected


# -- the transport under TLS: buffered bytes, bounds, leftover -----------------------


async def test_bytes_buffered_before_the_upgrade_reach_the_tls_stream_in_order(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    # A pipelining client (STARTTLS and its ClientHello back to back): the server's
    # plaintext receive takes the command, the stream keeps the ClientHello behind
    # it, and the TLS stream on it must start with those bytes.
    with anyio.fail_after(10):
        async with fast_tcp_transports() as (client_plain, server_plain):
            result: dict[str, TLSStream] = {}

            async def client_side() -> None:
                await client_plain.send(b"STARTTLS\r\n")
                result["client"] = await TLSStream.wrap(
                    client_plain, hostname="localhost", ssl_context=client_context
                )

            async with anyio.create_task_group() as tg:
                tg.start_soon(client_side)
                got = b""
                while not got.endswith(b"\r\n"):
                    got += await server_plain.receive(1)  # leaves the rest buffered
                assert got == b"STARTTLS\r\n"
                await anyio.sleep(0.1)  # the ClientHello arrives before the wrap
                server = await TLSStream.wrap(
                    server_plain, server_side=True, ssl_context=server_context
                )
            await result["client"].send(b"ping")
            assert await server.receive() == b"ping"


async def test_under_tls_reading_pauses_at_the_transports_bound(
    anyio_backend: Any,
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
) -> None:
    # The application does not receive: what the peer sends stays in the kernel,
    # not in our buffers (reading pauses at READ_BUFFER_LIMIT unread bytes).
    with anyio.fail_after(30):
        async with fast_tcp_transports() as (client_plain, server_plain):
            client, server = await handshake_pair(
                client_plain, server_plain, client_context, server_context
            )
            await server.send(b"first")
            assert await client.receive() == b"first"
            total = 64 * 2**20  # far more than the kernel's buffers hold
            async with anyio.create_task_group() as tg:

                async def flood() -> None:
                    for _ in range(total // len(CHUNK)):
                        await server.send(CHUNK)

                tg.start_soon(flood)
                await anyio.sleep(1)  # the peer fills every buffer on the way
                if isinstance(client_plain, asyncio_transport.AsyncioSocketStream):
                    protocol = client_plain._protocol
                    assert protocol.reading_paused
                    assert protocol.buffered <= (
                        asyncio_transport.READ_BUFFER_LIMIT
                        + asyncio_transport.READ_CHUNK
                    )
                received = 0
                while received < total:  # everything arrives once we read, in order
                    data = await client.receive(1 << 20)
                    assert data
                    assert set(data) == {ord("x")}
                    received += len(data)
            assert received == total


async def test_plaintext_after_close_notify_in_one_segment_is_kept_in_order(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    # The peer is a bare engine on the other socket: its close_notify, plaintext
    # in the same segment, then more plaintext later: unwrap's leftover and the
    # plain stream's receives give all of it, in order.
    with anyio.fail_after(10):
        async with fast_tcp_transports() as (client_plain, server_plain):
            peer = TLSEngine(server_context, server_side=True, server_hostname=None)

            async def serve_peer() -> None:
                await handshake_bare_server(peer, server_plain)
                while (data := peer.read(100)) != b"":  # up to the close_notify
                    assert data is NEED_DATA
                    peer.receive_data(await server_plain.receive())
                assert peer.unwrap() is True
                await server_plain.send(peer.data_to_send() + b"EHLO plain\r\n")
                await anyio.sleep(0.1)
                await server_plain.send(b"QUIT\r\n")

            async with anyio.create_task_group() as tg:
                tg.start_soon(serve_peer)
                client = await TLSStream.wrap(
                    client_plain, hostname="localhost", ssl_context=client_context
                )
                transport, leftover = await client.unwrap()
            assert transport is client_plain
            expected = b"EHLO plain\r\nQUIT\r\n"
            rest = await receive_exactly(transport, len(expected) - len(leftover))
            assert leftover + rest == expected


# -- the transport as an AnyIO socket stream: flow control ----------------------------


async def test_send_waits_while_the_peer_does_not_read() -> None:
    with anyio.fail_after(30):
        async with fast_tcp_transports() as (client, server):
            sent = 0
            with anyio.move_on_after(1) as scope:
                while sent < 256 * 2**20:  # far more than any kernel buffers
                    await client.send(CHUNK)
                    sent += len(CHUNK)
            assert scope.cancelled_caught, "sends never waited"
            # Nothing was lost or duplicated: a send cancelled while it waited for
            # the transport to drain has handed its bytes over (asyncio) or part of
            # them (trio): the receiver gets the sent bytes, and at most one chunk more.
            received = 0
            await client.send_eof()
            while True:
                try:
                    received += len(await server.receive())
                except anyio.EndOfStream:
                    break
            assert sent <= received <= sent + len(CHUNK)


async def test_we_do_not_read_reading_pauses_and_the_kernel_fills(
    anyio_backend: Any,
) -> None:
    with anyio.fail_after(30):
        async with fast_tcp_transports() as (client, server):
            sent = 0
            with anyio.move_on_after(1) as scope:
                while sent < 256 * 2**20:
                    await server.send(CHUNK)
                    sent += len(CHUNK)
            assert scope.cancelled_caught, "the peer's sends never waited"
            if isinstance(client, asyncio_transport.AsyncioSocketStream):
                protocol = client._protocol
                assert protocol.reading_paused
                assert protocol.buffered <= (
                    asyncio_transport.READ_BUFFER_LIMIT + asyncio_transport.READ_CHUNK
                )
            # everything arrives once we read, in order
            await server.send_eof()
            received = bytearray()
            while True:
                try:
                    received += await client.receive()
                except anyio.EndOfStream:
                    break
            assert sent <= len(received) <= sent + len(CHUNK)
            assert set(received) == {ord("x")}


# -- EOF, half-close, errors ----------------------------------------------------------


async def test_send_eof_half_closes_and_the_other_direction_goes_on() -> None:
    with anyio.fail_after(10):
        async with fast_tcp_transports() as (client, server):
            await client.send(b"last words")
            await client.send_eof()
            assert await server.receive() == b"last words"
            with pytest.raises(anyio.EndOfStream):
                await server.receive()
            with pytest.raises(anyio.EndOfStream):  # and again
                await server.receive()
            await server.send(b"reply")
            assert await client.receive() == b"reply"
            await client.send_eof()  # twice: no error


async def test_receive_and_send_after_aclose_raise_closed_resource_error() -> None:
    async with fast_tcp_transports() as (client, _server):
        await client.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await client.receive()
        with pytest.raises(anyio.ClosedResourceError):
            await client.send(b"x")
        await client.aclose()  # twice: no error


async def test_aclose_wakes_a_waiting_receive_with_closed_resource_error() -> None:
    with anyio.fail_after(10):
        async with (
            fast_tcp_transports() as (client, _server),
            anyio.create_task_group() as tg,
        ):

            async def receive() -> None:
                with pytest.raises(anyio.ClosedResourceError):
                    await client.receive()

            tg.start_soon(receive)
            await anyio.wait_all_tasks_blocked()
            await client.aclose()


async def test_peer_reset_raises_broken_resource_error() -> None:
    with anyio.fail_after(10):
        async with fast_tcp_transports() as (client, server):
            raw = server.extra(SocketAttribute.raw_socket)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await server.aclose()  # a TCP reset
            with pytest.raises(anyio.BrokenResourceError):
                await client.receive()
            with pytest.raises(anyio.BrokenResourceError):
                await client.send(CHUNK)


async def test_busy_and_bad_input() -> None:
    with anyio.fail_after(10):
        async with fast_tcp_transports() as (client, _server):
            with pytest.raises(ValueError):
                await client.receive(0)
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.receive)
                await anyio.wait_all_tasks_blocked()
                with pytest.raises(anyio.BusyResourceError):
                    await client.receive()
                tg.cancel_scope.cancel()


# -- cancellation, as AnyIO's socket stream -------------------------------------------


async def test_cancelled_receive_loses_nothing() -> None:
    with anyio.fail_after(10):
        async with fast_tcp_transports() as (client, server):
            with anyio.move_on_after(0.05) as scope:
                await server.receive()
            assert scope.cancelled_caught
            await client.send(b"ready")
            await anyio.sleep(0.05)  # let it arrive in the stream's buffer
            with anyio.CancelScope() as scope:
                scope.cancel()
                await server.receive()  # data is ready, but the receive is cancelled
            assert scope.cancelled_caught
            assert await server.receive() == b"ready"


async def test_cancelled_send_sends_nothing() -> None:
    with anyio.fail_after(10):
        async with fast_tcp_transports() as (client, server):
            with anyio.CancelScope() as scope:
                scope.cancel()
                await client.send(b"never")
            assert scope.cancelled_caught
            await client.send(b"only this")
            assert await server.receive() == b"only this"


async def test_every_method_is_a_checkpoint() -> None:
    async with fast_tcp_transports() as (client, server):
        await client.send(b"x")
        await anyio.sleep(0.05)
        for call in (
            lambda: server.receive(),
            lambda: client.send(b"y"),
            lambda: client.send_eof(),
            lambda: client.aclose(),
        ):
            with anyio.CancelScope() as scope:
                scope.cancel()
                await call()
            assert scope.cancelled_caught


async def test_tls_stream_on_the_fast_transport_reports_both_attribute_sets(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    with anyio.fail_after(10):
        async with tls_server(server_context, local_host="127.0.0.1") as (_, port):
            stream = await anyiotls.connect_tcp(
                "127.0.0.1", port, ssl_context=client_context, tls_hostname="localhost"
            )
            async with stream:
                for attribute in (
                    TLSAttribute.cipher,
                    TLSAttribute.ssl_object,
                    SocketAttribute.raw_socket,
                    SocketAttribute.local_port,
                ):
                    assert stream.extra(attribute) is not None


async def test_the_example_runs(anyio_backend: Any, tmp_path: Path) -> None:
    """examples/tcp_echo.py (shown in docs/tcp.md) works on this backend."""
    example = Path(__file__).parent.parent / "examples" / "tcp_echo.py"
    source = str(Path(anyiotls.__file__).parent.parent)
    path = os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))
    backend = "trio" if anyio_backend == "trio" else "asyncio"
    uvloop = ["--uvloop"] if anyio_backend != "trio" and anyio_backend[1] else []
    with anyio.fail_after(60):
        result = await anyio.run_process(
            [sys.executable, str(example), "--backend", backend, *uvloop],
            check=False,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": path},
        )
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == 0, output
    assert "b'hello over TLS' from ('127.0.0.1'" in output


async def test_connect_tcp_and_listener_pass_the_stream_options_on(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    """session_cache, verify_peer, max_read_ahead and close_timeout reach the
    streams made by connect_tcp and create_tcp_listener."""
    seen: list[str] = []

    async def client_check(stream: TLSStream) -> None:
        seen.append("client:" + stream.extra(TLSAttribute.tls_version))

    async def server_check(stream: TLSStream) -> None:
        seen.append("server")

    cache = anyiotls.SessionCache()
    with anyio.fail_after(10):
        async with tls_server(
            server_context,
            local_host="127.0.0.1",
            verify_peer=server_check,
            max_read_ahead=65536,
            close_timeout=1.0,
        ) as (listener, port):
            assert listener.max_read_ahead == 65536
            assert listener.close_timeout == 1.0
            reused = []
            for _ in range(2):
                stream = await anyiotls.connect_tcp(
                    "127.0.0.1",
                    port,
                    ssl_context=client_context,
                    tls_hostname="localhost",
                    session_cache=cache,
                    verify_peer=client_check,
                    close_timeout=1.0,
                )
                async with stream:
                    await stream.send(b"ping")  # the tickets leave with the echo
                    assert await stream.receive() == b"ping"
                    reused.append(
                        stream.extra(anyiotls.SessionAttribute.session_reused)
                    )
            assert reused == [False, True]
            await anyio.wait_all_tasks_blocked()
    assert seen.count("client:TLSv1.3") == 2
    assert seen.count("server") == 2
    with pytest.raises(ValueError, match="tls=False takes no"):
        await anyiotls.connect_tcp("127.0.0.1", port, tls=False, session_cache=cache)
