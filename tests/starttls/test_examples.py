"""The examples: the STARTTLS SMTP server (smtplib, openssl s_client, injection,
pipelining) and the FTP CCC downgrade against Python's ``ssl.SSLSocket.unwrap()``.
"""

from __future__ import annotations

import importlib.util
import logging
import smtplib
import socket
import ssl
import sys
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest
from anyio.abc import ByteStream, SocketAttribute

from anyiotls import TLSStream, starttls

from ..peers import PemFiles, require_binary
from .conftest import MAIL_HOSTNAME, connect
from .helpers import TIMEOUT, LineClient, run_in_thread, wait_until

pytestmark = pytest.mark.anyio

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str) -> ModuleType:
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    return module


smtp_example = load_example("smtp_starttls_server")
ftp_example = load_example("ftp_ccc_downgrade")


# -- the SMTP server -------------------------------------------------------------------


@asynccontextmanager
async def example_smtp_server(
    context: ssl.SSLContext,
) -> AsyncIterator[tuple[int, list[Any]]]:
    """The example server on 127.0.0.1; yields its port and the messages it got."""
    messages: list[Any] = []

    async def on_message(message: Any) -> None:
        messages.append(message)

    server = smtp_example.SMTPServer(context, on_message, hostname=MAIL_HOSTNAME)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, server.handle)
        try:
            yield listener.extra(SocketAttribute.local_port), messages
        finally:
            tg.cancel_scope.cancel()


async def test_smtplib_sends_a_mail_over_starttls(
    mail_server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    def send_with_smtplib(port: int) -> tuple[Any, ...]:
        with smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT) as client:
            client.ehlo("client.test")
            assert client.has_extn("starttls")
            client._host = MAIL_HOSTNAME  # type: ignore[attr-defined]  # the name to check
            client.starttls(context=client_context)
            client.ehlo("client.test")
            assert not client.has_extn("starttls")  # forgotten over TLS
            refused = client.sendmail(
                "alice@example.org",
                ["bob@example.net", "carol@example.net"],
                b"Subject: hi\r\n\r\nHello.\r\n.dot line\r\n",
            )
            return (refused, client.sock.version())  # type: ignore[union-attr]

    with anyio.fail_after(TIMEOUT):
        async with example_smtp_server(mail_server_context) as (port, messages):
            refused, version = await run_in_thread(send_with_smtplib, port)
    assert refused == {}
    [message] = messages
    assert message.mail_from == "alice@example.org"
    assert message.rcpt_to == ["bob@example.net", "carol@example.net"]
    assert message.content == b"Subject: hi\r\n\r\nHello.\r\n.dot line\r\n"
    assert message.tls_version == version


async def test_openssl_s_client_starttls_smtp(
    mail_server_context: ssl.SSLContext, pem_files: PemFiles
) -> None:
    openssl = require_binary("openssl")
    session = (
        b"EHLO client.test\n"
        b"MAIL FROM:<alice@example.org>\nRCPT TO:<bob@example.net>\nDATA\n"
        b"Subject: via s_client\n\nbody\n.\nQUIT\n"
    )
    with anyio.fail_after(TIMEOUT):
        async with example_smtp_server(mail_server_context) as (port, messages):
            result = await anyio.run_process(
                [
                    openssl,
                    "s_client",
                    "-starttls",
                    "smtp",
                    "-connect",
                    f"127.0.0.1:{port}",
                    "-CAfile",
                    str(pem_files.ca),
                    "-verify_return_error",
                    "-verify_hostname",
                    MAIL_HOSTNAME,
                    "-servername",
                    MAIL_HOSTNAME,
                    "-crlf",
                    "-quiet",
                ],
                input=session,
                check=False,
            )
    output = result.stdout.decode(errors="replace")
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert "250 2.0.0 OK: queued" in output
    assert "221 2.0.0 Bye" in output
    assert "STARTTLS" not in output  # not offered again over TLS
    [message] = messages
    assert message.rcpt_to == ["bob@example.net"]
    assert message.content == b"Subject: via s_client\r\n\r\nbody\r\n"
    assert message.tls_version is not None


async def test_mail_before_starttls_is_refused(
    mail_server_context: ssl.SSLContext,
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with (
            example_smtp_server(mail_server_context) as (port, messages),
            await anyio.connect_tcp("127.0.0.1", port) as stream,
        ):
            client = LineClient(stream)
            assert (await client.smtp(None)).code == 220
            ehlo = await client.smtp("EHLO client.test")
            assert "STARTTLS" in ehlo.lines
            reply = await client.smtp("MAIL FROM:<alice@example.org>")
            assert reply.code == 530
    assert messages == []


async def test_anyiotls_starttls_client_against_the_example_server(
    face: str, mail_server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with example_smtp_server(mail_server_context) as (port, messages):
            stream = await connect("127.0.0.1", port, face)
            result = await starttls.smtp(
                stream, hostname=MAIL_HOSTNAME, ssl_context=client_context
            )
            assert "STARTTLS" not in result.extensions
            client = LineClient(result.stream, result.leftover)
            # STARTTLS again, over TLS: refused.
            assert (await client.smtp("STARTTLS")).code == 503
            assert (await client.smtp("MAIL FROM:<a@example.org>")).code == 250
            assert (await client.smtp("RCPT TO:<b@example.net>")).code == 250
            assert (await client.smtp("DATA")).code == 354
            assert (await client.smtp("Subject: x\r\n\r\nhi\r\n.")).code == 250
            assert (await client.smtp("QUIT")).code == 221
            await result.stream.aclose()
    [message] = messages
    assert message.content == b"Subject: x\r\n\r\nhi\r\n"


class StartTLSWithoutWaiting(ByteStream):
    """A transport for a client that does not wait for the go-ahead.

    Its first send is ``STARTTLS\\r\\n`` followed by the TLS ClientHello, in one
    segment; the server's plaintext ``220`` line is taken off what TLS receives.
    """

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.first_send = True
        self.go_ahead: bytes | None = None
        self._pending = b""

    async def send(self, item: bytes) -> None:
        if self.first_send:
            self.first_send = False
            item = b"STARTTLS\r\n" + item
        await self.stream.send(item)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while self.go_ahead is None:
            self._pending += await self.stream.receive()
            if b"\r\n" in self._pending:
                self.go_ahead, _, self._pending = self._pending.partition(b"\r\n")
        if self._pending:
            data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
            return data
        return await self.stream.receive(max_bytes)

    async def send_eof(self) -> None:
        await self.stream.send_eof()

    async def aclose(self) -> None:
        await self.stream.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self.stream.extra_attributes


async def test_client_hello_pipelined_after_starttls_goes_to_tls(
    mail_server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with example_smtp_server(mail_server_context) as (port, _):
            stream = await anyio.connect_tcp("127.0.0.1", port)
            client = LineClient(stream)
            assert (await client.smtp(None)).code == 220
            assert (await client.smtp("EHLO client.test")).code == 250
            eager = StartTLSWithoutWaiting(stream)
            tls = await TLSStream.wrap(
                eager, hostname=MAIL_HOSTNAME, ssl_context=client_context
            )
            assert eager.go_ahead == b"220 2.0.0 Ready to start TLS"
            client = LineClient(tls)
            ehlo = await client.smtp("EHLO client.test")
            assert ehlo.code == 250
            assert "STARTTLS" not in ehlo.lines
            assert (await client.smtp("QUIT")).code == 221
            await tls.aclose()


async def test_commands_injected_after_starttls_are_never_executed(
    mail_server_context: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    """CVE-2011-0411: plaintext commands after STARTTLS go to TLS, which fails."""
    injected = b"STARTTLS\r\nRSET\r\nMAIL FROM:<mallory@example.org>\r\nNOOP\r\n"
    caplog.set_level(logging.INFO, logger="smtp_starttls_server")
    with anyio.fail_after(TIMEOUT):
        async with (
            example_smtp_server(mail_server_context) as (port, messages),
            await anyio.connect_tcp("127.0.0.1", port) as stream,
        ):
            client = LineClient(stream)
            assert (await client.smtp(None)).code == 220
            assert (await client.smtp("EHLO client.test")).code == 250
            await stream.send(injected)
            received = b""
            try:
                while True:
                    received += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
            # The server's handshake failed on the injected plaintext (logged).
            await wait_until(lambda: bool(server_records(caplog)))
    go_ahead = b"220 2.0.0 Ready to start TLS\r\n"
    assert received.startswith(go_ahead)
    after = received[len(go_ahead) :]
    # No reply to RSET, MAIL or NOOP: at most a TLS alert record.
    assert b"250" not in after
    assert after == b"" or after[0] == 0x15
    assert messages == []
    [record] = server_records(caplog)
    assert "SSLError" in record.getMessage()


def server_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "smtp_starttls_server"]


# -- the FTP CCC downgrade -------------------------------------------------------------


def start_ftp_server(
    context: ssl.SSLContext, after_ccc: bytes = b""
) -> tuple[int, threading.Thread, dict[str, Any]]:
    listener = socket.create_server(("127.0.0.1", 0))
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["commands"] = ftp_example.serve_ccc(
                listener, context, after_ccc=after_ccc
            )
        except BaseException as exc:  # reported by the test
            outcome["error"] = exc
        finally:
            listener.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread, outcome


async def test_ftp_ccc_downgrade_against_ssl_socket_unwrap(
    mail_server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    port, thread, outcome = start_ftp_server(mail_server_context)
    with anyio.fail_after(TIMEOUT):
        stream = await anyio.connect_tcp("127.0.0.1", port)
        transcript = await ftp_example.ccc_session(
            stream, hostname=MAIL_HOSTNAME, ssl_context=client_context
        )
        await wait_until(lambda: not thread.is_alive())
    assert "error" not in outcome, outcome.get("error")
    assert [reply[:3] for reply in transcript] == [
        "220", "234", "331", "230", "200", "200", "257", "221",
    ]  # fmt: skip
    assert outcome["commands"] == [
        "AUTH TLS", "USER anonymous", "PASS guest", "PBSZ 0", "CCC", "PWD", "QUIT",
    ]  # fmt: skip


async def test_ftp_plaintext_right_after_close_notify_is_kept(
    mail_server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    """Plaintext sent right behind the close_notify arrives once, in order."""
    banner = b"220-back in plaintext\r\n220 " + b"x" * 900 + b"\r\n"
    port, thread, outcome = start_ftp_server(mail_server_context, after_ccc=banner)
    with anyio.fail_after(TIMEOUT):
        stream = await anyio.connect_tcp("127.0.0.1", port)
        control = ftp_example.ControlChannel(stream)
        await control.reply("220")
        await control.command("AUTH TLS", "234")
        tls = await starttls.upgrade(
            stream, control.buffer, hostname=MAIL_HOSTNAME, ssl_context=client_context
        )
        control = ftp_example.ControlChannel(tls)
        await control.command("CCC", "200")
        transport, leftover = await tls.unwrap()
        assert transport is stream
        control = ftp_example.ControlChannel(transport, leftover)
        assert await control.reply("220") == banner.decode().replace("\r\n", "\n")[:-1]
        assert (await control.command("PWD", "257")).startswith('257 "/"')
        await control.command("QUIT", "221")
        await transport.aclose()
        await wait_until(lambda: not thread.is_alive())
    assert "error" not in outcome, outcome.get("error")
