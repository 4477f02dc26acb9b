"""Many threads on one object, every kind of call at once, every result
checked. Meant for free-threaded CPython (3.14t: no GIL, the calls really run
in parallel), where CI runs it (`make ci-wheels`); it runs, more serialised,
on every Python.

Each thread owns a stripe of the map and checks that what it wrote is what it
reads back (slices, items, exported memoryviews, find), while the others
write theirs, move the shared position, grow the map, export buffers and take
the map's lock; a counter incremented under the lock loses no increment; and
a close in the middle of it all makes every later call raise ValueError (or
waits, as BufferError, for the exports)."""

from __future__ import annotations

import os
import random
import sys
import sysconfig
import threading
import time

import mmapfile
import pytest

THREADS = 8
STRIPE = 4096
HEADER = 64  # the lock-protected counter lives in the first 8 bytes
SIZE = HEADER + THREADS * STRIPE
SECONDS = float(os.environ.get("MMAPFILE_FT_SECONDS", "3"))


def test_free_threaded_build_runs_without_the_gil():
    if not sysconfig.get_config_var("Py_GIL_DISABLED"):
        pytest.skip("not a free-threaded build of CPython")
    # Importing the extension must not turn the GIL back on (it would, with
    # a warning, for a module that does not declare free-threading support).
    assert mmapfile.mmapfile is not None
    assert sys._is_gil_enabled() is False


def stripe_of(k: int) -> tuple[int, int]:
    start = HEADER + k * STRIPE
    return start, start + STRIPE


def pattern(k: int, generation: int) -> bytes:
    # Unique per thread and generation; no byte of it is 0.
    rng = random.Random(k * 1_000_003 + generation)
    return bytes(rng.randrange(1, 256) for _ in range(STRIPE))


def test_many_threads_one_object_every_call_checked():
    m = mmapfile.mmapfile(None, None, SIZE)
    lock = m.lock()
    locked_increments = [0] * THREADS
    errors: list[BaseException] = []
    pausing, closing = threading.Event(), threading.Event()
    barrier = threading.Barrier(THREADS + 1, timeout=120)
    mines: list[bytes] = [b""] * THREADS
    counts = [0] * THREADS

    def closed_error(e: BaseException) -> bool:
        return isinstance(e, ValueError) and "closed" in str(e)

    def worker(k: int) -> None:
        try:
            work(k)
        except threading.BrokenBarrierError:
            pass  # another thread failed, or the main thread's checks did

    def work(k: int) -> None:
        rng = random.Random(k)
        lo, hi = stripe_of(k)
        generation = 0
        mine = pattern(k, generation)
        m[lo:hi] = mine
        barrier.wait()
        while True:
            if pausing.is_set() and not closing.is_set():
                # Let the main thread check the map while nothing runs.
                mines[k] = mine
                barrier.wait()
                barrier.wait()
            try:
                op = rng.randrange(10)
                if op == 0:  # a slice of my stripe, written then read
                    generation += 1
                    mine = pattern(k, generation)
                    m[lo:hi] = mine
                    assert m[lo:hi] == mine
                elif op == 1:  # items
                    i = rng.randrange(STRIPE)
                    assert m[lo + i] == mine[i]
                    m[lo + i] = mine[i]
                elif op == 2:  # an exported buffer: a memoryview of the map
                    with memoryview(m) as view:
                        assert view[lo:hi] == mine
                        generation += 1
                        mine = pattern(k, generation)
                        view[lo:hi] = mine
                    assert m[lo:hi] == mine
                elif op == 3:  # find inside my stripe, where my pattern is
                    i = rng.randrange(STRIPE - 16)
                    needle = mine[i : i + 16]
                    assert m.find(needle, lo, hi) == lo + mine.find(needle)
                    assert m.rfind(needle, lo, hi) == lo + mine.rfind(needle)
                elif op == 4:  # the shared position: only ever in range
                    m.seek(rng.randrange(SIZE))
                    data = m.read(rng.randrange(1, 64))
                    assert len(data) <= 64
                    assert 0 <= m.tell() <= len(m)
                elif op == 5:  # grow the map; it never shrinks, data stays
                    try:
                        m.resize(len(m) + mmapfile.PAGESIZE)
                    except BufferError:
                        pass  # another thread holds an export: refused whole
                    assert m[lo:hi] == mine
                elif op == 6:  # the map's lock guards a read-modify-write
                    with lock:
                        n = int.from_bytes(m[0:8], "little")
                        m[0:8] = (n + 1).to_bytes(8, "little")
                    locked_increments[k] += 1
                elif op == 7:  # readinto and readline move the position too
                    buf = bytearray(32)
                    m.seek(lo)
                    got = m.readinto(buf)
                    assert 0 <= got <= 32
                    m.readline()
                elif op == 8:  # bytes read back one at a time
                    # Three bytes from i stay inside my stripe: the next
                    # stripe is another thread's, changing under us.
                    i = rng.randrange(STRIPE - 2)
                    assert bytes([m[lo + i]]) == mine[i : i + 1]
                    assert list(m[lo + i : lo + i + 3]) == list(mine[i : i + 3])
                else:  # the size seen by len() and size() agree and grow
                    assert len(m) >= SIZE and m.size() >= SIZE
                counts[k] += 1
            except BaseException as e:  # noqa: BLE001
                if closing.is_set() and closed_error(e):
                    return  # the map was closed under us: the end
                errors.append(e)
                barrier.abort()  # wakes everyone: the test fails below
                return

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    paused_checks = []
    try:
        barrier.wait()
        time.sleep(SECONDS)
        # Pause the workers: every stripe holds its thread's last pattern,
        # and the counter every increment made under the lock.
        pausing.set()
        barrier.wait()
        paused_checks.append(int.from_bytes(m[0:8], "little") == sum(locked_increments) > 0)
        for k in range(THREADS):
            lo, hi = stripe_of(k)
            paused_checks.append(m[lo:hi] == mines[k])
        closing.set()
        barrier.wait()
    except threading.BrokenBarrierError:
        closing.set()
    # Close while the workers run: refused (BufferError) while any of them
    # holds an export, so retry until it goes through.
    closing.set()
    tries = 0
    while True:
        try:
            m.close()
            break
        except BufferError:
            tries += 1
            time.sleep(0)
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive()
    assert errors == [], errors
    assert paused_checks and all(paused_checks), paused_checks
    assert all(c > 0 for c in counts), counts
    # Every call after the close says so.
    assert m.closed is True
    for call in (lambda: m[0:8], lambda: m.find(b"x"), lambda: len(m), lambda: m.resize(SIZE)):
        with pytest.raises(ValueError):
            call()


def test_lock_increments_from_many_threads_are_never_lost():
    m = mmapfile.mmapfile(None, None, 4096)
    lock = m.lock()
    per_thread = 500

    def work() -> None:
        for _ in range(per_thread):
            with lock:
                n = int.from_bytes(m[0:8], "little")
                m[0:8] = (n + 1).to_bytes(8, "little")

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert int.from_bytes(m[0:8], "little") == THREADS * per_thread
    m.close()
