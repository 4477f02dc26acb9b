"""Compare mmapfile with CPython's mmap (and shared_memory, and a plain
memmove) on the same data, in one run.

Each workload runs both sides interleaved, several rounds, and keeps the best
round of each, so machine noise hits both alike. Prints a table: workload,
ours, theirs, ratio (ours / theirs; below 1.0 means we are faster).

Usage: python benches/bench.py [--quick]   (imports the installed module)
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import multiprocessing
import os
import platform
import sys
import tempfile
import time
import uuid
from multiprocessing import shared_memory

import mmapfile

MiB = 1 << 20


def best_time(fn, number: int) -> float:
    """Seconds per call of fn() (which itself loops `number` times), best of one run."""
    t0 = time.perf_counter()
    fn(number)
    return (time.perf_counter() - t0) / number


def compare(name, ours, theirs, number, rounds, unit="ns"):
    best_ours = best_theirs = float("inf")
    for _ in range(rounds):
        best_ours = min(best_ours, best_time(ours, number))
        best_theirs = min(best_theirs, best_time(theirs, number))
    return name, best_ours, best_theirs, unit


def fmt(seconds: float, unit: str, size: int | None = None) -> str:
    if unit == "GB/s":
        return f"{size / seconds / 1e9:8.2f} GB/s"
    if unit == "us":
        return f"{seconds * 1e6:8.2f} us"
    return f"{seconds * 1e9:8.1f} ns"


def per_call_workloads(ours, theirs, rounds, number):
    """Pairs of loops for the per-call operations."""
    rows = []
    size = len(theirs)

    def loop(op):
        def run(n):
            for _ in range(n):
                op()

        return run

    def pair(name, op_ours, op_theirs, reset=None):
        def wrap(op, obj):
            def run(n):
                obj.seek(0)
                for _ in range(n):
                    if obj.tell() > size - 1024:
                        obj.seek(0)
                    op()

            return run if reset else loop(op)

        rows.append(compare(name, wrap(op_ours, ours), wrap(op_theirs, theirs), number, rounds))

    ours.seek(0)
    theirs.seek(0)
    pair("read_byte", ours.read_byte, theirs.read_byte, reset=True)
    pair("read(16)", lambda: ours.read(16), lambda: theirs.read(16), reset=True)
    pair(
        "write(16)",
        lambda: ours.write(b"0123456789abcdef"),
        lambda: theirs.write(b"0123456789abcdef"),
        reset=True,
    )
    pair("write_byte", lambda: ours.write_byte(65), lambda: theirs.write_byte(65), reset=True)
    pair("tell", ours.tell, theirs.tell)
    pair("seek(100)", lambda: ours.seek(100), lambda: theirs.seek(100))
    pair("readline (80-byte lines)", ours.readline, theirs.readline, reset=True)
    pair("m[i]", lambda: ours[1000], lambda: theirs[1000])
    pair("m[i:i+16]", lambda: ours[1000:1016], lambda: theirs[1000:1016])
    pair("size()", ours.size, theirs.size)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds (for smoke runs)")
    args = parser.parse_args()
    rounds = 3 if args.quick else 7
    number = 20_000 if args.quick else 200_000

    rows: list[tuple] = []
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        # Per-call operations on a 1 MiB file of 80-byte lines.
        path = os.path.join(tmp, "lines.bin")
        line = b"x" * 79 + b"\n"
        with open(path, "wb") as f:
            f.write(line * (MiB // 80))
        with open(path, "r+b") as f:
            theirs = mmap.mmap(f.fileno(), 0)
        ours = mmapfile.mmapfile(path, None)
        try:
            rows += per_call_workloads(ours, theirs, rounds, number)
        finally:
            ours.close()
            theirs.close()

        # Bulk: 64 MiB file.
        big = os.path.join(tmp, "big.bin")
        n = 64 * MiB
        with open(big, "wb") as f:
            # No \x01 anywhere, so the 1-byte needle placed below is the only hit.
            f.write(os.urandom(MiB).replace(b"\x01", b"\x02") * 64)
        with open(big, "r+b") as f:
            theirs = mmap.mmap(f.fileno(), 0)
        ours = mmapfile.mmapfile(big, None)
        # Warm both views' pages.
        theirs.read()
        ours.read()

        def bulk_read(obj):
            def run(k):
                for _ in range(k):
                    obj.seek(0)
                    obj.read(n)

            return run

        rows.append(compare("read(64 MiB)", bulk_read(ours), bulk_read(theirs), 1, rounds, "GB/s"))
        sizes["read(64 MiB)"] = n

        target = bytearray(n)
        src = bytearray(os.urandom(MiB) * 64)

        def readinto(k):
            for _ in range(k):
                ours.seek(0)
                ours.readinto(target)

        def memmove(k):
            dst = (ctypes.c_char * n).from_buffer(target)
            s = (ctypes.c_char * n).from_buffer(src)
            for _ in range(k):
                ctypes.memmove(dst, s, n)

        if hasattr(ours, "readinto"):
            rows.append(
                compare("readinto(64 MiB) vs memmove", readinto, memmove, 1, rounds, "GB/s")
            )
            sizes["readinto(64 MiB) vs memmove"] = n

        # find/rfind: needle placed near the end, and absent.
        needle18 = b"NEEDLE-0123456789!"
        theirs.seek(0)
        pos = n - 4096
        theirs[pos : pos + 18] = needle18
        theirs[pos + 100] = ord(b"\x01")
        for obj in (ours, theirs):
            obj.seek(0)
        for label, needle in (
            ("find 1-byte, hit near end", b"\x01"),
            ("find 18-byte, hit near end", needle18),
            ("find 18-byte, no hit", b"ABSENT-0123456789!"),
        ):

            def mk(obj, nd=needle):
                def run(k):
                    for _ in range(k):
                        obj.find(nd, 0)

                return run

            rows.append(compare(label, mk(ours), mk(theirs), 1, rounds, "GB/s"))
            sizes[label] = n
        for label, needle in (("rfind 18-byte, no hit", b"ABSENT-0123456789!"),):

            def mk(obj, nd=needle):
                def run(k):
                    for _ in range(k):
                        obj.rfind(nd, 0)

                return run

            rows.append(compare(label, mk(ours), mk(theirs), 1, rounds, "GB/s"))
            sizes[label] = n
        ours.close()
        theirs.close()

    # Named block create + close vs SharedMemory create + close + unlink.
    def ours_named(k):
        for _ in range(k):
            m = mmapfile.mmapfile(None, "bench-" + uuid.uuid4().hex[:12], 4096)
            m.close()

    def theirs_named(k):
        for _ in range(k):
            s = shared_memory.SharedMemory(create=True, size=4096)
            s.close()
            s.unlink()

    rows.append(
        compare(
            "named create+close",
            ours_named,
            theirs_named,
            2000 if not args.quick else 200,
            rounds,
            "us",
        )
    )

    # Opening a 64 GiB sparse file costs the same as a 1 MiB one.
    with tempfile.TemporaryDirectory() as tmp:
        small = os.path.join(tmp, "small")
        huge = os.path.join(tmp, "huge")
        for p, sz in ((small, MiB), (huge, 64 << 30)):
            with open(p, "wb") as f:
                f.truncate(sz)

        def opener(p):
            def run(k):
                for _ in range(k):
                    mmapfile.mmapfile(p, None).close()

            return run

        rows.append(
            compare(
                "open 64 GiB sparse vs 1 MiB (ours)", opener(huge), opener(small), 500, rounds, "us"
            )
        )

    print(f"# {platform.platform()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"# best of {rounds} interleaved rounds; ratio = ours / theirs (time), < 1.0 is faster")
    print(f"{'workload':40} {'ours':>14} {'theirs':>14} {'ratio':>7}")
    for name, o, t, unit in rows:
        size = sizes.get(name)
        print(f"{name:40} {fmt(o, unit, size):>14} {fmt(t, unit, size):>14} {o / t:7.2f}")
    stream = streaming(args.quick)
    print(f"{'two-process stream, 4 KiB records':40} {stream:9.2f} GB/s {'(target >= 2 GB/s)':>22}")


def _writer(name, total, record):
    m = mmapfile.mmapfile(None, name)
    slots = (m.size() - 64) // record
    data = bytes(record)
    # Header: [write counter (8 bytes)][read counter (8 bytes)] at offset 0.
    written = 0
    while written < total:
        read = int.from_bytes(m[8:16], "little")
        if written - read < slots:
            m.seek(64 + (written % slots) * record)
            m.write(data)
            written += 1
            m[0:8] = written.to_bytes(8, "little")
    m.close()


def streaming(quick: bool) -> float:
    """Writer process puts 4 KiB records in a ring inside a named block; this process reads them."""
    record = 4096
    total = 20_000 if quick else 200_000
    name = "bench-stream-" + uuid.uuid4().hex[:8]
    m = mmapfile.mmapfile(None, name, 64 + 256 * record)
    slots = (m.size() - 64) // record
    ctx = multiprocessing.get_context("spawn")
    p = ctx.Process(target=_writer, args=(name, total, record))
    t0 = time.perf_counter()
    p.start()
    read = 0
    buf = bytearray(record)
    while read < total:
        written = int.from_bytes(m[0:8], "little")
        while read < written:
            m.seek(64 + (read % slots) * record)
            if hasattr(m, "readinto"):
                m.readinto(buf)
            else:
                m.read(record)
            read += 1
        m[8:16] = read.to_bytes(8, "little")
    p.join()
    elapsed = time.perf_counter() - t0
    m.close()
    return total * record * 2 / elapsed / 1e9


if __name__ == "__main__":
    main()
