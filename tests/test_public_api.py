"""The public surface: exports, and the drop-in promise for anyio.streams.tls."""

from __future__ import annotations

import importlib
import inspect

import anyio.streams.tls
import pytest

import anyiotls


def test_all_is_a_tuple_of_existing_names() -> None:
    assert isinstance(anyiotls.__all__, tuple)
    for name in anyiotls.__all__:
        assert hasattr(anyiotls, name), name


def test_tls_attribute_is_anyios_own() -> None:
    assert anyiotls.TLSAttribute is anyio.streams.tls.TLSAttribute


_DROP_IN = [
    "TLSStream.wrap",
    "TLSStream.receive",
    "TLSStream.send",
    "TLSStream.send_eof",
    "TLSStream.unwrap",
    "TLSStream.aclose",
    "TLSListener.__init__",
    "TLSListener.serve",
    "TLSListener.handle_handshake_error",
    "TLSConnectable.__init__",  # only in anyio >= 4.10
]


#: parameters beyond anyio's and their defaults (docs/migrating.md lists them; the
#: bounds' defaults are deliberate differences, documented there too)
_EXTENSIONS = {
    "verify_peer": None,
    "sni_contexts": None,
    "select_context": None,
    "refuse_unknown_names": False,
    "session": None,
    "session_cache": None,
    "max_read_ahead": 1024 * 1024,
    "close_timeout": 5.0,
}


@pytest.mark.parametrize(
    "path",
    [path for path in _DROP_IN if hasattr(anyio.streams.tls, path.split(".")[0])],
)
def test_signatures_match_anyio(path: str) -> None:
    def resolve(module: object) -> inspect.Signature:
        obj = module
        for part in path.split("."):
            obj = getattr(obj, part)
        return inspect.signature(obj)  # type: ignore[arg-type]

    ours = resolve(anyiotls)
    theirs = resolve(anyio.streams.tls)
    # Ours may add keyword-only parameters with defaults (nothing anyio's callers
    # pass can change meaning), and only the documented ones.
    extra = list(ours.parameters)[len(theirs.parameters) :]
    assert list(ours.parameters)[: len(theirs.parameters)] == list(theirs.parameters)
    assert set(extra) <= set(_EXTENSIONS), extra
    for name in extra:
        assert ours.parameters[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        assert ours.parameters[name].default == _EXTENSIONS[name], name
    for name, param in theirs.parameters.items():
        assert ours.parameters[name].default == param.default, name
        assert ours.parameters[name].kind == param.kind, name


def test_every_public_name_has_a_docstring() -> None:
    for module_name in ["anyiotls"]:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            assert inspect.getdoc(obj), name
            for attr, value in vars(obj).items() if inspect.isclass(obj) else []:
                if attr.startswith("_") or not callable(value):
                    continue
                assert inspect.getdoc(value), f"{name}.{attr}"
