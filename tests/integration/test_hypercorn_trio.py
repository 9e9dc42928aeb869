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
import pytest
import trio

import anyiotls
import anyiotls.trio

from ..peers import PemFiles
from .app import digest, payload
from .clients import (
    RawClient,
    Transfer,
    assert_serving,
    curl,
    curl_many,
    httpx_client,
    request_bytes,
    wait_server_closed,
)
from .redirect import Redirect
from .servers import Server, hypercorn_config, hypercorn_trio

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> Any:
    """Where the test's own code runs: the clients here are curl processes and
    threads, whatever the loop (``test_httpx`` takes both)."""
    return "trio"


def _server_streams(redirect: Redirect, minimum: int = 1) -> list[Any]:
    streams = redirect.assert_used(anyiotls.trio.SSLStream, minimum)
    redirect.assert_used(anyiotls.trio.SSLListener)
    return [stream for stream in streams if stream.server_side]


@pytest.mark.parametrize(
    ("http2", "close"),
    [(False, True), (False, False), (True, False)],
    # no h2 with "Connection: close": HTTP/2 has no such header
    ids=["http1.1-close", "http1.1-keep-alive", "h2"],
)
@pytest.mark.parametrize("tls12", [True, False], ids=["TLSv1.2", "TLSv1.3"])
async def test_curl(
    trio_server: Server,
    redirect: Redirect,
    pem_files: PemFiles,
    tls12: bool,
    http2: bool,
    close: bool,
) -> None:
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

    await trio.to_thread.run_sync(client)
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

    await trio.to_thread.run_sync(client)
    _server_streams(redirect)
    await wait_server_closed(trio_server, redirect)
    await assert_serving(trio_server, pem_files.ca)


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "h2"])
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.parametrize("keep_alive_timeout", [2.0])  # three requests, one connection
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
async def test_load(redirect: Redirect, pem_files: PemFiles) -> None:
    """1,000 requests over 20 kept-alive connections, then 200 fresh connections
    (``Connection: close``), half of each on TLS 1.2; all answered.

    The clients are curl processes: a client in this process would share the
    interpreter (and its lock) with the server and measure that. hypercorn's
    default keep-alive timeout (5 s, not 0.5 s) keeps a busy machine's pauses
    between two requests from ending a connection.
    """
    config = hypercorn_config(str(pem_files.server), keep_alive_timeout=5.0)
    with hypercorn_trio(config) as trio_server:
        kept_alive: list[list[Transfer]] = []
        fresh: list[list[Transfer]] = []
        failures: list[Exception] = []

        async def run(
            results: list[list[Transfer]], client: int, **options: Any
        ) -> None:
            # A failure is collected, not raised: raising would cancel the other
            # clients' curl processes mid-way.
            paths = [f"/echo?client={client}&n={n}" for n in range(options.pop("n"))]
            try:
                transfers = await curl_many(trio_server, pem_files.ca, paths, **options)
                assert [(t.status, t.body) for t in transfers] == [
                    (200, path.partition("?")[2].encode()) for path in paths
                ]
            except Exception as exc:
                failures.append(exc)
            else:
                results.append(transfers)

        async with anyio.create_task_group() as group:
            for client in range(20):
                group.start_soon(
                    partial(run, kept_alive, client, n=50, tls12=client % 2 == 0)
                )
        async with anyio.create_task_group() as group:
            for client in range(10):
                group.start_soon(
                    partial(run, fresh, client, n=20, tls12=client % 2 == 0, close=True)
                )
        trio_server.check_alive()  # a dead server is the cause to report
        assert not failures, f"{len(failures)} clients failed, the first: {failures[0]}"
        assert sum(len(transfers) for transfers in kept_alive) == 1_000
        assert [sum(t.connects for t in ts) for ts in kept_alive] == [1] * 20
        assert sum(len(transfers) for transfers in fresh) == 200
        assert all(t.connects == 1 for ts in fresh for t in ts)
        assert len(_server_streams(redirect)) == 20 + 200
        await wait_server_closed(trio_server, redirect)
        await assert_serving(trio_server, pem_files.ca)
