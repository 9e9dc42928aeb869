"""The upgrade primitive, and what lets one dialogue run over either face.

:func:`upgrade` turns a plaintext stream into a TLS stream at a STARTTLS go-ahead,
refusing bytes that were buffered past the go-ahead line (the buffered-plaintext
rule). The face is a parameter (``wrap``): by default, a Trio stream (one with
``send_all``/``receive_some``) gets ``anyiotls.trio.SSLStream`` and anything else
``anyiotls.TLSStream``.
"""

from __future__ import annotations

__all__ = (
    "HasBuffer",
    "WrapFunction",
    "face_io",
    "upgrade",
    "wrap_anyio",
    "wrap_trio",
)

import logging
import ssl
import sys
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

from anyio import BrokenResourceError, EndOfStream, aclose_forcefully
from anyio.abc import AnyByteStream
from anyio.lowlevel import checkpoint
from anyio.streams.buffered import BufferedByteReceiveStream

from .._context import default_context
from .._engine import is_ragged_eof
from ._exceptions import ConnectionClosedError, InjectedDataError

if TYPE_CHECKING:
    import trio

    from .._anyio import TLSStream
    from ..trio import SSLStream

logger = logging.getLogger("anyiotls.starttls")

_T_co = TypeVar("_T_co", covariant=True)

#: How much a dialogue asks its transport for at once.
_RECEIVE_SIZE = 65536


class HasBuffer(Protocol):
    """A reader that holds bytes received but not yet consumed, in ``buffer``.

    :class:`anyio.streams.buffered.BufferedByteReceiveStream` and
    :class:`anyiotls.starttls.LineBuffer` are such readers.
    """

    @property
    def buffer(self) -> bytes:
        """The bytes received and not yet consumed."""
        ...


class WrapFunction(Protocol[_T_co]):
    """Wraps a plaintext stream in TLS (client side) and performs the handshake.

    Called as ``await wrap(stream, hostname=..., ssl_context=...)``; see
    :func:`wrap_anyio` and :func:`wrap_trio`.
    """

    def __call__(
        self,
        stream: Any,
        /,
        *,
        hostname: str | None,
        ssl_context: ssl.SSLContext | None,
    ) -> Awaitable[_T_co]:
        """Return the TLS stream once the handshake is done."""
        ...


async def wrap_anyio(
    stream: AnyByteStream,
    /,
    *,
    hostname: str | None,
    ssl_context: ssl.SSLContext | None,
) -> TLSStream:
    """The AnyIO face: ``await anyiotls.TLSStream.wrap(stream, ...)``, client side."""
    from .._anyio import TLSStream

    return await TLSStream.wrap(
        stream, server_side=False, hostname=hostname, ssl_context=ssl_context
    )


async def wrap_trio(
    stream: trio.abc.Stream,
    /,
    *,
    hostname: str | None,
    ssl_context: ssl.SSLContext | None,
) -> SSLStream[Any]:
    """The Trio face: ``anyiotls.trio.SSLStream`` over *stream*, handshake done."""
    from ..trio import SSLStream

    if ssl_context is None:
        ssl_context = default_context(server_side=False)
    tls: SSLStream[Any] = SSLStream(stream, ssl_context, server_hostname=hostname)
    await tls.do_handshake()
    return tls


def is_trio_stream(stream: object) -> bool:
    """``True`` for a Trio stream (``send_all``/``receive_some``), else AnyIO."""
    return hasattr(stream, "send_all") and hasattr(stream, "receive_some")


def _default_wrap(stream: object) -> WrapFunction[Any]:
    return wrap_trio if is_trio_stream(stream) else wrap_anyio


@overload
async def upgrade(
    stream: AnyByteStream,
    buffered: bytes | bytearray | memoryview | HasBuffer | None = None,
    *,
    hostname: str | None,
    ssl_context: ssl.SSLContext | None = None,
    discard_injected: bool = False,
    wrap: None = None,
) -> TLSStream: ...


@overload
async def upgrade(
    stream: trio.abc.Stream,
    buffered: bytes | bytearray | memoryview | HasBuffer | None = None,
    *,
    hostname: str | None,
    ssl_context: ssl.SSLContext | None = None,
    discard_injected: bool = False,
    wrap: None = None,
) -> SSLStream[Any]: ...


@overload
async def upgrade(
    stream: Any,
    buffered: bytes | bytearray | memoryview | HasBuffer | None = None,
    *,
    hostname: str | None,
    ssl_context: ssl.SSLContext | None = None,
    discard_injected: bool = False,
    wrap: WrapFunction[_T_co],
) -> _T_co: ...


@overload
async def upgrade(
    stream: Any,
    buffered: bytes | bytearray | memoryview | HasBuffer | None = None,
    *,
    hostname: str | None,
    ssl_context: ssl.SSLContext | None = None,
    discard_injected: bool = False,
    wrap: None = None,
) -> Any: ...


async def upgrade(
    stream: Any,
    buffered: bytes | bytearray | memoryview | HasBuffer | None = None,
    *,
    hostname: str | None,
    ssl_context: ssl.SSLContext | None = None,
    discard_injected: bool = False,
    wrap: WrapFunction[Any] | None = None,
) -> Any:
    """Upgrade a plaintext stream to TLS at the server's STARTTLS go-ahead.

    Call it right after reading the go-ahead line (SMTP ``220``, IMAP tagged ``OK``,
    POP3 ``+OK``), passing what your reader holds beyond that line. A correct
    server sends nothing more until the TLS handshake, so any such byte is
    attacker-controlled plaintext: it is refused (:exc:`InjectedDataError`), or
    with *discard_injected* dropped and logged (as :mod:`smtplib` does), and never
    delivered as if it had come over TLS. After the upgrade, read only from the
    returned stream, and forget everything learned before it (ask for the
    capabilities again).

    :param stream: the plaintext stream to wrap: an AnyIO byte stream, a Trio
        stream, or an :class:`anyio.streams.buffered.BufferedByteStream` (its
        buffer is checked and the stream it wraps is upgraded)
    :param buffered: what the caller's reader holds past the go-ahead: the bytes
        themselves, or the reader (anything with a ``buffer`` attribute, such as a
        :class:`~anyio.streams.buffered.BufferedByteReceiveStream` or a
        :class:`LineBuffer`)
    :param hostname: the server's name: sent as SNI and checked against its
        certificate (``None`` only with a context that does not check host names)
    :param ssl_context: the client context; default: a secure default context
    :param discard_injected: drop (and log a warning about) injected bytes instead
        of raising
    :param wrap: the face: ``await wrap(stream, hostname=..., ssl_context=...)``
        returns the TLS stream; default :func:`wrap_trio` for a Trio stream,
        :func:`wrap_anyio` otherwise
    :return: the TLS stream (:class:`anyiotls.TLSStream` or
        ``anyiotls.trio.SSLStream`` by default)
    :raises InjectedDataError: bytes followed the go-ahead
    :raises ~ssl.SSLError: the handshake failed, such as
        :exc:`ssl.SSLCertVerificationError` for a certificate of another host (on
        both faces: the Trio face's ``trio.BrokenResourceError`` is unpacked)
    :raises ConnectionClosedError: the transport ended or broke during the
        handshake

    On any failure, and when cancelled, the transport is closed (forcefully): a
    connection whose STARTTLS failed must not be used any more.
    """
    transport = stream
    if buffered is None and isinstance(stream, BufferedByteReceiveStream):
        buffered = stream
        transport = stream.receive_stream
        if not hasattr(transport, "send"):
            raise TypeError(
                "a BufferedByteReceiveStream cannot send: pass the full stream as "
                "stream and the buffered reader as buffered="
            )
    if buffered is None:
        pending = b""
    elif isinstance(buffered, (bytes, bytearray, memoryview)):
        pending = bytes(buffered)
    else:
        pending = bytes(buffered.buffer)
    try:
        await checkpoint()
        if pending:
            if not discard_injected:
                raise InjectedDataError(pending)
            logger.warning(
                "discarding %d byte(s) the server sent after its STARTTLS go-ahead",
                len(pending),
            )
        if wrap is None:
            wrap = _default_wrap(transport)
        try:
            return await wrap(transport, hostname=hostname, ssl_context=ssl_context)
        except _broken_types() as exc:
            cause = exc.__cause__
            if isinstance(cause, ssl.SSLError) and not _is_eof(cause):
                raise cause from None
            raise ConnectionClosedError(
                "the connection ended or broke during the TLS handshake"
                + (f": {cause!r}" if cause is not None else "")
            ) from exc
    except BaseException:
        await aclose_forcefully(transport)
        raise


def _broken_types() -> tuple[type[Exception], ...]:
    """The faces' "broken stream" exceptions (Trio's only if Trio is in use)."""
    trio = sys.modules.get("trio")
    if trio is None:
        return (BrokenResourceError,)
    return (BrokenResourceError, trio.BrokenResourceError)


def _is_eof(exc: ssl.SSLError) -> bool:
    # Some OpenSSL builds report an EOF in the middle of a handshake as a syscall
    # error (trio treats it the same way).
    return is_ragged_eof(exc) or isinstance(exc, ssl.SSLSyscallError)


# -- one dialogue, both faces ----------------------------------------------------------


class FaceIO(Protocol):
    """What a dialogue needs from a stream, whatever its face."""

    async def send(self, data: bytes) -> None:
        """Send all of *data*."""

    async def receive(self) -> bytes:
        """Receive some bytes; ``b""`` at the end of the stream."""


class _AnyIOIO:
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def send(self, data: bytes) -> None:
        try:
            await self._stream.send(data)
        except BrokenResourceError as exc:
            raise _broken(exc) from exc

    async def receive(self) -> bytes:
        try:
            data: bytes = await self._stream.receive(_RECEIVE_SIZE)
        except EndOfStream:
            return b""
        except BrokenResourceError as exc:
            raise _broken(exc) from exc
        return data


class _TrioIO:
    def __init__(self, stream: Any) -> None:
        import trio

        self._stream = stream
        self._broken = trio.BrokenResourceError

    async def send(self, data: bytes) -> None:
        try:
            await self._stream.send_all(data)
        except self._broken as exc:
            raise _broken(exc) from exc

    async def receive(self) -> bytes:
        try:
            data: bytes = await self._stream.receive_some(_RECEIVE_SIZE)
        except self._broken as exc:
            raise _broken(exc) from exc
        return data


def _broken(exc: BaseException) -> ConnectionClosedError:
    cause = exc.__cause__ or exc
    return ConnectionClosedError(
        f"the connection broke in the middle of the STARTTLS dialogue: {cause!r}"
    )


def face_io(stream: Any) -> FaceIO:
    """Send/receive over *stream*, a Trio stream or an AnyIO byte stream."""
    return _TrioIO(stream) if is_trio_stream(stream) else _AnyIOIO(stream)
