"""hypercorn's Trio worker, unchanged, on anyiotls.trio.

hypercorn 0.18 builds ``trio.SSLListener(..., https_compatible=True)``; the redirect
makes that anyiotls's. Every case ends with the server checked alive and answering a
new connection: one connection that kills the worker refuses every later client.
"""

from __future__ import annotations

import ssl
from functools import partial
from typing import Any

import anyio
import httpx
import pytest

import anyiotls
import anyiotls.trio

from ..peers import PemFiles
from .app import digest, payload
from .clients import (
    RawClient,
    assert_serving,
    curl,
    httpx_client,
    request_bytes,
    wait_server_closed,
)
from .redirect import Redirect
from .servers import Server, hypercorn_config, hypercorn_trio

pytestmark = pytest.mark.anyio


def _server_streams(redirect: Redirect, minimum: int = 1) -> list[Any]:
    streams = redirect.assert_used(anyiotls.trio.SSLStream, minimum)
    redirect.assert_used(anyiotls.trio.SSLListener)
    return [stream for stream in streams if stream.server_side]


@pytest.mark.parametrize("close", [True, False], ids=["close", "keep-alive"])
@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "h2"])
@pytest.mark.parametrize("tls12", [True, False], ids=["TLSv1.2", "TLSv1.3"])
async def test_curl(
    trio_server: Server,
    redirect: Redirect,
    pem_files: PemFiles,
    tls12: bool,
    http2: bool,
    close: bool,
) -> None:
    if http2 and close:
        pytest.skip("'Connection: close' is not an HTTP/2 header")
    result = await curl(
        trio_server,
        pem_files.ca,
        tls12=tls12,
        http2=http2,
        close=close,
        data=b"hello over anyiotls",
    )
    assert (result.status, result.body) == (200, b"hello over anyiotls")
    assert result.tls_version == ("TLSv1.2" if tls12 else "TLSv1.3")
    assert result.alpn == ("h2" if http2 else "http/1.1")
    (stream,) = _server_streams(redirect)
    assert stream.https_compatible
    await wait_server_closed(trio_server, redirect)
    await assert_serving(trio_server, pem_files.ca)


@pytest.fixture
def raw_context(client_context: ssl.SSLContext, request: pytest.FixtureRequest) -> Any:
    if request.param == "TLSv1.2":
        client_context.maximum_version = ssl.TLSVersion.TLSv1_2
    client_context.set_alpn_protocols(["http/1.1"])
    return client_context


both_versions = pytest.mark.parametrize(
    "raw_context", ["TLSv1.2", "TLSv1.3"], indirect=True
)


@both_versions
@pytest.mark.parametrize(
    "when", ["after-handshake", "mid-request", "after-response", "mid-upload"]
)
async def test_client_closes_without_close_notify(
    trio_server: Server,
    redirect: Redirect,
    pem_files: PemFiles,
    raw_context: ssl.SSLContext,
    when: str,
) -> None:
    def client() -> None:
        with RawClient(trio_server, raw_context) as raw:
            if when == "mid-request":
                raw.send(b"POST /echo HTTP/1.1\r\nHost: localhost\r\n")
            elif when == "after-response":
                response = raw.request(request_bytes(body=b"ragged"))
                assert response.startswith(b"HTTP/1.1 200")
                assert response.endswith(b"ragged")
            elif when == "mid-upload":
                raw.send(request_bytes("/upload", b"x" * 100_000)[:50_000])
            raw.close_ragged()

    await anyio.to_thread.run_sync(client)
    _server_streams(redirect)
    await wait_server_closed(trio_server, redirect)
    await assert_serving(trio_server, pem_files.ca)


@both_versions
@pytest.mark.parametrize("end", ["reset", "close_notify"])
async def test_client_resets_or_closes_cleanly(
    trio_server: Server,
    redirect: Redirect,
    pem_files: PemFiles,
    raw_context: ssl.SSLContext,
    end: str,
) -> None:
    def client() -> None:
        with RawClient(trio_server, raw_context) as raw:
            response = raw.request(request_bytes(body=b"then " + end.encode()))
            assert response.endswith(b"then " + end.encode())
            raw.reset() if end == "reset" else raw.close_clean()

    await anyio.to_thread.run_sync(client)
    _server_streams(redirect)
    await wait_server_closed(trio_server, redirect)
    await assert_serving(trio_server, pem_files.ca)


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "h2"])
async def test_httpx(
    trio_server: Server,
    redirect: Redirect,
    pem_files: PemFiles,
    client_context: ssl.SSLContext,
    httpcore_anyio: None,
    http2: bool,
) -> None:
    body = payload(300_000, seed=1)
    async with httpx_client(client_context, http2=http2) as client:
        info = await client.get(trio_server.url + "/info")
        upload = await client.post(trio_server.url + "/upload", content=body)
        download = await client.get(trio_server.url + "/download?size=300000&seed=1")
    expected = "HTTP/2" if http2 else "HTTP/1.1"
    assert [r.http_version for r in (info, upload, download)] == [expected] * 3
    assert info.text == ("2 https" if http2 else "1.1 https")
    assert upload.text == digest(body)
    assert download.content == body
    # one connection, anyiotls on both ends
    (client_stream,) = redirect.assert_used(anyiotls.TLSStream)
    assert client_stream.extra(anyiotls.TLSAttribute.alpn_protocol) == (
        "h2" if http2 else "http/1.1"
    )
    assert len(_server_streams(redirect)) == 1
    await wait_server_closed(trio_server, redirect)
    await assert_serving(trio_server, pem_files.ca)


@pytest.mark.slow
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_load(
    redirect: Redirect,
    pem_files: PemFiles,
    client_context: ssl.SSLContext,
    client_context_tls12: ssl.SSLContext,
) -> None:
    """1,000 requests over 20 kept-alive connections, then 200 fresh connections
    (``Connection: close``, half of them TLS 1.2), all answered.

    hypercorn's default keep-alive timeout here (5 s, not 0.5 s): on a busy machine
    a pooled connection may idle longer than 0.5 s between two requests, and a
    server closing it then is the usual keep-alive race, not a failure of TLS.
    """
    config = hypercorn_config(str(pem_files.server), keep_alive_timeout=5.0)
    with hypercorn_trio(config) as trio_server:
        await _load(
            trio_server, redirect, pem_files, client_context, client_context_tls12
        )


async def _load(
    trio_server: Server,
    redirect: Redirect,
    pem_files: PemFiles,
    client_context: ssl.SSLContext,
    client_context_tls12: ssl.SSLContext,
) -> None:
    failures: list[BaseException] = []
    answered = 0

    async def requests(client: Any, count: int, **options: Any) -> None:
        nonlocal answered
        for number in range(count):
            body = f"request {number}".encode()
            try:
                response = await client.post(
                    trio_server.url + "/echo", content=body, **options
                )
                assert (response.status_code, response.content) == (200, body)
                answered += 1
            except Exception as exc:  # counted, and the first one reported below
                failures.append(exc)

    limits = {"max_connections": 20, "max_keepalive_connections": 20}
    async with (
        httpx_client(client_context, limits=httpx.Limits(**limits)) as client,
        anyio.create_task_group() as group,
    ):
        for _ in range(20):
            group.start_soon(requests, client, 50)
    kept_alive = len(_server_streams(redirect))
    fresh = {"headers": {"Connection": "close"}}
    async with (
        httpx_client(client_context) as client13,
        httpx_client(client_context_tls12) as client12,
        anyio.create_task_group() as group,
    ):
        for client in [client13, client12] * 5:
            group.start_soon(partial(requests, client, 20, **fresh))
    assert not failures, f"{len(failures)} failures, the first: {failures[0]!r}"
    assert answered == 1_200
    streams = _server_streams(redirect)
    # Reused: 1,000 requests on a few dozen connections. Not exactly 20: httpcore
    # drops a pooled connection that it finds readable while idle and opens another.
    assert kept_alive <= 50
    assert len(streams) >= 20 + 200
    await wait_server_closed(trio_server, redirect)
    await assert_serving(trio_server, pem_files.ca)
