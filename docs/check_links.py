"""Fails if a page of the built site links to a page, file or anchor that is
not there: every relative ``href`` and ``src`` of every HTML page, and the
``#fragment`` of each, against the ids of the page it points to.

    python docs/check_links.py target/docs/html

Links to other sites are not followed (the build has no network). The Rust
API docs copied in under ``rust/`` are rustdoc's own output: links into them
are checked, links inside them are rustdoc's business.
"""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

SKIP_INSIDE = ("rust/",)


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if value is None:
                continue
            if key in ("id", "name") and tag != "meta":
                self.ids.add(value)
            elif key in ("href", "src") and tag != "base":
                self.links.append(value)


def parse(path: Path, cache: dict[Path, Page]) -> Page:
    if path not in cache:
        page = Page()
        page.feed(path.read_text(encoding="utf-8", errors="replace"))
        cache[path] = page
    return cache[path]


def check(root: Path) -> list[str]:
    root = root.resolve()
    cache: dict[Path, Page] = {}
    problems = []
    pages = [
        p
        for p in sorted(root.rglob("*.html"))
        if not p.relative_to(root).as_posix().startswith(SKIP_INSIDE)
    ]
    if not pages:
        return [f"no HTML pages under {root}"]
    for page_path in pages:
        where = page_path.relative_to(root).as_posix()
        for link in parse(page_path, cache).links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith("//"):
                continue  # another site
            target = page_path
            if parts.path:
                target = (page_path.parent / unquote(parts.path)).resolve()
                if target.is_dir():
                    target = target / "index.html"
                if not target.is_relative_to(root) or not target.exists():
                    problems.append(f"{where}: {link}: no such file")
                    continue
            fragment = unquote(parts.fragment)
            if fragment and target.suffix == ".html":
                if fragment not in parse(target, cache).ids:
                    problems.append(f"{where}: {link}: no anchor #{fragment}")
    return problems


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "target/docs/html")
    problems = check(root)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} broken internal link(s)", file=sys.stderr)
        return 1
    print(f"internal links ok under {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
