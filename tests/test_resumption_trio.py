"""Session resumption on the Trio face: trio's settable ``session`` and
``session_reused``, against our own listener and ``openssl s_server``."""

from __future__ import annotations

import ssl

import anyio
import pytest
import trio
import trio.testing
import trustme

from anyiotls import SessionCache
from anyiotls.trio import SSLStream

from .peers import PemFiles
from .peers.openssl import openssl_server
from .test_resumption import (
    HOST,
    HOSTNAME,
    PAYLOAD,
    TEST_TIMEOUT,
    tls12_session_ids_only,
    tls_server,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


async def trio_talk(
    port: int, context: ssl.SSLContext, session: ssl.SSLSession | None = None
) -> tuple[bool, ssl.SSLSession | None]:
    """Handshake (offering *session*), 100 B and the echo, close: (reused, session)."""
    sock = await trio.open_tcp_stream(HOST, port)
    stream = SSLStream(sock, context, server_hostname=HOSTNAME)
    with pytest.raises(trio.NeedHandshakeError):
        _ = stream.session_reused
    if session is not None:
        stream.session = session
    await stream.do_handshake()
    reused = stream.session_reused
    await stream.send_all(PAYLOAD)
    got = b""
    while len(got) < len(PAYLOAD):
        got += await stream.receive_some()
    kept = stream.session
    await stream.aclose()
    return reused, kept


@pytest.mark.parametrize("version", ["1.2", "1.3"])
async def test_trio_face_resumes(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext, version: str
) -> None:
    if version == "1.2":
        server_context.maximum_version = ssl.TLSVersion.TLSv1_2
    with anyio.fail_after(TEST_TIMEOUT):
        async with tls_server(server_context) as port:
            reused, session = await trio_talk(port, client_context)
            assert reused is False
            assert session is not None
            reused, _ = await trio_talk(port, client_context, session)
            assert reused is True


async def test_trio_face_resumes_with_openssl(
    pem_files: PemFiles, client_context: ssl.SSLContext
) -> None:
    async def talk(session: ssl.SSLSession | None) -> tuple[bool, ssl.SSLSession]:
        sock = await trio.open_tcp_stream(HOST, server.port)
        stream = SSLStream(sock, client_context, server_hostname=HOSTNAME)
        if session is not None:
            stream.session = session
        await stream.do_handshake()
        reused = stream.session_reused
        await server.send_line(b"hello\n")
        got = b""
        while b"hello" not in got:
            got += await stream.receive_some()
        kept = stream.session
        assert kept is not None
        await stream.aclose()  # close_notify (trio does not wait for the answer)
        return reused, kept

    with anyio.fail_after(TEST_TIMEOUT):
        async with openssl_server(
            pem_files, tls_version="1.3", num_tickets=2, naccept=None
        ) as server:
            first, session = await talk(None)
            second, _ = await talk(session)
    assert (first, second) == (False, True)


async def test_trio_face_session_from_another_context(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext, ca: trustme.CA
) -> None:
    other = ssl.create_default_context()
    ca.configure_trust(other)
    with anyio.fail_after(TEST_TIMEOUT):
        async with tls_server(server_context) as port:
            _, session = await trio_talk(port, client_context)
            assert session is not None
            sock = await trio.open_tcp_stream(HOST, port)
            stream = SSLStream(sock, other, server_hostname=HOSTNAME)
            with pytest.raises(ValueError, match="another SSLContext"):
                stream.session = session
            with pytest.raises(TypeError):
                stream.session = b"ticket"  # type: ignore[assignment]
            await stream.do_handshake()  # still usable: a full handshake
            assert stream.session_reused is False
            await stream.aclose()


async def cached_talk(
    port: int, context: ssl.SSLContext, cache: SessionCache, *, receive: bool = True
) -> bool:
    sock = await trio.open_tcp_stream(HOST, port)
    stream = SSLStream(sock, context, server_hostname=HOSTNAME, session_cache=cache)
    await stream.do_handshake()
    reused = stream.session_reused
    await stream.send_all(PAYLOAD)
    if receive:
        got = b""
        while len(got) < len(PAYLOAD):
            got += await stream.receive_some()
    await stream.aclose()
    return reused


@pytest.mark.parametrize("version", ["1.2", "1.3"])
async def test_trio_face_session_cache(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext, version: str
) -> None:
    if version == "1.2":
        tls12_session_ids_only(server_context)
    cache = SessionCache()
    with anyio.fail_after(TEST_TIMEOUT):
        async with tls_server(server_context) as port:
            results = [await cached_talk(port, client_context, cache) for _ in "abc"]
    assert results == [False, True, True]


async def test_trio_face_client_that_only_sends(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    """trio's aclose() does not wait for the server: a TLS 1.3 client that never
    receives never reads its ticket, so there is nothing to cache (unlike the AnyIO
    face, whose close reads it)."""
    cache = SessionCache()
    with anyio.fail_after(TEST_TIMEOUT):
        async with tls_server(server_context) as port:
            await cached_talk(port, client_context, cache, receive=False)
            assert len(cache) == 0


async def test_trio_face_https_compatible_close_is_not_cached(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    cache = SessionCache()
    with anyio.fail_after(TEST_TIMEOUT):
        async with tls_server(server_context) as port:
            sock = await trio.open_tcp_stream(HOST, port)
            stream = SSLStream(
                sock,
                client_context,
                server_hostname=HOSTNAME,
                https_compatible=True,
                session_cache=cache,
            )
            await stream.send_all(PAYLOAD)
            await stream.receive_some()
            assert len(cache) == 1  # the ticket came with the echo
            await stream.aclose()  # no close_notify: taken back
            assert len(cache) == 0


async def test_trio_face_session_cache_bad_arguments(
    client_context: ssl.SSLContext,
) -> None:
    left, right = trio.testing.memory_stream_pair()
    with pytest.raises(ValueError, match="server_hostname"):
        SSLStream(left, client_context, session_cache=SessionCache())
    with pytest.raises(ValueError, match="for clients"):
        SSLStream(left, client_context, server_side=True, session_cache=SessionCache())
    with pytest.raises(TypeError, match="SessionCache"):
        SSLStream(
            left,
            client_context,
            server_hostname=HOSTNAME,
            session_cache={},  # type: ignore[arg-type]
        )
    await left.aclose()
    await right.aclose()
