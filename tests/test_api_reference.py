"""The API reference (docs/api.rst) documents every public name, and only those.

"Public" is ``__all__`` of anyiotls, anyiotls.trio and anyiotls.starttls, plus the
members of the attribute sets among them: the same list the documentation build
checks (docs/_ext/api_coverage.py), read here from the page's directives so that
no Sphinx build is needed.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
sys.path.insert(0, str(DOCS / "_ext"))
import api_coverage  # noqa: E402  (lives next to the docs, imported from there)

_DIRECTIVE = re.compile(
    r"^(?P<indent> *)\.\. (?:auto(?:class|function|exception|data)|py:(?P<kind>\w+))"
    r":: (?P<name>\S+)$"
)


def _documented() -> dict[str, list[str]]:
    """Dotted name -> the lines of its directive's body (options and text)."""
    lines = (DOCS / "api.rst").read_text().splitlines()
    found: dict[str, list[str]] = {}
    parents: list[tuple[int, str]] = []  # (indent, dotted name) of open py:class
    for number, line in enumerate(lines):
        match = _DIRECTIVE.match(line)
        if not match:
            continue
        indent = len(match["indent"])
        name = match["name"]
        body = []
        for following in lines[number + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following.strip())
        module = next((b.split()[1] for b in body if b.startswith(":module:")), None)
        while parents and parents[-1][0] >= indent:
            parents.pop()
        if module:
            name = f"{module}.{name}"
        elif parents and match["kind"]:
            name = f"{parents[-1][1]}.{name}"
        found[name] = body
        if match["kind"] == "class":
            parents.append((indent, name))
    return found


def test_every_public_name_is_in_the_reference() -> None:
    documented = _documented()
    missing = [name for name in api_coverage.expected() if name not in documented]
    assert not missing, f"add to docs/api.rst: {missing}"


def test_the_reference_documents_only_public_names() -> None:
    expected = set(api_coverage.expected())
    extra = [name for name in _documented() if name not in expected]
    assert not extra, f"not public (not in any __all__): {extra}"


def test_the_expected_list_covers_every_module_and_attribute_set() -> None:
    # A check that found nothing to check would pass whatever the page says.
    expected = api_coverage.expected()
    for module_name in api_coverage.PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        assert module.__all__
        for name in module.__all__:
            assert f"{module_name}.{name}" in expected
    assert "anyiotls.TLSAttribute.peer_certificate" in expected


def test_hand_written_attributes_have_a_type_and_a_meaning() -> None:
    # autodoc takes types from the signatures; attributes written by hand (the
    # attribute sets, which are anyio's) must say theirs.
    for name, body in _documented().items():
        if name.count(".") < 2 or not name.startswith("anyiotls.TLSAttribute."):
            continue
        assert any(line.startswith(":type: ") for line in body), name
        text = [line for line in body if line and not line.startswith(":")]
        assert text, f"{name} has no description"


@pytest.mark.parametrize("module_name", api_coverage.PUBLIC_MODULES)
def test_every_public_name_and_method_has_a_docstring(module_name: str) -> None:
    module = importlib.import_module(module_name)
    for name in module.__all__:
        obj = getattr(module, name)
        assert inspect.getdoc(obj), name
        for attr, value in vars(obj).items() if inspect.isclass(obj) else []:
            if attr.startswith("_") or not callable(value):
                continue
            assert inspect.getdoc(value), f"{name}.{attr}"
