"""Compare mmapfile with CPython's mmap (and shared_memory, and a plain
memmove) on the same data, in one run.

Each workload runs both sides interleaved, several rounds, and keeps the best
round of each, so machine noise hits both alike. Prints a table: workload,
ours, theirs, ratio (ours / theirs in time; below 1.0 means we are faster).
Rows whose method the installed module lacks print "n/a (not implemented)".

Usage: python benches/bench.py [--quick] [--chart DIR [--max-load N]]
(imports the installed module; builds nothing)

--chart DIR also writes DIR/bench.txt (the table, with the machine, the date
and the load) and DIR/bench.png (the ratios as a bar chart, with matplotlib)
from the same run: what the documentation's performance page shows. A chart
is only taken on a quiet machine: with a 1-minute load average above
--max-load (default 1.0) at the start, it refuses before measuring.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import io
import mmap
import multiprocessing
import os
import platform
import secrets
import sys
import tempfile
import time
import timeit
import uuid
from multiprocessing import shared_memory

import mmapfile

MiB = 1 << 20
# Per-call statements are unrolled this many times so that the timing loop's
# own cost is a small part of what is measured.
UNROLL = 20
NA = "n/a (not implemented)"


class Row:
    def __init__(self, name, ours, theirs, unit="ns", size=None, vs="mmap"):
        self.name, self.ours, self.theirs, self.unit, self.size, self.vs = (
            name,
            ours,
            theirs,
            unit,
            size,
            vs,
        )


def interleave(run_ours, run_theirs, rounds):
    """Best seconds of each side; run_x() returns seconds per operation."""
    best_ours = best_theirs = float("inf")
    for _ in range(rounds):
        best_ours = min(best_ours, run_ours())
        best_theirs = min(best_theirs, run_theirs())
    return best_ours, best_theirs


def per_call(stmt, obj, number, reset):
    """Seconds per execution of `stmt` (with `m` bound to obj as a local)."""
    timer = timeit.Timer("\n".join([stmt] * UNROLL), setup="m = _m", globals={"_m": obj})

    def run():
        if reset:
            obj.seek(0)
        return timer.timeit(number) / (number * UNROLL)

    return run


def has(obj, method):
    return hasattr(type(obj), method)


def per_call_rows(ours, theirs, rounds, number):
    rows = []
    workloads = [
        # (name, statement, method the row needs, moves the position)
        ("read_byte", "m.read_byte()", "read_byte", True),
        ("read(16)", "m.read(16)", "read", True),
        ("write(16)", "m.write(b'0123456789abcdef')", "write", True),
        ("write_byte", "m.write_byte(65)", "write_byte", True),
        ("tell", "m.tell()", "tell", False),
        ("seek(100)", "m.seek(100)", "seek", False),
        ("readline (80-byte lines)", "m.readline()", "readline", True),
        ("m[i]", "m[1000]", "__getitem__", False),
        ("m[i:i+16]", "m[1000:1016]", "__getitem__", False),
        ("m[i] = v", "m[1000] = 65", "__setitem__", False),
        ("m[i:i+16] = bytes", "m[1000:1016] = b'0123456789abcdef'", "__setitem__", False),
        ("size()", "m.size()", "size", False),
    ]
    for name, stmt, method, moves in workloads:
        if not has(ours, method):
            rows.append(Row(name, None, None))
            continue
        ours_s, theirs_s = interleave(
            per_call(stmt, ours, number, moves), per_call(stmt, theirs, number, moves), rounds
        )
        rows.append(Row(name, ours_s, theirs_s))
    return rows


def once(fn, repeat=1):
    """A runner for interleave(): seconds per call of fn, repeated."""

    def run():
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        return (time.perf_counter() - t0) / repeat

    return run


def read_rows(ours, theirs, sizes, rounds):
    """read(n) from the start, for each n; small reads repeat so that a round
    lasts about as long as one of 64 MiB."""
    rows = []
    for size in sizes:

        def read_from_start(obj, size=size):
            def fn():
                obj.seek(0)
                obj.read(size)

            return fn

        repeat = max(1, (64 * MiB) // size)
        o, t = interleave(
            once(read_from_start(ours), repeat), once(read_from_start(theirs), repeat), rounds
        )
        rows.append(Row(f"read({size // MiB} MiB)", o, t, "GB/s", size))
    return rows


def open_pair(path, chunk, size):
    """A file of `size` bytes (copies of `chunk`) mapped by us and by CPython's
    mmap, its pages cached."""
    with open(path, "wb") as f:
        for _ in range(size // len(chunk)):
            f.write(chunk)
    with open(path, "r+b") as f:
        theirs = mmap.mmap(f.fileno(), 0)
    ours = mmapfile.mmapfile(path, None)
    theirs.read()
    return ours, theirs


def bulk_rows(tmp, rounds):
    rows = []
    n = 64 * MiB
    big = os.path.join(tmp, "big.bin")
    # Random bytes without \x01..\x04, so the needles placed below are the
    # only hits and \x03 is absent.
    table = bytes.maketrans(b"\x01\x02\x03\x04", b"\x05\x06\x07\x08")
    chunk = os.urandom(MiB).translate(table)
    with open(big, "wb") as f:
        f.write(chunk * 64)
    with open(big, "r+b") as f:
        theirs = mmap.mmap(f.fileno(), 0)
    ours = mmapfile.mmapfile(big, None)
    try:
        near_start, near_end = 4096, n - 4096
        end18 = b"NEEDLE-END-0123456"
        start18 = b"NEEDLE-START-01234"
        absent18 = b"ABSENT-0123456789!"
        theirs[near_end : near_end + 18] = end18
        theirs[near_start : near_start + 18] = start18
        theirs[near_end + 100] = 1
        theirs[near_start + 100] = 2
        # Warm both views' pages (they share the page cache).
        theirs.read()

        rows += read_rows(ours, theirs, [MiB, 8 * MiB, n], rounds)
        pair = open_pair(os.path.join(tmp, "bigger.bin"), chunk, 4 * n)
        try:
            rows += read_rows(*pair, [4 * n], rounds)
        finally:
            for m in pair:
                m.close()
            os.unlink(os.path.join(tmp, "bigger.bin"))

        def slice_all(obj):
            return lambda: obj[0:n]

        o, t = interleave(once(slice_all(ours)), once(slice_all(theirs)), rounds)
        rows.append(Row("m[0:64 MiB]", o, t, "GB/s", n))

        if has(ours, "readinto"):
            target = bytearray(n)
            src = bytearray(chunk * 64)
            dst_c = (ctypes.c_char * n).from_buffer(target)
            src_c = (ctypes.c_char * n).from_buffer(src)

            def readinto():
                ours.seek(0)
                ours.readinto(target)

            def memmove():
                ctypes.memmove(dst_c, src_c, n)

            o, t = interleave(once(readinto), once(memmove), rounds)
            rows.append(Row("readinto(64 MiB)", o, t, "GB/s", n, vs="memmove"))
        else:
            rows.append(Row("readinto(64 MiB)", None, None, vs="memmove"))

        searches = [
            ("find 1-byte, hit near end", "find", b"\x01"),
            ("find 1-byte, no hit", "find", b"\x03"),
            ("find 18-byte, hit near end", "find", end18),
            ("find 18-byte, no hit", "find", absent18),
            ("rfind 1-byte, hit near end", "rfind", b"\x01"),
            ("rfind 1-byte, hit near start", "rfind", b"\x02"),
            ("rfind 1-byte, no hit", "rfind", b"\x03"),
            ("rfind 18-byte, hit near end", "rfind", end18),
            ("rfind 18-byte, hit near start", "rfind", start18),
            ("rfind 18-byte, no hit", "rfind", absent18),
        ]
        for label, method, needle in searches:

            def search(obj, method=method, needle=needle):
                op = getattr(obj, method)
                return lambda: op(needle, 0)

            found = search(theirs)()
            assert search(ours)() == found, label
            # rfind's hit near the end takes microseconds: repeat it.
            repeat = 2000 if method == "rfind" and found > n // 2 else 1
            o, t = interleave(once(search(ours), repeat), once(search(theirs), repeat), rounds)
            # Throughput over the bytes actually scanned.
            if found < 0:
                scanned = n
            elif method == "find":
                scanned = found + len(needle)
            else:
                scanned = n - found
            rows.append(Row(label, o, t, "GB/s", scanned))
    finally:
        ours.close()
        theirs.close()
    return rows


def named_row(rounds, number):
    shm_dir = "/dev/shm"

    def ours():
        # A fresh name from secrets.token_hex, as SharedMemory makes its own
        # (0.45 us here; uuid4().hex took 1.6 us, charged to our side only).
        name = "bench-" + secrets.token_hex(6)
        m = mmapfile.mmapfile(None, name, 4096)
        # The last close removes the block (as SharedMemory's unlink() does),
        # so both sides do the same work and leave nothing behind.
        m.close()

    def theirs():
        s = shared_memory.SharedMemory(create=True, size=4096)
        s.close()
        s.unlink()

    if not os.path.isdir(shm_dir):
        return Row("named create+close (+unlink)", None, None, vs="SharedMemory")
    o, t = interleave(once(ours, number), once(theirs, number), rounds)
    return Row("named create+close (+unlink)", o, t, "us", vs="SharedMemory")


def sparse_rows(tmp, rounds, number):
    """Opening a 64 GiB sparse file against a 1 MiB one, for us and, as the
    kernel's own share of the difference, for CPython's mmap."""
    small = os.path.join(tmp, "small")
    huge = os.path.join(tmp, "huge")
    for p, sz in ((small, MiB), (huge, 64 << 30)):
        with open(p, "wb") as f:
            f.truncate(sz)

    def opener(p):
        return lambda: mmapfile.mmapfile(p, None).close()

    def cpython_opener(p):
        def run():
            fd = os.open(p, os.O_RDWR)
            mmap.mmap(fd, 0).close()
            os.close(fd)

        return run

    o, t = interleave(once(opener(huge), number), once(opener(small), number), rounds)
    co, ct = interleave(
        once(cpython_opener(huge), number), once(cpython_opener(small), number), rounds
    )
    return [
        Row("open+close 64 GiB sparse file", o, t, "us", vs="ours, 1 MiB"),
        Row("  (same, CPython mmap)", co, ct, "us", vs="mmap, 1 MiB"),
    ]


def fmt(row, seconds):
    if seconds is None:
        return ""
    if row.unit == "GB/s":
        return f"{row.size / seconds / 1e9:.2f} GB/s"
    if row.unit == "us":
        return f"{seconds * 1e6:.2f} us"
    if row.unit == "ms":
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e9:.1f} ns"


def print_table(rows, rounds, stream):
    print(
        f"# {platform.platform()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"mmapfile {mmapfile.__version__}"
    )
    print(f"# best of {rounds} interleaved rounds; ratio = ours / theirs in time, < 1.0 is faster")
    print(f"| {'workload':32} | {'ours':>12} | {'theirs':>12} | {'theirs is':14} | {'ratio':>6} |")
    print(f"|{'-' * 34}|{'-' * 13}:|{'-' * 13}:|{'-' * 16}|{'-' * 7}:|")
    for r in rows:
        if r.ours is None:
            print(f"| {r.name:32} | {NA:>43} | {'':>6} |")
            continue
        ratio = r.ours / r.theirs
        print(
            f"| {r.name:32} | {fmt(r, r.ours):>12} | {fmt(r, r.theirs):>12} "
            f"| {r.vs:14} | {ratio:6.2f} |"
        )
    if stream is None:
        print(f"| {'two-process stream, 4 KiB':32} | {NA:>43} | {'':>6} |")
    else:
        print(
            f"| {'two-process stream, 4 KiB':32} | {stream:7.2f} GB/s | {'2.00 GB/s':>12} "
            f"| {'target':14} | {2.0 / stream:6.2f} |"
        )


# Two-process streaming: a ring of 4 KiB records in a named block. The header
# holds the writer's count (offset 0), the reader's count (offset 8) and a
# "writer ready" flag (offset 16), each a little-endian u64.
HEADER = 64
RECORD = 4096
SLOTS = 256


def _get(m, offset):
    if has(m, "__getitem__"):
        return int.from_bytes(m[offset : offset + 8], "little")
    m.seek(offset)
    return int.from_bytes(m.read(8), "little")


def _put(m, offset, value):
    if has(m, "__setitem__"):
        m[offset : offset + 8] = value.to_bytes(8, "little")
    else:
        m.seek(offset)
        m.write(value.to_bytes(8, "little"))


def _writer(name, total):
    m = mmapfile.mmapfile(None, name)
    data = bytes(range(256)) * (RECORD // 256)
    _put(m, 16, 1)
    written = 0
    read = 0
    while written < total:
        if written - read >= SLOTS:
            read = _get(m, 8)
            continue
        # Fill every free slot before publishing the count once.
        while written < total and written - read < SLOTS:
            m.seek(HEADER + (written % SLOTS) * RECORD)
            m.write(data)
            written += 1
        _put(m, 0, written)
    m.close()


def streaming(quick):
    """GB/s moved by both processes together (bytes written + bytes read)."""
    total = 20_000 if quick else 200_000
    name = "bench-stream-" + uuid.uuid4().hex[:8]
    m = mmapfile.mmapfile(None, name, HEADER + SLOTS * RECORD)
    try:
        ctx = multiprocessing.get_context("spawn")
        p = ctx.Process(target=_writer, args=(name, total))
        p.start()
        # Time the stream, not the child's start-up.
        while _get(m, 16) == 0:
            time.sleep(0.001)
        t0 = time.perf_counter()
        read = 0
        buf = bytearray(RECORD)
        into = has(m, "readinto")
        while read < total:
            written = _get(m, 0)
            while read < written:
                m.seek(HEADER + (read % SLOTS) * RECORD)
                if into:
                    m.readinto(buf)
                else:
                    m.read(RECORD)
                read += 1
            _put(m, 8, read)
        elapsed = time.perf_counter() - t0
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"writer process failed with exit code {p.exitcode}")
    finally:
        m.close()
        if os.path.exists("/dev/shm/mmapfile." + name):
            os.unlink("/dev/shm/mmapfile." + name)
    return total * RECORD * 2 / elapsed / 1e9


# The mapping lock against multiprocessing.Lock. Every side's data lives in
# the same kind of mmapfile block, so only the lock differs. A block's bytes:
# 0 = whose turn (hand-off), 1 = processes ready, 2 = go, 8..16 = counter.


def _lock_of(kind, m, mp_lock):
    return m.lock() if kind == "ours" else mp_lock


def _wait_for_go(m):
    while m[2] == 0:
        time.sleep(0.0005)


def _alternate(kind, name, mp_lock, me, turns):
    """One side of the hand-off: `turns` times, wait for our turn through
    the lock, then give the turn to the other side."""
    m = mmapfile.mmapfile(None, name, 0)
    lock = _lock_of(kind, m, mp_lock)
    with lock:
        m[1] += 1
    _wait_for_go(m)
    other = 1 - me
    for _ in range(turns):
        while True:
            lock.acquire()
            if m[0] == me:
                break
            lock.release()
        m[0] = other
        lock.release()
    m.close()


def _count(kind, name, mp_lock, n):
    """One contender: n increments of the block's counter under the lock."""
    m = mmapfile.mmapfile(None, name, 0)
    lock = _lock_of(kind, m, mp_lock)
    with lock:
        m[1] += 1
    _wait_for_go(m)
    for _ in range(n):
        with lock:
            value = int.from_bytes(m[8:16], "little")
            m[8:16] = (value + 1).to_bytes(8, "little")
    m.close()


def _run_processes(kind, target, args_of, processes):
    """Seconds from "go" until every process is done; returns (seconds, block
    counter)."""
    ctx = multiprocessing.get_context("spawn")
    name = "bench-lock-" + uuid.uuid4().hex[:8]
    m = mmapfile.mmapfile(None, name, 4096)
    mp_lock = ctx.Lock()
    try:
        procs = [
            ctx.Process(target=target, args=(kind, name, mp_lock, *args_of(i)))
            for i in range(processes)
        ]
        for p in procs:
            p.start()
        while m[1] < processes:
            time.sleep(0.001)
        t0 = time.perf_counter()
        m[2] = 1
        for p in procs:
            p.join()
        elapsed = time.perf_counter() - t0
        if any(p.exitcode != 0 for p in procs):
            raise RuntimeError(f"a {kind} lock process failed")
        return elapsed, int.from_bytes(m[8:16], "little")
    finally:
        m.close()


def lock_rows(rounds, quick):
    """Uncontended acquire()+release(), two-process hand-off per turn, and
    4 processes x 10,000 increments of a counter in the block."""
    m = mmapfile.mmapfile(None, None, 4096)
    ours, theirs = m.lock(), multiprocessing.Lock()
    number = (20_000 if quick else 200_000) // UNROLL

    def uncontended(lock):
        stmt = "\n".join(["l.acquire(); l.release()"] * UNROLL)
        timer = timeit.Timer(stmt, setup="l = _l", globals={"_l": lock})
        return lambda: timer.timeit(number) / (number * UNROLL)

    o, t = interleave(uncontended(ours), uncontended(theirs), 3 * rounds)
    rows = [Row("lock acquire()+release()", o, t, vs="mp.Lock")]
    m.close()

    # Processes: the median of 3 interleaved runs (they are noisy, and a
    # best-of would flatter whichever side had one lucky run).
    turns = 2_000 if quick else 20_000
    n = 1_000 if quick else 10_000
    hand, count = {"ours": [], "theirs": []}, {"ours": [], "theirs": []}
    for _ in range(3):
        for kind in ("ours", "theirs"):
            s, _ = _run_processes(kind, _alternate, lambda i: (i, turns), 2)
            hand[kind].append(s / (2 * turns))
            s, total = _run_processes(kind, _count, lambda i: (n,), 4)
            if total != 4 * n:
                raise RuntimeError(f"{kind}: the counter is {total}, not {4 * n}")
            count[kind].append(s)

    def median(xs):
        return sorted(xs)[len(xs) // 2]

    rows.append(
        Row(
            "lock hand-off, 2 processes/turn",
            median(hand["ours"]),
            median(hand["theirs"]),
            "us",
            vs="mp.Lock",
        )
    )
    rows.append(
        Row(
            f"lock 4 procs x {n // 1000}k incr, exact",
            median(count["ours"]),
            median(count["theirs"]),
            "ms",
            vs="mp.Lock",
        )
    )
    return rows


# Rows whose other side is another implementation of the same work; the
# rest compare against a target or against ourselves and stay in the table.
CHARTED = {"mmap", "memmove", "SharedMemory", "mp.Lock"}


def machine() -> str:
    """The CPU model, core count, memory, OS and Python of this machine."""
    model = platform.processor() or platform.machine()
    memory = ""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            model = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                model,
            )
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            memory = f", {kib / (1 << 20):.0f} GiB"
    return (
        f"{model}, {os.cpu_count()} CPUs{memory}; {platform.system()} {platform.release()}, "
        f"Python {sys.version.split()[0]}, mmapfile {mmapfile.__version__}"
    )


def load_average() -> float:
    """The 1-minute load average (NaN where the OS does not report one)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def write_chart(rows, table: str, directory: str, started: datetime.datetime, load: float) -> None:
    """DIR/bench.txt and DIR/bench.png from one run's rows and table; `load`
    is the load average when the run started."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    when = started.strftime("%Y-%m-%d %H:%M UTC")
    about = f"{machine()}\nmeasured {when}, load average {load:.1f} at the start"
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "bench.txt"), "w") as f:
        f.write(f"# {about.replace(chr(10), chr(10) + '# ')}\n{table}")

    charted = [r for r in rows if r.ours is not None and r.vs in CHARTED]
    labels = [r.name if r.vs == "mmap" else f"{r.name} (vs {r.vs})" for r in charted]
    ratios = [r.ours / r.theirs for r in charted]
    fig, ax = plt.subplots(figsize=(7.2, 0.26 * len(charted) + 1.5), dpi=130)
    faster, slower = "#2a7f62", "#c0602b"
    colors = [faster if x < 1.0 else slower for x in ratios]
    bars = ax.barh(range(len(charted)), ratios, color=colors, height=0.7)
    ax.set_yticks(range(len(charted)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", linewidth=0.8)
    for bar, x in zip(bars, ratios):
        ax.text(x + 0.01, bar.get_y() + bar.get_height() / 2, f"{x:.2f}", va="center", fontsize=7)
    ax.set_xlim(0, max(1.2, max(ratios) + 0.15))
    ax.tick_params(axis="x", labelsize=8)
    ax.set_xlabel(
        "time with mmapfile / time with CPython's mmap (or the side named)\n"
        "below 1.0: mmapfile is faster",
        fontsize=8,
    )
    ax.legend(
        handles=[
            Patch(color=faster, label="mmapfile faster"),
            Patch(color=slower, label="mmapfile slower or the same"),
            Line2D([0], [0], color="black", linewidth=0.8, label="same time (1.0)"),
        ],
        fontsize=7,
        loc="best",
    )
    ax.set_title(about, fontsize=6.5, loc="left", color="#444444")
    fig.suptitle("mmapfile against CPython's mmap, per workload", fontsize=10, x=0.02, ha="left")
    fig.tight_layout()
    # "tight" grows the image to whatever the labels need, so none is cut.
    fig.savefig(os.path.join(directory, "bench.png"), bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds (for smoke runs)")
    parser.add_argument(
        "--chart", metavar="DIR", help="also write DIR/bench.txt and DIR/bench.png (matplotlib)"
    )
    parser.add_argument(
        "--max-load",
        type=float,
        default=1.0,
        metavar="N",
        help="with --chart: refuse to run above this 1-minute load average (default 1.0)",
    )
    args = parser.parse_args()
    started = datetime.datetime.now(datetime.timezone.utc)
    load = load_average()
    print(f"load average at the start: {load:.2f}", flush=True)
    if args.chart and not load <= args.max_load:
        sys.exit(
            f"bench.py: the load average is {load:.2f}, above --max-load {args.max_load}: "
            "a chart for the documentation needs a quiet machine (or raise --max-load)"
        )
    rounds = 3 if args.quick else 7
    number = (20_000 if args.quick else 200_000) // UNROLL

    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        # Per-call operations on a file of 80-byte lines, large enough that no
        # round reaches its end (each round starts at position 0).
        path = os.path.join(tmp, "lines.bin")
        with open(path, "wb") as f:
            f.write((b"x" * 79 + b"\n") * (number * UNROLL + 1024))
        with open(path, "r+b") as f:
            theirs = mmap.mmap(f.fileno(), 0)
        ours = mmapfile.mmapfile(path, None)
        try:
            # Per-call rows are cheap and the noisiest: three times the rounds.
            rows += per_call_rows(ours, theirs, 3 * rounds, number)
        finally:
            ours.close()
            theirs.close()
        os.unlink(path)
        rows += bulk_rows(tmp, rounds)
        rows.append(named_row(rounds, 200 if args.quick else 1000))
        rows += sparse_rows(tmp, rounds, 100 if args.quick else 500)
    rows += lock_rows(rounds, args.quick)
    # Both processes spin, so anything else running takes from them: best of 3.
    stream = max(streaming(args.quick) for _ in range(1 if args.quick else 3))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        print_table(rows, rounds, stream)
    print(out.getvalue(), end="")
    if args.chart:
        write_chart(rows, out.getvalue(), args.chart, started, load)


if __name__ == "__main__":
    main()
