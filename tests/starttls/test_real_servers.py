"""The STARTTLS helpers against real servers: Postfix, Dovecot (IMAP, POP3), aiosmtpd.

Each test completes a real dialogue over the upgraded stream (send a message; log
in and select a mailbox; log in and ask for the mailbox status), on the AnyIO face
with every backend, and on the Trio face under Trio.
"""

from __future__ import annotations

import ssl
import uuid
from typing import Any

import anyio
import pytest
from anyio.abc import SocketAttribute

from anyiotls import TLSStream
from anyiotls.starttls import imap, pop3, smtp

from .conftest import (
    MAIL_HOSTNAME,
    AiosmtpdServer,
    DovecotServer,
    PostfixServer,
    connect,
)
from .helpers import TIMEOUT, LineClient, wait_until

pytestmark = pytest.mark.anyio


def _expected_type(face: str) -> type[Any]:
    if face == "trio":
        from anyiotls.trio import SSLStream

        return SSLStream
    return TLSStream


async def _send_mail(
    client: LineClient, message_id: str, recipient: str
) -> tuple[str, str]:
    """MAIL/RCPT/DATA/QUIT; return the DATA and QUIT replies' text."""
    assert (await client.smtp("MAIL FROM:<sender@example.org>")).code == 250
    assert (await client.smtp(f"RCPT TO:<{recipient}>")).code == 250
    assert (await client.smtp("DATA")).code == 354
    body = (
        f"From: sender@example.org\r\nTo: {recipient}\r\n"
        f"Subject: anyiotls STARTTLS test\r\nMessage-ID: <{message_id}>\r\n\r\n"
        "Hello over TLS.\r\n..leading dot\r\n."
    )
    data_reply = await client.smtp(body)
    assert data_reply.code == 250, data_reply
    quit_reply = await client.smtp("QUIT")
    assert quit_reply.code == 221
    return data_reply.text, quit_reply.text


async def test_postfix_send_mail(
    postfix: PostfixServer, client_context: ssl.SSLContext, face: str
) -> None:
    message_id = f"{uuid.uuid4()}@anyiotls.test"
    with anyio.fail_after(TIMEOUT):
        stream = await connect("127.0.0.1", postfix.port, face)
        result = await smtp(stream, hostname=MAIL_HOSTNAME, ssl_context=client_context)
        assert isinstance(result.stream, _expected_type(face))
        # The EHLO reply over TLS no longer offers STARTTLS (and comes from Postfix).
        assert "STARTTLS" not in result.extensions
        assert "PIPELINING" in result.extensions
        assert result.reply.lines[0] == MAIL_HOSTNAME
        assert result.leftover == b""
        client = LineClient(result.stream, result.leftover)
        data_reply, _ = await _send_mail(client, message_id, f"someone@{MAIL_HOSTNAME}")
        assert "queued as" in data_reply
        await result.stream.aclose()
        queue_id = data_reply.rsplit(" ", 1)[-1]
        # Postfix received the message content and logged its Message-ID; its
        # smtpd also counted the STARTTLS.
        await wait_until(
            lambda: f"{queue_id}: message-id=<{message_id}>" in postfix.log_text()
        )
        await wait_until(lambda: "starttls=1" in postfix.log_text())


async def test_aiosmtpd_send_mail(
    aiosmtpd_server: AiosmtpdServer, client_context: ssl.SSLContext, face: str
) -> None:
    message_id = f"{uuid.uuid4()}@anyiotls.test"
    with anyio.fail_after(TIMEOUT):
        stream = await connect("127.0.0.1", aiosmtpd_server.port, face)
        result = await smtp(
            stream,
            hostname=MAIL_HOSTNAME,
            ssl_context=client_context,
            local_hostname="client.anyiotls.test",
        )
        assert "STARTTLS" not in result.extensions
        client = LineClient(result.stream, result.leftover)
        await _send_mail(client, message_id, "rcpt@example.net")
        await result.stream.aclose()
    [message] = [
        m for m in aiosmtpd_server.handler.messages if message_id.encode() in m.content
    ]
    assert message.mail_from == "sender@example.org"
    assert message.rcpt_tos == ["rcpt@example.net"]
    assert message.cipher is not None  # aiosmtpd saw it arrive over TLS
    assert b"\r\n.leading dot\r\n" in message.content


async def test_aiosmtpd_refuses_mail_before_starttls(
    aiosmtpd_server: AiosmtpdServer,
) -> None:
    """The server really requires TLS: what the helper protects is not a formality."""
    with anyio.fail_after(TIMEOUT):
        async with await anyio.connect_tcp("127.0.0.1", aiosmtpd_server.port) as s:
            client = LineClient(s)
            assert (await client.smtp(None)).code == 220
            assert (await client.smtp("EHLO client.test")).code == 250
            reply = await client.smtp("MAIL FROM:<sender@example.org>")
            assert reply.code == 530


async def test_dovecot_imap_login_select_logout(
    dovecot: DovecotServer, client_context: ssl.SSLContext, face: str
) -> None:
    with anyio.fail_after(TIMEOUT):
        plain = await connect(dovecot.address, dovecot.imap_port, face, "127.0.0.1")
        result = await imap(plain, hostname=MAIL_HOSTNAME, ssl_context=client_context)
        # Before TLS Dovecot said LOGINDISABLED and STARTTLS; over TLS it says
        # neither: these capabilities were asked again after the upgrade.
        assert "LOGINDISABLED" not in result.capabilities
        assert "STARTTLS" not in result.capabilities
        assert "AUTH=PLAIN" in result.capabilities
        assert "IMAP4REV1" in result.capabilities
        client = LineClient(result.stream, result.leftover)
        *_, done = await client.imap("a1", f"LOGIN alice {dovecot.password}")
        assert done.kind == "OK", done
        responses = await client.imap("a2", "SELECT INBOX")
        assert responses[-1].kind == "OK", responses[-1]
        assert any(r.text == "EXISTS" for r in responses)
        responses = await client.imap("a3", "LOGOUT")
        assert responses[0].kind == "BYE"
        assert responses[-1].kind == "OK"
        await result.stream.aclose()
    assert "user=<alice>" in dovecot.log_text()


async def test_dovecot_imap_requires_tls_for_login(dovecot: DovecotServer) -> None:
    """Without STARTTLS, Dovecot refuses LOGIN from this address (not local)."""
    with anyio.fail_after(TIMEOUT):
        async with await anyio.connect_tcp(
            dovecot.address, dovecot.imap_port, local_host="127.0.0.1"
        ) as s:
            assert s.extra(SocketAttribute.remote_address)[0] == dovecot.address
            client = LineClient(s)
            assert (await client.line()).startswith("* OK")
            responses = await client.imap("a1", "CAPABILITY")
            assert "LOGINDISABLED" in responses[0].text.split()
            *_, done = await client.imap("a2", "LOGIN bob secret")
            assert done.kind == "NO"


async def test_dovecot_pop3_user_pass_stat_quit(
    dovecot: DovecotServer, client_context: ssl.SSLContext, face: str
) -> None:
    with anyio.fail_after(TIMEOUT):
        plain = await connect(dovecot.address, dovecot.pop3_port, face, "127.0.0.1")
        result = await pop3(plain, hostname=MAIL_HOSTNAME, ssl_context=client_context)
        assert "STLS" not in result.capabilities
        assert "USER" in result.capabilities
        assert "PLAIN" in result.capabilities["SASL"].split()
        client = LineClient(result.stream, result.leftover)
        assert (await client.line("USER bob")).startswith("+OK")
        assert (await client.line(f"PASS {dovecot.password}")).startswith("+OK")
        assert await client.line("STAT") == "+OK 0 0"
        assert (await client.line("QUIT")).startswith("+OK")
        await result.stream.aclose()
    assert "user=<bob>" in dovecot.log_text()
