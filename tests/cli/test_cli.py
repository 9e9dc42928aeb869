"""The ``anyiotls`` command line, run as a subprocess against real peers.

``demo`` on both backends; ``connect`` against ``openssl s_server``, ``anyiotls
serve``, aiosmtpd and Dovecot (``--starttls``); ``serve`` against ``openssl
s_client``; and every kind of bad input: one line, no traceback, its own exit code.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path

import anyio
import pytest
import trustme
from anyio.abc import SocketStream
from cryptography import x509

from anyiotls.cli import ExitCode

from ..peers import PemFiles, write_pem_files
from ..peers.openssl import openssl_client, openssl_server
from ..starttls.conftest import MAIL_HOSTNAME, DovecotServer
from .helpers import (
    TIMEOUT,
    Result,
    anyiotls_serve,
    assert_one_line_error,
    cli_command,
    cli_env,
    run_cli,
    run_cli_async,
)

pytestmark = pytest.mark.anyio

BACKENDS = ["asyncio", "trio"]


def subject_of(pem_file: Path) -> str:
    """The RFC 4514 subject of the first certificate in *pem_file*."""
    return x509.load_pem_x509_certificates(pem_file.read_bytes())[
        0
    ].subject.rfc4514_string()


def json_of(result: Result) -> dict[str, object]:
    assert result.stdout.strip(), result.describe()
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    return data


# -- help, usage --------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["demo"], ["connect"], ["serve"]])
def test_help_on_every_command(command: list[str]) -> None:
    result = run_cli(*command, "--help")
    assert result.returncode == 0, result.describe()
    assert result.stdout.startswith("usage: anyiotls"), result.describe()
    assert result.stderr == ""


def test_no_command_prints_help_and_fails() -> None:
    result = run_cli()
    assert result.returncode == ExitCode.USAGE
    assert "demo" in result.stderr
    assert "connect" in result.stderr


def test_python_dash_m_and_main_are_the_same_program() -> None:
    result = run_cli(
        python="import sys; from anyiotls.__main__ import main; "
        "sys.exit(main(['--version']))"
    )
    assert result.returncode == 0, result.describe()
    assert result.stdout.startswith("anyiotls ")


# -- demo ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_demo_runs_every_step(backend: str) -> None:
    result = run_cli("demo", "--backend", backend, timeout=60)
    assert result.returncode == 0, result.describe()
    out = result.stdout
    assert f"AnyIO on {backend}" in out
    assert "version   TLSv1.3" in out
    assert "ALPN      echo/1" in out
    assert "client: await stream.receive() -> b'Hello over TLS!'" in out
    assert "server: got CN=demo client" in out
    assert "leftover=b'QUIT\\r\\n'" in out
    assert "reads b'221 bye'" in out
    assert "MB/s" in out
    assert "All 6 steps passed" in out
    assert "FAILED" not in out
    assert result.stderr == ""


_BREAK_DEMO = """
import ssl, sys
import anyiotls.cli._demo as demo
from anyiotls.cli import main

make_contexts = demo._Contexts.__init__

def server_without_tls13(self):
    make_contexts(self)
    self.server.maximum_version = ssl.TLSVersion.TLSv1_2  # the client wants 1.3

demo._Contexts.__init__ = server_without_tls13
sys.exit(main(["demo"]))
"""


def test_demo_failure_is_one_line_and_nonzero() -> None:
    result = run_cli(python=_BREAK_DEMO)
    assert_one_line_error(
        result, ExitCode.ERROR, "step 2 (TLS 1.3 handshake with ALPN) failed"
    )
    assert "FAILED" in result.stdout


# -- connect against openssl s_server -----------------------------------------------


@pytest.mark.parametrize("version", ["1.2", "1.3"])
async def test_connect_json_against_s_server(pem_files: PemFiles, version: str) -> None:
    async with openssl_server(pem_files, mode="www", alpn=["h2", "http/1.1"]) as server:
        result = await run_cli_async(
            "connect",
            f"127.0.0.1:{server.port}",
            "--servername",
            "localhost",
            "--cafile",
            str(pem_files.ca),
            "--alpn",
            "h2",
            f"--tls{version}",
            "--json",
        )
    assert result.returncode == 0, result.describe()
    report = json_of(result)
    assert report["version"] == f"TLSv{version}"
    assert report["alpn"] == "h2"
    assert report["verified"] is True
    assert report["verify_error"] is None
    assert str(report["cipher"]).startswith(("TLS_", "ECDHE-"))
    cert = report["peer_certificate"]
    assert isinstance(cert, dict)
    assert cert["subject"] == subject_of(pem_files.server)
    assert cert["san"] == ["DNS:localhost", "IP:127.0.0.1"]
    assert len(str(cert["sha256"]).split(":")) == 32
    for key in ("issuer", "not_before", "not_after"):
        assert cert[key]


async def test_connect_report_is_readable(pem_files: PemFiles) -> None:
    async with openssl_server(pem_files, mode="www") as server:
        result = await run_cli_async(
            "connect",
            f"localhost:{server.port}",
            "--cafile",
            str(pem_files.ca),
            "--no-interactive",
        )
    assert result.returncode == 0, result.describe()
    assert "protocol  TLSv1.3" in result.stdout
    assert "verified  yes" in result.stdout
    assert f"subject  {subject_of(pem_files.server)}" in result.stdout
    assert "SAN      DNS:localhost, IP:127.0.0.1" in result.stdout


async def test_connect_interactive_pipes_stdin_and_stdout(pem_files: PemFiles) -> None:
    async with openssl_server(pem_files, mode="rev") as server:
        result = await run_cli_async(
            "connect",
            f"localhost:{server.port}",
            "--cafile",
            str(pem_files.ca),
            "--linger",
            "0.2",  # s_server -rev never closes by itself
            input=b"hello\nworld\n",
        )
    assert result.returncode == 0, result.describe()
    assert result.stdout == "olleh\ndlrow\n"  # the report went to stderr
    assert "protocol  TLSv1.3" in result.stderr


async def test_connect_exits_when_the_server_closes_while_stdin_stays_open(
    pem_files: PemFiles,
) -> None:
    async with openssl_server(pem_files, mode="rev") as server:
        with anyio.fail_after(TIMEOUT):
            async with await anyio.open_process(
                cli_command(
                    "connect", f"localhost:{server.port}", "--cafile", str(pem_files.ca)
                ),
                env=cli_env(),
            ) as process:
                assert process.stdin is not None
                assert process.stdout is not None
                # s_server -rev answers "CLOSE" with close_notify; stdin stays open.
                await process.stdin.send(b"abc\nCLOSE\n")
                assert await process.wait() == 0
                output = b""
                async for chunk in process.stdout:
                    output += chunk
    assert output.startswith(b"cba\n")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_connect_interrupted_by_ctrl_c(pem_files: PemFiles, backend: str) -> None:
    async with openssl_server(pem_files, mode="rev") as server:
        with anyio.fail_after(TIMEOUT):
            async with await anyio.open_process(
                cli_command(
                    "connect",
                    f"localhost:{server.port}",
                    "--cafile",
                    str(pem_files.ca),
                    "--backend",
                    backend,
                ),
                env=cli_env(),
            ) as process:
                assert process.stderr is not None
                errors = b""
                async for chunk in process.stderr:  # the report, once connected
                    errors += chunk
                    if re.search(rb"SHA-256 [^\n]*\n", errors):
                        break
                process.send_signal(signal.SIGINT)
                assert await process.wait() == ExitCode.INTERRUPTED
                async for chunk in process.stderr:
                    errors += chunk
    assert errors.decode().splitlines()[-1] == "anyiotls connect: interrupted"
    assert b"Traceback" not in errors


@pytest.mark.parametrize("version", ["1.2", "1.3"])
async def test_connect_presents_client_certificate(
    pem_files: PemFiles, version: str
) -> None:
    async with openssl_server(
        pem_files,
        verify_client="require",
        tls_version=version,  # type: ignore[arg-type]
    ) as server:
        result = await run_cli_async(
            "connect",
            f"localhost:{server.port}",
            "--cafile",
            str(pem_files.ca),
            "--cert",
            str(pem_files.client),
            "--json",
        )
        await server.wait_for_output(b"Client certificate")
    assert result.returncode == 0, result.describe()
    assert json_of(result)["version"] == f"TLSv{version}"


async def test_connect_without_required_client_certificate_fails(
    pem_files: PemFiles,
) -> None:
    async with openssl_server(
        pem_files, verify_client="require", tls_version="1.2"
    ) as server:
        result = await run_cli_async(
            "connect", f"localhost:{server.port}", "--cafile", str(pem_files.ca)
        )
    assert_one_line_error(result, ExitCode.HANDSHAKE, "TLS handshake failed")


async def test_connect_untrusted_certificate_fails_verification(
    pem_files: PemFiles,
) -> None:
    async with openssl_server(pem_files, mode="www") as server:
        result = await run_cli_async(
            "connect", f"localhost:{server.port}", "--no-interactive"
        )
    assert_one_line_error(
        result, ExitCode.VERIFY, "certificate verification failed", "--cafile"
    )


async def test_connect_wrong_host_name_fails_verification_json(
    pem_files: PemFiles,
) -> None:
    async with openssl_server(pem_files, mode="www") as server:
        result = await run_cli_async(
            "connect",
            f"127.0.0.1:{server.port}",
            "--cafile",
            str(pem_files.ca),
            "--servername",
            "other.example",
            "--json",
        )
    assert_one_line_error(result, ExitCode.VERIFY, "Hostname mismatch")
    error = json_of(result)["error"]
    assert error == {
        "exit_code": ExitCode.VERIFY,
        "kind": "verify",
        "message": result.stderr.strip().removeprefix("anyiotls connect: "),
    }


async def test_connect_insecure_skips_verification_loudly(pem_files: PemFiles) -> None:
    async with openssl_server(pem_files, mode="www") as server:
        result = await run_cli_async(
            "connect", f"localhost:{server.port}", "--insecure", "--json"
        )
    assert result.returncode == 0, result.describe()
    report = json_of(result)
    assert report["verified"] is False
    assert report["verify_error"] == "not checked: --insecure"
    assert "WARNING: --insecure" in result.stderr
    assert "NOT verified" in result.stderr


async def test_connect_escapes_control_characters_from_the_peer(
    tmp_path: Path, ca: trustme.CA
) -> None:
    evil = ca.issue_cert("localhost", common_name="evil\x1b[2J\nforged line")
    pem = write_pem_files(tmp_path / "evil", ca, evil, evil)
    async with openssl_server(pem, mode="www") as server:
        result = await run_cli_async(
            "connect",
            f"localhost:{server.port}",
            "--cafile",
            str(pem.ca),
            "--no-interactive",
        )
    assert result.returncode == 0, result.describe()
    assert "\x1b" not in result.stdout
    assert "CN=evil\\x1b[2J\\nforged line" in result.stdout


# -- connect against anyiotls serve -------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
async def test_connect_to_serve_echo_with_post_handshake_auth(backend: str) -> None:
    async with anyiotls_serve(
        "--request-client-cert", "post-handshake", backend=backend
    ) as serve:
        assert serve.ca_file is not None
        assert serve.ca_file.exists()
        assert serve.client_file is not None
        result = await run_cli_async(
            "connect",
            f"localhost:{serve.port}",
            "--cafile",
            str(serve.ca_file),
            "--cert",
            str(serve.client_file),
            "--backend",
            backend,
            "--linger",
            "0.2",
            input=b"ping\n",
        )
        await serve.wait_output("client certificate (post-handshake): CN=anyiotls test")
        await serve.wait_output("closed by the client after 5 bytes echoed")
        assert result.returncode == 0, result.describe()
        assert result.stdout == "ping\n"
        assert "TLSv1.3  TLS_" in serve.text
        assert "SNI=localhost" in serve.text


async def test_connect_to_serve_http_page() -> None:
    async with anyiotls_serve("--http") as serve:
        assert serve.ca_file is not None
        result = await run_cli_async(
            "connect",
            f"localhost:{serve.port}",
            "--cafile",
            str(serve.ca_file),
            "--alpn",
            "http/1.1",
            "--crlf",
            input=b"GET /status HTTP/1.0\n\n",
        )
        await serve.wait_output("answered 'GET /status HTTP/1.0'")
    assert result.returncode == 0, result.describe()
    assert result.stdout.startswith("HTTP/1.1 200 OK\r\n"), result.describe()
    assert "protocol            TLSv1.3" in result.stdout
    assert "ALPN                http/1.1" in result.stdout
    assert "SNI                 localhost" in result.stdout


# -- serve against openssl s_client -------------------------------------------------


async def test_serve_with_s_client_alpn_and_post_handshake_auth(
    pem_files: PemFiles,
) -> None:
    async with anyiotls_serve(
        "--cert",
        str(pem_files.server),
        "--cafile",
        str(pem_files.ca),
        "--request-client-cert",
        "post-handshake",
        "--alpn",
        "h2,http/1.1",
    ) as serve:
        assert serve.ca_file is None  # no ephemeral CA with --cert
        async with openssl_client(
            pem_files, serve.port, alpn=["h2"], cert=True, enable_pha=True
        ) as client:
            await client.wait_connected()
            await client.send(b"hello\n")
            await client.wait_received(b"hello\n")
            subject = subject_of(pem_files.client)
            await serve.wait_output(f"client certificate (post-handshake): {subject}")
            assert await client.close() == 0
        await serve.wait_output("closed by the client after 6 bytes echoed")
        assert "TLSv1.3  TLS_AES" in serve.text
        assert "ALPN=h2  SNI=localhost" in serve.text


async def test_serve_with_s_client_tls12_client_certificate_in_handshake(
    pem_files: PemFiles,
) -> None:
    async with anyiotls_serve(
        "--cert",
        str(pem_files.server),
        "--cafile",
        str(pem_files.ca),
        "--request-client-cert",
        "handshake",
    ) as serve:
        async with openssl_client(
            pem_files, serve.port, tls_version="1.2", cert=True
        ) as client:
            await client.wait_connected()
            await client.send(b"twelve\n")
            await client.wait_received(b"twelve\n")
            assert await client.close() == 0
        subject = subject_of(pem_files.client)
        await serve.wait_output(f"client certificate: {subject}")
        assert "TLSv1.2  ECDHE-" in serve.text


async def test_serve_survives_a_client_that_does_not_speak_tls(
    pem_files: PemFiles,
) -> None:
    async with anyiotls_serve("--cert", str(pem_files.server)) as serve:
        with anyio.fail_after(TIMEOUT):
            async with await anyio.connect_tcp("127.0.0.1", serve.port) as plain:
                await plain.send(b"GET / HTTP/1.0\r\n\r\n")
                await serve.wait_output("plaintext HTTP sent to a TLS port")
        async with openssl_client(pem_files, serve.port) as client:
            await client.wait_connected()
            await client.send(b"still here\n")
            await client.wait_received(b"still here\n")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_serve_stops_cleanly_on_signal(signum: int, backend: str) -> None:
    async with anyiotls_serve(backend=backend) as serve:
        assert serve.ca_file is not None
        assert serve.ca_file.exists()
        assert await serve.stop(signum) == 0, serve.describe()
        assert f"stopping ({signal.Signals(signum).name})" in serve.text
        assert serve.text.endswith("stopped\n"), serve.describe()
        assert not serve.ca_file.exists()  # ephemeral files are removed
        assert "Traceback" not in serve.errors.decode()


# -- connect --starttls against real mail servers ----------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
async def test_connect_starttls_smtp_aiosmtpd(
    aiosmtpd_server: object, pem_files: PemFiles, backend: str
) -> None:
    port = aiosmtpd_server.port  # type: ignore[attr-defined]
    result = await run_cli_async(
        "connect",
        f"127.0.0.1:{port}",
        "--starttls",
        "smtp",
        "--servername",
        MAIL_HOSTNAME,
        "--cafile",
        str(pem_files.ca),
        "--backend",
        backend,
        input=b"NOOP\nQUIT\n",
    )
    assert result.returncode == 0, result.describe()
    assert "STARTTLS  smtp: EHLO over TLS" in result.stderr
    assert result.stdout.startswith("250 "), result.describe()  # NOOP, over TLS
    assert "\r\n221 " in result.stdout


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
async def test_connect_starttls_dovecot(
    dovecot: DovecotServer, pem_files: PemFiles, protocol: str
) -> None:
    port = dovecot.imap_port if protocol == "imap" else dovecot.pop3_port
    result = await run_cli_async(
        "connect",
        f"{dovecot.address}:{port}",
        "--starttls",
        protocol,
        "--servername",
        MAIL_HOSTNAME,
        "--cafile",
        str(pem_files.ca),
        "--json",
    )
    assert result.returncode == 0, result.describe()
    report = json_of(result)
    assert report["starttls"] == protocol
    assert report["verified"] is True
    assert report["version"] == "TLSv1.3"


# -- connect --starttls against scripted servers that will not upgrade --------------


@asynccontextmanager
async def scripted_server(
    dialogue: Callable[[SocketStream], Awaitable[None]],
) -> AsyncIterator[int]:
    """A plaintext TCP server on 127.0.0.1 running *dialogue* for each connection."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")

    async def handle(stream: SocketStream) -> None:
        async with stream:
            with suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                await dialogue(stream)

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.cancel_scope.cancel()


async def _smtp_without_starttls(stream: SocketStream) -> None:
    await stream.send(b"220 plain.test ESMTP\r\n")
    await stream.receive()  # EHLO
    await stream.send(b"250-plain.test\r\n250 SIZE 1000\r\n")
    await stream.receive()  # QUIT, or the end


async def _smtp_refusing_starttls(stream: SocketStream) -> None:
    await stream.send(b"220 plain.test ESMTP\r\n")
    await stream.receive()  # EHLO
    await stream.send(b"250-plain.test\r\n250 STARTTLS\r\n")
    await stream.receive()  # STARTTLS
    await stream.send(b"454 4.7.0 TLS not available\r\n")
    await stream.receive()


@pytest.mark.parametrize(
    ("dialogue", "expected"),
    [
        (_smtp_without_starttls, "did not offer STARTTLS"),
        (_smtp_refusing_starttls, "refused STARTTLS"),
    ],
)
async def test_connect_starttls_not_offered_or_refused(
    dialogue: Callable[[SocketStream], Awaitable[None]], expected: str
) -> None:
    async with scripted_server(dialogue) as port:
        result = await run_cli_async(
            "connect", f"127.0.0.1:{port}", "--starttls", "smtp", "--no-interactive"
        )
    assert_one_line_error(result, ExitCode.STARTTLS, expected)


# -- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "localhost",
        "localhost:",
        ":443",
        "localhost:0",
        "localhost:65536",
        "host:http",
        "[::1",
        "[nothost]:443",
        "::1:443",
    ],
)
def test_connect_bad_address(address: str) -> None:
    result = run_cli("connect", address)
    assert_one_line_error(result, ExitCode.USAGE, "bad address", address)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["connect", "localhost:1", "--tls1.2", "--tls1.3"], "not allowed with"),
        (["connect", "localhost:1", "--key", "k.pem"], "--key needs --cert"),
        (["connect", "localhost:1", "--alpn", "h2,,x"], "bad --alpn list"),
        (["connect", "localhost:1", "--timeout", "0"], "must be greater than 0"),
        (["connect", "localhost:1", "--starttls", "ftp"], "invalid choice"),
        (["connect", "localhost:1", "--bogus"], "unrecognized arguments"),
        (["demo", "--backend", "curio"], "invalid choice"),
        (["serve", "--port", "70000"], "port out of range"),
        (["serve", "--port", "x"], "not a port number"),
        (["serve", "--echo", "--http"], "not allowed with"),
        (["serve", "--cafile", "ca.pem"], "add --request-client-cert"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_usage_errors(args: list[str], fragment: str) -> None:
    assert_one_line_error(run_cli(*args), ExitCode.USAGE, fragment)


@pytest.fixture
def bad_files(tmp_path: Path, pem_files: PemFiles) -> dict[str, Path]:
    text = tmp_path / "text.pem"
    text.write_text("this is not a certificate\n")
    cert_only = tmp_path / "cert-only.pem"
    data = pem_files.server.read_text()
    cert_only.write_text(data[data.index("-----BEGIN CERTIFICATE-----") :])
    unreadable = tmp_path / "missing.pem"
    return {
        "missing": unreadable,
        "text": text,
        "cert_only": cert_only,
        "server": pem_files.server,
        "client": pem_files.client,
    }


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--cafile", "{missing}"], "cannot read CA file"),
        (["--cafile", "{text}"], "holds no PEM certificate"),
        (["--cert", "{missing}"], "cannot read certificate file"),
        (["--cert", "{text}"], "holds no PEM certificate"),
        (["--cert", "{cert_only}"], "holds no usable PEM private key"),
        (
            ["--cert", "{cert_only}", "--key", "{text}"],
            "holds no usable PEM private key",
        ),
        (["--cert", "{cert_only}", "--key", "{missing}"], "cannot read key file"),
        (["--cert", "{server}", "--key", "{client}"], "does not belong to"),
    ],
)
@pytest.mark.parametrize("command", ["connect", "serve"])
def test_bad_certificate_files(
    bad_files: dict[str, Path], options: list[str], fragment: str, command: str
) -> None:
    args = [option.format(**bad_files) for option in options]
    if command == "serve":
        if args[0] == "--cafile":
            args = [
                "--cert",
                str(bad_files["server"]),
                "--request-client-cert",
                "handshake",
                *args,
            ]
        result = run_cli("serve", "--port", "0", *args)
    else:
        result = run_cli("connect", "127.0.0.1:1", *args)
    assert_one_line_error(result, ExitCode.BAD_FILE, fragment)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connect_refused() -> None:
    port = _closed_port()
    result = run_cli("connect", f"127.0.0.1:{port}", "--json")
    assert_one_line_error(result, ExitCode.CONNECT, "cannot connect", "refused")
    assert json_of(result)["error"]["kind"] == "connect"  # type: ignore[index]


def test_connect_unknown_host() -> None:
    result = run_cli("connect", "no-such-host.invalid:443")
    assert_one_line_error(result, ExitCode.CONNECT, "cannot connect to no-such-host")


@contextmanager
def plain_tcp_server(greeting: bytes) -> Iterator[int]:
    """A thread that accepts one connection, sends *greeting* and reads until EOF."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(TIMEOUT)

    def run() -> None:
        try:
            connection, _ = server.accept()
        except OSError:
            return
        with connection:
            connection.settimeout(TIMEOUT)
            if greeting:
                connection.sendall(greeting)
            try:
                while connection.recv(65536):
                    pass
            except OSError:
                pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        server.close()
        thread.join(TIMEOUT)


def test_connect_to_a_port_that_does_not_speak_tls() -> None:
    with plain_tcp_server(b"220 mail.test ESMTP ready\r\n") as port:
        result = run_cli("connect", f"127.0.0.1:{port}")
    assert_one_line_error(
        result, ExitCode.HANDSHAKE, "does not seem to speak TLS", "--starttls"
    )


def test_connect_to_a_silent_port_times_out() -> None:
    with plain_tcp_server(b"") as port:
        result = run_cli("connect", f"127.0.0.1:{port}", "--timeout", "0.5")
    assert_one_line_error(result, ExitCode.HANDSHAKE, "did not finish within 0.5 s")


def test_serve_on_a_port_in_use() -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = run_cli("serve", "--port", str(port))
    assert_one_line_error(result, ExitCode.CONNECT, "cannot listen on 127.0.0.1")


def test_missing_cryptography_says_how_to_install() -> None:
    result = run_cli(
        python=(
            "import sys; sys.modules['cryptography'] = None; "
            "from anyiotls.cli import main; sys.exit(main(['demo']))"
        )
    )
    assert_one_line_error(
        result, ExitCode.MISSING_DEPENDENCY, "pip install 'anyiotls[cli]'"
    )
