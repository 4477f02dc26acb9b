"""Large reads with and without huge pages, with memory free or fragmented
(Linux; docs/performance.md, "Large reads and huge pages").

    python benches/fragmented_reads.py [GIB]

Without GIB it times ``read(64 MiB)`` with huge pages (the default) and with
``MMAPFILE_HUGEPAGES=0``. With GIB, a child process first takes GIB GiB of
small pages and frees every other 4 KiB page of them, so that free memory is
mostly single pages, and holds that while the reads run. Leave the machine a
GiB or two: the child takes what it asks for. Prints the read times and what
/proc/vmstat counted meanwhile (huge-page faults, fallbacks, compaction).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import subprocess
import sys
import tempfile
import time

SIZE = 64 << 20
ROUNDS = 20
MADV_DONTNEED = 4
MADV_NOHUGEPAGE = 15
COUNTERS = ("thp_fault_alloc", "thp_fault_fallback", "compact_stall", "compact_success")


def fragment(gib: int) -> None:
    """Takes ``gib`` GiB in small pages, frees every other page, then waits
    for stdin to close."""
    n = gib << 30
    libc = ctypes.CDLL(None, use_errno=True)
    m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    base = ctypes.addressof(ctypes.c_char.from_buffer(m))
    libc.madvise(ctypes.c_void_p(base), ctypes.c_size_t(n), MADV_NOHUGEPAGE)
    for off in range(0, n, 4096):
        m[off] = 1
    for off in range(0, n, 8192):
        libc.madvise(ctypes.c_void_p(base + off), ctypes.c_size_t(4096), MADV_DONTNEED)
    print("fragmented", flush=True)
    sys.stdin.read()


def vmstat() -> dict[str, int]:
    with open("/proc/vmstat") as f:
        pairs = (line.split() for line in f)
        return {k: int(v) for k, v in pairs if k in COUNTERS}


def reads(path: str, huge: bool) -> str:
    """Times ROUNDS reads of the file in a fresh process."""
    code = f"""
import statistics, time, mmapfile
m = mmapfile.mmapfile({path!r}, None, 0)
times = []
for _ in range({ROUNDS}):
    m.seek(0)
    t = time.perf_counter()
    m.read()
    times.append((time.perf_counter() - t) * 1000)
times.sort()
print("p50 %.0f ms, p95 %.0f, max %.0f" % (statistics.median(times), times[-2], times[-1]))
"""
    env = dict(os.environ)
    if not huge:
        env["MMAPFILE_HUGEPAGES"] = "0"
    before = vmstat()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    after = vmstat()
    counts = ", ".join(f"{k} {after[k] - before[k]}" for k in COUNTERS)
    return f"{out.stdout.strip() or out.stderr.strip()}  ({counts})"


def main() -> None:
    if sys.argv[1:2] == ["--fragment"]:
        fragment(int(sys.argv[2]))
        return
    holder = None
    if len(sys.argv) > 1:
        holder = subprocess.Popen(
            [sys.executable, __file__, "--fragment", sys.argv[1]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        started = time.monotonic()
        assert holder.stdout.readline().strip() == "fragmented"
        took = time.monotonic() - started
        print(f"# {sys.argv[1]} GiB taken, every other page freed ({took:.0f} s)")
    with open("/proc/buddyinfo") as f:
        print("# /proc/buddyinfo (free blocks of 4 KiB << order):\n#", "# ".join(f))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "f")
        with open(path, "wb") as f:
            f.write(os.urandom(SIZE))
        for _ in range(2):
            print("huge pages:           ", reads(path, True))
            print("MMAPFILE_HUGEPAGES=0: ", reads(path, False))
    if holder is not None:
        holder.stdin.close()
        holder.wait()


if __name__ == "__main__":
    main()
