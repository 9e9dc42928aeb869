"""Run third-party code on anyiotls by redirecting the anchors' classes to ours.

The libraries under test look ``trio.SSLStream``, ``trio.SSLListener`` and
``anyio.streams.tls.TLSStream``/``TLSListener``/``TLSConnectable`` up as module
attributes when they use them, so replacing those attributes for the duration of a
test runs them, unmodified, over anyiotls. Some modules bind the names at import
(``anyio._core._sockets`` does ``from ..streams.tls import TLSStream``): every loaded
module that holds an anchor's class under any name is patched too.

The redirect records every object built from anyiotls's classes *and* every object
built from the anchors' classes while it is active, so that a test can check that the
code under test really ran on anyiotls (``assert_used``) — a green test that had
measured the anchor would otherwise look the same.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio.streams.tls
import pytest
import trio

import anyiotls
import anyiotls.trio

__all__ = ("Redirect", "redirected")

#: (module, name) of each anchor class, the anyiotls class that stands in for it
_PUBLIC: dict[tuple[Any, str], type] = {
    (anyio.streams.tls, "TLSStream"): anyiotls.TLSStream,
    (anyio.streams.tls, "TLSListener"): anyiotls.TLSListener,
    (anyio.streams.tls, "TLSConnectable"): anyiotls.TLSConnectable,
    (trio, "SSLStream"): anyiotls.trio.SSLStream,
    (trio, "SSLListener"): anyiotls.trio.SSLListener,
}
# anchor class -> ours; TLSConnectable is new in AnyIO 4.10 (absent in the lowest)
_REPLACEMENTS: dict[type, type] = {
    getattr(module, name): ours
    for (module, name), ours in _PUBLIC.items()
    if hasattr(module, name)
}

# Where the anchors are defined: their own internal references stay (trio._ssl's
# SSLListener is unreachable once ``trio.SSLListener`` is patched).
_DEFINING_MODULES = frozenset({"trio._ssl"})


class Redirect:
    """What ran while the anchors' classes were redirected to anyiotls's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # servers under test may run in other threads
        self.ours: list[object] = []
        self.anchors: list[object] = []
        #: (module name, attribute name) of every binding that was patched
        self.patched: list[tuple[str, str]] = []

    def _record(self, target: list[object], obj: object) -> None:
        with self._lock:
            target.append(obj)

    def instances(self, cls: type) -> list[Any]:
        """The objects of exactly *cls* (an anyiotls class) built so far."""
        with self._lock:
            return [obj for obj in self.ours if type(obj) is cls]

    def assert_used(self, cls: type, minimum: int = 1) -> list[Any]:
        """Check that at least *minimum* objects of exactly *cls* were built and that
        no anchor class was instantiated; return those objects."""
        with self._lock:
            anchors = list(self.anchors)
        assert not anchors, f"the anchors' classes were used: {anchors!r}"
        built = self.instances(cls)
        assert len(built) >= minimum, (
            f"expected at least {minimum} {cls.__module__}.{cls.__qualname__} "
            f"objects, got {len(built)}: the code under test did not run on anyiotls"
        )
        return built


def _recording_init(
    original: Callable[..., None], redirect: Redirect, target: list[object]
) -> Callable[..., None]:
    def __init__(self: object, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        redirect._record(target, self)

    return __init__


@contextmanager
def redirected() -> Iterator[Redirect]:
    """Redirect the anchors' classes to anyiotls's until the block ends."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield _redirect(monkeypatch)


def _redirect(monkeypatch: pytest.MonkeyPatch) -> Redirect:
    redirect = Redirect()
    for anchor, ours in _REPLACEMENTS.items():
        # Patch the classes' __init__ only to record; behaviour is unchanged.
        monkeypatch.setattr(
            ours, "__init__", _recording_init(ours.__init__, redirect, redirect.ours)
        )
        monkeypatch.setattr(
            anchor,
            "__init__",
            _recording_init(anchor.__init__, redirect, redirect.anchors),
        )
    for name, module in list(sys.modules.items()):
        if module is None or name in _DEFINING_MODULES:
            continue
        if name == __name__ or name.startswith(("anyiotls", "tests.")):
            continue  # our own modules name the anchors on purpose
        try:
            namespace = vars(module)
        except TypeError:
            continue
        for attribute, value in list(namespace.items()):
            if isinstance(value, type) and value in _REPLACEMENTS:
                monkeypatch.setattr(module, attribute, _REPLACEMENTS[value])
                redirect.patched.append((name, attribute))
    # The public names must be among them, or the anchors moved.
    for module, name in _PUBLIC:
        if hasattr(module, name):
            public = (module.__name__, name)
            assert public in redirect.patched, f"{public} was not patched"
    return redirect
