"""The peer's chain, tls-server-end-point, tls-unique on TLS 1.3, verify_peer hooks.

Interop against ``openssl s_server`` serving root -> intermediate -> leaf chains
whose leaves are signed with RSA-PSS, RSA, ECDSA P-256/P-384 and Ed25519; the
expected binding and pin are computed with cryptography (``certs_pki.py``), never
with anyiotls. Hook semantics are checked between our own client and server.
"""

from __future__ import annotations

import base64
import hashlib
import ssl
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.streams.tls
import pytest
import trio
import trio.testing
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from anyiotls import (
    CertificateAttribute,
    ChannelBindingError,
    PeerVerificationError,
    PinMismatchError,
    TLSAttribute,
    TLSConnectable,
    TLSListener,
    TLSStream,
    channel_binding,
    pin_sha256,
    spki_sha256,
    tls_server_end_point,
    verify_in_thread,
    x509_certificates,
)
from anyiotls.trio import SSLListener, SSLStream

from .certs_pki import KINDS, Pki, expected_end_point, expected_pin, make_pki
from .pairs import memory_transports
from .peers import PemFiles
from .peers.openssl import OpenSSLServer, openssl_server

pytestmark = pytest.mark.anyio

HAS_CHAIN = sys.version_info >= (3, 13)
#: upper bound for a whole test: nothing here may hang
TIMEOUT = 30
#: the deadline that cancels a hook that never returns (no time is asserted)
HANG_TIMEOUT = 0.2

#: a well-formed pin that matches no key
WRONG_PIN = "sha256//" + base64.b64encode(b"\x00" * 32).decode()

#: for tests of the Trio face: the anyio_backend fixture, overridden
trio_only = pytest.mark.parametrize("anyio_backend", ["trio"])


# -- fixtures and helpers -----------------------------------------------------------


@pytest.fixture(params=list(KINDS))
def pki(request: pytest.FixtureRequest) -> Pki:
    return make_pki(request.param)


def _client_context(pki: Pki, tls_version: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=pki.der(pki.root))
    if tls_version == "1.2":
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


@asynccontextmanager
async def chain_server(
    pki: Pki, tmp_path: Path, tls_version: str | None = None
) -> AsyncIterator[OpenSSLServer]:
    """``openssl s_server`` sending the leaf and the intermediate."""
    files = pki.write(tmp_path / "pki")
    pem = PemFiles(tmp_path / "pki", files["ca"], files["server"], files["server"])
    async with openssl_server(
        pem,
        tls_version="1.2" if tls_version == "1.2" else None,
        extra_args=["-cert_chain", str(files["chain"])],
    ) as server:
        yield server


def _check_chain(read: Any, expected: tuple[bytes, ...]) -> None:
    if HAS_CHAIN:
        assert tuple(read()) == expected
    else:
        with pytest.raises(NotImplementedError, match=r"Python 3\.13"):
            read()


def _end_point_attribute(stream: TLSStream) -> bytes:
    return stream.extra(CertificateAttribute.channel_binding_tls_server_end_point)


# -- interop: both faces against openssl s_server ---------------------------------


@pytest.mark.interop
async def test_anyio_face_reads_chain_binding_and_pin_from_s_server(
    pki: Pki, tmp_path: Path
) -> None:
    leaf = pki.der(pki.leaf)
    with anyio.fail_after(TIMEOUT):
        async with chain_server(pki, tmp_path) as server:
            transport = await anyio.connect_tcp(server.host, server.port)
            stream = await TLSStream.wrap(
                transport,
                hostname="localhost",
                ssl_context=_client_context(pki),
                verify_peer=pin_sha256([WRONG_PIN, expected_pin(leaf)]),
            )
            try:
                assert stream.extra(TLSAttribute.peer_certificate_binary) == leaf
                assert spki_sha256(leaf) == expected_pin(leaf)
                expected = expected_end_point(leaf)
                if expected is None:
                    with pytest.raises(ChannelBindingError, match="Ed25519"):
                        _end_point_attribute(stream)
                    with pytest.raises(ChannelBindingError, match="Ed25519"):
                        channel_binding(stream)
                else:
                    hash_name = KINDS[pki.kind]
                    assert hash_name is not None
                    assert len(expected) == hashlib.new(hash_name).digest_size
                    assert _end_point_attribute(stream) == expected
                    assert channel_binding(stream, "tls-server-end-point") == expected
                # s_server sends leaf + intermediate; the verified chain adds the root
                _check_chain(
                    lambda: stream.extra(CertificateAttribute.unverified_chain),
                    pki.chain_der[:2],
                )
                _check_chain(
                    lambda: stream.extra(CertificateAttribute.verified_chain),
                    pki.chain_der,
                )
                if HAS_CHAIN:
                    certs = x509_certificates(
                        stream.extra(CertificateAttribute.verified_chain)
                    )
                    assert [c.subject for c in certs] == [
                        pki.leaf.subject,
                        pki.intermediate.subject,
                        pki.root.subject,
                    ]
            finally:
                await stream.aclose()


@trio_only
@pytest.mark.interop
async def test_trio_face_reads_chain_binding_and_pin_from_s_server(
    pki: Pki, tmp_path: Path
) -> None:
    leaf = pki.der(pki.leaf)
    seen: list[bytes | None] = []

    async def pin_and_record(stream: SSLStream[Any]) -> None:
        seen.append(stream.getpeercert(True))  # readable inside the hook
        await pin_sha256([expected_pin(leaf)])(stream)

    with trio.fail_after(TIMEOUT):
        async with chain_server(pki, tmp_path) as server:
            transport = await trio.open_tcp_stream(server.host, server.port)
            stream = SSLStream(
                transport,
                _client_context(pki),
                server_hostname="localhost",
                verify_peer=pin_and_record,
            )
            try:
                await stream.do_handshake()
                expected = expected_end_point(leaf)
                if expected is None:
                    with pytest.raises(ChannelBindingError, match="Ed25519"):
                        stream.get_channel_binding("tls-server-end-point")
                else:
                    binding = stream.get_channel_binding("tls-server-end-point")
                    assert binding == expected
                    assert channel_binding(stream) == expected
                _check_chain(stream.get_unverified_chain, pki.chain_der[:2])
                _check_chain(stream.get_verified_chain, pki.chain_der)
            finally:
                await stream.aclose()
    assert seen == [leaf]


@pytest.mark.interop
async def test_anyio_face_pin_mismatch_rejects_s_server(tmp_path: Path) -> None:
    pki = make_pki("ecdsa-p256-sha256")
    with anyio.fail_after(TIMEOUT):
        async with chain_server(pki, tmp_path) as server:
            transport = await anyio.connect_tcp(server.host, server.port)
            with pytest.raises(PeerVerificationError) as caught:
                await TLSStream.wrap(
                    transport,
                    hostname="localhost",
                    ssl_context=_client_context(pki),
                    verify_peer=pin_sha256([WRONG_PIN]),
                )
            # the transport was closed: s_server sees the connection end
            with pytest.raises(anyio.ClosedResourceError):
                await transport.send(b"x")
    cause = caught.value.__cause__
    assert isinstance(cause, PinMismatchError)
    assert expected_pin(pki.der(pki.leaf)) in str(cause)
    assert isinstance(caught.value, ssl.SSLCertVerificationError)
    assert caught.value.verify_code == 50


@trio_only
@pytest.mark.interop
async def test_trio_face_pin_mismatch_rejects_s_server(tmp_path: Path) -> None:
    pki = make_pki("rsa-pss-sha384")
    with trio.fail_after(TIMEOUT):
        async with chain_server(pki, tmp_path) as server:
            transport = await trio.open_tcp_stream(server.host, server.port)
            stream = SSLStream(
                transport,
                _client_context(pki),
                server_hostname="localhost",
                verify_peer=pin_sha256([WRONG_PIN]),
            )
            with pytest.raises(trio.BrokenResourceError) as caught:
                await stream.send_all(b"never sent")
            with pytest.raises(trio.ClosedResourceError):
                await transport.send_all(b"x")  # closed by the rejection
            with pytest.raises(trio.BrokenResourceError):
                await stream.receive_some()
            await stream.aclose()
    error = caught.value.__cause__
    assert isinstance(error, PeerVerificationError)
    assert isinstance(error.__cause__, PinMismatchError)


@pytest.mark.interop
@pytest.mark.parametrize("tls_version", ["1.2", "1.3"])
async def test_tls_unique_refused_on_tls13_both_ways_to_ask(
    tmp_path: Path, tls_version: str
) -> None:
    pki = make_pki("ecdsa-p256-sha256")
    with anyio.fail_after(TIMEOUT):
        async with chain_server(pki, tmp_path, tls_version) as server:
            transport = await anyio.connect_tcp(server.host, server.port)
            stream = await TLSStream.wrap(
                transport,
                hostname="localhost",
                ssl_context=_client_context(pki, tls_version),
            )
            try:
                assert stream.extra(TLSAttribute.tls_version) == f"TLSv{tls_version}"
                if tls_version == "1.3":
                    with pytest.raises(ChannelBindingError, match="RFC 9266"):
                        stream.extra(TLSAttribute.channel_binding_tls_unique)
                    with pytest.raises(ChannelBindingError, match="RFC 9266"):
                        channel_binding(stream, "tls-unique")
                else:
                    unique = stream.extra(TLSAttribute.channel_binding_tls_unique)
                    assert isinstance(unique, bytes)
                    assert len(unique) == 12  # a TLS 1.2 Finished's verify_data
                    assert channel_binding(stream, "tls-unique") == unique
                with pytest.raises(ChannelBindingError, match="keying material"):
                    channel_binding(stream, "tls-exporter")
            finally:
                await stream.aclose()


# -- between our own streams: the server side, tls-unique on the Trio face ------------


@pytest.fixture
def pki_contexts(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext, Pki]:
    pki = make_pki("ecdsa-p384-sha384")
    files = pki.write(tmp_path)
    full = tmp_path / "server-and-chain.pem"
    full.write_bytes(files["server"].read_bytes() + files["chain"].read_bytes())
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(full)
    return _client_context(pki), server, pki


async def _anyio_pair(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
    *,
    client_hook: Any = None,
    server_hook: Any = None,
) -> tuple[TLSStream, TLSStream]:
    client_transport, server_transport = memory_transports()
    result: dict[str, TLSStream] = {}
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:

            async def server() -> None:
                result["server"] = await TLSStream.wrap(
                    server_transport,
                    server_side=True,
                    ssl_context=server_context,
                    verify_peer=server_hook,
                )

            tg.start_soon(server)
            result["client"] = await TLSStream.wrap(
                client_transport,
                hostname="localhost",
                ssl_context=client_context,
                verify_peer=client_hook,
            )
    return result["client"], result["server"]


async def test_server_computes_the_binding_the_client_sees(
    pki_contexts: tuple[ssl.SSLContext, ssl.SSLContext, Pki],
) -> None:
    client_context, server_context, pki = pki_contexts
    client, server = await _anyio_pair(client_context, server_context)
    # a server cannot read its own certificate from ssl: it says so
    with pytest.raises(ChannelBindingError, match="tls_server_end_point"):
        _end_point_attribute(server)
    ours = tls_server_end_point(pki.der(pki.leaf))
    assert ours == _end_point_attribute(client) == expected_end_point(pki.der(pki.leaf))
    assert len(ours) == 48  # SHA-384: the ECDSA P-384 leaf's signature hash


async def test_channel_binding_works_on_anyios_own_tls_stream(
    pki_contexts: tuple[ssl.SSLContext, ssl.SSLContext, Pki],
) -> None:
    client_context, server_context, pki = pki_contexts
    client_transport, server_transport = memory_transports()
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                partial(
                    anyio.streams.tls.TLSStream.wrap,
                    server_transport,
                    server_side=True,
                    ssl_context=server_context,
                )
            )
            client = await anyio.streams.tls.TLSStream.wrap(
                client_transport, hostname="localhost", ssl_context=client_context
            )
    expected = expected_end_point(pki.der(pki.leaf))
    assert channel_binding(client) == expected
    assert client.extra(TLSAttribute.tls_version) == "TLSv1.3"
    with pytest.raises(ChannelBindingError, match="RFC 9266"):
        channel_binding(client, "tls-unique")
    await anyio.aclose_forcefully(client)


@trio_only
@pytest.mark.parametrize("tls_version", ["1.2", "1.3"])
async def test_trio_face_tls_unique_refused_on_tls13(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext, tls_version: str
) -> None:
    if tls_version == "1.2":
        client_context.maximum_version = ssl.TLSVersion.TLSv1_2
    left, right = trio.testing.memory_stream_pair()
    client = SSLStream(left, client_context, server_hostname="localhost")
    server = SSLStream(right, server_context, server_side=True)
    with pytest.raises(trio.NeedHandshakeError):
        client.get_channel_binding("tls-unique")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)
    for stream in (client, server):
        if tls_version == "1.3":
            with pytest.raises(ChannelBindingError, match="RFC 9266"):
                stream.get_channel_binding()
        else:
            assert len(stream.get_channel_binding() or b"") == 12
    with pytest.raises(ChannelBindingError, match="server side"):
        server.get_channel_binding("tls-server-end-point")
    assert client.get_channel_binding("tls-server-end-point") == expected_end_point(
        client.getpeercert(True) or b""
    )
    with pytest.raises(ValueError, match="not implemented"):
        client.get_channel_binding("no-such-binding")


# -- verify_peer hooks: AnyIO face, every backend ------------------------------------


async def _wrap_client_against_server(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
    hook: Any,
    *,
    timeout: float | None = None,
) -> tuple[Any, Any, Any]:
    """Handshake a client with *hook* against our server.

    Returns (client's exception or stream, server stream, client transport).
    """
    client_transport, server_transport = memory_transports()
    outcome: dict[str, Any] = {}
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:

            async def server() -> None:
                outcome["server"] = await TLSStream.wrap(
                    server_transport, server_side=True, ssl_context=server_context
                )

            tg.start_soon(server)
            try:
                with anyio.fail_after(timeout):  # (None: no deadline)
                    outcome["client"] = await TLSStream.wrap(
                        client_transport,
                        hostname="localhost",
                        ssl_context=client_context,
                        verify_peer=hook,
                    )
            except Exception as exc:
                outcome["client"] = exc
    return outcome["client"], outcome["server"], client_transport


async def _assert_server_sees_rejection(server: TLSStream) -> None:
    """The client closed the transport without close_notify: a ragged EOF."""
    with anyio.fail_after(TIMEOUT), pytest.raises(anyio.BrokenResourceError):
        await server.receive()
    await anyio.aclose_forcefully(server)


@pytest.mark.parametrize("tls_version", ["1.2", "1.3"])
async def test_hook_that_raises_rejects_and_closes_the_transport(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext, tls_version: str
) -> None:
    if tls_version == "1.2":
        client_context.maximum_version = ssl.TLSVersion.TLSv1_2
    seen: list[Any] = []

    async def reject(stream: TLSStream) -> None:
        seen.append(stream.extra(TLSAttribute.peer_certificate))
        raise LookupError("not in our list")

    error, server, transport = await _wrap_client_against_server(
        client_context, server_context, reject
    )
    assert isinstance(error, PeerVerificationError)
    assert isinstance(error.__cause__, LookupError)
    assert "LookupError: not in our list" in str(error)
    assert seen
    assert seen[0]["subjectAltName"]
    with pytest.raises(anyio.ClosedResourceError):
        await transport.send(b"x")
    await _assert_server_sees_rejection(server)


async def test_server_hook_that_rejects_sends_no_tickets_and_cuts_the_client_off(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    async def reject(stream: TLSStream) -> None:
        raise PermissionError("no clients today")

    client_transport, server_transport = memory_transports()
    outcome: list[BaseException] = []
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:

            async def server() -> None:
                try:
                    await TLSStream.wrap(
                        server_transport,
                        server_side=True,
                        ssl_context=server_context,
                        verify_peer=reject,
                    )
                except PeerVerificationError as exc:
                    outcome.append(exc)

            tg.start_soon(server)
            # TLS 1.3: the client's handshake is complete before the server's
            client = await TLSStream.wrap(
                client_transport, hostname="localhost", ssl_context=client_context
            )
            with pytest.raises(anyio.BrokenResourceError):
                await client.receive()
    [error] = outcome
    assert isinstance(error.__cause__, PermissionError)
    session = client.extra(TLSAttribute.ssl_object).session
    assert session is not None
    assert not session.has_ticket  # the held-back tickets never left
    await anyio.aclose_forcefully(client)


async def test_hook_that_returns_false_rejects(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    async def looks_like_a_predicate(stream: TLSStream) -> bool:
        return False

    error, server, _ = await _wrap_client_against_server(
        client_context, server_context, looks_like_a_predicate
    )
    assert isinstance(error, PeerVerificationError)
    assert isinstance(error.__cause__, TypeError)
    assert "reject by raising" in str(error.__cause__)
    await _assert_server_sees_rejection(server)


async def test_hook_that_hangs_is_cancelled_by_the_timeout(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    cancelled = []

    async def hang(stream: TLSStream) -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    error, server, transport = await _wrap_client_against_server(
        client_context, server_context, hang, timeout=HANG_TIMEOUT
    )
    assert isinstance(error, TimeoutError)
    assert cancelled == [True]
    with pytest.raises(anyio.ClosedResourceError):
        await transport.send(b"x")  # a cancelled handshake closes the transport
    await _assert_server_sees_rejection(server)


async def test_hook_that_does_io_on_its_stream_is_refused(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    async def chatty(stream: TLSStream) -> None:
        await stream.send(b"too early")

    error, server, _ = await _wrap_client_against_server(
        client_context, server_context, chatty
    )
    assert isinstance(error, PeerVerificationError)
    assert isinstance(error.__cause__, RuntimeError)
    assert "must not send or receive" in str(error.__cause__)
    await _assert_server_sees_rejection(server)


async def test_pin_hook_accepts_the_right_key_on_the_server_side_too(
    ca: trustme.CA,
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
    client_cert: trustme.LeafCert,
) -> None:
    server_context.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(server_context)
    client_cert.configure_cert(client_context)
    client_der = x509.load_pem_x509_certificate(
        client_cert.cert_chain_pems[0].bytes()
    ).public_bytes(serialization.Encoding.DER)
    client, server = await _anyio_pair(
        client_context,
        server_context,
        server_hook=pin_sha256([expected_pin(client_der)]),
    )
    await client.send(b"ping")
    assert await server.receive() == b"ping"
    await anyio.aclose_forcefully(client)
    await anyio.aclose_forcefully(server)


async def test_two_step_construction_waits_for_the_hook_before_data(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    """A send in another task waits until the hook accepted the peer."""
    release = anyio.Event()
    sent = anyio.Event()

    async def slow(stream: TLSStream) -> None:
        await release.wait()

    client_transport, server_transport = memory_transports()
    client = TLSStream(
        client_transport,
        hostname="localhost",
        ssl_context=client_context,
        verify_peer=slow,
    )
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:

            async def send_early() -> None:
                await client.send(b"after the hook")
                sent.set()

            server = await _start_server(tg, server_transport, server_context)
            tg.start_soon(client.do_handshake)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(send_early)
            await anyio.wait_all_tasks_blocked()
            assert not sent.is_set()  # held back while the hook runs
            release.set()
            await sent.wait()
            assert await server.receive() == b"after the hook"
    await anyio.aclose_forcefully(client)
    await anyio.aclose_forcefully(server)


async def _start_server(
    tg: anyio.abc.TaskGroup, transport: Any, context: ssl.SSLContext
) -> TLSStream:
    """Start the server's handshake in *tg*; return the stream (handshake runs)."""
    server = TLSStream(transport, server_side=True, ssl_context=context)
    tg.start_soon(server.do_handshake)
    return server


async def test_blocking_check_runs_in_a_worker_thread(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    loop_thread = threading.get_ident()
    seen: list[tuple[int, bytes]] = []

    def check(stream: TLSStream) -> None:
        seen.append(
            (
                threading.get_ident(),
                stream.extra(TLSAttribute.peer_certificate_binary),
            )
        )

    client, server, _ = await _wrap_client_against_server(
        client_context, server_context, verify_in_thread(check)
    )
    assert isinstance(client, TLSStream)
    [(thread, der)] = seen
    assert thread != loop_thread
    assert der == client.extra(TLSAttribute.peer_certificate_binary)
    await anyio.aclose_forcefully(client)
    await anyio.aclose_forcefully(server)


async def test_blocking_check_that_raises_rejects(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    def check(stream: TLSStream) -> None:
        raise PermissionError("revoked (OCSP)")

    error, server, _ = await _wrap_client_against_server(
        client_context, server_context, verify_in_thread(check)
    )
    assert isinstance(error, PeerVerificationError)
    assert isinstance(error.__cause__, PermissionError)
    await _assert_server_sees_rejection(server)


async def test_blocking_check_that_returns_false_rejects(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    def predicate(stream: TLSStream) -> bool:
        return False

    error, server, _ = await _wrap_client_against_server(
        client_context, server_context, verify_in_thread(predicate)
    )
    assert isinstance(error, PeerVerificationError)
    assert isinstance(error.__cause__, TypeError)
    await _assert_server_sees_rejection(server)


async def test_blocking_check_that_hangs_is_abandoned_on_timeout(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    unblock = threading.Event()
    finished = threading.Event()

    def check(stream: TLSStream) -> None:
        unblock.wait(TIMEOUT)
        finished.set()

    try:
        error, server, _ = await _wrap_client_against_server(
            client_context,
            server_context,
            verify_in_thread(check),
            timeout=HANG_TIMEOUT,
        )
        assert isinstance(error, TimeoutError)
        assert not finished.is_set()  # the handshake did not wait for the thread
        await _assert_server_sees_rejection(server)
    finally:
        unblock.set()
    with anyio.fail_after(TIMEOUT):
        await anyio.to_thread.run_sync(finished.wait, TIMEOUT)


async def test_listener_and_connectable_pass_the_hook(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    server_seen: list[bool] = []
    client_seen: list[bytes] = []

    async def server_hook(stream: TLSStream) -> None:
        server_seen.append(stream.extra(TLSAttribute.server_side))

    async def client_hook(stream: TLSStream) -> None:
        client_seen.append(stream.extra(TLSAttribute.peer_certificate_binary))

    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = tcp.extra(anyio.abc.SocketAttribute.local_port)
    listener = TLSListener(tcp, server_context, verify_peer=server_hook)
    served = anyio.Event()

    async def handle(stream: TLSStream) -> None:
        await stream.send(await stream.receive())
        served.set()
        await stream.aclose()

    class Tcp:
        async def connect(self) -> anyio.abc.ByteStream:
            return await anyio.connect_tcp("127.0.0.1", port)

    with anyio.fail_after(TIMEOUT):
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handle)
            connectable = TLSConnectable(
                Tcp(),
                hostname="localhost",
                ssl_context=client_context,
                verify_peer=client_hook,
            )
            client = await connectable.connect()
            await client.send(b"echo")
            assert await client.receive() == b"echo"
            await served.wait()
            await client.aclose()
            tg.cancel_scope.cancel()
    assert server_seen == [True]
    assert len(client_seen) == 1


# -- verify_peer hooks: the Trio face ------------------------------------------------


def _trio_pair(
    client_context: ssl.SSLContext,
    server_context: ssl.SSLContext,
    client_hook: Any = None,
) -> tuple[SSLStream[Any], SSLStream[Any], Any]:
    left, right = trio.testing.memory_stream_pair()
    client = SSLStream(
        left, client_context, server_hostname="localhost", verify_peer=client_hook
    )
    server = SSLStream(right, server_context, server_side=True)
    return client, server, left


async def _trio_handshake_both(
    client: SSLStream[Any], server: SSLStream[Any], timeout: float | None = None
) -> BaseException | None:
    """Handshake both; return the client's exception (the server's is ignored)."""
    outcome: list[BaseException] = []

    async def client_side() -> None:
        try:
            if timeout is None:
                await client.do_handshake()
            else:
                with trio.fail_after(timeout):
                    await client.do_handshake()
        except (trio.BrokenResourceError, trio.TooSlowError) as exc:
            outcome.append(exc)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client_side)
            nursery.start_soon(server.do_handshake)
    return outcome[0] if outcome else None


@trio_only
async def test_trio_face_hook_that_raises_rejects_and_closes_the_transport(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    async def reject(stream: SSLStream[Any]) -> None:
        assert stream.getpeercert() is not None
        raise LookupError("unknown key")

    client, server, transport = _trio_pair(client_context, server_context, reject)
    error = await _trio_handshake_both(client, server)
    assert isinstance(error, trio.BrokenResourceError)
    assert isinstance(error.__cause__, PeerVerificationError)
    assert isinstance(error.__cause__.__cause__, LookupError)
    with pytest.raises(trio.ClosedResourceError):
        await transport.send_all(b"x")
    with pytest.raises(trio.BrokenResourceError):
        await client.send_all(b"later")
    with trio.fail_after(TIMEOUT), pytest.raises(trio.BrokenResourceError):
        await server.receive_some()  # a truncated connection, not a clean close
    await client.aclose()
    await server.aclose()


@trio_only
async def test_trio_face_hook_that_hangs_breaks_the_stream_on_timeout(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    async def hang(stream: SSLStream[Any]) -> None:
        await trio.sleep_forever()

    client, server, _ = _trio_pair(client_context, server_context, hang)
    error = await _trio_handshake_both(client, server, timeout=HANG_TIMEOUT)
    assert isinstance(error, trio.TooSlowError)
    with pytest.raises(trio.BrokenResourceError):
        await client.receive_some()
    await client.aclose()
    await server.aclose()


@trio_only
async def test_trio_face_blocking_check_runs_in_a_thread_and_data_waits(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    loop_thread = threading.get_ident()
    release = threading.Event()
    started = threading.Event()
    threads: list[int] = []

    def check(stream: SSLStream[Any]) -> None:
        threads.append(threading.get_ident())
        started.set()
        assert stream.getpeercert(True)
        release.wait(TIMEOUT)

    client, server, _ = _trio_pair(
        client_context, server_context, verify_in_thread(check)
    )
    sent = trio.Event()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:

            async def send_first() -> None:  # handshakes (and verifies) on its own
                await client.send_all(b"after the check")
                sent.set()

            nursery.start_soon(send_first)
            nursery.start_soon(server.do_handshake)
            await trio.to_thread.run_sync(started.wait, TIMEOUT)
            await trio.testing.wait_all_tasks_blocked()
            assert not sent.is_set()
            release.set()
            await sent.wait()
            assert await server.receive_some() == b"after the check"
    assert threads
    assert threads[0] != loop_thread
    await client.aclose()
    await server.aclose()


@trio_only
async def test_trio_listener_passes_the_hook(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> None:
    seen: list[bool] = []

    async def hook(stream: SSLStream[Any]) -> None:
        seen.append(stream.server_side)

    with trio.fail_after(TIMEOUT):
        [tcp] = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = tcp.socket.getsockname()[1]
        listener = SSLListener(tcp, server_context, verify_peer=hook)
        async with listener, trio.open_nursery() as nursery:

            async def serve_one() -> None:
                stream = await listener.accept()
                await stream.send_all(await stream.receive_some())
                await stream.aclose()

            nursery.start_soon(serve_one)
            client = SSLStream(
                await trio.open_tcp_stream("127.0.0.1", port),
                client_context,
                server_hostname="localhost",
            )
            await client.send_all(b"hi")
            assert await client.receive_some() == b"hi"
            await client.aclose()
    assert seen == [True]
