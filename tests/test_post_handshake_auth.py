"""TLS 1.3 post-handshake client authentication, anyiotls against anyiotls.

``TLSStream.verify_client_post_handshake()``, ``request_client_certificate()`` and
``client_certificate_pending`` (issue 3), over memory object streams and loopback
TCP, on every AnyIO backend: success, each documented failure, data that flows
meanwhile, other tasks on the same stream, each cancellation point, closing and
unwrapping while a request is pending.  The real-peer tests (OpenSSL's s_client and
s_server) are in ``test_interop_pha.py``; docs/post-handshake-auth.md describes the
behaviour these tests pin down.
"""

from __future__ import annotations

import os
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import trustme
from anyio.abc import ByteStream

import anyiotls
from anyiotls import PostHandshakeAuthError, TLSAttribute, TLSStream

from .pairs import TRANSPORTS as PAIR_TRANSPORTS
from .pairs import (
    close_memory_transports,
    handshake_pair,
    memory_transports,
    receive_exactly,
    tls_pair,
)

pytestmark = pytest.mark.anyio

TRANSPORTS = PAIR_TRANSPORTS


# -- certificates and contexts ---------------------------------------------------------


@pytest.fixture(scope="module")
def alice(ca: trustme.CA) -> trustme.LeafCert:
    """A client certificate from the test CA, with a subject to check."""
    return ca.issue_cert("alice@example.org", common_name="alice")


@pytest.fixture(scope="module")
def mallory() -> trustme.LeafCert:
    """A client certificate from a CA the server does not trust."""
    return trustme.CA().issue_cert("mallory@example.org", common_name="mallory")


@pytest.fixture
def pha_server_context(
    server_context: ssl.SSLContext, ca: trustme.CA
) -> ssl.SSLContext:
    """A server that may ask for a client certificate after the handshake."""
    ca.configure_trust(server_context)
    server_context.post_handshake_auth = True
    server_context.verify_mode = ssl.CERT_REQUIRED
    return server_context


@pytest.fixture
def pha_client_context(
    client_context: ssl.SSLContext, alice: trustme.LeafCert
) -> ssl.SSLContext:
    """A client that offers post-handshake authentication and has a certificate."""
    alice.configure_cert(client_context)
    client_context.post_handshake_auth = True
    return client_context


@pytest.fixture(autouse=True)
def _close_memory_transports() -> Any:
    yield
    close_memory_transports()


def der(cert: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())


def common_name(peer_certificate: dict[str, Any]) -> str:
    subject = dict(rdn[0] for rdn in peer_certificate["subject"])
    return str(subject["commonName"])


# -- transports we can watch and hold -------------------------------------------------


class Watched(ByteStream):
    """A transport that records what it sends and can be made to block in ``send``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sent = bytearray()
        self.sends = 0
        #: while set to an unset event, ``send`` waits for it (a stuck transport)
        self.gate: anyio.Event | None = None

    async def send(self, item: bytes) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.sends += 1
        self.sent += item
        await self.inner.send(item)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return bytes(await self.inner.receive())

    async def send_eof(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        await self.inner.aclose()


@asynccontextmanager
async def watched_pair(
    client_context: ssl.SSLContext, server_context: ssl.SSLContext
) -> AsyncIterator[tuple[TLSStream, TLSStream, Watched]]:
    """A handshaken memory pair whose server transport is :class:`Watched`."""
    ct, st = memory_transports()
    watched = Watched(st)
    client, server = await handshake_pair(ct, watched, client_context, server_context)
    try:
        yield client, server, watched
    finally:
        await anyio.aclose_forcefully(ct)
        await anyio.aclose_forcefully(st)


async def assert_usable(client: TLSStream, server: TLSStream) -> None:
    """Data goes both ways (the stream was not broken, nothing is left over)."""
    with anyio.fail_after(10):
        await server.send(b"ping")
        assert await client.receive() == b"ping"
        await client.send(b"pong")
        assert await server.receive() == b"pong"


async def client_answers(client: TLSStream, until: bytes = b"go") -> None:
    """Receive on the client (which answers the request inside) until *until*."""
    assert await receive_exactly(client, len(until)) == until


async def verify_with_answering_client(
    client: TLSStream, server: TLSStream
) -> dict[str, Any] | None:
    """Run the server's verify while the client receives, as a client must."""
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(client_answers, client)
            cert = await server.verify_client_post_handshake()
            await server.send(b"go")
    return cert


# -- success ---------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_verify_returns_the_certificate_and_updates_the_attributes(
    pha_client_context: ssl.SSLContext,
    pha_server_context: ssl.SSLContext,
    alice: trustme.LeafCert,
    transport: str,
) -> None:
    async with tls_pair(
        pha_client_context, pha_server_context, transport=transport
    ) as (
        client,
        server,
    ):
        assert server.extra(TLSAttribute.tls_version) == "TLSv1.3"
        # With post_handshake_auth, the handshake itself asks for nothing.
        assert server.extra(TLSAttribute.peer_certificate) is None
        assert server.extra(TLSAttribute.peer_certificate_binary) is None
        assert not server.client_certificate_pending

        cert = await verify_with_answering_client(client, server)

        assert cert is not None
        assert common_name(cert) == "alice"
        assert cert == server.extra(TLSAttribute.peer_certificate)
        assert server.extra(TLSAttribute.peer_certificate_binary) == der(alice)
        assert not server.client_certificate_pending
        await assert_usable(client, server)


async def test_cert_optional_and_a_client_without_certificate_returns_none(
    client_context: ssl.SSLContext, pha_server_context: ssl.SSLContext
) -> None:
    pha_server_context.verify_mode = ssl.CERT_OPTIONAL
    client_context.post_handshake_auth = True  # but no certificate loaded
    async with tls_pair(client_context, pha_server_context) as (client, server):
        assert await verify_with_answering_client(client, server) is None
        assert server.extra(TLSAttribute.peer_certificate) is None
        assert not server.client_certificate_pending
        await assert_usable(client, server)


async def test_cert_optional_and_a_client_with_certificate_returns_it(
    pha_client_context: ssl.SSLContext, pha_server_context: ssl.SSLContext
) -> None:
    pha_server_context.verify_mode = ssl.CERT_OPTIONAL
    async with tls_pair(pha_client_context, pha_server_context) as (client, server):
        cert = await verify_with_answering_client(client, server)
        assert cert is not None
        assert common_name(cert) == "alice"


@pytest.mark.parametrize("verify_mode", [ssl.CERT_REQUIRED, ssl.CERT_OPTIONAL])
async def test_several_rounds_on_one_connection(
    pha_client_context: ssl.SSLContext,
    pha_server_context: ssl.SSLContext,
    verify_mode: ssl.VerifyMode,
) -> None:
    pha_server_context.verify_mode = verify_mode
    async with tls_pair(pha_client_context, pha_server_context) as (client, server):
        for round_ in range(3):
            cert = await verify_with_answering_client(client, server)
            assert cert is not None
            assert common_name(cert) == "alice", round_
            assert not server.client_certificate_pending
            await assert_usable(client, server)


async def test_several_rounds_without_client_certificate_each_return_none(
    client_context: ssl.SSLContext, pha_server_context: ssl.SSLContext
) -> None:
    pha_server_context.verify_mode = ssl.CERT_OPTIONAL
    client_context.post_handshake_auth = True
    async with tls_pair(client_context, pha_server_context) as (client, server):
        for _ in range(3):
            assert await verify_with_answering_client(client, server) is None
            await assert_usable(client, server)


# -- refusals before anything is sent --------------------------------------------------


async def expect_refusal(
    client: TLSStream, server: TLSStream, watched: Watched, match: str
) -> None:
    """verify and request both raise PostHandshakeAuthError, send nothing, and the
    stream stays usable."""
    sends = watched.sends
    with anyio.fail_after(10):
        with pytest.raises(PostHandshakeAuthError, match=match):
            await server.verify_client_post_handshake()
        with pytest.raises(PostHandshakeAuthError, match=match):
            await server.request_client_certificate()
    assert watched.sends == sends
    assert not server.client_certificate_pending
    await assert_usable(client, server)


async def test_tls12_is_refused_before_sending_and_the_stream_stays_usable(
    pha_client_context: ssl.SSLContext, pha_server_context: ssl.SSLContext
) -> None:
    pha_client_context.maximum_version = ssl.TLSVersion.TLSv1_2
    async with watched_pair(pha_client_context, pha_server_context) as (
        client,
        server,
        watched,
    ):
        assert server.extra(TLSAttribute.tls_version) == "TLSv1.2"
        await expect_refusal(client, server, watched, "needs TLS 1.3.*TLSv1.2")


async def test_client_without_pha_is_refused_before_sending_and_stream_stays_usable(
    pha_client_context: ssl.SSLContext, pha_server_context: ssl.SSLContext
) -> None:
    pha_client_context.post_handshake_auth = False
    async with watched_pair(pha_client_context, pha_server_context) as (
        client,
        server,
        watched,
    ):
        await expect_refusal(
            client, server, watched, "did not offer post-handshake authentication"
        )
        # OpenSSL's own reason is kept as the cause.
        with pytest.raises(PostHandshakeAuthError) as info:
            await server.verify_client_post_handshake()
        assert isinstance(info.value.__cause__, ssl.SSLError)
        assert info.value.__cause__.reason == "EXTENSION_NOT_RECEIVED"


@pytest.mark.parametrize(
    ("post_handshake_auth", "verify_mode"),
    [(False, ssl.CERT_OPTIONAL), (True, ssl.CERT_NONE)],
    ids=["no-post_handshake_auth", "CERT_NONE"],
)
async def test_server_context_not_set_up_is_refused_before_sending(
    pha_client_context: ssl.SSLContext,
    pha_server_context: ssl.SSLContext,
    post_handshake_auth: bool,
    verify_mode: ssl.VerifyMode,
) -> None:
    pha_server_context.post_handshake_auth = post_handshake_auth
    pha_server_context.verify_mode = verify_mode
    async with watched_pair(pha_client_context, pha_server_context) as (
        client,
        server,
        watched,
    ):
        await expect_refusal(client, server, watched, "post_handshake_auth = True")


async def test_client_side_cannot_ask(
    pha_client_context: ssl.SSLContext, pha_server_context: ssl.SSLContext
) -> None:
    async with tls_pair(pha_client_context, pha_server_context) as (client, server):
        with pytest.raises(PostHandshakeAuthError, match="only a server"):
            await client.verify_client_post_handshake()
        with pytest.raises(PostHandshakeAuthError, match="only a server"):
            await client.request_client_certificate()
        await assert_usable(client, server)


async def test_server_settings_are_read_when_the_stream_is_created(
    pha_client_context: ssl.SSLContext, pha_server_context: ssl.SSLContext
) -> None:
    # Turning post-handshake auth on after creating the stream changes nothing...
    pha_server_context.post_handshake_auth = False
    pha_server_context.verify_mode = ssl.CERT_OPTIONAL
    async with watched_pair(pha_client_context, pha_server_context) as (
        client,
        server,
        watched,
    ):
        pha_server_context.post_handshake_auth = True
        pha_server_context.verify_mode = ssl.CERT_REQUIRED
        await expect_refusal(client, server, watched, "post_handshake_auth = True")
    # ... nor does turning it off.
    async with tls_pair(pha_client_context, pha_server_context) as (client, server):
        pha_server_context.post_handshake_auth = False
        pha_server_context.verify_mode = ssl.CERT_NONE
        cert = await verify_with_answering_client(client, server)
        assert cert is not None


async def test_client_settings_are_read_when_the_stream_is_created(
    pha_client_context: ssl.SSLContext, pha_server_context: ssl.SSLContext
) -> None:
    pha_client_context.post_handshake_auth = False
    async with watched_pair(pha_client_context, pha_server_context) as (
        client,
        server,
        watched,
    ):
        pha_client_context.post_handshake_auth = True
        await expect_refusal(client, server, watched, "did not offer")


async def test_verify_after_send_eof_raises_closed(
    pha_client_context: ssl.SSLContext, pha_server_context: ssl.SSLContext
) -> None:
    async with tls_pair(pha_client_context, pha_server_context) as (_, server):
        await server.send_eof()
        with pytest.raises(anyio.ClosedResourceError):
            await server.verify_client_post_handshake()


# -- num_tickets = 0: the end of an exchange can be invisible -------------------------


async def test_num_tickets_0_with_cert_optional_is_refused_before_sending(
    pha_client_context: ssl.SSLContext, pha_server_context: ssl.SSLContext
) -> None:
    # An empty Certificate under CERT_OPTIONAL changes nothing anyiotls can see
    # unless the server sends new session tickets afterwards: refuse up front
    # rather than wait for ever.
    pha_server_context.verify_mode = ssl.CERT_OPTIONAL
    pha_server_context.num_tickets = 0
    async with watched_pair(pha_client_context, pha_server_context) as (
        client,
        server,
        watched,
    ):
        await expect_refusal(client, server, watched, "num_tickets")


async def test_num_tickets_0_with_cert_required_works_once_then_is_refused(
    pha_client_context: ssl.SSLContext, pha_server_context: ssl.SSLContext
) -> None:
    pha_server_context.num_tickets = 0
    async with watched_pair(pha_client_context, pha_server_context) as (
        client,
        server,
        watched,
    ):
        cert = await verify_with_answering_client(client, server)
        assert cert is not None
        # The same certificate again, without tickets: nothing would show the end.
        await expect_refusal(client, server, watched, "num_tickets")


async def test_num_tickets_is_read_when_the_stream_is_created(
    pha_client_context: ssl.SSLContext, pha_server_context: ssl.SSLContext
) -> None:
    pha_server_context.verify_mode = ssl.CERT_OPTIONAL
    async with tls_pair(pha_client_context, pha_server_context) as (client, server):
        pha_server_context.num_tickets = 0  # too late: this stream sends tickets
        for _ in range(2):
            assert await verify_with_answering_client(client, server) is not None


# -- failures of the client's answer ---------------------------------------------------


async def client_receive_error(client: TLSStream) -> BaseException:
    try:
        await client.receive()
    except Exception as exc:
        return exc
    raise AssertionError("the client received data instead of an error")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_no_client_certificate_under_cert_required_raises_the_ssl_error(
    client_context: ssl.SSLContext, pha_server_context: ssl.SSLContext, transport: str
) -> None:
    client_context.post_handshake_auth = True  # but no certificate
    async with tls_pair(client_context, pha_server_context, transport=transport) as (
        client,
        server,
    ):
        client_error: list[BaseException] = []
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:

                async def client_side() -> None:
                    client_error.append(await client_receive_error(client))

                tg.start_soon(client_side)
                with pytest.raises(ssl.SSLError) as info:
                    await server.verify_client_post_handshake()
            assert info.value.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE"
            assert not server.client_certificate_pending
            # The stream is broken, with the same error as cause.
            with pytest.raises(anyio.BrokenResourceError) as broken:
                await server.receive()
            assert broken.value.__cause__ is info.value
            with pytest.raises(anyio.BrokenResourceError):
                await server.send(b"x")
            # The client was told why (alert 116).
            [error] = client_error
            assert isinstance(error, anyio.BrokenResourceError)
            assert isinstance(error.__cause__, ssl.SSLError)
            assert error.__cause__.reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_untrusted_client_certificate_raises_cert_verification_error(
    client_context: ssl.SSLContext,
    pha_server_context: ssl.SSLContext,
    mallory: trustme.LeafCert,
    transport: str,
) -> None:
    mallory.configure_cert(client_context)
    client_context.post_handshake_auth = True
    async with tls_pair(client_context, pha_server_context, transport=transport) as (
        client,
        server,
    ):
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(client_receive_error, client)
                with pytest.raises(ssl.SSLCertVerificationError) as info:
                    await server.verify_client_post_handshake()
            with pytest.raises(anyio.BrokenResourceError) as broken:
                await server.receive()
            assert broken.value.__cause__ is info.value
        assert info.value.reason == "CERTIFICATE_VERIFY_FAILED"


async def test_failure_seen_first_by_a_receiving_task_is_raised_by_verify_too(
    client_context: ssl.SSLContext, pha_server_context: ssl.SSLContext
) -> None:
    # Another task's receive() processes the rejected answer: verify must not
    # report success (None) but the same ssl error.
    client_context.post_handshake_auth = True
    async with tls_pair(client_context, pha_server_context) as (client, server):
        receiver_error: list[BaseException] = []
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:

                async def server_receiver() -> None:
                    with pytest.raises(anyio.BrokenResourceError) as info:
                        await server.receive()
                    receiver_error.append(info.value)

                tg.start_soon(server_receiver)
                tg.start_soon(client_receive_error, client)
                await anyio.wait_all_tasks_blocked()
                with pytest.raises(ssl.SSLError) as info:
                    await server.verify_client_post_handshake()
        assert info.value.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE"
        [error] = receiver_error
        assert error.__cause__ is info.value


async def test_client_closing_instead_of_answering_raises_and_keeps_earlier_data(
    pha_client_context: ssl.SSLContext, pha_server_context: ssl.SSLContext
) -> None:
    async with tls_pair(pha_client_context, pha_server_context) as (client, server):
        with anyio.fail_after(10):
            await client.send(b"last words")
            await client.send_eof()  # close_notify, and it never reads again
            with pytest.raises(PostHandshakeAuthError, match="without answering"):
                await server.verify_client_post_handshake()
            assert await server.receive() == b"last words"
            with pytest.raises(anyio.EndOfStream):
                await server.receive()
            # The server may still send (TLS 1.3 half-close) and close.
            await server.send(b"bye")
            assert await client.receive() == b"bye"


async def vanish_when_blocked(client: TLSStream) -> None:
    """Close the client's transport (no close_notify) once the server waits."""
    await anyio.wait_all_tasks_blocked()
    await anyio.aclose_forcefully(client.transport_stream)


async def test_transport_ending_while_waiting_raises_broken_resource_error(
    pha_client_context: ssl.SSLContext, pha_server_context: ssl.SSLContext
) -> None:
    async with tls_pair(pha_client_context, pha_server_context) as (client, server):
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(vanish_when_blocked, client)
                with pytest.raises(anyio.BrokenResourceError) as info:
                    await server.verify_client_post_handshake()
            assert isinstance(info.value.__cause__, ssl.SSLEOFError)
            with pytest.raises(anyio.BrokenResourceError):
                await server.receive()


async def test_transport_ending_while_waiting_is_a_close_if_not_standard_compatible(
    pha_client_context: ssl.SSLContext, pha_server_context: ssl.SSLContext
) -> None:
    async with tls_pair(
        pha_client_context, pha_server_context, standard_compatible=False
    ) as (client, server):
        with anyio.fail_after(10):
            await client.send(b"last words")
            async with anyio.create_task_group() as tg:
                tg.start_soon(vanish_when_blocked, client)
                with pytest.raises(PostHandshakeAuthError, match="without answering"):
                    await server.verify_client_post_handshake()
            assert await server.receive() == b"last words"
            with pytest.raises(anyio.EndOfStream):
                await server.receive()


# -- application data around the exchange ----------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("max_bytes", [65536, 7])
async def test_data_sent_before_and_while_answering_is_received_in_order(
    pha_client_context: ssl.SSLContext,
    pha_server_context: ssl.SSLContext,
    transport: str,
    max_bytes: int,
) -> None:
    before = b"".join(b"before-%d;" % i for i in range(50)) + bytes(100_000)
    during = [b"during-%d;" % i for i in range(200)]
    async with tls_pair(
        pha_client_context, pha_server_context, transport=transport
    ) as (
        client,
        server,
    ):
        with anyio.fail_after(20):
            await client.send(before)  # sent before the client sees the request
            async with anyio.create_task_group() as tg:

                async def client_side() -> None:
                    async with anyio.create_task_group() as inner:

                        async def keep_sending() -> None:
                            for chunk in during:
                                await client.send(chunk)
                                await anyio.lowlevel.checkpoint()

                        inner.start_soon(keep_sending)
                        await client_answers(client)  # answers meanwhile

                tg.start_soon(client_side)
                cert = await server.verify_client_post_handshake()
                await server.send(b"go")
            assert cert is not None
            expected = before + b"".join(during)
            received = bytearray()
            while len(received) < len(expected):
                received += await server.receive(max_bytes)
            assert received == expected
            await assert_usable(client, server)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_verify_while_another_task_is_blocked_in_receive(
    pha_client_context: ssl.SSLContext,
    pha_server_context: ssl.SSLContext,
    transport: str,
) -> None:
    chunks = [b"chunk-%d;" % i for i in range(100)]
    expected = b"".join(chunks)
    async with tls_pair(
        pha_client_context, pha_server_context, transport=transport
    ) as (
        client,
        server,
    ):
        received = bytearray()
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:

                async def server_receiver() -> None:
                    while len(received) < len(expected):
                        received.extend(await server.receive())

                async def client_side() -> None:
                    await client.send(b"".join(chunks[:50]))
                    await client_answers(client)
                    for chunk in chunks[50:]:
                        await client.send(chunk)

                tg.start_soon(server_receiver)
                await anyio.wait_all_tasks_blocked()  # the receiver waits for data
                tg.start_soon(client_side)
                cert = await server.verify_client_post_handshake()
                assert cert is not None
                assert common_name(cert) == "alice"
                await server.send(b"go")
        assert received == expected
        assert server.extra(TLSAttribute.peer_certificate) == cert


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_verify_while_another_task_sends(
    pha_client_context: ssl.SSLContext,
    pha_server_context: ssl.SSLContext,
    transport: str,
) -> None:
    chunks = [b"%d;" % i * 100 for i in range(300)]
    expected = b"".join(chunks) + b"go"
    async with tls_pair(
        pha_client_context, pha_server_context, transport=transport
    ) as (
        client,
        server,
    ):
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:

                async def server_sender() -> None:
                    for chunk in chunks:
                        await server.send(chunk)
                        await anyio.lowlevel.checkpoint()

                async def client_receiver() -> None:
                    assert await receive_exactly(client, len(expected)) == expected

                tg.start_soon(client_receiver)
                async with anyio.create_task_group() as senders:
                    senders.start_soon(server_sender)
                    cert = await server.verify_client_post_handshake()
                assert cert is not None
                await server.send(b"go")
        await assert_usable(client, server)


# -- without waiting -------------------------------------------------------------------


async def test_request_without_waiting_is_answered_through_receive(
    pha_client_context: ssl.SSLContext, pha_server_context: ssl.SSLContext
) -> None:
    async with watched_pair(pha_client_context, pha_server_context) as (
        client,
        server,
        watched,
    ):
        with anyio.fail_after(10):
            sent = len(watched.sent)
            await server.request_client_certificate()
            assert server.client_certificate_pending
            assert len(watched.sent) > sent  # the CertificateRequest left at once
            sent = len(watched.sent)
            await server.request_client_certificate()  # pending: does nothing
            assert len(watched.sent) == sent
            assert server.extra(TLSAttribute.peer_certificate) is None

            async with anyio.create_task_group() as tg:

                async def client_side() -> None:
                    await client_answers(client)
                    await client.send(b"request needing a cert")

                tg.start_soon(client_side)
                await server.send(b"go")
                assert await server.receive() == b"request needing a cert"
        assert not server.client_certificate_pending
        cert = server.extra(TLSAttribute.peer_certificate)
        assert cert is not None
        assert common_name(cert) == "alice"
        # A later verify is a new round.
        assert await verify_with_answering_client(client, server) == cert


async def test_verify_waits_for_a_request_made_earlier(
    pha_client_context: ssl.SSLContext, pha_server_context: ssl.SSLContext
) -> None:
    async with watched_pair(pha_client_context, pha_server_context) as (
        client,
        server,
        watched,
    ):
        await server.request_client_certificate()
        sends = watched.sends
        cert = await verify_with_answering_client(client, server)
        assert cert is not None
        assert watched.sends - sends == 2  # the new tickets, "go": no second request


# -- a client that only sends ----------------------------------------------------------


async def test_client_that_only_sends_never_answers_and_verify_waits(
    pha_client_context: ssl.SSLContext, pha_server_context: ssl.SSLContext
) -> None:
    chunks = [b"upload-%d;" % i for i in range(100)]
    async with tls_pair(pha_client_context, pha_server_context) as (client, server):
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:

                async def upload() -> None:
                    for chunk in chunks:
                        await client.send(chunk)

                tg.start_soon(upload)
                returned = False
                with anyio.CancelScope() as scope:

                    async def give_up() -> None:
                        await anyio.wait_all_tasks_blocked()
                        scope.cancel()  # everything is sent; verify still waits

                    tg.start_soon(give_up)
                    await server.verify_client_post_handshake()
                    returned = True
            assert not returned
            assert server.client_certificate_pending
            assert server.extra(TLSAttribute.peer_certificate) is None
            # Nothing the client sent was lost.
            expected = b"".join(chunks)
            assert await receive_exactly(server, len(expected)) == expected
            # Once the client receives, it answers.
            async with anyio.create_task_group() as tg:

                async def client_side() -> None:
                    await client_answers(client)
                    await client.send(b"done")

                tg.start_soon(client_side)
                await server.send(b"go")
                assert await server.receive() == b"done"
        assert not server.client_certificate_pending
        assert server.extra(TLSAttribute.peer_certificate) is not None


# -- cancellation ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["verify", "request"])
async def test_cancelled_before_the_call_raises_and_sends_nothing(
    pha_client_context: ssl.SSLContext, pha_server_context: ssl.SSLContext, method: str
) -> None:
    async with watched_pair(pha_client_context, pha_server_context) as (
        client,
        server,
        watched,
    ):
        call = {
            "verify": server.verify_client_post_handshake,
            "request": server.request_client_certificate,
        }[method]
        sends = watched.sends
        reached = False
        with anyio.CancelScope() as scope:
            scope.cancel()
            await call()
            reached = True
        assert not reached
        assert scope.cancelled_caught
        assert watched.sends == sends
        assert not server.client_certificate_pending
        await assert_usable(client, server)
        assert await verify_with_answering_client(client, server) is not None


async def test_verify_with_a_pending_request_is_a_checkpoint(
    pha_client_context: ssl.SSLContext, pha_server_context: ssl.SSLContext
) -> None:
    async with tls_pair(pha_client_context, pha_server_context) as (client, server):
        await server.request_client_certificate()
        for call in (
            server.verify_client_post_handshake,
            server.request_client_certificate,
        ):
            reached = False
            with anyio.CancelScope() as scope:
                scope.cancel()
                await call()
                reached = True
            assert not reached
            assert scope.cancelled_caught
            assert server.client_certificate_pending
        assert await verify_with_answering_client(client, server) is not None


async def run_and_cancel_when_blocked(
    call: Callable[[], Awaitable[Any]],
) -> anyio.CancelScope:
    """Run *call* in a task, cancel it once every task is blocked; return its scope."""
    scope = anyio.CancelScope()

    async def runner() -> None:
        with scope:
            await call()
            raise AssertionError(f"{call} returned instead of blocking")

    async with anyio.create_task_group() as tg:
        tg.start_soon(runner)
        await anyio.wait_all_tasks_blocked()
        scope.cancel()
    assert scope.cancelled_caught
    return scope


async def test_cancelled_waiting_for_the_send_lock_sends_no_request(
    pha_client_context: ssl.SSLContext, pha_server_context: ssl.SSLContext
) -> None:
    payload = b"stuck in the transport"
    async with watched_pair(pha_client_context, pha_server_context) as (
        client,
        server,
        watched,
    ):
        with anyio.fail_after(10):
            # The server's session tickets leave with its first send: not this one.
            await server.send(b"tickets")
            assert await client.receive() == b"tickets"
            sends, sent = watched.sends, len(watched.sent)
            watched.gate = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(server.send, payload)  # holds the send lock, blocked
                await anyio.wait_all_tasks_blocked()
                await run_and_cancel_when_blocked(server.verify_client_post_handshake)
                # Nothing was queued: no request, and the attributes still work.
                assert not server.client_certificate_pending
                assert server.extra(TLSAttribute.peer_certificate) is None
                watched.gate.set()
            # Only the payload's record left (a request would add ~100 bytes).
            assert watched.sends == sends + 1
            assert len(watched.sent) - sent < len(payload) + 40
            assert await client.receive() == payload
        await assert_usable(client, server)
        assert await verify_with_answering_client(client, server) is not None


async def test_cancelled_while_the_request_is_in_transport_send_breaks_the_stream(
    pha_client_context: ssl.SSLContext, pha_server_context: ssl.SSLContext
) -> None:
    # The general rule of _driver.py: part of a record may have left.
    async with watched_pair(pha_client_context, pha_server_context) as (
        _,
        server,
        watched,
    ):
        with anyio.fail_after(10):
            watched.gate = anyio.Event()
            await run_and_cancel_when_blocked(server.verify_client_post_handshake)
            with pytest.raises(anyio.BrokenResourceError):
                await server.receive()
            with pytest.raises(anyio.BrokenResourceError):
                await server.verify_client_post_handshake()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_cancelled_waiting_for_the_answer_keeps_the_request_pending(
    pha_client_context: ssl.SSLContext,
    pha_server_context: ssl.SSLContext,
    transport: str,
) -> None:
    async with tls_pair(
        pha_client_context, pha_server_context, transport=transport
    ) as (
        client,
        server,
    ):
        with anyio.fail_after(10):
            if transport == "memory":
                await run_and_cancel_when_blocked(server.verify_client_post_handshake)
            else:  # sockets: bound the wait by time (the client is not reading)
                with anyio.move_on_after(0.1) as scope:
                    await server.verify_client_post_handshake()
                assert scope.cancelled_caught
            assert server.client_certificate_pending
            assert server.extra(TLSAttribute.peer_certificate) is None  # no ValueError
            # The client answers when it next receives; the server's next receive
            # processes the answer before the data that follows it.
            async with anyio.create_task_group() as tg:

                async def client_side() -> None:
                    await client_answers(client)
                    await client.send(b"after the answer")

                tg.start_soon(client_side)
                await server.send(b"go")
                assert await server.receive() == b"after the answer"
        assert not server.client_certificate_pending
        cert = server.extra(TLSAttribute.peer_certificate)
        assert cert is not None
        assert common_name(cert) == "alice"
        await assert_usable(client, server)


async def test_cancelled_waiting_behind_another_receiver_keeps_the_request_pending(
    pha_client_context: ssl.SSLContext, pha_server_context: ssl.SSLContext
) -> None:
    async with tls_pair(pha_client_context, pha_server_context) as (client, server):
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                received: list[bytes] = []

                async def server_receiver() -> None:
                    received.append(await server.receive())

                tg.start_soon(server_receiver)
                await anyio.wait_all_tasks_blocked()
                # verify waits for the receive lock the receiver holds.
                await run_and_cancel_when_blocked(server.verify_client_post_handshake)
                assert server.client_certificate_pending

                async def client_side() -> None:
                    await client_answers(client)
                    await client.send(b"for the receiver")

                tg.start_soon(client_side)
                await server.send(b"go")
        assert received == [b"for the receiver"]
        assert not server.client_certificate_pending
        assert server.extra(TLSAttribute.peer_certificate) is not None


# -- unwrap and aclose while a request is pending -------------------------------------


async def exchange_plaintext(
    transport: Any, leftover: bytes, mine: bytes, theirs_size: int
) -> bytes:
    """After a downgrade: send *mine*, return exactly *theirs_size* bytes received."""
    await transport.send(mine)
    received = bytearray(leftover)
    while len(received) < theirs_size:
        received += await transport.receive()
    return bytes(received)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_unwrap_while_pending_finishes_the_exchange_first(
    pha_client_context: ssl.SSLContext,
    pha_server_context: ssl.SSLContext,
    transport: str,
) -> None:
    # No handshake byte may end up in either side's plaintext after the downgrade.
    async with tls_pair(
        pha_client_context, pha_server_context, transport=transport
    ) as (
        client,
        server,
    ):
        result: dict[str, bytes] = {}
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:

                async def client_side() -> None:
                    with pytest.raises(anyio.EndOfStream):
                        await client.receive()  # answers, then sees close_notify
                    plain, leftover = await client.unwrap()
                    result["client"] = await exchange_plaintext(
                        plain, leftover, b"CLIENT PLAINTEXT", len(b"SERVER PLAINTEXT")
                    )

                tg.start_soon(client_side)
                await server.request_client_certificate()
                assert server.client_certificate_pending
                plain, leftover = await server.unwrap()
                assert not server.client_certificate_pending
                assert server.extra(TLSAttribute.peer_certificate) is not None
                result["server"] = await exchange_plaintext(
                    plain, leftover, b"SERVER PLAINTEXT", len(b"CLIENT PLAINTEXT")
                )
        assert result == {"client": b"SERVER PLAINTEXT", "server": b"CLIENT PLAINTEXT"}


async def test_unwrap_while_pending_with_a_rejected_answer_raises_broken(
    client_context: ssl.SSLContext, pha_server_context: ssl.SSLContext
) -> None:
    client_context.post_handshake_auth = True  # no certificate, CERT_REQUIRED
    async with tls_pair(client_context, pha_server_context) as (client, server):
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(client_receive_error, client)
                await server.request_client_certificate()
                with pytest.raises(anyio.BrokenResourceError) as info:
                    await server.unwrap()
        assert isinstance(info.value.__cause__, ssl.SSLError)
        assert info.value.__cause__.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE"


async def test_unwrap_after_the_client_closed_without_answering_refuses(
    pha_client_context: ssl.SSLContext, pha_server_context: ssl.SSLContext
) -> None:
    # The client sent close_notify before it saw the request.  An OpenSSL client
    # then still answers, *after* its close_notify: the bytes that follow it may be
    # handshake messages, so the server must not hand them out as plaintext.
    async with tls_pair(pha_client_context, pha_server_context) as (client, server):
        result: dict[str, bytes] = {}
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:

                async def client_side() -> None:
                    _, result["client"] = await client.unwrap()

                tg.start_soon(client_side)
                await anyio.wait_all_tasks_blocked()  # close_notify is on its way
                await server.request_client_certificate()
                with pytest.raises(PostHandshakeAuthError, match="without answering"):
                    await server.unwrap()
                with pytest.raises(PostHandshakeAuthError, match="without answering"):
                    await server.verify_client_post_handshake()
                await server.aclose()  # closing is still possible
        assert result["client"] == b""


async def test_aclose_while_pending_does_not_wait_for_the_answer(
    pha_client_context: ssl.SSLContext, pha_server_context: ssl.SSLContext
) -> None:
    async with tls_pair(pha_client_context, pha_server_context) as (client, server):
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:

                async def client_side() -> None:
                    with pytest.raises(anyio.EndOfStream):
                        await client.receive()
                    await client.aclose()

                tg.start_soon(client_side)
                await server.request_client_certificate()
                await server.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await server.verify_client_post_handshake()


async def test_send_eof_while_pending_sends_no_handshake_after_close_notify(
    pha_client_context: ssl.SSLContext, pha_server_context: ssl.SSLContext
) -> None:
    # After its close_notify the server must not send the session tickets that
    # follow a processed answer: they would land in the client's plaintext after
    # a downgrade.  send_eof() therefore waits for the answer first.
    async with tls_pair(pha_client_context, pha_server_context) as (client, server):
        result: dict[str, bytes] = {}
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:

                async def client_side() -> None:
                    with pytest.raises(anyio.EndOfStream):
                        await client.receive()
                    plain, leftover = await client.unwrap()
                    result["client"] = await exchange_plaintext(
                        plain, leftover, b"", len(b"SERVER PLAINTEXT")
                    )

                tg.start_soon(client_side)
                await server.request_client_certificate()
                await server.send_eof()
                plain, _ = await server.unwrap()
                await plain.send(b"SERVER PLAINTEXT")
        assert result["client"] == b"SERVER PLAINTEXT"


# -- the example of the docs -----------------------------------------------------------


async def test_the_example_server_runs(anyio_backend_name: str, tmp_path: Path) -> None:
    """examples/pha_server.py (shown in docs/post-handshake-auth.md) works."""
    example = Path(__file__).parent.parent / "examples" / "pha_server.py"
    # The example imports the anyiotls these tests import, installed or not.
    source = str(Path(anyiotls.__file__).parent.parent)
    path = os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))
    with anyio.fail_after(60):
        result = await anyio.run_process(
            [
                sys.executable,
                str(example),
                "--self-test",
                "--backend",
                anyio_backend_name,
            ],
            check=False,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": path},
        )
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == 0, output
    assert "self-test passed" in output
