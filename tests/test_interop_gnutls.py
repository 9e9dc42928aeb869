"""Interop with GnuTLS, a TLS stack that is not OpenSSL: gnutls-serv, gnutls-cli.

Our client against ``gnutls-serv --echo``, ``gnutls-cli`` against our server, over
loopback TCP on every AnyIO backend: TLS 1.2 and 1.3, ALPN, client certificates in
the handshake and after it (``gnutls-cli --post-handshake-auth`` answering our
``verify_client_post_handshake()``), close_notify in both directions, ``unwrap()``,
and a server-side STARTTLS (``gnutls-cli --starttls-proto=smtp``). How the GnuTLS
programs behave is described in ``peers/gnutls.py``.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest
import trustme
from anyio.streams.buffered import BufferedByteReceiveStream

from anyiotls import PostHandshakeAuthError, TLSAttribute, TLSStream

from .peers import PemFiles
from .peers.gnutls import GnuTLSClient, gnutls_client, gnutls_server

pytestmark = [pytest.mark.anyio, pytest.mark.interop]

#: Upper bound for one whole test: nothing here may hang.
TEST_TIMEOUT = 30

CLIENT_IDENTITY = ("email", "client@example.org")


@pytest.fixture(params=["1.2", "1.3"])
def tls_version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def at_most(context: ssl.SSLContext, version: str) -> ssl.SSLContext:
    context.maximum_version = getattr(ssl.TLSVersion, f"TLSv1_{version[-1]}")
    return context


async def receive_until(stream: TLSStream, terminator: bytes) -> bytes:
    data = b""
    while terminator not in data:
        data += await stream.receive()
    return data


@asynccontextmanager
async def our_server(
    context: ssl.SSLContext, pem: PemFiles, **client_options: object
) -> AsyncIterator[tuple[TLSStream, GnuTLSClient]]:
    """Our server on a free port, with gnutls-cli (*client_options*) connected."""
    listeners = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listeners:
        listener = listeners.listeners[0]
        assert isinstance(listener, anyio.abc.SocketListener)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with gnutls_client(pem, port, **client_options) as client:  # type: ignore[arg-type]
            transport = await listener.accept()
            try:
                stream = await TLSStream.wrap(
                    transport, server_side=True, ssl_context=context
                )
                yield stream, client
            finally:
                await anyio.aclose_forcefully(transport)


# -- our client, gnutls-serv ---------------------------------------------------------


async def test_our_client_echoes_alpn_and_unwraps_against_gnutls_serv(
    pem_files: PemFiles, client_context: ssl.SSLContext, tls_version: str
) -> None:
    client_context.set_alpn_protocols(["h2", "echo/1"])
    with anyio.fail_after(TEST_TIMEOUT):
        async with gnutls_server(
            pem_files, tls_version=tls_version, alpn=["echo/1"]
        ) as server:
            stream = await TLSStream.wrap(
                await anyio.connect_tcp(server.host, server.port),
                hostname="localhost",
                ssl_context=at_most(client_context, tls_version),
            )
            assert stream.extra(TLSAttribute.tls_version) == f"TLSv{tls_version}"
            assert stream.extra(TLSAttribute.alpn_protocol) == "echo/1"
            alphabet = bytes(range(32, 127))  # no CR: gnutls-serv turns CRLF into LF
            for size in (1, 1000, 40_000):  # several records, echoed back
                message = (alphabet * (size // len(alphabet) + 1))[: size - 1] + b"\n"
                await stream.send(message)
                data = b""
                while len(data) < len(message):
                    data += await stream.receive()
                assert data == message
            # Our close_notify, and gnutls-serv's answer: a clean downgrade.
            transport, leftover = await stream.unwrap()
            assert leftover == b""
            with pytest.raises(anyio.EndOfStream):
                await transport.receive()  # then gnutls-serv closes the socket
            await transport.aclose()
            assert server.connections() == 1


async def test_our_client_with_a_certificate_against_gnutls_serv_requiring_one(
    pem_files: PemFiles,
    client_context: ssl.SSLContext,
    client_cert: trustme.LeafCert,
    tls_version: str,
) -> None:
    client_cert.configure_cert(client_context)
    with anyio.fail_after(TEST_TIMEOUT):
        async with gnutls_server(
            pem_files, tls_version=tls_version, verify_client="require"
        ) as server:
            async with await TLSStream.wrap(
                await anyio.connect_tcp(server.host, server.port),
                hostname="localhost",
                ssl_context=at_most(client_context, tls_version),
            ) as stream:
                await stream.send(b"with a certificate\n")
                assert await receive_until(stream, b"\n") == b"with a certificate\n"
            # gnutls-serv verified the certificate (it requires one) and says so
            await server.wait_for_output(b"- Client Signature:")


async def test_our_client_without_a_certificate_is_refused_by_gnutls_serv(
    pem_files: PemFiles, client_context: ssl.SSLContext, tls_version: str
) -> None:
    with anyio.fail_after(TEST_TIMEOUT):
        async with gnutls_server(
            pem_files, tls_version=tls_version, verify_client="require"
        ) as server:
            # TLS 1.2: the handshake fails. TLS 1.3: our handshake ends before the
            # server has checked our (empty) certificate; its alert arrives next.
            transport = await anyio.connect_tcp(server.host, server.port)

            async def connect_and_receive() -> None:
                stream = await TLSStream.wrap(
                    transport,
                    hostname="localhost",
                    ssl_context=at_most(client_context, tls_version),
                )
                await stream.receive()  # (a send could race with its close)

            try:
                with pytest.raises((ssl.SSLError, anyio.BrokenResourceError)) as info:
                    await connect_and_receive()
            finally:
                await anyio.aclose_forcefully(transport)
    error = info.value
    if isinstance(error, anyio.BrokenResourceError):
        error = error.__cause__  # type: ignore[assignment]
    assert isinstance(error, ssl.SSLError)
    assert not isinstance(error, ssl.SSLEOFError)  # an alert, not a dropped line


# -- gnutls-cli, our server ------------------------------------------------------------


async def test_gnutls_cli_against_our_server_with_alpn_and_close_notify_both_ways(
    pem_files: PemFiles, server_context: ssl.SSLContext, tls_version: str
) -> None:
    server_context.set_alpn_protocols(["h2", "echo/1"])
    at_most(server_context, tls_version)
    with anyio.fail_after(TEST_TIMEOUT):
        async with our_server(
            server_context, pem_files, tls_version=tls_version, alpn=["echo/1"]
        ) as (stream, client):
            assert stream.extra(TLSAttribute.tls_version) == f"TLSv{tls_version}"
            assert stream.extra(TLSAttribute.alpn_protocol) == "echo/1"
            await client.wait_connected()
            await client.send(b"from gnutls-cli\n")
            assert await receive_until(stream, b"\n") == b"from gnutls-cli\n"
            await stream.send(b"from anyiotls\n")
            await client.wait_received(b"from anyiotls\n")
            # gnutls-cli -> us: EOF on its stdin makes it send close_notify.
            await client.close_stdin()
            with pytest.raises(anyio.EndOfStream):
                await stream.receive()
            # us -> gnutls-cli: our close_notify; it reports the clean close.
            await stream.aclose()
            assert await client.wait_exit() == 0
            await client.wait_for_output(b"Peer has closed the GnuTLS connection")


async def test_gnutls_cli_with_a_certificate_in_the_handshake(
    pem_files: PemFiles,
    server_context: ssl.SSLContext,
    ca: trustme.CA,
    tls_version: str,
) -> None:
    ca.configure_trust(server_context)
    server_context.verify_mode = ssl.CERT_REQUIRED
    at_most(server_context, tls_version)
    with anyio.fail_after(TEST_TIMEOUT):
        async with our_server(
            server_context, pem_files, tls_version=tls_version, cert=True
        ) as (stream, client):
            cert = stream.extra(TLSAttribute.peer_certificate)
            assert cert is not None
            assert CLIENT_IDENTITY in cert["subjectAltName"]
            await client.send(b"authenticated\n")
            assert await receive_until(stream, b"\n") == b"authenticated\n"
            await client.close_stdin()
            with pytest.raises(anyio.EndOfStream):
                await stream.receive()
            await stream.aclose()


@pytest.fixture
def pha_server_context(
    server_context: ssl.SSLContext, ca: trustme.CA
) -> ssl.SSLContext:
    ca.configure_trust(server_context)
    server_context.post_handshake_auth = True
    server_context.verify_mode = ssl.CERT_REQUIRED
    return server_context


async def test_post_handshake_auth_answered_by_gnutls_cli(
    pem_files: PemFiles, pha_server_context: ssl.SSLContext
) -> None:
    with anyio.fail_after(TEST_TIMEOUT):
        async with our_server(
            pha_server_context,
            pem_files,
            tls_version="1.3",
            cert=True,
            post_handshake_auth=True,
        ) as (stream, client):
            # With post-handshake auth offered, nothing was asked in the handshake.
            assert stream.extra(TLSAttribute.peer_certificate) is None
            await client.wait_connected()
            await client.send(b"before\n")
            cert = await stream.verify_client_post_handshake()
            assert cert is not None
            assert CLIENT_IDENTITY in cert["subjectAltName"]
            assert stream.extra(TLSAttribute.peer_certificate) == cert
            await client.wait_for_output(b"Re-auth was performed")
            # Data sent before the answer came out first, in order; and after it.
            await client.send(b"after\n")
            assert await receive_until(stream, b"after\n") == b"before\nafter\n"
            # A second round works as well.
            assert await stream.verify_client_post_handshake() == cert
            await stream.send(b"bye\n")
            await client.wait_received(b"bye\n")
            await client.close_stdin()
            with pytest.raises(anyio.EndOfStream):
                await stream.receive()
            await stream.aclose()


async def test_post_handshake_auth_without_a_certificate_fails_as_documented(
    pem_files: PemFiles, pha_server_context: ssl.SSLContext
) -> None:
    with anyio.fail_after(TEST_TIMEOUT):
        async with our_server(
            pha_server_context,
            pem_files,
            tls_version="1.3",
            post_handshake_auth=True,
        ) as (stream, client):
            await client.wait_connected()
            with pytest.raises(ssl.SSLError, match="PEER_DID_NOT_RETURN_A_CERTIFICATE"):
                await stream.verify_client_post_handshake()
            with pytest.raises(anyio.BrokenResourceError):
                await stream.receive()
            await client.wait_exit()  # it got our alert and gave up


async def test_post_handshake_auth_not_offered_by_gnutls_cli_is_refused_before_sending(
    pem_files: PemFiles, pha_server_context: ssl.SSLContext
) -> None:
    with anyio.fail_after(TEST_TIMEOUT):
        async with our_server(
            pha_server_context, pem_files, tls_version="1.3", cert=True
        ) as (stream, client):
            with pytest.raises(PostHandshakeAuthError, match="did not offer"):
                await stream.verify_client_post_handshake()
            # Nothing was sent: the connection goes on.
            await client.send(b"still fine\n")
            assert await receive_until(stream, b"\n") == b"still fine\n"
            await client.close_stdin()
            with pytest.raises(anyio.EndOfStream):
                await stream.receive()
            await stream.aclose()


async def test_our_unwrap_against_gnutls_cli_which_never_answers_close_notify(
    pem_files: PemFiles, server_context: ssl.SSLContext
) -> None:
    # gnutls-cli exits on our close_notify without sending its own: unwrap() sees
    # the transport end first, the documented BrokenResourceError (an EOF, not a
    # TLS error), never a hang.
    with anyio.fail_after(TEST_TIMEOUT):
        async with our_server(server_context, pem_files) as (stream, client):
            await client.send(b"ping\n")
            assert await receive_until(stream, b"\n") == b"ping\n"
            with pytest.raises(anyio.BrokenResourceError) as info:
                await stream.unwrap()
            assert isinstance(info.value.__cause__, ssl.SSLEOFError)
            assert await client.wait_exit() == 0


async def test_server_side_starttls_with_gnutls_cli(
    pem_files: PemFiles, server_context: ssl.SSLContext
) -> None:
    listeners = await anyio.create_tcp_listener(local_host="127.0.0.1")
    with anyio.fail_after(TEST_TIMEOUT):
        async with listeners:
            listener = listeners.listeners[0]
            assert isinstance(listener, anyio.abc.SocketListener)
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            async with gnutls_client(pem_files, port, starttls_proto="smtp") as client:
                transport = await listener.accept()
                reader = BufferedByteReceiveStream(transport)
                await transport.send(b"220 mx.test ESMTP\r\n")
                assert (await reader.receive_until(b"\r\n", 1000)).startswith(b"EHLO")
                await transport.send(b"250-mx.test\r\n250 STARTTLS\r\n")
                assert await reader.receive_until(b"\r\n", 1000) == b"STARTTLS"
                await transport.send(b"220 go ahead\r\n")
                # The client waits for the go-ahead: nothing is pipelined after it.
                assert reader.buffer == b""
                async with await TLSStream.wrap(
                    transport, server_side=True, ssl_context=server_context
                ) as stream:
                    await client.wait_connected()
                    await stream.send(b"250 hello over TLS\r\n")
                    await client.wait_received(b"250 hello over TLS")
                    await client.send(b"EHLO again\r\n")
                    assert await receive_until(stream, b"\r\n") == b"EHLO again\r\n"
                    await client.close_stdin()
                    with pytest.raises(anyio.EndOfStream):
                        await stream.receive()
                assert await client.wait_exit() == 0
