"""Every Python example in the README and in docs/ runs, so none can rot.

The examples are the fenced code blocks of README.md and docs/**/*.md. Each
``python`` block runs in a fresh interpreter, in a temporary directory of its
own, and passes if it exits with status 0 (the examples check themselves with
``assert``). An HTML comment on the line before a block changes that, and is
visible in review next to the block it concerns:

- ``<!-- example: same-dir -->``: runs in the directory of the block before
  it, after it (a file the earlier block made is still there).
- ``<!-- example: background -->``: this block's process stays alive while the
  next block runs, in the same directory (one process creates a named block,
  the other opens it); it ends when that block has finished.
- ``<!-- example: not-run: REASON -->``: not run; the reason is required and
  pytest reports it as a skip (``make test`` shows every one with ``-ra``).

Blocks in other languages (``sh``, ``text``, ``rust``...) are never run and
are reported as skips too; every block must name its language, so none
escapes by omission. Named
blocks that an example creates must be gone when it ends: the test fails if
a name that appears in the block is left in ``/dev/shm``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PYTHON = {"python", "py"}
OTHER = {"sh", "console", "text", "rust", "toml", "json"}
MARKER = re.compile(r"<!--\s*example:\s*(same-dir|background|not-run:\s*(?P<reason>.*?))\s*-->")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+)(?P<info>.*)$")
SHM = Path("/dev/shm")
TIMEOUT = 60


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the block's first code line
    lang: str
    code: str
    marker: str | None  # "same-dir", "background", "not-run" or None
    reason: str | None = None

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def parse(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file. MyST directives (```{name}) are
    not code and are skipped."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m["indent"], m["fence"], m["info"].strip()
        start = i + 1
        i += 1
        while i < len(lines) and lines[i].strip() != fence:
            i += 1
        body = textwrap.dedent("\n".join(lines[start:i])) if indent else "\n".join(lines[start:i])
        i += 1
        if info.startswith("{"):
            continue
        marker = reason = None
        previous = lines[start - 2].strip() if start >= 2 else ""
        mm = MARKER.fullmatch(previous)
        if mm:
            marker = "not-run" if mm["reason"] is not None else mm[1]
            reason = mm["reason"]
        blocks.append(Block(path, start + 1, info.split()[0] if info else "", body, marker, reason))
    return blocks


ALL = [block for path in SOURCES for block in parse(path)]


def test_the_docs_have_examples():
    assert sum(b.lang in PYTHON for b in ALL) >= 20
    assert any(b.path.name == "README.md" and b.lang in PYTHON for b in ALL)


@pytest.mark.parametrize("block", ALL, ids=[b.id for b in ALL])
def test_every_block_names_its_language(block):
    assert block.lang in PYTHON | OTHER, f"{block.id}: fence language {block.lang!r}"
    if block.marker == "not-run":
        assert block.reason, f"{block.id}: not-run needs a reason"
    elif block.marker is not None:
        assert block.lang in PYTHON, f"{block.id}: '{block.marker}' on a {block.lang} block"


def runs() -> list[list[Block]]:
    """The Python blocks grouped into runs: a run is a block with the blocks
    marked same-dir after it, or a background block with the one after it."""
    groups: list[list[Block]] = []
    for block in ALL:
        if block.lang not in PYTHON:
            groups.append([block])  # reported as a skip, with its language
            continue
        joins = block.marker == "same-dir" or (
            groups and groups[-1][-1].marker == "background" and groups[-1][-1].path == block.path
        )
        joins = joins and groups[-1][-1].lang in PYTHON
        if joins and groups and groups[-1][0].path == block.path:
            groups[-1].append(block)
        else:
            groups.append([block])
    return groups


RUNS = runs()


def script(block: Block) -> str:
    # Blank lines in front keep the line numbers of tracebacks those of the file.
    return "\n" * (block.line - 1) + block.code + "\n"


def run_code(block: Block, cwd: Path, background: bool = False):
    code = (
        f"import sys\n"
        f"__file__ = {str(block.path)!r}\n"
        f"exec(compile({script(block)!r}, {block.id.split(':')[0]!r}, 'exec'))\n"
    )
    if background:
        # Tell the runner the block is done, then hold on until it says stop.
        code += "print('\\0example-ready', flush=True)\nsys.stdin.read()\n"
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def block_names(block: Block) -> set[str]:
    """Names a block may create: the string literals it passes as a name."""
    names = set()
    for literal in re.findall(r'"((?:Local|Global)\\\\[^"]+|[^"\\/]+)"', block.code):
        names.add(literal.split("\\\\")[-1])
    return names


def shm_entries() -> set[str]:
    if not SHM.is_dir():
        return set()
    return {p.name[len("mmapfile.") :] for p in SHM.glob("mmapfile.*")}


def finish(proc: subprocess.Popen, block: Block) -> None:
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, f"{block.id} failed ({proc.returncode}):\n{out}{err}"


@pytest.mark.skipif(
    sys.platform != "linux", reason="the docs describe and run their examples on Linux"
)
@pytest.mark.parametrize("group", RUNS, ids=[g[0].id for g in RUNS])
def test_example_runs(group, tmp_path):
    if group[0].marker == "not-run":
        pytest.skip(f"{group[0].id}: not run: {group[0].reason}")
    if group[0].lang not in PYTHON:
        pytest.skip(f"{group[0].id}: not run: a {group[0].lang} block")
    names = set().union(*(block_names(b) for b in group))
    before = shm_entries()
    cwd = tmp_path
    background = None
    try:
        for block in group:
            if block.marker == "not-run":
                pytest.fail(f"{block.id}: a not-run block cannot continue a run")
            if block.marker == "background":
                background = (run_code(block, cwd, background=True), block)
                line = background[0].stdout.readline()
                if "example-ready" not in line:
                    finish(*background)
                    pytest.fail(f"{block.id} ended before it was ready: {line}")
                continue
            finish(run_code(block, cwd), block)
        if background is not None:
            finish(*background)  # closes its stdin: it ends
            background = None
    finally:
        if background is not None:
            background[0].kill()
            background[0].communicate()
    left = (shm_entries() - before) & names
    assert not left, f"{group[0].id} left named blocks behind: {sorted(left)}"
