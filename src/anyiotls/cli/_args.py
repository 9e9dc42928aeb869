"""The ``anyiotls`` command line: one :mod:`argparse` parser per command.

Errors in the command line print one line (no usage block) and exit with
:attr:`ExitCode.USAGE`.
"""

from __future__ import annotations

__all__ = ("build_parser", "parse_address", "parse_alpn")

import argparse
import ipaddress
import sys
from typing import NoReturn

from ._exit import CLIError, ExitCode

BACKENDS = ("asyncio", "trio")
STARTTLS_PROTOCOLS = ("smtp", "lmtp", "imap", "pop3")


class _Parser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose errors fit on one line."""

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: MESSAGE (see PROG --help)`` and exit with USAGE."""
        print(
            f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr
        )
        raise SystemExit(ExitCode.USAGE)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("anyiotls")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0: {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def _reconnect_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"must be 1-1000: {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {text!r}")
    return value


def parse_alpn(text: str) -> list[str]:
    """``"h2,http/1.1"`` -> ``["h2", "http/1.1"]``; raises USAGE on a bad list."""
    names = [name.strip() for name in text.split(",")]
    for name in names:
        if not name or len(name.encode()) > 255:
            raise CLIError(
                ExitCode.USAGE,
                f"bad --alpn list {text!r}: comma-separated names of 1-255 bytes",
            )
    return names


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6 literals) -> ``(host, port)``."""
    bad = f"bad address {text!r}: expected HOST:PORT (for IPv6: [ADDRESS]:PORT)"
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise CLIError(ExitCode.USAGE, bad)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise CLIError(ExitCode.USAGE, bad) from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise CLIError(ExitCode.USAGE, bad)
    if not host or not port_text.isdigit():
        raise CLIError(ExitCode.USAGE, bad)
    if not 1 <= int(port_text) <= 65535:
        raise CLIError(
            ExitCode.USAGE, f"bad address {text!r}: port out of range 1-65535"
        )
    return host, int(port_text)


def _add_backend(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="asyncio",
        help="the event loop AnyIO runs on (default: asyncio)",
    )


def _add_tls_version(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--tls1.2",
        dest="tls_version",
        action="store_const",
        const="1.2",
        help="use TLS 1.2 only",
    )
    group.add_argument(
        "--tls1.3",
        dest="tls_version",
        action="store_const",
        const="1.3",
        help="use TLS 1.3 only",
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser for ``anyiotls`` and its commands ``demo``, ``connect``, ``serve``."""
    parser = _Parser(
        prog="anyiotls",
        description="TLS for structured concurrency: a demo, a client and a server.",
        epilog="Start with: anyiotls demo",
    )
    parser.add_argument("--version", action="version", version=f"anyiotls {_version()}")
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser
    )

    demo = commands.add_parser(
        "demo",
        help="show what anyiotls does, on this machine, with no files and no network",
        description=(
            "Make an ephemeral CA and certificates in memory, start a server and a "
            "client on 127.0.0.1 in this process, and show step by step, with "
            "timings: a TLS 1.3 handshake with ALPN, an echo, post-handshake client "
            "authentication, an upgrade from plaintext to TLS and unwrap() back, and "
            "a short throughput figure."
        ),
    )
    _add_backend(demo)

    connect = commands.add_parser(
        "connect",
        help="connect to a TLS server, describe the connection, then talk to it",
        description=(
            "Connect to HOST:PORT, do the TLS handshake (after a STARTTLS dialogue "
            "with --starttls), print the protocol version, cipher, ALPN, whether the "
            "certificate was verified, and the server's certificates. Then copy "
            "standard input to the server and its answers to standard output "
            "(unless --no-interactive or --json); in that mode the report goes to "
            "standard error."
        ),
    )
    connect.add_argument("address", metavar="HOST:PORT", help="where to connect")
    connect.add_argument(
        "--starttls",
        choices=STARTTLS_PROTOCOLS,
        help="speak this protocol in plaintext first and upgrade with STARTTLS",
    )
    connect.add_argument(
        "--alpn", metavar="LIST", help="offer these ALPN protocols: h2,http/1.1"
    )
    connect.add_argument(
        "--cafile",
        metavar="FILE",
        help="trust the CA certificates in FILE (PEM) instead of the system's",
    )
    connect.add_argument(
        "--cert", metavar="FILE", help="client certificate (PEM; may include the key)"
    )
    connect.add_argument("--key", metavar="FILE", help="the client certificate's key")
    connect.add_argument(
        "--insecure",
        action="store_true",
        help="do NOT verify the server's certificate (flagged loudly)",
    )
    _add_tls_version(connect)
    connect.add_argument(
        "--servername",
        metavar="NAME",
        help="name to send as SNI and to verify (default: HOST)",
    )
    connect.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object instead of the report, then exit",
    )
    connect.add_argument(
        "--no-interactive",
        action="store_true",
        help="print the report and close instead of copying stdin/stdout",
    )
    connect.add_argument(
        "--crlf",
        action="store_true",
        help="send line ends as CRLF (the default with --starttls)",
    )
    connect.add_argument(
        "--linger",
        type=_non_negative_float,
        default=1.0,
        metavar="SECONDS",
        help="after the end of standard input, close once the server has sent "
        "nothing for this long (default: 1)",
    )
    connect.add_argument(
        "--timeout",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="limit for connecting, STARTTLS and the handshake (default: 10)",
    )
    connect.add_argument(
        "--reconnect",
        type=_reconnect_count,
        default=0,
        metavar="N",
        help="after the first connection, connect N more times offering its TLS "
        "session and report whether each one was resumed (as openssl s_client "
        "-reconnect); implies --no-interactive",
    )
    _add_backend(connect)

    serve = commands.add_parser(
        "serve",
        help="run a small TLS server for testing clients",
        description=(
            "Accept TLS connections and print, for each one, the negotiated "
            "parameters and the client certificate's subject. Without --cert, makes "
            "an ephemeral CA and prints where its certificate was written, so "
            "clients can trust it. Stops cleanly on Ctrl-C or SIGTERM."
        ),
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    serve.add_argument(
        "--port",
        type=_port,
        default=4433,
        help="port to listen on; 0 picks a free one (default: 4433)",
    )
    mode = serve.add_mutually_exclusive_group()
    mode.add_argument(
        "--echo",
        dest="mode",
        action="store_const",
        const="echo",
        help="send back what each client sends (the default)",
    )
    mode.add_argument(
        "--http",
        dest="mode",
        action="store_const",
        const="http",
        help="answer each HTTP request with a page describing the connection",
    )
    serve.set_defaults(mode="echo")
    serve.add_argument(
        "--cert", metavar="FILE", help="server certificate chain (PEM; may include key)"
    )
    serve.add_argument("--key", metavar="FILE", help="the server certificate's key")
    serve.add_argument(
        "--certs-dir",
        metavar="DIR",
        help="write the certificates serve makes (ca.pem, server.pem, client.pem) "
        "to DIR and keep them, for your own client (--cafile DIR/ca.pem) or server",
    )
    serve.add_argument(
        "--cafile",
        metavar="FILE",
        help="trust client certificates issued by the CAs in FILE (PEM)",
    )
    serve.add_argument(
        "--request-client-cert",
        choices=("handshake", "post-handshake"),
        help="ask each client for a certificate, in the handshake or after it "
        "(TLS 1.3 post-handshake authentication)",
    )
    serve.add_argument("--alpn", metavar="LIST", help="accept these ALPN protocols")
    _add_backend(serve)
    return parser
