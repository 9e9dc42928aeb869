"""Fixtures of the reliability tests, and the figures they print at the end."""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable, Iterator

import pytest
import trustme

from .faces import Contexts
from .harness import FIGURES, close_memory_pairs, summary


@pytest.fixture(autouse=True)
def _close_memory_pairs() -> Iterator[None]:
    yield
    close_memory_pairs()


@pytest.fixture(scope="session")
def make_contexts(
    ca: trustme.CA, server_cert: trustme.LeafCert, client_cert: trustme.LeafCert
) -> Callable[[str, bool], Contexts]:
    """``make_contexts(version, pha)``: client and server contexts, made once.

    *version* ``"1.2"`` caps the client at TLS 1.2; *pha* sets both up for
    post-handshake authentication (server: CERT_REQUIRED, trusts the test CA;
    client: has the ``client@example.org`` certificate). The contexts are shared
    by every test that asks for the same pair: do not change them. (Making a
    default context costs ~20 ms, for the system's CA store.)
    """

    @functools.cache
    def make(version: str, pha: bool = False) -> Contexts:
        client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ca.configure_trust(client)
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_cert.configure_cert(server)
        if version == "1.2":
            client.maximum_version = ssl.TLSVersion.TLSv1_2
        if pha:
            ca.configure_trust(server)
            server.post_handshake_auth = True
            server.verify_mode = ssl.CERT_REQUIRED
            client_cert.configure_cert(client)
            client.post_handshake_auth = True
        return Contexts(client, server)

    return make


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """The figures (cancellation outcomes, fuzz inputs, ...): see :func:`summary`."""
    title, lines = summary(FIGURES, verbose=config.getoption("verbose") > 0)
    if title:
        terminalreporter.section(title)
    for line in lines:
        terminalreporter.write_line(line)
