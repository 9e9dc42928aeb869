"""POP3 STLS (RFC 2595 section 4, RFC 2449 CAPA): the client dialogue."""

from __future__ import annotations

__all__ = ("POP3Result", "pop3")

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from anyio import aclose_forcefully
from anyio.abc import AnyByteStream

from ._channel import Channel, check_hostname
from ._exceptions import NotOfferedError, RefusedError, ReplyError
from ._lines import (
    DEFAULT_MAX_LINE_LENGTH,
    LineBuffer,
    POP3MultilineParser,
    parse_pop3_capa,
    parse_pop3_status,
)
from ._upgrade import WrapFunction, upgrade

if TYPE_CHECKING:
    import trio

    from .._anyio import TLSStream
    from ..trio import SSLStream

_S = TypeVar("_S")


@dataclass(frozen=True, eq=False)
class POP3Result(Generic[_S]):
    """What :func:`pop3` returns: the TLS stream and the capabilities it told."""

    #: the TLS stream, positioned after the CAPA response received over TLS
    stream: _S
    #: the capabilities of that response: name (upper case) -> parameters, such as
    #: ``{"USER": "", "SASL": "PLAIN LOGIN", "PIPELINING": ""}``
    capabilities: Mapping[str, str]
    #: bytes received over TLS after that response (normally empty): parse them
    #: before anything read from :attr:`stream`
    leftover: bytes = b""


def _status_line(buffer: LineBuffer) -> tuple[bool, str] | None:
    line = buffer.next_line()
    return None if line is None else parse_pop3_status(line)


@overload
async def pop3(
    stream: AnyByteStream,
    *,
    hostname: str,
    ssl_context: ssl.SSLContext | None = None,
    discard_injected: bool = False,
    max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
    wrap: None = None,
) -> POP3Result[TLSStream]: ...


@overload
async def pop3(
    stream: trio.abc.Stream,
    *,
    hostname: str,
    ssl_context: ssl.SSLContext | None = None,
    discard_injected: bool = False,
    max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
    wrap: None = None,
) -> POP3Result[SSLStream[Any]]: ...


@overload
async def pop3(
    stream: Any,
    *,
    hostname: str,
    ssl_context: ssl.SSLContext | None = None,
    discard_injected: bool = False,
    max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
    wrap: WrapFunction[_S],
) -> POP3Result[_S]: ...


@overload
async def pop3(
    stream: Any,
    *,
    hostname: str,
    ssl_context: ssl.SSLContext | None = None,
    discard_injected: bool = False,
    max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
    wrap: None = None,
) -> POP3Result[Any]: ...


async def pop3(
    stream: Any,
    *,
    hostname: str,
    ssl_context: ssl.SSLContext | None = None,
    discard_injected: bool = False,
    max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
    wrap: WrapFunction[Any] | None = None,
) -> POP3Result[Any]:
    """Upgrade a POP3 connection to TLS with STLS.

    Reads the greeting, sends CAPA, checks that STLS is offered, sends it, requires
    ``+OK``, upgrades (checking the certificate against *hostname*), forgets
    everything said before TLS (the greeting's APOP timestamp included) and sends
    CAPA again.

    :param stream: a connected plaintext stream (AnyIO byte stream or Trio stream)
        positioned before the server's greeting
    :param hostname: the server's name, checked against its certificate
    :param ssl_context: the client context; default: a secure default context
    :param discard_injected: drop bytes that follow the go-ahead instead of raising
        :exc:`InjectedDataError`
    :param max_line_length: longest response line accepted (bounded memory)
    :param wrap: the face (see :func:`upgrade`); default: chosen by stream type
    :return: the TLS stream, with the capabilities received over TLS
    :raises NotOfferedError: STLS was not offered (or CAPA is not supported, so it
        cannot have been)
    :raises RefusedError: STLS was answered with ``-ERR``
    :raises ReplyError: the greeting was ``-ERR``, or CAPA failed over TLS
    :raises InjectedDataError: bytes followed the go-ahead
    :raises MalformedReplyError: the server sent something that is not POP3
    :raises ConnectionClosedError: the server closed the connection
    :raises ~ssl.SSLError: the handshake failed, such as
        :exc:`ssl.SSLCertVerificationError` (on both faces)

    On any failure the connection is closed: never continue in plaintext.

    .. warning:: Cancelled, the connection is closed. Bound the whole dialogue
        with ``with anyio.fail_after(seconds):``, as a server may never answer.
    """
    check_hostname(hostname)
    current = stream
    try:
        channel = Channel(stream, protocol="POP3", max_line_length=max_line_length)
        ok, text = await channel.read(_status_line, "the greeting")
        if not ok:
            raise ReplyError(f"the POP3 server greeted with -ERR {text}", None, text)
        capabilities = await _capa(channel, before_tls=True)
        if "STLS" not in capabilities:
            raise NotOfferedError(
                "the POP3 server did not offer STLS (it offered: "
                f"{', '.join(capabilities) or 'nothing'}); refusing to continue in "
                "plaintext",
                capabilities,
            )
        await channel.send_line("STLS")
        ok, text = await channel.read(_status_line, "the STLS reply")
        if not ok:
            raise RefusedError(
                f"the POP3 server refused STLS: -ERR {text}", "STLS", text
            )
        current = await upgrade(
            stream,
            channel.buffer,
            hostname=hostname,
            ssl_context=ssl_context,
            discard_injected=discard_injected,
            wrap=wrap,
        )
        # RFC 2595 section 4: discard what CAPA said before TLS, ask again.
        channel = Channel(current, protocol="POP3", max_line_length=max_line_length)
        capabilities = await _capa(channel, before_tls=False)
        return POP3Result(
            stream=current,
            capabilities=MappingProxyType(capabilities),
            leftover=channel.buffer.clear(),
        )
    except BaseException:
        await aclose_forcefully(current)
        raise


async def _capa(channel: Channel, *, before_tls: bool) -> dict[str, str]:
    await channel.send_line("CAPA")
    ok, text = await channel.read(_status_line, "the CAPA reply")
    if not ok:
        if before_tls:
            raise NotOfferedError(
                f"the POP3 server does not support CAPA (-ERR {text}), so it cannot "
                "offer STLS; refusing to continue in plaintext",
                None,
            )
        raise ReplyError(
            f"the POP3 server answered CAPA with -ERR {text}", "CAPA", text
        )
    lines = await channel.read(POP3MultilineParser().next_body, "the CAPA list")
    return parse_pop3_capa(lines)
