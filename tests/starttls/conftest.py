"""Mail servers for the STARTTLS tests: Postfix, Dovecot, aiosmtpd, started here.

Real servers run on loopback with fresh temporary directories and free ports, one
instance per test session (started on first use), and are stopped at the end of
the session however the tests end (only a pytest killed by a signal cannot: its
servers then run on, in /tmp/anyiotls-*). Postfix and Dovecot must run as root here
(they drop privileges themselves); a missing program skips locally and fails in CI
(``require_binary``).

Their certificate is for ``mail.test``: the helpers are given that name while
connecting to an IP address, so the host name check is the certificate's own.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from ..peers import require_binary

#: The name in the mail servers' certificate.
MAIL_HOSTNAME = "mail.test"

#: Seconds a server may take to start listening or to stop.
SERVER_TIMEOUT = 30.0

#: Dovecot listens on a second loopback address so that a connection from
#: 127.0.0.1 is not "secured" by locality: before STARTTLS it then advertises
#: LOGINDISABLED, as towards any remote client.
DOVECOT_ADDRESS = "127.0.0.2"


def _require_root(program: str) -> None:
    if os.geteuid() == 0:
        return
    reason = f"{program} tests start the server as root; not running as root"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; in CI nothing may skip")
    pytest.skip(reason)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on *host*."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _server_directory(prefix: str) -> Path:
    # Not under pytest's tmp_path: its parents are private to root, and the servers'
    # unprivileged processes (postfix, nobody) must reach their files.
    directory = Path(tempfile.mkdtemp(prefix=f"anyiotls-{prefix}-"))
    directory.chmod(0o755)
    return directory


def _wait_listening(
    addresses: list[tuple[str, int]], process: subprocess.Popen[Any], log: Path
) -> float:
    """Wait until every address accepts connections; return the seconds it took."""
    start = time.monotonic()
    pending = list(addresses)
    while pending:
        if process.poll() is not None:
            raise RuntimeError(
                f"{process.args!r} exited with {process.returncode}:\n"
                + log.read_text(errors="replace")[-3000:]
            )
        if time.monotonic() - start > SERVER_TIMEOUT:
            raise RuntimeError(
                f"{process.args!r} did not listen on {pending} within "
                f"{SERVER_TIMEOUT} s:\n" + log.read_text(errors="replace")[-3000:]
            )
        try:
            socket.create_connection(pending[0], timeout=1).close()
        except OSError:
            time.sleep(0.05)
        else:
            pending.pop(0)
    return time.monotonic() - start


def _stop(process: subprocess.Popen[Any], stop_command: list[str] | None) -> None:
    """Stop a server: its own stop command or SIGTERM, then SIGKILL if need be."""
    if process.poll() is None:
        if stop_command is not None:
            subprocess.run(
                stop_command, timeout=SERVER_TIMEOUT, check=False, capture_output=True
            )
        else:
            process.terminate()
        try:
            process.wait(timeout=SERVER_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=SERVER_TIMEOUT)


# -- faces -----------------------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes ``face`` runs with the AnyIO face and the Trio face."""
    if "face" in metafunc.fixturenames:
        metafunc.parametrize("face", ["anyio", "trio"])


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    """The Trio face runs under the Trio backend only: deselect (not skip) the rest."""
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    here = Path(__file__).parent
    for item in items:
        if here not in item.path.parents:
            keep.append(item)
            continue
        params = getattr(getattr(item, "callspec", None), "params", {})
        backend = params.get("anyio_backend")
        if isinstance(backend, tuple):
            backend = backend[0]
        if params.get("face") == "trio" and backend != "trio":
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


async def connect(
    host: str, port: int, face: str, local_host: str | None = None
) -> Any:
    """A plaintext connection: an AnyIO socket stream, or a Trio one for that face."""
    if face == "trio":
        import trio

        return await trio.open_tcp_stream(host, port, local_address=local_host)
    import anyio

    return await anyio.connect_tcp(host, port, local_host=local_host)


# -- certificates ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def mail_cert(ca: trustme.CA) -> trustme.LeafCert:
    """The mail servers' certificate, for ``mail.test``."""
    return ca.issue_cert(MAIL_HOSTNAME)


@pytest.fixture(scope="session")
def wrong_host_cert(ca: trustme.CA) -> trustme.LeafCert:
    """A certificate from the trusted CA, but for another host."""
    return ca.issue_cert("evil.test")


@pytest.fixture
def mail_server_context(mail_cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    mail_cert.configure_cert(context)
    return context


@pytest.fixture
def wrong_host_context(wrong_host_cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    wrong_host_cert.configure_cert(context)
    return context


def _write_key_and_chain(cert: trustme.LeafCert, directory: Path) -> tuple[Path, Path]:
    key, crt = directory / "server.key", directory / "server.crt"
    cert.private_key_pem.write_to_path(str(key))
    with crt.open("wb") as file:
        for blob in cert.cert_chain_pems:
            file.write(blob.bytes())
    return key, crt


# -- Postfix ---------------------------------------------------------------------------

_POSTFIX_MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n - n 60    1 pickup
cleanup   unix  n - n -     0 cleanup
qmgr      unix  n - n 300   1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n -     - trivial-rewrite
bounce    unix  - - n -     0 bounce
defer     unix  - - n -     0 bounce
trace     unix  - - n -     0 bounce
verify    unix  - - n -     1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -     - proxymap
proxywrite unix - - n -     1 proxymap
smtp      unix  - - n -     - smtp
relay     unix  - - n -     - smtp
showq     unix  n - n -     - showq
error     unix  - - n -     - error
retry     unix  - - n -     - error
discard   unix  - - n -     - discard
local     unix  - n n -     - local
virtual   unix  - n n -     - virtual
lmtp      unix  - - n -     - lmtp
anvil     unix  - - n -     1 anvil
scache    unix  - - n -     1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

_POSTFIX_MAIN_CF = """\
compatibility_level = 3.6
maillog_file = /dev/stdout
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = {hostname}
mydestination = {hostname}, localhost
mynetworks = 127.0.0.0/8
queue_directory = {dir}/spool
data_directory = {dir}/data
smtpd_tls_cert_file = {dir}/server.crt
smtpd_tls_key_file = {dir}/server.key
smtpd_tls_security_level = may
default_transport = error:outbound delivery disabled
local_transport = discard:local delivery disabled
alias_maps =
alias_database =
local_recipient_maps =
"""


@dataclass
class PostfixServer:
    port: int
    log: Path
    startup_seconds: float

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="session")
def postfix(mail_cert: trustme.LeafCert) -> Iterator[PostfixServer]:
    """Postfix's smtpd on 127.0.0.1 (STARTTLS offered), delivering to ``discard``.

    Mail to ``anyone@mail.test`` is accepted, queued and discarded; the maillog
    (:meth:`PostfixServer.log_text`) tells what happened to it.
    """
    binary = require_binary("postfix")
    _require_root("Postfix")
    _require_user("postfix")
    yield from _start_postfix(binary, mail_cert)


def _require_user(user: str) -> None:
    import pwd

    try:
        pwd.getpwnam(user)
    except KeyError:
        pytest.fail(f"the {user!r} user is missing: is the package installed right?")


def _start_postfix(binary: str, cert: trustme.LeafCert) -> Iterator[PostfixServer]:
    directory = _server_directory("postfix")
    port = free_port()
    process: subprocess.Popen[bytes] | None = None
    try:
        _write_key_and_chain(cert, directory)
        (directory / "spool").mkdir()
        (directory / "data").mkdir()
        shutil.chown(directory / "data", "postfix")
        (directory / "main.cf").write_text(
            _POSTFIX_MAIN_CF.format(dir=directory, hostname=MAIL_HOSTNAME)
        )
        (directory / "master.cf").write_text(_POSTFIX_MASTER_CF.format(port=port))
        log = directory / "maillog"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [binary, "-c", str(directory), "start-fg"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        seconds = _wait_listening([("127.0.0.1", port)], process, log)
        yield PostfixServer(port=port, log=log, startup_seconds=seconds)
    finally:
        if process is not None:
            _stop(process, [binary, "-c", str(directory), "stop"])
        shutil.rmtree(directory, ignore_errors=True)


# -- Dovecot ---------------------------------------------------------------------------

_DOVECOT_CONF = """\
base_dir = {dir}/run
state_dir = {dir}/state
log_path = /dev/stderr
protocols = imap pop3
listen = {address}
ssl = yes
ssl_cert = <{dir}/server.crt
ssl_key = <{dir}/server.key
disable_plaintext_auth = yes
auth_mechanisms = plain login
first_valid_uid = 1
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={dir}/home/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  inet_listener imap {{
    address = {address}
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = {address}
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""


@dataclass
class DovecotServer:
    address: str
    imap_port: int
    pop3_port: int
    password: str
    log: Path
    startup_seconds: float

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="session")
def dovecot(mail_cert: trustme.LeafCert) -> Iterator[DovecotServer]:
    """Dovecot IMAP and POP3 on 127.0.0.2; every user's password is ``secret``."""
    binary = require_binary("dovecot")
    _require_root("Dovecot")
    _require_user("nobody")
    directory = _server_directory("dovecot")
    imap_port = free_port(DOVECOT_ADDRESS)
    pop3_port = free_port(DOVECOT_ADDRESS)
    process: subprocess.Popen[bytes] | None = None
    try:
        _write_key_and_chain(mail_cert, directory)
        for sub in ("run", "state", "home"):
            (directory / sub).mkdir()
        (directory / "home").chmod(0o1777)
        conf = directory / "dovecot.conf"
        conf.write_text(
            _DOVECOT_CONF.format(
                dir=directory,
                address=DOVECOT_ADDRESS,
                imap_port=imap_port,
                pop3_port=pop3_port,
                password="secret",
            )
        )
        log = directory / "dovecot.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [binary, "-F", "-c", str(conf)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        seconds = _wait_listening(
            [(DOVECOT_ADDRESS, imap_port), (DOVECOT_ADDRESS, pop3_port)], process, log
        )
        yield DovecotServer(
            address=DOVECOT_ADDRESS,
            imap_port=imap_port,
            pop3_port=pop3_port,
            password="secret",
            log=log,
            startup_seconds=seconds,
        )
    finally:
        if process is not None:
            _stop(process, None)
        shutil.rmtree(directory, ignore_errors=True)


# -- aiosmtpd --------------------------------------------------------------------------


@dataclass
class ReceivedMessage:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    #: the session's TLS cipher when the message came (None: plaintext)
    cipher: Any


class _CollectingHandler:
    def __init__(self) -> None:
        self.messages: list[ReceivedMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        cipher = session.ssl.get("cipher") if session.ssl else None
        self.messages.append(
            ReceivedMessage(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                content=bytes(envelope.original_content or b""),
                cipher=cipher,
            )
        )
        return "250 2.0.0 OK: queued"


@dataclass
class AiosmtpdServer:
    port: int
    handler: _CollectingHandler
    startup_seconds: float


@pytest.fixture(scope="session")
def aiosmtpd_server(mail_cert: trustme.LeafCert) -> Iterator[AiosmtpdServer]:
    """aiosmtpd (in its own thread) on 127.0.0.1, requiring STARTTLS."""
    try:
        from aiosmtpd.controller import Controller
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("aiosmtpd is not installed; in CI nothing may skip")
        pytest.skip("aiosmtpd is not installed (pip install aiosmtpd)")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    mail_cert.configure_cert(context)
    handler = _CollectingHandler()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        server_hostname=MAIL_HOSTNAME,
        tls_context=context,
        require_starttls=True,
        ready_timeout=SERVER_TIMEOUT,
    )
    start = time.monotonic()
    controller.start()
    try:
        yield AiosmtpdServer(
            port=controller.port,
            handler=handler,
            startup_seconds=time.monotonic() - start,
        )
    finally:
        controller.stop()
