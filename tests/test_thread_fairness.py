"""One object shared by several threads: the per-object lock serialises them,
and a thread waiting for it releases the GIL, so nothing deadlocks."""

from __future__ import annotations

import threading

import mmapfile
import pytest

SIZE = 32 << 20


def test_threads_sharing_one_object_see_consistent_positions():
    m = mmapfile.mmapfile(None, None, 1 << 16)
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def worker(k: int) -> None:
        try:
            barrier.wait()
            for _ in range(2000):
                m.seek(k * 100)
                m.write_byte(k)
                # The position moved by exactly one, or another thread ran
                # between the calls and moved it elsewhere: never a torn value.
                assert 0 <= m.tell() <= 1 << 16
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for k in range(4):
        m.seek(k * 100)
        assert m.read_byte() == bytes([k])
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
