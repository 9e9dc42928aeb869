"""Sphinx extension: every public name must be in the API reference.

At the end of reading the sources, each name of ``__all__`` of the modules in
:data:`PUBLIC_MODULES`, and each member of every attribute set among them (a
subclass of ``anyio.TypedAttributeSet``), must be a documented Python object;
each missing one is a warning, so ``sphinx-build -W`` fails. The same rule is
checked without Sphinx by ``tests/test_api_reference.py`` (see :func:`expected`).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

#: The modules whose ``__all__`` is the public API.
PUBLIC_MODULES = ("anyiotls", "anyiotls.trio", "anyiotls.starttls")


def expected() -> list[str]:
    """The dotted names the reference must document, in ``__all__`` order."""
    from anyio import TypedAttributeSet

    names = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            names.append(f"{module_name}.{name}")
            obj = getattr(module, name)
            if inspect.isclass(obj) and issubclass(obj, TypedAttributeSet):
                names += [
                    f"{module_name}.{name}.{member}"
                    for member in inspect.get_annotations(obj)
                ]
    return names


def _check(app: Any, env: Any) -> None:
    from sphinx.util import logging

    logger = logging.getLogger(__name__)
    documented = set(env.get_domain("py").objects)
    for name in expected():
        if name not in documented:
            logger.warning(
                "%s is public but not in the API reference (docs/api.rst)", name
            )


def setup(app: Any) -> dict[str, Any]:
    app.connect("env-check-consistency", _check)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
