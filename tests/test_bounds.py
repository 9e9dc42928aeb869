"""Bounded memory and bounded close (issue 15), against real peers over loopback TCP.

* A TLS 1.3 client (Python's ``ssl`` in a thread) that uploads a lot while a
  post-handshake certificate request is pending and answers only once it reads:
  the server keeps at most ``max_read_ahead`` of it, delivers every byte once the
  application reads, and processes the certificate when the answer comes. With
  ``verify_client_post_handshake()``, ``unwrap()`` and ``send_eof()`` pending the
  request; the application receiving in the same task and in another one.
* A TLS 1.2 server (pyOpenSSL) that sends a HelloRequest and then floods without
  reading: our client's send fails fast, its memory bounded.
* ``aclose()``/``unwrap()`` against peers that never answer close_notify, never
  read, or flood: bounded by ``close_timeout``; a late answer within it still gets a
  full closing handshake.

Memory is the process's resident set (``/proc/self/statm``), sampled while the
operation runs; the floods are sized so that buffering them would exceed the
asserted growth twice over. No test asserts a wall-clock time.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
import trio
import trio.lowlevel
import trustme
from anyio.abc import SocketAttribute

from anyiotls import CloseTimeoutError, ReadAheadLimitError, TLSStream
from anyiotls._driver import DEFAULT_CLOSE_TIMEOUT, DEFAULT_MAX_READ_AHEAD
from anyiotls.trio import AnyIOStreamAsTrio, HalfCloseableSSLStream

from .peers import in_ci

anyio_test = pytest.mark.anyio

#: Upper bound for one whole test: nothing here may hang.
TEST_TIMEOUT = 60
#: What the flooding peers send: buffering it would grow RSS by this much.
FLOOD = 64 * 1024 * 1024
#: Asserted RSS growth while a peer floods (the bound is 1 MiB of plaintext plus
#: one transport read of ciphertext; the rest is the allocator's and the runtime's).
MAX_GROWTH = 32 * 1024 * 1024
CHUNK = 65536
#: A close_timeout short enough for a test, long enough for any loopback answer.
SHORT = 0.3

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE


def chunk(index: int) -> bytes:
    """The *index*-th 64 KiB of a flood: distinct, so reordering would show."""
    return hashlib.sha256(index.to_bytes(8, "big")).digest() * (CHUNK // 32)


class Peak:
    """The highest RSS seen, and the longest backlog of *stream*, over the samples."""

    def __init__(self, stream: Any) -> None:
        self.start = rss()
        self.high = self.start
        self.stream = stream
        self.backlog = 0

    @property
    def growth(self) -> int:
        return self.high - self.start

    def sample(self) -> None:
        self.high = max(self.high, rss())
        self.backlog = max(self.backlog, len(self.stream._driver._backlog))

    def check(self, anyio_backend: Any) -> None:
        """Assert both bounds. Under uvloop the RSS of a phase in which we read the
        transport is not asserted: AnyIO's transport there may read ahead of its
        receive() on its own (megabytes, seen up to ~40 MB), which is the
        transport's buffer, not ours; the backlog still is."""
        assert self.backlog <= DEFAULT_MAX_READ_AHEAD
        if anyio_backend != ("asyncio", {"use_uvloop": True}):
            assert self.growth < MAX_GROWTH

    async def run(self) -> None:
        while True:
            self.sample()
            await anyio.sleep(0.005)


# -- the faces ---------------------------------------------------------------------


@dataclass
class Face:
    """One vocabulary for the AnyIO face and the Trio face."""

    name: str

    @property
    def broken(self) -> type[Exception]:
        return (
            anyio.BrokenResourceError
            if self.name == "anyio"
            else trio.BrokenResourceError
        )

    @property
    def closed(self) -> type[Exception]:
        return (
            anyio.ClosedResourceError
            if self.name == "anyio"
            else trio.ClosedResourceError
        )

    async def wrap(
        self,
        transport: anyio.abc.ByteStream,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        **kwargs: Any,
    ) -> Any:
        if self.name == "anyio":
            return await TLSStream.wrap(
                transport,
                server_side=server_side,
                hostname=None if server_side else "localhost",
                ssl_context=context,
                **kwargs,
            )
        stream = HalfCloseableSSLStream(
            AnyIOStreamAsTrio(transport),
            context,
            server_side=server_side,
            server_hostname=None if server_side else "localhost",
            **kwargs,
        )
        await stream.do_handshake()
        return stream

    async def receive(self, stream: Any) -> bytes:
        if self.name == "anyio":
            try:
                return await stream.receive()
            except anyio.EndOfStream:
                return b""
        return await stream.receive_some()

    async def send(self, stream: Any, data: bytes) -> None:
        if self.name == "anyio":
            await stream.send(data)
        else:
            await stream.send_all(data)

    def peer_certificate(self, stream: Any) -> bytes | None:
        if self.name == "anyio":
            return stream.extra(anyio.streams.tls.TLSAttribute.peer_certificate_binary)
        return stream.getpeercert(True)


def _face_backend_pairs() -> list[Any]:
    """The AnyIO face on every backend of ``tests/conftest.py``, the Trio face on
    Trio: the combinations that cannot run are not generated (nothing skips)."""
    pairs = [
        pytest.param("anyio", ("asyncio", {}), id="anyio-face-asyncio"),
        pytest.param("anyio", "trio", id="anyio-face-trio"),
        pytest.param("trio", "trio", id="trio-face"),
    ]
    if importlib.util.find_spec("uvloop") is not None or in_ci():
        # (in CI a missing uvloop is a broken install: the test fails on it)
        pairs.insert(
            1,
            pytest.param(
                "anyio", ("asyncio", {"use_uvloop": True}), id="anyio-face-uvloop"
            ),
        )
    return pairs


both_faces = pytest.mark.parametrize(
    ("face_name", "anyio_backend"), _face_backend_pairs()
)


# -- peers -------------------------------------------------------------------------


@asynccontextmanager
async def served(
    peer: Callable[[int], Any],
) -> AsyncIterator[tuple[anyio.abc.SocketStream, list[Any]]]:
    """Run *peer(port)* in a thread that connects to us; yield our accepted end
    and a list that receives the peer's result (or exception)."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(peer(port))
        except BaseException as exc:  # reported to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    async with listener:
        inner = listener.listeners[0]
        accepted = await inner.accept()  # type: ignore[attr-defined]
    try:
        yield accepted, outcome
    finally:
        await anyio.aclose_forcefully(accepted)
        await anyio.to_thread.run_sync(thread.join, 30)
        assert not thread.is_alive()


def tls_client(
    context: ssl.SSLContext, port: int
) -> ssl.SSLSocket:  # blocking, handshaken
    raw = socket.create_connection(("127.0.0.1", port), timeout=TEST_TIMEOUT)
    return context.wrap_socket(raw, server_hostname="localhost")


def read_to_end(sock: ssl.SSLSocket) -> bytes:
    """Read until the peer's close_notify (or the connection's end)."""
    got = bytearray()
    with suppress(OSError):
        while data := sock.recv(CHUNK):
            got += data
    return bytes(got)


def uploading_pha_client(
    context: ssl.SSLContext, total: int
) -> Callable[[int], tuple[str, bytes]]:
    """A client that sends *total* bytes without reading, then reads (which
    answers a pending certificate request) to the end and closes cleanly."""

    def peer(port: int) -> tuple[str, bytes]:
        with tls_client(context, port) as sock:
            digest = hashlib.sha256()
            for index in range(total // CHUNK):
                data = chunk(index)
                sock.sendall(data)
                digest.update(data)
            got = read_to_end(sock)
            with suppress(OSError):
                sock.unwrap()
            return digest.hexdigest(), got

    return peer


@pytest.fixture
def pha_contexts(
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
    ca: trustme.CA,
    client_cert: trustme.LeafCert,
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca.configure_trust(server_context)
    server_context.post_handshake_auth = True
    server_context.verify_mode = ssl.CERT_REQUIRED
    client_context.post_handshake_auth = True
    client_cert.configure_cert(client_context)
    return server_context, client_context


def der(cert: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())


async def receive_exactly(face: Face, stream: Any, total: int, peak: Peak) -> str:
    digest = hashlib.sha256()
    received = 0
    while received < total:
        data = await face.receive(stream)
        assert data, "the stream ended early"
        digest.update(data)
        received += len(data)
        peak.sample()
    assert received == total
    return digest.hexdigest()


# -- 1. post-handshake authentication against an uploading client ---------------------


@anyio_test
@pytest.mark.slow
@both_faces
async def test_pha_wait_in_the_receiving_task_stops_at_the_bound(
    face_name: str,
    anyio_backend: Any,
    pha_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
    client_cert: trustme.LeafCert,
) -> None:
    face = Face(face_name)
    server_context, client_context = pha_contexts
    with anyio.fail_after(TEST_TIMEOUT):
        async with served(uploading_pha_client(client_context, FLOOD)) as (
            transport,
            outcome,
        ):
            stream = await face.wrap(transport, server_context, server_side=True)
            peak = Peak(stream)
            # The client answers only once it reads, after its whole upload; the
            # application receives in this very task, so nobody would make room.
            with pytest.raises(ReadAheadLimitError):
                await stream.verify_client_post_handshake()
            peak.sample()
            assert stream.client_certificate_pending
            # Here the upload would be in our memory, were it not bounded.
            assert peak.growth < MAX_GROWTH
            received = await receive_exactly(face, stream, FLOOD, peak)
            # The upload is done: the client reads, so it answers now.
            await stream.verify_client_post_handshake()
            assert face.peer_certificate(stream) == der(client_cert)
            assert not stream.client_certificate_pending
            await face.send(stream, b"done")
            await stream.aclose()
    peak.check(anyio_backend)
    sent, got = outcome[0]
    assert received == sent
    assert got == b"done"


@anyio_test
@pytest.mark.slow
@both_faces
async def test_pha_wait_beside_a_slow_receiving_task_waits_for_room(
    face_name: str,
    anyio_backend: Any,
    pha_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
    client_cert: trustme.LeafCert,
) -> None:
    face = Face(face_name)
    server_context, client_context = pha_contexts
    result: dict[str, Any] = {}
    with anyio.fail_after(TEST_TIMEOUT):
        async with served(uploading_pha_client(client_context, FLOOD)) as (
            transport,
            outcome,
        ):
            stream = await face.wrap(transport, server_context, server_side=True)
            peak = Peak(stream)

            async def receiver() -> None:
                digest = hashlib.sha256()
                received = 0
                while received < FLOOD:
                    data = await face.receive(stream)
                    assert data
                    digest.update(data)
                    received += len(data)
                    peak.sample()
                    if received % (16 * CHUNK) < len(data):
                        await anyio.sleep(0.001)  # slower than the client
                result["received"] = digest.hexdigest()

            async def verifier() -> None:
                result["cert"] = await stream.verify_client_post_handshake()

            async with anyio.create_task_group() as tg:
                tg.start_soon(receiver)
                tg.start_soon(verifier)
            assert face.peer_certificate(stream) == der(client_cert)
            assert result["cert"] is not None
            await face.send(stream, b"done")
            await stream.aclose()
    peak.check(anyio_backend)
    sent, got = outcome[0]
    assert result["received"] == sent
    assert got == b"done"


@anyio_test
@pytest.mark.slow
@both_faces
async def test_unwrap_pending_a_request_discards_the_upload_within_the_bound(
    face_name: str,
    anyio_backend: Any,
    pha_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
    client_cert: trustme.LeafCert,
) -> None:
    face = Face(face_name)
    server_context, client_context = pha_contexts
    with anyio.fail_after(TEST_TIMEOUT):
        async with served(uploading_pha_client(client_context, FLOOD)) as (
            transport,
            outcome,
        ):
            # None: wait for the answer as long as the upload takes.
            stream = await face.wrap(
                transport, server_context, server_side=True, close_timeout=None
            )
            await stream.request_client_certificate()
            peak = Peak(stream)
            async with anyio.create_task_group() as tg:
                tg.start_soon(peak.run)
                _, leftover = await stream.unwrap()
                tg.cancel_scope.cancel()
            # The answer was processed before our close_notify left.
            assert face.peer_certificate(stream) == der(client_cert)
            assert leftover == b""
    peak.check(anyio_backend)
    _, got = outcome[0]
    assert got == b""  # not received: discarded, as unwrap() documents


@anyio_test
@pytest.mark.slow
@both_faces
async def test_send_eof_pending_a_request_stops_at_the_bound(
    face_name: str,
    anyio_backend: Any,
    pha_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
    client_cert: trustme.LeafCert,
) -> None:
    face = Face(face_name)
    server_context, client_context = pha_contexts
    with anyio.fail_after(TEST_TIMEOUT):
        async with served(uploading_pha_client(client_context, FLOOD)) as (
            transport,
            outcome,
        ):
            stream = await face.wrap(transport, server_context, server_side=True)
            await face.send(stream, b"response")
            await stream.request_client_certificate()
            peak = Peak(stream)
            with pytest.raises(ReadAheadLimitError):
                await stream.send_eof()
            peak.sample()
            assert stream.client_certificate_pending
            assert peak.growth < MAX_GROWTH
            # Nothing was sent: the stream still sends.
            await face.send(stream, b" and more")
            received = await receive_exactly(face, stream, FLOOD, peak)
            await stream.send_eof()  # the client reads now, so it answers
            assert face.peer_certificate(stream) == der(client_cert)
            assert await face.receive(stream) == b""  # the client's close_notify
            await stream.aclose()
    peak.check(anyio_backend)
    sent, got = outcome[0]
    assert received == sent
    assert got == b"response and more"


# -- 2. a renegotiating TLS 1.2 server that floods ------------------------------------


def _pyopenssl_tls12_context(tmp_path: Path, cert: trustme.LeafCert) -> Any:
    from OpenSSL import SSL

    pem = tmp_path / "server.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_max_proto_version(SSL.TLS1_2_VERSION)
    context.use_certificate_chain_file(str(pem))
    context.use_privatekey_file(str(pem))
    return context


def renegotiating_flooder(context: Any, ready: threading.Event) -> Callable[[int], int]:
    """A pyOpenSSL TLS 1.2 server on a blocking socket (it connects to us: the test
    listens): handshake, ``hello`` + HelloRequest, then application data until
    the connection breaks, never reading again. Returns the bytes it got out."""
    from OpenSSL import SSL

    def peer(port: int) -> int:
        raw = socket.create_connection(("127.0.0.1", port))
        raw.settimeout(None)  # pyOpenSSL needs a blocking socket (ends: we close)
        conn = SSL.Connection(context, raw)
        conn.set_accept_state()
        conn.do_handshake()
        conn.send(b"hello")
        assert conn.renegotiate()
        with suppress(SSL.WantReadError):
            conn.do_handshake()  # writes the HelloRequest
        ready.set()
        sent = 0
        try:
            index = 0
            while sent < FLOOD:
                sent += conn.send(chunk(index))
                index += 1
        except (SSL.Error, OSError):
            pass
        finally:
            raw.close()
        return sent

    return peer


@anyio_test
@pytest.mark.slow
@both_faces
async def test_tls12_send_during_a_flooded_renegotiation_fails_fast(
    face_name: str,
    anyio_backend: Any,
    client_context_tls12: ssl.SSLContext,
    server_cert: trustme.LeafCert,
    tmp_path: Path,
) -> None:
    face = Face(face_name)
    ready = threading.Event()
    peer = renegotiating_flooder(_pyopenssl_tls12_context(tmp_path, server_cert), ready)
    with anyio.fail_after(TEST_TIMEOUT):
        # (our end is the TCP server, the TLS client)
        async with served(peer) as (transport, outcome):
            stream = await face.wrap(
                transport, client_context_tls12, server_side=False, close_timeout=SHORT
            )
            await anyio.to_thread.run_sync(ready.wait, TEST_TIMEOUT)
            peak = Peak(stream)
            # This receive reads "hello" and the HelloRequest: our ClientHello leaves.
            assert (await face.receive(stream)).startswith(b"hello")
            # The send must finish the renegotiation, but the server floods instead
            # of answering, and nobody receives: fail fast, bounded.

            async def send_much() -> None:
                for _ in range(FLOOD // CHUNK):
                    await face.send(stream, b"x" * CHUNK)
                    peak.sample()

            with pytest.raises(face.broken) as caught:
                await send_much()
            peak.sample()
            assert isinstance(caught.value.__cause__, ReadAheadLimitError)
            await stream.aclose()
    peak.check(anyio_backend)
    assert isinstance(outcome[0], int)


# -- 3. closing against peers that do not answer --------------------------------------


def silent_client(
    context: ssl.SSLContext, release: threading.Event
) -> Callable[[int], bytes]:
    """Handshakes, then neither reads nor sends until *release*; then reads to the
    end (what it gets tells whether our close_notify was sent)."""

    def peer(port: int) -> bytes:
        with tls_client(context, port) as sock:
            release.wait(TEST_TIMEOUT)
            return read_to_end(sock)

    return peer


def late_client(context: ssl.SSLContext, delay: float) -> Callable[[int], str]:
    """Answers our close_notify, but only after *delay* seconds."""

    def peer(port: int) -> str:
        with tls_client(context, port) as sock:
            threading.Event().wait(delay)
            assert read_to_end(sock) == b""  # our close_notify, nothing else
            sock.unwrap()  # its own close_notify
            return "answered"

    return peer


def flooding_client(context: ssl.SSLContext) -> Callable[[int], int]:
    """Sends without end and never a close_notify, until the connection breaks."""

    def peer(port: int) -> int:
        sent = 0
        with tls_client(context, port) as sock, suppress(OSError):
            while sent < 16 * FLOOD:
                sock.sendall(chunk(sent // CHUNK))
                sent += CHUNK
        return sent

    return peer


@anyio_test
@both_faces
async def test_aclose_gives_up_on_a_silent_peer_after_close_timeout(
    face_name: str, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    face = Face(face_name)
    release = threading.Event()
    with anyio.fail_after(TEST_TIMEOUT):
        async with served(silent_client(client_context, release)) as (
            transport,
            outcome,
        ):
            stream = await face.wrap(
                transport, server_context, server_side=True, close_timeout=SHORT
            )
            await face.send(stream, b"bye")
            await stream.aclose()  # returns: the peer never answers
            release.set()
            with pytest.raises(face.closed):
                await face.send(stream, b"more")
    # Our close_notify was sent (the peer reads it as the end), the transport closed.
    assert outcome == [b"bye"]


@anyio_test
@both_faces
async def test_unwrap_raises_close_timeout_error_on_a_silent_peer(
    face_name: str, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    face = Face(face_name)
    release = threading.Event()
    with anyio.fail_after(TEST_TIMEOUT):
        async with served(silent_client(client_context, release)) as (
            transport,
            outcome,
        ):
            stream = await face.wrap(
                transport, server_context, server_side=True, close_timeout=SHORT
            )
            with pytest.raises(CloseTimeoutError):
                await stream.unwrap()
            with pytest.raises(face.broken) as caught:
                await face.send(stream, b"more")
            assert isinstance(caught.value.__cause__, CloseTimeoutError)
            await stream.aclose()
            release.set()
    assert outcome == [b""]  # our close_notify had been sent


@anyio_test
@pytest.mark.slow
@both_faces
async def test_unwrap_bounded_while_the_peer_floods_without_close_notify(
    face_name: str,
    anyio_backend: Any,
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    face = Face(face_name)
    with anyio.fail_after(TEST_TIMEOUT):
        async with served(flooding_client(client_context)) as (transport, outcome):
            stream = await face.wrap(
                transport, server_context, server_side=True, close_timeout=1.0
            )
            peak = Peak(stream)
            async with anyio.create_task_group() as tg:
                tg.start_soon(peak.run)
                with pytest.raises(CloseTimeoutError):
                    await stream.unwrap()
                tg.cancel_scope.cancel()
            await stream.aclose()
    peak.check(anyio_backend)
    assert isinstance(outcome[0], int)


@anyio_test
@both_faces
async def test_a_late_answer_within_close_timeout_completes_the_close(
    face_name: str, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    face = Face(face_name)
    with anyio.fail_after(TEST_TIMEOUT):
        async with served(late_client(client_context, SHORT)) as (transport, outcome):
            stream = await face.wrap(
                transport, server_context, server_side=True, close_timeout=30
            )
            _, leftover = await stream.unwrap()  # needs the peer's close_notify
            assert leftover == b""
    assert outcome == ["answered"]


@anyio_test
@both_faces
async def test_aclose_beside_a_send_the_peer_never_reads(
    face_name: str, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    face = Face(face_name)
    release = threading.Event()
    errors: list[BaseException] = []
    with anyio.fail_after(TEST_TIMEOUT):
        async with served(silent_client(client_context, release)) as (
            transport,
            outcome,
        ):
            stream = await face.wrap(
                transport, server_context, server_side=True, close_timeout=SHORT
            )

            async def sender() -> None:
                try:
                    for index in range(FLOOD // CHUNK):  # blocks: nobody reads
                        await face.send(stream, chunk(index))
                except Exception as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(sender)
                await anyio.sleep(0.05)  # let the sender fill the kernel buffers
                await stream.aclose()  # the send lock is never free: gives up
                if _CLOSE_DOES_NOT_WAKE_A_SEND and face_name.startswith("anyio"):
                    # AnyIO 4.0's asyncio socket stream, closed forcefully, never
                    # wakes a blocked send (its abort() is skipped under the
                    # cancelled scope): aclose() returned; the send ends with its
                    # own scope (docs/closing.md)
                    await anyio.sleep(0.2)
                    if not errors:
                        tg.cancel_scope.cancel()
            release.set()
    if errors or not _CLOSE_DOES_NOT_WAKE_A_SEND:
        # The sender was stopped by our close, as a send interrupted by it is.
        assert len(errors) == 1
        assert isinstance(errors[0], face.closed)
    assert isinstance(outcome[0], bytes)


#: AnyIO 4.0 (the lowest we test) on asyncio: see
#: test_aclose_beside_a_send_the_peer_never_reads
_CLOSE_DOES_NOT_WAKE_A_SEND = tuple(
    int(part) for part in importlib.metadata.version("anyio").split(".")[:2]
) == (4, 0)


# -- the defaults and bad values -------------------------------------------------------


def test_defaults_are_bounded() -> None:
    assert DEFAULT_MAX_READ_AHEAD == 1024 * 1024
    assert DEFAULT_CLOSE_TIMEOUT == 5.0


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_read_ahead": 0}, ValueError),
        ({"max_read_ahead": 1.5}, TypeError),
        ({"max_read_ahead": True}, TypeError),
        ({"close_timeout": -1}, ValueError),
        ({"close_timeout": float("nan")}, ValueError),
        ({"close_timeout": "5"}, TypeError),
    ],
)
def test_bad_limits_are_refused(
    kwargs: dict[str, Any], error: type[Exception], server_context: ssl.SSLContext
) -> None:
    from anyiotls import TLSConnectable, TLSListener
    from anyiotls.trio import SSLListener, SSLStream

    with pytest.raises(error):
        TLSStream(None, ssl_context=server_context, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(error):
        SSLStream(None, server_context, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(error):
        TLSListener(None, server_context, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(error):
        TLSConnectable(None, **kwargs)
    with pytest.raises(error):
        SSLListener(None, server_context, **kwargs)  # type: ignore[arg-type]


@anyio_test
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_tls12_renegotiating_writer_waits_for_a_receiving_task(
    anyio_backend: Any,
    client_context_tls12: ssl.SSLContext,
    server_cert: trustme.LeafCert,
    tmp_path: Path,
) -> None:
    # Full duplex through renegotiations with a tiny bound: the writer stops at
    # it and waits for the receiving task instead of failing. (pyOpenSSL echoes,
    # renegotiating every 100 kB.)
    from trio.testing import memory_stream_pair

    from anyiotls.trio import SSLStream

    from .test_trio_face import (
        _renegotiating_echo_server,
        _renegotiating_server_context,
    )

    client_transport, server_transport = memory_stream_pair()
    client = SSLStream(
        client_transport,
        client_context_tls12,
        server_hostname="localhost",
        max_read_ahead=16384,
    )
    context = _renegotiating_server_context(tmp_path, server_cert)
    stats = {"started": 0}
    payload = bytes(range(251)) * (1_000_000 // 251)
    received = bytearray()
    backlog = 0

    async def sender() -> None:
        for start in range(0, len(payload), 10000):
            await client.send_all(payload[start : start + 10000])

    async def receiver() -> None:
        nonlocal backlog
        while len(received) < len(payload):
            backlog = max(backlog, len(client._driver._backlog))
            received.extend(await client.receive_some(4096))
            await trio.lowlevel.checkpoint()

    with trio.fail_after(TEST_TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                _renegotiating_echo_server, server_transport, context, 100_000, stats
            )
            async with trio.open_nursery() as inner:
                inner.start_soon(sender)
                inner.start_soon(receiver)
            await client.aclose()
    assert received == payload
    assert stats["started"] >= 5
    assert stats["completed"] == stats["started"]
    assert backlog <= 16384


@anyio_test
@both_faces
async def test_pha_wait_cancelled_while_waiting_for_room_loses_nothing(
    face_name: str,
    anyio_backend: Any,
    pha_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
    client_cert: trustme.LeafCert,
) -> None:
    # The cancellation table's "waiting for room" row: nothing happened, the
    # request stays pending, what was decrypted is still received, in order.
    face = Face(face_name)
    server_context, client_context = pha_contexts
    total = 4 * 1024 * 1024
    bound = 4 * CHUNK
    with anyio.fail_after(TEST_TIMEOUT):
        async with served(uploading_pha_client(client_context, total)) as (
            transport,
            outcome,
        ):
            stream = await face.wrap(
                transport, server_context, server_side=True, max_read_ahead=bound
            )
            digest = hashlib.sha256()
            received = 0
            go_on = anyio.Event()
            peak = Peak(stream)

            async def receiver() -> None:
                nonlocal received
                while received < total:
                    data = await face.receive(stream)
                    assert data
                    digest.update(data)
                    received += len(data)
                    peak.sample()
                    if stream._driver._backlog_reader is not None:
                        # It has taken from the backlog: now a slow task.
                        await go_on.wait()

            async with anyio.create_task_group() as tg:
                tg.start_soon(receiver)
                with anyio.CancelScope() as scope:

                    async def cancel_at_the_bound() -> None:
                        # (polling: the driver signals nothing at the bound)
                        while len(stream._driver._backlog) < bound:  # noqa: ASYNC110
                            await anyio.sleep(0.001)
                        await anyio.wait_all_tasks_blocked()
                        scope.cancel()

                    tg.start_soon(cancel_at_the_bound)
                    await stream.verify_client_post_handshake()
                assert scope.cancelled_caught
                assert stream.client_certificate_pending
                go_on.set()
            assert received == total
            await stream.verify_client_post_handshake()  # the client reads now
            assert face.peer_certificate(stream) == der(client_cert)
            await face.send(stream, b"done")
            await stream.aclose()
    peak.check(anyio_backend)
    assert peak.backlog <= bound
    sent, got = outcome[0]
    assert digest.hexdigest() == sent
    assert got == b"done"
