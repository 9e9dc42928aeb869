"""The scripts in examples/ import nothing that ``anyiotls[cli,examples]`` lacks.

A newcomer installs ``pip install 'anyiotls[cli,examples]'`` (docs say so) and runs
any example; an import of an undeclared package would end in ModuleNotFoundError.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def _declared() -> set[str]:
    """Top-level module names of anyiotls's dependencies plus its two extras."""
    # (a regex, not tomllib: that is 3.11+, and the lists are one string a line)
    text = (ROOT / "pyproject.toml").read_text()
    requirements = []
    for key in ("dependencies", "cli", "examples"):
        found = re.search(rf"^{key} = \[(.*?)\]$", text, re.M | re.S)
        assert found, f"no {key} list in pyproject.toml"
        requirements += re.findall(r'"([^"]+)"', found.group(1))
    names = {re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0] for req in requirements}
    return {name.lower().replace("-", "_") for name in names} | {"anyiotls"}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_example_imports_only_declared_packages(example: Path) -> None:
    third_party = _imports(example) - set(sys.stdlib_module_names) - {"__future__"}
    missing = third_party - _declared()
    assert not missing, (
        f"{example.name} imports {sorted(missing)}: add them to the 'examples' "
        "extra in pyproject.toml"
    )
