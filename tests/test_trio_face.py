"""``anyiotls.trio``: trio's SSLStream semantics, what goes beyond them, the bridges.

Peers: our own other side, trio's own ``trio.SSLStream``, the AnyIO face, a
pyOpenSSL server that renegotiates (Python cannot start a renegotiation), and
``openssl s_server``. Everything runs on the trio backend only.
"""

from __future__ import annotations

import ssl
import warnings
from contextlib import suppress
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio
import trustme
from trio.testing import (
    lockstep_stream_pair,
    memory_stream_pair,
    wait_all_tasks_blocked,
)

from anyiotls import PostHandshakeAuthError, TLSStream
from anyiotls.trio import (
    AnyIOStreamAsTrio,
    HalfCloseableSSLStream,
    SSLListener,
    SSLStream,
    TrioStreamAsAnyIO,
)

from .peers import PemFiles
from .peers.openssl import openssl_server

pytestmark = pytest.mark.anyio

#: Upper bound for one whole test: nothing here may hang.
TIMEOUT = 20


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


def _no_ignored_eof(context: ssl.SSLContext) -> ssl.SSLContext:
    context.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    return context


@pytest.fixture(params=["TLSv1.2", "TLSv1.3"])
def tls_version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client_ctx(client_context: ssl.SSLContext, tls_version: str) -> ssl.SSLContext:
    """The client context, at most *tls_version*."""
    client_context.maximum_version = getattr(
        ssl.TLSVersion, tls_version.replace(".", "_")
    )
    return _no_ignored_eof(client_context)


@pytest.fixture
def server_ctx(server_context: ssl.SSLContext) -> ssl.SSLContext:
    return _no_ignored_eof(server_context)


Pair = tuple[SSLStream[Any], SSLStream[Any]]


def wrap_pair(
    client_ctx: ssl.SSLContext,
    server_ctx: ssl.SSLContext,
    transports: tuple[Any, Any] | None = None,
    *,
    client_https: bool = False,
    server_https: bool = False,
    stream_class: type[SSLStream[Any]] = SSLStream,
) -> Pair:
    client_transport, server_transport = transports or memory_stream_pair()
    client = stream_class(
        client_transport,
        client_ctx,
        server_hostname="localhost",
        https_compatible=client_https,
    )
    server = stream_class(
        server_transport, server_ctx, server_side=True, https_compatible=server_https
    )
    return client, server


async def handshake(*streams: SSLStream[Any]) -> None:
    async with trio.open_nursery() as nursery:
        for stream in streams:
            nursery.start_soon(stream.do_handshake)


async def receive_exactly(stream: trio.abc.ReceiveStream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = await stream.receive_some()
        assert chunk, f"EOF after {len(data)} of {size} bytes"
        data += chunk
    assert len(data) == size
    return bytes(data)


# -- attributes ----------------------------------------------------------------------

AFTER_HANDSHAKE = (
    "getpeercert",
    "selected_npn_protocol",
    "cipher",
    "shared_ciphers",
    "compression",
    "get_channel_binding",
    "selected_alpn_protocol",
    "version",
)


def _call(stream: SSLStream[Any], name: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # NPN
        return getattr(stream, name)()


async def test_forwarded_attributes_need_the_handshake_where_trio_says(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext, tls_version: str
) -> None:
    client, server = wrap_pair(client_ctx, server_ctx)
    assert client.context is client_ctx
    assert client.server_side is False
    assert server.server_side is True
    assert client.server_hostname == "localhost"
    assert server.server_hostname is None
    assert client.pending() == 0
    assert client.session is None
    assert client.https_compatible is False
    for name in AFTER_HANDSHAKE:
        with pytest.raises(trio.NeedHandshakeError, match=name):
            _call(client, name)
    with pytest.raises(trio.NeedHandshakeError):
        client.session_reused  # noqa: B018

    with trio.fail_after(TIMEOUT):
        await handshake(client, server)
    assert client.version() == server.version() == tls_version
    assert client.cipher() == server.cipher()
    assert client.getpeercert() is not None
    assert ("DNS", "localhost") in client.getpeercert()["subjectAltName"]
    assert isinstance(client.getpeercert(binary_form=True), bytes)
    assert server.getpeercert() is None
    assert client.selected_alpn_protocol() is None
    assert _call(client, "selected_npn_protocol") is None
    assert client.compression() is None
    assert server.shared_ciphers()
    assert client.shared_ciphers() is None
    assert client.session_reused is False
    if tls_version == "TLSv1.2":  # tls-unique is not defined for TLS 1.3
        assert client.get_channel_binding() == server.get_channel_binding()
    await client.aclose()
    await server.aclose()


async def test_read_only_attributes_refuse_assignment(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    client, _ = wrap_pair(client_ctx, server_ctx)
    with pytest.raises(AttributeError):
        client.server_side = True  # type: ignore[misc]
    with pytest.raises(AttributeError):
        client.server_hostname = "example.org"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        client.no_such_attribute  # type: ignore[attr-defined]  # noqa: B018


async def test_assigning_context_goes_to_the_ssl_object(
    server_ctx: ssl.SSLContext,
) -> None:
    # Assigning .context is forwarded, as trio does: a context that trusts nobody
    # makes the handshake fail.
    trusting = ssl.create_default_context()
    client, server = wrap_pair(trusting, server_ctx)
    untrusting = ssl.create_default_context()
    untrusting.load_verify_locations(cadata=trustme.CA().cert_pem.bytes().decode())
    client.context = untrusting
    assert client.context is untrusting

    async def server_side() -> None:
        with pytest.raises(trio.BrokenResourceError):
            await server.do_handshake()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server_side)
            with pytest.raises(trio.BrokenResourceError) as excinfo:
                await client.do_handshake()
    assert isinstance(excinfo.value.__cause__, ssl.SSLCertVerificationError)
    # a failed handshake never "happened": attributes still need one (as trio)
    with pytest.raises(trio.NeedHandshakeError):
        client.version()
    await client.aclose()
    await server.aclose()


async def test_server_hostname_is_encoded_with_idna_2008(
    client_ctx: ssl.SSLContext,
) -> None:
    a, _ = memory_stream_pair()
    stream = SSLStream(a, client_ctx, server_hostname="faß.de")
    assert stream.server_hostname == "xn--fa-hia.de"  # IDNA 2003 would say "fass.de"


async def test_session_can_be_resumed_through_the_session_attribute(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    with trio.fail_after(TIMEOUT):
        client, server = wrap_pair(client_ctx, server_ctx)
        await handshake(client, server)
        # TLS 1.3 tickets are held back until the server sends something
        await server.send_all(b"x")
        assert await client.receive_some() == b"x"
        session = client.session
        assert session is not None
        await client.aclose()
        await server.aclose()

        client, server = wrap_pair(client_ctx, server_ctx)
        client.session = session
        await handshake(client, server)
        assert client.session_reused is True
        assert server.session_reused is True
        await client.aclose()
        await server.aclose()


# -- handshake -----------------------------------------------------------------------


async def test_handshake_happens_on_first_send_and_receive(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    client, server = wrap_pair(client_ctx, server_ctx)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, b"hello")
            assert await server.receive_some() == b"hello"
    assert client.version() is not None


async def test_tls13_server_tickets_do_not_block_a_handshake_over_lockstep(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    # lockstep: every send_all waits for the peer's receive_some. If the server sent
    # its session tickets as the last step of its handshake, its do_handshake would
    # wait for a client that only sends: a deadlock. They leave with its first send.
    client, server = wrap_pair(client_ctx, server_ctx, lockstep_stream_pair())
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.do_handshake)
            await server.do_handshake()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, b"ping")
            assert await server.receive_some() == b"ping"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.send_all, b"pong")
            assert await client.receive_some() == b"pong"
    await trio.aclose_forcefully(client)
    await trio.aclose_forcefully(server)


async def test_failed_handshake_raises_in_every_waiting_task(
    server_ctx: ssl.SSLContext,
) -> None:
    bad_client_ctx = ssl.create_default_context()  # does not trust the test CA
    client, server = wrap_pair(bad_client_ctx, server_ctx)
    errors: list[BaseException] = []

    async def expect_broken(call: Any, *args: Any) -> None:
        with pytest.raises(trio.BrokenResourceError) as excinfo:
            await call(*args)
        errors.append(excinfo.value)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(expect_broken, server.do_handshake)
            nursery.start_soon(expect_broken, client.do_handshake)
            nursery.start_soon(expect_broken, client.do_handshake)
            nursery.start_soon(expect_broken, client.send_all, b"x")
            nursery.start_soon(expect_broken, client.receive_some)
    assert len(errors) == 5
    causes = [type(exc.__cause__) for exc in errors]
    assert causes.count(ssl.SSLCertVerificationError) == 4, causes
    # the client told the server why (trio.SSLStream sends no alert: its peer waits)
    told = [exc for exc in errors if "ALERT_UNKNOWN_CA" in str(exc.__cause__)]
    assert len(told) == 1, errors
    await client.aclose()
    await server.aclose()


async def test_cancelled_handshake_raises_in_every_waiting_task(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    # trio.SSLStream leaves the waiting tasks hanging here.
    client, server = wrap_pair(client_ctx, server_ctx)  # the server never runs
    errors: list[BaseException] = []

    async def expect_broken(call: Any, *args: Any) -> None:
        with pytest.raises(trio.BrokenResourceError) as excinfo:
            await call(*args)
        errors.append(excinfo.value)

    runner_scope = trio.CancelScope()

    async def run_handshake() -> None:
        with runner_scope:
            await client.do_handshake()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_handshake)
            await wait_all_tasks_blocked()  # it waits for the silent server
            nursery.start_soon(expect_broken, client.send_all, b"x")
            nursery.start_soon(expect_broken, client.receive_some)
            nursery.start_soon(expect_broken, client.do_handshake)
            await wait_all_tasks_blocked()
            runner_scope.cancel()
    assert len(errors) == 3
    assert all(isinstance(exc.__cause__, RuntimeError) for exc in errors)
    assert "Cancelled" in str(errors[0].__cause__)
    with pytest.raises(trio.BrokenResourceError):
        await client.do_handshake()
    await client.aclose()
    await trio.aclose_forcefully(server)


# -- bad input -----------------------------------------------------------------------


async def test_garbage_instead_of_a_handshake_breaks_the_stream(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    for side in ("server", "client"):
        raw, transport = memory_stream_pair()
        if side == "server":
            stream = SSLStream(transport, server_ctx, server_side=True)
        else:
            stream = SSLStream(transport, client_ctx, server_hostname="localhost")
        await raw.send_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        with trio.fail_after(TIMEOUT):
            with pytest.raises(trio.BrokenResourceError) as excinfo:
                await stream.receive_some()
        assert isinstance(excinfo.value.__cause__, ssl.SSLError)
        assert not isinstance(excinfo.value.__cause__, ssl.SSLEOFError)
        with pytest.raises(trio.BrokenResourceError):
            await stream.send_all(b"x")
        await stream.aclose()
        await raw.aclose()


@pytest.mark.parametrize("https_compatible", [False, True], ids=["standard", "https"])
async def test_transport_eof_before_the_handshake(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext, https_compatible: bool
) -> None:
    raw, transport = memory_stream_pair()
    stream = SSLStream(
        transport, server_ctx, server_side=True, https_compatible=https_compatible
    )
    await raw.aclose()
    with trio.fail_after(TIMEOUT):
        if https_compatible:
            assert await stream.receive_some() == b""
            assert await stream.receive_some() == b""
        else:
            with pytest.raises(trio.BrokenResourceError) as excinfo:
                await stream.receive_some()
            assert isinstance(excinfo.value.__cause__, ssl.SSLEOFError)
        with pytest.raises(trio.BrokenResourceError):
            await stream.send_all(b"x")
    await stream.aclose()


async def test_closed_transport_breaks_the_stream(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    with trio.fail_after(TIMEOUT):
        transport, _ = memory_stream_pair()
        stream = SSLStream(transport, client_ctx, server_hostname="localhost")
        await transport.aclose()
        # the transport's own exception, as with trio.SSLStream ...
        with pytest.raises(trio.ClosedResourceError) as closed:
            await stream.do_handshake()
        assert closed.value.__cause__ is None
        # ... and from then on the stream is broken, with it as the cause
        with pytest.raises(trio.BrokenResourceError) as excinfo:
            await stream.do_handshake()
        assert excinfo.value.__cause__ is closed.value
        await stream.aclose()


async def test_bad_arguments_raise_and_leave_the_stream_usable(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    with pytest.raises(TypeError, match="SSLContext"):
        SSLStream(memory_stream_pair()[0], "not a context")  # type: ignore[arg-type]
    client, server = wrap_pair(client_ctx, server_ctx)
    with trio.fail_after(TIMEOUT):
        await handshake(client, server)
        for bad in (0, -1):
            with pytest.raises(ValueError):
                await server.receive_some(bad)
        with pytest.raises(TypeError):
            await server.receive_some(1.5)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await client.send_all("text")  # type: ignore[arg-type]
        await client.send_all(b"still fine")
        assert await server.receive_some() == b"still fine"
    await client.aclose()
    await server.aclose()


async def test_two_tasks_on_one_direction_get_busy_errors(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    def conflicting_calls(client: SSLStream[Any]) -> list[tuple[Any, Any]]:
        def send(data: bytes) -> Any:
            return lambda: client.send_all(data)

        return [
            (client.receive_some, client.receive_some),
            (send(b"x"), send(b"y")),
            (send(b"x"), client.wait_send_all_might_not_block),
            (client.wait_send_all_might_not_block, send(b"x")),
            (client.receive_some, client.unwrap),
            (send(b"x"), client.unwrap),
        ]

    with trio.fail_after(TIMEOUT):
        for index in range(6):
            # a fresh pair each time: a send cancelled while the transport had part
            # of a record breaks the stream
            client, server = wrap_pair(client_ctx, server_ctx, lockstep_stream_pair())
            await handshake(client, server)
            calls = conflicting_calls(client)
            assert len(calls) == 6
            first, second = calls[index]
            async with trio.open_nursery() as nursery:
                nursery.start_soon(first)
                await wait_all_tasks_blocked()
                with pytest.raises(trio.BusyResourceError, match="another task"):
                    await second()
                nursery.cancel_scope.cancel()
            await trio.aclose_forcefully(client)
            await trio.aclose_forcefully(server)


async def test_transport_failure_in_the_middle_of_a_send(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    client, server = wrap_pair(client_ctx, server_ctx)
    with trio.fail_after(TIMEOUT):
        await handshake(client, server)

    async def failing_hook() -> None:
        raise KeyError("the transport fell over")

    transport = client.transport_stream
    transport.send_stream.send_all_hook = failing_hook
    with pytest.raises(KeyError, match="fell over"):  # as it left the transport
        await client.send_all(b"x")
    with pytest.raises(trio.BrokenResourceError) as excinfo:
        await client.send_all(b"x")
    assert isinstance(excinfo.value.__cause__, KeyError)
    with pytest.raises(trio.BrokenResourceError) as excinfo:
        await client.wait_send_all_might_not_block()
    assert isinstance(excinfo.value.__cause__, KeyError)

    closed = 0

    def count_close() -> None:
        nonlocal closed
        closed += 1

    transport.send_stream.close_hook = count_close
    transport.receive_stream.close_hook = count_close
    await client.aclose()
    await client.aclose()
    assert closed == 2  # each half of the transport once
    await server.aclose()


# -- closing ---------------------------------------------------------------------------


@pytest.mark.parametrize("https_compatible", [False, True], ids=["standard", "https"])
async def test_aclose_gives_the_peer_a_clean_eof_and_does_not_wait_for_it(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext, https_compatible: bool
) -> None:
    client, server = wrap_pair(
        client_ctx,
        server_ctx,
        client_https=https_compatible,
        server_https=https_compatible,
    )
    client_transport = client.transport_stream
    with trio.fail_after(TIMEOUT):
        await handshake(client, server)
        await client.send_all(b"last words")
        # the server is not receiving: aclose must not wait for its close_notify
        await client.aclose()
        assert await receive_exactly(server, 10) == b"last words"
        assert await server.receive_some() == b""
        assert await server.receive_some() == b""
        with pytest.raises(trio.ClosedResourceError):
            await client_transport.send_all(b"x")  # the transport was closed
        with pytest.raises(trio.ClosedResourceError):
            await client.receive_some()
        with pytest.raises(trio.ClosedResourceError):
            await client.send_all(b"x")
        with pytest.raises(trio.ClosedResourceError):
            await client.unwrap()
        with pytest.raises(trio.ClosedResourceError):
            await client.do_handshake()
        await server.aclose()


async def test_https_close_looks_truncated_to_a_standard_peer(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    client, server = wrap_pair(client_ctx, server_ctx, client_https=True)
    with trio.fail_after(TIMEOUT):
        await handshake(client, server)
        await client.aclose()
        with pytest.raises(trio.BrokenResourceError) as excinfo:
            await server.receive_some()
    assert isinstance(excinfo.value.__cause__, ssl.SSLEOFError)
    await server.aclose()


async def test_standard_aclose_before_the_handshake_performs_it(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    # trio's rule: so that the peer gets a cryptographically clean close
    client, server = wrap_pair(client_ctx, server_ctx)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.aclose)
            assert await server.receive_some() == b""
    assert server.version() is not None
    await server.aclose()


async def test_https_aclose_before_the_handshake_is_a_clean_eof_for_https_peer(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    client, server = wrap_pair(
        client_ctx, server_ctx, client_https=True, server_https=True
    )
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.aclose)
            assert await server.receive_some() == b""
    await server.aclose()


async def test_cancelled_aclose_still_closes_the_transport(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    client, server = wrap_pair(client_ctx, server_ctx)
    transport = client.transport_stream
    with trio.fail_after(TIMEOUT):
        await handshake(client, server)
    with trio.CancelScope() as scope:
        scope.cancel()
        await client.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await transport.send_all(b"x")
    with pytest.raises(trio.ClosedResourceError):
        await client.send_all(b"x")
    await server.aclose()


async def test_aclose_wakes_a_task_blocked_in_receive_with_closed_error(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    client, server = wrap_pair(client_ctx, server_ctx)
    with trio.fail_after(TIMEOUT):
        await handshake(client, server)

        async def receive_until_closed() -> None:
            with pytest.raises(trio.ClosedResourceError):
                await client.receive_some()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive_until_closed)
            await wait_all_tasks_blocked()
            await client.aclose()
        assert await server.receive_some() == b""
    await server.aclose()


async def test_aclose_closes_the_transport_once_even_if_that_fails(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    client, server = wrap_pair(client_ctx, server_ctx)
    with trio.fail_after(TIMEOUT):
        await handshake(client, server)
    send_stream = client.transport_stream.send_stream
    calls = 0

    def failing_close() -> None:
        nonlocal calls
        calls += 1
        raise KeyError("close failed")

    send_stream.close_hook = failing_close
    with pytest.raises(KeyError):
        await client.aclose()
    await client.aclose()
    assert calls == 1
    await server.aclose()


# -- unwrap ----------------------------------------------------------------------------


async def test_unwrap_returns_the_plaintext_that_followed_close_notify(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    client, server = wrap_pair(client_ctx, server_ctx)
    client_transport = client.transport_stream
    server_transport = server.transport_stream
    pump = client_transport.send_stream.send_all_hook

    async def client_side() -> None:
        assert await client.receive_some() == b"over to plaintext"
        assert await client.receive_some() == b""  # the server's close_notify
        # hold what the client sends, so that its close_notify and the plaintext
        # after it reach the server in one piece
        client_transport.send_stream.send_all_hook = None
        raw, trailing = await client.unwrap()
        assert raw is client_transport
        assert trailing == b""
        assert client.transport_stream is None
        await raw.send_all(b"PLAIN 1")
        client_transport.send_stream.send_all_hook = pump
        await pump()
        await raw.send_all(b"PLAIN 2")

    with trio.fail_after(TIMEOUT):
        await handshake(client, server)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client_side)
            await server.send_all(b"over to plaintext")
            raw, trailing = await server.unwrap()
            assert raw is server_transport
            assert trailing == b"PLAIN 1"
            assert server.transport_stream is None
            assert await raw.receive_some() == b"PLAIN 2"
    with pytest.raises(trio.ClosedResourceError):
        await server.send_all(b"x")
    await server.aclose()  # closed already: must not close the handed-back transport
    await server_transport.send_all(b"still open")
    await server_transport.aclose()
    await client_transport.aclose()


# -- beyond trio: half-close and post-handshake authentication -------------------------


async def test_half_closeable_send_eof_half_closes_under_tls13(
    client_context: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    client, server = wrap_pair(
        _no_ignored_eof(client_context), server_ctx, stream_class=HalfCloseableSSLStream
    )
    assert isinstance(client, trio.abc.HalfCloseableStream)
    with trio.fail_after(TIMEOUT):
        await handshake(client, server)
        assert client.version() == "TLSv1.3"
        await client.send_all(b"request")
        await client.send_eof()
        with pytest.raises(trio.ClosedResourceError):
            await client.send_all(b"more")
        assert await receive_exactly(server, 7) == b"request"
        assert await server.receive_some() == b""
        await server.send_all(b"response")
        await server.send_eof()
        assert await receive_exactly(client, 8) == b"response"
        assert await client.receive_some() == b""
        assert await client.receive_some() == b""
    await client.aclose()
    await server.aclose()


async def test_half_closeable_send_eof_is_refused_below_tls13_and_stays_usable(
    client_context_tls12: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    client, server = wrap_pair(
        client_context_tls12, server_ctx, stream_class=HalfCloseableSSLStream
    )
    with trio.fail_after(TIMEOUT):
        await handshake(client, server)
        with pytest.raises(NotImplementedError, match=r"TLS 1\.3.*TLSv1\.2"):
            await client.send_eof()
        await client.send_all(b"fine")
        assert await server.receive_some() == b"fine"
    await client.aclose()
    await server.aclose()


def _pha_contexts(
    ca: trustme.CA,
    server_cert: trustme.LeafCert,
    client_cert: trustme.LeafCert | None,
    verify_mode: ssl.VerifyMode,
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    client_ctx.post_handshake_auth = True
    if client_cert is not None:
        client_cert.configure_cert(client_ctx)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(server_ctx)
    ca.configure_trust(server_ctx)
    server_ctx.verify_mode = verify_mode
    server_ctx.post_handshake_auth = True
    return client_ctx, server_ctx


async def test_verify_client_post_handshake_returns_the_certificate(
    ca: trustme.CA, server_cert: trustme.LeafCert, client_cert: trustme.LeafCert
) -> None:
    client, server = wrap_pair(
        *_pha_contexts(ca, server_cert, client_cert, ssl.CERT_REQUIRED)
    )
    with trio.fail_after(TIMEOUT):
        await handshake(client, server)
        assert server.getpeercert() is None

        async def client_side() -> None:
            await client.send_all(b"sent before the request")
            assert await client.receive_some() == b"thanks"

        async with trio.open_nursery() as nursery:
            nursery.start_soon(client_side)
            cert = await server.verify_client_post_handshake()
            assert cert is not None
            assert server.getpeercert() == cert
            assert not server.client_certificate_pending
            # data the client sent before answering is kept for receive_some
            assert await receive_exactly(server, 23) == b"sent before the request"
            await server.send_all(b"thanks")
    await client.aclose()
    await server.aclose()


async def test_rejected_client_certificate_breaks_the_stream(
    ca: trustme.CA, server_cert: trustme.LeafCert
) -> None:
    client, server = wrap_pair(*_pha_contexts(ca, server_cert, None, ssl.CERT_REQUIRED))
    with trio.fail_after(TIMEOUT):
        await handshake(client, server)

        async def client_side() -> None:
            with pytest.raises(trio.BrokenResourceError):
                await client.receive_some()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(client_side)
            with pytest.raises(trio.BrokenResourceError) as excinfo:
                await server.verify_client_post_handshake()
    assert isinstance(excinfo.value.__cause__, ssl.SSLError)
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in str(excinfo.value.__cause__)
    with pytest.raises(trio.BrokenResourceError):
        await server.send_all(b"x")
    await client.aclose()
    await server.aclose()


async def test_post_handshake_auth_refusals_leave_the_stream_usable(
    ca: trustme.CA,
    server_cert: trustme.LeafCert,
    client_cert: trustme.LeafCert,
) -> None:
    client_ctx, server_ctx = _pha_contexts(ca, server_cert, client_cert, ssl.CERT_NONE)
    client, server = wrap_pair(client_ctx, server_ctx)
    with trio.fail_after(TIMEOUT):
        await handshake(client, server)
        with pytest.raises(PostHandshakeAuthError, match="verify_mode"):
            await server.verify_client_post_handshake()
        with pytest.raises(PostHandshakeAuthError, match="only a server"):
            await client.request_client_certificate()
        await client.send_all(b"usable")
        assert await server.receive_some() == b"usable"
    await client.aclose()
    await server.aclose()


# -- full duplex, renegotiation, TLS over TLS ---------------------------------------


async def test_full_duplex_with_concurrent_handshake_calls_over_tcp(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    size = 1 << 20
    payload = bytes(range(256)) * (size // 256)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    listener = SSLListener(listeners[0], server_ctx)

    async def echo_server() -> None:
        stream = await listener.accept()
        async with stream:
            while data := await stream.receive_some():
                await stream.send_all(data)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo_server)
            tcp = await trio.open_tcp_stream("127.0.0.1", port)
            client = SSLStream(tcp, client_ctx, server_hostname="localhost")
            received = bytearray()

            async def sender() -> None:
                for start in range(0, size, 32768):
                    await client.send_all(payload[start : start + 32768])

            async def receiver() -> None:
                while len(received) < size:
                    received.extend(await client.receive_some(16384))

            async with trio.open_nursery() as inner:
                inner.start_soon(sender)
                inner.start_soon(receiver)
                inner.start_soon(client.do_handshake)
                inner.start_soon(client.do_handshake)
            await client.aclose()
        await listener.aclose()
    assert received == payload


def _renegotiating_server_context(tmp_path: Path, cert: trustme.LeafCert) -> Any:
    from OpenSSL import SSL

    pem = tmp_path / "server.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_max_proto_version(SSL.TLS1_2_VERSION)  # TLS 1.3 has none
    context.use_certificate_chain_file(str(pem))
    context.use_privatekey_file(str(pem))
    return context


async def _renegotiating_echo_server(
    transport: trio.abc.Stream, context: Any, every: int, stats: dict[str, int]
) -> None:
    """A pyOpenSSL TLS 1.2 echo server that renegotiates after every *every* bytes."""
    from OpenSSL import SSL

    conn = SSL.Connection(context, None)
    conn.set_accept_state()
    echo = bytearray()
    received = 0
    next_renegotiation = every
    while data := await transport.receive_some():
        conn.bio_write(data)
        while True:
            try:
                plaintext = conn.recv(65536)
            except (SSL.WantReadError, SSL.ZeroReturnError):
                break
            echo += plaintext
            received += len(plaintext)
        if received >= next_renegotiation and not conn.renegotiate_pending():
            assert conn.renegotiate()
            next_renegotiation += every
            stats["started"] += 1
            with suppress(SSL.WantReadError):
                conn.do_handshake()  # writes the HelloRequest
        while echo:
            try:
                sent = conn.send(bytes(echo[:16384]))
            except SSL.WantReadError:  # in the middle of a renegotiation
                break
            del echo[:sent]
        out = bytearray()
        while True:
            try:
                out += conn.bio_read(65536)
            except SSL.WantReadError:
                break
        if out:
            await transport.send_all(out)
    stats["completed"] = conn.total_renegotiations()


async def test_peer_renegotiates_while_one_task_sends_and_another_receives(
    client_context_tls12: ssl.SSLContext, server_cert: trustme.LeafCert, tmp_path: Path
) -> None:
    # Python's SSLObject cannot start a renegotiation, but a client accepts one the
    # server starts (secure renegotiation, RFC 5746), in read() and in write().
    client_transport, server_transport = memory_stream_pair()
    client = SSLStream(
        client_transport, client_context_tls12, server_hostname="localhost"
    )
    context = _renegotiating_server_context(tmp_path, server_cert)
    stats = {"started": 0}
    size = 1_500_000
    payload = bytes(range(251)) * (size // 251)
    received = bytearray()

    async def sender() -> None:
        for start in range(0, len(payload), 10000):
            await client.send_all(payload[start : start + 10000])

    async def receiver() -> None:
        while len(received) < len(payload):
            received.extend(await client.receive_some())

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                _renegotiating_echo_server, server_transport, context, 150_000, stats
            )
            async with trio.open_nursery() as inner:
                inner.start_soon(sender)
                inner.start_soon(receiver)
            await client.aclose()
    assert received == payload
    assert stats["started"] >= 5
    assert stats["completed"] == stats["started"]


@pytest.mark.interop
async def test_openssl_s_server_renegotiates_and_updates_keys(
    pem_files: PemFiles, client_context: ssl.SSLContext, tls_version: str
) -> None:
    command = "R" if tls_version == "TLSv1.2" else "K"  # K: KeyUpdate, update_requested
    client_context.maximum_version = getattr(
        ssl.TLSVersion, tls_version.replace(".", "_")
    )
    with trio.fail_after(TIMEOUT):
        async with openssl_server(
            pem_files, tls_version="1.2" if tls_version == "TLSv1.2" else "1.3"
        ) as server:
            tcp = await trio.open_tcp_stream(server.host, server.port)
            stream = SSLStream(tcp, client_context, server_hostname="localhost")
            received = bytearray()

            async def receiver() -> None:
                while b"after\n" not in received:
                    chunk = await stream.receive_some()
                    assert chunk
                    received.extend(chunk)

            async with trio.open_nursery() as nursery:
                await stream.send_all(b"before\n")
                await server.wait_received(b"before\n")
                nursery.start_soon(receiver)
                assert await server.command(command) == 1
                await stream.send_all(b"during\n")
                await server.wait_received(b"during\n")
                await server.send_line(b"after\n")
            assert received == b"after\n"
            # Our KeyUpdate answer leaves with our next write (OpenSSL's rule), and
            # the receiver has read s_server's KeyUpdate: it came before "after".
            await stream.send_all(b"final\n")
            await server.wait_received(b"final\n")
            await stream.aclose()
    from_client = [line for line in server.messages().splitlines() if "<<<" in line]
    if command == "R":
        assert sum("ClientHello" in line for line in from_client) == 2
    else:
        assert sum("KeyUpdate" in line for line in from_client) == 1


async def test_tls_over_tls(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    outer_client, outer_server = wrap_pair(client_ctx, server_ctx)
    inner_client, inner_server = wrap_pair(
        client_ctx, server_ctx, (outer_client, outer_server)
    )
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(inner_client.send_all, b"x" * 100_000)
            assert await receive_exactly(inner_server, 100_000) == b"x" * 100_000
        await inner_server.send_all(b"bye")
        assert await inner_client.receive_some() == b"bye"
        assert outer_client.version() is not None  # the outer handshake happened
        async with trio.open_nursery() as nursery:
            nursery.start_soon(inner_client.aclose)
            assert await inner_server.receive_some() == b""
        await inner_server.aclose()


# -- the listener --------------------------------------------------------------------


@pytest.mark.parametrize("https_compatible", [False, True], ids=["standard", "https"])
async def test_listener_wraps_accepted_connections(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext, https_compatible: bool
) -> None:
    (tcp_listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = tcp_listener.socket.getsockname()[1]
    listener = SSLListener(tcp_listener, server_ctx, https_compatible=https_compatible)
    assert listener.transport_listener is tcp_listener
    with trio.fail_after(TIMEOUT):
        tcp = await trio.open_tcp_stream("127.0.0.1", port)
        client = SSLStream(tcp, client_ctx, server_hostname="localhost")
        server = await listener.accept()
        assert isinstance(server, SSLStream)
        assert server.server_side
        assert server.https_compatible is https_compatible
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, b"hi")
            assert await server.receive_some() == b"hi"
        await client.aclose()
        assert await server.receive_some() == b""
        await server.aclose()
        await listener.aclose()
    assert tcp_listener.socket.fileno() == -1


# -- interop with trio.SSLStream, and the bridges --------------------------------------


@pytest.mark.parametrize("ours", ["client", "server"])
async def test_interop_with_trios_own_ssl_stream(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext, ours: str
) -> None:
    client_transport, server_transport = memory_stream_pair()
    client_cls: Any = SSLStream if ours == "client" else trio.SSLStream
    server_cls: Any = SSLStream if ours == "server" else trio.SSLStream
    client = client_cls(client_transport, client_ctx, server_hostname="localhost")
    server = server_cls(server_transport, server_ctx, server_side=True)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, b"a" * 70_000)
            assert await receive_exactly(server, 70_000) == b"a" * 70_000
        await server.send_all(b"b")
        assert await client.receive_some() == b"b"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.aclose)
            assert await server.receive_some() == b""
        await server.aclose()


async def test_anyio_tls_stream_over_a_native_trio_stream(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    client_transport, server_transport = memory_stream_pair()
    server = SSLStream(server_transport, server_ctx, server_side=True)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.do_handshake)
            client = await TLSStream.wrap(
                TrioStreamAsAnyIO(client_transport),
                hostname="localhost",
                ssl_context=client_ctx,
            )
        await client.send(b"from anyio")
        assert await server.receive_some() == b"from anyio"
        await server.send_all(b"from trio")
        assert await client.receive() == b"from trio"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.aclose)
            with pytest.raises(anyio.EndOfStream):
                await client.receive()
        await client.aclose()


async def test_trio_face_over_an_anyio_socket_stream(
    client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext
) -> None:
    with trio.fail_after(TIMEOUT):
        async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            result: dict[str, TLSStream] = {}

            async def serve(stream: anyio.abc.SocketStream) -> None:
                tls = await TLSStream.wrap(
                    stream, server_side=True, ssl_context=server_ctx
                )
                result["server"] = tls
                async with tls:
                    while True:
                        try:
                            data = await tls.receive()
                        except anyio.EndOfStream:
                            break
                        await tls.send(data.upper())

            async with anyio.create_task_group() as tg:
                tg.start_soon(listener.serve, serve)
                anyio_client = await anyio.connect_tcp("127.0.0.1", port)
                client = SSLStream(
                    AnyIOStreamAsTrio(anyio_client),
                    client_ctx,
                    server_hostname="localhost",
                )
                await client.send_all(b"shout")
                assert await receive_exactly(client, 5) == b"SHOUT"
                await client.aclose()
                tg.cancel_scope.cancel()


async def test_bridges_translate_end_of_stream_and_errors() -> None:
    # trio -> anyio
    with trio.fail_after(TIMEOUT):
        a, b = memory_stream_pair()
        as_anyio = TrioStreamAsAnyIO(a)
        await b.send_all(b"x")
        assert await as_anyio.receive() == b"x"
        await b.send_stream.aclose()
        with pytest.raises(anyio.EndOfStream):
            await as_anyio.receive()
        await as_anyio.send_eof()  # trio.StapledStream is half-closeable
        assert await b.receive_some() == b""
        await as_anyio.aclose()
        with pytest.raises(anyio.ClosedResourceError) as excinfo:
            await as_anyio.send(b"x")
        assert isinstance(excinfo.value.__cause__, trio.ClosedResourceError)

        # anyio -> trio
        send, receive = anyio.create_memory_object_stream[bytes](10)
        from anyio.streams.stapled import StapledObjectStream

        as_trio = AnyIOStreamAsTrio(StapledObjectStream(send, receive))
        await as_trio.send_all(memoryview(b"hello"))
        assert await as_trio.receive_some(2) == b"he"  # the rest stays buffered
        assert await as_trio.receive_some() == b"llo"
        await as_trio.send_eof()
        assert await as_trio.receive_some() == b""
        with pytest.raises(trio.ClosedResourceError) as closed:
            await as_trio.send_all(b"x")  # send_eof closed the memory object stream
        assert isinstance(closed.value.__cause__, anyio.ClosedResourceError)
        await as_trio.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await as_trio.receive_some()
        with pytest.raises(trio.ClosedResourceError):
            await as_trio.wait_send_all_might_not_block()
