"""httpx, unchanged, over httpcore's AnyIO backend on anyiotls (asyncio and Trio).

The server is hypercorn's asyncio worker: TLS by the standard library, so what the
client does is checked against an independent implementation. The proxy is one
that the test starts (a TLS CONNECT proxy on the standard library too): through it
the origin's TLS runs inside the proxy's, anyiotls over anyiotls.
"""

from __future__ import annotations

import hashlib
import ssl

import anyio
import httpx
import pytest
import trustme

import anyiotls

from .app import digest, payload
from .clients import httpx_client
from .redirect import Redirect
from .servers import Server, connect_proxy

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("httpcore_anyio")]

http_versions = pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "h2"])
TEN_MB = 10 * 1000 * 1000


def _check_version(response: httpx.Response, http2: bool) -> None:
    assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")


@http_versions
async def test_request(
    asyncio_server: Server,
    redirect: Redirect,
    client_context: ssl.SSLContext,
    http2: bool,
) -> None:
    async with httpx_client(client_context, http2=http2) as client:
        response = await client.get(asyncio_server.url + "/info")
    _check_version(response, http2)
    assert response.text == ("2 https" if http2 else "1.1 https")
    (stream,) = redirect.assert_used(anyiotls.TLSStream)
    assert stream.extra(anyiotls.TLSAttribute.alpn_protocol) == (
        "h2" if http2 else "http/1.1"
    )
    asyncio_server.check_alive()


@pytest.mark.slow
@http_versions
async def test_download_10_mb(
    asyncio_server: Server,
    redirect: Redirect,
    client_context: ssl.SSLContext,
    http2: bool,
) -> None:
    hasher = hashlib.sha256()
    received = 0
    async with (
        httpx_client(client_context, http2=http2) as client,
        client.stream(
            "GET", f"{asyncio_server.url}/download?size={TEN_MB}&seed=7"
        ) as response,
    ):
        _check_version(response, http2)
        async for chunk in response.aiter_raw():
            hasher.update(chunk)
            received += len(chunk)
    assert f"{received} {hasher.hexdigest()}" == digest(payload(TEN_MB, seed=7))
    redirect.assert_used(anyiotls.TLSStream)
    asyncio_server.check_alive()


@pytest.mark.slow
@http_versions
async def test_upload_10_mb(
    asyncio_server: Server,
    redirect: Redirect,
    client_context: ssl.SSLContext,
    http2: bool,
) -> None:
    body = payload(TEN_MB, seed=8)
    async with httpx_client(client_context, http2=http2) as client:
        response = await client.post(asyncio_server.url + "/upload", content=body)
    _check_version(response, http2)
    assert response.text == digest(body)
    redirect.assert_used(anyiotls.TLSStream)
    asyncio_server.check_alive()


@http_versions
async def test_200_requests_over_a_pool(
    asyncio_server: Server,
    redirect: Redirect,
    client_context: ssl.SSLContext,
    http2: bool,
) -> None:
    limits = httpx.Limits(max_connections=5, max_keepalive_connections=5)
    answers: list[bytes] = []

    async def requests(client: httpx.AsyncClient, worker: int) -> None:
        for number in range(20):
            body = f"{worker}/{number}".encode()
            response = await client.post(asyncio_server.url + "/echo", content=body)
            _check_version(response, http2)
            assert response.content == body
            answers.append(body)

    async with (
        httpx_client(client_context, http2=http2, limits=limits) as client,
        anyio.create_task_group() as group,
    ):
        for worker in range(10):
            group.start_soon(requests, client, worker)
    assert len(answers) == 200
    streams = redirect.assert_used(anyiotls.TLSStream)
    # h2 multiplexes on one connection; HTTP/1.1 reuses the pool's five
    assert len(streams) <= (1 if http2 else 5 * 2)
    asyncio_server.check_alive()


@http_versions
async def test_https_through_a_connect_proxy(
    asyncio_server: Server,
    redirect: Redirect,
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
    ca: trustme.CA,
    http2: bool,
) -> None:
    body = payload(200_000, seed=3)
    # its own context: httpcore sets ALPN on the contexts it is given
    proxy_context = ssl.create_default_context()
    ca.configure_trust(proxy_context)
    with connect_proxy(server_context) as proxy:
        async with httpx_client(
            client_context,
            http2=http2,
            proxy=httpx.Proxy(proxy.url, ssl_context=proxy_context),
        ) as client:
            info = await client.get(asyncio_server.url + "/info")
            upload = await client.post(asyncio_server.url + "/upload", content=body)
    _check_version(info, http2)
    assert info.text == ("2 https" if http2 else "1.1 https")
    assert upload.text == digest(body)
    assert proxy.tunnels == [f"127.0.0.1:{asyncio_server.port}"]
    assert proxy.relayed[0] > len(body)  # the upload went through the tunnel
    # TLS inside TLS: the origin's TLSStream runs over the proxy's, both anyiotls
    outer, inner = redirect.assert_used(anyiotls.TLSStream, 2)
    assert inner.transport_stream is outer
    assert not isinstance(outer.transport_stream, anyiotls.TLSStream)
    assert outer.extra(anyiotls.TLSAttribute.alpn_protocol) is None
    assert inner.extra(anyiotls.TLSAttribute.alpn_protocol) == (
        "h2" if http2 else "http/1.1"
    )
    asyncio_server.check_alive()
