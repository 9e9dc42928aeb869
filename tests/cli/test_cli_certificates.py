"""``anyiotls connect --json``: the leaf's key pin and tls-server-end-point.

Against ``openssl s_server`` with a root -> intermediate -> leaf chain; the
expected values are computed with cryptography (``tests/certs_pki.py``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ..certs_pki import Pki, expected_end_point, expected_pin, make_pki
from ..peers import PemFiles
from ..peers.openssl import openssl_server
from .helpers import run_cli_async

pytestmark = [pytest.mark.anyio, pytest.mark.interop]


async def _connect_json(pki: Pki, tmp_path: Path) -> dict[str, object]:
    files = pki.write(tmp_path / "pki")
    pem = PemFiles(tmp_path / "pki", files["ca"], files["server"], files["server"])
    async with openssl_server(
        pem, mode="www", extra_args=["-cert_chain", str(files["chain"])]
    ) as server:
        result = await run_cli_async(
            "connect",
            f"127.0.0.1:{server.port}",
            "--servername",
            "localhost",
            "--cafile",
            str(files["ca"]),
            "--json",
        )
    assert result.returncode == 0, result.describe()
    report: dict[str, object] = json.loads(result.stdout)
    return report


@pytest.mark.parametrize("kind", ["ecdsa-p384-sha384", "ed25519"])
async def test_connect_json_reports_pin_and_binding(tmp_path: Path, kind: str) -> None:
    pki = make_pki(kind)
    leaf = pki.der(pki.leaf)
    report = await _connect_json(pki, tmp_path)
    assert report["peer_pin_sha256"] == expected_pin(leaf)
    expected = expected_end_point(leaf)
    if expected is None:
        assert report["tls_server_end_point"] is None
        assert "Ed25519" in str(report["tls_server_end_point_error"])
    else:
        assert report["tls_server_end_point"] == expected.hex()
        assert report["tls_server_end_point_error"] is None
    chain = report["peer_chain"]
    if sys.version_info >= (3, 13):
        assert isinstance(chain, list)
        assert len(chain) == 2  # leaf and intermediate, as s_server sent them
    else:
        assert chain is None
