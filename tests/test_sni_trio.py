"""Certificates per host name on the Trio face: ``anyiotls.trio.SSLListener``.

The same behaviour as ``test_sni.py`` checks for the AnyIO face; here the context is
chosen when the accepted stream's handshake starts (trio handshakes on first use).
"""

from __future__ import annotations

import gc
import ssl
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

from anyiotls import ClientHello, ClientHelloError, UnrecognizedNameError
from anyiotls.trio import SSLListener, SSLStream

from .sni_helpers import EXPECTED, Certificates, common_name, sni_table

pytestmark = pytest.mark.anyio

TIMEOUT = 20


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


@pytest.fixture(scope="session")
def certs() -> Certificates:
    return Certificates(trustme.CA())


@dataclass
class Seen:
    hellos: list[ClientHello | None] = field(default_factory=list)
    transports: list[object] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    error_seen: trio.Event = field(default_factory=trio.Event)


Handler = Callable[[SSLStream[Any]], Awaitable[None]]


def echo(seen: Seen) -> Handler:
    async def handler(stream: SSLStream[Any]) -> None:
        try:
            await stream.do_handshake()
        except trio.BrokenResourceError as exc:
            seen.errors.append(exc)
            seen.error_seen.set()
            await trio.aclose_forcefully(stream)
            return
        seen.hellos.append(stream.client_hello)
        seen.transports.append(stream.transport_stream)
        async with stream:
            try:
                while data := await stream.receive_some():
                    await stream.send_all(data)
            except trio.BrokenResourceError:
                pass

    return handler


async def make_listener(certs: Certificates, **kwargs: Any) -> SSLListener[Any]:
    [tcp] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    kwargs.setdefault("sni_contexts", sni_table(certs))
    return SSLListener(tcp, certs.context("default.test"), **kwargs)


def port_of(listener: SSLListener[Any]) -> int:
    transport = listener.transport_listener
    assert isinstance(transport, trio.SocketListener)
    return int(transport.socket.getsockname()[1])


@asynccontextmanager
async def serving(listener: SSLListener[Any], handler: Handler) -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handler, [listener])
        yield port_of(listener)
        nursery.cancel_scope.cancel()


async def connect(
    certs: Certificates, port: int, name: str | None, alpn: list[str] | None = None
) -> SSLStream[trio.SocketStream]:
    context = certs.client_context(name)
    if alpn:
        context.set_alpn_protocols(alpn)
    stream = SSLStream(
        await trio.open_tcp_stream("127.0.0.1", port),
        context,
        server_hostname=name,
    )
    try:
        await stream.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(stream.transport_stream)
        raise
    return stream


async def certificate_seen(certs: Certificates, port: int, name: str | None) -> str:
    stream = await connect(certs, port, name)
    async with stream:
        await stream.send_all(b"ping")
        assert await stream.receive_some() == b"ping"
        return common_name(stream.getpeercert())


async def test_certificate_chosen_by_server_name(certs: Certificates) -> None:
    seen = Seen()
    listener = await make_listener(certs)
    with trio.fail_after(TIMEOUT):
        async with serving(listener, echo(seen)) as port:
            for name, expected in EXPECTED.items():
                assert await certificate_seen(certs, port, name) == expected, name
    names = [hello.server_name if hello else "?" for hello in seen.hellos]
    assert names == [
        None if name is None else name.lower().replace("bücher", "xn--bcher-kva")
        for name in EXPECTED
    ]


async def test_plain_listener_has_no_client_hello(certs: Certificates) -> None:
    seen = Seen()
    [tcp] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    listener = SSLListener(tcp, certs.context("default.test"))
    assert listener.sni_contexts == {}
    with trio.fail_after(TIMEOUT):
        async with serving(listener, echo(seen)) as port:
            assert await certificate_seen(certs, port, None) == "default.test"
    assert seen.hellos == [None]


async def test_client_hello_offered_alpn(certs: Certificates) -> None:
    seen = Seen()
    listener = await make_listener(certs)
    with trio.fail_after(TIMEOUT):
        async with serving(listener, echo(seen)) as port:
            client = await connect(certs, port, "a.test", alpn=["h2", "http/1.1"])
            await client.send_all(b"x")
            await client.receive_some()
            await client.aclose()
    [hello] = seen.hellos
    assert hello is not None
    assert hello.alpn_protocols == ("h2", "http/1.1")
    assert ssl.TLSVersion.TLSv1_3 in hello.tls_versions


async def test_unknown_names_refused_when_asked(certs: Certificates) -> None:
    seen = Seen()
    listener = await make_listener(certs, refuse_unknown_names=True)
    with trio.fail_after(TIMEOUT):
        async with serving(listener, echo(seen)) as port:
            assert await certificate_seen(certs, port, "a.test") == "a.test"
            with pytest.raises(trio.BrokenResourceError) as info:
                await connect(certs, port, "unknown.test")
            assert "UNRECOGNIZED_NAME" in str(info.value.__cause__)
            await seen.error_seen.wait()
    [error] = seen.errors
    assert isinstance(error.__cause__, UnrecognizedNameError)


class Refused(Exception):
    pass


async def test_select_context_delay_exception_and_hang(certs: Certificates) -> None:
    async def select(hello: ClientHello) -> ssl.SSLContext | None:
        if hello.server_name == "slow.test":
            await trio.sleep(0.05)
            return certs.context("b.test")
        if hello.server_name == "refused.test":
            raise Refused("no")
        if hello.server_name == "hang.test":
            await trio.sleep_forever()
        return None

    seen = Seen()
    listener = await make_listener(certs, select_context=select, handshake_timeout=0.3)
    with trio.fail_after(TIMEOUT):
        async with serving(listener, echo(seen)) as port:
            assert await certificate_seen(certs, port, "slow.test") == "b.test"
            assert await certificate_seen(certs, port, "a.test") == "a.test"
            for name in ["refused.test", "hang.test"]:
                seen.error_seen = trio.Event()
                with pytest.raises(trio.BrokenResourceError):
                    await connect(certs, port, name)
                await seen.error_seen.wait()
    refused, hung = seen.errors
    assert isinstance(refused.__cause__, Refused)
    assert isinstance(hung.__cause__, trio.TooSlowError)


async def test_garbage_fails_with_client_hello_error(certs: Certificates) -> None:
    seen = Seen()
    listener = await make_listener(certs)
    with trio.fail_after(TIMEOUT):
        async with serving(listener, echo(seen)) as port:
            raw = await trio.open_tcp_stream("127.0.0.1", port)
            await raw.send_all(b"GET / HTTP/1.0\r\n\r\n")
            await seen.error_seen.wait()
            await raw.aclose()
    [error] = seen.errors
    assert isinstance(error.__cause__, ClientHelloError)
    assert error.__cause__.reason == "NOT_A_HANDSHAKE"


async def test_eof_before_client_hello_is_clean_for_https_compatible(
    certs: Certificates,
) -> None:
    results: list[bytes] = []
    done = trio.Event()

    async def handler(stream: SSLStream[Any]) -> None:
        results.append(await stream.receive_some())
        done.set()

    listener = await make_listener(certs, https_compatible=True)
    with trio.fail_after(TIMEOUT):
        async with serving(listener, handler) as port:
            raw = await trio.open_tcp_stream("127.0.0.1", port)
            await raw.aclose()
            await done.wait()
    assert results == [b""]


async def test_tasks_waiting_for_the_handshake_get_its_outcome(
    certs: Certificates,
) -> None:
    got: list[object] = []
    handled = trio.Event()

    async def handler(stream: SSLStream[Any]) -> None:
        # the handshake (and so the ClientHello read) runs in whichever task
        # comes first; the other waits for it
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.send_all, b"hello")
            got.append(await stream.receive_some())
        got.append(stream.client_hello)
        handled.set()
        await stream.aclose()

    listener = await make_listener(certs)
    with trio.fail_after(TIMEOUT):
        async with serving(listener, handler) as port:
            client = await connect(certs, port, "a.test")
            await client.send_all(b"ping")
            assert await client.receive_some() == b"hello"
            await client.aclose()
            await handled.wait()
    assert got[0] == b"ping"
    assert isinstance(got[1], ClientHello)
    assert got[1].server_name == "a.test"


# -- 1-byte receives -------------------------------------------------------------------


class Trickle(trio.abc.Stream):
    """A Trio stream that hands over at most one byte per receive."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.receives = 0

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        self.receives += 1
        return bytes(await self.stream.receive_some(1))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.stream.aclose()


class TrickleListener(trio.abc.Listener[Trickle]):
    def __init__(self, inner: trio.SocketListener) -> None:
        self.inner = inner
        self.socket = inner.socket
        self.streams: list[Trickle] = []

    async def accept(self) -> Trickle:
        stream = Trickle(await self.inner.accept())
        self.streams.append(stream)
        return stream

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_client_hello_in_one_byte_receives(certs: Certificates) -> None:
    [tcp] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    trickle = TrickleListener(tcp)
    listener = SSLListener(
        trickle, certs.context("default.test"), sni_contexts=sni_table(certs)
    )
    seen = Seen()
    port = int(tcp.socket.getsockname()[1])
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, echo(seen), [listener])
            assert await certificate_seen(certs, port, "x.wild.test") == "*.wild.test"
            nursery.cancel_scope.cancel()
    [hello] = seen.hellos
    assert hello is not None
    assert hello.server_name == "x.wild.test"
    assert trickle.streams[0].receives > 200
    # the stream's transport is what the listener gave, not a replaying wrapper
    assert seen.transports == [trickle.streams[0]]


# -- reloading -------------------------------------------------------------------------


async def test_reload_applies_to_later_connections_only(
    certs: Certificates, tmp_path: Path
) -> None:
    seen = Seen()
    listener = await make_listener(certs)
    with trio.fail_after(TIMEOUT):
        async with serving(listener, echo(seen)) as port:
            old = await connect(certs, port, "a.test")
            old_default = await connect(certs, port, None)
            cert, key = certs.write(tmp_path, "renewed-a.test")
            listener.reload_certificate(cert, key, server_name="a.test")
            listener.ssl_context = certs.context("renewed-default.test")
            with pytest.raises(OSError):  # no such file; nothing changes
                listener.reload_certificate(cert, tmp_path / "missing.key")
            with pytest.raises(TypeError):
                listener.ssl_context = "x.pem"  # type: ignore[assignment]
            # (the renewed certificate is for another name: no host name check)
            stream = await connect(certs, port, "other.test")
            assert common_name(stream.getpeercert()) == "renewed-default.test"
            await stream.aclose()
            client_context = certs.client_context(None)
            stream = SSLStream(
                await trio.open_tcp_stream("127.0.0.1", port),
                client_context,
                server_hostname="a.test",
            )
            await stream.do_handshake()
            assert common_name(stream.getpeercert()) == "renewed-a.test"
            await stream.aclose()
            for earlier, expected in [(old, "a.test"), (old_default, "default.test")]:
                await earlier.send_all(b"still here")
                assert await earlier.receive_some() == b"still here"
                assert common_name(earlier.getpeercert()) == expected
                await earlier.aclose()


async def test_cancelled_while_reading_the_client_hello_breaks_the_stream(
    certs: Certificates,
) -> None:
    outcome: list[BaseException] = []
    done = trio.Event()

    async def handler(stream: SSLStream[Any]) -> None:
        with trio.move_on_after(0.2):  # the client never sends its ClientHello
            await stream.do_handshake()
        try:
            await stream.receive_some()
        except trio.BrokenResourceError as exc:
            outcome.append(exc)
        done.set()
        await trio.aclose_forcefully(stream)

    listener = await make_listener(certs)
    with trio.fail_after(TIMEOUT):
        async with serving(listener, handler) as port:
            raw = await trio.open_tcp_stream("127.0.0.1", port)
            await done.wait()
            await raw.aclose()
    [error] = outcome
    assert error.__cause__ is not None  # why it broke: the cancellation, described


async def test_unused_selecting_stream_is_freed_without_the_gc(
    certs: Certificates,
) -> None:
    [tcp] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    listener = SSLListener(tcp, certs.context("default.test"), sni_contexts={})
    with trio.fail_after(TIMEOUT):
        client = await trio.open_tcp_stream("127.0.0.1", port_of(listener))
        stream = await listener.accept()
        transport = stream.transport_stream
        ref = weakref.ref(stream)
        gc.disable()
        try:
            del stream
            assert ref() is None  # no reference cycle keeps it alive
        finally:
            gc.enable()
        await transport.aclose()
        await client.aclose()
        await listener.aclose()
