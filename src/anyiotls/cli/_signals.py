"""Ctrl-C and SIGTERM as events of the event loop, the same on every backend.

Without this, Ctrl-C surfaces differently per backend and Python version (a
``KeyboardInterrupt`` anywhere under Trio, a ``CancelledError`` from asyncio's
runner on Python 3.10), sometimes with a traceback. With it, a signal cancels the
command's task group, and the command ends with a clear line.
"""

from __future__ import annotations

__all__ = ("run_interruptibly", "watch_signals")

import signal
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskStatus

from ._exit import CLIError, ExitCode


async def watch_signals(
    signums: tuple[signal.Signals, ...],
    on_signal: Callable[[signal.Signals], None],
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Call *on_signal* for the first of *signums* that arrives, then return.

    Where the platform cannot deliver signals to the event loop (Windows), returns
    at once: Ctrl-C then raises :exc:`KeyboardInterrupt` as usual.
    """
    try:
        receiver = anyio.open_signal_receiver(*signums)
        with receiver as signals:
            task_status.started()
            async for signum in signals:
                on_signal(signal.Signals(signum))
                return
    except NotImplementedError:
        task_status.started()


async def run_interruptibly(func: Callable[[], Awaitable[None]]) -> None:
    """Run *func*; Ctrl-C cancels it and raises ``CLIError(INTERRUPTED)``."""
    interrupted: list[signal.Signals] = []
    async with anyio.create_task_group() as tg:

        def stop(signum: signal.Signals) -> None:
            interrupted.append(signum)
            tg.cancel_scope.cancel()

        await tg.start(watch_signals, (signal.SIGINT,), stop)
        await func()
        tg.cancel_scope.cancel()
    if interrupted:
        raise CLIError(ExitCode.INTERRUPTED, "interrupted")
