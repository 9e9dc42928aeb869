"""What the command line says when things go wrong: the likely cause, the fix.

Every test runs the ``anyiotls`` console script, as a user types it, against real
peers (``openssl s_server``, ``anyiotls serve``, aiosmtpd's LMTP server).
"""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import trustme

from anyiotls import TLSStream
from anyiotls.cli import ExitCode

from ..peers import PemFiles
from ..peers.openssl import openssl_server
from ..starttls.conftest import MAIL_HOSTNAME, free_port
from .helpers import (
    TIMEOUT,
    Result,
    anyiotls_serve,
    assert_one_line_error,
    cli_env,
    console_script,
    run_cli,
    run_cli_async,
)

pytestmark = pytest.mark.anyio


def connect(*args: str, input: bytes = b"") -> Result:
    return run_cli("connect", *args, input=input, script=True)


async def connect_async(*args: str, input: bytes = b"") -> Result:
    return await run_cli_async("connect", *args, input=input, script=True)


# -- client certificates ---------------------------------------------------------


async def test_tls12_server_requiring_a_client_certificate_names_the_fix(
    pem_files: PemFiles,
) -> None:
    async with openssl_server(
        pem_files, verify_client="require", tls_version="1.2"
    ) as server:
        result = await connect_async(
            f"localhost:{server.port}", "--cafile", str(pem_files.ca)
        )
    assert_one_line_error(
        result,
        ExitCode.HANDSHAKE,
        "SSLV3_ALERT_HANDSHAKE_FAILURE",
        "the server may require a client certificate: --cert",
    )


@pytest.mark.parametrize(
    "mode",
    [[], ["--no-interactive"], ["--json"]],
    ids=["interactive", "report", "json"],
)
async def test_tls13_certificate_required_alert_names_the_fix(
    pem_files: PemFiles, mode: list[str]
) -> None:
    # TLS 1.3: the client's handshake completes; the refusal comes after it.
    async with openssl_server(
        pem_files, verify_client="require", tls_version="1.3"
    ) as server:
        result = await connect_async(
            f"localhost:{server.port}", "--cafile", str(pem_files.ca), *mode
        )
    fragments = (
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "the server requires a client certificate: --cert",
    )
    if mode:
        line = assert_one_line_error(result, ExitCode.HANDSHAKE, *fragments)
    else:  # the report went to stderr first, then the error
        assert result.returncode == ExitCode.HANDSHAKE, result.describe()
        line = result.stderr.strip().splitlines()[-1]
        assert all(fragment in line for fragment in fragments), result.describe()
    assert line.startswith("anyiotls connect: ")
    assert "_ssl.c" not in line
    if mode == ["--json"]:
        assert json.loads(result.stdout)["error"]["kind"] == "handshake"


async def test_json_says_what_it_saw_of_the_client_certificate_check(
    pem_files: PemFiles,
) -> None:
    async with openssl_server(
        pem_files, verify_client="require", tls_version="1.3"
    ) as server:
        result = await connect_async(
            f"localhost:{server.port}",
            "--cafile",
            str(pem_files.ca),
            "--cert",
            str(pem_files.client),
            "--json",
        )
    assert result.returncode == 0, result.describe()
    check = json.loads(result.stdout)["client_auth_check"]
    assert check.startswith(("no refusal from the server within", "the server sent")), (
        check
    )


# -- certificate verification -----------------------------------------------------


def _dated_certificate(
    tmp_path: Path, ca: trustme.CA, days_from_now: tuple[int, int]
) -> Path:
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = ca.issue_cert(
        "localhost",
        "127.0.0.1",
        not_before=now + datetime.timedelta(days=days_from_now[0]),
        not_after=now + datetime.timedelta(days=days_from_now[1]),
    )
    path = tmp_path / "dated.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(path)
    return path


@pytest.mark.parametrize(
    ("days", "fragments"),
    [
        ((-30, -1), ("certificate has expired", "the server must renew it")),
        ((1, 30), ("certificate is not yet valid", "is this machine's clock right?")),
    ],
    ids=["expired", "not-yet-valid"],
)
async def test_verification_hint_follows_the_error(
    tmp_path: Path,
    ca: trustme.CA,
    pem_files: PemFiles,
    days: tuple[int, int],
    fragments: tuple[str, ...],
) -> None:
    cert = _dated_certificate(tmp_path, ca, days)
    async with anyiotls_serve("--cert", str(cert), script=True) as serve:
        result = await connect_async(
            f"localhost:{serve.port}", "--cafile", str(pem_files.ca)
        )
    line = assert_one_line_error(result, ExitCode.VERIFY, *fragments)
    assert "--cafile" not in line  # the CA is fine: not the advice to give


async def test_untrusted_ca_hint_is_cafile(pem_files: PemFiles) -> None:
    async with anyiotls_serve("--cert", str(pem_files.server), script=True) as serve:
        result = await connect_async(f"localhost:{serve.port}")
    assert_one_line_error(result, ExitCode.VERIFY, "--cafile FILE trusts another CA")


# -- output pipe closed -------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "stdin"),
    [(["--no-interactive"], b""), ([], b"hello\n" * 1000)],
    ids=["report", "echoed-data"],
)
async def test_closed_output_pipe_is_an_ordinary_end(
    mode: list[str], stdin: bytes
) -> None:
    # As with `anyiotls connect ... | head -1`, but deterministic: the reader is
    # gone before anything is written.
    async with anyiotls_serve(script=True) as serve:
        assert serve.ca_file is not None

        address = f"localhost:{serve.port}"
        command = [console_script(), "connect", address, "--cafile", str(serve.ca_file)]

        def run() -> tuple[int, str]:
            process = subprocess.Popen(
                [*command, *mode],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=cli_env(),
            )
            assert process.stdout is not None
            process.stdout.close()
            _, errors = process.communicate(stdin, timeout=TIMEOUT)
            return process.returncode, errors.decode(errors="replace")

        returncode, errors = await anyio.to_thread.run_sync(run)
    assert returncode == 0, errors
    assert "BrokenPipe" not in errors
    assert "unexpected error" not in errors


# -- serve ---------------------------------------------------------------------------


async def _https_request(serve_port: int, ca_file: Path, request: bytes) -> bytes:
    context = ssl.create_default_context(cafile=str(ca_file))
    with anyio.fail_after(TIMEOUT):
        tcp = await anyio.connect_tcp("127.0.0.1", serve_port)
        async with await TLSStream.wrap(
            tcp, hostname="localhost", ssl_context=context
        ) as tls:
            await tls.send(request)
            await tls.send_eof()  # TLS 1.3 half-close: the echo ends, HTTP does not
            response = b""
            try:
                async for chunk in tls:
                    response += chunk
            except anyio.BrokenResourceError:
                pass
    return response


async def test_serve_http_answers_head_without_a_body() -> None:
    async with anyiotls_serve("--http", script=True) as serve:
        assert serve.ca_file is not None
        head = await _https_request(
            serve.port, serve.ca_file, b"HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )
        get = await _https_request(
            serve.port, serve.ca_file, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )
    head_fields, _, head_body = head.partition(b"\r\n\r\n")
    get_fields, _, get_body = get.partition(b"\r\n\r\n")
    assert head_fields.startswith(b"HTTP/1.1 200 OK"), head
    assert head_body == b""
    assert b"anyiotls serve: your TLS connection" in get_body
    assert f"Content-Length: {len(get_body)}".encode() in get_fields
    # HEAD announces the length its GET would have (RFC 9110, section 9.3.2); the
    # page shows the request line, one letter longer for HEAD than for GET.
    assert f"Content-Length: {len(get_body) + 1}".encode() in head_fields


def test_serve_on_a_port_in_use_prints_nothing_misleading() -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = run_cli("serve", "--port", str(port), script=True)
    assert_one_line_error(result, ExitCode.CONNECT, "cannot listen on 127.0.0.1")
    assert result.stdout == ""  # no paths of certificates it has already deleted


async def test_serve_certs_dir_keeps_the_certificates_for_a_client(
    tmp_path: Path,
) -> None:
    certs = tmp_path / "certs"
    async with anyiotls_serve("--certs-dir", str(certs), script=True) as serve:
        assert serve.ca_file == certs / "ca.pem"
        assert "server cert+key" in serve.text
        answer = await _https_request(serve.port, certs / "ca.pem", b"ping\n")
    assert answer == b"ping\n"
    assert sorted(path.name for path in certs.iterdir()) == [
        "ca.pem",
        "client.pem",
        "server.pem",
    ]
    assert (certs / "server.pem").stat().st_mode & 0o077 == 0
    # The server certificate works for a server of one's own.
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs / "server.pem")


async def test_serve_explains_clients_that_do_not_handshake() -> None:
    async with anyiotls_serve(script=True) as serve:
        with anyio.fail_after(TIMEOUT):
            tcp = await anyio.connect_tcp("127.0.0.1", serve.port)
            await tcp.aclose()
            await serve.wait_output("closed before the handshake")
            async with await anyio.connect_tcp("127.0.0.1", serve.port) as plain:
                await plain.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                await serve.wait_output("plaintext HTTP sent to a TLS port")
    assert "without close_notify" not in serve.text


# -- connect's arguments --------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["connect", "localhost:99999"], "port out of range 1-65535"),
        (["connect", "localhost:0"], "port out of range 1-65535"),
        (
            ["connect", "localhost:1", "--insecure", "--cafile", "ca.pem"],
            "--cafile would be ignored",
        ),
    ],
)
def test_usage_errors_name_the_problem(args: list[str], fragment: str) -> None:
    assert_one_line_error(run_cli(*args, script=True), ExitCode.USAGE, fragment)


@pytest.fixture
def lmtp_server(mail_cert: trustme.LeafCert) -> Iterator[int]:
    """aiosmtpd's LMTP server on 127.0.0.1, offering STARTTLS (a real LMTP peer)."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.lmtp import LMTP

    class LMTPController(Controller):
        def factory(self) -> LMTP:
            return LMTP(self.handler, **self.SMTP_kwargs)

    class Sink:
        async def handle_DATA(self, *_: object) -> str:
            return "250 OK"

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    mail_cert.configure_cert(context)
    controller = LMTPController(
        Sink(),
        hostname="127.0.0.1",
        port=free_port(),
        server_hostname=MAIL_HOSTNAME,
        tls_context=context,
        ready_timeout=TIMEOUT,
    )
    start = time.monotonic()
    controller.start()
    assert time.monotonic() - start < TIMEOUT
    try:
        yield controller.port
    finally:
        controller.stop()


async def test_connect_starttls_lmtp(lmtp_server: int, pem_files: PemFiles) -> None:
    result = await connect_async(
        f"127.0.0.1:{lmtp_server}",
        "--starttls",
        "lmtp",
        "--servername",
        MAIL_HOSTNAME,
        "--cafile",
        str(pem_files.ca),
        "--no-interactive",
    )
    assert result.returncode == 0, result.describe()
    assert "STARTTLS  lmtp: LHLO over TLS:" in result.stdout, result.describe()
