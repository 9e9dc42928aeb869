"""The public surface of anyiotls.starttls: names, docstrings, no Trio needed."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys

import anyiotls.starttls as starttls


def test_all_is_a_tuple_of_existing_names() -> None:
    assert isinstance(starttls.__all__, tuple)
    assert sorted(starttls.__all__) == list(starttls.__all__)
    for name in starttls.__all__:
        assert hasattr(starttls, name), name


def test_every_module_declares_all() -> None:
    for info in pkgutil.iter_modules(starttls.__path__, "anyiotls.starttls."):
        module = importlib.import_module(info.name)
        assert isinstance(module.__all__, tuple), info.name


def test_every_public_name_has_a_docstring() -> None:
    for name in starttls.__all__:
        obj = getattr(starttls, name)
        assert inspect.getdoc(obj), name
        if inspect.isclass(obj):
            for member_name, member in vars(obj).items():
                if member_name.startswith("_") or not callable(member):
                    continue
                assert inspect.getdoc(member), f"{name}.{member_name}"


def test_exceptions_share_one_base() -> None:
    for name in (
        "NotOfferedError",
        "RefusedError",
        "ReplyError",
        "InjectedDataError",
        "MalformedReplyError",
        "ConnectionClosedError",
    ):
        assert issubclass(getattr(starttls, name), starttls.StartTLSError), name
    assert issubclass(starttls.RefusedError, starttls.ReplyError)


def test_importing_does_not_import_trio() -> None:
    code = "import sys, anyiotls.starttls; sys.exit(1 if 'trio' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
