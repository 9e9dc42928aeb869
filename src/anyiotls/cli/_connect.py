"""``anyiotls connect HOST:PORT``: like ``openssl s_client -brief``, but readable.

Connects (after a STARTTLS dialogue with ``--starttls``), describes the connection
and the server's certificates, then copies standard input to the server and the
server's data to standard output. Every expected failure is a :class:`CLIError`
with its own exit code (see ``docs/cli.md``).
"""

from __future__ import annotations

__all__ = ("build_context", "run_connect")

import argparse
import json
import os
import ssl
import sys
import time
from functools import partial
from typing import Any, TextIO

import anyio
from anyio.streams.tls import TLSAttribute

from .. import (
    CertificateAttribute,
    ChannelBindingError,
    SessionAttribute,
    SessionCache,
    TLSStream,
    spki_sha256,
)
from .._engine import is_ragged_eof
from ._args import parse_address, parse_alpn
from ._exit import CLIError, ExitCode, find_cli_error, leaves
from ._pki import check_ca_file, describe_certificate, load_chain_into
from ._signals import run_interruptibly
from ._stdio import open_stdin, silence_stdout, to_crlf
from ._text import printable

#: Seconds ``aclose()`` may wait for the server's close_notify at the end.
CLOSE_TIMEOUT = 2.0
#: Seconds ``--json``/``--no-interactive`` wait after a TLS 1.3 handshake for the
#: server to refuse the client certificate (TLS 1.3 servers do it only then).
REFUSAL_CHECK_TIMEOUT = 0.5

#: OpenSSL reasons that mean "what answered was not TLS".
_NOT_TLS_REASONS = frozenset(
    {
        "WRONG_VERSION_NUMBER",
        "PACKET_LENGTH_TOO_LONG",
        "UNKNOWN_PROTOCOL",
        "HTTP_REQUEST",
        "HTTPS_PROXY_REQUEST",
        "RECORD_LAYER_FAILURE",
        "UNEXPECTED_MESSAGE",
        "UNEXPECTED_RECORD",
        "RECORD_LENGTH_MISMATCH",
    }
)
_NEED_CLIENT_CERT = "the server may require a client certificate: --cert FILE"
#: OpenSSL reasons worth a hint.
_HINTS = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the server requires a client certificate: "
    "--cert FILE",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the server rejected the client certificate",
    "TLSV1_ALERT_UNKNOWN_CA": "the server does not trust the client certificate's CA",
    "TLSV1_ALERT_NO_APPLICATION_PROTOCOL": "no ALPN protocol in common (--alpn)",
    "NO_APPLICATION_PROTOCOL": "no ALPN protocol in common (--alpn)",
    "TLSV1_ALERT_PROTOCOL_VERSION": "no TLS version in common (--tls1.2, --tls1.3)",
    "UNSUPPORTED_PROTOCOL": "no TLS version in common (--tls1.2, --tls1.3)",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "no cipher or parameters in common",
}
#: Alerts that a server which wants a client certificate and got none may send
#: (TLS 1.2 servers: handshake_failure; TLS 1.3 ones say certificate_required).
_NO_CLIENT_CERT_REASONS = frozenset({"SSLV3_ALERT_HANDSHAKE_FAILURE"})
#: Alerts by which a server refuses the client's certificate (or its absence);
#: under TLS 1.3 they arrive after the client's handshake has completed.
_CLIENT_CERT_REFUSALS = frozenset(
    {
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "TLSV1_ALERT_UNKNOWN_CA",
        "TLSV1_ALERT_ACCESS_DENIED",
        "TLSV1_ALERT_DECRYPT_ERROR",
    }
)
#: Hints for certificate verification failures, by OpenSSL's X509_V_ERR_* code.
_VERIFY_HINTS = {
    9: "the certificate is not valid yet: is this machine's clock right?",
    10: "the certificate has expired: the server must renew it (or is this "
    "machine's clock wrong?)",
    2: "--cafile FILE trusts another CA",  # unable to get issuer certificate
    18: "a self-signed certificate: --cafile FILE trusts it",
    19: "a self-signed CA in the chain: --cafile FILE trusts it",
    20: "--cafile FILE trusts another CA",  # unable to get local issuer certificate
    21: "--cafile FILE trusts another CA",  # unable to verify the first certificate
    23: "the certificate has been revoked",
    26: "the certificate is not meant for a TLS server",  # invalid purpose
    62: "--servername NAME checks another name",  # host name mismatch
    64: "--servername NAME checks another name",  # IP address mismatch
}


def _warn(message: str) -> None:
    print(f"anyiotls connect: {message}", file=sys.stderr, flush=True)


def build_context(args: argparse.Namespace) -> ssl.SSLContext:
    """The client context the options describe (files are checked here)."""
    if args.key and not args.cert:
        raise CLIError(ExitCode.USAGE, "--key needs --cert")
    if args.insecure and args.cafile:
        raise CLIError(
            ExitCode.USAGE,
            "--insecure verifies nothing, so --cafile would be ignored: give one "
            "of them",
        )
    if args.cafile:
        check_ca_file(args.cafile)
    try:
        context = ssl.create_default_context(cafile=args.cafile)
    except (OSError, ssl.SSLError) as exc:
        raise CLIError(
            ExitCode.BAD_FILE, f"OpenSSL cannot use CA file {args.cafile}: {exc}"
        ) from None
    # A connection cut without close_notify is reported, not taken for a clean end.
    context.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    if args.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if args.tls_version == "1.2":
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
    elif args.tls_version == "1.3":
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_3
    if args.cert:
        load_chain_into(context, args.cert, args.key, option="--cert")
        context.post_handshake_auth = True  # answer a later certificate request too
    if args.alpn:
        context.set_alpn_protocols(parse_alpn(args.alpn))
    return context


# -- connecting -------------------------------------------------------------------


def _os_reason(exc: BaseException) -> str:
    """The most specific OS error message inside *exc* (causes, groups)."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        current = todo.pop(0)
        seen.append(current)
        todo += list(getattr(current, "exceptions", ()))
        if current.__cause__ is not None:
            todo.append(current.__cause__)
    for candidate in reversed(seen):
        if isinstance(candidate, OSError):
            if isinstance(candidate.errno, int) and candidate.errno > 0:
                return os.strerror(candidate.errno)
            if candidate.strerror:
                return str(candidate.strerror)
    return str(exc)


def _handshake_error(
    exc: BaseException, starttls: str | None, has_cert: bool = False
) -> CLIError:
    """The CLIError for an exception raised by the handshake.

    *has_cert*: whether the client presented a certificate (``--cert``).
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = str(exc.verify_message or exc.reason or exc).rstrip(".")
        advice = _VERIFY_HINTS.get(exc.verify_code)
        text = f"certificate verification failed: {detail}"
        return CLIError(ExitCode.VERIFY, f"{text} ({advice})" if advice else text)
    if isinstance(exc, ssl.SSLError):
        reason = str(exc.reason or exc)
        hint = _HINTS.get(reason)
        if reason in _NO_CLIENT_CERT_REASONS and not has_cert:
            hint = f"{_NEED_CLIENT_CERT}; or it shares no cipher or parameters"
        if reason in _NOT_TLS_REASONS:
            hint = "the server does not seem to speak TLS on this port"
            if not starttls:
                hint += "; does it want --starttls?"
        text = f"TLS handshake failed: {reason}"
        return CLIError(ExitCode.HANDSHAKE, f"{text} ({hint})" if hint else text)
    cause = exc.__cause__
    if isinstance(exc, anyio.BrokenResourceError):
        if (
            cause is None
            or is_ragged_eof(cause)
            or isinstance(cause, anyio.EndOfStream)
        ):
            detail = "the server closed the connection during the TLS handshake"
        else:
            detail = f"the connection broke during the TLS handshake: {cause}"
        return CLIError(ExitCode.HANDSHAKE, detail)
    return CLIError(ExitCode.HANDSHAKE, f"TLS handshake failed: {exc}")


def _starttls_error(exc: BaseException, protocol: str) -> CLIError:
    from ..starttls import NotOfferedError, RefusedError

    if isinstance(exc, (NotOfferedError, RefusedError)):
        detail = str(exc)  # says what the server offered or answered
    else:
        detail = f"the {protocol.upper()} dialogue before TLS failed: {exc}"
    return CLIError(ExitCode.STARTTLS, detail)


async def _starttls(
    transport: Any, protocol: str, hostname: str, context: ssl.SSLContext
) -> tuple[TLSStream, bytes, str]:
    """Run the STARTTLS dialogue: (TLS stream, leftover, what the server told)."""
    from .. import starttls

    try:
        if protocol in ("smtp", "lmtp"):
            dialogue = starttls.smtp if protocol == "smtp" else starttls.lmtp
            smtp = await dialogue(transport, hostname=hostname, ssl_context=context)
            told = ", ".join(smtp.extensions) or "no extensions"
            greeting = "EHLO" if protocol == "smtp" else "LHLO"
            return smtp.stream, smtp.leftover, f"{greeting} over TLS: {told}"
        if protocol == "imap":
            imap = await starttls.imap(
                transport, hostname=hostname, ssl_context=context
            )
            told = " ".join(sorted(imap.capabilities))
            return imap.stream, imap.leftover, f"CAPABILITY over TLS: {told}"
        pop3 = await starttls.pop3(transport, hostname=hostname, ssl_context=context)
        told = ", ".join(pop3.capabilities) or "no capabilities"
        return pop3.stream, pop3.leftover, f"CAPA over TLS: {told}"
    except starttls.StartTLSError as exc:
        raise _starttls_error(exc, protocol) from None


async def _open(
    args: argparse.Namespace,
    host: str,
    port: int,
    context: ssl.SSLContext,
    session_cache: SessionCache | None = None,
) -> tuple[TLSStream, bytes, dict[str, Any]]:
    """Connect and handshake: (stream, leftover plaintext, report).

    With *session_cache*, a session kept from an earlier connection is offered.
    """
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    servername: str = args.servername or host
    try:
        with anyio.fail_after(args.timeout):
            transport = await anyio.connect_tcp(host, port)
    except TimeoutError:
        raise CLIError(
            ExitCode.CONNECT,
            f"cannot connect to {address}: no answer within {args.timeout:g} s",
        ) from None
    except OSError as exc:
        raise CLIError(
            ExitCode.CONNECT, f"cannot connect to {address}: {_os_reason(exc)}"
        ) from None

    started = time.perf_counter()
    leftover = b""
    starttls_note = None
    try:
        with anyio.fail_after(args.timeout):
            if args.starttls:
                stream, leftover, starttls_note = await _starttls(
                    transport, args.starttls, servername, context
                )
            else:
                stream = await TLSStream.wrap(
                    transport,
                    hostname=servername,
                    ssl_context=context,
                    session_cache=session_cache,
                )
    except TimeoutError:
        await anyio.aclose_forcefully(transport)
        waiting = "the STARTTLS dialogue" if args.starttls else "the TLS handshake"
        raise CLIError(
            ExitCode.STARTTLS if args.starttls else ExitCode.HANDSHAKE,
            f"{waiting} did not finish within {args.timeout:g} s "
            "(is this the right port and protocol?)",
        ) from None
    except CLIError:
        raise
    except (ssl.SSLError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
        await anyio.aclose_forcefully(transport)
        raise _handshake_error(exc, args.starttls, bool(args.cert)) from None
    elapsed = time.perf_counter() - started
    report = _report(stream, context, address, servername, args.starttls, elapsed)
    report["starttls_note"] = starttls_note
    return stream, leftover, report


# -- describing the connection ----------------------------------------------------


def _chain(stream: TLSStream) -> list[bytes] | None:
    """The certificates the server sent (DER), if this Python exposes them (3.13+)."""
    try:
        return list(stream.extra(CertificateAttribute.unverified_chain))
    except NotImplementedError:
        return None


def _end_point(stream: TLSStream) -> tuple[str | None, str | None]:
    """(tls-server-end-point in hex, or None and why not)."""
    try:
        binding = stream.extra(
            CertificateAttribute.channel_binding_tls_server_end_point
        )
    except ChannelBindingError as exc:
        return None, str(exc)
    return binding.hex(), None


def _report(
    stream: TLSStream,
    context: ssl.SSLContext,
    address: str,
    servername: str,
    starttls: str | None,
    elapsed: float,
) -> dict[str, Any]:
    name, _, bits = stream.extra(TLSAttribute.cipher)
    der = stream.extra(TLSAttribute.peer_certificate_binary)
    chain = _chain(stream)
    verified = context.verify_mode != ssl.CERT_NONE
    end_point, end_point_error = _end_point(stream) if der else (None, None)
    return {
        "address": address,
        "servername": servername,
        "starttls": starttls,
        "version": stream.extra(TLSAttribute.tls_version),
        "cipher": name,
        "cipher_bits": bits,
        "alpn": stream.extra(TLSAttribute.alpn_protocol),
        "verified": verified,
        "verify_error": None if verified else "not checked: --insecure",
        "peer_certificate": describe_certificate(der) if der else None,
        "peer_chain": None
        if chain is None
        else [describe_certificate(c) for c in chain],
        # for anyiotls.pin_sha256() and curl --pinnedpubkey
        "peer_pin_sha256": spki_sha256(der) if der else None,
        "tls_server_end_point": end_point,
        "tls_server_end_point_error": end_point_error,
        "handshake_ms": round(elapsed * 1000, 1),
        "resumed": stream.extra(SessionAttribute.session_reused),
    }


def _print_certificate(out: TextIO, index: int, cert: dict[str, Any]) -> None:
    flags = []
    if cert["expired"]:
        flags.append("EXPIRED")
    if cert["not_yet_valid"]:
        flags.append("NOT YET VALID")
    if cert["self_signed"]:
        flags.append("self-signed")
    bits = f", {cert['key_bits']} bits" if cert["key_bits"] else ""
    rows = [
        ("subject", cert["subject"]),
        ("issuer", cert["issuer"]),
        ("SAN", ", ".join(cert["san"]) or "none"),
        (
            "valid",
            f"{cert['not_before']} to {cert['not_after']}"
            + (f"  ({', '.join(flags)})" if flags else ""),
        ),
        ("key", f"{cert['key_type']}{bits}"),
        ("SHA-256", cert["sha256"]),
    ]
    for number, (label, value) in enumerate(rows):
        prefix = f"  [{index}] " if number == 0 else "      "
        print(f"{prefix}{label:<9}{printable(value)}", file=out)


def _print_report(out: TextIO, report: dict[str, Any]) -> None:
    print(
        f"Connected to {report['address']} (servername {report['servername']!r}); "
        f"handshake {report['handshake_ms']} ms",
        file=out,
    )
    rows = [
        ("protocol", report["version"]),
        ("cipher", f"{report['cipher']} ({report['cipher_bits']}-bit key)"),
        ("ALPN", report["alpn"] or "none negotiated"),
        (
            "session",
            "resumed (abbreviated handshake)"
            if report["resumed"]
            else "new (full handshake)",
        ),
    ]
    if report["verified"]:
        rows.append(
            (
                "verified",
                "yes: the chain leads to a trusted CA and the certificate is valid "
                f"for {report['servername']!r}",
            )
        )
    else:
        rows.append(
            ("verified", "NO: --insecure was given; the certificate was not checked")
        )
    if report["starttls"]:
        rows.append(("STARTTLS", f"{report['starttls']}: {report['starttls_note']}"))
    if report["peer_pin_sha256"]:
        rows.append(("key pin", report["peer_pin_sha256"]))
    if report.get("client_auth_check"):
        rows.append(("auth", f"client certificate: {report['client_auth_check']}"))
    for label, value in rows:
        print(f"  {label:<10}{printable(value)}", file=out)
    chain = report["peer_chain"]
    if chain:
        print("Certificate chain, as the server sent it:", file=out)
        for index, cert in enumerate(chain):
            _print_certificate(out, index, cert)
    elif report["peer_certificate"]:
        print(
            "Server certificate (this Python shows only the server's own; "
            "3.13+ shows the whole chain):",
            file=out,
        )
        _print_certificate(out, 0, report["peer_certificate"])
    else:
        print("The server sent no certificate.", file=out)
    out.flush()


# -- the interactive session ------------------------------------------------------


async def _interactive(
    stream: TLSStream, leftover: bytes, crlf: bool, linger: float
) -> None:
    """Copy stdin to the server and the server's data to stdout until either ends.

    When stdin ends, the server may still be answering: wait until it closes, or
    until it has sent nothing for *linger* seconds, then return (the caller
    closes the connection). Some servers drop their pending answers when
    close_notify arrives, so closing right at the end of stdin could lose them.
    """
    out = sys.stdout.buffer
    if leftover:
        out.write(leftover)
        out.flush()
    # Once stdin has ended, every chunk from the server moves this deadline.
    lingering = anyio.CancelScope()
    stdin_ended = False

    async with anyio.create_task_group() as tg:

        async def from_server() -> None:
            try:
                while True:
                    data = await stream.receive()
                    if stdin_ended:
                        lingering.deadline = anyio.current_time() + linger
                    out.write(data)
                    out.flush()
            except anyio.EndOfStream:
                pass
            except BrokenPipeError:  # stdout's reader went away: the end, as usual
                silence_stdout()
            tg.cancel_scope.cancel()

        tg.start_soon(from_server)
        async with open_stdin() as chunks:
            previous = b""
            async for data in chunks:
                if not data:
                    break
                if crlf:
                    data, previous = to_crlf(data, previous), data[-1:]
                await stream.send(data)
        stdin_ended = True
        lingering.deadline = anyio.current_time() + linger
        with lingering:
            await anyio.sleep_forever()
        tg.cancel_scope.cancel()


def _refusal(exc: BaseException) -> ssl.SSLError | None:
    """The server's refusal of the client certificate that broke *exc*, if it did."""
    for leaf in leaves(exc):
        cause = leaf.__cause__ if isinstance(leaf, anyio.BrokenResourceError) else leaf
        if isinstance(cause, ssl.SSLError) and cause.reason in _CLIENT_CERT_REFUSALS:
            return cause
    return None


async def _check_refusal(stream: TLSStream) -> str:
    """Wait briefly for a TLS 1.3 server's refusal of the client certificate.

    Raises the :class:`CLIError` of the refusal; otherwise returns what was seen.
    """
    with anyio.move_on_after(REFUSAL_CHECK_TIMEOUT):
        try:
            await stream.receive()
        except anyio.EndOfStream:
            return "the server closed the connection without refusing"
        return "the server sent data: it accepted the connection"
    return f"no refusal from the server within {REFUSAL_CHECK_TIMEOUT:g} s"


async def _reconnect(
    args: argparse.Namespace,
    host: str,
    port: int,
    context: ssl.SSLContext,
    cache: SessionCache,
    first: TLSStream,
) -> list[dict[str, Any]]:
    """``--reconnect N``: close *first*, then connect N times offering the session.

    The cache takes a session once its ticket arrived or at a clean close (the
    close reads the server's tickets and close_notify), never from a connection
    the server cut without close_notify: then the next connection is a full one.
    """
    with anyio.move_on_after(CLOSE_TIMEOUT):
        await first.aclose()
    results = []
    for number in range(1, args.reconnect + 1):
        offered = len(cache) > 0
        stream, _, report = await _open(args, host, port, context, cache)
        with anyio.move_on_after(CLOSE_TIMEOUT):
            await stream.aclose()
        results.append(
            {
                "reconnect": number,
                "offered_session": offered,
                "resumed": report["resumed"],
                "version": report["version"],
                "handshake_ms": report["handshake_ms"],
            }
        )
        if not args.json:
            print(_reconnect_line(results[-1]), flush=True)
    return results


def _reconnect_line(result: dict[str, Any]) -> str:
    if result["resumed"]:
        verdict = "resumed yes"
    elif result["offered_session"]:
        verdict = "resumed no (the server refused the session: full handshake)"
    else:
        verdict = (
            "resumed no (no session to offer: the server sent no ticket or "
            "session id, or did not close with close_notify)"
        )
    return (
        f"reconnect {result['reconnect']}: {verdict}; {result['version']}, "
        f"handshake {result['handshake_ms']} ms"
    )


async def _session(
    args: argparse.Namespace, host: str, port: int, context: ssl.SSLContext
) -> None:
    # One cache for --reconnect: sessions for this host, port and context only.
    cache = SessionCache(maxsize=1)
    stream, leftover, report = await _open(
        args, host, port, context, cache if args.reconnect else None
    )
    interactive = not (args.no_interactive or args.json or args.reconnect)
    try:
        if interactive or args.starttls or report["version"] != "TLSv1.3":
            report["client_auth_check"] = None  # not needed, or seen as it comes
        else:
            report["client_auth_check"] = await _check_refusal(stream)
        if args.json:
            del report["starttls_note"]
            if args.reconnect:
                report["reconnects"] = await _reconnect(
                    args, host, port, context, cache, stream
                )
            print(json.dumps(report, indent=2), flush=True)
        else:
            _print_report(sys.stderr if interactive else sys.stdout, report)
            if args.reconnect:
                await _reconnect(args, host, port, context, cache, stream)
        if interactive:
            crlf = args.crlf or bool(args.starttls)
            await _interactive(stream, leftover, crlf, args.linger)
    except Exception as exc:  # AnyIO task groups wrap it in an exception group
        broken = [e for e in leaves(exc) if isinstance(e, anyio.BrokenResourceError)]
        if not broken or find_cli_error(exc):
            raise
        refusal = _refusal(exc)
        if refusal is not None:  # a TLS 1.3 server's verdict, after the handshake
            raise _handshake_error(refusal, args.starttls, bool(args.cert)) from None
        cause = broken[0].__cause__
        if is_ragged_eof(cause):
            raise CLIError(
                ExitCode.ERROR,
                "the server closed the connection without close_notify: what it "
                "sent may have been cut short",
            ) from None
        raise CLIError(
            ExitCode.ERROR, f"the connection broke: {cause or broken[0]}"
        ) from None
    finally:
        with anyio.move_on_after(CLOSE_TIMEOUT):
            await stream.aclose()


def run_connect(args: argparse.Namespace) -> int:
    """Run ``anyiotls connect``; with ``--json``, failures are JSON on stdout too."""
    try:
        host, port = parse_address(args.address)
        if args.reconnect and args.starttls:
            raise CLIError(
                ExitCode.USAGE, "--reconnect does not work with --starttls yet"
            )
        context = build_context(args)
        if args.insecure:
            _warn(
                "WARNING: --insecure: the server's certificate is NOT verified; "
                "anyone on the path can read and change this connection"
            )
        session = partial(_session, args, host, port, context)
        anyio.run(run_interruptibly, session, backend=args.backend)
    except Exception as outer:
        exc = find_cli_error(outer)
        if exc is None:
            raise
        if args.json:
            error = {"exit_code": int(exc.code), "kind": exc.code.name.lower()}
            error["message"] = exc.message
            print(json.dumps({"error": error}, indent=2), flush=True)
        raise
    return ExitCode.OK
