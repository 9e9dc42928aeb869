"""Every operation of the AnyIO face, cancelled at each of its suspensions in turn.

How (see ``harness.YieldCounter``): the operation's coroutine is driven by hand and
every suspension to the event loop is counted; run *k* requests the cancellation at
suspension *k* (delivered there, or at the next cancellable one), on asyncio,
asyncio+uvloop and trio alike. The cases and the outcomes they accept are in
``cancel_cases.py``. Transports: ``memory`` (unbounded), ``chopped`` (sends go out
in pieces: cancellation can strike in the middle of a record) and ``rendezvous``
(a send waits for the peer's receive: back-pressure).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from . import cancel_cases as cases
from .faces import AnyIOFace, Contexts
from .harness import FULL

MakeContexts = Callable[[str, bool], Contexts]

pytestmark = pytest.mark.anyio

FACE = AnyIOFace()
SIDES = ["client", "server"]
VERSIONS = ["1.2", "1.3"]
TRANSPORTS = ["memory", "chopped"]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("side", SIDES)
async def test_handshake(
    make_contexts: MakeContexts,
    side: str,
    version: str,
    transport: str,
) -> None:
    contexts = make_contexts(version, False)
    await cases.sweep(
        f"handshake (anyio)[{side}-{version}-{transport}]",
        lambda at: cases.handshake_case(FACE, contexts, transport, side, at),
    )


SEND_VARIANTS = [
    ("client", "memory", 100),
    ("client", "chopped", 1000),
    ("server", "chopped", 1000),
    ("server", "rendezvous", 100),
    ("server", "chopped", 100_000),
]
if FULL:
    SEND_VARIANTS += [
        ("server", "memory", 100),
        ("client", "chopped", 100_000),
        ("server", "rendezvous", 100_000),
    ]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("side", "transport", "size"), SEND_VARIANTS)
async def test_send(
    make_contexts: MakeContexts,
    side: str,
    transport: str,
    size: int,
    version: str,
) -> None:
    # (A "rendezvous" client would deadlock before the test even starts: the TLS
    # 1.3 server's session tickets wait for a client that sends instead of
    # receiving; the Trio face holds them back for that reason.)
    contexts = make_contexts(version, False)
    await cases.sweep(
        f"send (anyio)[{side}-{version}-{transport}-{size}]",
        lambda at: cases.send_case(FACE, contexts, transport, side, size, at),
    )


@pytest.mark.parametrize("timing", ["buffered", "waiting"])
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("side", SIDES)
async def test_receive(
    make_contexts: MakeContexts,
    side: str,
    transport: str,
    timing: str,
) -> None:
    contexts = make_contexts("1.3", False)
    await cases.sweep(
        f"receive (anyio)[{side}-{transport}-{timing}]",
        lambda at: cases.receive_case(FACE, contexts, transport, side, timing, at),
    )


@pytest.mark.parametrize(
    ("transport", "timing"),
    [("memory", "waiting"), ("chopped", "waiting"), ("coalescing", "buffered")],
)
async def test_receive_that_answers_a_certificate_request(
    make_contexts: MakeContexts, transport: str, timing: str
) -> None:
    await cases.sweep(
        f"receive (anyio)[pha-{transport}-{timing}]",
        lambda at: cases.receive_answering_pha_case(
            FACE, make_contexts("1.3", True), transport, timing, at
        ),
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("side", SIDES)
async def test_unwrap(
    make_contexts: MakeContexts,
    side: str,
    version: str,
    transport: str,
) -> None:
    contexts = make_contexts(version, False)
    await cases.sweep(
        f"unwrap (anyio)[{side}-{version}-{transport}]",
        lambda at: cases.unwrap_case(FACE, contexts, transport, side, at),
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("side", SIDES)
async def test_aclose(
    make_contexts: MakeContexts,
    side: str,
    transport: str,
) -> None:
    contexts = make_contexts("1.3", False)
    await cases.sweep(
        f"aclose (anyio)[{side}-{transport}]",
        lambda at: cases.aclose_case(FACE, contexts, transport, side, at),
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_verify_client_post_handshake(
    make_contexts: MakeContexts, transport: str
) -> None:
    await cases.sweep(
        f"verify_client_post_handshake (anyio)[{transport}]",
        lambda at: cases.verify_case(FACE, make_contexts("1.3", True), transport, at),
    )
