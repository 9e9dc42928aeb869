"""IMAP STARTTLS (RFC 9051 section 6.2.1, RFC 3501, RFC 2595): the client dialogue."""

from __future__ import annotations

__all__ = ("IMAPResult", "imap")

import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from anyio import aclose_forcefully
from anyio.abc import AnyByteStream

from ._channel import Channel, check_hostname
from ._exceptions import (
    MalformedReplyError,
    NotOfferedError,
    RefusedError,
    ReplyError,
)
from ._lines import (
    DEFAULT_MAX_LINE_LENGTH,
    DEFAULT_MAX_REPLY_SIZE,
    IMAPResponse,
    IMAPResponseParser,
    parse_imap_capabilities,
)
from ._upgrade import WrapFunction, upgrade

if TYPE_CHECKING:
    import trio

    from .._anyio import TLSStream
    from ..trio import SSLStream

_S = TypeVar("_S")


@dataclass(frozen=True, eq=False)
class IMAPResult(Generic[_S]):
    """What :func:`imap` returns: the TLS stream and the capabilities it told."""

    #: the TLS stream, positioned after the tagged reply to CAPABILITY over TLS
    stream: _S
    #: the capabilities advertised over TLS, in upper case, such as
    #: ``frozenset({"IMAP4REV1", "AUTH=PLAIN", "IDLE"})``
    capabilities: frozenset[str]
    #: untagged responses received over TLS along with the capabilities, other
    #: than CAPABILITY itself (normally none)
    untagged: tuple[IMAPResponse, ...] = ()
    #: bytes received over TLS after that reply (normally empty): parse them before
    #: anything read from :attr:`stream`
    leftover: bytes = b""


@overload
async def imap(
    stream: AnyByteStream,
    *,
    hostname: str,
    ssl_context: ssl.SSLContext | None = None,
    discard_injected: bool = False,
    max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
    tag_prefix: str = "S",
    wrap: None = None,
) -> IMAPResult[TLSStream]: ...


@overload
async def imap(
    stream: trio.abc.Stream,
    *,
    hostname: str,
    ssl_context: ssl.SSLContext | None = None,
    discard_injected: bool = False,
    max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
    tag_prefix: str = "S",
    wrap: None = None,
) -> IMAPResult[SSLStream[Any]]: ...


@overload
async def imap(
    stream: Any,
    *,
    hostname: str,
    ssl_context: ssl.SSLContext | None = None,
    discard_injected: bool = False,
    max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
    tag_prefix: str = "S",
    wrap: WrapFunction[_S],
) -> IMAPResult[_S]: ...


@overload
async def imap(
    stream: Any,
    *,
    hostname: str,
    ssl_context: ssl.SSLContext | None = None,
    discard_injected: bool = False,
    max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
    tag_prefix: str = "S",
    wrap: None = None,
) -> IMAPResult[Any]: ...


async def imap(
    stream: Any,
    *,
    hostname: str,
    ssl_context: ssl.SSLContext | None = None,
    discard_injected: bool = False,
    max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
    tag_prefix: str = "S",
    wrap: WrapFunction[Any] | None = None,
) -> IMAPResult[Any]:
    """Upgrade an IMAP connection to TLS with STARTTLS.

    Reads the greeting (``* OK``; a ``PREAUTH`` greeting is refused, as
    STARTTLS is impossible after it), sends CAPABILITY, checks that STARTTLS is
    offered, sends it, requires the tagged ``OK``, upgrades (checking the
    certificate against *hostname*), forgets everything said before TLS (including
    any capabilities in the STARTTLS reply) and sends CAPABILITY again.

    Commands are tagged ``S1``, ``S2``, ``S3`` (*tag_prefix* followed by a number).

    :param stream: a connected plaintext stream (AnyIO byte stream or Trio stream)
        positioned before the server's greeting
    :param hostname: the server's name, checked against its certificate
    :param ssl_context: the client context; default: a secure default context
    :param discard_injected: drop bytes that follow the go-ahead instead of raising
        :exc:`InjectedDataError`
    :param max_line_length: longest response line accepted (bounded memory)
    :param tag_prefix: the tags' prefix (letters and digits)
    :param wrap: the face (see :func:`upgrade`); default: chosen by stream type
    :return: the TLS stream, with the capabilities received over TLS
    :raises NotOfferedError: STARTTLS was not offered, or the greeting was PREAUTH
    :raises RefusedError: STARTTLS was answered with ``NO`` or ``BAD``
    :raises ReplyError: the server greeted with ``BYE``, said ``BYE`` later, or
        refused CAPABILITY
    :raises InjectedDataError: bytes followed the go-ahead
    :raises MalformedReplyError: the server sent something that is not IMAP
    :raises ConnectionClosedError: the server closed the connection
    :raises ~ssl.SSLError: the handshake failed, such as
        :exc:`ssl.SSLCertVerificationError` (on both faces)

    On any failure the connection is closed: never continue in plaintext.

    .. warning:: Cancelled, the connection is closed. Bound the whole dialogue
        with ``with anyio.fail_after(seconds):``, as a server may never answer.
    """
    check_hostname(hostname)
    if not tag_prefix.isalnum() or not tag_prefix.isascii():
        raise ValueError(f"tag_prefix must be letters and digits: {tag_prefix!r}")
    current = stream
    try:
        channel = Channel(stream, protocol="IMAP", max_line_length=max_line_length)
        parser = IMAPResponseParser()
        greeting = await channel.read(parser.next_response, "the greeting")
        if greeting.tag != "*" or greeting.kind not in ("OK", "PREAUTH", "BYE"):
            raise MalformedReplyError(f"unexpected IMAP greeting: {greeting}")
        if greeting.kind == "BYE":
            raise ReplyError(f"the IMAP server greeted with {greeting}", None, greeting)
        if greeting.kind == "PREAUTH":
            raise NotOfferedError(
                "the IMAP server greeted with PREAUTH, after which STARTTLS is not "
                "allowed (a man in the middle may have sent it to prevent TLS); "
                "refusing to continue in plaintext",
                None,
            )
        capabilities, _ = await _capability(channel, f"{tag_prefix}1")
        if "STARTTLS" not in capabilities:
            raise NotOfferedError(
                "the IMAP server did not offer STARTTLS (it offered: "
                f"{' '.join(sorted(capabilities)) or 'nothing'}); refusing to "
                "continue in plaintext",
                capabilities,
            )
        tag = f"{tag_prefix}2"
        await channel.send_line(f"{tag} STARTTLS", strict=False)
        done, _ = await _until_tagged(channel, tag)
        if done.kind != "OK":
            raise RefusedError(
                f"the IMAP server refused STARTTLS: {done}", "STARTTLS", done
            )
        current = await upgrade(
            stream,
            channel.buffer,
            hostname=hostname,
            ssl_context=ssl_context,
            discard_injected=discard_injected,
            wrap=wrap,
        )
        # RFC 9051 section 6.2.1: discard cached capabilities, ask again over TLS.
        channel = Channel(current, protocol="IMAP", max_line_length=max_line_length)
        capabilities, untagged = await _capability(channel, f"{tag_prefix}3")
        return IMAPResult(
            stream=current,
            capabilities=capabilities,
            untagged=untagged,
            leftover=channel.buffer.clear(),
        )
    except BaseException:
        await aclose_forcefully(current)
        raise


async def _until_tagged(
    channel: Channel, tag: str
) -> tuple[IMAPResponse, list[IMAPResponse]]:
    """Read responses up to the tagged one; return it and the untagged ones.

    The untagged ones together are bounded like one response, so a server cannot
    make us collect them without end.
    """
    untagged: list[IMAPResponse] = []
    size = 0
    parser = IMAPResponseParser()
    while True:
        response = await channel.read(parser.next_response, f"the reply to {tag}")
        if response.tag == tag:
            return response, untagged
        size += len(response.raw)
        if size > DEFAULT_MAX_REPLY_SIZE:
            raise MalformedReplyError(
                f"the IMAP server sent more than {DEFAULT_MAX_REPLY_SIZE} bytes of "
                f"untagged responses before its reply to {tag}"
            )
        if response.tag != "*":
            raise MalformedReplyError(
                f"unexpected IMAP response while waiting for {tag}: {response}"
            )
        if response.kind == "BYE":
            raise ReplyError(f"the IMAP server said {response}", None, response)
        untagged.append(response)


async def _capability(
    channel: Channel, tag: str
) -> tuple[frozenset[str], tuple[IMAPResponse, ...]]:
    await channel.send_line(f"{tag} CAPABILITY", strict=False)
    done, untagged = await _until_tagged(channel, tag)
    if done.kind != "OK":
        raise ReplyError(
            f"the IMAP server answered CAPABILITY with {done}", "CAPABILITY", done
        )
    capabilities: set[str] = set()
    others: list[IMAPResponse] = []
    for response in untagged:
        if response.kind == "CAPABILITY":
            capabilities |= parse_imap_capabilities(response)
        else:
            others.append(response)
    return frozenset(capabilities), tuple(others)
