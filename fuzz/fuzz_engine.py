"""Coverage-guided fuzzing of anyiotls's sans-I/O engine with atheris (libFuzzer).

The engine (``anyiotls._engine.TLSEngine``) never awaits, so it is fuzzed directly,
with no event loop: the input is fed as the peer's bytes to a client or a server,
before or after a real handshake, and the engine is stepped until it needs more
bytes or fails. Allowed outcomes: NEED_DATA, a result, or an :exc:`ssl.SSLError`.
Anything else (another exception, a step that keeps returning without consuming
input, the outgoing buffer growing without bound) is a crash for libFuzzer.

Run (atheris has wheels for CPython 3.8-3.11 on Linux x86-64)::

    pip install atheris trustme
    PYTHONPATH=src python fuzz/fuzz_engine.py -max_total_time=300 fuzz/corpus

Without atheris, ``--smoke N`` runs N random inputs (the test suite does that, so
the target cannot rot). The first input byte picks the scenario:

* bit 0: our side is the server (1) or the client (0);
* bit 1: the bytes arrive after a real handshake (1) or instead of one (0);
* bit 2: TLS 1.2 (1) or 1.3 (0);
* bits 3-7: how the rest is cut into transport reads (1 + value * 97 bytes each).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import random
import ssl
import sys
from pathlib import Path
from typing import Any

if importlib.util.find_spec("anyiotls") is None:  # a checkout, not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

# Imported in main() (under atheris's instrumentation) or on first use.
NEED_DATA = None
TLSEngine: Any = None


def _load_engine() -> None:
    global TLSEngine
    if TLSEngine is None:
        from anyiotls import _engine

        assert _engine.NEED_DATA is NEED_DATA
        TLSEngine = _engine.TLSEngine


#: Steps on one transport read before the engine must ask for more input: a
#: read completes at most a few records, each step consumes one.
MAX_STEPS = 1_000
#: The engine may not produce more than this for the peer from one input.
MAX_OUTPUT = 1 << 20


@functools.cache
def contexts(tls12: bool) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A (client, server) pair of contexts with a throw-away CA (made once)."""
    import trustme

    ca = trustme.CA()
    client = ssl.create_default_context()
    ca.configure_trust(client)
    if tls12:
        client.maximum_version = ssl.TLSVersion.TLSv1_2
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server)
    return client, server


def engines(tls12: bool) -> tuple[Any, Any]:
    _load_engine()
    client_context, server_context = contexts(tls12)
    client = TLSEngine(client_context, server_side=False, server_hostname="localhost")
    server = TLSEngine(server_context, server_side=True, server_hostname=None)
    return client, server


def handshake(client: Any, server: Any) -> None:
    """Pump two engines until both have finished the handshake."""
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, ours, peer in (
            ("client", client, server),
            ("server", server, client),
        ):
            if not done[name]:
                done[name] = ours.do_handshake() is not NEED_DATA
            data = ours.data_to_send()
            if data:
                peer.receive_data(data)
        if all(done.values()):
            return
    raise RuntimeError("the handshake did not finish")


def one_input(data: bytes) -> None:
    """Feed *data* to the engine as the peer; fail on anything undocumented."""
    if not data:
        return
    control, payload = data[0], data[1:]
    server_side = bool(control & 1)
    established = bool(control & 2)
    tls12 = bool(control & 4)
    piece = 1 + (control >> 3) * 97
    client, server = engines(tls12)
    if established:
        handshake(client, server)
    ours = server if server_side else client
    if not established:
        ours.do_handshake()  # a client writes its ClientHello first
    ours.data_to_send()
    produced = 0
    try:
        for offset in range(0, len(payload), piece):
            ours.receive_data(payload[offset : offset + piece])
            steps = 0
            while True:
                steps += 1
                if steps > MAX_STEPS:
                    raise AssertionError("too many steps: the engine does not progress")
                if established:
                    result = ours.read(16384)
                    if result == b"":  # close_notify: then unwrap
                        ours.unwrap()
                        result = NEED_DATA
                else:
                    result = ours.do_handshake()
                    if result is not NEED_DATA:
                        established = True  # (only with a forged handshake: never)
                produced += len(ours.data_to_send())
                if produced > MAX_OUTPUT:
                    raise AssertionError("the engine keeps writing")
                if result is NEED_DATA:
                    break
        ours.receive_data(b"")  # and then the end of the transport
        if established:
            ours.read(16384)
        else:
            ours.do_handshake()
    except ssl.SSLError:
        return  # documented: the first TLS error, raised again by later steps


def smoke(count: int, seed: int = 0) -> None:
    """*count* random inputs, without atheris."""
    rng = random.Random(seed)
    for _ in range(count):
        size = rng.choice([0, 1, 5, 40, 300, 2000, 20000])
        header = (
            bytes([rng.choice([20, 21, 22, 23]), 3, 3]) if rng.random() < 0.5 else b""
        )
        one_input(bytes([rng.randrange(256)]) + header + rng.randbytes(size))


def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] == "--smoke":
        count = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
        smoke(count, int(os.environ.get("SEED", "0")))
        return
    import atheris  # type: ignore[import-not-found]

    with atheris.instrument_imports():
        _load_engine()
    contexts(False)  # make the certificates before fuzzing starts
    contexts(True)
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
