"""``anyiotls connect --reconnect N``: resumption reported per connection, against
``openssl s_server`` (real peer, every connection on loopback)."""

from __future__ import annotations

import json

import pytest

from anyiotls.cli import ExitCode

from ..peers import PemFiles
from ..peers.openssl import openssl_server
from .helpers import assert_one_line_error, run_cli, run_cli_async

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the peer's loop; the CLI runs in its own process


@pytest.mark.parametrize(
    ("version", "extra"),
    [("1.3", ["-num_tickets", "2"]), ("1.2", ["-no_ticket"]), ("1.2", [])],
    ids=["TLSv1.3-tickets", "TLSv1.2-session-ids", "TLSv1.2-tickets"],
)
async def test_reconnect_reports_resumption(
    pem_files: PemFiles, version: str, extra: list[str]
) -> None:
    async with openssl_server(
        pem_files, mode="www", tls_version=version, naccept=None, extra_args=extra
    ) as server:
        result = await run_cli_async(
            "connect",
            f"localhost:{server.port}",
            "--cafile",
            str(pem_files.ca),
            "--reconnect",
            "3",
        )
    assert result.returncode == 0, result.describe()
    assert "session   new (full handshake)" in result.stdout, result.describe()
    lines = [line for line in result.stdout.splitlines() if "reconnect" in line]
    assert len(lines) == 3, result.describe()
    for number, line in enumerate(lines, 1):
        assert line.startswith(f"reconnect {number}: resumed yes; TLSv{version}")


async def test_reconnect_json_and_a_server_that_cannot_resume(
    pem_files: PemFiles,
) -> None:
    async with openssl_server(
        pem_files, mode="www", tls_version="1.3", num_tickets=0, naccept=None
    ) as server:
        result = await run_cli_async(
            "connect",
            f"localhost:{server.port}",
            "--cafile",
            str(pem_files.ca),
            "--reconnect",
            "2",
            "--json",
        )
    assert result.returncode == 0, result.describe()
    report = json.loads(result.stdout)
    assert report["resumed"] is False
    assert [r["resumed"] for r in report["reconnects"]] == [False, False]
    assert [r["offered_session"] for r in report["reconnects"]] == [False, False]


def test_reconnect_usage_errors() -> None:
    result = run_cli("connect", "localhost:1", "--reconnect", "0")
    assert_one_line_error(result, ExitCode.USAGE, "--reconnect", "must be 1-1000")
    result = run_cli("connect", "localhost:1", "--reconnect", "2", "--starttls", "smtp")
    assert_one_line_error(result, ExitCode.USAGE, "--starttls")
