"""Interop with OpenSSL's own peers: ``openssl s_server`` and ``openssl s_client``.

Our client talks to s_server and our server to s_client, over real loopback TCP,
under every AnyIO backend.  The peers and their quirks are in ``peers/openssl.py``.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import anyio.abc
import pytest
import trustme

import anyiotls
from anyiotls import TLSAttribute, TLSListener, TLSStream

from .peers import PemFiles
from .peers.openssl import OpenSSLServer, TLSVersionName, openssl_client, openssl_server

pytestmark = [pytest.mark.anyio, pytest.mark.interop]

#: Upper bound for one whole test: nothing here may hang.
TEST_TIMEOUT = 60

#: Plain loopback TCP (AnyIO's socket streams), anyiotls's own TCP transport
#: (``connect_tcp``/``create_tcp_listener`` with ``tls=False``), or a CongestedStream
#: over AnyIO's (sends take a while).
LINKS = ["tcp", "fast", "congested"]

VERSIONS = [
    pytest.param("1.2", id="TLSv1.2"),
    pytest.param("1.3", id="TLSv1.3"),
]


# -- helpers ---------------------------------------------------------------------------


async def wait_until(
    check: Callable[[], object],
    what: str,
    timeout: float = 10,
    describe: Callable[[], str] | None = None,
) -> None:
    """Poll *check* (state changed by another task of this test) until it is true.

    On timeout the AssertionError includes ``describe()``, e.g. the peer's output.
    """
    with anyio.move_on_after(timeout):
        while not check():  # noqa: ASYNC110
            await anyio.sleep(0.005)
        return
    details = f"\n{describe()}" if describe is not None else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}{details}")


@asynccontextmanager
async def closed_on_error(stream: TLSStream) -> AsyncIterator[TLSStream]:
    """Yield *stream*; if the body fails, close it forcefully (no ResourceWarning).

    On success the test closes the stream itself: that is part of what it checks.
    """
    try:
        yield stream
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise


@asynccontextmanager
async def connect(
    server: OpenSSLServer,
    context: ssl.SSLContext,
    *,
    congested: bool = False,
    fast: bool = False,
    **kwargs: Any,
) -> AsyncIterator[TLSStream]:
    """Our client: TCP to *server* (or a :class:`CongestedStream` over it), TLS.

    *fast*: over anyiotls's own TCP transport instead of AnyIO's socket stream.
    """
    transport: anyio.abc.ByteStream = (
        await anyiotls.connect_tcp(server.host, server.port, tls=False)
        if fast
        else await anyio.connect_tcp(server.host, server.port)
    )
    if congested:
        transport = CongestedStream(transport)
    try:
        stream = await TLSStream.wrap(
            transport, hostname="localhost", ssl_context=context, **kwargs
        )
    except BaseException:
        await anyio.aclose_forcefully(transport)
        raise
    async with closed_on_error(stream):
        yield stream


async def receive_until(stream: TLSStream, terminator: bytes) -> bytes:
    data = b""
    while terminator not in data:
        data += await stream.receive()
    return data


async def receive_to_end(stream: TLSStream) -> bytes:
    data = b""
    while True:
        try:
            data += await stream.receive()
        except anyio.EndOfStream:
            return data


@asynccontextmanager
async def tcp_listener(fast: bool = False) -> AsyncIterator[anyio.abc.SocketListener]:
    """AnyIO's TCP listener, or (*fast*) one of anyiotls's own transport."""
    listeners = (
        await anyiotls.create_tcp_listener(local_host="127.0.0.1", tls=False)
        if fast
        else await anyio.create_tcp_listener(local_host="127.0.0.1")
    )
    async with listeners:
        listener = listeners.listeners[0]
        assert isinstance(listener, anyio.abc.SocketListener)
        yield listener


@asynccontextmanager
async def accept_tls(
    listener: anyio.abc.SocketListener,
    context: ssl.SSLContext,
    *,
    congested: bool = False,
) -> AsyncIterator[TLSStream]:
    """Our server: accept one TCP connection (congested if asked), then TLS."""
    transport: anyio.abc.ByteStream = await listener.accept()
    if congested:
        transport = CongestedStream(transport)
    try:
        stream = await TLSStream.wrap(transport, server_side=True, ssl_context=context)
    except BaseException:
        await anyio.aclose_forcefully(transport)
        raise
    async with closed_on_error(stream):
        yield stream


def local_port(listener: anyio.abc.SocketListener) -> int:
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    assert isinstance(port, int)
    return port


@dataclass(eq=False)
class CongestedStream(anyio.abc.ByteStream):
    """A transport whose ``send()`` takes *delay* seconds, like a congested link.

    Like AnyIO's socket streams it refuses a second concurrent ``send()`` with
    ``BusyResourceError``.  The delay keeps our sending task inside the transport's
    ``send()`` most of the time, so anything the receiving task must send (a
    KeyUpdate answer, a renegotiation message) meets a busy transport.
    """

    inner: anyio.abc.ByteStream
    delay: float = 0.02
    _sending: bool = field(default=False, init=False)

    async def send(self, item: bytes) -> None:
        if self._sending:
            raise anyio.BusyResourceError("writing to")
        self._sending = True
        try:
            await anyio.sleep(self.delay)
            await self.inner.send(item)
        finally:
            self._sending = False

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self.inner.receive(max_bytes)

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self.inner.extra_attributes


def error_text(exc: BaseException) -> str:
    """The exception and its causes/contexts, for matching OpenSSL reason codes."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(parts) < 10:
        parts.append(f"{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or seen.__context__
    return " <- ".join(parts)


def tls_name(version: TLSVersionName) -> str:
    return f"TLSv{version}"


def count(pattern: str, text: str) -> int:
    return len(re.findall(pattern, text, re.MULTILINE))


# Protocol log lines (``-msg``) as s_server/s_client print them.
SENT_CLOSE_NOTIFY = r">>> TLS 1\.[23], Alert \[length 0002\], warning close_notify"
GOT_CLOSE_NOTIFY = r"<<< TLS 1\.[23], Alert \[length 0002\], warning close_notify"
SENT_KEY_UPDATE = r">>> TLS 1\.3, Handshake \[length 0005\], KeyUpdate"
GOT_KEY_UPDATE = r"<<< TLS 1\.3, Handshake \[length 0005\], KeyUpdate"
GOT_CLIENT_HELLO = r"<<< TLS 1\.[0-3], Handshake \[length [0-9a-f]+\], ClientHello$"
SENT_SERVER_HELLO = r">>> TLS 1\.[23], Handshake \[length [0-9a-f]+\], ServerHello$"

#: Numbered records that a test streams through a peer and then checks in order.
TOKEN = b"<%07d>\n"
TOKEN_PATTERN = re.compile(rb"<(\d{7})>\n")


def tokens(first: int, number: int) -> bytes:
    return b"".join(TOKEN % index for index in range(first, first + number))


def token_numbers(data: bytes) -> list[int]:
    return [int(number) for number in TOKEN_PATTERN.findall(data)]


# -- our client, s_server --------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
async def test_client_echoes_lines_through_s_server_rev_and_closes_cleanly(
    pem_files: PemFiles, client_context: ssl.SSLContext, version: TLSVersionName
) -> None:
    client_context.set_alpn_protocols(["http/1.1"])
    with anyio.fail_after(TEST_TIMEOUT):
        async with (
            openssl_server(
                pem_files, mode="rev", tls_version=version, alpn=["h2", "http/1.1"]
            ) as server,
            connect(server, client_context) as stream,
        ):
            assert stream.extra(TLSAttribute.tls_version) == tls_name(version)
            assert stream.extra(TLSAttribute.cipher)[1] == tls_name(version)
            assert stream.extra(TLSAttribute.alpn_protocol) == "http/1.1"
            assert stream.extra(TLSAttribute.server_side) is False
            for line in (b"hello\n", b"second line\n", b"x" * 5000 + b"y\n"):
                await stream.send(line)
                assert await receive_until(stream, b"\n") == line[-2::-1] + b"\n"

            # Our close_notify, s_server's answer: aclose() returns only after it.
            await stream.aclose()
            assert await server.wait_exit() == 0
        log = server.messages()
        assert count(GOT_CLOSE_NOTIFY, log) == 1
        assert count(SENT_CLOSE_NOTIFY, log) == 1


@pytest.mark.parametrize("version", VERSIONS)
async def test_client_gets_end_of_stream_when_s_server_sends_close_notify(
    pem_files: PemFiles, client_context: ssl.SSLContext, version: TLSVersionName
) -> None:
    with anyio.fail_after(TEST_TIMEOUT):
        async with (
            openssl_server(pem_files, mode="rev", tls_version=version) as server,
            connect(server, client_context) as stream,
        ):
            await stream.send(b"abc\n")
            assert await receive_until(stream, b"\n") == b"cba\n"
            await stream.send(b"CLOSE\n")  # -rev: answer with close_notify
            with pytest.raises(anyio.EndOfStream):
                await stream.receive()
            with pytest.raises(anyio.EndOfStream):
                await stream.receive()
            await stream.aclose()
            assert await server.wait_exit() == 0
        assert count(SENT_CLOSE_NOTIFY, server.messages()) == 1


@pytest.mark.parametrize("standard_compatible", [True, False])
async def test_client_sees_truncation_when_s_server_quits_without_close_notify(
    pem_files: PemFiles, client_context: ssl.SSLContext, standard_compatible: bool
) -> None:
    """``Q`` makes s_server close the socket without close_notify."""
    with anyio.fail_after(TEST_TIMEOUT):
        async with (
            openssl_server(pem_files) as server,
            connect(
                server, client_context, standard_compatible=standard_compatible
            ) as stream,
        ):
            await stream.send(b"ping\n")
            await server.wait_received(b"ping\n")
            await server.send_line(b"pong\n")
            assert await receive_until(stream, b"\n") == b"pong\n"
            await server.command("Q")
            if standard_compatible:
                with pytest.raises(anyio.BrokenResourceError):
                    await stream.receive()
            else:
                with pytest.raises(anyio.EndOfStream):
                    await stream.receive()
            await stream.aclose()
        assert count(SENT_CLOSE_NOTIFY, server.messages()) == 0


async def test_client_reads_s_server_www_page_until_close_notify(
    pem_files: PemFiles, client_context: ssl.SSLContext
) -> None:
    with anyio.fail_after(TEST_TIMEOUT):
        async with (
            openssl_server(pem_files, mode="www") as server,
            connect(server, client_context) as stream,
        ):
            await stream.send(b"GET / HTTP/1.0\r\n\r\n")
            page = await receive_to_end(stream)
            assert page.startswith(b"HTTP/1.0 200 ok\r\n")
            cipher = stream.extra(TLSAttribute.cipher)[0]
            assert cipher.encode() in page  # the page lists the negotiated cipher
            await stream.aclose()
            assert await server.wait_exit() == 0
        assert count(SENT_CLOSE_NOTIFY, server.messages()) == 1


@pytest.mark.parametrize("version", VERSIONS)
async def test_client_presents_certificate_that_s_server_requires(
    pem_files: PemFiles,
    client_context: ssl.SSLContext,
    client_cert: trustme.LeafCert,
    version: TLSVersionName,
) -> None:
    client_cert.configure_cert(client_context)
    with anyio.fail_after(TEST_TIMEOUT):
        async with (
            openssl_server(
                pem_files, mode="rev", tls_version=version, verify_client="require"
            ) as server,
            connect(server, client_context) as stream,
        ):
            await stream.send(b"with a certificate\n")
            assert await receive_until(stream, b"\n") == b"etacifitrec a htiw\n"
            await stream.aclose()
            assert await server.wait_exit() == 0
        # s_server -rev prints the peer's certificate and its verification result.
        summary = server.stderr.decode()
        assert "Client certificate: " in summary or "Peer certificate: " in summary
        assert "Verification: OK" in summary


@pytest.mark.parametrize("version", VERSIONS)
async def test_client_without_certificate_is_refused_by_s_server(
    pem_files: PemFiles, client_context: ssl.SSLContext, version: TLSVersionName
) -> None:
    """TLS 1.2 fails in the handshake; TLS 1.3 at the first receive after it."""
    with anyio.fail_after(TEST_TIMEOUT):
        async with openssl_server(
            pem_files, mode="rev", tls_version=version, verify_client="require"
        ) as server:

            async def talk() -> None:
                async with connect(server, client_context) as stream:
                    await stream.send(b"no certificate\n")
                    await stream.receive()

            with pytest.raises((ssl.SSLError, anyio.BrokenResourceError)) as caught:
                await talk()
        assert re.search(
            "CERTIFICATE_REQUIRED|HANDSHAKE_FAILURE", error_text(caught.value)
        ), error_text(caught.value)


async def full_duplex_while_peer_commands(
    stream: TLSStream,
    *,
    peer_send_line: Callable[[bytes], Awaitable[None]],
    peer_command: Callable[[], Awaitable[None]],
    commands: int,
    describe_peer: Callable[[], str],
) -> int:
    """Stream numbered records both ways while the peer runs *commands* commands.

    One task sends records as fast as the peer takes them, another receives the
    lines the peer sends; each command is followed by a line that the receiving task
    must read, so the receiving side always processes what the command sent.
    Checks the lines and returns how many records we sent (``tokens(0, n)``).
    """
    peer_lines = [b"line %d from the peer\n" % index for index in range(commands + 1)]
    received = bytearray()
    sent = 0
    stop_sending = anyio.Event()

    async def send_records() -> None:
        nonlocal sent
        while not stop_sending.is_set():
            await stream.send(tokens(sent, 50))
            sent += 50
            await anyio.sleep(0.001)

    async def receive_lines() -> None:
        while received.count(b"\n") < len(peer_lines):
            received.extend(await stream.receive())

    async with anyio.create_task_group() as tg:
        tg.start_soon(send_records)
        tg.start_soon(receive_lines)
        for index, line in enumerate(peer_lines):
            await peer_send_line(line)
            await wait_until(
                lambda index=index: received.count(b"\n") > index,  # type: ignore[misc]
                f"line {index} from the peer",
                describe=describe_peer,
            )
            if index < commands:
                await peer_command()
        await wait_until(
            lambda: sent >= 200, "our first 200 records", describe=describe_peer
        )
        stop_sending.set()

    assert bytes(received) == b"".join(peer_lines)
    return sent


def s_server_command(
    server: OpenSSLServer, letter: str
) -> Callable[[], Awaitable[None]]:
    async def command() -> None:
        assert await server.command(letter) == 1

    return command


@pytest.mark.parametrize("link", LINKS)
async def test_client_keeps_full_duplex_through_s_server_key_updates(
    pem_files: PemFiles, client_context: ssl.SSLContext, link: str
) -> None:
    """TLS 1.3 ``K``: s_server updates its keys and asks us to update ours."""
    commands = 4
    with anyio.fail_after(TEST_TIMEOUT):
        async with (
            openssl_server(pem_files, tls_version="1.3") as server,
            connect(
                server,
                client_context,
                congested=link == "congested",
                fast=link == "fast",
            ) as stream,
        ):
            sent = await full_duplex_while_peer_commands(
                stream,
                peer_send_line=server.send_line,
                peer_command=s_server_command(server, "K"),
                commands=commands,
                describe_peer=server.describe,
            )
            await stream.send(b"<end>\n")
            await server.wait_received(b"<end>\n")
            assert token_numbers(server.received()) == list(range(sent))
            await stream.aclose()
            assert await server.wait_exit() == 0
        log = server.messages()
        assert count(SENT_KEY_UPDATE, log) == commands
        # We answer each request, but may fold answers to back-to-back requests.
        assert 1 <= count(GOT_KEY_UPDATE, log) <= commands


@pytest.mark.parametrize("link", LINKS)
@pytest.mark.parametrize("resumption", ["resumed", "full"])
async def test_client_keeps_full_duplex_through_s_server_renegotiations(
    pem_files: PemFiles,
    client_context: ssl.SSLContext,
    resumption: Literal["resumed", "full"],
    link: str,
) -> None:
    """TLS 1.2 ``R``: s_server renegotiates (and asks for a client certificate).

    Python's client accepts server-initiated renegotiation unless the context sets
    ``OP_NO_RENEGOTIATION``.  A resumed renegotiation takes one round trip; a full one
    (``-no_resumption_on_reneg``) makes ``write()`` wait for handshake messages too.
    """
    commands = 3
    extra = ["-no_resumption_on_reneg"] if resumption == "full" else []
    with anyio.fail_after(TEST_TIMEOUT):
        async with (
            openssl_server(pem_files, tls_version="1.2", extra_args=extra) as server,
            connect(
                server,
                client_context,
                congested=link == "congested",
                fast=link == "fast",
            ) as stream,
        ):
            sent = await full_duplex_while_peer_commands(
                stream,
                peer_send_line=server.send_line,
                peer_command=s_server_command(server, "R"),
                commands=commands,
                describe_peer=server.describe,
            )
            await stream.send(b"<end>\n")
            await server.wait_received(b"<end>\n")
            assert token_numbers(server.received()) == list(range(sent))
            assert stream.extra(TLSAttribute.tls_version) == "TLSv1.2"
            await stream.aclose()
            assert await server.wait_exit() == 0
        log = server.messages()
        # A client ignores a HelloRequest that arrives while it is still finishing the
        # previous renegotiation (RFC 5246 7.4.1.1), as can happen on a slow link.
        assert 2 <= count(GOT_CLIENT_HELLO, log) <= 1 + commands
        assert count(SENT_SERVER_HELLO, log) == count(GOT_CLIENT_HELLO, log)


async def test_client_answers_s_server_post_handshake_certificate_request(
    pem_files: PemFiles, client_context: ssl.SSLContext, client_cert: trustme.LeafCert
) -> None:
    """TLS 1.3 ``c``: the answer goes out from inside our ``receive()``."""
    client_cert.configure_cert(client_context)
    client_context.post_handshake_auth = True
    with anyio.fail_after(TEST_TIMEOUT):
        async with (
            openssl_server(pem_files, tls_version="1.3") as server,
            connect(server, client_context) as stream,
        ):
            await stream.send(b"before\n")
            await server.wait_received(b"before\n")
            assert await server.command("c") == 1
            await server.send_line(b"after the request\n")
            assert await receive_until(stream, b"\n") == b"after the request\n"
            await stream.send(b"after the answer\n")
            await server.wait_received(b"after the answer\n")
            await stream.aclose()
            assert await server.wait_exit() == 0
        log = server.messages()
        assert count(
            r">>> TLS 1\.3, Handshake \[length [0-9a-f]+\], CertificateRequest", log
        )
        assert count(
            r"<<< TLS 1\.3, Handshake \[length [0-9a-f]+\], CertificateVerify", log
        )


@pytest.mark.parametrize("num_tickets", [0, 2])
async def test_client_that_only_sends_then_closes_delivers_everything(
    pem_files: PemFiles, client_context: ssl.SSLContext, num_tickets: int
) -> None:
    """TLS 1.3 tickets that we never read must not turn our close into a reset."""
    payload = tokens(0, 20_000)
    with anyio.fail_after(TEST_TIMEOUT):
        async with (
            openssl_server(
                pem_files, tls_version="1.3", num_tickets=num_tickets
            ) as server,
            connect(server, client_context) as stream,
        ):
            await stream.send(payload)
            await stream.aclose()
            await server.wait_received(TOKEN % 19_999)
            assert await server.wait_exit() == 0
        assert token_numbers(server.received()) == list(range(20_000))
        assert count(GOT_CLOSE_NOTIFY, server.messages()) == 1


# -- our server, s_client --------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
async def test_server_talks_to_s_client_until_its_close_notify(
    pem_files: PemFiles, server_context: ssl.SSLContext, version: TLSVersionName
) -> None:
    server_context.set_alpn_protocols(["h2", "http/1.1"])
    with anyio.fail_after(TEST_TIMEOUT):
        async with (
            tcp_listener() as listener,
            openssl_client(
                pem_files, local_port(listener), tls_version=version, alpn=["http/1.1"]
            ) as client,
            accept_tls(listener, server_context) as stream,
        ):
            await client.wait_connected()
            assert stream.extra(TLSAttribute.tls_version) == tls_name(version)
            assert stream.extra(TLSAttribute.alpn_protocol) == "http/1.1"
            assert stream.extra(TLSAttribute.server_side) is True
            assert stream.extra(TLSAttribute.shared_ciphers)

            await stream.send(b"hello from our server\n")
            await client.wait_received(b"hello from our server\n")
            await client.send(b"hello from s_client\n")
            assert await receive_until(stream, b"\n") == b"hello from s_client\n"
            big = tokens(0, 10_000)
            await stream.send(big)
            await client.wait_received(TOKEN % 9_999)
            assert client.received() == b"hello from our server\n" + big

            await client.close_stdin()  # s_client sends close_notify
            with pytest.raises(anyio.EndOfStream):
                await stream.receive()
            await stream.aclose()
            assert await client.wait_exit() == 0
        assert count(SENT_CLOSE_NOTIFY, client.messages()) == 1


@pytest.mark.parametrize("version", VERSIONS)
async def test_server_closes_first_and_s_client_answers(
    pem_files: PemFiles, server_context: ssl.SSLContext, version: TLSVersionName
) -> None:
    with anyio.fail_after(TEST_TIMEOUT):
        async with (
            tcp_listener() as listener,
            openssl_client(
                pem_files, local_port(listener), tls_version=version
            ) as client,
            accept_tls(listener, server_context) as stream,
        ):
            await client.send(b"ping\n")
            assert await receive_until(stream, b"\n") == b"ping\n"
            await stream.send(b"bye\n")
            await stream.aclose()  # returns once s_client's close_notify arrived
            assert await client.wait_exit() == 0
            assert client.received() == b"bye\n"
        log = client.messages()
        assert count(GOT_CLOSE_NOTIFY, log) == 1
        assert count(SENT_CLOSE_NOTIFY, log) == 1


@pytest.mark.parametrize("version", VERSIONS)
async def test_server_requires_and_gets_s_client_certificate(
    pem_files: PemFiles,
    server_context: ssl.SSLContext,
    ca: trustme.CA,
    version: TLSVersionName,
) -> None:
    server_context.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(server_context)
    with anyio.fail_after(TEST_TIMEOUT):
        async with (
            tcp_listener() as listener,
            openssl_client(
                pem_files, local_port(listener), tls_version=version, cert=True
            ) as client,
            accept_tls(listener, server_context) as stream,
        ):
            peer = stream.extra(TLSAttribute.peer_certificate)
            assert peer is not None
            assert ("email", "client@example.org") in peer["subjectAltName"]
            assert stream.extra(TLSAttribute.peer_certificate_binary)
            await client.send(b"authenticated\n")
            assert await receive_until(stream, b"\n") == b"authenticated\n"
            await stream.aclose()
            assert await client.wait_exit() == 0


@pytest.mark.parametrize("link", LINKS)
async def test_server_keeps_full_duplex_through_s_client_key_updates(
    pem_files: PemFiles, server_context: ssl.SSLContext, link: str
) -> None:
    """TLS 1.3 ``K`` from s_client while we send and receive at the same time."""
    commands = 4
    with anyio.fail_after(TEST_TIMEOUT):
        async with (
            tcp_listener(fast=link == "fast") as listener,
            openssl_client(
                pem_files, local_port(listener), tls_version="1.3"
            ) as client,
            accept_tls(
                listener, server_context, congested=link == "congested"
            ) as stream,
        ):
            await client.wait_connected()

            async def key_update() -> None:
                await client.command("K")

            sent = await full_duplex_while_peer_commands(
                stream,
                peer_send_line=client.send,
                peer_command=key_update,
                commands=commands,
                describe_peer=client.describe,
            )
            await client.wait_received(TOKEN % (sent - 1))
            assert token_numbers(client.received()) == list(range(sent))
            await stream.aclose()
            assert await client.wait_exit() == 0
        log = client.messages()
        assert count(SENT_KEY_UPDATE, log) == commands
        assert 1 <= count(GOT_KEY_UPDATE, log) <= commands


async def test_tls_listener_serves_s_client(
    pem_files: PemFiles, server_context: ssl.SSLContext
) -> None:
    handled = anyio.Event()

    async def handler(stream: TLSStream) -> None:
        async with stream:
            line = await receive_until(stream, b"\n")
            await stream.send(line.upper())
        handled.set()

    with anyio.fail_after(TEST_TIMEOUT):
        listeners = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listeners.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:
            tls_listener = TLSListener(listeners, server_context)
            tg.start_soon(tls_listener.serve, handler)
            async with openssl_client(pem_files, port) as client:
                await client.send(b"shout this\n")
                await client.wait_received(b"SHOUT THIS\n")
                assert await client.wait_exit() == 0
            await handled.wait()
            tg.cancel_scope.cancel()
        await tls_listener.aclose()
