"""Every ```python block of every docs/*.md page runs here, and passes mypy --strict.

How to write a snippet (the convention; new pages are picked up automatically)
--------------------------------------------------------------------------------
A block without a comment in front of it is a *program*: it must run as it is
(``python snippet.py``), with ``__name__ == "__main__"``. Its ``anyio.run(...)`` and
``trio.run(...)`` calls run in the test's event loop; it may not connect anywhere
(there is no network in the tests).

Anything else is said in an HTML comment right before the block (readers of the
rendered page do not see it)::

    <!-- snippet: SETUP
    hidden lines run before the block (optional)
    ---
    hidden lines run after it: checks, cleanup (optional)
    -->

SETUP is one of the names in ``SETUPS`` below; each says what the block may use:

- ``program``: the default, as above.
- ``files``: a fragment (``await`` allowed at top level) run in a directory holding
  test certificates: ``server.pem`` and ``alice.pem`` (chain and key),
  ``ca.pem`` and ``clients-ca.pem`` (the CA that issued them), ``certs/`` as
  ``anyiotls serve --certs-dir certs`` writes it.
- ``tls-stream``: a fragment with ``stream`` (a client :class:`TLSStream` connected
  to a local echo server, which answers close_notify with its own and then sends
  the line ``b"plaintext after TLS\\r\\n"``), ``context`` (the client's context)
  and ``port`` (the echo server's on 127.0.0.1, which takes more connections).
- ``pha-server``: a fragment with ``stream``, the *server* side of a TLS 1.3
  connection whose client offers post-handshake authentication with a
  certificate, keeps reading, and first sends ``b"GET / HTTP/1.0\\r\\n\\r\\n"``.
- ``anyiotls-serve``: a program, with ``anyiotls serve --certs-dir certs`` running
  (the command, in a subprocess) and reachable as ``localhost:4433``.
- ``loopback``: a program that starts its own servers on 127.0.0.1 (port 0) and
  connects only to those (a self-contained example): connections to loopback
  addresses are let through. ``loopback-trio``: the same, for a Trio program.
- ``listener``: a program that serves forever (files as for ``files``); it must
  print ``port N``; the test connects to N, checks the echo and stops it.
- ``smtp`` / ``smtp-trio``: a fragment (``smtp``, with ``plain``, an AnyIO stream
  connected to the server) or a program (``smtp-trio``, Trio), with a local SMTP
  STARTTLS server standing in for ``mail.example.org`` (ports 25 and 587), whose
  certificate the default contexts trust for the test.
- ``trio-tls``: a Trio fragment with ``host``/``port`` of a local TLS echo server,
  ``client_context``, ``server_context``, ``listen_port`` (free), and ``handler``
  (give it to ``trio.serve_listeners``: the test connects once, then stops the
  block).
- ``tested-in PATH``: a program whose functions are run by the test file PATH
  (against real servers, e.g. Postfix); here it is only type-checked and executed
  with ``__name__`` other than ``"__main__"``. PATH must mention the page.
- ``excerpt PATH``: lines of the file PATH (a tested example): each code line of
  the block must appear in it; type-checked with the file (examples/ is checked
  here too), not alone.

A fragment's hidden lines run in its function, before and after it. A program's
hidden lines before ``---`` go in front of it; those after run once it has
finished, in its namespace, with ``printed`` (the lines it printed), unseen by
mypy. There is no "skip": a block that cannot run is a block to rewrite.

A hidden line may use what the setup provides. Names a fragment uses without
defining must come from its setup or the hidden lines (mypy checks them). Add a
setup here when a page needs another peer; keep it a real peer (no mocks).
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import anyio.streams.stapled
import anyio.to_thread
import pytest
import trustme

from anyiotls import TLSStream

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
#: Seconds a snippet (with its setup) may take.
TIMEOUT = 30.0

#: The real one: setups connect to their stand-ins with it (snippets get a mapped one).
_connect_tcp = anyio.connect_tcp

_FENCE = re.compile(r"^```python[ \t]*\n(?P<code>.*?)^```[ \t]*$", re.M | re.S)
_COMMENT = re.compile(r"<!--\s*snippet:(?P<body>.*)-->\s*", re.S)


@dataclass
class Snippet:
    page: str
    line: int
    code: str
    setup: str = "program"
    argument: str = ""
    prelude: str = ""
    epilogue: str = ""

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def collect() -> list[Snippet]:
    """Every ```python block of docs/*.md, with its setup comment if any."""
    snippets = []
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text()
        for match in _FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            snippet = Snippet(f"docs/{page.name}", line, match["code"])
            opening = text.rfind("<!--", 0, match.start())
            comment = _COMMENT.fullmatch(text, max(opening, 0), match.start())
            if opening >= 0 and comment and "-->" not in comment["body"]:
                head, _, rest = comment["body"].partition("\n")
                setup, _, argument = head.strip().partition(" ")
                prelude, _, epilogue = ("\n" + rest).partition("\n---\n")
                snippet.setup, snippet.argument = setup, argument.strip()
                snippet.prelude = textwrap.dedent(prelude)
                snippet.epilogue = textwrap.dedent(epilogue)
            snippets.append(snippet)
    return snippets


# -- what the setups give a snippet ---------------------------------------------------


@dataclass
class Env:
    """What one snippet's run has: its directory, printed lines, address map."""

    directory: Path
    monkeypatch: pytest.MonkeyPatch
    ca: trustme.CA
    printed: list[str] = field(default_factory=list)
    #: (host, port) the snippet names -> (host, port) of the local stand-in
    addresses: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)
    #: the running snippet's scope (made in the event loop, by run())
    scope: Any = None
    stopped_by_test: bool = False
    #: the snippet may connect to loopback addresses (servers it started itself)
    allow_loopback: bool = False
    #: the connections the snippet opened (closed after it, whatever it did)
    opened: list[Any] = field(default_factory=list)

    def stop(self) -> None:
        """End the running snippet (one that serves forever) as a success."""
        self.stopped_by_test = True
        self.scope.cancel()

    def target(self, host: str, port: int) -> tuple[str, int]:
        if self.allow_loopback and host in ("127.0.0.1", "::1", "localhost"):
            return host, port
        try:
            return self.addresses[(host, port)]
        except KeyError:
            raise AssertionError(
                f"the snippet connects to {host}:{port}, which its setup does not "
                f"provide ({sorted(self.addresses)})"
            ) from None


@dataclass(frozen=True)
class Setup:
    #: async context manager factory: Env -> values for the fragment's parameters
    enter: Callable[[Env], Any]
    #: "fragment" (wrapped in an async function) or "program" (a module)
    kind: str
    #: the fragment's parameters, as they are typed for mypy
    parameters: str = ""
    backend: str = "asyncio"


_HEADER = """\
from __future__ import annotations

import ssl
from typing import Any

import anyio
import anyio.abc

import anyiotls
from anyiotls import TLSAttribute, TLSListener, TLSStream, starttls
"""


def _write_files(env: Env) -> None:
    from anyiotls.cli._serve import write_certificates

    server = env.ca.issue_cert("localhost", "127.0.0.1", "::1")
    alice = env.ca.issue_cert("alice@example.org")
    server.private_key_and_cert_chain_pem.write_to_path(env.directory / "server.pem")
    alice.private_key_and_cert_chain_pem.write_to_path(env.directory / "alice.pem")
    env.ca.cert_pem.write_to_path(env.directory / "ca.pem")
    env.ca.cert_pem.write_to_path(env.directory / "clients-ca.pem")
    write_certificates(env.directory / "certs", "127.0.0.1")


async def _echo_then_plaintext(stream: TLSStream) -> None:
    """Echo until close_notify, answer it, then send a line in plaintext."""
    try:
        try:
            async for chunk in stream:
                await stream.send(chunk)
        except anyio.EndOfStream:
            pass
        transport, _ = await stream.unwrap()
        await transport.send(b"plaintext after TLS\r\n")
        await transport.aclose()
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, ssl.SSLError):
        await anyio.aclose_forcefully(stream.transport_stream)


@asynccontextmanager
async def _serving(
    listener: anyio.streams.stapled.MultiListener[anyio.abc.SocketStream],
    handler: Callable[[anyio.abc.SocketStream], Any],
) -> AsyncIterator[None]:
    """Serve *listener* with *handler* until the block ends; then close the listener
    and every connection it accepted.

    Not ``listener.serve()``: it leaves closing to the handler, and a handler cancelled
    when the block ends (or before its task first ran, on asyncio) leaves its socket
    to the garbage collector, whose ResourceWarning then fails whichever test it
    happens to run in.
    """
    accepted: list[anyio.abc.SocketStream] = []

    async def accept_forever(one: Any, tg: anyio.abc.TaskGroup) -> None:
        while True:
            stream = await one.accept()
            accepted.append(stream)
            tg.start_soon(handler, stream)

    try:
        async with listener, anyio.create_task_group() as tg:
            for one in listener.listeners:
                tg.start_soon(accept_forever, one, tg)
            yield
            tg.cancel_scope.cancel()
    finally:
        for stream in accepted:
            await anyio.aclose_forcefully(stream)


@asynccontextmanager
async def _tls_server(
    env: Env, handler: Callable[[TLSStream], Any], context: ssl.SSLContext
) -> AsyncIterator[int]:
    """A TLS server on 127.0.0.1 (anyiotls's own server side); its port."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)

    async def serve_one(raw: anyio.abc.SocketStream) -> None:
        try:
            tls = await TLSStream.wrap(raw, server_side=True, ssl_context=context)
        except (anyio.BrokenResourceError, ssl.SSLError):
            return  # _serving closes raw
        await handler(tls)

    async with _serving(listener, serve_one):
        yield listener.extra(anyio.abc.SocketAttribute.local_port)


def _server_context(env: Env, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    env.ca.issue_cert(*names).configure_cert(context)
    return context


def _client_context(env: Env) -> ssl.SSLContext:
    context = ssl.create_default_context()
    env.ca.configure_trust(context)
    return context


@asynccontextmanager
async def _files(env: Env) -> AsyncIterator[dict[str, Any]]:
    _write_files(env)
    yield {}


@asynccontextmanager
async def _tls_stream(env: Env) -> AsyncIterator[dict[str, Any]]:
    server = _server_context(env, "localhost")
    async with _tls_server(env, _echo_then_plaintext, server) as port:
        env.addresses[("127.0.0.1", port)] = ("127.0.0.1", port)  # "more connections"
        context = _client_context(env)
        tcp = await _connect_tcp("127.0.0.1", port)
        try:
            stream = await TLSStream.wrap(
                tcp, hostname="localhost", ssl_context=context
            )
            yield {"stream": stream, "context": context, "port": port}
            with anyio.move_on_after(2):
                with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await stream.aclose()
        finally:
            await anyio.aclose_forcefully(tcp)


@asynccontextmanager
async def _pha_server(env: Env) -> AsyncIterator[dict[str, Any]]:
    server = _server_context(env, "localhost")
    server.minimum_version = ssl.TLSVersion.TLSv1_3
    server.post_handshake_auth = True
    server.verify_mode = ssl.CERT_OPTIONAL
    env.ca.configure_trust(server)
    client = _client_context(env)
    env.ca.issue_cert("alice@example.org").configure_cert(client)
    client.post_handshake_auth = True
    streams: list[TLSStream] = []
    accepted = anyio.Event()

    async def keep(stream: TLSStream) -> None:
        streams.append(stream)
        accepted.set()
        await anyio.sleep_forever()

    async with _tls_server(env, keep, server) as port:
        tcp = await _connect_tcp("127.0.0.1", port)
        tls = await TLSStream.wrap(tcp, hostname="localhost", ssl_context=client)

        async def client_reads() -> None:
            await tls.send(b"GET / HTTP/1.0\r\n\r\n")
            try:
                async for _ in tls:
                    pass
            except anyio.BrokenResourceError:
                pass

        async with anyio.create_task_group() as tg:
            tg.start_soon(client_reads)
            await accepted.wait()
            yield {"stream": streams[0]}
            tg.cancel_scope.cancel()
        await anyio.aclose_forcefully(tls)
        await anyio.aclose_forcefully(streams[0])


@asynccontextmanager
async def _program(env: Env) -> AsyncIterator[dict[str, Any]]:
    yield {}


@asynccontextmanager
async def _anyiotls_serve(env: Env) -> AsyncIterator[dict[str, Any]]:
    serve = ["serve", "--port", "0", "--certs-dir", "certs"]
    process = await anyio.open_process(
        [sys.executable, "-m", "anyiotls", *serve],
        cwd=env.directory,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        assert process.stdout is not None
        output = b""
        while not (match := re.search(rb"listening on 127\.0\.0\.1:(\d+)", output)):
            chunk = await process.stdout.receive()
            assert chunk, f"anyiotls serve ended: {output.decode()}"
            output += chunk
        port = int(match.group(1))
        env.addresses[("localhost", 4433)] = ("127.0.0.1", port)
        env.addresses[("127.0.0.1", 4433)] = ("127.0.0.1", port)
        yield {}
    finally:
        process.terminate()
        with anyio.move_on_after(10):
            await process.wait()
        await process.aclose()


@asynccontextmanager
async def _listener(env: Env) -> AsyncIterator[dict[str, Any]]:
    _write_files(env)

    async def probe() -> None:
        # print() runs in the program's thread and sets no event: poll
        while not (found := re.search(r"port (\d+)", " ".join(env.printed))):  # noqa: ASYNC110
            await anyio.sleep(0.05)
        context = ssl.create_default_context(cafile=str(env.directory / "certs/ca.pem"))
        async with await TLSStream.wrap(
            await _connect_tcp("localhost", int(found.group(1))),
            hostname="localhost",
            ssl_context=context,
        ) as tls:
            await tls.send(b"ping\n")
            assert await tls.receive() == b"ping\n"
        env.stop()

    async with anyio.create_task_group() as tg:
        tg.start_soon(probe)
        yield {}


_SMTP_CERT_NAMES = ("mail.example.org",)


async def _smtp_stand_in(raw: anyio.abc.SocketStream, context: ssl.SSLContext) -> None:
    """Enough SMTP for the guide: EHLO, STARTTLS, EHLO again, QUIT."""
    from anyio.streams.buffered import BufferedByteReceiveStream

    stream: anyio.abc.ByteStream = raw
    reader = BufferedByteReceiveStream(raw)
    await stream.send(b"220 mail.example.org ESMTP stand-in\r\n")
    try:
        while True:
            line = (await reader.receive_until(b"\r\n", 1000)).decode().upper()
            if line.startswith("EHLO"):
                offer = b"250-STARTTLS\r\n" if stream is raw else b""
                await stream.send(b"250-mail.example.org\r\n" + offer + b"250 OK\r\n")
            elif line == "STARTTLS":
                await stream.send(b"220 go ahead\r\n")
                stream = await TLSStream.wrap(
                    raw, server_side=True, ssl_context=context
                )
                reader = BufferedByteReceiveStream(stream)
            elif line == "QUIT":
                await stream.send(b"221 bye\r\n")
                await stream.aclose()
                return
            else:
                await stream.send(b"502 not implemented\r\n")
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.IncompleteRead):
        await anyio.aclose_forcefully(stream)


@asynccontextmanager
async def _smtp(env: Env) -> AsyncIterator[dict[str, Any]]:
    context = _server_context(env, *_SMTP_CERT_NAMES)
    original = ssl.create_default_context

    def trusting_default_context(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        created = original(*args, **kwargs)
        env.ca.configure_trust(created)
        return created

    # The stand-in's certificate is from the test's CA: trusted like a public one.
    env.monkeypatch.setattr(ssl, "create_default_context", trusting_default_context)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with _serving(listener, lambda raw: _smtp_stand_in(raw, context)):
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        for documented in (25, 587):
            env.addresses[("mail.example.org", documented)] = ("127.0.0.1", port)
        plain = await _connect_tcp("127.0.0.1", port)
        try:
            yield {"plain": plain}
        finally:
            await anyio.aclose_forcefully(plain)


@asynccontextmanager
async def _trio_tls(env: Env) -> AsyncIterator[dict[str, Any]]:
    server = _server_context(env, "localhost")
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        listen_port = probe.getsockname()[1]

    async def handler(stream: Any) -> None:
        await stream.send_all(await stream.receive_some())
        await stream.aclose()

    async def connect_once() -> None:
        while True:
            try:
                tcp = await _connect_tcp("127.0.0.1", listen_port)
                break
            except OSError:
                await anyio.sleep(0.05)
        context = _client_context(env)
        async with await TLSStream.wrap(
            tcp, hostname="localhost", ssl_context=context
        ) as tls:
            await tls.send(b"ping")
            assert await tls.receive() == b"ping"
        env.stop()

    async with _tls_server(env, _echo_then_plaintext, server) as port:
        env.addresses[("localhost", port)] = ("127.0.0.1", port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(connect_once)
            yield {
                "host": "localhost",
                "port": port,
                "client_context": _client_context(env),
                "server_context": server,
                "listen_port": listen_port,
                "handler": handler,
            }
            tg.cancel_scope.cancel()
    env.addresses.clear()


@asynccontextmanager
async def _not_run_here(env: Env) -> AsyncIterator[dict[str, Any]]:
    yield {}


@asynccontextmanager
async def _loopback(env: Env) -> AsyncIterator[dict[str, Any]]:
    env.allow_loopback = True
    yield {}


SETUPS: dict[str, Setup] = {
    "program": Setup(_program, "program"),
    "files": Setup(_files, "fragment"),
    "tls-stream": Setup(
        _tls_stream,
        "fragment",
        "stream: TLSStream, context: ssl.SSLContext, port: int",
    ),
    "pha-server": Setup(_pha_server, "fragment", "stream: TLSStream"),
    "anyiotls-serve": Setup(_anyiotls_serve, "program"),
    "listener": Setup(_listener, "program"),
    "loopback": Setup(_loopback, "program"),
    "loopback-trio": Setup(_loopback, "program", backend="trio"),
    "smtp": Setup(_smtp, "fragment", "plain: anyio.abc.ByteStream"),
    "smtp-trio": Setup(_smtp, "program", backend="trio"),
    "trio-tls": Setup(
        _trio_tls,
        "fragment",
        "host: str, port: int, client_context: ssl.SSLContext, "
        "server_context: ssl.SSLContext, listen_port: int, handler: Any",
        backend="trio",
    ),
    "tested-in": Setup(_not_run_here, "program"),
    "excerpt": Setup(_not_run_here, "excerpt"),
}


def source(snippet: Snippet) -> str:
    """The module that runs (and is type-checked) for *snippet*."""
    setup = SETUPS[snippet.setup]
    where = f"# {snippet.id} (setup: {snippet.setup})\n"
    if setup.kind == "program":
        # A program's epilogue runs after it (see _run_program), unchecked by mypy.
        parts = [snippet.prelude, snippet.code]
        return where + "\n".join(part for part in parts if part.strip())
    body = "\n".join(
        part for part in (snippet.prelude, snippet.code, snippet.epilogue) if part
    )
    return (
        f"{where}{_HEADER}\n\n"
        f"async def snippet({setup.parameters}) -> None:\n"
        f"{textwrap.indent(body, '    ')}"
    )


# -- running -------------------------------------------------------------------------


def _patch_network(env: Env) -> None:
    """Snippets reach only the stand-ins their setup started."""
    connect_tcp = anyio.connect_tcp

    async def mapped_connect_tcp(host: str, port: int, **kwargs: Any) -> Any:
        stream = await connect_tcp(*env.target(host, port), **kwargs)
        env.opened.append(stream)
        return stream

    env.monkeypatch.setattr(anyio, "connect_tcp", mapped_connect_tcp)

    import anyiotls

    tls_connect_tcp = anyiotls.connect_tcp

    async def mapped_tls_connect_tcp(host: str, port: int, **kwargs: Any) -> Any:
        if kwargs.get("tls", True):  # the certificate names the host the page uses
            kwargs.setdefault("tls_hostname", host)
        stream = await tls_connect_tcp(*env.target(host, port), **kwargs)
        env.opened.append(stream)
        return stream

    env.monkeypatch.setattr(anyiotls, "connect_tcp", mapped_tls_connect_tcp)
    try:
        import trio
    except ImportError:
        return
    open_tcp_stream = trio.open_tcp_stream

    async def mapped_open_tcp_stream(host: str, port: int, **kwargs: Any) -> Any:
        stream = await open_tcp_stream(*env.target(host, port), **kwargs)
        env.opened.append(stream)
        return stream

    env.monkeypatch.setattr(trio, "open_tcp_stream", mapped_open_tcp_stream)


async def _call_in_test_loop(env: Env, func: Any, args: tuple[Any, ...]) -> Any:
    with env.scope:
        return await func(*args)
    return None  # stopped by the test


def _run_program(env: Env, code: str, name: str, epilogue: str) -> None:
    """Execute a program in this worker thread; its run() calls come back to us."""

    def run(func: Any, *args: Any, **_options: Any) -> Any:
        return anyio.from_thread.run(_call_in_test_loop, env, func, args)

    env.monkeypatch.setattr(anyio, "run", run)
    try:
        import trio

        env.monkeypatch.setattr(trio, "run", run)
    except ImportError:
        pass

    def capture(*values: Any, **_options: Any) -> None:
        env.printed.append(" ".join(str(value) for value in values))

    namespace: dict[str, Any] = {"__name__": name, "print": capture}
    exec(compile(code, name, "exec"), namespace)
    namespace["printed"] = env.printed
    exec(compile(epilogue, name, "exec"), namespace)


async def run(snippet: Snippet, env: Env) -> None:
    setup = SETUPS[snippet.setup]
    env.scope = anyio.CancelScope()
    _patch_network(env)
    code = source(snippet)
    with anyio.fail_after(TIMEOUT):
        async with setup.enter(env) as values:
            if setup.kind == "program":
                name = "doc_snippet" if snippet.setup == "tested-in" else "__main__"
                await anyio.to_thread.run_sync(
                    _run_program, env, code, name, snippet.epilogue
                )
            else:
                namespace: dict[str, Any] = {"__name__": "doc_snippet"}
                exec(compile(code, snippet.id, "exec"), namespace)
                try:
                    with env.scope:
                        await namespace["snippet"](**values)
                finally:
                    for stream in env.opened:
                        with anyio.CancelScope(shield=True):
                            await stream.aclose()
    if setup is SETUPS["listener"] or setup is SETUPS["trio-tls"]:
        assert env.stopped_by_test, "the test's client never got through"


SNIPPETS = collect()


def test_snippets_were_found_on_every_page_that_has_some() -> None:
    pages = {path.name for path in DOCS.glob("*.md") if "```python" in path.read_text()}
    assert pages == {Path(snippet.page).name for snippet in SNIPPETS}
    assert len(SNIPPETS) >= 20


@pytest.mark.parametrize("snippet", SNIPPETS, ids=lambda snippet: snippet.id)
def test_snippet_runs(
    snippet: Snippet,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ca: trustme.CA,
) -> None:
    assert snippet.setup in SETUPS, f"{snippet.id}: unknown setup {snippet.setup!r}"
    if snippet.setup == "tested-in":
        tester = ROOT / snippet.argument
        assert tester.is_file(), f"{snippet.id}: no test file {snippet.argument}"
        assert Path(snippet.page).name in tester.read_text(), tester
    if snippet.setup == "excerpt":
        example = (ROOT / snippet.argument).read_text()
        for line in snippet.code.splitlines():
            code = line.split("  #")[0].strip()
            assert code in example, f"{snippet.id}: {code!r} not in {snippet.argument}"
        return
    monkeypatch.chdir(tmp_path)
    env = Env(tmp_path, monkeypatch, ca)
    backend = SETUPS[snippet.setup].backend
    try:
        anyio.run(run, snippet, env, backend=backend)
    finally:
        sys.stdout.write("\n".join(env.printed))


def test_snippets_and_examples_pass_mypy_strict(tmp_path: Path) -> None:
    files = []
    for number, snippet in enumerate(SNIPPETS):
        if SETUPS[snippet.setup].kind == "excerpt":
            continue  # its file is type-checked
        path = tmp_path / f"snippet_{number}.py"
        path.write_text(source(snippet))
        files.append((path, snippet))
    examples = [str(path) for path in sorted((ROOT / "examples").glob("*.py"))]
    completed = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary"]
        + ["--cache-dir", str(ROOT / ".mypy_cache" / "doc-snippets")]
        + [str(path) for path, _ in files]
        + examples,
        capture_output=True,
        text=True,
        env={**os.environ, "MYPYPATH": str(ROOT / "src")},
        check=False,
    )
    report = completed.stdout
    for path, snippet in files:
        # "snippet_N.py:LINE:" -> "docs/page.md:LINE:" with the page's line number
        code_starts = path.read_text().split(snippet.code.splitlines()[0])[0]
        offset = snippet.line - code_starts.count("\n")

        def page_line(
            match: re.Match[str], offset: int = offset, page: str = snippet.page
        ) -> str:
            return f"{page}:{int(match[1]) + offset}:"

        report = re.sub(rf"{re.escape(str(path))}:(\d+):", page_line, report)
    assert completed.returncode == 0, report


def test_the_test_extra_pins_the_mypy_that_nox_type_checks_with() -> None:
    # Both run mypy --strict (on src/ and on the documentation's code): one version.
    root = Path(__file__).resolve().parent.parent
    nox_pin = re.search(r'^MYPY = "([^"]+)"', (root / "noxfile.py").read_text(), re.M)
    extra_pin = re.search(r'"(mypy==[^"]+)"', (root / "pyproject.toml").read_text())
    assert nox_pin is not None
    assert extra_pin is not None
    assert nox_pin.group(1) == extra_pin.group(1)
