"""Sphinx configuration: Markdown pages (MyST), the furo theme, API from docstrings.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (what
``nox -s docs`` runs). Nothing is fetched from the network: no intersphinx, so
references to Python, AnyIO and Trio render as plain text instead of links.
"""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Document the source tree itself, installed or not.
sys.path.insert(0, str(ROOT / "src"))
# Local extensions (api_coverage: every public name is in the API reference).
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

project = "anyiotls"
author = "the anyiotls authors"
copyright = "the anyiotls authors"
try:
    release = importlib.metadata.version("anyiotls")
except importlib.metadata.PackageNotFoundError:
    release = "unreleased"
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "api_coverage",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "_ext", "requirements.txt"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}

# References to the standard library, AnyIO and Trio cannot be resolved offline;
# they render as text. Everything else must resolve (-W turns warnings into errors).
nitpicky = False

html_theme = "furo"
html_title = f"anyiotls {release}"
html_static_path = ["_static"]
html_css_files = ["anyiotls.css"]
