"""Real TLS peers (other programs) that interop tests start on 127.0.0.1.

Everything a peer needs lives in a fresh temporary directory; every wait has a time
limit; a peer is always stopped when its ``async with`` block ends, however it ends.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

__all__ = ("PemFiles", "in_ci", "require_binary", "write_pem_files")

# Which Debian package ships a binary, for the skip message.
_DEBIAN_PACKAGES = {
    "openssl": "openssl",
    "gnutls-serv": "gnutls-bin",
    "gnutls-cli": "gnutls-bin",
    "dovecot": "dovecot-imapd dovecot-pop3d",
    "postfix": "postfix",
}


def in_ci() -> bool:
    """True when the ``CI`` environment variable is set (and not "false"/"0")."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def require_binary(name: str) -> str:
    """Return the path of the program *name*, or skip the test if it is missing.

    Under CI (the ``CI`` environment variable is set) a missing program fails the
    test instead: CI installs every peer, so there nothing may skip.
    """
    path = shutil.which(name)
    if path is not None:
        return path
    package = _DEBIAN_PACKAGES.get(name, name)
    reason = f"{name!r} is not installed (apt-get install {package})"
    if in_ci():
        pytest.fail(f"{reason}; in CI nothing may skip: install it in .ci/run")
    pytest.skip(reason)


@dataclass(frozen=True)
class PemFiles:
    """PEM files for programs that want paths rather than an ``SSLContext``."""

    directory: Path
    #: the CA certificate that signed both leaf certificates
    ca: Path
    #: private key + chain for "localhost" and "127.0.0.1"
    server: Path
    #: private key + chain for the client identity ``client@example.org``
    client: Path


def write_pem_files(
    directory: Path,
    ca: trustme.CA,
    server_cert: trustme.LeafCert,
    client_cert: trustme.LeafCert,
) -> PemFiles:
    directory.mkdir(parents=True, exist_ok=True)
    files = PemFiles(
        directory=directory,
        ca=directory / "ca.pem",
        server=directory / "server.pem",
        client=directory / "client.pem",
    )
    ca.cert_pem.write_to_path(str(files.ca))
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(files.server))
    client_cert.private_key_and_cert_chain_pem.write_to_path(str(files.client))
    return files
