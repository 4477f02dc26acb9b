"""len, indexing, slicing and item/slice assignment, compared with the decided
behaviour (tests/_decided.py: CPython 3.15's mmap, on every Python)."""

import itertools

import _decided as decided
import mmapfile
import pytest

SIZE = 10
BOUNDS = [
    None,
    *range(-SIZE - 2, SIZE + 3),
    2**63 - 1,
    -(2**63),
    2**63,
    -(2**63) - 1,
    2**70,
    -(2**70),
]
STEPS = [None, 1, 2, 3, 11, -1, -2, -3, -11, 2**70, -(2**70)]


DATA = bytes(range(65, 65 + SIZE))


def pair():
    """Our map holding DATA, and DATA (what the decided tables work on)."""
    ours = mmapfile.mmapfile(None, None, SIZE)
    ours[:] = DATA
    return ours, DATA


def outcome(fn):
    try:
        return ("ok", fn())
    except Exception as e:  # the exception type is what is compared
        return ("raised", type(e))


def test_len_is_the_view_size():
    m = mmapfile.mmapfile(None, None, 12345)
    assert len(m) == 12345 == m.size()
    m.close()
    with pytest.raises(ValueError):
        len(m)


def test_len_of_a_window_is_the_window(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(10000))
    m = mmapfile.mmapfile(str(path), None, 0, 5000, 1000)
    assert len(m) == 1000
    m.close()


@pytest.mark.parametrize("index", [0, 5, 9, -1, -10, 10, -11, 2**63, -(2**63) - 1, 2**100])
def test_item_read_gives_the_decided_answer(index):
    ours, data = pair()
    assert outcome(lambda: ours[index]) == decided.item_read(data, False, index)


def test_every_slice_gives_the_decided_answer():
    ours, data = pair()
    for start, stop, step in itertools.product(BOUNDS, BOUNDS, STEPS):
        s = slice(start, stop, step)
        assert outcome(lambda s=s: ours[s]) == decided.item_read(data, False, s), s


def test_zero_step_raises_value_error():
    ours, _ = pair()
    with pytest.raises(ValueError):
        ours[::0]


def test_non_integer_index_raises_type_error():
    ours, _ = pair()
    for key in ["a", 1.5, None, (1, 2)]:
        with pytest.raises(TypeError):
            ours[key]


def test_index_objects_are_accepted():
    class Three:
        def __index__(self):
            return 3

    ours, _ = pair()
    assert ours[Three()] == 65 + 3
    assert ours[Three() : 5] == b"DE"
    assert ours[0 : 10 : Three()] == b"ADGJ"


@pytest.mark.parametrize(
    "index,value",
    [(0, 0), (-1, 255), (3, 256), (3, -1), (3, 2**70), (10, 1), (-11, 1), (3, "a"), (3, b"a")],
)
def test_item_assignment_gives_the_decided_answer(index, value):
    ours, data = pair()

    def assign(m):
        m[index] = value
        return m[:]

    want = decided.item_assignment(data, decided.ACCESS_WRITE, False, index, value)
    assert outcome(lambda: assign(ours)) == want


def test_every_slice_assignment_gives_the_decided_answer():
    for start, stop, step in itertools.product(BOUNDS[:-2], BOUNDS[:-2], STEPS[:-2]):
        s = slice(start, stop, step)
        ours, data = pair()
        n = len(range(*s.indices(SIZE)))
        for value in (bytes(range(n)), bytes(n + 1)):

            def assign(m, s=s, value=value):
                m[s] = value
                return m[:]

            want = decided.slice_assignment(data, decided.ACCESS_WRITE, False, s, value)
            assert outcome(lambda o=ours: assign(o)) == want, (s, value)
            ours[:] = data


def test_wrong_size_slice_assignment_raises_index_error():
    ours, _ = pair()
    with pytest.raises(IndexError):
        ours[0:3] = b"ab"
    with pytest.raises(IndexError):
        ours[::2] = b"abc"
    assert ours[:] == bytes(range(65, 65 + SIZE))


def test_slice_assignment_takes_any_bytes_like():
    ours, _ = pair()
    ours[0:3] = bytearray(b"xyz")
    ours[3:6] = memoryview(b"uvw")
    assert ours[0:6] == b"xyzuvw"
    with pytest.raises(TypeError):
        ours[0:3] = "abc"
    with pytest.raises(TypeError):
        ours[0:3] = [1, 2, 3]


def test_item_deletion_raises_type_error():
    ours, _ = pair()
    with pytest.raises(TypeError):
        del ours[0]
    with pytest.raises(TypeError):
        del ours[0:2]


def test_closed_map_refuses_items_and_slices():
    ours, _ = pair()
    ours.close()
    for fn in (lambda: ours[0], lambda: ours[0:2], lambda: ours.__setitem__(0, 1)):
        with pytest.raises(ValueError):
            fn()


def test_large_slices_round_trip():
    size = 4 * 1024 * 1024
    m = mmapfile.mmapfile(None, None, size)
    data = bytes(range(256)) * (size // 256)
    m[:] = data
    assert m[:] == data
    assert m[1::3] == data[1::3]
    m[::-2] = data[: size // 2]
    assert m[::-2] == data[: size // 2]
    m.close()


def test_int_subclass_keys_and_values_act_as_ints():
    # Exact ints take a shorter path than other index objects; both must
    # give the same results.
    class MyInt(int):
        pass

    ours, data = pair()
    ours[MyInt(2)] = MyInt(120)
    ours[True] = 121
    ours[MyInt(4) : MyInt(6)] = b"zz"
    assert ours[:] == data[:1] + bytes([121, 120, 68]) + b"zz" + data[6:]
    assert ours[MyInt(2)] == 120
    assert ours[True] == 121
    assert ours[MyInt(4) : MyInt(6)] == b"zz"
    before = ours[:]
    for value in (MyInt(256), True):
        want = decided.item_assignment(before, decided.ACCESS_WRITE, False, 3, value)
        got = outcome(lambda v=value: (ours.__setitem__(3, v), ours[:])[1])
        assert got == want
    assert ours[:] == before[:3] + b"\x01" + before[4:]


def test_slice_assignment_of_a_bytes_subclass_or_wrong_size_bytes():
    class MyBytes(bytes):
        pass

    ours, data = pair()
    ours[1:3] = MyBytes(b"qq")
    assert ours[:] == data[:1] + b"qq" + data[3:]
    data = ours[:]
    for value in (b"", b"abc", MyBytes(b"abc")):
        want = decided.slice_assignment(data, decided.ACCESS_WRITE, False, slice(1, 3), value)
        assert outcome(lambda v=value: ours.__setitem__(slice(1, 3), v)) == want
