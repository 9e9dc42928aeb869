"""The sans-I/O line and reply parsers: no event loop, bytes in and replies out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from anyiotls.starttls import IMAPResponse, LineBuffer, MalformedReplyError, SMTPReply
from anyiotls.starttls._lines import (
    IMAPResponseParser,
    POP3MultilineParser,
    SMTPReplyParser,
    parse_ehlo,
    parse_imap_capabilities,
    parse_pop3_capa,
    parse_pop3_status,
)


def feed_in_pieces(data: bytes, step: Callable[[LineBuffer], Any], size: int) -> Any:
    """Feed *data* in pieces of *size* bytes; return the first result of *step*."""
    buffer = LineBuffer()
    for start in range(0, len(data), size):
        buffer.feed(data[start : start + size])
        result = step(buffer)
        if result is not None:
            assert start + size >= len(data), "a result before all bytes arrived"
            assert buffer.buffer == b""
            return result
    raise AssertionError("no result after all bytes")


# -- LineBuffer ------------------------------------------------------------------------


def test_line_buffer_splits_crlf_and_bare_lf_lines() -> None:
    buffer = LineBuffer()
    buffer.feed(b"one\r\ntwo\nthree\r")
    assert buffer.next_line() == b"one"
    assert buffer.next_line() == b"two"
    assert buffer.next_line() is None
    buffer.feed(b"\nrest")
    assert buffer.next_line() == b"three"
    assert buffer.next_line() is None
    assert buffer.buffer == b"rest"
    assert len(buffer) == 4
    assert buffer.clear() == b"rest"
    assert buffer.buffer == b""


def test_line_buffer_accepts_a_line_of_exactly_the_maximum() -> None:
    buffer = LineBuffer(max_line_length=10)
    buffer.feed(b"x" * 10 + b"\r")  # still waiting for the LF
    assert buffer.next_line() is None
    buffer.feed(b"\n")
    assert buffer.next_line() == b"x" * 10


def test_line_buffer_refuses_a_long_line_before_its_end_arrives() -> None:
    buffer = LineBuffer(max_line_length=10)
    buffer.feed(b"x" * 11)
    assert buffer.next_line() is None  # 11 bytes may still be 10 + CR
    buffer.feed(b"x")
    with pytest.raises(MalformedReplyError, match="longer than 10 bytes"):
        buffer.next_line()


def test_line_buffer_refuses_a_long_complete_line() -> None:
    buffer = LineBuffer(max_line_length=10)
    buffer.feed(b"x" * 11 + b"\n")
    with pytest.raises(MalformedReplyError, match="longer than 10 bytes"):
        buffer.next_line()


def test_line_buffer_next_bytes() -> None:
    buffer = LineBuffer()
    buffer.feed(b"abc")
    assert buffer.next_bytes(4) is None
    buffer.feed(b"d\r\nx")
    assert buffer.next_bytes(4) == b"abcd"
    assert buffer.next_line() == b""
    assert buffer.buffer == b"x"


def test_line_buffer_scan_resumes_where_it_stopped() -> None:
    """Feeding a long line byte by byte finds its end (and stays linear)."""
    buffer = LineBuffer(max_line_length=5000)
    for _ in range(4000):
        buffer.feed(b"y")
        assert buffer.next_line() is None
    buffer.feed(b"\r\n")
    assert buffer.next_line() == b"y" * 4000


def test_line_buffer_rejects_a_nonpositive_maximum() -> None:
    with pytest.raises(ValueError):
        LineBuffer(max_line_length=0)


# -- SMTP ------------------------------------------------------------------------------

_EHLO = (
    b"250-mail.test Hello [127.0.0.1]\r\n"
    b"250-SIZE 10240000\r\n"
    b"250-starttls\r\n"
    b"250-AUTH PLAIN  LOGIN\r\n"
    b"250 8BITMIME\r\n"
)


@pytest.mark.parametrize("size", [1, 2, 7, 1000])
def test_smtp_multiline_reply_in_any_pieces(size: int) -> None:
    reply = feed_in_pieces(_EHLO, SMTPReplyParser().next_reply, size)
    assert reply.code == 250
    assert reply.lines[0] == "mail.test Hello [127.0.0.1]"
    assert parse_ehlo(reply) == {
        "SIZE": "10240000",
        "STARTTLS": "",
        "AUTH": "PLAIN  LOGIN",
        "8BITMIME": "",
    }


def test_smtp_replies_one_after_another() -> None:
    buffer = LineBuffer()
    buffer.feed(b"220 ready\r\n250 ok\r\n354")
    parser = SMTPReplyParser()
    assert parser.next_reply(buffer) == SMTPReply(220, ("ready",))
    assert parser.next_reply(buffer) == SMTPReply(250, ("ok",))
    assert parser.next_reply(buffer) is None
    assert buffer.buffer == b"354"


def test_smtp_bare_code_and_str() -> None:
    buffer = LineBuffer()
    buffer.feed(b"250\r\n")
    reply = SMTPReplyParser().next_reply(buffer)
    assert reply == SMTPReply(250, ("",))
    assert str(reply) == "250"
    assert str(SMTPReply(554, ("a", "b"))) == "554 a / b"
    assert SMTPReply(250, ("a", "b")).text == "a\nb"


@pytest.mark.parametrize(
    "line",
    [b"hello", b"25 short", b"2500 long", b"250x", b"650 bad class", b"", b"+OK"],
)
def test_smtp_malformed_lines(line: bytes) -> None:
    buffer = LineBuffer()
    buffer.feed(line + b"\r\n")
    with pytest.raises(MalformedReplyError, match="malformed SMTP"):
        SMTPReplyParser().next_reply(buffer)


def test_smtp_codes_must_agree() -> None:
    buffer = LineBuffer()
    buffer.feed(b"250-a\r\n251 b\r\n")
    with pytest.raises(MalformedReplyError, match="codes differ"):
        SMTPReplyParser().next_reply(buffer)


def test_smtp_reply_size_is_bounded() -> None:
    buffer = LineBuffer()
    parser = SMTPReplyParser(max_reply_size=100)
    buffer.feed(b"250-" + b"x" * 50 + b"\r\n")  # 56 bytes
    assert parser.next_reply(buffer) is None
    buffer.feed(b"250-" + b"x" * 50 + b"\r\n")
    with pytest.raises(MalformedReplyError, match="longer than 100 bytes"):
        parser.next_reply(buffer)


def test_smtp_undecodable_bytes_are_replaced() -> None:
    buffer = LineBuffer()
    buffer.feed(b"220 caf\xe9 \xff\r\n")
    reply = SMTPReplyParser().next_reply(buffer)
    assert reply is not None
    assert reply.lines == ("caf\ufffd \ufffd",)


# -- IMAP ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 3, 1000])
def test_imap_response_with_literal_in_any_pieces(size: int) -> None:
    data = b"* OK [ALERT] {12}\r\nline\r\nnext\r\n tail\r\n"
    response = feed_in_pieces(data, IMAPResponseParser().next_response, size)
    assert response == IMAPResponse("*", "OK", "[ALERT] {12}", data)


def test_imap_literal_plus_and_several_literals() -> None:
    data = b"* X {1+}\r\na {2}\r\nbc end\r\n"
    response = feed_in_pieces(data, IMAPResponseParser().next_response, 1)
    assert response.raw == data
    assert response.kind == "X"


def test_imap_tagged_untagged_and_continuation() -> None:
    buffer = LineBuffer()
    buffer.feed(
        b"* CAPABILITY IMAP4rev1 StartTLS auth=PLAIN\r\nS1 ok done\r\n+ more\r\n+\r\n"
    )
    parser = IMAPResponseParser()
    capability = parser.next_response(buffer)
    assert capability is not None
    assert capability.kind == "CAPABILITY"
    assert parse_imap_capabilities(capability) == {
        "IMAP4REV1",
        "STARTTLS",
        "AUTH=PLAIN",
    }
    done = parser.next_response(buffer)
    assert (done.tag, done.kind, done.text) == ("S1", "OK", "done")  # type: ignore[union-attr]
    assert str(done) == "S1 OK done"
    more = parser.next_response(buffer)
    assert (more.tag, more.kind, more.text) == ("+", "", "more")  # type: ignore[union-attr]
    bare = parser.next_response(buffer)
    assert (bare.tag, bare.text) == ("+", "")  # type: ignore[union-attr]


@pytest.mark.parametrize("line", [b"", b" OK no tag", b"S1", b"S1 ", b"\x01 OK"])
def test_imap_malformed(line: bytes) -> None:
    buffer = LineBuffer()
    buffer.feed(line + b"\r\n")
    with pytest.raises(MalformedReplyError, match="malformed IMAP"):
        IMAPResponseParser().next_response(buffer)


def test_imap_huge_literal_is_refused_before_it_arrives() -> None:
    buffer = LineBuffer()
    buffer.feed(b"* OK {9999999999}\r\n")
    with pytest.raises(MalformedReplyError, match="longer than 65536 bytes"):
        IMAPResponseParser().next_response(buffer)


# -- POP3 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"+OK", (True, "")),
        (b"+OK ready <1.2@x>", (True, "ready <1.2@x>")),
        (b"+ok lower", (True, "lower")),
        (b"-ERR no", (False, "no")),
    ],
)
def test_pop3_status(line: bytes, expected: tuple[bool, str]) -> None:
    assert parse_pop3_status(line) == expected


@pytest.mark.parametrize("line", [b"OK", b"+OKAY", b"* OK", b""])
def test_pop3_malformed_status(line: bytes) -> None:
    with pytest.raises(MalformedReplyError, match="malformed POP3"):
        parse_pop3_status(line)


@pytest.mark.parametrize("size", [1, 4, 1000])
def test_pop3_multiline_with_dot_stuffing(size: int) -> None:
    data = b"USER\r\n..hidden\r\nSASL PLAIN LOGIN\r\nstls\r\n.\r\n"
    lines = feed_in_pieces(data, POP3MultilineParser().next_body, size)
    assert lines == ["USER", ".hidden", "SASL PLAIN LOGIN", "stls"]
    assert parse_pop3_capa(lines) == {
        "USER": "",
        ".HIDDEN": "",
        "SASL": "PLAIN LOGIN",
        "STLS": "",
    }


def test_pop3_multiline_size_is_bounded() -> None:
    buffer = LineBuffer()
    buffer.feed(b"x" * 60 + b"\r\n" + b"y" * 60 + b"\r\n")
    with pytest.raises(MalformedReplyError, match="longer than 100 bytes"):
        POP3MultilineParser(max_reply_size=100).next_body(buffer)
