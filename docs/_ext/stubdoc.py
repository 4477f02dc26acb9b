"""Sphinx extension: the API reference takes its text from ``_mmapfile.pyi``.

The compiled module ``mmapfile._mmapfile`` carries bare signatures and no
docstrings; its documentation is the stub ``_mmapfile.pyi`` beside it, which
``mypy.stubtest`` checks against the built module in ``make test``. So autodoc
imports the real module (the names documented are the ones the runtime has)
and this extension hands each object the docstring and the typed signature
that the stub gives it:

- ``autodoc-process-docstring``: the stub's docstring replaces the runtime's;
  a class also gets its ``__new__`` docstring, and the attributes the stub
  declares but that exist only on instances (``error.funcname``).
- ``autodoc-process-signature``: the stub's parameters and return type.
- ``stubdoc-class`` and ``stubdoc-constants`` directives: the members and
  constants the stub documents, in its order (autodoc would sort a compiled
  class's members by name: it has no source to take the order from).

A public object that the stub does not document is a warning, which
``make docs`` (``-W``) turns into an error: the reference cannot go out of
date silently.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docstrings import prepare_docstring
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

# The documented names start with the public package; the stub's names are
# relative to the compiled module it describes.
PACKAGE = "mmapfile."


@dataclass
class Entry:
    doc: str | None
    params: str | None = None  # "(n: int | None = None)", without self/cls
    returns: str | None = None
    type: str | None = None  # of an attribute or property


def _flatten(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements of a body with ``if`` blocks opened: the stub declares the
    per-OS and per-version names under ``if sys.platform ...``, and the
    reference documents all of them (each docstring says where it applies)."""
    out: list[ast.stmt] = []
    for node in body:
        if isinstance(node, ast.If):
            out += _flatten(node.body) + _flatten(node.orelse)
        else:
            out.append(node)
    return out


def _signature(fn: ast.FunctionDef, method: bool) -> tuple[str, str | None]:
    args = fn.args
    if method and not any(
        isinstance(d, ast.Name) and d.id == "staticmethod" for d in fn.decorator_list
    ):
        args = ast.arguments(
            posonlyargs=args.posonlyargs[1:],
            args=args.args[1:] if not args.posonlyargs else args.args,
            vararg=args.vararg,
            kwonlyargs=args.kwonlyargs,
            kw_defaults=args.kw_defaults,
            kwarg=args.kwarg,
            defaults=args.defaults,
        )
    returns = ast.unparse(fn.returns) if fn.returns is not None else None
    return f"({ast.unparse(args)})", returns


def parse_stub(path: Path) -> dict[str, Entry]:
    """Maps each name in the stub ("mmapfile.read", "PAGESIZE") to its entry."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    entries: dict[str, Entry] = {}

    def visit(body: list[ast.stmt], prefix: str, in_class: bool) -> None:
        nodes = _flatten(body)
        for i, node in enumerate(nodes):
            if isinstance(node, ast.ClassDef):
                entries[prefix + node.name] = Entry(ast.get_docstring(node))
                visit(node.body, f"{prefix}{node.name}.", True)
            elif isinstance(node, ast.FunctionDef):
                params, returns = _signature(node, in_class)
                is_property = any(
                    isinstance(d, ast.Name) and d.id == "property" for d in node.decorator_list
                )
                if is_property:
                    entries[prefix + node.name] = Entry(ast.get_docstring(node), type=returns)
                else:
                    entries[prefix + node.name] = Entry(ast.get_docstring(node), params, returns)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                # An attribute's docstring is the string statement after it.
                following = nodes[i + 1] if i + 1 < len(nodes) else None
                doc = None
                if (
                    isinstance(following, ast.Expr)
                    and isinstance(following.value, ast.Constant)
                    and isinstance(following.value.value, str)
                ):
                    doc = following.value.value
                entries[prefix + node.target.id] = Entry(doc, type=ast.unparse(node.annotation))

    visit(tree.body, "", False)
    return entries


def _stub_key(name: str) -> str | None:
    return name[len(PACKAGE) :] if name.startswith(PACKAGE) else None


def _indent(lines: list[str], by: str = "   ") -> list[str]:
    return [by + line if line else "" for line in lines]


class StubDocs:
    def __init__(self, stub: Path) -> None:
        self.entries = parse_stub(stub)

    def docstring(
        self, app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
    ) -> None:
        if what == "module":
            return
        key = _stub_key(name)
        entry = self.entries.get(key) if key else None
        if entry is None or entry.doc is None:
            logger.warning("stubdoc: the stub gives no docstring for %s", name, type="stubdoc")
            return
        new = prepare_docstring(entry.doc)
        if what in ("class", "exception"):
            init = self.entries.get(f"{key}.__new__")
            if init is not None and init.doc:
                new += prepare_docstring(init.doc)
            # Attributes that the stub declares on the class but that the
            # runtime sets on each instance: autodoc cannot find them.
            for stub_name, attr in self.entries.items():
                owner, _, attr_name = stub_name.rpartition(".")
                if owner != key or attr.type is None or hasattr(obj, attr_name):
                    continue
                new += [f".. attribute:: {attr_name}", f"   :type: {attr.type}", ""]
                new += _indent(prepare_docstring(attr.doc or ""))
        lines[:] = new

    def signature(
        self,
        app: Sphinx,
        what: str,
        name: str,
        obj: Any,
        options: Any,
        signature: str | None,
        return_annotation: str | None,
    ) -> tuple[str, str | None] | None:
        key = _stub_key(name)
        if key is None:
            return None
        if what in ("class", "exception"):
            entry = self.entries.get(f"{key}.__new__") or self.entries.get(f"{key}.__init__")
            if entry is None:
                return None  # the runtime's (MapLock cannot be made directly)
            return (entry.params or "", None)
        entry = self.entries.get(key)
        if entry is None or entry.params is None:
            return None
        return (entry.params, entry.returns)


class ConstantsDirective(SphinxDirective):
    """``.. stubdoc-constants::``: every constant the module exports, in the
    stub's order, each through autodoc (so with the stub's docstring)."""

    def run(self) -> list[nodes.Node]:
        import mmapfile

        public = set(mmapfile.__all__)
        stub: StubDocs = self.env.app.stubdoc  # type: ignore[attr-defined]
        names = [
            key for key in stub.entries if key in public and not callable(getattr(mmapfile, key))
        ]
        lines: list[str] = []
        for name in names:
            lines += [f".. autodata:: {PACKAGE}{name}", "   :no-value:", ""]
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source="stubdoc"), self.content_offset, container)
        return container.children


class ClassDirective(SphinxDirective):
    """``.. stubdoc-class:: NAME``: autodoc of ``mmapfile.NAME`` and of each of
    its members that the stub documents, in the stub's order. A public
    runtime member that the stub lacks is a warning."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        import mmapfile

        name = self.arguments[0]
        cls = getattr(mmapfile, name)
        stub: StubDocs = self.env.app.stubdoc  # type: ignore[attr-defined]
        prefix = name + "."
        members = [
            key[len(prefix) :]
            for key in stub.entries
            if key.startswith(prefix)
            and key.count(".") == 1
            and key[len(prefix) :] not in ("__new__", "__init__")
            and key[len(prefix) :] in vars(cls)
        ]
        base_names = {n for base in cls.__mro__[1:] for n in vars(base)}
        for member in sorted(vars(cls)):
            if not member.startswith("_") and member not in members and member not in base_names:
                logger.warning(
                    "stubdoc: %s%s.%s has no entry in the stub",
                    PACKAGE,
                    name,
                    member,
                    location=self.get_location(),
                )
        kind = "autoexception" if issubclass(cls, BaseException) else "autoclass"
        lines = [f".. {kind}:: {PACKAGE}{name}", ""]
        # One directive per member, in the stub's order: autodoc would sort
        # a compiled class's members alphabetically (it has no source order).
        for member in members:
            entry = stub.entries[f"{name}.{member}"]
            if callable(getattr(cls, member)):
                lines += [f"   .. automethod:: {PACKAGE}{name}.{member}", ""]
            else:
                if not entry.doc:
                    logger.warning("stubdoc: the stub gives no docstring for %s", member)
                # A compiled property has no annotation for autodoc to read:
                # written out here, with the stub's type and docstring.
                lines += [f"   .. py:property:: {member}", f"      :type: {entry.type}", ""]
                lines += _indent(prepare_docstring(entry.doc or ""), "      ") + [""]
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source="stubdoc"), self.content_offset, container)
        return container.children


def check_complete(app: Sphinx, env: Any) -> None:
    """Warns about any name of ``mmapfile.__all__`` the reference lacks."""
    import mmapfile

    documented = env.domains["py"].objects
    for name in mmapfile.__all__:
        if PACKAGE + name not in documented:
            logger.warning("stubdoc: mmapfile.%s is not in the API reference", name)


def setup(app: Sphinx) -> dict[str, Any]:
    import mmapfile._mmapfile as compiled

    stub = Path(compiled.__file__).with_name("_mmapfile.pyi")
    if not stub.exists():
        # An installed wheel may leave the stub out; the source tree has it.
        stub = Path(__file__).resolve().parents[2] / "python" / "mmapfile" / "_mmapfile.pyi"
    docs = StubDocs(stub)
    app.stubdoc = docs  # type: ignore[attr-defined]
    app.add_directive("stubdoc-constants", ConstantsDirective)
    app.add_directive("stubdoc-class", ClassDirective)
    app.connect("env-check-consistency", check_complete)
    app.connect("autodoc-process-docstring", docs.docstring)
    app.connect("autodoc-process-signature", docs.signature)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
