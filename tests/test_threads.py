"""One object shared by many threads, and Python code that closes or resizes
the map while its arguments are being converted."""

import random
import threading
import time

import mmapfile
import pytest

SIZE = 1 << 20


def test_eight_threads_hammering_one_object_raise_nothing():
    m = mmapfile.mmapfile(None, None, SIZE)
    m[:] = bytes(range(256)) * (SIZE // 256)
    errors = []
    stop = time.monotonic() + 2.0

    def hammer(seed):
        rng = random.Random(seed)
        try:
            while time.monotonic() < stop:
                a = rng.randrange(SIZE)
                b = rng.randrange(a, min(SIZE, a + 200_000) + 1)
                op = rng.randrange(10)
                if op == 0:
                    assert len(m[a:b]) == b - a
                elif op == 1:
                    m[a:b] = bytes(b - a)
                elif op == 2:
                    assert len(m[a:b:7]) == len(range(a, b, 7))
                elif op == 3:
                    m.find(b"\x01\x02\x03", a, b)
                    m.rfind(b"\xff", a, b)
                elif op == 4:
                    m.seek(a)
                    m.read(b - a)
                elif op == 5:
                    m[a] = a % 256
                    assert 0 <= m[a] < 256
                elif op == 6:
                    with memoryview(m) as mv:
                        mv[a] = 7
                elif op == 7:
                    assert len(m) == SIZE
                    m.tell()
                    m.readline()
                elif op == 8:
                    buf = bytearray(b - a)
                    m.seek(a)
                    m.readinto(buf)
                else:
                    m.move(a, 0, b - a)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    m.close()


def test_close_during_a_long_read_in_another_thread_is_safe():
    size = 256 << 20
    m = mmapfile.mmapfile(None, None, size)
    m[size - 3 :] = b"end"
    results = []
    started = threading.Event()

    def reader():
        started.set()
        try:
            results.append(m.read())
        except ValueError as e:  # closed before the read began
            results.append(e)

    t = threading.Thread(target=reader)
    t.start()
    started.wait()
    time.sleep(0.005)
    m.close()  # waits for a read in progress, never unmaps under it
    t.join()
    assert m.closed
    (result,) = results
    if isinstance(result, bytes):
        assert len(result) == size and result.endswith(b"end")


def test_many_closes_racing_many_reads():
    for _ in range(20):
        m = mmapfile.mmapfile(None, None, 4 << 20)
        errors = []

        def reader(m=m, errors=errors):
            for _ in range(20):
                try:
                    m.seek(0)
                    m.read()
                    m[0:1000:3]
                    m.find(b"x")
                except ValueError:
                    pass  # closed: the expected error
                except BaseException as e:
                    errors.append(e)

        threads = [threading.Thread(target=reader) for _ in range(4)]
        for t in threads:
            t.start()
        m.close()
        for t in threads:
            t.join()
        assert errors == []


class ClosingIndex:
    """An index whose conversion closes the map."""

    def __init__(self, m, value=0):
        self.m = m
        self.value = value

    def __index__(self):
        self.m.close()
        return self.value


def closing_calls(m):
    return [
        lambda: m[ClosingIndex(m)],
        lambda: m[ClosingIndex(m) : 10],
        lambda: m[0 : ClosingIndex(m, 10) : 2],
        lambda: m.__setitem__(ClosingIndex(m), 1),
        lambda: m.__setitem__(slice(ClosingIndex(m), 3), b"abc"),
        lambda: m.read(ClosingIndex(m, 5)),
        lambda: m.seek(ClosingIndex(m, 5)),
        lambda: m.find(b"a", ClosingIndex(m)),
        lambda: m.rfind(b"a", 0, ClosingIndex(m, 5)),
        lambda: m.move(ClosingIndex(m), 1, 2),
        lambda: m.flush(ClosingIndex(m)),
        # Conversion closes the map before Windows' lack of madvise shows.
        lambda: m.madvise(getattr(mmapfile, "MADV_NORMAL", 0), ClosingIndex(m)),
        lambda: m.resize(ClosingIndex(m, 8192)),
    ]


@pytest.mark.parametrize("call", range(len(closing_calls(None))))
def test_index_that_closes_the_map_during_conversion_raises_value_error(call):
    m = mmapfile.mmapfile(None, None, 4096)
    with pytest.raises(ValueError):
        closing_calls(m)[call]()
    assert m.closed


class ShrinkingIndex:
    """An index whose conversion shrinks the view to 10 bytes."""

    def __init__(self, m, value):
        self.m = m
        self.value = value

    def __index__(self):
        self.m.resize(0, 0, 10)
        return self.value


def test_index_that_shrinks_the_map_during_slice_conversion_raises_index_error():
    m = mmapfile.mmapfile(None, None, 8192)
    with pytest.raises(IndexError):
        m[0 : ShrinkingIndex(m, 8000)]
    assert len(m) == 10
    m.resize(0, 0, 0)
    with pytest.raises(IndexError):
        m[0 : ShrinkingIndex(m, 8000)] = bytes(8000)
    m.resize(0, 0, 0)
    with pytest.raises(IndexError):
        m[ShrinkingIndex(m, 5000)]
    m.close()


def test_index_that_closes_the_map_while_another_thread_reads():
    m = mmapfile.mmapfile(None, None, 64 << 20)
    errors = []

    def reader():
        try:
            for _ in range(50):
                m[0 : 64 << 20 : 4096]
                m.read()
        except ValueError:
            pass
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=reader)
    t.start()
    with pytest.raises(ValueError):
        m[ClosingIndex(m) :]
    t.join()
    assert errors == []
