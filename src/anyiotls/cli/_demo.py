"""``anyiotls demo``: what anyiotls does, shown step by step on 127.0.0.1.

No files and no network: the CA and certificates are made in memory, and the server
and the client are two sides of real TCP connections on the loopback interface, in
this one process. Each step is a short async function that does what its printout
says; read them as examples of the API.
"""

from __future__ import annotations

__all__ = ("run_demo",)

import argparse
import platform
import ssl
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import TextIO

import anyio
from anyio.abc import SocketListener, SocketStream
from anyio.streams.tls import TLSAttribute

from .. import TLSStream
from ._exit import CLIError, ExitCode
from ._pki import EphemeralCA, load_credentials_into, short_subject
from ._signals import run_interruptibly

#: No step may take longer than this (a step that hangs is a failed step).
STEP_TIMEOUT = 10.0
#: How long the throughput step sends bulk data.
THROUGHPUT_SECONDS = 0.5
#: Size of each ``send()`` in the throughput step.
THROUGHPUT_CHUNK = 65536
#: ALPN: what the client offers, and what the server speaks. ``echo/1`` is this
#: demo's own protocol name (ALPN names are just agreed-upon strings).
ALPN_OFFERED = ("echo/1", "http/1.1")
ALPN_SERVER = ("echo/1",)
CLIENT_NAME = "demo client"

_WIDTH = 64


def _clear_ignore_eof(context: ssl.SSLContext) -> None:
    context.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)


class _Contexts:
    """The demo's PKI: one CA, a server and a client certificate, two contexts."""

    def __init__(self) -> None:
        ca = EphemeralCA("anyiotls demo CA")
        server_credentials = ca.issue("localhost", hosts=("localhost", "127.0.0.1"))
        client_credentials = ca.issue(CLIENT_NAME, client=True)
        ca_pem = ca.cert_pem.decode("ascii")

        self.server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cadata=ca_pem)
        load_credentials_into(self.server, server_credentials)
        self.server.set_alpn_protocols(list(ALPN_SERVER))
        # Post-handshake authentication: the server may ask later (step 4).
        self.server.post_handshake_auth = True
        self.server.verify_mode = ssl.CERT_OPTIONAL
        _clear_ignore_eof(self.server)

        self.client = ssl.create_default_context(cadata=ca_pem)
        self.client.minimum_version = ssl.TLSVersion.TLSv1_3
        load_credentials_into(self.client, client_credentials)
        self.client.set_alpn_protocols(list(ALPN_OFFERED))
        self.client.post_handshake_auth = True
        _clear_ignore_eof(self.client)

        #: the client's view of the server certificate, for the report
        self.server_subject = "CN=localhost"


class _Report:
    """Prints each step as it finishes: number, title, time, then what happened."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.count = 0

    def print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    @contextmanager
    def step(self, title: str) -> Iterator[list[str]]:
        """Time the body, bounded by :data:`STEP_TIMEOUT`; print its lines after it."""
        self.count += 1
        number = self.count
        lines: list[str] = []
        started = time.perf_counter()
        try:
            with anyio.fail_after(STEP_TIMEOUT):
                yield lines
        except Exception as exc:
            self._print_step(number, title, "FAILED", lines)
            raise CLIError(
                ExitCode.ERROR, f"step {number} ({title}) failed: {_explain(exc)}"
            ) from exc
        elapsed = f"{(time.perf_counter() - started) * 1000:7.1f} ms"
        self._print_step(number, title, elapsed, lines)

    def _print_step(
        self, number: int, title: str, status: str, lines: list[str]
    ) -> None:
        head = f"{number:2}. {title}"
        self.print(f"{head:<{_WIDTH}}{status:>10}")
        for line in lines:
            self.print(f"      {line}")
        self.print()


def _explain(exc: BaseException) -> str:
    """One line for what went wrong, looking inside exception groups."""
    while isinstance(getattr(exc, "exceptions", None), tuple):
        exc = exc.exceptions[0]  # type: ignore[attr-defined]
    if isinstance(exc, TimeoutError):
        return f"did not finish within {STEP_TIMEOUT:g} s"
    cause = exc.__cause__
    text = f"{type(exc).__name__}: {exc}".rstrip(": ")
    if cause is not None:
        text += f" (caused by {type(cause).__name__}: {cause})"
    return text


class _Loopback:
    """A TCP listener on 127.0.0.1 that hands out both ends of new connections."""

    def __init__(self, listener: SocketListener) -> None:
        self._listener = listener

    async def pair(self) -> tuple[SocketStream, SocketStream]:
        """Connect to the listener: ``(client end, server end)``."""
        port = self._listener.extra(anyio.abc.SocketAttribute.local_port)
        client = await anyio.connect_tcp("127.0.0.1", port)
        server = await self._listener.accept()
        return client, server


async def _receive_line(
    stream: anyio.abc.AnyByteReceiveStream, buffer: bytearray
) -> bytes:
    """Receive until CRLF; return the line, leave what follows in *buffer*."""
    while b"\r\n" not in buffer:
        buffer += await stream.receive()
    line, _, rest = bytes(buffer).partition(b"\r\n")
    buffer[:] = rest
    return line


async def _wrap_both(
    client_raw: SocketStream, server_raw: SocketStream, contexts: _Contexts
) -> tuple[TLSStream, TLSStream]:
    """The TLS handshake, both sides at once: ``(client stream, server stream)``."""
    streams: dict[str, TLSStream] = {}

    async def server_side() -> None:
        streams["server"] = await TLSStream.wrap(
            server_raw, server_side=True, ssl_context=contexts.server
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(server_side)
        streams["client"] = await TLSStream.wrap(
            client_raw, hostname="localhost", ssl_context=contexts.client
        )
    return streams["client"], streams["server"]


async def _close_both(client: TLSStream, server: TLSStream) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(client.aclose)
        tg.start_soon(server.aclose)


# -- the steps ------------------------------------------------------------------------


async def _step_handshake(
    loopback: _Loopback, contexts: _Contexts, lines: list[str]
) -> tuple[TLSStream, TLSStream]:
    client_raw, server_raw = await loopback.pair()
    client, server = await _wrap_both(client_raw, server_raw, contexts)
    name, _, bits = client.extra(TLSAttribute.cipher)
    alpn = client.extra(TLSAttribute.alpn_protocol)
    peer = short_subject(client.extra(TLSAttribute.peer_certificate_binary))
    lines += [
        'client: await TLSStream.wrap(tcp, hostname="localhost", ssl_context=...)',
        "server: await TLSStream.wrap(tcp, server_side=True, ssl_context=...)",
        f"version   {client.extra(TLSAttribute.tls_version)}",
        f"cipher    {name} ({bits}-bit key)",
        f"ALPN      {alpn}   (the client offered {', '.join(ALPN_OFFERED)})",
        f"server    {peer}, verified by the client against the demo CA",
    ]
    return client, server


async def _step_echo(client: TLSStream, server: TLSStream, lines: list[str]) -> None:
    message = b"Hello over TLS!"

    async def echo_once() -> None:
        data = await server.receive()
        await server.send(data)

    async with anyio.create_task_group() as tg:
        tg.start_soon(echo_once)
        await client.send(message)
        reply = b""
        while len(reply) < len(message):
            reply += await client.receive()
    if reply != message:
        raise RuntimeError(f"the echo came back as {reply!r}")
    lines += [
        f"client: await stream.send({message!r})",
        "server: data = await stream.receive(); await stream.send(data)",
        f"client: await stream.receive() -> {reply!r}",
    ]


async def _step_client_auth(
    client: TLSStream, server: TLSStream, lines: list[str]
) -> None:
    before = server.extra(TLSAttribute.peer_certificate)
    received: dict[str, bytes] = {}

    async def client_side() -> None:
        # A client answers a certificate request only while it is receiving.
        received["greeting"] = await client.receive()

    async with anyio.create_task_group() as tg:
        tg.start_soon(client_side)
        await server.verify_client_post_handshake()
        subject = short_subject(server.extra(TLSAttribute.peer_certificate_binary))
        await server.send(f"welcome, {subject}".encode())
    lines += [
        f"after the handshake the server knew no client certificate: {before!r}",
        "server: await stream.verify_client_post_handshake()",
        "client: answers from inside its pending receive(), with its certificate",
        f"server: got {subject}, verified against the demo CA",
        f"client: await stream.receive() -> {received['greeting']!r}",
    ]
    await _close_both(client, server)
    lines.append("both:   await stream.aclose()   (close_notify sent and received)")


async def _step_upgrade_and_unwrap(
    loopback: _Loopback, contexts: _Contexts, lines: list[str]
) -> None:
    client_raw, server_raw = await loopback.pair()
    client_buffer, server_buffer = bytearray(), bytearray()

    def show(who: str, line: bytes, how: str) -> None:
        lines.append(f"{who}: {line.decode():<38}{how}")

    # Plaintext first, as in SMTP, IMAP or POP3.
    await server_raw.send(b"220 anyiotls demo ready\r\n")
    show("S", await _receive_line(client_raw, client_buffer), "plaintext")
    await client_raw.send(b"STARTTLS\r\n")
    show("C", await _receive_line(server_raw, server_buffer), "plaintext")
    await server_raw.send(b"220 go ahead\r\n")
    show("S", await _receive_line(client_raw, client_buffer), "plaintext")
    if client_buffer or server_buffer:  # nothing may come between go-ahead and TLS
        raise RuntimeError("bytes arrived between the go-ahead and the handshake")

    client, server = await _wrap_both(client_raw, server_raw, contexts)
    version = client.extra(TLSAttribute.tls_version)
    lines.append(f"both: await TLSStream.wrap(the same connection) -> {version}")
    await client.send(b"PING\r\n")
    show("C", await _receive_line(server, server_buffer), "over TLS")
    await server.send(b"PONG\r\n")
    show("S", await _receive_line(client, client_buffer), "over TLS")

    # Back to plaintext. The client ends TLS with close_notify and, without waiting,
    # sends its next command in plaintext: the server's unwrap() receives both at
    # once and hands back the plaintext that came after close_notify.
    pipelined = anyio.Event()
    reply: dict[str, bytes] = {}

    async def client_side() -> None:
        await client.send_eof()
        await client_raw.send(b"QUIT\r\n")
        pipelined.set()
        transport, leftover = await client.unwrap()
        buffer = bytearray(leftover)  # the reply may have come with close_notify
        reply["line"] = await _receive_line(transport, buffer)
        await transport.aclose()

    async with anyio.create_task_group() as tg:
        tg.start_soon(client_side)
        await pipelined.wait()
        transport, leftover = await server.unwrap()
        if leftover != b"QUIT\r\n":
            raise RuntimeError(f"unexpected leftover {leftover!r}")
        await transport.send(b"221 bye\r\n")
    await transport.aclose()
    lines.append('C: await stream.send_eof(), then "QUIT" in plaintext right away')
    lines.append(f"S: await stream.unwrap() -> (tcp, leftover={leftover!r})")
    show("S", b"221 bye", "plaintext")
    lines.append(
        f"C: await stream.unwrap() -> (tcp, leftover); reads {reply['line']!r}"
    )


async def _step_throughput(
    loopback: _Loopback, contexts: _Contexts, lines: list[str]
) -> None:
    client_raw, server_raw = await loopback.pair()
    client, server = await _wrap_both(client_raw, server_raw, contexts)
    chunk = bytes(THROUGHPUT_CHUNK)
    sent = 0
    received = 0
    span = 0.0

    async def server_side() -> None:
        nonlocal received, span
        first: float | None = None
        try:
            while True:
                data = await server.receive(THROUGHPUT_CHUNK)
                if first is None:
                    first = time.perf_counter()
                received += len(data)
        except anyio.EndOfStream:
            span = time.perf_counter() - (first or time.perf_counter())
        await server.aclose()

    async with anyio.create_task_group() as tg:
        tg.start_soon(server_side)
        deadline = anyio.current_time() + THROUGHPUT_SECONDS
        while anyio.current_time() < deadline:
            await client.send(chunk)
            sent += len(chunk)
        await client.aclose()
    if received != sent:
        raise RuntimeError(f"sent {sent} bytes but {received} arrived")
    rate = received / span / 1e6 if span > 0 else float("inf")
    lines += [
        f"client: send() {THROUGHPUT_CHUNK // 1024} KiB at a time for "
        f"{THROUGHPUT_SECONDS:g} s, then aclose()",
        f"server: receive() until EndOfStream: {received / 1e6:.1f} MB, every byte",
        f"{rate:,.0f} MB/s, encrypting and decrypting in this one process",
    ]


# -- the whole demo -------------------------------------------------------------------


async def _demo(out: TextIO, backend: str) -> None:
    report = _Report(out)
    started = time.perf_counter()
    report.print("anyiotls demo: a TLS server and client on 127.0.0.1, in this process")
    report.print(
        f"AnyIO on {backend}, Python {platform.python_version()}, {ssl.OPENSSL_VERSION}"
    )
    report.print("No files, no network. Each step shows the calls that did it.")
    report.print()

    with report.step("Certificates, made in memory") as lines:
        contexts = _Contexts()  # ~10 ms of key generation; nothing else runs yet
        lines += [
            "an ephemeral CA issued two ECDSA P-256 certificates:",
            "server: CN=localhost (DNS:localhost, IP:127.0.0.1)",
            f"client: CN={CLIENT_NAME}",
        ]

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener:
        loopback = _Loopback(listener.listeners[0])  # type: ignore[arg-type]
        with report.step("TLS 1.3 handshake with ALPN") as lines:
            client, server = await _step_handshake(loopback, contexts, lines)
        with report.step("Echo") as lines:
            await _step_echo(client, server, lines)
        with report.step("Post-handshake client authentication") as lines:
            await _step_client_auth(client, server, lines)
        with report.step("Upgrade plaintext to TLS, unwrap() back") as lines:
            await _step_upgrade_and_unwrap(loopback, contexts, lines)
        with report.step("Throughput, half a second of bulk data") as lines:
            await _step_throughput(loopback, contexts, lines)

    elapsed = time.perf_counter() - started
    report.print(f"All {report.count} steps passed in {elapsed:.2f} s. Next:")
    report.print("  anyiotls serve             a TLS test server (Ctrl-C stops it)")
    report.print(
        "  anyiotls connect HOST:PORT describe any TLS server, then talk to it"
    )


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo on the chosen backend; 0 when every step passed."""
    demo = partial(_demo, sys.stdout, args.backend)
    anyio.run(run_interruptibly, demo, backend=args.backend)
    return ExitCode.OK
