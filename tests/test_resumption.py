"""Session resumption: ``session=``, :class:`anyiotls.SessionCache`, the listener side.

Real peers only: our own listener over loopback TCP and ``openssl s_server``, under
every AnyIO backend.
"""

from __future__ import annotations

import gc
import os
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import pytest
import trustme
from anyio.abc import SocketAttribute

import anyiotls
from anyiotls import (
    SessionAttribute,
    SessionCache,
    TLSConnectable,
    TLSListener,
    TLSStream,
)
from anyiotls._session import certificate_covers

from .peers import PemFiles
from .peers.openssl import openssl_server

pytestmark = pytest.mark.anyio

HOST = "127.0.0.1"


class _TCPConnectable:
    """``anyio.TCPConnectable`` (AnyIO 4.10+), for the lowest AnyIO too."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    async def connect(self) -> anyio.abc.SocketStream:
        return await anyio.connect_tcp(self.host, self.port)


HOSTNAME = "localhost"
PAYLOAD = b"x" * 100
TEST_TIMEOUT = 30

Handler = Callable[[TLSStream], Awaitable[None]]


async def echo_once(stream: TLSStream) -> None:
    """Echo 100 bytes if they come, then wait for the client's close and close."""
    try:
        got = b""
        while len(got) < len(PAYLOAD):
            got += await stream.receive()
        await stream.send(got)
        while True:
            await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError):
        pass
    finally:
        await stream.aclose()


async def receive_until_eof(stream: TLSStream) -> None:
    """Receive (never send) until the client closes, then close."""
    try:
        while True:
            await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError):
        pass
    finally:
        await stream.aclose()


@asynccontextmanager
async def tls_server(
    context: ssl.SSLContext,
    handler: Handler = echo_once,
    *,
    standard_compatible: bool = True,
) -> AsyncIterator[int]:
    """Our own TLSListener on 127.0.0.1 (a free port) for the block: its port."""
    listener = await anyio.create_tcp_listener(local_host=HOST, local_port=0)
    port = listener.extra(SocketAttribute.local_port)
    tls = TLSListener(listener, context, standard_compatible=standard_compatible)
    async with tls, anyio.create_task_group() as tg:
        tg.start_soon(tls.serve, handler)
        try:
            yield port
        finally:
            tg.cancel_scope.cancel()


async def talk(
    port: int,
    context: ssl.SSLContext,
    *,
    session: ssl.SSLSession | None = None,
    cache: SessionCache | None = None,
    hostname: str = HOSTNAME,
    receive: bool = True,
    standard_compatible: bool = True,
) -> tuple[bool, ssl.SSLSession | None]:
    """One connection: handshake, 100 B (and the echo), close. (reused, session)."""
    sock = await anyio.connect_tcp(HOST, port)
    stream = await TLSStream.wrap(
        sock,
        hostname=hostname,
        ssl_context=context,
        session=session,
        session_cache=cache,
        standard_compatible=standard_compatible,
    )
    reused = stream.extra(SessionAttribute.session_reused)
    await stream.send(PAYLOAD)
    if receive:
        got = b""
        while len(got) < len(PAYLOAD):
            got += await stream.receive()
    kept = stream.extra(SessionAttribute.session)
    with anyio.fail_after(10):
        await stream.aclose()
    return reused, kept


def tls12_session_ids_only(context: ssl.SSLContext) -> ssl.SSLContext:
    """A TLS 1.2 server context that resumes through its session-id cache only."""
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_TICKET
    return context


VERSIONS = [pytest.param("1.2", id="TLSv1.2"), pytest.param("1.3", id="TLSv1.3")]


def limit(context: ssl.SSLContext, version: str) -> ssl.SSLContext:
    if version == "1.2":
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


# -- session= and the attributes -----------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
async def test_session_is_resumed(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext, version: str
) -> None:
    limit(server_context, version)
    with anyio.fail_after(TEST_TIMEOUT):
        async with tls_server(server_context) as port:
            reused, session = await talk(port, client_context)
            assert reused is False
            assert session is not None
            assert session.has_ticket
            reused, _ = await talk(port, client_context, session=session)
            assert reused is True


async def test_two_step_constructor_resumes(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    with anyio.fail_after(TEST_TIMEOUT):
        async with tls_server(server_context) as port:
            _, session = await talk(port, client_context)
            sock = await anyio.connect_tcp(HOST, port)
            stream = TLSStream(
                sock, hostname=HOSTNAME, ssl_context=client_context, session=session
            )
            assert stream.extra(SessionAttribute.session_reused) is False
            await stream.do_handshake()
            assert stream.extra(SessionAttribute.session_reused) is True
            await stream.aclose()


async def test_server_side_attributes(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    seen: list[bool] = []

    async def handler(stream: TLSStream) -> None:
        seen.append(stream.extra(SessionAttribute.session_reused))
        await echo_once(stream)

    with anyio.fail_after(TEST_TIMEOUT):
        async with tls_server(server_context, handler) as port:
            _, session = await talk(port, client_context)
            await talk(port, client_context, session=session)
    assert seen == [False, True]


async def test_session_from_another_context_is_a_clear_error(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext, ca: trustme.CA
) -> None:
    other = ssl.create_default_context()
    ca.configure_trust(other)
    with anyio.fail_after(TEST_TIMEOUT):
        async with tls_server(server_context) as port:
            _, session = await talk(port, client_context)
            sock = await anyio.connect_tcp(HOST, port)
            try:
                with pytest.raises(ValueError, match="another SSLContext"):
                    await TLSStream.wrap(
                        sock, hostname=HOSTNAME, ssl_context=other, session=session
                    )
            finally:
                await sock.aclose()


async def test_bad_session_arguments(client_context: ssl.SSLContext) -> None:
    left, right = anyio.create_memory_object_stream[bytes](1)
    transport = anyio.streams.stapled.StapledObjectStream(left, right)
    with pytest.raises(TypeError, match=r"ssl\.SSLSession"):
        TLSStream(
            transport,
            hostname=HOSTNAME,
            ssl_context=client_context,
            session=b"ticket",  # type: ignore[arg-type]
        )
    with pytest.raises(ValueError, match="for clients"):
        TLSStream(
            transport,
            server_side=True,
            ssl_context=client_context,
            session_cache=SessionCache(),
        )
    with pytest.raises(ValueError, match="needs ssl_context"):
        TLSStream(transport, hostname=HOSTNAME, session_cache=SessionCache())
    with pytest.raises(ValueError, match="needs hostname"):
        TLSConnectable(
            object(), ssl_context=client_context, session_cache=SessionCache()
        )
    with pytest.raises(TypeError, match="SessionCache"):
        TLSConnectable(object(), hostname=HOSTNAME, session_cache={})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1"):
        SessionCache(0)
    await transport.aclose()


@pytest.mark.parametrize("version", VERSIONS)
async def test_resumed_session_still_checks_the_host_name(
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
    ca: trustme.CA,
    version: str,
) -> None:
    """OpenSSL resumes a session offered for another name without any check."""
    other_cert = ca.issue_cert("other.example")
    other_server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    other_cert.configure_cert(other_server)
    limit(other_server, version)
    with anyio.fail_after(TEST_TIMEOUT):
        async with tls_server(other_server) as port:
            _, session = await talk(port, client_context, hostname="other.example")
            # The same server, asked for "localhost": its certificate does not
            # name it, and the session must not let that pass.
            with pytest.raises(ssl.SSLCertVerificationError, match="resumed session"):
                await talk(port, client_context, session=session)
            reused, _ = await talk(
                port, client_context, session=session, hostname="OTHER.example"
            )
            assert reused is True


def test_certificate_covers() -> None:
    cert = {
        "subjectAltName": (
            ("DNS", "example.org"),
            ("DNS", "*.wild.example.org"),
            ("IP Address", "127.0.0.1"),
            ("IP Address", "0:0:0:0:0:0:0:1"),
        ),
        "subject": ((("commonName", "cn.example.org"),),),
    }
    assert certificate_covers(cert, "example.org")
    assert certificate_covers(cert, "EXAMPLE.org.")
    assert certificate_covers(cert, "a.wild.example.org")
    assert not certificate_covers(cert, "wild.example.org")
    assert not certificate_covers(cert, "a.b.wild.example.org")
    assert not certificate_covers(cert, "cn.example.org")  # never the CN
    assert certificate_covers(cert, "127.0.0.1")
    assert certificate_covers(cert, "::1")
    assert not certificate_covers(cert, "127.0.0.2")
    assert not certificate_covers({"subjectAltName": (("DNS", "*.org"),)}, "a.org")
    assert not certificate_covers(None, "example.org")


# -- SessionCache ---------------------------------------------------------------------


async def test_connectable_resumes_through_the_cache(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    cache = SessionCache()
    with anyio.fail_after(TEST_TIMEOUT):
        async with tls_server(server_context) as port:
            connectable = TLSConnectable(
                _TCPConnectable(HOST, port),
                hostname=HOSTNAME,
                ssl_context=client_context,
                session_cache=cache,
            )
            for expected in (False, True, True):
                stream = await connectable.connect()
                assert stream.extra(SessionAttribute.session_reused) is expected
                await stream.send(PAYLOAD)
                got = b""
                while len(got) < len(PAYLOAD):
                    got += await stream.receive()
                # TLS 1.3: the ticket is in the cache as soon as it arrived...
                assert len(cache) == 1
                await stream.aclose()
                assert len(cache) == 1  # ... and a clean close keeps it there


@pytest.mark.parametrize("version", VERSIONS)
async def test_client_that_only_sends_gets_its_ticket(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext, version: str
) -> None:
    limit(server_context, version)
    cache = SessionCache()
    with anyio.fail_after(TEST_TIMEOUT):
        async with tls_server(server_context, receive_until_eof) as port:
            await talk(port, client_context, cache=cache, receive=False)
            assert len(cache) == 1
            reused, _ = await talk(port, client_context, cache=cache, receive=False)
            assert reused is True


async def test_client_that_only_sends_gets_its_ticket_from_openssl(
    pem_files: PemFiles, client_context: ssl.SSLContext
) -> None:
    cache = SessionCache()
    with anyio.fail_after(TEST_TIMEOUT):
        async with openssl_server(
            pem_files, tls_version="1.3", num_tickets=2, naccept=None
        ) as server:
            results = []
            for _ in range(3):
                reused, _ = await talk(
                    server.port, client_context, cache=cache, receive=False
                )
                results.append(reused)
            assert results == [False, True, True]


async def test_openssl_tls12_session_ids(
    pem_files: PemFiles, client_context: ssl.SSLContext
) -> None:
    cache = SessionCache()
    with anyio.fail_after(TEST_TIMEOUT):
        async with openssl_server(
            pem_files, tls_version="1.2", naccept=None, extra_args=["-no_ticket"]
        ) as server:
            first, session = await talk(
                server.port, client_context, cache=cache, receive=False
            )
            assert session is not None
            assert not session.has_ticket
            assert session.id
            second, _ = await talk(
                server.port, client_context, cache=cache, receive=False
            )
            assert (first, second) == (False, True)


async def test_openssl_without_tickets_cannot_resume(
    pem_files: PemFiles, client_context: ssl.SSLContext
) -> None:
    cache = SessionCache()
    with anyio.fail_after(TEST_TIMEOUT):
        async with openssl_server(
            pem_files, tls_version="1.3", num_tickets=0, naccept=None
        ) as server:
            await talk(server.port, client_context, cache=cache, receive=False)
            assert len(cache) == 0
            reused, _ = await talk(
                server.port, client_context, cache=cache, receive=False
            )
            assert reused is False


async def test_cache_is_keyed_by_port_host_and_context(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext, ca: trustme.CA
) -> None:
    """Two servers with the same context accept each other's tickets: only the
    cache keeps a session from being offered to the other one."""
    cache = SessionCache()
    other_context = ssl.create_default_context()
    ca.configure_trust(other_context)
    with anyio.fail_after(TEST_TIMEOUT):
        async with (
            tls_server(server_context) as port_a,
            tls_server(server_context) as port_b,
        ):
            if True:
                _, session = await talk(port_a, client_context, cache=cache)
                # The other server would resume it (same ticket keys) ...
                reused, _ = await talk(port_b, client_context, session=session)
                assert reused is True
                cache = SessionCache()
                await talk(port_a, client_context, cache=cache)
                # ... but the cache offers it to no other port, name or context.
                reused, _ = await talk(port_b, client_context, cache=cache)
                assert reused is False
                reused, _ = await talk(
                    port_a, client_context, cache=cache, hostname="127.0.0.1"
                )
                assert reused is False
                reused, _ = await talk(port_a, other_context, cache=cache)
                assert reused is False
                # and the original key still resumes
                reused, _ = await talk(port_a, client_context, cache=cache)
                assert reused is True


async def test_cache_is_a_bounded_lru(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    tls12_session_ids_only(server_context)
    with anyio.fail_after(TEST_TIMEOUT):
        async with tls_server(server_context) as port:
            _, session = await talk(port, client_context)
    assert session is not None
    cache = SessionCache(maxsize=2)
    assert cache.maxsize == 2
    cache.put(client_context, "a", 1, session)
    cache.put(client_context, "b", 1, session)
    assert cache.get(client_context, "a", 1) is session  # "a" is now the newest
    cache.put(client_context, "c", 1, session)
    assert len(cache) == 2
    assert cache.get(client_context, "b", 1) is None  # the least recently used
    assert cache.get(client_context, "a", 1) is session
    assert cache.get(client_context, "c", 1) is session
    assert cache.get(client_context, "A", 1) is session  # names: case-insensitive
    assert cache.get(client_context, "a", 2) is None
    # TLS 1.3 tickets are handed out once
    cache.put(client_context, "t", 1, session, single_use=True)
    assert cache.get(client_context, "t", 1) is session
    assert cache.get(client_context, "t", 1) is None
    cache.discard_context(client_context)
    assert len(cache) == 0


async def test_default_size() -> None:
    assert SessionCache().maxsize == 256
    assert SessionCache()  # truthy though empty


# -- no session from a broken or ragged connection ------------------------------------


async def test_ragged_client_close_is_not_cached(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    cache = SessionCache()
    with anyio.fail_after(TEST_TIMEOUT):
        async with tls_server(server_context) as port:
            # It received the echo (and its ticket): given, then taken back.
            await talk(port, client_context, cache=cache, standard_compatible=False)
            assert len(cache) == 0
            reused, _ = await talk(port, client_context, cache=cache)
            assert reused is False


async def test_broken_connection_is_not_cached(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    async def answer_then_vanish(stream: TLSStream) -> None:
        await stream.receive()
        await stream.send(PAYLOAD)
        await anyio.sleep(0.05)  # the echo arrives alone, then the reset
        await anyio.aclose_forcefully(stream.transport_stream)

    cache = SessionCache()
    with anyio.fail_after(TEST_TIMEOUT):
        async with tls_server(server_context, answer_then_vanish) as port:
            sock = await anyio.connect_tcp(HOST, port)
            stream = await TLSStream.wrap(
                sock, hostname=HOSTNAME, ssl_context=client_context, session_cache=cache
            )
            await stream.send(PAYLOAD)
            await stream.receive()
            assert len(cache) == 1  # the ticket came with the echo
            with pytest.raises(anyio.BrokenResourceError):
                await stream.receive()  # EOF without close_notify
            assert len(cache) == 0
            await stream.aclose()
            assert len(cache) == 0


async def test_tls12_server_loses_session_id_on_ragged_close(
    server_cert: trustme.LeafCert, client_context: ssl.SSLContext
) -> None:
    """OpenSSL drops a TLS 1.2 server's session id when the server's SSLObject is
    freed without having sent close_notify; a clean close keeps it."""
    results = {}
    for clean in (True, False):
        context = tls12_session_ids_only(
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        )
        server_cert.configure_cert(context)
        done = anyio.Event()

        async def handler(stream: TLSStream) -> None:
            try:
                await receive_until_eof(stream)
            finally:
                done.set()  # noqa: B023 (each round waits for its own event)

        with anyio.fail_after(TEST_TIMEOUT):
            async with tls_server(context, handler, standard_compatible=clean) as port:
                _, session = await talk(port, client_context, receive=False)
                assert session is not None
                assert session.id
                await done.wait()
                gc.collect()  # free the server's SSLObject (OpenSSL acts then)
                results[clean], _ = await talk(
                    port, client_context, session=session, receive=False
                )
    assert results == {True: True, False: False}


async def test_tls13_server_without_tickets(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    server_context.num_tickets = 0
    cache = SessionCache()
    with anyio.fail_after(TEST_TIMEOUT):
        async with tls_server(server_context) as port:
            await talk(port, client_context, cache=cache)
            assert len(cache) == 0
            reused, _ = await talk(port, client_context, cache=cache)
            assert reused is False


async def test_closing_twice_keeps_the_session(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    cache = SessionCache()
    with anyio.fail_after(TEST_TIMEOUT):
        async with tls_server(server_context, receive_until_eof) as port:
            sock = await anyio.connect_tcp(HOST, port)
            stream = await TLSStream.wrap(
                sock, hostname=HOSTNAME, ssl_context=client_context, session_cache=cache
            )
            await stream.aclose()
            await stream.aclose()
            assert len(cache) == 1


async def test_server_that_does_not_answer_close_notify(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    """Our close_notify left: OpenSSL keeps the session (TLS 1.3 tickets need
    nothing from the server's side), though the server just closed the socket.
    The client reads nothing: its close reads the echo, the tickets, the EOF."""
    cache = SessionCache()
    with anyio.fail_after(TEST_TIMEOUT):
        async with tls_server(
            server_context, echo_once, standard_compatible=False
        ) as port:
            await talk(port, client_context, cache=cache, receive=False)
            assert len(cache) == 1
            reused, _ = await talk(port, client_context, cache=cache, receive=False)
            assert reused is True


async def test_the_example_runs(anyio_backend_name: str) -> None:
    """examples/resumption.py (shown in docs/resumption.md) resumes."""
    example = Path(__file__).parent.parent / "examples" / "resumption.py"
    source = str(Path(anyiotls.__file__).parent.parent)
    path = os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))
    with anyio.fail_after(60):
        result = await anyio.run_process(
            [sys.executable, str(example), "--backend", anyio_backend_name],
            check=False,
            env={**os.environ, "PYTHONPATH": path},
        )
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == 0, output
    assert output.splitlines() == [
        "connection 1: resumed no",
        "connection 2: resumed yes",
        "connection 3: resumed yes",
    ], output


@pytest.mark.parametrize("reuse", [False, True], ids=["single-use", "reuse"])
async def test_tls13_tickets_single_use_or_reused(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext, reuse: bool
) -> None:
    cache = SessionCache(reuse_tickets=reuse)
    key = (client_context, HOSTNAME)
    with anyio.fail_after(TEST_TIMEOUT):
        async with tls_server(server_context) as port:
            await talk(port, client_context, cache=cache)
            first = cache.get(*key, port)
            assert first is not None
            if reuse:
                assert cache.get(*key, port) is first  # still there
            else:
                assert cache.get(*key, port) is None  # handed out once
                cache.put(*key, port, first, single_use=True)
            for _ in range(2):
                reused, _ = await talk(port, client_context, cache=cache)
                assert reused is True
            latest = cache.get(*key, port)
            assert latest is not None
            # Reused: the stream fetched nothing, the entry is the first session.
            # Single use: each resumed connection gave back its new ticket.
            assert (latest is first) is reuse
            assert (latest.id == first.id) is reuse


@pytest.mark.parametrize("variant", ["anyio", "anyiotls resumed", "anyiotls reuse"])
async def test_benchmark_g_runs(variant: str) -> None:
    """bench.resumption's loop runs (it raises if a resumed variant did not)."""
    from bench import resumption

    with anyio.fail_after(TEST_TIMEOUT):
        rate = await resumption.reconnects(variant, "tls12-p256", 3)
    assert rate > 0
