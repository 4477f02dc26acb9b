"""Sphinx configuration of the mmapfile documentation (``make docs``)."""

import builtins
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

import mmapfile  # noqa: E402  (the built module: `make docs` builds it first)

project = "mmapfile"
release = version = mmapfile.__version__
copyright = "the mmapfile authors"

extensions = [
    "myst_parser",  # the pages are Markdown, like the README
    "sphinx.ext.autodoc",  # the API reference, from the module ...
    "stubdoc",  # ... with the text of its stub (_ext/stubdoc.py)
    "sphinxarg.ext",  # the CLI reference, from the argparse parser
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "requirements.txt"]
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]

html_theme = "furo"
html_title = f"mmapfile {release}"
html_static_path: list[str] = []
# The Rust crate's API docs (cargo doc), copied in by `make docs` when built.
_rust_docs = Path(__file__).parents[1] / "target" / "docs-rust"
html_extra_path = [str(_rust_docs)] if _rust_docs.exists() else []
html_show_sourcelink = False

autodoc_member_order = "bysource"

# Every cross-reference must resolve (-n), except to Python's own objects:
# there is no network to fetch Python's inventory from, so they stay text.
nitpicky = True
nitpick_ignore = [
    (role, name)
    for name in dir(builtins)
    for role in ("py:class", "py:exc", "py:obj", "py:func", "py:data")
]
nitpick_ignore_regex = [
    (r"py:.*", r"(mmap|os|typing|typing_extensions|types|collections\.abc)(\..*)?"),
    (r"py:.*", r"(Buffer|Self|TracebackType|Any)"),
]
default_role = "literal"  # `x` in argparse help and docstrings is code
