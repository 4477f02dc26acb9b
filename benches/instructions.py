"""Instructions per call of the per-call operations, ours and CPython mmap's,
counted by valgrind (callgrind). Unlike timings these counts do not move
with the machine's load, so they show where a per-call difference is and
whether a change moved it.

Each statement runs in a loop twice, with 5 and with 15 copies per
iteration; the difference of the two totals divided by the extra calls is
the cost of one call, with start-up and the loop itself cancelled out.

Usage: python benches/instructions.py [statement ...]
(needs valgrind; imports the installed module; takes about 20 s a row)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile

LOOPS = 2000
STATEMENTS = [
    "m.read_byte()",
    "m.read(16)",
    "m.write(b'0123456789abcdef')",
    "m.write_byte(65)",
    "m.tell()",
    "m.seek(100)",
    "m.readline()",
    "m[1000]",
    "m[1000:1016]",
    "m[1000] = 65",
    "m[1000:1016] = b'0123456789abcdef'",
    "m.size()",
]

# Run under valgrind: maps a file of 80-byte lines with one side, then runs
# the statement `copies` times per iteration (after a seek to 0).
CHILD = """
import mmap, sys
import mmapfile
side, path, stmt, copies, loops = sys.argv[1:6]
if side == "ours":
    m = mmapfile.mmapfile(path, None)
else:
    f = open(path, "r+b")
    m = mmap.mmap(f.fileno(), 0)
body = "".join(f"        {stmt}\\n" for _ in range(int(copies)))
src = f"def run(m):\\n    for _ in range({loops}):\\n        m.seek(0)\\n{body}"
ns = {}
exec(src, ns)
ns["run"](m)
"""


def total(side: str, path: str, stmt: str, copies: int) -> int:
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-c",
            CHILD,
            side,
            path,
            stmt,
            str(copies),
            str(LOOPS),
        ],
        capture_output=True,
        text=True,
        check=True,
        # A fixed hash seed: dict lookups then take the same paths every run.
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    found = re.search(r"Collected : (\d+)", out.stderr)
    if not found:
        raise RuntimeError(f"no instruction count from callgrind:\n{out.stderr}")
    return int(found.group(1))


def per_call(side: str, path: str, stmt: str) -> float:
    return (total(side, path, stmt, 15) - total(side, path, stmt, 5)) / (10 * LOOPS)


def main() -> None:
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is needed (apt-get install valgrind)")
    statements = sys.argv[1:] or STATEMENTS
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "lines.bin")
        with open(path, "wb") as f:
            f.write((b"x" * 79 + b"\n") * (1 << 14))
        print(f"| {'statement':40} | {'ours':>6} | {'mmap':>6} | {'ours - mmap':>11} |")
        print(f"|{'-' * 42}|{'-' * 7}:|{'-' * 7}:|{'-' * 12}:|")
        for stmt in statements:
            ours = per_call("ours", path, stmt)
            theirs = per_call("theirs", path, stmt)
            name = f"`{stmt}`"
            print(f"| {name:40} | {ours:6.0f} | {theirs:6.0f} | {ours - theirs:+11.0f} |")


if __name__ == "__main__":
    main()
