"""Large reads with and without huge pages for the result (Linux).

Runs each measurement in a child process twice: with the advice (the
default) and with MMAPFILE_HUGEPAGES=0, and prints both:

- speed of read(n) for n from 1 to 64 MiB, in a loop that drops each result
  (the allocator reuses the memory) and keeping every result of a round (so
  that each one gets fresh memory);
- the cost side: resident memory, huge pages and number of mappings after
  many mid-size reads, and the spread of read(64 MiB)'s latency, with the
  kernel's counters of huge page faults, fallbacks and compaction stalls;
- readinto(64 MiB), which the advice must not touch.

Speeds are in the reading thread's CPU time (user and system), which other
processes' load does not inflate as it does wall-clock time; the latencies
are wall-clock.

Usage: python benches/large_reads.py [speed|cost|readinto ...]
(imports the installed module; builds nothing; docs/performance.md)
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MiB = 1 << 20
FILE_SIZE = 256 * MiB
ROUNDS = 7


def vmstat(*keys):
    values = dict(line.split() for line in Path("/proc/vmstat").read_text().splitlines())
    return {k: int(values.get(k, 0)) for k in keys}


def rollup():
    fields = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        fields[key] = int(value.split()[0])
    return fields


def child(kind, path):
    """One measurement, in this (child) process; prints JSON."""
    import mmapfile

    m = mmapfile.mmapfile(path, None, access=mmapfile.ACCESS_READ)
    out = {}
    if kind == "speed":
        for size in (1, 2, 3, 4, 6, 8, 16, 32, 64):
            n = size * MiB
            count = max(1, (128 * MiB) // n)
            for regime in ("loop", "fresh"):
                best = float("inf")
                for _ in range(ROUNDS):
                    kept = []
                    t0 = time.thread_time()
                    for i in range(count):
                        m.seek((i * n) % (FILE_SIZE - n + 1))
                        b = m.read(n)
                        if regime == "fresh":
                            kept.append(b)
                    best = min(best, (time.thread_time() - t0) / count)
                    del kept, b
                out[f"{regime} {size} MiB"] = n / best / 1e9
    elif kind == "cost":
        rng = random.Random(7)
        before = vmstat("thp_fault_alloc", "thp_fault_fallback", "compact_stall")
        window = []
        t0 = time.perf_counter()
        reads = 2000
        for _ in range(reads):
            n = rng.randrange(1 * MiB, 32 * MiB)
            start = rng.randrange(0, FILE_SIZE - n)
            window.append(m[start : start + n])
            if len(window) > 4:
                window.pop(0)
        out["mid-size reads: seconds"] = time.perf_counter() - t0
        r = rollup()
        out["after: Rss kB"] = r["Rss"]
        out["after: AnonHugePages kB"] = r["AnonHugePages"]
        out["after: mappings"] = len(Path("/proc/self/maps").read_text().splitlines())
        window.clear()
        r = rollup()
        out["results freed: Rss kB"] = r["Rss"]
        out["results freed: AnonHugePages kB"] = r["AnonHugePages"]
        lat = []
        for _ in range(60):
            m.seek(0)
            t = time.perf_counter()
            m.read(64 * MiB)
            lat.append((time.perf_counter() - t) * 1e3)
        lat.sort()
        out["read(64 MiB) ms p50"] = statistics.median(lat)
        out["read(64 MiB) ms p95"] = lat[int(0.95 * len(lat)) - 1]
        out["read(64 MiB) ms max"] = lat[-1]
        after = vmstat(*before)
        for k in before:
            out[f"vmstat {k}"] = after[k] - before[k]
    elif kind == "readinto":
        target = bytearray(64 * MiB)
        best = float("inf")
        for _ in range(ROUNDS * 3):
            m.seek(0)
            t = time.thread_time()
            m.readinto(target)
            best = min(best, time.thread_time() - t)
        out["readinto(64 MiB) GB/s"] = 64 * MiB / best / 1e9
    m.close()
    print(json.dumps(out))


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
        return
    kinds = sys.argv[1:] or ["speed", "cost", "readinto"]
    thp = Path("/sys/kernel/mm/transparent_hugepage")
    print(f"# load average {os.getloadavg()[0]:.2f}; THP", end="")
    for f in ("enabled", "defrag"):
        print(f" {f}: {(thp / f).read_text().strip()}", end=";")
    print()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.bin")
        with open(path, "wb") as f:
            chunk = os.urandom(MiB)
            for _ in range(FILE_SIZE // MiB):
                f.write(chunk)
        with open(path, "rb") as f:
            while f.read(16 * MiB):
                pass
        for kind in kinds:
            results = {}
            for label, env in (
                ("advised", {}),
                ("MMAPFILE_HUGEPAGES=0", {"MMAPFILE_HUGEPAGES": "0"}),
            ):
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", kind, path],
                    env=dict(os.environ, **env),
                    capture_output=True,
                    text=True,
                    check=True,
                )
                results[label] = json.loads(proc.stdout)
            print(f"\n| {kind:36} | {'advised':>12} | {'MMAPFILE_HUGEPAGES=0':>20} |")
            print(f"|{'-' * 38}|{'-' * 13}:|{'-' * 21}:|")
            for key, value in results["advised"].items():
                other = results["MMAPFILE_HUGEPAGES=0"][key]
                unit = " GB/s" if kind == "speed" else ""
                print(f"| {key:36} | {value:12.2f} | {other:20.2f} |{unit}")


if __name__ == "__main__":
    main()
