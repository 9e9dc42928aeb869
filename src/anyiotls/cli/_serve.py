"""``anyiotls serve``: a small TLS server for testing clients.

For each connection it prints one line with the negotiated parameters (and the
client certificate, if any), then echoes (``--echo``) or answers one HTTP request
with a page describing the connection (``--http``). Without ``--cert`` it makes an
ephemeral CA, writes the CA certificate (and a client certificate for testing client
authentication) to a temporary directory, and deletes them when it stops.
Ctrl-C and SIGTERM stop it cleanly (exit status 0). SIGHUP reloads ``--cert`` and
``--key`` into a new context for the connections accepted afterwards; if the files
are bad, it says why and keeps the old certificate.
"""

from __future__ import annotations

__all__ = ("build_context", "run_serve", "write_certificates")

import argparse
import ipaddress
import itertools
import os
import shutil
import signal
import ssl
import tempfile
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketStream, TaskStatus
from anyio.streams.tls import TLSAttribute

from .. import PostHandshakeAuthError, TLSStream
from ._args import parse_alpn
from ._exit import CLIError, ExitCode, leaves
from ._pki import (
    EphemeralCA,
    load_ca_file,
    load_chain_into,
    load_credentials_into,
    short_subject,
)
from ._signals import watch_signals
from ._text import printable

#: Seconds a client may take to complete the handshake.
HANDSHAKE_TIMEOUT = 10.0
#: Seconds closing a connection may wait for the client's close_notify.
CLOSE_TIMEOUT = 2.0
#: Seconds ``--http`` waits for a post-handshake certificate before answering.
CLIENT_AUTH_TIMEOUT = 5.0
#: Largest HTTP request head ``--http`` reads.
MAX_REQUEST_HEAD = 65536


def _say(text: str) -> None:
    print(printable(text), flush=True)


def _format_address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)


class _Ephemeral:
    """An ephemeral CA, its server certificate, and the files clients need.

    Written to a new temporary directory (removed by :meth:`remove`), or to
    *directory* (``--certs-dir``), where they stay for the user's own programs.
    """

    def __init__(self, host: str, directory: Path | None = None) -> None:
        names = ["localhost", "127.0.0.1", "::1"]
        if host not in names and not _is_wildcard(host):
            names.append(host)
        self.names = names
        self.ca = EphemeralCA("anyiotls serve ephemeral CA")
        self.server = self.ca.issue(names[0], hosts=tuple(names))
        client = self.ca.issue("anyiotls test client", client=True)
        self.kept = directory is not None
        if directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="anyiotls-serve-"))
        else:
            self.directory = directory
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CLIError(
                    ExitCode.BAD_FILE,
                    f"cannot create --certs-dir {directory}: {exc.strerror or exc}",
                ) from None
        self.ca_file = self.directory / "ca.pem"
        self.client_file = self.directory / "client.pem"
        self.server_file = self.directory / "server.pem"
        try:
            self.ca_file.write_bytes(self.ca.cert_pem)
            _write_private(self.client_file, client.key_pem + client.cert_pem)
            _write_private(self.server_file, self.server.key_pem + self.server.cert_pem)
        except OSError as exc:
            raise CLIError(
                ExitCode.BAD_FILE,
                f"cannot write certificates to {self.directory}: {exc.strerror or exc}",
            ) from None

    def remove(self) -> None:
        if not self.kept:
            shutil.rmtree(self.directory, ignore_errors=True)

    def describe(self) -> None:
        if self.kept:
            _say(f"certificates (kept in {self.directory}):")
        else:
            _say("ephemeral certificates (deleted when the server stops):")
        _say(f"  CA certificate   {self.ca_file}  (clients: --cafile this)")
        _say(f"  client cert+key  {self.client_file}")
        if self.kept:
            _say(f"  server cert+key  {self.server_file}  (for your own server)")
        _say(f"  server names     {', '.join(self.names)}")


def _write_private(path: Path, data: bytes) -> None:
    """Write a file holding a private key, readable by its owner only."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def write_certificates(directory: Path, host: str = "127.0.0.1") -> Path:
    """Write what ``serve --certs-dir DIRECTORY`` writes; the CA certificate's path.

    ``ca.pem`` (the CA to trust), ``server.pem`` and ``client.pem`` (certificate
    and key, PEM) for the names ``localhost``, ``127.0.0.1``, ``::1`` (and *host*).
    """
    return _Ephemeral(host, directory).ca_file


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def build_context(
    args: argparse.Namespace, ephemeral: _Ephemeral | None
) -> ssl.SSLContext:
    """The server context the options describe (files are checked here)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    if ephemeral is not None:
        load_credentials_into(context, ephemeral.server)
    else:
        load_chain_into(context, args.cert, args.key, option="--cert")
    if args.request_client_cert:
        if ephemeral is not None:
            context.load_verify_locations(cadata=ephemeral.ca.cert_pem.decode("ascii"))
        if args.cafile:
            load_ca_file(context, args.cafile)
        context.verify_mode = ssl.CERT_OPTIONAL
        if args.request_client_cert == "post-handshake":
            context.post_handshake_auth = True
    alpn = parse_alpn(args.alpn) if args.alpn else None
    if alpn is None and args.mode == "http":
        alpn = ["http/1.1"]
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


class _Server:
    """Accepts connections; one task per connection, one line per event."""

    def __init__(self, args: argparse.Namespace, context: ssl.SSLContext) -> None:
        self.args = args
        self._numbers = itertools.count(1)
        self._server_names: dict[int, str] = {}
        self.use(context)

    def use(self, context: ssl.SSLContext) -> None:
        """Serve later connections with *context* (ours: it was built here)."""
        context.sni_callback = self._remember_server_name
        self.context = context

    def reload(self) -> None:
        """SIGHUP: ``--cert``/``--key`` into a new context, or keep the old one."""
        if not self.args.cert:
            _say("SIGHUP: nothing to reload (ephemeral certificates, no --cert)")
            return
        try:
            context = build_context(self.args, None)
        except CLIError as exc:
            _say(f"SIGHUP: reload failed, keeping the old certificate: {exc.message}")
            return
        except (OSError, ssl.SSLError, ValueError) as exc:
            _say(f"SIGHUP: reload failed, keeping the old certificate: {exc}")
            return
        self.use(context)
        _say(f"SIGHUP: reloaded {self.args.cert} (for new connections)")

    def _remember_server_name(
        self, ssl_object: Any, server_name: str | None, _context: ssl.SSLContext
    ) -> None:
        if server_name:
            self._server_names[id(ssl_object)] = server_name

    async def handle(self, raw: SocketStream) -> None:
        """Serve one connection; never raises for what a client does."""
        client = _format_address(raw.extra(SocketAttribute.remote_address))
        tag = f"[{next(self._numbers)}] {client}"
        counting = _CountingStream(raw)
        stream = TLSStream(counting, server_side=True, ssl_context=self.context)
        ssl_object = stream.extra(TLSAttribute.ssl_object)
        try:
            with anyio.fail_after(HANDSHAKE_TIMEOUT):
                await stream.do_handshake()
        except TimeoutError:
            _say(f"{tag} handshake did not finish within {HANDSHAKE_TIMEOUT:g} s")
            return
        except Exception as exc:
            _say(f"{tag} {_handshake_failure(exc, counting.received)}")
            return
        finally:
            server_name = self._server_names.pop(id(ssl_object), None)
        _say(f"{tag} {self._describe(stream, server_name)}")
        try:
            if self.args.mode == "http":
                await self._http(stream, tag, server_name)
            else:
                await self._echo(stream, tag)
        except Exception as exc:  # whatever one client does, the server goes on
            _say(f"{tag} connection broke: {_reason(leaves(exc)[0])}")
        finally:
            with anyio.move_on_after(CLOSE_TIMEOUT):
                await stream.aclose()

    def _describe(self, stream: TLSStream, server_name: str | None) -> str:
        name = stream.extra(TLSAttribute.cipher)[0]
        parts = [
            stream.extra(TLSAttribute.tls_version),
            name,
            f"ALPN={stream.extra(TLSAttribute.alpn_protocol) or '-'}",
            f"SNI={server_name or '-'}",
        ]
        if self.args.request_client_cert == "handshake":
            subject = short_subject(stream.extra(TLSAttribute.peer_certificate_binary))
            parts.append(f"client certificate: {subject}")
        return "  ".join(str(part) for part in parts)

    async def _client_auth(self, stream: TLSStream, tag: str) -> str:
        """Ask for a certificate after the handshake; the line to print."""
        try:
            await stream.verify_client_post_handshake()
        except PostHandshakeAuthError as exc:
            return f"{tag} post-handshake authentication impossible: {exc}"
        except ssl.SSLError as exc:
            return f"{tag} client certificate rejected: {_reason(exc)}"
        subject = short_subject(stream.extra(TLSAttribute.peer_certificate_binary))
        return f"{tag} client certificate (post-handshake): {subject}"

    async def _echo(self, stream: TLSStream, tag: str) -> None:
        total = 0
        async with anyio.create_task_group() as tg:
            if self.args.request_client_cert == "post-handshake":

                async def client_auth() -> None:
                    _say(await self._client_auth(stream, tag))

                tg.start_soon(client_auth)
            try:
                while True:
                    data = await stream.receive()
                    await stream.send(data)
                    total += len(data)
            except anyio.EndOfStream:
                pass
            tg.cancel_scope.cancel()
        _say(f"{tag} closed by the client after {total} bytes echoed")

    async def _http(self, stream: TLSStream, tag: str, server_name: str | None) -> None:
        head = bytearray()
        try:
            while b"\r\n\r\n" not in head and b"\n\n" not in head:
                if len(head) > MAX_REQUEST_HEAD:
                    await stream.send(
                        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                        b"Connection: close\r\nContent-Length: 0\r\n\r\n"
                    )
                    return
                head += await stream.receive()
        except anyio.EndOfStream:
            _say(f"{tag} closed by the client before a whole request")
            return
        request_line = bytes(head).split(b"\n", 1)[0].strip().decode("latin-1")
        auth_line = ""
        if self.args.request_client_cert == "post-handshake":
            auth_line = (
                f"{tag} post-handshake certificate: no answer within "
                f"{CLIENT_AUTH_TIMEOUT:g} s"
            )
            with anyio.move_on_after(CLIENT_AUTH_TIMEOUT):
                auth_line = await self._client_auth(stream, tag)
            _say(auth_line)
        name, _, bits = stream.extra(TLSAttribute.cipher)
        subject = short_subject(stream.extra(TLSAttribute.peer_certificate_binary))
        alpn = stream.extra(TLSAttribute.alpn_protocol) or "-"
        client = _format_address(stream.extra(SocketAttribute.remote_address))
        page = "\n".join(
            [
                "anyiotls serve: your TLS connection",
                "",
                f"protocol            {stream.extra(TLSAttribute.tls_version)}",
                f"cipher              {name} ({bits}-bit key)",
                f"ALPN                {alpn}",
                f"SNI                 {server_name or '-'}",
                f"client certificate  {subject}",
                f"your address        {client}",
                f"your request        {request_line}",
                "",
            ]
        ).encode()
        head_only = request_line.split(" ", 1)[0] == "HEAD"  # HTTP: never a body
        await stream.send(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
            + f"Content-Length: {len(page)}\r\n".encode()
            + b"Connection: close\r\n\r\n"
            + (b"" if head_only else page)
        )
        _say(f"{tag} answered {request_line!r}")


class _CountingStream(ByteStream):
    """A client's connection that counts what it received, to explain failures."""

    def __init__(self, inner: SocketStream) -> None:
        self.inner = inner
        self.received = 0

    async def receive(self, max_bytes: int = 65536) -> bytes:
        data = await self.inner.receive(max_bytes)
        self.received += len(data)
        return data

    async def send(self, item: bytes) -> None:
        await self.inner.send(item)

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self.inner.extra_attributes


#: OpenSSL reasons that mean "what the client sent is not TLS".
_NOT_TLS_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "PACKET_LENGTH_TOO_LONG"}
)


def _handshake_failure(exc: BaseException, received: int) -> str:
    """What a failed handshake means, for a client that sent *received* bytes."""
    cause = exc.__cause__ if isinstance(exc, anyio.BrokenResourceError) else exc
    reason = cause.reason if isinstance(cause, ssl.SSLError) else None
    if received == 0 and not isinstance(cause, ssl.SSLCertVerificationError):
        return "closed before the handshake (the client sent nothing)"
    if reason in ("HTTP_REQUEST", "HTTPS_PROXY_REQUEST"):
        return f"plaintext HTTP sent to a TLS port ({reason}): use https://"
    if reason in _NOT_TLS_REASONS:
        return f"the client does not speak TLS ({reason})"
    if cause is None or isinstance(cause, (anyio.EndOfStream, ssl.SSLEOFError)):
        return "handshake failed: the client closed the connection in the middle"
    return f"handshake failed: {_reason(exc)}"


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__ if isinstance(exc, anyio.BrokenResourceError) else exc
    if cause is None:
        return "the connection ended"
    if isinstance(cause, ssl.SSLCertVerificationError):
        return str(cause.verify_message or cause.reason or cause)
    if isinstance(cause, ssl.SSLError) and cause.reason:
        if "UNEXPECTED_EOF" in str(cause) or isinstance(cause, ssl.SSLEOFError):
            return "the client closed the connection without close_notify"
        return str(cause.reason)
    return str(cause) or type(cause).__name__


async def _serve(
    args: argparse.Namespace, context: ssl.SSLContext, ephemeral: _Ephemeral | None
) -> None:
    server = _Server(args, context)
    async with anyio.create_task_group() as tg:

        def stop(signum: signal.Signals) -> None:
            _say(f"stopping ({signum.name})")
            tg.cancel_scope.cancel()

        await tg.start(watch_signals, (signal.SIGINT, signal.SIGTERM), stop)
        if hasattr(signal, "SIGHUP"):
            await tg.start(_reload_on_sighup, server)
        try:
            listener = await anyio.create_tcp_listener(
                local_host=args.host, local_port=args.port
            )
        except OSError as exc:
            raise CLIError(
                ExitCode.CONNECT,
                f"cannot listen on {_format_address((args.host, args.port))}: "
                f"{exc.strerror or exc}",
            ) from None
        addresses = ", ".join(
            _format_address(inner.extra(SocketAttribute.local_address))
            for inner in listener.listeners
        )
        # Only now: a server that cannot listen must not point at its files.
        if ephemeral is not None:
            ephemeral.describe()
        _say(f"listening on {addresses} ({args.mode}); Ctrl-C stops")
        async with listener:
            await listener.serve(server.handle, tg)
    _say("stopped")


async def _reload_on_sighup(
    server: _Server, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Reload the certificate at every SIGHUP, until cancelled."""
    try:
        with anyio.open_signal_receiver(signal.SIGHUP) as signals:
            task_status.started()
            async for _ in signals:
                server.reload()
    except NotImplementedError:  # no signals for the event loop on this platform
        task_status.started()


def run_serve(args: argparse.Namespace) -> int:
    """Run ``anyiotls serve`` until Ctrl-C or SIGTERM; 0 after a clean stop."""
    if args.key and not args.cert:
        raise CLIError(ExitCode.USAGE, "--key needs --cert")
    if args.cafile and not args.request_client_cert:
        raise CLIError(
            ExitCode.USAGE,
            "--cafile is for client certificates: add --request-client-cert",
        )
    if args.request_client_cert and args.cert and not args.cafile:
        raise CLIError(
            ExitCode.USAGE,
            "--request-client-cert with --cert needs --cafile (the CA that issues "
            "the client certificates)",
        )
    if args.alpn:
        parse_alpn(args.alpn)
    if args.certs_dir and args.cert:
        raise CLIError(
            ExitCode.USAGE,
            "--certs-dir writes the certificates serve makes; with --cert it makes "
            "none",
        )
    certs_dir = Path(args.certs_dir) if args.certs_dir else None
    ephemeral = None if args.cert else _Ephemeral(args.host, certs_dir)
    try:
        context = build_context(args, ephemeral)
        try:
            anyio.run(partial(_serve, args, context, ephemeral), backend=args.backend)
        except KeyboardInterrupt:  # where signals cannot be received (Windows)
            _say("stopped")
    finally:
        if ephemeral is not None:
            ephemeral.remove()
    return ExitCode.OK
