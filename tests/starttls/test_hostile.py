"""The STARTTLS helpers against fake servers, honest and hostile.

Every hostile case must end in a clear exception with the connection closed: the
fake server checks that the client sent nothing more in plaintext (no
``rest()``), and injected bytes never show up in what the helper returns.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from anyiotls import TLSStream, starttls
from anyiotls.starttls import (
    ConnectionClosedError,
    InjectedDataError,
    MalformedReplyError,
    NotOfferedError,
    RefusedError,
    ReplyError,
)

from .conftest import MAIL_HOSTNAME, connect
from .helpers import TIMEOUT, ServerPeer, assert_closed, serve_one

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Proto:
    """What a fake server of one protocol says, and how to read the helper's result."""

    name: str
    helper: Callable[..., Awaitable[Any]]
    greeting: bytes
    caps: Callable[[str, bool, bool], bytes]  # (tag, offer STARTTLS, over TLS)
    caps_verb: str
    starttls_verb: str
    go_ahead: Callable[[str], bytes]
    refusal: Callable[[str], bytes]
    #: what a hostile server injects after the go-ahead: a capability reply
    #: advertising ``INJECTED``
    injection: bytes
    result_caps: Callable[[Any], Collection[str]]

    def verb(self, line: str) -> tuple[str, str]:
        """(tag, verb) of a command line (tag ``""`` outside IMAP)."""
        words = line.split()
        if self.name == "imap":
            return words[0], words[1]
        return "", words[0]


def _smtp_caps(tag: str, offer: bool, secure: bool) -> bytes:
    lines = [b"fake.test greets you", b"PIPELINING", b"SIZE 1000000"]
    if offer:
        lines.append(b"STARTTLS")
    lines.append(b"AUTH PLAIN" if secure else b"X-PLAINTEXT-ONLY")
    return b"".join(b"250-" + line + b"\r\n" for line in lines[:-1]) + (
        b"250 " + lines[-1] + b"\r\n"
    )


def _imap_caps(tag: str, offer: bool, secure: bool) -> bytes:
    words = [b"IMAP4rev1"]
    if offer:
        words.append(b"STARTTLS")
    words += [b"AUTH=PLAIN"] if secure else [b"LOGINDISABLED", b"X-PLAINTEXT-ONLY"]
    done = tag.encode() + b" OK done\r\n"
    return b"* CAPABILITY " + b" ".join(words) + b"\r\n" + done


def _pop3_caps(tag: str, offer: bool, secure: bool) -> bytes:
    lines = [b"+OK capability list follows", b"USER", b"TOP"]
    if offer:
        lines.append(b"STLS")
    lines.append(b"SASL PLAIN" if secure else b"X-PLAINTEXT-ONLY")
    return b"".join(line + b"\r\n" for line in [*lines, b"."])


SMTP = Proto(
    name="smtp",
    helper=starttls.smtp,
    greeting=b"220 fake.test ESMTP ready\r\n",
    caps=_smtp_caps,
    caps_verb="EHLO",
    starttls_verb="STARTTLS",
    go_ahead=lambda tag: b"220 2.0.0 Ready to start TLS\r\n",
    refusal=lambda tag: b"454 4.7.0 TLS not available due to temporary reason\r\n",
    injection=b"250-fake.test\r\n250 INJECTED\r\n",
    result_caps=lambda result: result.extensions,
)
LMTP = Proto(
    **{**SMTP.__dict__, "name": "lmtp", "helper": starttls.lmtp, "caps_verb": "LHLO"}
)
IMAP = Proto(
    name="imap",
    helper=starttls.imap,
    greeting=b"* OK [CAPABILITY IMAP4rev1 STARTTLS] fake.test ready\r\n",
    caps=_imap_caps,
    caps_verb="CAPABILITY",
    starttls_verb="STARTTLS",
    go_ahead=lambda tag: tag.encode() + b" OK Begin TLS negotiation now\r\n",
    refusal=lambda tag: tag.encode() + b" NO TLS is not available\r\n",
    injection=b"* CAPABILITY IMAP4rev1 INJECTED\r\n",
    result_caps=lambda result: result.capabilities,
)
POP3 = Proto(
    name="pop3",
    helper=starttls.pop3,
    greeting=b"+OK fake.test POP3 ready <1896.697170952@fake.test>\r\n",
    caps=_pop3_caps,
    caps_verb="CAPA",
    starttls_verb="STLS",
    go_ahead=lambda tag: b"+OK Begin TLS negotiation\r\n",
    refusal=lambda tag: b"-ERR TLS not available\r\n",
    injection=b"+OK\r\nINJECTED\r\n.\r\n",
    result_caps=lambda result: result.capabilities,
)

PROTOS = [
    pytest.param(SMTP, id="smtp"),
    pytest.param(LMTP, id="lmtp"),
    pytest.param(IMAP, id="imap"),
    pytest.param(POP3, id="pop3"),
]

#: What the client must never send after a failed STARTTLS (plaintext commands).
_PLAINTEXT_COMMANDS = (b"EHLO", b"LHLO", b"CAPA", b"CAPABILITY", b"LOGIN", b"AUTH")


async def fake_server(
    peer: ServerPeer,
    proto: Proto,
    scenario: str,
    tls_context: ssl.SSLContext,
    after_tls: bytes = b"",
) -> None:
    """An honest server, or one that misbehaves as *scenario* says."""
    if scenario == "close_before_greeting":
        return
    await peer.send(proto.greeting)
    tag, verb = proto.verb(await peer.line())
    assert verb == proto.caps_verb
    if scenario == "close_after_caps_request":
        return
    reply = proto.caps(tag, scenario != "not_offered", False)
    if scenario == "close_mid_caps_reply":
        await peer.send(reply[: len(reply) // 2])
        return
    await peer.send(reply)
    if scenario == "not_offered":
        assert await peer.rest() == b""
        return
    tag, verb = proto.verb(await peer.line())
    assert verb == proto.starttls_verb
    if scenario == "close_after_starttls":
        return
    if scenario == "refused":
        await peer.send(proto.refusal(tag))
        assert await peer.rest() == b""
        return
    if scenario == "inject_same_segment":
        await peer.send(proto.go_ahead(tag) + proto.injection)
        # The client refused before its handshake: not even a ClientHello.
        assert await peer.rest() == b""
        return
    if scenario == "inject_later_segment":
        await peer.send(proto.go_ahead(tag))
        hello = await peer.receive()
        assert hello[0] == 0x16  # a TLS handshake record: the ClientHello
        await peer.send(proto.injection)
        rest = await peer.rest()
        assert not any(command in rest for command in _PLAINTEXT_COMMANDS)
        return
    if scenario == "discarded_injection":
        await peer.send(proto.go_ahead(tag) + proto.injection)
    else:
        await peer.send(proto.go_ahead(tag))
    if scenario == "close_after_go_ahead":
        return
    if scenario == "wrong_host":
        with pytest.raises((ssl.SSLError, anyio.BrokenResourceError)):
            await peer.starttls(tls_context)
        return
    await peer.starttls(tls_context)
    tag, verb = proto.verb(await peer.line())
    assert verb == proto.caps_verb
    if scenario == "inject_after_handshake":
        # Plaintext on the raw connection, in the middle of the TLS session.
        assert isinstance(peer.stream, TLSStream)
        await peer.stream.transport_stream.send(proto.injection)
        await peer.rest()
        return
    await peer.send(proto.caps(tag, False, True) + after_tls)
    await peer.rest()


async def run_client(
    proto: Proto,
    scenario: str,
    face: str,
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
    after_tls: bytes = b"",
    **kwargs: Any,
) -> Any:
    """Run the helper against a fake server; return the result (stream closed)."""

    async def handler(peer: ServerPeer) -> None:
        await fake_server(peer, proto, scenario, server_context, after_tls)

    async with serve_one(handler) as server:
        with anyio.fail_after(TIMEOUT):
            stream = await connect("127.0.0.1", server.port, face)
            try:
                result = await proto.helper(
                    stream, hostname=MAIL_HOSTNAME, ssl_context=client_context, **kwargs
                )
                await result.stream.aclose()
            except BaseException:
                await assert_closed(stream)
                raise
            finally:
                await anyio.aclose_forcefully(stream)
            return result


# -- the honest server -----------------------------------------------------------------


@pytest.mark.parametrize("proto", PROTOS)
async def test_upgrade_forgets_capabilities_learned_in_plaintext(
    proto: Proto,
    face: str,
    mail_server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    result = await run_client(proto, "ok", face, mail_server_context, client_context)
    capabilities = {c.split("=")[0] for c in proto.result_caps(result)}
    # Only what the server said over TLS: AUTH/SASL, no STARTTLS, nothing plain.
    assert capabilities & {"AUTH", "SASL"}
    assert not capabilities & {"STARTTLS", "STLS", "X-PLAINTEXT-ONLY", "LOGINDISABLED"}
    assert result.leftover == b""
    expected = "SSLStream" if face == "trio" else "TLSStream"
    assert type(result.stream).__name__ == expected


@pytest.mark.parametrize("proto", PROTOS)
async def test_bytes_sent_over_tls_after_the_capabilities_are_kept(
    proto: Proto,
    face: str,
    mail_server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    extra = b"* OK [ALERT] welcome\r\n"
    result = await run_client(
        proto, "ok", face, mail_server_context, client_context, after_tls=extra
    )
    assert result.leftover == extra


# -- hostile servers -------------------------------------------------------------------


@pytest.mark.parametrize("proto", PROTOS)
async def test_starttls_not_offered_raises(
    proto: Proto,
    face: str,
    mail_server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    with pytest.raises(NotOfferedError, match="did not offer") as info:
        await run_client(
            proto, "not_offered", face, mail_server_context, client_context
        )
    assert "refusing to continue in plaintext" in str(info.value)
    assert info.value.capabilities is not None


@pytest.mark.parametrize("proto", PROTOS)
async def test_starttls_refused_raises(
    proto: Proto,
    face: str,
    mail_server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    with pytest.raises(RefusedError, match="refused") as info:
        await run_client(proto, "refused", face, mail_server_context, client_context)
    assert info.value.command == proto.starttls_verb


@pytest.mark.parametrize("proto", PROTOS)
async def test_data_injected_in_the_go_ahead_segment_raises(
    proto: Proto,
    face: str,
    mail_server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    with pytest.raises(InjectedDataError, match="response injection") as info:
        await run_client(
            proto, "inject_same_segment", face, mail_server_context, client_context
        )
    assert info.value.data == proto.injection


@pytest.mark.parametrize("proto", PROTOS)
async def test_data_injected_in_the_go_ahead_segment_can_be_discarded(
    proto: Proto,
    face: str,
    mail_server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    result = await run_client(
        proto,
        "discarded_injection",
        face,
        mail_server_context,
        client_context,
        discard_injected=True,
    )
    assert "INJECTED" not in proto.result_caps(result)
    assert result.leftover == b""
    assert f"discarding {len(proto.injection)} byte(s)" in caplog.text


@pytest.mark.parametrize("proto", PROTOS)
async def test_data_injected_after_the_go_ahead_fails_the_handshake(
    proto: Proto,
    face: str,
    mail_server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    """Plaintext arriving during the handshake goes to TLS, which rejects it."""
    with pytest.raises(ssl.SSLError):
        await run_client(
            proto, "inject_later_segment", face, mail_server_context, client_context
        )


@pytest.mark.parametrize("proto", PROTOS)
async def test_data_injected_after_the_handshake_breaks_the_connection(
    proto: Proto,
    face: str,
    mail_server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    """Plaintext in the middle of the TLS session is a TLS error, never a reply."""
    with pytest.raises(ConnectionClosedError, match="SSLError") as info:
        await run_client(
            proto, "inject_after_handshake", face, mail_server_context, client_context
        )
    assert isinstance(info.value.__cause__, Exception)
    assert isinstance(info.value.__cause__.__cause__, ssl.SSLError)


@pytest.mark.parametrize("proto", PROTOS)
async def test_certificate_for_another_host_fails(
    proto: Proto,
    face: str,
    wrong_host_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match=r"mail\.test"):
        await run_client(proto, "wrong_host", face, wrong_host_context, client_context)


@pytest.mark.parametrize("proto", PROTOS)
@pytest.mark.parametrize(
    "scenario",
    [
        "close_before_greeting",
        "close_after_caps_request",
        "close_mid_caps_reply",
        "close_after_starttls",
        "close_after_go_ahead",
    ],
)
async def test_server_closing_mid_dialogue_raises(
    proto: Proto,
    scenario: str,
    face: str,
    mail_server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    with pytest.raises(ConnectionClosedError, match=r"closed|ended"):
        await run_client(proto, scenario, face, mail_server_context, client_context)


# -- cancellation ----------------------------------------------------------------------


@pytest.mark.parametrize("proto", PROTOS)
async def test_cancelled_dialogue_closes_the_connection(
    proto: Proto, face: str, client_context: ssl.SSLContext
) -> None:
    scopes: list[anyio.CancelScope] = []

    async def silent_after_request(peer: ServerPeer) -> None:
        await peer.send(proto.greeting)
        await peer.line()
        scopes[0].cancel()  # cancel the client while it waits for the answer
        assert await peer.rest() == b""  # it closed the connection, sent nothing

    async with serve_one(silent_after_request) as server:
        with anyio.fail_after(TIMEOUT):
            stream = await connect("127.0.0.1", server.port, face)
            with anyio.CancelScope() as scope:
                scopes.append(scope)
                await proto.helper(
                    stream, hostname=MAIL_HOSTNAME, ssl_context=client_context
                )
            assert scope.cancelled_caught


async def test_fail_after_bounds_a_silent_server(
    client_context: ssl.SSLContext,
) -> None:
    """The documented way to bound a dialogue: ``fail_after`` raises TimeoutError."""

    async def silent(peer: ServerPeer) -> None:
        assert await peer.rest() == b""

    async with serve_one(silent) as server:
        stream = await anyio.connect_tcp("127.0.0.1", server.port)
        with pytest.raises(TimeoutError), anyio.fail_after(0.1):
            await starttls.smtp(
                stream, hostname=MAIL_HOSTNAME, ssl_context=client_context
            )


# -- malformed replies and protocol details --------------------------------------------


async def _script(
    script: bytes | Callable[[ServerPeer], Awaitable[None]],
    helper: Callable[..., Awaitable[Any]],
    client_context: ssl.SSLContext,
    **kwargs: Any,
) -> Any:
    """Run *helper* against a server that sends *script* (bytes) or runs it."""

    async def handler(peer: ServerPeer) -> None:
        if isinstance(script, bytes):
            await peer.send(script)
            await peer.rest()
        else:
            await script(peer)

    async with serve_one(handler) as server:
        with anyio.fail_after(TIMEOUT):
            stream = await anyio.connect_tcp("127.0.0.1", server.port)
            result = await helper(
                stream, hostname=MAIL_HOSTNAME, ssl_context=client_context, **kwargs
            )
            await result.stream.aclose()
            return result


@pytest.mark.parametrize("proto", PROTOS)
async def test_garbage_greeting_is_malformed(
    proto: Proto, client_context: ssl.SSLContext
) -> None:
    with pytest.raises(MalformedReplyError):
        await _script(b"HELLO THERE\r\n", proto.helper, client_context)


@pytest.mark.parametrize("proto", PROTOS)
async def test_endless_line_is_refused_with_bounded_memory(
    proto: Proto, client_context: ssl.SSLContext
) -> None:
    async def endless(peer: ServerPeer) -> None:
        chunk = b"x" * 4096
        try:
            for _ in range(1000):  # 4 MB, unless the client hangs up first
                await peer.send(chunk)
        except anyio.BrokenResourceError:
            pass  # it did

    with pytest.raises(MalformedReplyError, match="longer than 1000 bytes"):
        await _script(endless, proto.helper, client_context, max_line_length=1000)


async def test_smtp_multiline_greeting_and_error_greeting(
    client_context: ssl.SSLContext,
) -> None:
    with pytest.raises(ReplyError, match=r"with 554 fake\.test / no service") as info:
        await _script(
            b"554-fake.test\r\n554 no service\r\n", starttls.smtp, client_context
        )
    assert info.value.reply.code == 554
    assert info.value.command is None


async def test_smtp_ehlo_refused(client_context: ssl.SSLContext) -> None:
    async def refuse_ehlo(peer: ServerPeer) -> None:
        await peer.send(b"220-fake.test\r\n220 welcome\r\n")
        assert (await peer.line()).startswith("EHLO [127.0.0.1]")
        await peer.send(b"502 5.5.1 EHLO not implemented\r\n")
        assert await peer.rest() == b""

    with pytest.raises(ReplyError, match="answered EHLO with 502"):
        await _script(refuse_ehlo, starttls.smtp, client_context)


async def test_smtp_reply_codes_must_agree(client_context: ssl.SSLContext) -> None:
    with pytest.raises(MalformedReplyError, match="codes differ"):
        await _script(b"220-fake.test\r\n250 hi\r\n", starttls.smtp, client_context)


async def test_smtp_unsolicited_reply_before_ehlo_is_refused(
    client_context: ssl.SSLContext,
) -> None:
    """A pre-answered EHLO (pipelining the server has no business doing) is caught."""
    with pytest.raises(MalformedReplyError, match="nobody asked for"):
        await _script(
            b"220 fake.test\r\n250-fake.test\r\n250 STARTTLS\r\n",
            starttls.smtp,
            client_context,
        )


async def test_smtp_starttls_answered_with_success_code_is_refused(
    client_context: ssl.SSLContext,
) -> None:
    """Only 220 is the go-ahead: a 250 (say, from a stripping proxy) is not."""

    async def answer_250(peer: ServerPeer) -> None:
        await peer.send(SMTP.greeting)
        await peer.line()
        await peer.send(_smtp_caps("", True, False))
        assert await peer.line() == "STARTTLS"
        await peer.send(b"250 2.0.0 OK\r\n")
        assert await peer.rest() == b""

    with pytest.raises(RefusedError, match=r"250 2\.0\.0 OK"):
        await _script(answer_250, starttls.smtp, client_context)


async def test_imap_preauth_greeting_is_refused(client_context: ssl.SSLContext) -> None:
    with pytest.raises(NotOfferedError, match="PREAUTH"):
        await _script(b"* PREAUTH welcome back\r\n", starttls.imap, client_context)


async def test_imap_bye_greeting(client_context: ssl.SSLContext) -> None:
    with pytest.raises(ReplyError, match="BYE"):
        await _script(b"* BYE too busy\r\n", starttls.imap, client_context)


async def test_imap_untagged_responses_and_literals(
    mail_server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    """Untagged data, a literal and capabilities split over two responses."""

    async def chatty(peer: ServerPeer) -> None:
        await peer.send(b"* OK fake.test\r\n")
        tag = (await peer.line()).split()[0]
        await peer.send(
            b"* OK [ALERT] {12}\r\nhello\r\nworld now\r\n"
            b"* CAPABILITY IMAP4rev1\r\n"
            b"* CAPABILITY STARTTLS\r\n" + tag.encode() + b" OK done\r\n"
        )
        tag = (await peer.line()).split()[0]
        await peer.send(b"* 3 EXISTS\r\n" + tag.encode() + b" OK go ahead\r\n")
        await peer.starttls(mail_server_context)
        tag = (await peer.line()).split()[0]
        await peer.send(
            b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n* 4 EXISTS\r\n"
            + tag.encode()
            + b" OK [CAPABILITY IGNORED] done\r\n"
        )
        await peer.rest()

    result = await _script(chatty, starttls.imap, client_context)
    assert result.capabilities == {"IMAP4REV1", "AUTH=PLAIN"}
    assert [str(r) for r in result.untagged] == ["* 4 EXISTS"]


async def test_imap_continuation_request_is_malformed(
    client_context: ssl.SSLContext,
) -> None:
    async def continuation(peer: ServerPeer) -> None:
        await peer.send(b"* OK fake.test\r\n")
        await peer.line()
        await peer.send(b"+ go on\r\n")
        assert await peer.rest() == b""

    with pytest.raises(MalformedReplyError, match="unexpected IMAP response"):
        await _script(continuation, starttls.imap, client_context)


async def test_imap_bye_in_the_middle(client_context: ssl.SSLContext) -> None:
    async def bye(peer: ServerPeer) -> None:
        await peer.send(b"* OK fake.test\r\n")
        await peer.line()
        await peer.send(b"* BYE shutting down\r\n")
        assert await peer.rest() == b""

    with pytest.raises(ReplyError, match="BYE shutting down"):
        await _script(bye, starttls.imap, client_context)


async def test_pop3_without_capa_cannot_offer_stls(
    client_context: ssl.SSLContext,
) -> None:
    async def no_capa(peer: ServerPeer) -> None:
        await peer.send(b"+OK old server\r\n")
        assert await peer.line() == "CAPA"
        await peer.send(b"-ERR unknown command\r\n")
        assert await peer.rest() == b""

    with pytest.raises(NotOfferedError, match="does not support CAPA"):
        await _script(no_capa, starttls.pop3, client_context)


async def test_pop3_error_greeting(client_context: ssl.SSLContext) -> None:
    with pytest.raises(ReplyError, match="-ERR go away"):
        await _script(b"-ERR go away\r\n", starttls.pop3, client_context)


async def test_imap_endless_untagged_responses_are_bounded(
    client_context: ssl.SSLContext,
) -> None:
    async def flood(peer: ServerPeer) -> None:
        await peer.send(b"* OK fake.test\r\n")
        await peer.line()
        try:
            for _ in range(10000):  # 260 KB, unless the client hangs up first
                await peer.send(b"* OK [ALERT] still here\r\n")
        except anyio.BrokenResourceError:
            pass  # it did

    with pytest.raises(MalformedReplyError, match="untagged responses"):
        await _script(flood, starttls.imap, client_context)


@pytest.mark.parametrize("helper", [SMTP.helper, IMAP.helper, POP3.helper])
@pytest.mark.parametrize("hostname", ["", None, b"mail.test"])
async def test_hostname_is_required(helper: Any, hostname: Any) -> None:
    with pytest.raises(ValueError, match="hostname must be"):
        await helper(None, hostname=hostname)


@pytest.mark.parametrize("tag_prefix", ["", "A-1", "\u00e9"])
async def test_imap_bad_tag_prefix(tag_prefix: str) -> None:
    with pytest.raises(ValueError, match="tag_prefix"):
        await starttls.imap(None, hostname=MAIL_HOSTNAME, tag_prefix=tag_prefix)


@pytest.mark.parametrize(
    "name", ["", "two words", "crlf\r\nRSET", "tab\there", "caf\u00e9.test"]
)
async def test_smtp_bad_local_hostname(name: str) -> None:
    with pytest.raises(ValueError, match="local_hostname"):
        await starttls.smtp(None, hostname=MAIL_HOSTNAME, local_hostname=name)
