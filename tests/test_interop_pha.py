"""Post-handshake client authentication against OpenSSL's own peers.

Our server asks ``openssl s_client -enable_pha -cert ...`` for its certificate with
``verify_client_post_handshake()``; our client answers ``openssl s_server``'s ``c``
command (a TLS 1.3 CertificateRequest) from inside ``receive()``.  Real loopback TCP,
every AnyIO backend.  The peers and their quirks are in ``peers/openssl.py``; the
anyiotls-to-anyiotls cases are in ``test_post_handshake_auth.py``.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest
import trustme
from cryptography import x509

from anyiotls import PostHandshakeAuthError, TLSAttribute, TLSStream

from .peers import PemFiles
from .peers.openssl import OpenSSLServer, openssl_client, openssl_server

pytestmark = [pytest.mark.anyio, pytest.mark.interop]

#: Upper bound for one whole test: nothing here may hang.
TEST_TIMEOUT = 60

# Protocol log lines (``-msg``) as s_server/s_client print them.
SENT = r">>> TLS 1\.3, Handshake \[length [0-9a-f]+\], "
GOT = r"<<< TLS 1\.3, Handshake \[length [0-9a-f]+\], "
GOT_KEY_UPDATE = r"<<< TLS 1\.3, Handshake \[length 0005\], KeyUpdate"


def count(pattern: str, text: str) -> int:
    return len(re.findall(pattern + "$", text, re.MULTILINE))


def der(cert: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())


async def receive_until(stream: TLSStream, terminator: bytes) -> bytes:
    data = b""
    while terminator not in data:
        data += await stream.receive()
    return data


@pytest.fixture
def pha_server_context(
    server_context: ssl.SSLContext, ca: trustme.CA
) -> ssl.SSLContext:
    ca.configure_trust(server_context)
    server_context.post_handshake_auth = True
    server_context.verify_mode = ssl.CERT_REQUIRED
    return server_context


@asynccontextmanager
async def our_server(
    context: ssl.SSLContext, **client_options: Any
) -> AsyncIterator[tuple[TLSStream, Any]]:
    """Our server on a free port, with s_client (``client_options``) connected."""
    listeners = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listeners:
        listener = listeners.listeners[0]
        assert isinstance(listener, anyio.abc.SocketListener)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        pem: PemFiles = client_options.pop("pem")
        async with openssl_client(pem, port, tls_version="1.3", **client_options) as (
            client
        ):
            transport = await listener.accept()
            try:
                stream = await TLSStream.wrap(
                    transport, server_side=True, ssl_context=context
                )
            except BaseException:
                await anyio.aclose_forcefully(transport)
                raise
            try:
                await client.wait_connected()
                yield stream, client
            finally:
                await anyio.aclose_forcefully(stream)


@asynccontextmanager
async def our_client(
    server: OpenSSLServer, context: ssl.SSLContext
) -> AsyncIterator[TLSStream]:
    transport = await anyio.connect_tcp(server.host, server.port)
    try:
        stream = await TLSStream.wrap(
            transport, hostname="localhost", ssl_context=context
        )
    except BaseException:
        await anyio.aclose_forcefully(transport)
        raise
    try:
        yield stream
    finally:
        await anyio.aclose_forcefully(stream)


# -- our server, s_client -enable_pha --------------------------------------------------


@pytest.mark.parametrize("verify_mode", [ssl.CERT_REQUIRED, ssl.CERT_OPTIONAL])
async def test_server_gets_s_client_certificate_in_several_rounds(
    pem_files: PemFiles,
    pha_server_context: ssl.SSLContext,
    client_cert: trustme.LeafCert,
    verify_mode: ssl.VerifyMode,
) -> None:
    pha_server_context.verify_mode = verify_mode
    with anyio.fail_after(TEST_TIMEOUT):
        async with our_server(
            pha_server_context, pem=pem_files, cert=True, enable_pha=True
        ) as (stream, client):
            assert stream.extra(TLSAttribute.peer_certificate) is None
            # s_client reads all the time, so it answers at once; what it sent
            # before it saw the request is kept for receive().
            await client.send(b"sent before the request\n")
            for _ in range(2):
                cert = await stream.verify_client_post_handshake()
                assert cert is not None
                assert ("email", "client@example.org") in cert["subjectAltName"]
                assert stream.extra(TLSAttribute.peer_certificate) == cert
                assert stream.extra(TLSAttribute.peer_certificate_binary) == der(
                    client_cert
                )
                assert not stream.client_certificate_pending
            assert await receive_until(stream, b"\n") == b"sent before the request\n"
            await stream.send(b"welcome\n")
            await client.wait_received(b"welcome\n")
            await client.send(b"after\n")
            assert await receive_until(stream, b"\n") == b"after\n"
            await client.close_stdin()  # close_notify
            with pytest.raises(anyio.EndOfStream):
                await stream.receive()
            await stream.aclose()
            assert await client.wait_exit() == 0
        log = client.messages()
        assert count(GOT + "CertificateRequest", log) == 2
        assert count(SENT + "CertificateVerify", log) == 2


async def test_server_gets_none_from_s_client_without_certificate_under_optional(
    pem_files: PemFiles, pha_server_context: ssl.SSLContext
) -> None:
    pha_server_context.verify_mode = ssl.CERT_OPTIONAL
    with anyio.fail_after(TEST_TIMEOUT):
        async with our_server(pha_server_context, pem=pem_files, enable_pha=True) as (
            stream,
            client,
        ):
            assert await stream.verify_client_post_handshake() is None
            assert await stream.verify_client_post_handshake() is None
            await client.send(b"still here\n")
            assert await receive_until(stream, b"\n") == b"still here\n"
            await client.close_stdin()
            with pytest.raises(anyio.EndOfStream):
                await stream.receive()
            await stream.aclose()
            assert await client.wait_exit() == 0
        log = client.messages()
        assert count(GOT + "CertificateRequest", log) == 2
        assert count(SENT + "Certificate", log) == 2  # empty ones
        assert count(SENT + "CertificateVerify", log) == 0


async def test_server_requiring_a_certificate_s_client_lacks_raises_the_ssl_error(
    pem_files: PemFiles, pha_server_context: ssl.SSLContext
) -> None:
    with anyio.fail_after(TEST_TIMEOUT):
        async with our_server(pha_server_context, pem=pem_files, enable_pha=True) as (
            stream,
            client,
        ):
            with pytest.raises(ssl.SSLError) as info:
                await stream.verify_client_post_handshake()
            assert info.value.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE"
            with pytest.raises(anyio.BrokenResourceError):
                await stream.receive()
            await client.wait_exit()
        # s_client was told why: alert 116.
        assert count(
            r"<<< TLS 1\.3, Alert \[length 0002\], fatal certificate_required",
            client.messages(),
        )


async def test_s_client_without_pha_is_refused_and_the_stream_stays_usable(
    pem_files: PemFiles, pha_server_context: ssl.SSLContext
) -> None:
    with anyio.fail_after(TEST_TIMEOUT):
        async with our_server(pha_server_context, pem=pem_files, cert=True) as (
            stream,
            client,
        ):
            with pytest.raises(PostHandshakeAuthError, match="did not offer"):
                await stream.verify_client_post_handshake()
            await stream.send(b"usable\n")
            await client.wait_received(b"usable\n")
            await client.send(b"yes\n")
            assert await receive_until(stream, b"\n") == b"yes\n"
            await client.close_stdin()
            with pytest.raises(anyio.EndOfStream):
                await stream.receive()
            await stream.aclose()
        assert count(GOT + "CertificateRequest", client.messages()) == 0


async def test_a_key_update_before_the_answer_is_not_taken_for_it(
    pem_files: PemFiles, pha_server_context: ssl.SSLContext
) -> None:
    # The end of an exchange is seen as session tickets written by a read(); a
    # KeyUpdate that asks us to update too must not look like that.
    pha_server_context.verify_mode = ssl.CERT_OPTIONAL  # a mistake would be None
    with anyio.fail_after(TEST_TIMEOUT):
        async with our_server(
            pha_server_context, pem=pem_files, cert=True, enable_pha=True
        ) as (stream, client):
            await client.command("K")  # KeyUpdate, update_requested
            await client.send(b"after the key update\n")
            cert = await stream.verify_client_post_handshake()
            assert cert is not None
            assert await receive_until(stream, b"\n") == b"after the key update\n"
            await stream.send(b"answer\n")  # carries our own KeyUpdate first
            await client.wait_received(b"answer\n")
            await client.close_stdin()
            with pytest.raises(anyio.EndOfStream):
                await stream.receive()
            await stream.aclose()
        assert count(GOT_KEY_UPDATE, client.messages()) == 1


# -- our client, s_server's "c" command ------------------------------------------------


async def test_client_answers_s_server_requests_inside_receive(
    pem_files: PemFiles, client_context: ssl.SSLContext, client_cert: trustme.LeafCert
) -> None:
    client_cert.configure_cert(client_context)
    client_context.post_handshake_auth = True
    with anyio.fail_after(TEST_TIMEOUT):
        async with (
            openssl_server(pem_files, tls_version="1.3") as server,
            our_client(server, client_context) as stream,
        ):
            for round_ in range(2):
                assert await server.command("c") == 1
                line = b"after request %d\n" % round_
                await server.send_line(line)
                assert await receive_until(stream, b"\n") == line  # answered here
                # s_server refuses a new request until it has read the answer: our
                # data after the answer shows it has (records arrive in order).
                ack = b"ack %d\n" % round_
                await stream.send(ack)
                await server.wait_received(ack)
            await stream.send(b"done\n")
            await server.wait_received(b"done\n")
            await stream.aclose()
            assert await server.wait_exit() == 0
        log = server.messages()
        assert count(SENT + "CertificateRequest", log) == 2
        assert count(GOT + "Certificate", log) == 2
        assert count(GOT + "CertificateVerify", log) == 2
        # s_server verified our certificate against the test CA, twice.
        output = (server.stdout + server.stderr).decode(errors="replace")
        subject = x509.load_der_x509_certificate(der(client_cert)).subject
        [unit] = subject.get_attributes_for_oid(x509.NameOID.ORGANIZATIONAL_UNIT_NAME)
        assert output.count("depth=0 O = trustme") >= 2
        assert output.count(f"OU = {unit.value}") >= 2
        assert output.count("verify return:1") >= 2
        assert "verify error" not in output


async def test_client_without_certificate_answers_with_an_empty_one(
    pem_files: PemFiles, client_context: ssl.SSLContext
) -> None:
    client_context.post_handshake_auth = True  # and no certificate
    with anyio.fail_after(TEST_TIMEOUT):
        async with (
            openssl_server(pem_files, tls_version="1.3") as server,
            our_client(server, client_context) as stream,
        ):
            assert await server.command("c") == 1
            await server.send_line(b"still talking\n")
            assert await receive_until(stream, b"\n") == b"still talking\n"
            await stream.aclose()
            assert await server.wait_exit() == 0
        log = server.messages()
        assert count(GOT + "Certificate", log) == 1
        assert count(GOT + "CertificateVerify", log) == 0
