"""Thousands of open/close cycles leave the number of open descriptors, mapped
regions and /dev/shm entries where they started. Each kind runs in a child
process, so that counts are not disturbed by the test runner and a crash
fails the test."""

import json
import os
import sys

import pytest
from _child import assert_child_ok

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="counts /proc/self and /dev/shm"
)

CYCLES = int(os.environ.get("MMAPFILE_LEAK_CYCLES", "3000"))

COUNTERS = """
import gc, json, os, re, tempfile, mmapfile
page = mmapfile.PAGESIZE

def own_blocks():
    # Only the names this process uses (below, each with its pid): other
    # processes on the machine make and remove blocks meanwhile.
    pid = os.getpid()
    own = re.compile(
        f"mmapfile[.](leak|fail|absent)-{pid}(-[0-9]+)?|mmapfile-anon[.]{pid}[.][0-9]+"
    )
    found = [e for e in os.listdir("/dev/shm") if own.fullmatch(e)]
    # The portable backend: record files (and drafts, and records moved
    # aside) in its state directory, and objects of random names.
    # Only for that backend: with the Linux one this process makes none of
    # them, and other processes' runs of the portable tests come and go.
    state = "/var/tmp/mmapfile"
    if mmapfile._mmapfile._backend.startswith("portable") and os.path.isdir(state):
        mine = re.compile(f"(leak|fail|absent)-{pid}(-[0-9]+)?|[.].*")
        found += [e for e in os.listdir(state) if mine.fullmatch(e)]
        found += [e for e in os.listdir("/dev/shm") if e.startswith("mmapfile=")]
    return found

def counts():
    gc.collect()
    with open("/proc/self/maps") as f:
        maps = sum(1 for _ in f)
    return {
        "fds": len(os.listdir("/proc/self/fd")),
        "maps": maps,
        "shm": len(own_blocks()),
    }

def measure(cycle, n):
    for i in range(20):  # warm up: first-use allocations are not leaks
        cycle(i)
    before = counts()
    for i in range(n):
        cycle(i)
    after = counts()
    print(json.dumps({"before": before, "after": after}))

tmpdir = tempfile.mkdtemp()
"""

CYCLE_BODIES = {
    "file": """
def cycle(i):
    path = os.path.join(tmpdir, "f")
    m = mmapfile.mmapfile(path, None, 3 * page, page + 7)
    m.write(b"abc")
    m.resize(4 * page)
    m.flush()
    m.close()
""",
    "file_dropped_without_close": """
def cycle(i):
    m = mmapfile.mmapfile(os.path.join(tmpdir, "f"), None, 2 * page)
    m.write(b"abc")
    del m
""",
    "named": """
def cycle(i):
    name = f"leak-{os.getpid()}-{i % 7}"
    m = mmapfile.mmapfile(None, name, 2 * page)
    m2 = mmapfile.mmapfile(None, name, 0)
    m2.write(b"xyz")
    # A new window (a named block cannot grow).
    m.resize(2 * page, page, page)
    m2.close()
    m.close()
    # No unlink here: the last close must remove the block itself, which the
    # /dev/shm count before and after checks.
""",
    "unnamed": """
def cycle(i):
    m = mmapfile.mmapfile(None, None, 5 * page)
    m.write(b"abc")
    m.resize(6 * page, page, page)
    m.close()
""",
    "failed_opens": """
def cycle(i):
    for args in [
        (os.path.join(tmpdir, "f"), None, page, 10 * page),      # offset past the end
        (None, f"fail-{os.getpid()}", page, 2 * page),           # offset past the end
        (None, f"absent-{os.getpid()}", 0),                      # no such block
        (os.path.join(tmpdir, "missing", "f"), None, page),      # no such directory
        (None, None, 0),                                         # unnamed, size 0
    ]:
        try:
            mmapfile.mmapfile(*args)
        except (ValueError, OSError):
            pass
        else:
            raise AssertionError(f"{args} opened")
""",
    "truncated_then_closed": """
def cycle(i):
    path = os.path.join(tmpdir, "t")
    with open(path, "wb") as f:
        f.truncate(2 * page)
    m = mmapfile.mmapfile(path, None)
    os.truncate(path, 0)
    try:
        m.read()
    except mmapfile.error:
        pass
    m.close()
""",
}


@pytest.mark.parametrize("kind", sorted(CYCLE_BODIES))
def test_open_close_cycles_leave_no_descriptors_mappings_or_blocks(kind):
    n = CYCLES // 3 if kind in ("failed_opens", "truncated_then_closed") else CYCLES
    body = CYCLE_BODIES[kind]
    out = assert_child_ok(COUNTERS + body + f"\nmeasure(cycle, {n})\n", timeout=600)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["after"] == result["before"], result
