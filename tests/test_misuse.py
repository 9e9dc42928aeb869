"""Contexts given to the wrong side: a clear error at the wrong call, naming the fix.

Before, the first two surfaced as OpenSSL's "Cannot create a server socket with a
PROTOCOL_TLS_CLIENT context", and the others only on each connection (a client
context or one without a certificate in a listener: every handshake failed, with
``NO_SHARED_CIPHER`` for the latter).
"""

from __future__ import annotations

import ssl

import anyio
import anyio.abc
import pytest
import trio
import trio.testing
import trustme

from anyiotls import TLSListener, TLSStream
from anyiotls.trio import SSLListener, SSLStream

pytestmark = pytest.mark.anyio


def _no_certificate() -> ssl.SSLContext:
    return ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)


async def test_wrap_with_a_client_context_and_no_hostname(
    client_context: ssl.SSLContext,
) -> None:
    tcp_server = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = tcp_server.extra(anyio.abc.SocketAttribute.local_port)
    async with tcp_server, await anyio.connect_tcp("127.0.0.1", port) as tcp:
        with pytest.raises(ssl.SSLError, match="client context") as caught:
            await TLSStream.wrap(tcp, ssl_context=client_context)
    message = str(caught.value)
    assert "hostname='the.server.name'" in message
    assert "Purpose.CLIENT_AUTH" in message  # the other way out: be a server
    assert caught.value.__cause__ is None


async def test_wrap_server_side_false_with_a_server_context(
    server_context: ssl.SSLContext,
) -> None:
    tcp_server = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = tcp_server.extra(anyio.abc.SocketAttribute.local_port)
    async with tcp_server, await anyio.connect_tcp("127.0.0.1", port) as tcp:
        with pytest.raises(ssl.SSLError, match="server context") as caught:
            await TLSStream.wrap(tcp, hostname="localhost", ssl_context=server_context)
    assert "ssl.create_default_context()" in str(caught.value)


async def test_tls_listener_refuses_a_client_context(
    client_context: ssl.SSLContext,
) -> None:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as tcp:
        with pytest.raises(ValueError, match="TLSListener needs a server context"):
            TLSListener(tcp, client_context)


async def test_tls_listener_refuses_a_context_without_certificate() -> None:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as tcp:
        with pytest.raises(ValueError, match="no certificate") as caught:
            TLSListener(tcp, _no_certificate())
    assert "load_cert_chain" in str(caught.value)
    assert "NO_SHARED_CIPHER" in str(caught.value)


async def test_tls_listener_refuses_what_is_not_a_context() -> None:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as tcp:
        with pytest.raises(TypeError, match=r"ssl\.SSLContext"):
            TLSListener(tcp, "server.pem")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "configure",
    [
        lambda context: None,
        lambda context: setattr(context, "verify_mode", ssl.CERT_REQUIRED),
        lambda context: setattr(context, "minimum_version", ssl.TLSVersion.TLSv1_3),
        lambda context: setattr(context, "maximum_version", ssl.TLSVersion.TLSv1_2),
    ],
    ids=["default", "client-certificates-required", "tls13-only", "tls12-only"],
)
async def test_tls_listener_accepts_working_server_contexts(
    server_cert: trustme.LeafCert, configure: object
) -> None:
    context = _no_certificate()
    server_cert.configure_cert(context)
    configure(context)  # type: ignore[operator]
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as tcp:
        listener = TLSListener(tcp, context)
        assert listener.ssl_context is context


async def test_a_context_with_sni_callback_may_lack_a_certificate(
    server_context: ssl.SSLContext,
) -> None:
    # The callback may switch each connection to a context that has one.
    context = _no_certificate()

    def choose(ssl_object: ssl.SSLObject, name: str | None, _: object) -> None:
        ssl_object.context = server_context

    context.sni_callback = choose
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as tcp:
        TLSListener(tcp, context)


# -- the Trio face -------------------------------------------------------------------


def test_trio_ssl_stream_server_side_with_a_client_context(
    client_context: ssl.SSLContext,
) -> None:
    transport = trio.testing.memory_stream_pair()[0]
    with pytest.raises(ssl.SSLError, match="client context") as caught:
        SSLStream(transport, client_context, server_side=True)
    assert "server_hostname='the.server.name'" in str(caught.value)


def test_trio_ssl_stream_client_side_with_a_server_context(
    server_context: ssl.SSLContext,
) -> None:
    transport = trio.testing.memory_stream_pair()[0]
    with pytest.raises(ssl.SSLError, match="server context") as caught:
        SSLStream(transport, server_context)
    assert "server_side=True" in str(caught.value)


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_ssl_listener_refuses_client_and_certificateless_contexts(
    client_context: ssl.SSLContext,
) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    try:
        with pytest.raises(ValueError, match="SSLListener needs a server context"):
            SSLListener(listeners[0], client_context)
        with pytest.raises(ValueError, match="no certificate"):
            SSLListener(listeners[0], _no_certificate())
    finally:
        for listener in listeners:
            await listener.aclose()
