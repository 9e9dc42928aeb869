"""Fixtures for the command-line tests.

The CLI runs as a subprocess with its own ``--backend``; the test itself only drives
subprocesses and peers, so one AnyIO backend is enough for it.
"""

from __future__ import annotations

import pytest

# Real mail servers for ``connect --starttls`` (session-scoped, started on first use).
from ..starttls.conftest import aiosmtpd_server, dovecot, mail_cert

__all__ = ("aiosmtpd_server", "anyio_backend", "dovecot", "mail_cert")


@pytest.fixture
def anyio_backend() -> str:
    """The backend of the test's own event loop (the CLI's is a command option)."""
    return "asyncio"
