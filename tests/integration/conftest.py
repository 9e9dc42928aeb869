"""Fixtures for the integration tests: the redirect, the servers, the clients."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ..peers import PemFiles
from .redirect import Redirect, redirected
from .servers import Server, hypercorn_asyncio, hypercorn_config, hypercorn_trio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """The clients' event loop (uvloop adds nothing here that the unit tests lack)."""
    return request.param


@pytest.fixture
def redirect() -> Iterator[Redirect]:
    """The anchors' classes redirected to anyiotls's for the test."""
    with redirected() as active:
        yield active


@pytest.fixture
def keep_alive_timeout() -> float:
    """hypercorn's keep-alive timeout for ``trio_server``: short, because hypercorn
    (on trio.SSLStream too) sometimes misses a client's EOF that comes right after
    a response, and then closes only when the connection has idled this long — and
    the tests wait for the server to finish every connection. A test whose client
    sends several requests on one connection takes a longer one (parametrize
    ``keep_alive_timeout``), lest the server close between two of them."""
    return 0.5


@pytest.fixture
def trio_server(
    redirect: Redirect, pem_files: PemFiles, keep_alive_timeout: float
) -> Iterator[Server]:
    """hypercorn's Trio worker on anyiotls.trio (TLS 1.2 and 1.3; h2, http/1.1)."""
    config = hypercorn_config(
        str(pem_files.server), keep_alive_timeout=keep_alive_timeout
    )
    with hypercorn_trio(config) as server:
        yield server


@pytest.fixture
def asyncio_server(pem_files: PemFiles) -> Iterator[Server]:
    """hypercorn's asyncio worker: TLS by the standard library, an independent peer."""
    with hypercorn_asyncio(hypercorn_config(str(pem_files.server))) as server:
        yield server


@pytest.fixture
def httpcore_anyio(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpcore's AnyIO backend on Trio too (the one that uses anyio's TLSStream).

    httpcore's AutoBackend picks its Trio backend (trio.SSLStream) under Trio; it
    imports that class when it first connects, from the module patched here. That
    the AnyIO backend ran is checked by the redirect (anyiotls.TLSStream objects).
    """
    import httpcore

    monkeypatch.setattr("httpcore._backends.trio.TrioBackend", httpcore.AnyIOBackend)
