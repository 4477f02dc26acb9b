"""On Windows, an access to a view whose bytes cannot be brought in (the
file shrank from outside, its storage failed or went away) raises OSError
with the Windows error of the exception, as CPython 3.13's mmap does,
instead of killing the process; the view stays usable.

Windows itself refuses to shrink a mapped file, but under Wine a file on the
Linux side (drive Z:) can be cut by a Linux program while it is mapped, and
Wine raises the exception a failing disk would. So the suite runs this under
Wine (`make test-windows`); elsewhere it is skipped. Everything runs in one
child process: if the guard failed, the child would die, and each test would
fail saying so instead of taking pytest down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

LINUX_TRUNCATE = r"Z:\usr\bin\truncate"

pytestmark = pytest.mark.skipif(
    sys.platform != "win32" or not os.path.exists(LINUX_TRUNCATE),
    reason="needs Windows under Wine, with the Linux file system as drive Z:",
)

# Maps a 1 MiB file of b"A" on the Linux side, cuts it to one page with the
# Linux `truncate` (through Wine's `start /unix`, which waits), then makes
# each access past that page and records what it raised. CPython's mmap gets
# the same treatment, for the error it reports.
CHILD = r"""
import json, mmap, os, subprocess, sys, tempfile
import mmapfile

page = mmapfile.PAGESIZE
size = 1 << 20
here = tempfile.mkdtemp(dir="Z:\\tmp")

def shrink(path):
    unix = path[2:].replace("\\", "/")
    subprocess.run(
        ["cmd", "/c", "start", "/wait", "/unix", "/usr/bin/truncate", "-s", str(page), unix],
        check=True, stdin=subprocess.DEVNULL, capture_output=True,
    )
    assert os.path.getsize(path) == page, os.path.getsize(path)

def new_file(name):
    path = os.path.join(here, name)
    with open(path, "wb") as f:
        f.write(b"A" * size)
    return path

def outcome(call):
    try:
        value = call()
    except BaseException as e:
        return {"raised": type(e).__name__, "oserror": isinstance(e, OSError),
                "winerror": getattr(e, "winerror", None), "message": str(e)}
    return {"returned": repr(value)[:80]}

results = {}

# CPython's mmap, for comparison.
path = new_file("cpython.bin")
with open(path, "r+b") as f:
    cm = mmap.mmap(f.fileno(), 0)
shrink(path)
results["cpython slice"] = outcome(lambda: cm[2 * page : 2 * page + 16])
cm.close()

path = new_file("ours.bin")
m = mmapfile.mmapfile(path, None)
shrink(path)
far = 2 * page

def at(pos, call):
    m.seek(pos)
    return call()

buf = bytearray(64)
accesses = {
    "slice": lambda: m[far : far + 16],
    "long slice": lambda: m[0 : 256 * 1024],
    "strided slice": lambda: m[far : far + 64 : 2],
    "item": lambda: m[far],
    "read": lambda: at(far, lambda: m.read(16)),
    "read all": lambda: at(0, lambda: m.read()),
    "read_byte": lambda: at(far, m.read_byte),
    "readline": lambda: at(far, m.readline),
    "readline from the first page": lambda: at(page - 8, m.readline),
    "readinto": lambda: at(far, lambda: m.readinto(buf)),
    "find": lambda: m.find(b"B"),
    "find a long needle": lambda: m.find(b"needle-0123456789"),
    "rfind": lambda: m.rfind(b"B"),
    "in": lambda: b"BB" in m,
    "write": lambda: at(far, lambda: m.write(b"x" * 16)),
    "write a large block": lambda: at(far, lambda: m.write(b"x" * (256 * 1024))),
    "write_byte": lambda: at(far, lambda: m.write_byte(b"x")),
    "item assignment": lambda: m.__setitem__(far, 120),
    "slice assignment": lambda: m.__setitem__(slice(far, far + 3), b"xyz"),
    "strided slice assignment": lambda: m.__setitem__(slice(far, far + 6, 2), b"xyz"),
    "move from the lost pages": lambda: m.move(0, far, 16),
    "move into the lost pages": lambda: m.move(far, 0, 16),
}
for name, call in accesses.items():
    results[name] = outcome(call)
results["flush"] = outcome(m.flush)
# The first page is still there, as it was, and takes writes.
results["first page"] = outcome(lambda: m[0:page] == b"A" * page)
results["first page, read"] = outcome(lambda: at(0, lambda: m.read(page)) == b"A" * page)
def rewrite():
    m[0:page] = b"y" * page
    return m[0:page] == b"y" * page and m.find(b"y", 0) == 0 and m[page - 1] == ord("y")
results["first page, written"] = outcome(rewrite)
results["size"] = outcome(m.size)
m.close()
print(json.dumps(results))
"""

ACCESSES = [
    "slice",
    "long slice",
    "strided slice",
    "item",
    "read",
    "read all",
    "read_byte",
    "readline",
    "readline from the first page",
    "readinto",
    "find",
    "find a long needle",
    "rfind",
    "in",
    "write",
    "write a large block",
    "write_byte",
    "item assignment",
    "slice assignment",
    "strided slice assignment",
    "move from the lost pages",
    "move into the lost pages",
]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    # The child's output goes to a file, not a pipe: if the guard failed,
    # Wine's crash handler would keep an inherited pipe open and the wait
    # for its end would never return.
    out = tmp_path_factory.mktemp("faults") / "out.txt"
    with open(out, "w") as f:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD],
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
            timeout=300,
        )
    text = out.read_text()
    assert proc.returncode == 0, f"child exit code {proc.returncode}\n{text}"
    return json.loads(text.strip().splitlines()[-1])


def test_cpython_mmap_raises_oserror_for_the_same_fault(results):
    # The reference this module's errors are held to.
    assert results["cpython slice"]["oserror"], results["cpython slice"]


@pytest.mark.parametrize("access", ACCESSES)
def test_access_to_a_lost_page_raises_oserror_and_the_process_lives(results, access):
    got = results[access]
    assert got.get("oserror"), got
    # The Windows error of the exception, as CPython's mmap reports it.
    assert got["winerror"] == results["cpython slice"]["winerror"], got
    assert "could not be" in got["message"], got


def test_first_page_reads_back_after_the_faults(results):
    assert results["first page"] == {"returned": "True"}, results["first page"]
    assert results["first page, read"] == {"returned": "True"}, results["first page, read"]
    assert results["first page, written"] == {"returned": "True"}, results["first page, written"]
    assert results["size"] == {"returned": str(1 << 20)}, results["size"]


def test_flush_after_the_faults_does_not_kill_the_process(results):
    # FlushViewOfFile reports its own errors; whatever it says, it is an
    # answer, not a crash.
    got = results["flush"]
    assert "returned" in got or got.get("oserror"), got
