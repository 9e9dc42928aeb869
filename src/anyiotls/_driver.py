"""The one retry loop between a :class:`~anyiotls._engine.TLSEngine` and a transport.

Why the loop looks the way it does is the theory of operation at the top of
``_engine.py``; the locking rules are in ``_locks.py``. This file owns the
*cancellation rules*: what a cancellation at each await point leaves behind.

==========================  ===========================================================
await point                 cancelled there
==========================  ===========================================================
waiting for the send lock   nothing happened; for ``send``, no byte of the item was
                            encrypted (the lock is taken *before* ``write()``). Bytes
                            other steps left in the outgoing BIO stay there and leave
                            with the next flush.
``transport.send``          the transport may hold part of a record: the stream is
                            broken (every later call raises the face's
                            ``BrokenResourceError``). Plaintext a ``receive`` had
                            already decrypted is kept and returned by the next
                            ``receive`` before the error.
waiting for receive lock    nothing happened.
``transport.receive``       nothing happened (the transport returns nothing to a
                            cancelled receive). The driver itself interrupts a
                            ``receive`` waiting here when another task put plaintext
                            in the backlog (``_to_backlog``): it returns that data.
waiting for room            (a step stopped at the backlog's bound, waiting for
                            another task's ``receive``) nothing happened: the
                            backlog keeps what was decrypted; a TLS 1.2 ``send``
                            that had to wait is broken, as at ``transport.receive``.
waiting for the handshake   (a task waiting for another task's handshake) nothing
                            happened to the stream.
the ``verify_peer`` hook    as a cancelled handshake: the stream is broken (the
                            handshake failed); no application data was exchanged.
final checkpoint            not cancellable (``cancel_shielded_checkpoint``), so a
                            finished step always returns its result.
==========================  ===========================================================

Fast paths: ``send`` and ``receive`` first try one step with a single flush (and, for
``receive``, a single transport read) without entering :meth:`TLSDriver._retry`.
They add no await point: the cancellation check before a write, the flush and the
transport read are the ones in the table. Whatever they cannot finish (NEED_DATA, an
ssl error, bytes to flush after a read, a lock held by another task) they leave in a
state the loop resumes from: the loop calls the step again, OpenSSL wants a write
retried with the same data, the engine raises a recorded error again, and plaintext
put back at the front of the backlog is what the next read step returns first.

Bounds. Only ``receive`` reads for the application at its own pace; the other steps
that must read past application data (a post-handshake certificate waiter, a TLS 1.2
writer during a renegotiation, ``send_eof``) decrypt it into the backlog, at most
``max_read_ahead`` bytes (:meth:`TLSDriver._backlog_room`). At the bound the retry
loop reads nothing more from the transport (the peer is held back by TCP) and
waits for a ``receive`` in another task to take some (:meth:`TLSDriver._wait_for_room`),
or raises :exc:`ReadAheadLimitError` when the receiving task is the waiting one.
Ciphertext read ahead is at most one transport read (``TRANSPORT_RECEIVE_SIZE``)
plus a partial record: the loop receives only after a step returned NEED_DATA,
which the engine does only once its staged bytes are used. ``unwrap`` and ``aclose``
discard instead of keeping. The closing operations wait for the peer at most
``close_timeout`` seconds (a cancel scope of their own): ``aclose`` then closes the
transport forcefully, ``unwrap`` breaks the stream with :exc:`CloseTimeoutError`.

Consequences, per operation: a cancelled ``receive`` loses no data and leaves the
stream usable unless it was flushing a protocol message (a KeyUpdate answer, a
post-handshake reply) right then; a cancelled ``send`` either sent nothing (usable) or
broke the stream; a cancelled handshake breaks the stream (the faces close the
transport); a cancelled ``unwrap`` that already sent close_notify may be called again;
a TLS 1.2 ``send`` cancelled while a renegotiation makes it wait for the peer breaks
the stream (OpenSSL may have encrypted part of the item and must be retried with it).
"""

from __future__ import annotations

__all__ = (
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_MAX_READ_AHEAD",
    "FaceErrors",
    "TLSDriver",
    "check_limits",
)

import enum
import ssl
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, NamedTuple, TypeVar

from anyio import CancelScope, Event, get_current_task, move_on_after
from anyio.abc import ByteReceiveStream
from anyio.lowlevel import (
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
)

from ._engine import NEED_DATA, TLSEngine, is_ragged_eof
from ._exceptions import CloseTimeoutError, PostHandshakeAuthError, ReadAheadLimitError
from ._locks import FIFOLock

_T = TypeVar("_T")
_A = TypeVar("_A")

#: Plaintext taken out of the engine per read when a step other than ``receive``
#: decrypts into the backlog (a post-handshake auth waiter, a TLS 1.2 writer).
RECEIVE_SIZE = 65536


#: Seconds a fatal error may spend telling the peer (an alert) before giving up.
ALERT_SEND_TIMEOUT = 1.0

#: Default ``max_read_ahead``: plaintext an operation other than ``receive`` may
#: decrypt ahead of the application (the backlog) before it stops reading the
#: transport. 64 full records: a renegotiation or a certificate answer that arrives
#: behind a burst of data is still seen, while a peer that floods (or uploads a body
#: while the server waits for its certificate) is held back by TCP, not our memory.
DEFAULT_MAX_READ_AHEAD = 1048576

#: Default ``close_timeout``: seconds the closing operations wait for the peer
#: (its close_notify, a pending certificate answer, a transport that takes our
#: close_notify). Real servers often never answer close_notify; a few seconds is
#: long enough for any peer that does, over any network.
DEFAULT_CLOSE_TIMEOUT = 5.0


def check_limits(max_read_ahead: int, close_timeout: float | None) -> None:
    """Raise :exc:`TypeError`/:exc:`ValueError` for a bad ``max_read_ahead`` or
    ``close_timeout`` (called by the faces' constructors, listeners and helpers)."""
    if isinstance(max_read_ahead, bool) or not isinstance(max_read_ahead, int):
        raise TypeError(
            f"max_read_ahead must be an int, not {type(max_read_ahead).__name__}"
        )
    if max_read_ahead < 1:
        raise ValueError(f"max_read_ahead must be >= 1, not {max_read_ahead}")
    if close_timeout is not None:
        if isinstance(close_timeout, bool) or not isinstance(
            close_timeout, (int, float)
        ):
            raise TypeError(
                "close_timeout must be a number of seconds or None, not "
                f"{type(close_timeout).__name__}"
            )
        if not close_timeout >= 0:  # also refuses NaN
            raise ValueError(f"close_timeout must be >= 0, not {close_timeout}")


#: What a byte stream transport is asked for per receive: what asyncio reads per
#: socket read anyway. Bulk transfers take fewer, larger reads (AnyIO's asyncio
#: socket stream would otherwise split and copy its 256 KiB chunks; Trio sockets
#: would make four times as many ``recv`` calls). The rest waits in the incoming BIO.
TRANSPORT_RECEIVE_SIZE = 262144


def _receive_size(receive: Callable[..., Awaitable[bytes]]) -> int | None:
    """:data:`TRANSPORT_RECEIVE_SIZE` if *receive* is an AnyIO byte stream's
    ``receive`` or a Trio stream's ``receive_some`` (both take a size by contract),
    else ``None``: object streams and other callables are called without one.

    Remembered per transport type (``isinstance`` against an ABC costs more than the
    rest of building a driver); at most :data:`_RECEIVE_SIZES_KEPT` types are kept.
    """
    owner = getattr(receive, "__self__", None)
    name = getattr(receive, "__name__", None)
    key = (type(owner), name)
    try:
        return _receive_sizes[key]
    except KeyError:
        pass
    trio = sys.modules.get("trio")  # only a Trio program has Trio streams
    size = (
        TRANSPORT_RECEIVE_SIZE
        if (name == "receive" and isinstance(owner, ByteReceiveStream))
        or (
            name == "receive_some"
            and trio is not None
            and isinstance(owner, trio.abc.ReceiveStream)
        )
        else None
    )
    if len(_receive_sizes) < _RECEIVE_SIZES_KEPT:
        _receive_sizes[key] = size
    return size


_RECEIVE_SIZES_KEPT = 64
_receive_sizes: dict[tuple[type, str | None], int | None] = {}


class _Checkpoints(NamedTuple):
    checkpoint: Callable[[], Awaitable[None]]
    checkpoint_if_cancelled: Callable[[], Awaitable[None]]
    cancel_shielded_checkpoint: Callable[[], Awaitable[None]]


#: AnyIO's public functions: they look the running backend up on every call.
_PUBLIC_CHECKPOINTS = _Checkpoints(
    checkpoint, checkpoint_if_cancelled, cancel_shielded_checkpoint
)


def _find_get_async_backend() -> Callable[[], Any] | None:
    """AnyIO's internal ``get_async_backend`` (present since 4.0), if it exists.

    Imported once: an import statement in :func:`_backend_checkpoints` would cost
    more (0.7 µs) than the lookup itself (0.2 µs).
    """
    try:
        from anyio._core._eventloop import get_async_backend
    except ImportError:  # pragma: no cover - a future AnyIO without this name
        return None
    return get_async_backend


_get_async_backend = _find_get_async_backend()


def _backend_checkpoints() -> _Checkpoints:
    """The running event loop's own checkpoint functions, found once per stream.

    ``anyio.lowlevel.checkpoint_if_cancelled()`` asks sniffio which library runs and
    looks its backend up on *every* call: half of its 1.4 µs on asyncio, paid twice
    per send and receive. A stream lives in one event loop, so the driver looks the
    backend up once, at the handshake (should AnyIO's internal lookup move, the
    public functions are used).
    """
    if _get_async_backend is None:  # pragma: no cover
        return _PUBLIC_CHECKPOINTS
    try:
        backend = _get_async_backend()
    except Exception:  # pragma: no cover - a future AnyIO that works differently
        return _PUBLIC_CHECKPOINTS
    found = _checkpoints_by_backend.get(backend)
    if found is None:
        trio = sys.modules.get("trio")
        if trio is not None and backend.__name__ == "TrioBackend":
            # AnyIO's Trio backend only wraps these (one coroutine less each).
            found = _Checkpoints(
                trio.lowlevel.checkpoint,
                trio.lowlevel.checkpoint_if_cancelled,
                trio.lowlevel.cancel_shielded_checkpoint,
            )
        else:
            found = _Checkpoints(
                backend.checkpoint,
                backend.checkpoint_if_cancelled,
                backend.cancel_shielded_checkpoint,
            )
        _checkpoints_by_backend[backend] = found
    return found


_checkpoints_by_backend: dict[Any, _Checkpoints] = {}


def _describe(exc: BaseException) -> BaseException:
    """The cause to record for a broken stream: cancellations become a sentence."""
    if isinstance(exc, Exception):
        return exc
    return RuntimeError(
        f"the stream was broken by {type(exc).__name__} in the middle of an operation "
        "that could not be undone (a transport send, a handshake or a renegotiation)"
    )


def _closed_without_answer() -> PostHandshakeAuthError:
    return PostHandshakeAuthError(
        "the client closed the connection without answering the certificate request"
    )


class FaceErrors(NamedTuple):
    """The exception types a face wants its callers to see."""

    broken: type[Exception]
    closed: type[Exception]
    #: makes the ``BusyResourceError`` for a second task sending at once
    busy_sending: Callable[[], Exception]
    #: ... and for a second task receiving at once
    busy_receiving: Callable[[], Exception]
    #: transport exceptions the face's anchor turns into ``broken`` (AnyIO's
    #: ``TLSStream`` does so with ``OSError``); every other one propagates as it is
    wrapped_transport_errors: tuple[type[Exception], ...] = ()


class _State(enum.Enum):
    OPEN = "open"
    BROKEN = "broken"
    CLOSED = "closed"


class _StepKind(enum.Enum):
    """What a step of :meth:`TLSDriver._retry` does for its caller."""

    #: the handshake, unwrap, waiting for a client certificate
    PROTOCOL = "protocol"
    #: ``receive``: returns plaintext the application asked for
    READ = "read"
    #: ``send``: encrypts the application's data
    WRITE = "write"


class _Handshake(enum.Enum):
    NOT_STARTED = "not started"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class TLSDriver:
    """Drives a :class:`TLSEngine` over a transport; shared by both faces."""

    __slots__ = (
        "_backlog",
        "_backlog_reader",
        "_before_handshake",
        "_broken_cause",
        "_close_notify_sent",
        "_close_timeout",
        "_cp",
        "_engine",
        "_errors",
        "_handshake",
        "_handshake_finished",
        "_held",
        "_max_read_ahead",
        "_ragged_eof_is_error",
        "_receive_size",
        "_receive_wakeable",
        "_receiving",
        "_recv_count",
        "_recv_lock",
        "_recv_wakeup",
        "_renegotiable",
        "_room_made",
        "_send_lock",
        "_sending",
        "_state",
        "_transport_at_eof",
        "_transport_eof",
        "_transport_receive",
        "_transport_send",
        "_verify_peer",
        "_verifying_task",
        "_version",
    )

    def __init__(
        self,
        engine: TLSEngine,
        *,
        transport_send: Callable[[bytes], Awaitable[Any]],
        transport_receive: Callable[[], Awaitable[bytes]],
        transport_eof: type[BaseException] | tuple[type[BaseException], ...],
        errors: FaceErrors,
        ragged_eof_is_error: bool,
        verify_peer: Callable[[], Awaitable[None]] | None = None,
        max_read_ahead: int = DEFAULT_MAX_READ_AHEAD,
        close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
    ) -> None:
        self._engine = engine
        #: most plaintext kept in the backlog (see "Bounds" in the module docstring)
        self._max_read_ahead = max_read_ahead
        #: seconds the closing operations wait for the peer (``None``: no limit)
        self._close_timeout = close_timeout
        #: run after the handshake's messages, before it counts as done (see
        #: :meth:`handshake`); raises an ssl.SSLError to reject the peer
        self._verify_peer = verify_peer
        #: the task running ``_verify_peer`` (None: not running; -1: it has run)
        self._verifying_task: int | None = None
        self._transport_send = transport_send
        self._transport_receive: Callable[..., Awaitable[bytes]] = transport_receive
        self._receive_size = _receive_size(transport_receive)
        self._transport_eof = transport_eof
        self._errors = errors
        self._ragged_eof_is_error = ragged_eof_is_error
        #: a TLS 1.3 server's session tickets, held back for the next flush (see
        #: :meth:`handshake`)
        self._held = b""
        self._state = _State.OPEN
        #: the checkpoint functions; the running backend's own from the handshake on
        self._cp = _PUBLIC_CHECKPOINTS
        self._broken_cause: BaseException | None = None
        self._handshake = _Handshake.NOT_STARTED
        self._handshake_finished: Event | None = None
        self._close_notify_sent = False
        self._transport_at_eof = False
        self._send_lock = FIFOLock()
        self._recv_lock = FIFOLock()
        self._recv_count = 0
        #: the cancel scope of a ``receive()`` waiting on the transport, if wakeable
        self._recv_wakeup: CancelScope | None = None
        #: whether another task may decrypt data for ``receive()`` (TLS 1.2 writes
        #: during a renegotiation, a post-handshake auth waiter): set by handshake()
        self._receive_wakeable = False
        #: whether ``send`` calls :meth:`_write_step` (below TLS 1.3) or the bare
        #: ``write`` (TLS 1.3: no peer can renegotiate); set by handshake(). A flag,
        #: not a stored bound method: that would be a reference cycle per stream.
        self._renegotiable = True
        #: plaintext decrypted but not yet returned by ``receive`` (kept in order)
        self._backlog = bytearray()
        #: the task whose ``receive`` last took data from the backlog (None: none
        #: yet): at the bound, a step in another task waits for it to make room
        self._backlog_reader: int | None = None
        #: set when ``receive`` makes room in a full backlog (made by a waiter)
        self._room_made: Event | None = None
        #: the TLS version the handshake agreed on (the SSLObject's ``version()``
        #: says ``None`` again after some failures, e.g. a ragged EOF)
        self._version: str | None = None
        #: a task is inside ``send`` / ``receive`` (a second one is the caller's bug:
        #: see the locking rules). Two flags, not two ConflictDetector objects: a
        #: stream is built per connection, and each object costs its construction.
        self._sending = False
        self._receiving = False
        #: see :meth:`replace_engine_before_handshake`
        self._before_handshake: Callable[[], Awaitable[TLSEngine]] | None = None

    def replace_engine_before_handshake(
        self, make_engine: Callable[[], Awaitable[TLSEngine]]
    ) -> None:
        """Have the handshake first await *make_engine* and use the engine it returns.

        For a server that must read the ClientHello before it can build its engine
        (the Trio face's listener choosing a context): the handshake's waiters,
        failure and cancellation rules then cover that read too. *make_engine*
        runs once, in the task that runs the handshake; what it raises fails the
        handshake as a step's error would.
        """
        self._before_handshake = make_engine

    # -- state -----------------------------------------------------------------------

    @property
    def engine(self) -> TLSEngine:
        """The engine this driver moves bytes for."""
        return self._engine

    @property
    def close_timeout(self) -> float | None:
        """Seconds the closing operations wait for the peer (``None``: no limit)."""
        return self._close_timeout

    @property
    def handshake_done(self) -> bool:
        """``True`` once the handshake completed successfully."""
        return self._handshake is _Handshake.DONE

    @property
    def tls_handshake_done(self) -> bool:
        """``True`` once the handshake's messages are done: already while the
        ``verify_peer`` hook runs (and after it rejected the peer), when
        :attr:`handshake_done` is still ``False``."""
        return self._handshake is _Handshake.DONE or self._verifying_task is not None

    @property
    def handshake_failed(self) -> bool:
        """``True`` once a handshake failed or was cancelled (the stream is broken)."""
        return self._handshake is _Handshake.FAILED

    @property
    def is_closed(self) -> bool:
        """``True`` once the stream was closed or unwrapped (not merely broken)."""
        return self._state is _State.CLOSED

    @property
    def is_usable(self) -> bool:
        """``False`` once the stream is broken or closed."""
        return self._state is _State.OPEN

    def _state_error(self) -> Exception:
        if self._state is _State.CLOSED:
            return self._errors.closed()
        exc = self._errors.broken()
        exc.__cause__ = self._broken_cause
        return exc

    def _break(self, cause: BaseException) -> Exception:
        """Mark the stream broken by *cause*; return the exception to raise.

        If this side closed the stream while the operation was in flight, the
        transport's error is the consequence of that close: the face's
        ``ClosedResourceError`` (``__cause__``: *cause*) is returned instead.
        """
        if self._state is _State.OPEN:
            self._state = _State.BROKEN
            self._broken_cause = cause
            self._wake_room_waiters()
        exc = (
            self._errors.closed()
            if self._state is _State.CLOSED
            else self._errors.broken()
        )
        exc.__cause__ = cause
        return exc

    def _transport_failed(self, exc: Exception) -> Exception:
        """The transport raised *exc*: mark the stream broken; return what to raise.

        As with ``trio.SSLStream`` and ``anyio.streams.tls``, the transport's own
        exception leaves the call in which it happened (code that catches its
        transport's exceptions keeps working, and a bug in a custom transport is not
        disguised as a network failure); later calls raise the face's
        ``BrokenResourceError`` with it as ``__cause__``. Two exceptions: if this
        side closed the stream meanwhile, the face's ``ClosedResourceError``; and
        what the face's anchor wraps (:attr:`FaceErrors.wrapped_transport_errors`)
        comes wrapped as the anchor does it.
        """
        if self._state is _State.CLOSED or isinstance(
            exc, self._errors.wrapped_transport_errors
        ):
            return self._break(exc)
        self._break(exc)
        return exc

    @contextmanager
    def _claimed(
        self, *, sending: bool = False, receiving: bool = False
    ) -> Iterator[None]:
        """Claim the send and/or receive side for one of the rarer operations.

        Another task already there gets the face's ``BusyResourceError`` at once.
        (``send`` and ``receive`` check their flag inline.)
        """
        if receiving and self._receiving:
            raise self._errors.busy_receiving()
        if sending and self._sending:
            raise self._errors.busy_sending()
        self._receiving |= receiving
        self._sending |= sending
        try:
            yield
        finally:
            if receiving:
                self._receiving = False
            if sending:
                self._sending = False

    def mark_closed(self) -> None:
        """Make every later operation raise the face's ``ClosedResourceError``."""
        self._state = _State.CLOSED
        self._wake_room_waiters()

    # -- the retry loop --------------------------------------------------------------

    async def _retry(
        self,
        step: Callable[[_A], _T | None],
        arg: _A,
        kind: _StepKind = _StepKind.PROTOCOL,
        started: bool = False,
    ) -> _T | None:
        """Call *step* until it returns a result; flush after every call.

        *kind* says what the step does for its caller (see :class:`_StepKind`):
        a ``WRITE`` (``send``) takes the send lock before its first call, so a
        cancellation cannot strike between encrypting the item and sending it; a
        ``READ`` (``receive``) returns plaintext, put back into the backlog if the
        flush after it fails, and its wait for the transport may be woken by another
        task's plaintext. *started*: the caller's fast path already made the first
        attempt, through the cancellation check and (a read) a checkpoint; for a
        write that means the step asked for data, so it must now be finished.

        Raises what the step raises (:exc:`ssl.SSLError`), what the transport raises
        (see :meth:`_transport_failed`), or a cancellation.

        Invariant: the send lock is held only while calling the step or flushing,
        never while waiting for the peer.
        """
        engine = self._engine
        send_lock = self._send_lock
        writing = kind is _StepKind.WRITE
        wakeable = kind is _StepKind.READ and self._receive_wakeable
        holding = False
        # A read's fast path has been through a checkpoint; a write's only through
        # the cancellation check.
        yielded = started and not writing
        must_finish = writing and started  # a write that needed data, or break
        try:
            while True:
                if writing and not holding:
                    if not send_lock.try_acquire():
                        yielded |= await send_lock.acquire()
                    holding = True
                try:
                    result = step(arg)
                except ssl.SSLError:
                    # Tell the peer why (an alert), if the send lock is ours to take.
                    if engine.has_data_to_send and (holding or not send_lock.locked):
                        if not holding:
                            send_lock.try_acquire()  # free (tested above)
                            holding = True
                        await self._send_alert()
                    raise
                if engine.has_data_to_send:
                    try:
                        if not holding:
                            if not send_lock.try_acquire():
                                yielded |= await send_lock.acquire()
                            holding = True
                        await self._flush()
                        yielded = True
                    except BaseException:
                        if kind is _StepKind.READ and isinstance(result, bytes):
                            self._backlog[0:0] = result
                        raise
                if result is not NEED_DATA:
                    break
                must_finish = writing
                if holding:
                    send_lock.release()
                    holding = False
                if len(self._backlog) >= self._max_read_ahead:
                    # The step stopped decrypting at the bound: read nothing more
                    # from the transport until receive() takes some of it.
                    await self._wait_for_room()
                else:
                    await self._receive_into_engine(wakeable)
                yielded = True
        except BaseException as exc:
            if must_finish:
                self._break(_describe(exc))
            raise
        finally:
            if holding:
                send_lock.release()
        if not yielded:
            await self._cp.cancel_shielded_checkpoint()
        return result

    async def _send_message(self, step: Callable[[_A], Any], arg: _A) -> None:
        """Call *step*, which only writes a protocol message (close_notify, a
        CertificateRequest), once under the send lock, and flush what it wrote.

        Taking the lock first means a cancellation while waiting for it leaves
        nothing queued; the flush's cancellation rules are :meth:`_flush`'s.
        """
        send_lock = self._send_lock
        yielded = False
        if not send_lock.try_acquire():
            yielded = await send_lock.acquire()
        try:
            try:
                step(arg)
            except ssl.SSLError:
                if self._engine.has_data_to_send:
                    await self._send_alert()
                raise
            if self._engine.has_data_to_send:
                await self._flush()
                yielded = True
        finally:
            send_lock.release()
        if not yielded:
            await self._cp.cancel_shielded_checkpoint()

    def _take_outgoing(self) -> bytes:
        """Everything due to the peer: held tickets first, then the outgoing BIO."""
        data = self._engine.data_to_send()
        if self._held:  # a TLS 1.3 server's tickets, held back (see handshake)
            data = self._held + data
            self._held = b""
        return data

    async def _flush(self) -> None:
        """Send everything in the outgoing BIO. The caller holds the send lock."""
        data = self._take_outgoing()
        try:
            await self._transport_send(data)
        except Exception as exc:
            error = self._transport_failed(exc)
            if error is exc:
                raise
            raise error from exc
        except BaseException as exc:  # cancelled: part of a record may be out
            self._break(_describe(exc))
            raise

    async def _send_alert(self) -> None:
        """Try, briefly, to tell the peer about a fatal error; ignore failures.

        The caller holds the send lock. Bounded in time: a peer that does not read
        must not turn an error into a hang.
        """
        with move_on_after(ALERT_SEND_TIMEOUT), suppress(Exception):
            await self._transport_send(self._take_outgoing())

    async def _receive_into_engine(self, wakeable: bool = False) -> None:
        """Feed the engine one transport receive (unless another task just did).

        *wakeable*: the caller is ``receive()`` and another task may move plaintext
        into the backlog meanwhile (see :meth:`_to_backlog`), so the wait for the
        transport must be interruptible by it.

        One frame, not two: every frame between a task and the transport is
        suspended and resumed again at every wait (a handshake waits about six
        times per end).

        Cancelled: nothing was received (the transport returns nothing to a
        cancelled receive).
        """
        count = self._recv_count
        lock = self._recv_lock
        if not lock.try_acquire():
            await lock.acquire()
        try:
            if count != self._recv_count:
                return  # someone received while we waited: retry the step first
            if self._transport_at_eof:  # the step wants data that will never come
                raise self._engine.fail(
                    ssl.SSLEOFError("the transport reached EOF")
                ) from None
            size = self._receive_size
            receive = self._transport_receive
            try:
                if wakeable:
                    with CancelScope() as wakeup:
                        self._recv_wakeup = wakeup
                        try:
                            data = await (receive() if size is None else receive(size))
                        finally:
                            self._recv_wakeup = None
                    if wakeup.cancelled_caught:
                        return  # woken: the backlog has data; nothing was received
                else:
                    data = await (receive() if size is None else receive(size))
            except self._transport_eof:
                data = b""
            except Exception as exc:
                error = self._transport_failed(exc)
                if error is exc:
                    raise
                raise error from exc
            if not data:
                self._transport_at_eof = True
            self._engine.receive_data(data)
            self._recv_count += 1
        finally:
            lock.release()

    def _to_backlog(self, data: bytes) -> None:
        """Keep plaintext a non-receiving step had to decrypt, for ``receive()``.

        Wakes a ``receive()`` blocked on the transport (the data it waits for may
        be this) and makes lock waiters retry their step before receiving. The
        caller keeps the backlog within ``max_read_ahead`` (:meth:`_backlog_room`).
        """
        self._backlog += data
        self._recv_count += 1
        if self._recv_wakeup is not None:
            self._recv_wakeup.cancel()

    def _backlog_room(self) -> int:
        """How much more plaintext the backlog may take (0: it is full)."""
        return max(0, self._max_read_ahead - len(self._backlog))

    def _drain_to_backlog(self) -> bool:
        """Decrypt buffered application data into the backlog, up to its bound.

        Returns ``True`` if it stopped at the bound with input still buffered.
        """
        engine = self._engine
        while True:
            room = self._backlog_room()
            if not room:
                return engine.has_buffered_input
            data = engine.read(min(room, RECEIVE_SIZE))
            if not data:  # NEED_DATA, or close_notify (read() says b"" again later)
                return False
            self._to_backlog(data)

    async def _wait_for_room(self) -> None:
        """Wait until ``receive()`` takes data from the full backlog.

        Waits if another task is inside ``receive()``, or if the last ``receive()``
        that took from the backlog ran in another task (a receiving task between
        two calls). Otherwise the stream's receiver is the waiting task itself (or
        there is none yet), which cannot receive while it waits: nobody would make
        room, so it raises :exc:`ReadAheadLimitError`. The face's exception if the
        stream breaks or is closed meanwhile.
        """
        reader = self._backlog_reader
        if not self._receiving and (reader is None or reader == get_current_task().id):
            await checkpoint()
            raise ReadAheadLimitError(
                f"the peer sent {len(self._backlog)} bytes (max_read_ahead) that no "
                "receive() has taken, and no task is receiving: receive() them, "
                "then try again"
            )
        event = self._room_made
        if event is None:
            event = self._room_made = Event()
        await event.wait()
        if self._state is not _State.OPEN:
            raise self._state_error()

    def _wake_room_waiters(self) -> None:
        event = self._room_made
        if event is not None:
            self._room_made = None
            event.set()

    def _write_step(self, data: bytes | bytearray | memoryview) -> int | None:
        """``write()``, with application data first taken out of its way (TLS 1.2).

        In a TLS 1.2 renegotiation ``write()`` must read the peer's handshake
        messages, but OpenSSL accepts application data arriving in front of them
        only inside ``read()``; inside ``write()`` it is a fatal
        ``UNEXPECTED_RECORD``. So under TLS 1.2, buffered input is first decrypted
        into the backlog (``receive()`` returns it first, in order). TLS 1.3 sends
        use ``write()`` directly (see ``_renegotiable``).
        """
        engine = self._engine
        if engine.has_buffered_input and self._drain_to_backlog():
            # Full backlog, input still buffered (maybe application data that
            # write() cannot take): the retry loop waits for receive() to make room.
            return NEED_DATA
        return engine.write(data)

    # -- operations ------------------------------------------------------------------

    async def handshake(self) -> None:
        """Perform the handshake, or wait for the one another task is performing.

        Every waiting task gets the outcome: a failed or cancelled handshake raises
        the face's ``BrokenResourceError`` (``__cause__``: the ssl error) in all of
        them. The task that ran it sees the failure itself. With a ``verify_peer``
        step, the handshake is done only once the step returned; a step that
        raises fails it as an ssl error does.
        """
        state = self._handshake
        if state is _Handshake.DONE:
            await checkpoint()
            if self._state is not _State.OPEN:
                raise self._state_error()
            return
        if state is _Handshake.RUNNING:
            if (
                self._verifying_task is not None
                and self._verifying_task == get_current_task().id
            ):
                # It would wait for itself until its deadline.
                await checkpoint()
                raise RuntimeError(
                    "a verify_peer hook must not send or receive on the stream it "
                    "verifies: no application data may pass before it accepted"
                )
            # Made by the first waiter: most handshakes have none.
            if self._handshake_finished is None:
                self._handshake_finished = Event()
            await self._handshake_finished.wait()
            if self._handshake is not _Handshake.DONE:
                raise self._state_error()
            return
        if state is _Handshake.FAILED or self._state is not _State.OPEN:
            await checkpoint()
            raise self._state_error()

        self._handshake = _Handshake.RUNNING
        self._cp = _backend_checkpoints()
        try:
            await self._cp.checkpoint_if_cancelled()
            if self._before_handshake is not None:
                make_engine, self._before_handshake = self._before_handshake, None
                self._engine = await make_engine()
            # A TLS 1.3 server writes its session tickets as the handshake's last
            # step. They are held back and leave with the server's first flush
            # (its first send, a post-handshake message or close_notify): sent
            # right away, they can deadlock a transport without buffering while
            # the client only sends (the OpenSSL issues 7948 and 7967; trio's
            # _ssl.py holds them back the same way), and every handshake would
            # cost the server one more transport send.
            engine = self._engine
            await self._retry(
                self._server_handshake_step
                if engine.server_side
                else engine.do_handshake,
                None,
            )
            if self._verify_peer is not None:
                # Before the handshake counts as done: tasks waiting for it (and
                # sends or receives, which wait for it) go on only once the hook
                # accepted the peer. A TLS 1.3 server's held-back tickets stay
                # held, so a rejected client gets none.
                self._verifying_task = get_current_task().id
                try:
                    await self._verify_peer()
                finally:
                    self._verifying_task = -1
        except ssl.SSLError as exc:
            self._handshake = _Handshake.FAILED
            raise self._break(exc) from exc
        except BaseException as exc:
            self._handshake = _Handshake.FAILED
            self._break(_describe(exc))
            raise
        else:
            self._handshake = _Handshake.DONE
            engine = self._engine
            self._version = engine.ssl_object.version()
            renegotiation_possible = self._version != "TLSv1.3"
            self._renegotiable = renegotiation_possible
            # (only a server can have client auth configured)
            self._receive_wakeable = (
                renegotiation_possible or engine.client_auth_configured
            )
        finally:
            finished = self._handshake_finished
            if finished is not None:  # tasks wait for this handshake
                finished.set()
                self._handshake_finished = None  # they hold it; ~1 KiB per stream

    def _server_handshake_step(self, _: None) -> bool | None:
        """``do_handshake()`` for a server: under TLS 1.3, what its last call wrote
        (the session tickets) is held back for the next flush (see
        :meth:`handshake`)."""
        engine = self._engine
        result = engine.do_handshake()
        if result is not NEED_DATA and engine.ssl_object.version() == "TLSv1.3":
            # Taken out of the BIO without the send lock: no other task can run a
            # step before the handshake ends, so nothing is in between.
            self._held += engine.data_to_send()
        return result

    async def _ensure_usable(self) -> None:
        """Raise if the stream is broken or closed; handshake if needed.

        Ends with a cancellation check, so the caller can start changing state.
        """
        if self._state is not _State.OPEN:
            await checkpoint()
            raise self._state_error()
        if self._handshake is not _Handshake.DONE:
            await self.handshake()
        else:
            await checkpoint_if_cancelled()

    def _read_step(self, max_bytes: int) -> bytes | None:
        backlog = self._backlog
        if backlog:  # another task (post-handshake auth) decrypted data first
            data = bytes(backlog[:max_bytes])
            del backlog[:max_bytes]
            self._backlog_reader = get_current_task().id
            if self._room_made is not None:  # a step waits at the bound
                self._wake_room_waiters()
            return data
        return self._engine.read(max_bytes)

    async def receive(self, max_bytes: int) -> bytes:
        """Return up to *max_bytes* of plaintext, or ``b""`` at the peer's close.

        Cancelled: no data is lost (see the module docstring for the one case that
        breaks the stream).
        """
        if self._receiving:
            raise self._errors.busy_receiving()
        self._receiving = True
        try:
            if self._state is not _State.OPEN or self._handshake is not _Handshake.DONE:
                if self._backlog and self._state is _State.BROKEN:
                    # Decrypted before the stream broke: returned before the error.
                    await checkpoint()
                    chunk = bytes(self._backlog[:max_bytes])
                    del self._backlog[:max_bytes]
                    return chunk
                await self._ensure_usable()
            engine = self._engine
            wakeable = self._receive_wakeable
            if self._backlog or engine.has_buffered_input:
                await self._cp.checkpoint()
                yielded = True
            elif (
                engine.read_waits_for_peer  # and nothing is buffered (just seen)
                and not engine.has_data_to_send  # bytes to flush go out first
                and not self._transport_at_eof
            ):
                # A read() now could only say NEED_DATA: receive first. The
                # transport's receive is the checkpoint.
                yielded = True
                await self._receive_into_engine(wakeable)
            else:
                await self._cp.checkpoint_if_cancelled()
                yielded = False
            if yielded:
                # Fast path: one read step that needs no flush and no more data is
                # the whole receive. Anything else (NEED_DATA, an error, bytes to
                # flush) goes to the retry loop, which calls the step again: the
                # engine raises a recorded error again, and plaintext put back in
                # the backlog is what the step returns first.
                try:
                    result = self._read_step(max_bytes)
                except ssl.SSLError:
                    pass
                else:
                    if result is not NEED_DATA:
                        if not engine.has_data_to_send:
                            return result
                        self._backlog[0:0] = result
            try:
                data = await self._retry(
                    self._read_step, max_bytes, _StepKind.READ, started=yielded
                )
            except ssl.SSLError as exc:
                if not self._ragged_eof_is_error and is_ragged_eof(exc):
                    return b""
                raise self._break(exc) from exc
            assert data is not None
            return data
        finally:
            self._receiving = False

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt and send all of *data*.

        Cancelled: either nothing of *data* reached the transport and the stream is
        usable, or the stream is broken.
        """
        if self._sending:
            raise self._errors.busy_sending()
        self._sending = True
        try:
            resumed = False
            if (
                data
                and self._handshake is _Handshake.DONE
                and self._state is _State.OPEN
                and not self._close_notify_sent
            ):
                await self._cp.checkpoint_if_cancelled()
                lock = self._send_lock
                if lock.try_acquire():
                    # Fast path: one step, one flush, no retry loop. Anything
                    # unusual (NEED_DATA, an error) goes on in the loop below,
                    # which calls the step again: OpenSSL wants a write retried
                    # with the same data, and the engine raises a recorded error
                    # again.
                    try:
                        result = (
                            self._write_step(data)
                            if self._renegotiable
                            else self._engine.write(data)
                        )
                    except ssl.SSLError:
                        result = NEED_DATA
                    else:
                        if result is not NEED_DATA:
                            await self._flush()  # the checkpoint (a write writes)
                            return
                        resumed = True
                    finally:
                        lock.release()
            else:
                if (
                    self._state is not _State.OPEN
                    or self._handshake is not _Handshake.DONE
                ):
                    await self._ensure_usable()
                if self._close_notify_sent:
                    await checkpoint()
                    raise self._errors.closed()
                if not data:  # write(b"") is not a no-op in every Python version
                    await checkpoint()
                    return
                await self._cp.checkpoint_if_cancelled()
            try:
                await self._retry(
                    self._write_step if self._renegotiable else self._engine.write,
                    data,
                    _StepKind.WRITE,
                    started=resumed,
                )
            except (ssl.SSLError, ReadAheadLimitError) as exc:
                # (the stream is broken either way: OpenSSL may hold part of data)
                raise self._break(exc) from exc
        finally:
            self._sending = False

    async def send_eof(self) -> None:
        """Send close_notify and keep receiving (TLS 1.3 half-close).

        Raises :exc:`NotImplementedError` below TLS 1.3, where the peer must answer
        close_notify at once and discard what it had not sent yet; the face's
        ``BrokenResourceError`` after a TLS error, also one that ``receive`` read as
        an end (a ragged EOF when that is not an error), as ``send`` would.
        """
        with self._claimed(sending=True):
            await self._ensure_usable()
            if self._engine.error is not None:
                raise self._break(self._engine.error) from self._engine.error
            version = self._version
            if version != "TLSv1.3":
                raise NotImplementedError(
                    f"send_eof() needs TLS 1.3 (half-close, RFC 8446 section 6.1); "
                    f"this connection uses {version}"
                )
            if self._close_notify_sent:
                await cancel_shielded_checkpoint()
                return
            with move_on_after(self._close_timeout) as scope:
                if self._engine.client_auth_pending:
                    # No handshake message may follow our close_notify (see unwrap).
                    try:
                        await self.wait_client_auth()
                    except ssl.SSLError as exc:
                        raise self._break(exc) from exc
                # The unwrap step keeps what is buffered in the backlog: within its
                # bound, since it is decrypted here first.
                while self._drain_to_backlog():
                    await self._wait_for_room()
                self._close_notify_sent = True
                try:
                    await self._send_message(self._engine.unwrap, self._backlog)
                except ssl.SSLError as exc:
                    raise self._break(exc) from exc
            if scope.cancelled_caught:
                if not self._close_notify_sent:  # nothing sent: usable, as cancelled
                    raise CloseTimeoutError(
                        f"the client did not answer the pending certificate request "
                        f"within close_timeout ({self._close_timeout} s); nothing "
                        "was sent"
                    )
                raise self._timed_out("sending close_notify")

    async def unwrap(self) -> bytes:
        """Complete the closing handshake; return the plaintext that followed it.

        Application data the peer sent before its close_notify and that was not
        received yet is discarded. A pending post-handshake authentication is
        finished first, so no handshake message can follow our close_notify.
        Cancelled while waiting for the peer's close_notify: may be called again.
        """
        await self._ensure_usable()
        # Not received before the close: discarded (so the backlog's bound cannot
        # make the closing handshake wait for a receive()).
        self._backlog.clear()
        with move_on_after(self._close_timeout) as scope:
            if self._engine.client_auth_pending:
                try:
                    await self.wait_client_auth(keep=False)
                except ssl.SSLError as exc:
                    raise self._break(exc) from exc
            self._close_notify_sent = True
            try:
                await self._retry(self._engine.unwrap, None)
            except ssl.SSLError as exc:
                raise self._break(exc) from exc
        if scope.cancelled_caught:
            raise self._timed_out("the closing handshake")
        self._state = _State.CLOSED
        return self._engine.leftover()

    def _timed_out(self, what: str) -> CloseTimeoutError:
        """Break the stream for a closing step that exceeded ``close_timeout``."""
        exc = CloseTimeoutError(
            f"the peer did not complete {what} within close_timeout "
            f"({self._close_timeout} s)"
        )
        if self._state is not _State.CLOSED:
            # (also over a cancelled flush's cause: this one says why)
            self._state = _State.BROKEN
            self._broken_cause = exc
            self._wake_room_waiters()
        return exc

    async def unwrap_exclusive(self) -> bytes:
        """:meth:`unwrap`, refused while another task sends or receives (trio's rule).

        Raises the face's ``BusyResourceError`` at once in that case.
        """
        with self._claimed(sending=True, receiving=True):
            return await self.unwrap()

    async def send_close_notify(self) -> bool:
        """Send close_notify once, without waiting for the peer's (trio's ``aclose``).

        Only a checkpoint unless the stream is open and handshaken. A peer that went
        away first is not an error: TLS and transport errors are swallowed, since the
        caller closes the transport next. Waits for the inner send lock if another
        task is sending. Cancelled: close_notify may or may not have left.

        Returns ``False`` if it gave up at ``close_timeout`` (a peer that does not
        read, or another task's send that never ends): the caller should close the
        transport forcefully.
        """
        if self._state is not _State.OPEN or self._handshake is not _Handshake.DONE:
            await checkpoint()
            return True
        self._close_notify_sent = True
        with (
            move_on_after(self._close_timeout) as scope,
            suppress(ssl.SSLError, self._errors.broken, self._errors.closed),
        ):
            await self._send_message(self._engine.unwrap, None)
        return not scope.cancelled_caught

    async def wait_send_ready(self, wait: Callable[[], Awaitable[Any]]) -> None:
        """Run the transport's *wait* (trio's ``wait_send_all_might_not_block``).

        Conflicts with ``send`` as a second ``send`` would. Holds the inner send lock
        meanwhile, so no other task's flush uses the transport's send side at the
        same time (a flush could not finish sooner anyway). Does not handshake.
        Raises what *wait* raises. Cancelled: nothing happened.
        """
        with self._claimed(sending=True):
            if self._state is not _State.OPEN:
                await checkpoint()
                raise self._state_error()
            await self._send_lock.acquire()
            try:
                await wait()
            finally:
                self._send_lock.release()

    async def close_gracefully(self) -> bool:
        """Send close_notify and wait for the peer's; never raise for a bad peer.

        A broken or never-handshaken stream is just marked closed. Errors from a peer
        that vanished or misbehaved are swallowed: the caller closes the transport
        next anyway. Cancellation propagates.

        Returns ``False`` if it gave up at ``close_timeout`` (the peer did not answer,
        did not read our close_notify, or another task's send never ended): the
        caller should close the transport forcefully.
        """
        try:
            if self._state is _State.OPEN and self._handshake is _Handshake.DONE:
                self._close_notify_sent = True
                self._backlog.clear()  # nobody can receive it any more
                with (
                    move_on_after(self._close_timeout) as scope,
                    suppress(ssl.SSLError, self._errors.broken, self._errors.closed),
                ):
                    await self._retry(self._engine.unwrap, None)
                return not scope.cancelled_caught
            await checkpoint()
            return True
        finally:
            self._state = _State.CLOSED
            self._wake_room_waiters()

    # -- post-handshake client authentication ---------------------------------------

    async def request_client_auth(self) -> None:
        """Send a TLS 1.3 CertificateRequest now; do not wait for the answer.

        Does nothing if a request is pending. Raises :exc:`PostHandshakeAuthError`
        before anything is sent if no request can be made, or if the end of the
        exchange could not be seen (``num_tickets = 0``; see
        ``TLSEngine.client_auth_end_visible``). Cancelled while waiting for the send
        lock: nothing was queued. Cancelled in ``transport.send``: broken.
        """
        await self._ensure_usable()
        engine = self._engine
        if engine.client_auth_pending:
            await cancel_shielded_checkpoint()
            return
        sslobj = engine.ssl_object
        if not sslobj.server_side:
            raise PostHandshakeAuthError(
                "only a server can request a client certificate"
            )
        version = sslobj.version()
        if version != "TLSv1.3":
            raise PostHandshakeAuthError(
                f"post-handshake authentication needs TLS 1.3; this connection uses "
                f"{version}"
            )
        if not engine.client_auth_configured:
            raise PostHandshakeAuthError(
                "the server's SSLContext needs post_handshake_auth = True and "
                "verify_mode CERT_OPTIONAL or CERT_REQUIRED when the stream is created"
            )
        if not engine.client_auth_end_visible:
            raise PostHandshakeAuthError(
                "the server's SSLContext had num_tickets = 0 when the stream was "
                "created, so the end of this exchange could not be seen (the answer "
                "may leave the peer certificate as it is: CERT_OPTIONAL, or a "
                "certificate is already known); set num_tickets > 0"
            )
        if self._close_notify_sent:
            raise self._errors.closed()
        try:
            await self._send_message(self._request_step, None)
        except ssl.SSLError as exc:
            raise self._break(exc) from exc

    def _request_step(self, _: None) -> bool | None:
        # Queue the request only once the send lock is ours: a cancellation while
        # waiting for the lock leaves nothing behind, and the request leaves with
        # this very flush (until it is written, getpeercert() raises ValueError).
        engine = self._engine
        if engine.client_auth_pending:  # another task asked while we waited
            return True
        if self._close_notify_sent:
            raise self._errors.closed()
        try:
            engine.request_client_auth()
        except ssl.SSLError as exc:
            if "EXTENSION_NOT_RECEIVED" in str(exc):
                raise PostHandshakeAuthError(
                    "the client did not offer post-handshake authentication (its "
                    "SSLContext needs post_handshake_auth = True)"
                ) from exc
            raise PostHandshakeAuthError(f"OpenSSL refused the request: {exc}") from exc
        return engine.do_handshake()

    async def wait_client_auth(self, *, keep: bool = True) -> None:
        """Wait until the client's answer to a pending request has been processed.

        Application data that arrives meanwhile is kept for ``receive`` (*keep*; else
        discarded, for ``unwrap``), up to ``max_read_ahead``: there it waits for
        another task's ``receive`` to take some, or raises
        :exc:`ReadAheadLimitError` if none is receiving (the request stays
        pending, nothing is lost; see :meth:`_wait_for_room`). Raises the
        ssl error (and breaks the stream) if the client's answer is rejected, also
        when another task's ``receive`` processed it; the face's
        ``BrokenResourceError`` if the transport fails or ends without close_notify
        (when that is an error); :exc:`PostHandshakeAuthError` if the client closed
        the connection instead (the request then stays pending for good, so
        ``unwrap`` refuses too). Cancelled: the request stays pending, nothing is
        lost.
        """
        await self._ensure_usable()
        if not self._engine.client_auth_pending:
            await cancel_shielded_checkpoint()
            return
        try:
            await self._retry(self._client_auth_step, keep)
        except ssl.SSLError as exc:
            if is_ragged_eof(exc):
                if not self._ragged_eof_is_error:  # a close, as receive() sees it
                    raise _closed_without_answer() from exc
                raise self._break(exc) from exc
            self._break(exc)
            raise

    def _client_auth_step(self, keep: bool) -> bool | None:
        engine = self._engine
        if engine.error is not None:  # e.g. another task's receive saw the answer fail
            raise engine.error
        if self._state is not _State.OPEN:
            raise self._state_error()
        while engine.client_auth_pending:
            # Data goes to the backlog, which every receive step empties before it
            # decrypts anything new: order is kept even with a receiver running.
            # At its bound: NEED_DATA, and the retry loop waits for a receive().
            room = self._backlog_room() if keep else RECEIVE_SIZE
            if not room:
                return NEED_DATA
            data = engine.read(min(room, RECEIVE_SIZE))
            if data is NEED_DATA:
                return NEED_DATA if engine.client_auth_pending else True
            if not data:
                # After close_notify nothing may follow; an OpenSSL client that
                # sent it first still answers, after it (see unwrap).
                raise _closed_without_answer()
            if keep:
                self._to_backlog(data)
        return True
