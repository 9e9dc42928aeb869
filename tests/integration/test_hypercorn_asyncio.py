"""Our clients against hypercorn's asyncio worker (TLS by the standard library).

anyiotls's ``TLSStream`` directly, and ``anyio.connect_tcp(tls=True)``, which uses
the names that ``anyio._core._sockets`` bound at import (patched by the redirect).
httpx over httpcore's AnyIO backend against the same server: ``test_httpx.py``;
here, httpx's default on Trio (httpcore's Trio backend, ``trio.SSLStream``).
"""

from __future__ import annotations

import ssl

import anyio
import pytest

import anyiotls
import anyiotls.trio

from .app import digest, payload
from .clients import httpx_client
from .redirect import Redirect
from .servers import Server

pytestmark = pytest.mark.anyio


def _request(body: bytes) -> bytes:
    return (
        b"POST /upload HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body


async def _read_to_end(stream: anyio.abc.ByteStream) -> bytes:
    data = bytearray()
    while True:
        try:
            data += await stream.receive()
        except anyio.EndOfStream:
            return bytes(data)


@pytest.mark.parametrize("standard_compatible", [True, False])
@pytest.mark.parametrize("tls12", [True, False], ids=["TLSv1.2", "TLSv1.3"])
async def test_tls_stream(
    asyncio_server: Server,
    redirect: Redirect,
    client_context: ssl.SSLContext,
    tls12: bool,
    standard_compatible: bool,
) -> None:
    if tls12:
        client_context.maximum_version = ssl.TLSVersion.TLSv1_2
    client_context.set_alpn_protocols(["http/1.1"])
    body = payload(100_000, seed=5)
    with anyio.fail_after(30):
        tcp = await anyio.connect_tcp(asyncio_server.host, asyncio_server.port)
        stream = await anyiotls.TLSStream.wrap(
            tcp,
            hostname="localhost",
            ssl_context=client_context,
            standard_compatible=standard_compatible,
        )
        async with stream:
            assert stream.extra(anyiotls.TLSAttribute.tls_version) == (
                "TLSv1.2" if tls12 else "TLSv1.3"
            )
            assert stream.extra(anyiotls.TLSAttribute.alpn_protocol) == "http/1.1"
            await stream.send(_request(body))
            # asyncio's SSL transport sends close_notify before it closes, so the
            # response ends in EndOfStream even where a ragged EOF is an error
            response = await _read_to_end(stream)
    head, _, answer = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert answer == digest(body).encode()
    redirect.assert_used(anyiotls.TLSStream)  # and no anchor along the way
    asyncio_server.check_alive()


async def test_anyio_connect_tcp_with_tls(
    asyncio_server: Server, redirect: Redirect, client_context: ssl.SSLContext
) -> None:
    client_context.set_alpn_protocols(["http/1.1"])
    with anyio.fail_after(30):
        stream = await anyio.connect_tcp(
            asyncio_server.host,
            asyncio_server.port,
            tls=True,
            ssl_context=client_context,
            tls_hostname="localhost",
        )
        async with stream:
            await stream.send(_request(b"via connect_tcp"))
            response = await _read_to_end(stream)
    assert type(stream) is anyiotls.TLSStream
    assert response.endswith(digest(b"via connect_tcp").encode())
    assert ("anyio._core._sockets", "TLSStream") in redirect.patched
    redirect.assert_used(anyiotls.TLSStream)
    asyncio_server.check_alive()


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "h2"])
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_httpx_default_on_trio(
    asyncio_server: Server,
    redirect: Redirect,
    client_context: ssl.SSLContext,
    http2: bool,
) -> None:
    """What a Trio user of httpx gets by default: httpcore's Trio backend, which
    wraps its sockets in ``trio.SSLStream`` (here anyiotls.trio's)."""
    async with httpx_client(client_context, http2=http2) as client:
        response = await client.get(asyncio_server.url + "/info")
    assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    assert response.text == ("2 https" if http2 else "1.1 https")
    (stream,) = redirect.assert_used(anyiotls.trio.SSLStream)
    assert stream.selected_alpn_protocol() == ("h2" if http2 else "http/1.1")
    assert not redirect.instances(anyiotls.TLSStream)
    asyncio_server.check_alive()
