"""Certificates for the SNI tests: one CA, a leaf per common name, contexts."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme

#: The listener's names, and the certificate (its common name) each one gets.
EXPECTED = {
    "a.test": "a.test",
    "B.Test": "b.test",  # case-insensitive
    "x.wild.test": "*.wild.test",
    "bücher.test": "xn--bcher-kva.test",  # IDNA: the client sends the A-label
    None: "default.test",  # no SNI
    "unknown.test": "default.test",
    "wild.test": "default.test",  # a wildcard needs one more label
    "a.b.wild.test": "default.test",  # ... exactly one
}


# -- certificates and contexts ---------------------------------------------------------


@dataclass
class Certificates:
    ca: trustme.CA
    leaves: dict[str, trustme.LeafCert] = field(default_factory=dict)

    def leaf(self, common_name: str) -> trustme.LeafCert:
        if common_name not in self.leaves:
            self.leaves[common_name] = self.ca.issue_cert(
                common_name, common_name=common_name
            )
        return self.leaves[common_name]

    def context(
        self, common_name: str, alpn: list[str] | None = None
    ) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.leaf(common_name).configure_cert(context)
        if alpn:
            context.set_alpn_protocols(alpn)
        return context

    def client_context(self, server_name: str | None) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        if (
            server_name is None
            or server_name not in EXPECTED
            or (EXPECTED[server_name] == "default.test")
        ):
            context.check_hostname = False  # the default certificate has other names
        return context

    def write(self, directory: Path, common_name: str) -> tuple[Path, Path]:
        """The certificate chain and key of *common_name*, as two files."""
        leaf = self.leaf(common_name)
        directory.mkdir(parents=True, exist_ok=True)
        cert = directory / f"{common_name}.crt"
        key = directory / f"{common_name}.key"
        cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        key.write_bytes(leaf.private_key_pem.bytes())
        return cert, key


def sni_table(certs: Certificates) -> dict[str, ssl.SSLContext]:
    return {
        "a.test": certs.context("a.test"),
        "B.TEST": certs.context("b.test"),
        "*.wild.test": certs.context("*.wild.test"),
        "bücher.test": certs.context("xn--bcher-kva.test"),
    }


def common_name(cert: Mapping[str, Any] | None) -> str:
    assert cert is not None
    for rdn in cert["subject"]:
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    raise AssertionError(f"no common name in {cert}")
