"""SMTP (RFC 3207) and LMTP (RFC 2033) STARTTLS: the client dialogue."""

from __future__ import annotations

__all__ = ("SMTPResult", "lmtp", "smtp")

import ipaddress
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from anyio import aclose_forcefully
from anyio.abc import AnyByteStream, SocketAttribute

from ._channel import Channel, check_hostname
from ._exceptions import NotOfferedError, RefusedError, ReplyError
from ._lines import (
    DEFAULT_MAX_LINE_LENGTH,
    SMTPReply,
    SMTPReplyParser,
    parse_ehlo,
)
from ._upgrade import WrapFunction, upgrade

if TYPE_CHECKING:
    import trio

    from .._anyio import TLSStream
    from ..trio import SSLStream

_S = TypeVar("_S")


@dataclass(frozen=True, eq=False)
class SMTPResult(Generic[_S]):
    """What :func:`smtp` and :func:`lmtp` return: the TLS stream and what it told."""

    #: the TLS stream, positioned after the EHLO/LHLO reply received over TLS
    stream: _S
    #: the service extensions of that reply: keyword (upper case) -> parameters,
    #: such as ``{"SIZE": "10240000", "AUTH": "PLAIN LOGIN", "PIPELINING": ""}``
    extensions: Mapping[str, str]
    #: that reply itself (its first line is the server's name)
    reply: SMTPReply
    #: bytes received over TLS after that reply (normally empty): parse them before
    #: anything read from :attr:`stream`
    leftover: bytes = b""


def _address_literal(stream: Any) -> str:
    """An address literal for EHLO from the local address (RFC 5321 section 4.1.3)."""
    address: Any = None
    if hasattr(stream, "extra"):
        address = stream.extra(SocketAttribute.local_address, None)
    elif hasattr(stream, "socket"):  # a Trio SocketStream
        try:
            address = stream.socket.getsockname()
        except (OSError, AttributeError):
            address = None
    if isinstance(address, tuple) and address:
        try:
            ip = ipaddress.ip_address(str(address[0]).partition("%")[0])
        except ValueError:
            return "localhost"
        return f"[IPv6:{ip}]" if ip.version == 6 else f"[{ip}]"
    return "localhost"


@overload
async def smtp(
    stream: AnyByteStream,
    *,
    hostname: str,
    ssl_context: ssl.SSLContext | None = None,
    local_hostname: str | None = None,
    discard_injected: bool = False,
    max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
    wrap: None = None,
) -> SMTPResult[TLSStream]: ...


@overload
async def smtp(
    stream: trio.abc.Stream,
    *,
    hostname: str,
    ssl_context: ssl.SSLContext | None = None,
    local_hostname: str | None = None,
    discard_injected: bool = False,
    max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
    wrap: None = None,
) -> SMTPResult[SSLStream[Any]]: ...


@overload
async def smtp(
    stream: Any,
    *,
    hostname: str,
    ssl_context: ssl.SSLContext | None = None,
    local_hostname: str | None = None,
    discard_injected: bool = False,
    max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
    wrap: WrapFunction[_S],
) -> SMTPResult[_S]: ...


@overload
async def smtp(
    stream: Any,
    *,
    hostname: str,
    ssl_context: ssl.SSLContext | None = None,
    local_hostname: str | None = None,
    discard_injected: bool = False,
    max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
    wrap: None = None,
) -> SMTPResult[Any]: ...


async def smtp(
    stream: Any,
    *,
    hostname: str,
    ssl_context: ssl.SSLContext | None = None,
    local_hostname: str | None = None,
    discard_injected: bool = False,
    max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
    wrap: WrapFunction[Any] | None = None,
) -> SMTPResult[Any]:
    """Upgrade an SMTP connection to TLS with STARTTLS (RFC 3207).

    Reads the greeting, sends EHLO, checks that STARTTLS is offered, sends it,
    requires the ``220`` go-ahead, upgrades (checking the certificate against
    *hostname*), forgets everything said before TLS and sends EHLO again.

    :param stream: a connected plaintext stream (AnyIO byte stream or Trio stream)
        positioned before the server's greeting
    :param hostname: the server's name, checked against its certificate
    :param ssl_context: the client context; default: a secure default context
    :param local_hostname: the EHLO argument; default: an address literal of the
        local address, such as ``[192.0.2.1]``
    :param discard_injected: drop bytes that follow the go-ahead (as
        :mod:`smtplib` does) instead of raising :exc:`InjectedDataError`
    :param max_line_length: longest reply line accepted (bounded memory)
    :param wrap: the face (see :func:`upgrade`); default: chosen by stream type
    :return: the TLS stream, with the EHLO reply received over TLS
    :raises NotOfferedError: STARTTLS was not offered
    :raises RefusedError: STARTTLS was answered with something else than ``220``
    :raises ReplyError: the greeting or EHLO was refused
    :raises InjectedDataError: bytes followed the go-ahead
    :raises MalformedReplyError: the server sent something that is not SMTP
    :raises ConnectionClosedError: the server closed the connection
    :raises ~ssl.SSLError: the handshake failed, such as
        :exc:`ssl.SSLCertVerificationError` for a certificate of another host (on
        both faces)

    On any failure the connection is closed: never continue in plaintext.

    .. warning:: Cancelled, the connection is closed. Bound the whole dialogue
        with ``with anyio.fail_after(seconds):``, as a server may never answer.
    """
    return await _dialogue(
        stream,
        hello="EHLO",
        hostname=hostname,
        ssl_context=ssl_context,
        local_hostname=local_hostname,
        discard_injected=discard_injected,
        max_line_length=max_line_length,
        wrap=wrap,
    )


@overload
async def lmtp(
    stream: AnyByteStream,
    *,
    hostname: str,
    ssl_context: ssl.SSLContext | None = None,
    local_hostname: str | None = None,
    discard_injected: bool = False,
    max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
    wrap: None = None,
) -> SMTPResult[TLSStream]: ...


@overload
async def lmtp(
    stream: trio.abc.Stream,
    *,
    hostname: str,
    ssl_context: ssl.SSLContext | None = None,
    local_hostname: str | None = None,
    discard_injected: bool = False,
    max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
    wrap: None = None,
) -> SMTPResult[SSLStream[Any]]: ...


@overload
async def lmtp(
    stream: Any,
    *,
    hostname: str,
    ssl_context: ssl.SSLContext | None = None,
    local_hostname: str | None = None,
    discard_injected: bool = False,
    max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
    wrap: WrapFunction[_S],
) -> SMTPResult[_S]: ...


@overload
async def lmtp(
    stream: Any,
    *,
    hostname: str,
    ssl_context: ssl.SSLContext | None = None,
    local_hostname: str | None = None,
    discard_injected: bool = False,
    max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
    wrap: None = None,
) -> SMTPResult[Any]: ...


async def lmtp(
    stream: Any,
    *,
    hostname: str,
    ssl_context: ssl.SSLContext | None = None,
    local_hostname: str | None = None,
    discard_injected: bool = False,
    max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
    wrap: WrapFunction[Any] | None = None,
) -> SMTPResult[Any]:
    """Upgrade an LMTP connection (RFC 2033) to TLS: :func:`smtp` with LHLO.

    Same parameters, result, exceptions and cancellation as :func:`smtp`.
    """
    return await _dialogue(
        stream,
        hello="LHLO",
        hostname=hostname,
        ssl_context=ssl_context,
        local_hostname=local_hostname,
        discard_injected=discard_injected,
        max_line_length=max_line_length,
        wrap=wrap,
    )


async def _dialogue(
    stream: Any,
    *,
    hello: str,
    hostname: str,
    ssl_context: ssl.SSLContext | None,
    local_hostname: str | None,
    discard_injected: bool,
    max_line_length: int,
    wrap: WrapFunction[Any] | None,
) -> SMTPResult[Any]:
    name = "LMTP" if hello == "LHLO" else "SMTP"
    check_hostname(hostname)
    if local_hostname is None:
        local_hostname = _address_literal(stream)
    if (
        not local_hostname
        or not local_hostname.isascii()
        or not local_hostname.isprintable()
        or " " in local_hostname
    ):
        raise ValueError(f"invalid local_hostname: {local_hostname!r}")
    current = stream
    try:
        channel = Channel(stream, protocol=name, max_line_length=max_line_length)
        greeting = await channel.read(SMTPReplyParser().next_reply, "the greeting")
        if greeting.code != 220:
            raise ReplyError(
                f"the {name} server greeted with {greeting}", None, greeting
            )
        command = f"{hello} {local_hostname}"
        reply = await _command(channel, command, 250)
        extensions = parse_ehlo(reply)
        if "STARTTLS" not in extensions:
            raise NotOfferedError(
                f"the {name} server did not offer STARTTLS in its {hello} reply "
                f"(it offered: {', '.join(extensions) or 'nothing'}); refusing to "
                "continue in plaintext",
                extensions,
            )
        await channel.send_line("STARTTLS")
        reply = await channel.read(SMTPReplyParser().next_reply, "the STARTTLS reply")
        if reply.code != 220:
            raise RefusedError(
                f"the {name} server refused STARTTLS: {reply}", "STARTTLS", reply
            )
        current = await upgrade(
            stream,
            channel.buffer,
            hostname=hostname,
            ssl_context=ssl_context,
            discard_injected=discard_injected,
            wrap=wrap,
        )
        # RFC 3207 section 4.2: discard all knowledge obtained before TLS.
        channel = Channel(current, protocol=name, max_line_length=max_line_length)
        reply = await _command(channel, command, 250)
        return SMTPResult(
            stream=current,
            extensions=MappingProxyType(parse_ehlo(reply)),
            reply=reply,
            leftover=channel.buffer.clear(),
        )
    except BaseException:
        await aclose_forcefully(current)
        raise


async def _command(channel: Channel, command: str, expected: int) -> SMTPReply:
    await channel.send_line(command)
    verb = command.partition(" ")[0]
    reply = await channel.read(SMTPReplyParser().next_reply, f"the {verb} reply")
    if reply.code != expected:
        raise ReplyError(
            f"the {channel.protocol} server answered {verb} with {reply}", verb, reply
        )
    return reply
