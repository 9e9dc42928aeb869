"""``anyiotls serve`` reloads ``--cert``/``--key`` on SIGHUP, keeping the old if bad."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import anyio
import pytest
import trustme

from anyiotls import TLSAttribute, TLSStream

from .cli.helpers import anyiotls_serve
from .sni_helpers import Certificates, common_name

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(sys.platform == "win32", reason="no SIGHUP on Windows"),
]

TIMEOUT = 30


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the test's own loop; the server runs each backend


async def _connect(certs: Certificates, port: int) -> TLSStream:
    return await TLSStream.wrap(
        await anyio.connect_tcp("127.0.0.1", port),
        server_side=False,
        hostname="127.0.0.1",
        ssl_context=certs.client_context(None),
    )


async def _seen(certs: Certificates, port: int) -> str:
    stream = await _connect(certs, port)
    async with stream:
        await stream.send(b"ping")
        assert await stream.receive() == b"ping"
        return common_name(stream.extra(TLSAttribute.peer_certificate))


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
async def test_sighup_reloads_the_certificate(tmp_path: Path, backend: str) -> None:
    certs = Certificates(trustme.CA())
    cert, key = certs.write(tmp_path / "old", "first.test")
    live_cert, live_key = tmp_path / "server.crt", tmp_path / "server.key"
    live_cert.write_bytes(cert.read_bytes())
    live_key.write_bytes(key.read_bytes())
    with anyio.fail_after(TIMEOUT):
        async with anyiotls_serve(
            "--cert", str(live_cert), "--key", str(live_key), backend=backend
        ) as serve:
            assert await _seen(certs, serve.port) == "first.test"
            earlier = await _connect(certs, serve.port)

            # renewed files, then SIGHUP
            cert, key = certs.write(tmp_path / "new", "second.test")
            live_cert.write_bytes(cert.read_bytes())
            live_key.write_bytes(key.read_bytes())
            serve.process.send_signal(signal.SIGHUP)
            await serve.wait_output("SIGHUP: reloaded")
            assert await _seen(certs, serve.port) == "second.test"

            # bad files: the server says so and keeps the certificate it has
            live_key.write_text("not a key\n")
            serve.process.send_signal(signal.SIGHUP)
            await serve.wait_output("SIGHUP: reload failed, keeping the old")
            assert await _seen(certs, serve.port) == "second.test"

            # the connection made before the reloads still has its certificate
            await earlier.send(b"still here")
            assert await earlier.receive() == b"still here"
            peer = earlier.extra(TLSAttribute.peer_certificate)
            assert common_name(peer) == "first.test"
            await earlier.aclose()


async def test_sighup_without_cert_reloads_nothing() -> None:
    with anyio.fail_after(TIMEOUT):
        async with anyiotls_serve() as serve:
            serve.process.send_signal(signal.SIGHUP)
            await serve.wait_output("SIGHUP: nothing to reload")
            assert serve.process.returncode is None
