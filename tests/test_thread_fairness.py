"""One object shared by several threads: the per-object lock serialises them,
and a thread waiting for it releases the GIL, so nothing deadlocks."""

from __future__ import annotations

import threading

import mmapfile
import pytest

SIZE = 32 << 20


WRITES_PER_THREAD = 2000
THREADS = 4


def run_threads(worker) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(THREADS)

    def run(k: int) -> None:
        try:
            barrier.wait()
            worker(k)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_threads_sharing_one_object_see_consistent_positions():
    # Every call that moves the shared position is atomic: threads that only
    # write_byte() from one starting point never write the same byte twice
    # nor skip one, and each sees the position only move forward. (Each call
    # is atomic, not a sequence of them: a seek() then write_byte() of one
    # thread may have another thread's call between them, and did under
    # free threading when this test was written that way.)
    total = THREADS * WRITES_PER_THREAD
    m = mmapfile.mmapfile(None, None, total + 100)

    def writer(k: int) -> None:
        last = 0
        for _ in range(WRITES_PER_THREAD):
            m.write_byte(k + 1)
            pos = m.tell()
            # Other threads only move it forward; a torn or lost update
            # would show here or in the counts below.
            assert last < pos <= total, (last, pos)
            last = pos

    run_threads(writer)
    assert m.tell() == total
    written = m[:total]
    for k in range(THREADS):
        assert written.count(k + 1) == WRITES_PER_THREAD
    assert m[total:] == bytes(100)

    # Reading back the same way: every byte is read by exactly one thread.
    m.seek(0)
    seen: list[list[int]] = [[] for _ in range(THREADS)]

    def reader(k: int) -> None:
        for _ in range(WRITES_PER_THREAD):
            seen[k].append(m.read_byte()[0])

    run_threads(reader)
    assert m.tell() == total
    assert sorted(b for s in seen for b in s) == sorted(written)
    m.close()


def test_calls_wait_for_a_long_search_that_runs_without_the_gil():
    # find() on a large view holds the object's lock with the GIL released;
    # other threads calling methods must wait for it, then succeed.
    m = mmapfile.mmapfile(None, None, SIZE)
    m.seek(SIZE - 5)
    m.write(b"found")
    stop = threading.Event()
    results: list[int] = []
    calls = [0]

    def searcher() -> None:
        while not stop.is_set():
            results.append(m.find(b"found", 0))

    def caller() -> None:
        while not stop.is_set():
            m.tell()
            m.seek(0)
            calls[0] += 1

    threads = [threading.Thread(target=searcher), threading.Thread(target=caller)]
    for t in threads:
        t.start()
    # The main thread keeps calling too, so it contends with the searcher.
    for _ in range(200):
        assert m.size() == SIZE
    stop.set()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive()
    assert results and set(results) == {SIZE - 5}
    assert calls[0] > 0
    m.close()


def test_close_from_another_thread_waits_for_the_holder():
    m = mmapfile.mmapfile(None, None, SIZE)
    outcome: list[object] = []

    def search() -> None:
        try:
            outcome.append(m.find(b"absent-needle", 0))
        except ValueError as e:  # closed before the search took the lock
            outcome.append(e)

    t = threading.Thread(target=search)
    t.start()
    m.close()
    t.join(timeout=60)
    assert not t.is_alive()
    # Either the search ran on the whole view or it saw a closed object;
    # it never ran on unmapped memory (that would crash the process).
    assert len(outcome) == 1
    assert outcome[0] == -1 or isinstance(outcome[0], ValueError)
    with pytest.raises(ValueError):
        m.tell()
