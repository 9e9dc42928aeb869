"""Every operation of the Trio face, cancelled at each of its suspensions in turn.

The method and the cases are those of ``test_cancellation_points.py``, over trio's
own test transports (``trio.testing.memory_stream_pair``, and the lockstep pair for
back-pressure). The Trio face differs where trio does: a cancelled handshake breaks
the stream but leaves closing the transport to ``aclose()``, and ``aclose()`` does
not wait for the peer's close_notify.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from . import cancel_cases as cases
from .faces import Contexts, TrioFace
from .harness import FULL

MakeContexts = Callable[[str, bool], Contexts]

pytestmark = pytest.mark.anyio

FACE = TrioFace()
SIDES = ["client", "server"]
VERSIONS = ["1.2", "1.3"]
TRANSPORTS = ["memory", "chopped"]


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("side", SIDES)
async def test_do_handshake(
    make_contexts: MakeContexts,
    side: str,
    version: str,
    transport: str,
) -> None:
    contexts = make_contexts(version, False)
    await cases.sweep(
        f"handshake (trio)[{side}-{version}-{transport}]",
        lambda at: cases.handshake_case(FACE, contexts, transport, side, at),
    )


SEND_VARIANTS = [
    ("client", "memory", 100),
    ("client", "chopped", 1000),
    ("server", "chopped", 1000),
    ("client", "rendezvous", 100),
    ("server", "rendezvous", 100),
    ("server", "chopped", 100_000),
]
if FULL:
    SEND_VARIANTS += [
        ("server", "memory", 100),
        ("client", "chopped", 100_000),
        ("client", "rendezvous", 100_000),
    ]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("side", "transport", "size"), SEND_VARIANTS)
async def test_send_all(
    make_contexts: MakeContexts,
    side: str,
    transport: str,
    size: int,
    version: str,
) -> None:
    contexts = make_contexts(version, False)
    await cases.sweep(
        f"send (trio)[{side}-{version}-{transport}-{size}]",
        lambda at: cases.send_case(FACE, contexts, transport, side, size, at),
    )


@pytest.mark.parametrize("timing", ["buffered", "waiting"])
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("side", SIDES)
async def test_receive_some(
    make_contexts: MakeContexts,
    side: str,
    transport: str,
    timing: str,
) -> None:
    contexts = make_contexts("1.3", False)
    await cases.sweep(
        f"receive (trio)[{side}-{transport}-{timing}]",
        lambda at: cases.receive_case(FACE, contexts, transport, side, timing, at),
    )


@pytest.mark.parametrize(
    ("transport", "timing"),
    [("memory", "waiting"), ("chopped", "waiting"), ("memory", "buffered")],
)
async def test_receive_some_that_answers_a_certificate_request(
    make_contexts: MakeContexts, transport: str, timing: str
) -> None:
    await cases.sweep(
        f"receive (trio)[pha-{transport}-{timing}]",
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
        f"unwrap (trio)[{side}-{version}-{transport}]",
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
        f"aclose (trio)[{side}-{transport}]",
        lambda at: cases.aclose_case(FACE, contexts, transport, side, at),
    )


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_verify_client_post_handshake(
    make_contexts: MakeContexts, transport: str
) -> None:
    await cases.sweep(
        f"verify_client_post_handshake (trio)[{transport}]",
        lambda at: cases.verify_case(FACE, make_contexts("1.3", True), transport, at),
    )
