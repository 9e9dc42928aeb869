"""Certificates per host name against OpenSSL's and GnuTLS's clients, both faces.

Each client asks for a name (or none) and the test reads which certificate the
client reports having received (its common name), and whether it verified.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme
from anyio.abc import SocketAttribute

from anyiotls import TLSAttribute, TLSListener, TLSStream
from anyiotls.trio import SSLListener, SSLStream

from .peers import require_binary
from .sni_helpers import Certificates, sni_table

pytestmark = pytest.mark.anyio

TIMEOUT = 20
#: Seconds one client program may run.
CLIENT_TIMEOUT = 10

#: name asked for → the certificate's common name
CASES = {
    "a.test": "a.test",
    "b.test": "b.test",
    "x.wild.test": "*.wild.test",
    "xn--bcher-kva.test": "xn--bcher-kva.test",
    None: "default.test",
    "unknown.test": "default.test",
}


@pytest.fixture(scope="module")
def certs() -> Certificates:
    return Certificates(trustme.CA())


@pytest.fixture
def ca_file(certs: Certificates, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    certs.ca.cert_pem.write_to_path(str(path))
    return path


async def _greet_anyio(stream: TLSStream) -> None:
    async with stream:
        await stream.send(b"hello\n")
        try:
            while await stream.receive():
                pass
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            pass


async def _greet_trio(stream: SSLStream[Any]) -> None:
    import trio

    try:
        await stream.send_all(b"hello\n")
        while await stream.receive_some():
            pass
    except trio.BrokenResourceError:
        pass
    finally:
        await trio.aclose_forcefully(stream)


@asynccontextmanager
async def serving(
    face: str, certs: Certificates, refuse: bool = False
) -> AsyncIterator[int]:
    """A listener with a certificate per name (and a default) on a free port."""
    default = certs.context("default.test")
    if face == "anyio":
        inner = await anyio.create_tcp_listener(local_host="127.0.0.1")
        listener = TLSListener(
            inner,
            default,
            sni_contexts=sni_table(certs),
            refuse_unknown_names=refuse,
            handshake_timeout=CLIENT_TIMEOUT,
        )
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, _greet_anyio)
            yield int(listener.extra(SocketAttribute.local_port))
            tg.cancel_scope.cancel()
    else:
        import trio

        [tcp] = await trio.open_tcp_listeners(0, host="127.0.0.1")
        trio_listener = SSLListener(
            tcp,
            default,
            sni_contexts=sni_table(certs),
            refuse_unknown_names=refuse,
            handshake_timeout=CLIENT_TIMEOUT,
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, _greet_trio, [trio_listener])
            yield int(tcp.socket.getsockname()[1])
            nursery.cancel_scope.cancel()


def verify_name(name: str | None) -> str:
    """The name the client checks the certificate against."""
    return "default.test" if CASES[name] == "default.test" else str(name)


_OPENSSL_PEER = re.compile(r"Peer certificate: .*?CN\s*=\s*([^,\s]+)")
_GNUTLS_PEER = re.compile(r"- subject `CN=([^,']+)")


async def _run(args: list[str]) -> tuple[int, str]:
    with anyio.fail_after(CLIENT_TIMEOUT):
        result = await anyio.run_process(args, input=b"", check=False)
    return result.returncode, (result.stdout + result.stderr).decode(errors="replace")


async def openssl_sees(port: int, name: str | None, ca_file: Path) -> str:
    """The common name of the certificate ``openssl s_client`` got (verified)."""
    args = [
        require_binary("openssl"),
        "s_client",
        "-connect",
        f"127.0.0.1:{port}",
        "-brief",
        "-CAfile",
        str(ca_file),
        "-verify_return_error",
    ]
    args += ["-verify_hostname", verify_name(name)]
    args += ["-noservername"] if name is None else ["-servername", name]
    code, output = await _run(args)
    # (s_client may exit at its stdin's end before the server's greeting arrives)
    assert code == 0, output
    assert "Verification: OK" in output, output
    match = _OPENSSL_PEER.search(output)
    assert match is not None, output
    return match.group(1)


async def gnutls_sees(port: int, name: str | None, ca_file: Path) -> str:
    """The common name of the certificate ``gnutls-cli`` got (verified)."""
    args = [
        require_binary("gnutls-cli"),
        "--x509cafile",
        str(ca_file),
        "-p",
        str(port),
        "127.0.0.1",
        "--verify-hostname",
        verify_name(name),
    ]
    args += ["--disable-sni"] if name is None else ["--sni-hostname", name]
    code, output = await _run(args)
    assert code == 0, output
    assert "The certificate is trusted" in output, output
    match = _GNUTLS_PEER.search(output)
    assert match is not None, output
    return match.group(1)


CLIENTS = {"openssl": openssl_sees, "gnutls": gnutls_sees}


async def _check_all_names(
    face: str, client: str, certs: Certificates, ca: Path
) -> None:
    sees = CLIENTS[client]
    with anyio.fail_after(TIMEOUT * 2):
        async with serving(face, certs) as port:
            seen = {name: await sees(port, name, ca) for name in CASES}
    assert seen == CASES


async def _check_refusal(face: str, client: str, certs: Certificates, ca: Path) -> None:
    with anyio.fail_after(TIMEOUT):
        async with serving(face, certs, refuse=True) as port:
            if client == "openssl":
                args = [
                    require_binary("openssl"),
                    "s_client",
                    "-connect",
                    f"127.0.0.1:{port}",
                    "-brief",
                    "-servername",
                    "unknown.test",
                ]
            else:
                args = [
                    require_binary("gnutls-cli"),
                    "--x509cafile",
                    str(ca),
                    "-p",
                    str(port),
                    "127.0.0.1",
                    "--sni-hostname",
                    "unknown.test",
                ]
            code, output = await _run(args)
            # a known name still works on the same listener
            assert await CLIENTS[client](port, "a.test", ca) == "a.test"
    assert code != 0
    assert re.search(r"unrecognized name|alert number 112|alert \[112\]", output), (
        output
    )


@pytest.mark.parametrize("client", list(CLIENTS))
async def test_anyio_face_names(
    client: str, certs: Certificates, ca_file: Path
) -> None:
    await _check_all_names("anyio", client, certs, ca_file)


@pytest.mark.parametrize("client", list(CLIENTS))
async def test_anyio_face_refuses_unknown_names(
    client: str, certs: Certificates, ca_file: Path
) -> None:
    await _check_refusal("anyio", client, certs, ca_file)


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.parametrize("client", list(CLIENTS))
async def test_trio_face_names(client: str, certs: Certificates, ca_file: Path) -> None:
    await _check_all_names("trio", client, certs, ca_file)


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.parametrize("client", list(CLIENTS))
async def test_trio_face_refuses_unknown_names(
    client: str, certs: Certificates, ca_file: Path
) -> None:
    await _check_refusal("trio", client, certs, ca_file)


async def test_our_client_hostname_and_tls12(certs: Certificates) -> None:
    """Our own client over TLS 1.2 too (another ClientHello shape)."""
    with anyio.fail_after(TIMEOUT):
        async with serving("anyio", certs) as port:
            for version in [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]:
                context = certs.client_context("b.test")
                context.maximum_version = version
                stream = await TLSStream.wrap(
                    await anyio.connect_tcp("127.0.0.1", port),
                    hostname="b.test",
                    ssl_context=context,
                )
                assert await stream.receive() == b"hello\n"
                assert stream.extra(TLSAttribute.tls_version) == (
                    "TLSv1.2" if version is ssl.TLSVersion.TLSv1_2 else "TLSv1.3"
                )
                await stream.aclose()
