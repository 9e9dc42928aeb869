"""The ceilings: what no stream can beat on this machine.

* Two :class:`ssl.SSLObject` s pumping records between memory BIOs in one thread: TLS
  in Python with no I/O and no event loop at all (each send is written, moved and
  read before the next, as a stream must).
* ``openssl speed -evp aes-256-gcm``: the cipher TLS 1.3 negotiates here
  (TLS_AES_256_GCM_SHA384), with no TLS framing and no Python.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import ssl
import subprocess
import time

from .impls import HOSTNAME, Contexts

MB = 1_000_000


def _handshaken_pair(contexts: Contexts) -> tuple[ssl.SSLObject, ...]:
    bios = [ssl.MemoryBIO() for _ in range(4)]
    client = contexts.client.wrap_bio(bios[0], bios[1], server_hostname=HOSTNAME)
    server = contexts.server.wrap_bio(bios[2], bios[3], server_side=True)

    def pump() -> None:
        bios[2].write(bios[1].read())
        bios[0].write(bios[3].read())

    for _ in range(10):
        for obj in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):
                obj.do_handshake()
        pump()
    # Let the client consume the session tickets.
    server.write(b"x")
    pump()
    client.read(10)
    return client, server, bios[1], bios[2]  # type: ignore[return-value]


def memory_bio_pump(contexts: Contexts, send_size: int, total: int) -> float:
    """MB/s for *total* bytes in *send_size* writes, client to server, no I/O."""
    client, server, client_out, server_in = _handshaken_pair(contexts)
    payload = os.urandom(send_size)
    count = max(1, total // send_size)
    write, read = client.write, server.read
    bio_read, bio_write = client_out.read, server_in.write
    start = time.perf_counter()
    for _ in range(count):
        write(payload)
        bio_write(bio_read())
        got = 0
        while got < send_size:
            got += len(read(65536))
    elapsed = time.perf_counter() - start
    return count * send_size / elapsed / MB


def openssl_speed(seconds: int = 1, block: int = 16384) -> float | None:
    """AES-256-GCM MB/s from ``openssl speed`` (None if the binary is missing)."""
    binary = shutil.which("openssl")
    if binary is None:
        return None
    result = subprocess.run(
        [
            binary,
            "speed",
            "-seconds",
            str(seconds),
            "-bytes",
            str(block),
            "-evp",
            "aes-256-gcm",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return parse_openssl_speed(result.stdout)


def parse_openssl_speed(output: str) -> float | None:
    """The last figure of the ``aes-256-gcm`` row of ``openssl speed`` (in 1000s
    of bytes per second, suffix ``k``), as MB/s."""
    for line in output.splitlines():
        match = re.match(r"\s*aes-256-gcm\s+(.*)$", line, re.IGNORECASE)
        if match:
            figures = re.findall(r"([\d.]+)k", match.group(1))
            if figures:
                return float(figures[-1]) * 1000 / MB
    return None
