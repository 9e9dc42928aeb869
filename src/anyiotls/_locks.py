"""Locking rules: who may touch the transport, and when.

* ``transport.send`` is called only by the holder of the *inner send lock*, which
  drains the whole outgoing BIO while holding it: ciphertext leaves in BIO order.
* ``transport.receive`` is called only by the holder of the *inner receive lock*;
  what it gets goes into the incoming BIO for every task to see.
* A task never waits for the receive lock while holding the send lock (that is how
  full duplex could deadlock: the peer may need our pending bytes before it sends).
* Two tasks calling ``send`` (or ``receive``) at once is the caller's bug and raises
  the face's ``BusyResourceError`` at once: the driver keeps one flag per direction
  (``TLSDriver._sending``/``_receiving``), the Trio adapters a
  :class:`ConflictDetector` each.

The inner locks are strict FIFO and cost no await when free: the hot path of every
send and receive takes one.
"""

from __future__ import annotations

__all__ = ("ConflictDetector", "FIFOLock")

from collections.abc import Callable

from anyio import Event


class FIFOLock:
    """A strict first-in-first-out lock whose uncontended ``acquire`` never awaits.

    Ownership passes directly from the releasing task to the first waiter, so a task
    that arrives later can never overtake one that waits.
    """

    __slots__ = ("_waiters", "locked")

    def __init__(self) -> None:
        #: ``True`` while some task holds the lock (a plain attribute: the driver's
        #: hot paths read it without a call)
        self.locked = False
        # A list, not a deque (an empty deque costs ~600 B), made by the first
        # waiter: most streams never have one, and a stream has two locks.
        self._waiters: list[Event] | None = None

    def try_acquire(self) -> bool:
        """Take the lock if it is free (no await, no coroutine); return whether."""
        if self.locked:
            return False
        self.locked = True
        return True

    async def acquire(self) -> bool:
        """Take the lock; return ``True`` if this had to wait (and so yielded).

        Cancelled while waiting: the lock is not taken and nobody's turn is lost.
        """
        if not self.locked:  # invariant: waiters exist only while locked
            self.locked = True
            return False
        event = Event()
        waiters = self._waiters
        if waiters is None:
            waiters = self._waiters = []
        waiters.append(event)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():  # the lock was handed to us as we were cancelled
                self.release()
            else:
                waiters.remove(event)
            raise
        return True

    def release(self) -> None:
        """Hand the lock to the first waiter, or free it."""
        if self._waiters:
            self._waiters.pop(0).set()
        else:
            self.locked = False


class ConflictDetector:
    """Detects two tasks using one direction of a stream at once."""

    __slots__ = ("_busy", "_make_error")

    def __init__(self, make_error: Callable[[], Exception]) -> None:
        self._busy = False
        self._make_error = make_error

    def __enter__(self) -> None:
        if self._busy:
            raise self._make_error()
        self._busy = True

    def __exit__(self, *exc_info: object) -> None:
        self._busy = False

    @property
    def busy(self) -> bool:
        """``True`` while a task is inside."""
        return self._busy
