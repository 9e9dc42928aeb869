"""The secure defaults, tested by behaviour as well as by settings.

Every context anyiotls makes when the caller gives none (``TLSStream`` and
``TLSStream.wrap``, ``TLSConnectable``, ``anyiotls.starttls``):

* a client verifies the server's certificate *and its host name*;
* nothing below TLS 1.2 is spoken (Python's own default since 3.10, kept);
* ``OP_IGNORE_UNEXPECTED_EOF`` is cleared, so a truncated connection is an error,
  also where the platform's defaults set the flag;
* the STARTTLS rule: bytes buffered past the server's go-ahead are refused.

The default contexts trust the system's CA store; the tests point OpenSSL's
``SSL_CERT_FILE`` at the test CA instead, so what is tested is the real default
context, not a patched one.
"""

from __future__ import annotations

import logging
import ssl
import warnings
from contextlib import suppress
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme
from anyio.streams.buffered import BufferedByteReceiveStream

from anyiotls import TLSAttribute, TLSConnectable, TLSStream
from anyiotls.starttls import InjectedDataError, upgrade
from anyiotls.trio import AnyIOStreamAsTrio, SSLStream

from .pairs import memory_transports

pytestmark = pytest.mark.anyio

TIMEOUT = 10
IGNORE_EOF = getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)


@pytest.fixture
def trust_test_ca(
    ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Make the system's default CA store the test CA (read when a default
    context is created)."""
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    monkeypatch.setenv("SSL_CERT_FILE", str(path))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


@pytest.fixture
def platform_ignores_unexpected_eof(monkeypatch: pytest.MonkeyPatch) -> None:
    """A platform whose ``ssl.create_default_context`` sets OP_IGNORE_UNEXPECTED_EOF
    (OpenSSL system configuration can; Python's own defaults here do not)."""
    if not IGNORE_EOF:
        pytest.skip("this OpenSSL has no OP_IGNORE_UNEXPECTED_EOF")
    original = ssl.create_default_context

    def create_default_context(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        context = original(*args, **kwargs)
        context.options |= IGNORE_EOF
        return context

    monkeypatch.setattr(ssl, "create_default_context", create_default_context)


def context_of(stream: TLSStream) -> ssl.SSLContext:
    return stream.extra(TLSAttribute.ssl_object).context


async def connect_pair(
    client_kwargs: dict[str, Any], server_context: ssl.SSLContext
) -> tuple[TLSStream, TLSStream]:
    """Handshake a client (``TLSStream.wrap(**client_kwargs)``) with a server;
    raises the client's error, if its handshake fails."""
    ct, st = memory_transports()
    result: dict[str, Any] = {}
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:

            async def server() -> None:
                # The client's refusal fails the server too; the client's error
                # is the point.
                with suppress(ssl.SSLError, anyio.BrokenResourceError):
                    result["server"] = await TLSStream.wrap(
                        st, server_side=True, ssl_context=server_context
                    )

            tg.start_soon(server)
            try:
                result["client"] = await TLSStream.wrap(ct, **client_kwargs)
            except Exception as exc:
                result["error"] = exc
    if "error" in result:
        raise result["error"]
    return result["client"], result["server"]


# -- host name verification ---------------------------------------------------------


def test_default_client_context_verifies_certificates_and_host_names() -> None:
    ct, _ = memory_transports()
    stream = TLSStream(ct, hostname="example.org")
    context = context_of(stream)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert stream.extra(TLSAttribute.server_side) is False


@pytest.mark.usefixtures("trust_test_ca")
async def test_default_client_refuses_a_certificate_for_another_host(
    server_context: ssl.SSLContext,
) -> None:
    # The certificate is valid and trusted, but for "localhost", not this name.
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        await connect_pair({"hostname": "wrong.example"}, server_context)
    assert info.value.verify_code == 62  # X509_V_ERR_HOSTNAME_MISMATCH
    # ... and accepts it for its own name: the same default context otherwise.
    client, _ = await connect_pair({"hostname": "localhost"}, server_context)
    assert client.extra(TLSAttribute.peer_certificate) is not None


@pytest.mark.usefixtures("trust_test_ca")
async def test_default_client_refuses_an_untrusted_certificate(
    server_context: ssl.SSLContext,
) -> None:
    other = trustme.CA().issue_cert("localhost")
    other.configure_cert(server_context)  # from a CA nobody trusts
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect_pair({"hostname": "localhost"}, server_context)


def test_a_client_without_a_host_name_is_refused_when_the_context_checks_names() -> (
    None
):
    # No silent "verify the certificate but not the name". Python's own sockets
    # refuse this (ValueError: check_hostname requires server_hostname); an
    # SSLObject from wrap_bio() does not, and then checks no name at all: any
    # trusted certificate for any host would do. (anyio and trio accept it too.)
    ct, st = memory_transports()
    with pytest.raises(ValueError, match="server_hostname"):
        TLSStream(ct, server_side=False)
    with pytest.raises(ValueError, match="server_hostname"):
        SSLStream(AnyIOStreamAsTrio(st), ssl.create_default_context())


def test_a_client_context_without_name_checks_still_works_without_a_host_name(
    client_context: ssl.SSLContext,
) -> None:
    # The caller turned name checks off on purpose: nothing to refuse.
    client_context.check_hostname = False
    ct, st = memory_transports()
    TLSStream(ct, server_side=False, ssl_context=client_context)
    SSLStream(AnyIOStreamAsTrio(st), client_context)


def test_tls_connectable_default_checks_host_names() -> None:
    connectable = TLSConnectable(object(), hostname="example.org")
    assert connectable.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert connectable.ssl_context.check_hostname is True


# -- no TLS below 1.2 ---------------------------------------------------------------


def test_default_contexts_speak_nothing_below_tls_1_2() -> None:
    ct, st = memory_transports()
    for stream in (TLSStream(ct, hostname="x"), TLSStream(st, server_side=True)):
        context = context_of(stream)
        assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
        assert context.options & ssl.OP_NO_COMPRESSION  # no CRIME
    # What Python itself gives (3.10+): the same floor; anyiotls keeps it.
    assert ssl.create_default_context().minimum_version == ssl.TLSVersion.TLSv1_2


def tls11_only(context: ssl.SSLContext) -> ssl.SSLContext:
    with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated in Python too
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # what TLS 1.1 needs
    return context


def allow_tls11(context: ssl.SSLContext) -> ssl.SSLContext:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


async def test_a_tls_1_1_client_is_refused_by_the_default_server(
    ca: trustme.CA, server_cert: trustme.LeafCert
) -> None:
    client_context = tls11_only(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    ca.configure_trust(client_context)
    # Control: this peer can speak TLS 1.1 here, with a server that allows it.
    permissive = allow_tls11(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH))
    server_cert.configure_cert(permissive)
    client, _ = await connect_pair(
        {"hostname": "localhost", "ssl_context": client_context}, permissive
    )
    assert client.extra(TLSAttribute.tls_version) == "TLSv1.1"
    # The default server refuses it.
    ct, st = memory_transports()
    server = TLSStream(st, server_side=True)
    server_cert.configure_cert(context_of(server))
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:

            async def old_client() -> None:
                with pytest.raises(ssl.SSLError):
                    await TLSStream.wrap(
                        ct, hostname="localhost", ssl_context=client_context
                    )

            tg.start_soon(old_client)
            with pytest.raises(ssl.SSLError, match="UNSUPPORTED_PROTOCOL"):
                await server.do_handshake()


@pytest.mark.usefixtures("trust_test_ca")
async def test_the_default_client_refuses_a_tls_1_1_server(
    server_cert: trustme.LeafCert,
) -> None:
    old_server = tls11_only(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    server_cert.configure_cert(old_server)
    with pytest.raises(ssl.SSLError, match=r"PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL"):
        await connect_pair({"hostname": "localhost"}, old_server)


# -- OP_IGNORE_UNEXPECTED_EOF -------------------------------------------------------


def test_python_default_here() -> None:
    # Recorded for docs/reliability.md: what this Python's own default gives.
    options = ssl.create_default_context().options
    assert not options & IGNORE_EOF or IGNORE_EOF == 0


@pytest.mark.usefixtures("platform_ignores_unexpected_eof")
def test_default_stream_contexts_clear_ignore_unexpected_eof() -> None:
    assert ssl.create_default_context().options & IGNORE_EOF  # the platform's
    ct, st = memory_transports()
    for stream in (TLSStream(ct, hostname="x"), TLSStream(st, server_side=True)):
        assert not context_of(stream).options & IGNORE_EOF


@pytest.mark.usefixtures("platform_ignores_unexpected_eof")
def test_tls_connectable_default_clears_ignore_unexpected_eof() -> None:
    # TLSConnectable builds its own default context (anyio's does the same), so it
    # must clear the flag itself: it hands the context to TLSStream.wrap.
    connectable = TLSConnectable(object(), hostname="example.org")
    assert not connectable.ssl_context.options & IGNORE_EOF


@pytest.mark.usefixtures("platform_ignores_unexpected_eof", "trust_test_ca")
async def test_a_truncated_connection_is_an_error_with_the_default_context(
    server_context: ssl.SSLContext,
) -> None:
    client, server = await connect_pair({"hostname": "localhost"}, server_context)
    await server.send(b"all of it?")
    await server.transport_stream.aclose()  # no close_notify: truncated
    with anyio.fail_after(TIMEOUT):
        assert await client.receive() == b"all of it?"
        with pytest.raises(anyio.BrokenResourceError) as info:
            await client.receive()
    assert isinstance(info.value.__cause__, ssl.SSLEOFError)


# -- the STARTTLS injection rule -----------------------------------------------------


async def test_starttls_upgrade_refuses_bytes_buffered_past_the_go_ahead(
    client_context: ssl.SSLContext,
) -> None:
    ct, st = memory_transports()
    injected = b"250-AUTH PLAIN\r\n"  # what a man in the middle slips in
    with anyio.fail_after(TIMEOUT):
        with pytest.raises(InjectedDataError) as info:
            await upgrade(
                ct, injected, hostname="localhost", ssl_context=client_context
            )
        assert injected in str(info.value).encode() or info.value.args
        # Nothing went out (no ClientHello) and the connection is closed.
        with pytest.raises(anyio.EndOfStream):
            await st.receive()
        with pytest.raises(anyio.ClosedResourceError):
            await ct.send(b"x")


async def test_starttls_upgrade_checks_the_readers_buffer(
    client_context: ssl.SSLContext,
) -> None:
    ct, st = memory_transports()
    await st.send(b"220 go ahead\r\n250 injected\r\n")
    reader = BufferedByteReceiveStream(ct)
    with anyio.fail_after(TIMEOUT):
        assert await reader.receive_until(b"\r\n", 1000) == b"220 go ahead"
        with pytest.raises(InjectedDataError):
            await upgrade(ct, reader, hostname="localhost", ssl_context=client_context)


async def test_starttls_discarding_injected_bytes_never_delivers_them(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "anyiotls.starttls")
    ct, st = memory_transports()
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:

            async def server() -> None:
                stream = await TLSStream.wrap(
                    st, server_side=True, ssl_context=server_context
                )
                await stream.send(b"over TLS")

            tg.start_soon(server)
            client = await upgrade(
                ct,
                b"250 injected\r\n",
                hostname="localhost",
                ssl_context=client_context,
                discard_injected=True,
            )
        assert await client.receive() == b"over TLS"
    assert any("discarding" in record.getMessage() for record in caplog.records)
