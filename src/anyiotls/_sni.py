"""Choosing a server's :class:`ssl.SSLContext` from the ClientHello, for both faces.

A listener configured with ``sni_contexts=`` or ``select_context=`` reads the
ClientHello itself (:func:`read_client_hello`, over the sans-I/O parser in
``_clienthello.py``), chooses the context (:meth:`Selection.choose`) and only then
builds the engine, with the chosen context, feeding it every byte read. The
context is never changed after ``wrap_bio()`` and no callback is set on a context
the user gave us: ALPN, client authentication and every other setting come from
the chosen context exactly as if it had been the only one.

Without these keywords the listeners take the plain path (no pre-read).
"""

from __future__ import annotations

__all__ = (
    "ALERT_SEND_TIMEOUT",
    "FilePath",
    "SelectContext",
    "Selection",
    "ServerNames",
    "ServesNames",
    "UnrecognizedNameError",
    "load_server_context",
    "read_client_hello",
    "refusal_alert",
)

import os
import ssl
from collections.abc import Awaitable, Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Final, Union

from ._clienthello import (
    ALERT_DECODE_ERROR,
    ALERT_HANDSHAKE_FAILURE,
    ALERT_UNRECOGNIZED_NAME,
    NEED_DATA,
    ClientHello,
    ClientHelloError,
    ClientHelloParser,
    alert_record,
)
from ._context import default_context

#: An async function that picks the context for a ClientHello; ``None`` means
#: "as ``sni_contexts`` and the default would".
SelectContext = Callable[[ClientHello], Awaitable["ssl.SSLContext | None"]]

#: A file name, as :meth:`ssl.SSLContext.load_cert_chain` takes it.
FilePath = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

#: Seconds a refusal may spend sending its alert before the connection is closed.
ALERT_SEND_TIMEOUT: Final = 1.0


class UnrecognizedNameError(ssl.SSLError):
    """The client asked for a host name the listener has no certificate for.

    Raised (and the ``unrecognized_name`` alert sent to the client) only when the
    listener was created with ``refuse_unknown_names=True``; otherwise such a
    client gets the default context. ``server_name`` is the name it asked for.
    """

    def __init__(self, server_name: str) -> None:
        super().__init__(f"no certificate for the server name {server_name!r}")
        self.server_name = server_name
        self.reason = "UNRECOGNIZED_NAME"
        self.library = "anyiotls"

    def __str__(self) -> str:
        return f"[{self.reason}] {self.args[0]}"

    def __reduce__(self) -> tuple[type[UnrecognizedNameError], tuple[str]]:
        return type(self), (self.server_name,)


def _normalize_name(name: str) -> str:
    """*name* as SNI carries it: lower-case IDNA A-labels, no trailing dot."""
    if not isinstance(name, str):
        raise TypeError(f"a server name must be a str, not {type(name).__name__}")
    stripped = name.strip().removesuffix(".")
    try:
        ascii_name = stripped.encode("ascii").decode("ascii")
    except UnicodeEncodeError:
        import idna

        try:
            ascii_name = idna.encode(stripped, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise ValueError(f"{name!r} is not a valid host name: {exc}") from None
    ascii_name = ascii_name.lower()
    labels = ascii_name.split(".")
    if (
        not ascii_name
        or len(ascii_name) > 253
        or any(not label or len(label) > 63 for label in labels)
        or any(not (c.isalnum() or c in "-_") for c in ascii_name.replace(".", ""))
    ):
        raise ValueError(f"{name!r} is not a valid host name")
    return ascii_name


def _check_server_side(context: ssl.SSLContext, what: str) -> None:
    if context.protocol == ssl.PROTOCOL_TLS_CLIENT:
        raise ValueError(
            f"{what} is a client context (PROTOCOL_TLS_CLIENT): create it with "
            "ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)"
        )


class ServerNames(Mapping[str, ssl.SSLContext]):
    """An immutable table from host names to contexts, matched as SNI needs.

    Keys are exact names (``"a.example.org"``) or wildcards of one label
    (``"*.example.org"`` matches ``a.example.org`` but neither ``example.org`` nor
    ``a.b.example.org``, as certificate wildcards do, RFC 6125 section 6.4.3).
    International names may be given in Unicode or as A-labels; both are stored as
    lower-case A-labels, and lookups ignore case. An exact name wins over a
    wildcard.

    :raises ValueError: a key is not a host name or a wildcard of that form, two
        keys are the same name once normalised, or a context is a client context
    :raises TypeError: a key is not a ``str`` or a value not an ``SSLContext``
    """

    __slots__ = ("_exact", "_wildcards")

    def __init__(self, contexts: Mapping[str, ssl.SSLContext]) -> None:
        """See the class docstring."""
        exact: dict[str, ssl.SSLContext] = {}
        wildcards: dict[str, ssl.SSLContext] = {}
        for key, context in contexts.items():
            if not isinstance(context, ssl.SSLContext):
                raise TypeError(
                    f"the context for {key!r} must be an ssl.SSLContext, not "
                    f"{type(context).__name__}"
                )
            _check_server_side(context, f"the context for {key!r}")
            if isinstance(key, str) and key.startswith("*."):
                table, name = wildcards, _normalize_name(key[2:])
            else:
                table, name = exact, _normalize_name(key)
            if name in table:
                raise ValueError(f"{key!r} is given twice (as {name!r})")
            table[name] = context
        self._exact = MappingProxyType(exact)
        self._wildcards = MappingProxyType(wildcards)

    def lookup(self, server_name: str | None) -> ssl.SSLContext | None:
        """The context for *server_name* (as a ClientHello carries it), if any."""
        if not server_name:
            return None
        name = server_name.lower().removesuffix(".")
        found = self._exact.get(name)
        if found is None:
            _, dot, parent = name.partition(".")
            if dot and parent:
                found = self._wildcards.get(parent)
        return found

    def __getitem__(self, key: str) -> ssl.SSLContext:
        if isinstance(key, str) and key.startswith("*."):
            return self._wildcards[_normalize_name(key[2:])]
        return self._exact[_normalize_name(key)]

    def __iter__(self) -> Iterator[str]:
        yield from self._exact
        for parent in self._wildcards:
            yield "*." + parent

    def __len__(self) -> int:
        return len(self._exact) + len(self._wildcards)

    def __repr__(self) -> str:
        return f"ServerNames({dict(self)!r})"


class Selection:
    """One listener's way of choosing contexts, frozen for one connection.

    The listener makes a new one whenever ``sni_contexts`` changes, so a connection
    keeps the table that was current when it was accepted.
    """

    __slots__ = ("names", "refuse_unknown_names", "select_context")

    def __init__(
        self,
        names: ServerNames,
        select_context: SelectContext | None,
        refuse_unknown_names: bool,
    ) -> None:
        """See the class docstring."""
        self.names = names
        self.select_context = select_context
        self.refuse_unknown_names = refuse_unknown_names

    async def choose(
        self, hello: ClientHello, default: ssl.SSLContext
    ) -> ssl.SSLContext:
        """The context for *hello*: the hook's, else the table's, else *default*.

        :raises UnrecognizedNameError: no table entry for the client's server name,
            and unknown names are refused (a client without SNI gets *default*)
        :raises TypeError: the hook returned something other than a context or
            ``None``
        :raises ValueError: the hook returned a client context
        :raises Exception: whatever the hook raised
        """
        if self.select_context is not None:
            chosen = await self.select_context(hello)
            if chosen is not None:
                if not isinstance(chosen, ssl.SSLContext):
                    raise TypeError(
                        "select_context must return an ssl.SSLContext or None, not "
                        f"{type(chosen).__name__}"
                    )
                _check_server_side(chosen, "the context select_context returned")
                return chosen
        found = self.names.lookup(hello.server_name)
        if found is not None:
            return found
        if hello.server_name and self.refuse_unknown_names:
            raise UnrecognizedNameError(hello.server_name)
        return default


async def read_client_hello(
    receive: Callable[[int], Awaitable[bytes | bytearray]],
) -> tuple[ClientHello, bytes]:
    """Read from *receive* until the ClientHello is complete.

    *receive(n)* returns up to *n* bytes, or ``b""`` at end of file. Returns the
    parsed ClientHello and every byte received (for the engine). Asks for at most
    :data:`~anyiotls._clienthello.MAX_WIRE_BYTES` in total (a transport that
    returns more than asked for is kept whole: those bytes belong to the engine).

    :raises ClientHelloError: not a well-formed ClientHello within the bounds
    """
    parser = ClientHelloParser()
    received = bytearray()
    while True:
        data = await receive(parser.bytes_needed)
        received += data
        parser.receive_data(data)
        event = parser.next_event()
        if event is not NEED_DATA:
            assert isinstance(event, ClientHello)
            return event, bytes(received)


def refusal_alert(exc: BaseException) -> bytes | None:
    """The alert record to send before closing a connection refused by *exc*.

    ``None`` when the client should get no alert: it sent nothing that looked like
    TLS, or it already went away.
    """
    if isinstance(exc, UnrecognizedNameError):
        return alert_record(ALERT_UNRECOGNIZED_NAME)
    if isinstance(exc, ClientHelloError):
        if exc.reason in ("MALFORMED_CLIENT_HELLO", "CLIENT_HELLO_TOO_LONG"):
            return alert_record(ALERT_DECODE_ERROR)
        return None
    if isinstance(exc, Exception):  # the hook refused (or failed)
        return alert_record(ALERT_HANDSHAKE_FAILURE)
    return None


def load_server_context(
    certfile: FilePath,
    keyfile: FilePath | None = None,
    *,
    password: str | bytes | Callable[[], str | bytes] | None = None,
    make_context: Callable[[], ssl.SSLContext] | None = None,
) -> ssl.SSLContext:
    """A *new* server context with the certificate chain and key from these files.

    *make_context* builds the context before the files are loaded (set ALPN,
    client authentication, versions there); by default a secure server context
    (:func:`ssl.create_default_context` for client authentication, with
    ``OP_IGNORE_UNEXPECTED_EOF`` cleared).

    :raises OSError: a file cannot be read
    :raises ssl.SSLError: the files hold no certificate, no key, or a key that
        does not match the certificate
    """
    if make_context is None:
        context = default_context(server_side=True)
    else:
        context = make_context()
    if not isinstance(context, ssl.SSLContext):
        raise TypeError(
            f"make_context must return an ssl.SSLContext, not {type(context).__name__}"
        )
    context.load_cert_chain(certfile, keyfile, password)
    return context


class ServesNames:
    """The host name table and certificate reload, shared by both faces' listeners.

    The listener sets ``ssl_context`` (an attribute or a property), and
    ``_select_context``, ``_refuse_unknown_names`` and ``_selection`` in its
    initializer.
    """

    ssl_context: ssl.SSLContext
    _select_context: SelectContext | None
    _refuse_unknown_names: bool
    _selection: Selection | None

    @property
    def sni_contexts(self) -> Mapping[str, ssl.SSLContext]:
        """The host name table (read-only; assign a new mapping to change it).

        Normalised: lower-case A-labels. Empty if none was given.
        """
        return self._selection.names if self._selection is not None else {}

    @sni_contexts.setter
    def sni_contexts(self, contexts: Mapping[str, ssl.SSLContext]) -> None:
        # Built whole, then swapped in one assignment: a connection sees either
        # the old table or the new one.
        self._selection = Selection(
            ServerNames(contexts), self._select_context, self._refuse_unknown_names
        )

    def reload_certificate(
        self,
        certfile: FilePath,
        keyfile: FilePath | None = None,
        *,
        password: str | bytes | Callable[[], str | bytes] | None = None,
        server_name: str | None = None,
        make_context: Callable[[], ssl.SSLContext] | None = None,
    ) -> ssl.SSLContext:
        """Load a certificate and key into a *new* context and use it from now on.

        Replaces :attr:`ssl_context`, or with *server_name* that name's entry in
        :attr:`sni_contexts` (added if missing). Connections already accepted keep
        the context they have. If the files cannot be loaded, this raises and
        nothing changes. *make_context* builds the context before the files are
        loaded (ALPN and other settings); see :func:`~anyiotls.load_server_context`.

        :return: the new context
        :raises OSError: a file cannot be read (nothing changed)
        :raises ssl.SSLError: the files are not a matching certificate and key
            (nothing changed)
        """
        context = load_server_context(
            certfile, keyfile, password=password, make_context=make_context
        )
        if server_name is None:
            self.ssl_context = context
        else:
            self.sni_contexts = {**self.sni_contexts, server_name: context}
        return context
