"""Shared fixtures: a test CA and its certificates, SSL contexts, AnyIO backends."""

from __future__ import annotations

import importlib.util
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme

from .peers import PemFiles, in_ci, write_pem_files

# In CI nothing may skip: a missing uvloop there is a broken install, so the test
# runs and fails on the import instead of skipping.
_UVLOOP_SKIP = importlib.util.find_spec("uvloop") is None and not in_ci()


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {}), id="asyncio"),
        pytest.param(
            ("asyncio", {"use_uvloop": True}),
            id="asyncio+uvloop",
            marks=pytest.mark.skipif(_UVLOOP_SKIP, reason="uvloop is not installed"),
        ),
        pytest.param("trio", id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


# -- certificates ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_cert(ca: trustme.CA) -> trustme.LeafCert:
    """The server's certificate, for ``localhost`` and ``127.0.0.1``."""
    return ca.issue_cert("localhost", "127.0.0.1")


@pytest.fixture(scope="session")
def client_cert(ca: trustme.CA) -> trustme.LeafCert:
    """A client certificate (identity ``client@example.org``) from the same CA."""
    return ca.issue_cert("client@example.org")


@pytest.fixture
def pem_files(
    tmp_path: Path,
    ca: trustme.CA,
    server_cert: trustme.LeafCert,
    client_cert: trustme.LeafCert,
) -> PemFiles:
    """The CA, server and client certificates as PEM files, for external programs."""
    return write_pem_files(tmp_path / "pem", ca, server_cert, client_cert)


# -- SSL contexts (function scope: tests may change them) ------------------------------


def _server_context(server_cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(context)
    return context


def _client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(context)
    return context


@pytest.fixture
def server_context(server_cert: trustme.LeafCert) -> ssl.SSLContext:
    """A server context with the ``localhost``/``127.0.0.1`` certificate."""
    return _server_context(server_cert)


@pytest.fixture
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    """A client context that trusts the test CA (and checks host names)."""
    return _client_context(ca)


@pytest.fixture
def server_context_tls12(server_cert: trustme.LeafCert) -> ssl.SSLContext:
    """Like ``server_context``, but at most TLS 1.2 (a separate object)."""
    context = _server_context(server_cert)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


@pytest.fixture
def client_context_tls12(ca: trustme.CA) -> ssl.SSLContext:
    """Like ``client_context``, but at most TLS 1.2 (a separate object)."""
    context = _client_context(ca)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


@pytest.fixture(autouse=True)
def _close_memory_transports() -> Any:
    """Close the memory transports a test made with ``tests.pairs``."""
    yield
    from .pairs import close_memory_transports

    close_memory_transports()
