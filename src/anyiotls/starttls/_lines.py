"""Sans-I/O line and reply parsing for the STARTTLS dialogues.

No networking here: bytes go into a :class:`LineBuffer` with ``feed()``; parsers
take complete lines (and IMAP literals) out of it and return a reply, or ``None``
when they need more bytes. Parsers keep their partial state between calls, so the
caller simply feeds more data and asks again.

Memory is bounded: a line longer than ``max_line_length`` and a reply longer than
``max_reply_size`` raise :exc:`MalformedReplyError` as soon as the buffer shows it,
without waiting for the end of the line.

Line ends: ``CRLF`` per the RFCs; a bare ``LF`` is accepted too (the ``CR`` is
stripped), as every real client does.
"""

from __future__ import annotations

__all__ = (
    "DEFAULT_MAX_LINE_LENGTH",
    "DEFAULT_MAX_REPLY_SIZE",
    "IMAPResponse",
    "IMAPResponseParser",
    "LineBuffer",
    "POP3MultilineParser",
    "SMTPReply",
    "SMTPReplyParser",
    "parse_ehlo",
    "parse_imap_capabilities",
    "parse_pop3_capa",
    "parse_pop3_status",
)

import re
from dataclasses import dataclass

from ._exceptions import MalformedReplyError

#: Longest line accepted, without its line end. RFC 5321 limits SMTP reply lines to
#: 512 octets and RFC 1939 POP3 lines likewise; IMAP has no limit but capability
#: lines of real servers stay under 1 KiB. 8 KiB leaves room for any of them.
DEFAULT_MAX_LINE_LENGTH = 8192

#: Largest reply accepted (all lines of a multi-line reply, IMAP literals included).
DEFAULT_MAX_REPLY_SIZE = 65536


def _decode(data: bytes) -> str:
    # Replies are ASCII (SMTPUTF8 servers may send UTF-8); never fail on a byte.
    return data.decode("utf-8", "replace")


class LineBuffer:
    """Bytes in, lines out: the buffer a line-based protocol reads replies through.

    :param max_line_length: longest line accepted, line end not counted

    Everything fed and not yet taken out is :attr:`buffer`: at a STARTTLS go-ahead,
    that must be empty (see :func:`anyiotls.starttls.upgrade`).
    """

    def __init__(self, max_line_length: int = DEFAULT_MAX_LINE_LENGTH) -> None:
        """See the class docstring."""
        if max_line_length < 1:
            raise ValueError("max_line_length must be a positive integer")
        self.max_line_length = max_line_length
        self._data = bytearray()
        #: where the search for b"\n" resumes (everything before has none)
        self._scanned = 0

    @property
    def buffer(self) -> bytes:
        """The bytes fed and not yet taken out."""
        return bytes(self._data)

    def __len__(self) -> int:
        """The number of bytes fed and not yet taken out."""
        return len(self._data)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes received from the peer."""
        self._data += data

    def clear(self) -> bytes:
        """Discard everything buffered; return what was discarded."""
        data = bytes(self._data)
        del self._data[:]
        self._scanned = 0
        return data

    def next_line(self) -> bytes | None:
        """Take out the next complete line, without its line end; ``None`` if none.

        :raises MalformedReplyError: the line is longer than ``max_line_length``
            (raised as soon as that many bytes arrived without a line end)
        """
        index = self._data.find(b"\n", self._scanned)
        if index < 0:
            self._scanned = len(self._data)
            # One byte of slack for a CR that may precede the LF still to come.
            if len(self._data) > self.max_line_length + 1:
                raise self._too_long()
            return None
        line = bytes(self._data[:index])
        del self._data[: index + 1]
        self._scanned = 0
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self.max_line_length:
            raise self._too_long()
        return line

    def next_bytes(self, count: int) -> bytes | None:
        """Take out exactly *count* bytes (an IMAP literal), or ``None``."""
        if len(self._data) < count:
            return None
        data = bytes(self._data[:count])
        del self._data[:count]
        self._scanned = 0
        return data

    def _too_long(self) -> MalformedReplyError:
        return MalformedReplyError(
            f"the server sent a line longer than {self.max_line_length} bytes"
        )


class _SizeLimit:
    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.size = 0

    def add(self, count: int) -> None:
        self.size += count
        if self.size > self.max_size:
            raise MalformedReplyError(
                f"the server sent a reply longer than {self.max_size} bytes"
            )


# -- SMTP (RFC 5321 section 4.2) and LMTP ----------------------------------------------


@dataclass(frozen=True)
class SMTPReply:
    """One SMTP reply: a code and its text lines (one per reply line)."""

    #: the three-digit reply code, such as 250
    code: int
    #: the text of each line, after the code and its separator
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        """The lines joined with newlines."""
        return "\n".join(self.lines)

    def __str__(self) -> str:
        """The reply on one line: ``554 first line / second line``."""
        return f"{self.code} {' / '.join(self.lines)}".rstrip()


_SMTP_LINE = re.compile(rb"([2-5][0-9][0-9])([ -]?)(.*)", re.DOTALL)


class SMTPReplyParser:
    """Parses one SMTP reply, single- or multi-line (``250-...`` then ``250 ...``).

    :param max_reply_size: the most bytes all lines of one reply may have
    """

    def __init__(self, max_reply_size: int = DEFAULT_MAX_REPLY_SIZE) -> None:
        """See the class docstring."""
        self._limit = _SizeLimit(max_reply_size)
        self._code: bytes | None = None
        self._lines: list[str] = []

    def next_reply(self, buffer: LineBuffer) -> SMTPReply | None:
        """Take the reply out of *buffer*; ``None`` if it is not complete yet.

        :raises MalformedReplyError: a line is not ``NNN[ -]text``, the codes of a
            multi-line reply differ, or the reply is too long
        """
        while (line := buffer.next_line()) is not None:
            self._limit.add(len(line) + 2)
            match = _SMTP_LINE.fullmatch(line)
            if match is None or (match[2] == b"" and match[3] != b""):
                raise MalformedReplyError(f"malformed SMTP reply line: {line[:80]!r}")
            code, separator, text = match.groups()
            if self._code is not None and code != self._code:
                raise MalformedReplyError(
                    f"SMTP reply codes differ within one reply: {self._code!r} then "
                    f"{code!r}"
                )
            self._code = code
            self._lines.append(_decode(text))
            if separator != b"-":
                reply = SMTPReply(int(code), tuple(self._lines))
                self._code = None
                self._lines = []
                self._limit.size = 0
                return reply
        return None


def parse_ehlo(reply: SMTPReply) -> dict[str, str]:
    """The service extensions of an EHLO/LHLO reply: keyword (upper case) -> params.

    The first line is the server's name, not an extension.
    """
    extensions: dict[str, str] = {}
    for line in reply.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            extensions.setdefault(keyword.upper(), params.strip())
    return extensions


# -- IMAP (RFC 9051, RFC 3501) ---------------------------------------------------------


@dataclass(frozen=True)
class IMAPResponse:
    """One IMAP response: ``*`` (untagged), ``+`` (continuation) or a command's tag.

    For ``* CAPABILITY IMAP4rev1 STARTTLS``: tag ``"*"``, kind ``"CAPABILITY"``,
    text ``"IMAP4rev1 STARTTLS"``. For ``A1 OK done``: tag ``"A1"``, kind ``"OK"``,
    text ``"done"``. For ``* 3 EXISTS``: kind ``"3"``, text ``"EXISTS"``.
    """

    #: ``"*"``, ``"+"`` or the tag of the command this completes
    tag: str
    #: the first word after the tag, in upper case (``OK``, ``NO``, ``BAD``, ``BYE``,
    #: ``PREAUTH``, ``CAPABILITY``, ...); ``""`` for a bare continuation
    kind: str
    #: the rest of the first line
    text: str
    #: the whole response as received (line ends and literals included)
    raw: bytes

    def __str__(self) -> str:
        """The first line of the response."""
        return f"{self.tag} {self.kind} {self.text}".rstrip()


_IMAP_TAG = re.compile(rb"[\x21-\x7e]+")
_IMAP_LITERAL = re.compile(rb"\{([0-9]{1,10})\+?\}\Z")


class IMAPResponseParser:
    """Parses one IMAP response, following literals (``{N}`` + N bytes) if any.

    :param max_reply_size: the most bytes one response may have, literals included
    """

    def __init__(self, max_reply_size: int = DEFAULT_MAX_REPLY_SIZE) -> None:
        """See the class docstring."""
        self._max_reply_size = max_reply_size
        self._reset()

    def _reset(self) -> None:
        self._limit = _SizeLimit(self._max_reply_size)
        self._first: bytes | None = None
        self._raw = bytearray()
        self._literal: int | None = None

    def next_response(self, buffer: LineBuffer) -> IMAPResponse | None:
        """Take the response out of *buffer*; ``None`` if it is not complete yet.

        :raises MalformedReplyError: no tag, a literal or response too long
        """
        while True:
            if self._literal is not None:
                data = buffer.next_bytes(self._literal)
                if data is None:
                    return None
                self._raw += data
                self._literal = None
            line = buffer.next_line()
            if line is None:
                return None
            self._limit.add(len(line) + 2)
            self._raw += line + b"\r\n"
            if self._first is None:
                self._first = line
            literal = _IMAP_LITERAL.search(line)
            if literal is not None:
                self._literal = int(literal[1])
                self._limit.add(self._literal)
                continue
            response = self._parse(self._first, bytes(self._raw))
            self._reset()
            return response

    @staticmethod
    def _parse(line: bytes, raw: bytes) -> IMAPResponse:
        tag, _, rest = line.partition(b" ")
        if not _IMAP_TAG.fullmatch(tag):
            raise MalformedReplyError(f"malformed IMAP response: {line[:80]!r}")
        if tag == b"+":
            return IMAPResponse("+", "", _decode(rest), raw)
        kind, _, text = rest.partition(b" ")
        if not kind:
            raise MalformedReplyError(f"malformed IMAP response: {line[:80]!r}")
        return IMAPResponse(_decode(tag), _decode(kind).upper(), _decode(text), raw)


def parse_imap_capabilities(response: IMAPResponse) -> frozenset[str]:
    """The capabilities of a ``* CAPABILITY`` response, in upper case."""
    return frozenset(word.upper() for word in response.text.split())


# -- POP3 (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS) -------------------------------------


def parse_pop3_status(line: bytes) -> tuple[bool, str]:
    """``(True, text)`` for ``+OK text``, ``(False, text)`` for ``-ERR text``.

    :raises MalformedReplyError: anything else
    """
    status, _, text = line.partition(b" ")
    if status.upper() == b"+OK":
        return True, _decode(text)
    if status.upper() == b"-ERR":
        return False, _decode(text)
    raise MalformedReplyError(f"malformed POP3 status line: {line[:80]!r}")


class POP3MultilineParser:
    """Parses the body of a multi-line POP3 response, up to the line ``.``.

    Lines are returned dot-unstuffed (``..x`` becomes ``.x``).

    :param max_reply_size: the most bytes the body may have
    """

    def __init__(self, max_reply_size: int = DEFAULT_MAX_REPLY_SIZE) -> None:
        """See the class docstring."""
        self._limit = _SizeLimit(max_reply_size)
        self._lines: list[str] = []

    def next_body(self, buffer: LineBuffer) -> list[str] | None:
        """Take the body out of *buffer*; ``None`` if the ``.`` line has not come."""
        while (line := buffer.next_line()) is not None:
            self._limit.add(len(line) + 2)
            if line == b".":
                lines, self._lines = self._lines, []
                self._limit.size = 0
                return lines
            if line.startswith(b"."):
                line = line[1:]
            self._lines.append(_decode(line))
        return None


def parse_pop3_capa(lines: list[str]) -> dict[str, str]:
    """The capabilities of a CAPA response: tag (upper case) -> parameters."""
    capabilities: dict[str, str] = {}
    for line in lines:
        name, _, params = line.strip().partition(" ")
        if name:
            capabilities.setdefault(name.upper(), params.strip())
    return capabilities
