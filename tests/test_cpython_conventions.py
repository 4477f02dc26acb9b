"""Conventions of CPython's mmap that mmapfile follows: iteration yields
1-byte bytes, objects can be weakly referenced, and only ACCESS_WRITE maps
can be resized: where every CPython since 3.9 agrees, a test runs the same
steps on CPython's mmap and on ours. Item and slice assignment, where
CPython 3.15 changed the order of the checks, follow the decided table
(tests/_decided.py) on every Python."""

import gc
import mmap
import weakref

import _decided as decided
import mmapfile
import pytest

DATA = b"hello, world\x00\xff"


def outcome(fn):
    """What a call gives: ("ok", value) or ("raised", exception type)."""
    try:
        return ("ok", fn())
    except Exception as e:  # noqa: BLE001 - the type is what is compared
        return ("raised", type(e))


@pytest.fixture
def pair(tmp_path):
    """CPython's mmap and ours, each mapping its own copy of DATA, for an
    access mode: yields a function access -> (theirs, ours)."""
    opened = []

    def open_pair(access=mmap.ACCESS_WRITE):
        theirs_path = tmp_path / f"theirs{len(opened)}"
        ours_path = tmp_path / f"ours{len(opened)}"
        theirs_path.write_bytes(DATA)
        ours_path.write_bytes(DATA)
        with open(theirs_path, "r+b") as f:
            theirs = mmap.mmap(f.fileno(), 0, access=access)
        ours = mmapfile.mmapfile(str(ours_path), None, access=access)
        opened.append((theirs, ours))
        return theirs, ours

    yield open_pair
    for theirs, ours in opened:
        theirs.close()
        ours.close()


# ---- iteration ----


def test_iteration_yields_one_byte_bytes_like_cpython(pair):
    theirs, ours = pair()
    assert list(ours) == list(theirs) == [bytes([b]) for b in DATA]


def test_reversed_yields_one_byte_bytes_like_cpython(pair):
    theirs, ours = pair()
    assert list(reversed(ours)) == list(reversed(theirs)) == [bytes([b]) for b in reversed(DATA)]


@pytest.mark.parametrize(
    "needle", [b"h", b"\x00", b"\xff", b"z", b"he", b"", 104, ord("z"), "h", None]
)
def test_in_compares_items_like_cpython(pair, needle):
    # CPython's mmap has no __contains__: `in` iterates and compares items,
    # so a 1-byte bytes is found, an int or a longer bytes never is.
    theirs, ours = pair()
    assert (needle in ours) == (needle in theirs)
    if needle in (b"h", b"\x00", b"\xff"):
        assert needle in ours


def test_iteration_of_a_closed_map_raises_value_error_like_cpython(pair):
    theirs, ours = pair()
    for m in (theirs, ours):
        forward, backward = iter(m), reversed(m)
        assert next(forward) == b"h"
        assert next(backward) == b"\xff"
        m.close()
        with pytest.raises(ValueError):
            next(forward)
        with pytest.raises(ValueError):
            next(backward)
        # Made after the close, the iterator fails at its first item.
        late = iter(m)
        with pytest.raises(ValueError):
            next(late)
        with pytest.raises(ValueError):
            b"h" in m  # noqa: B015 - the comparison is the call under test


def test_iteration_follows_a_resize_like_cpython(tmp_path):
    # The items are read one at a time at the current size: growing the
    # view during a loop makes the loop go on to the new end.
    results = []
    for make in (
        lambda f, p: mmap.mmap(f.fileno(), 0),
        lambda f, p: mmapfile.mmapfile(str(p), None),
    ):
        path = tmp_path / f"grow{len(results)}"
        path.write_bytes(b"abc")
        with open(path, "r+b") as f:
            m = make(f, path)
            seen = []
            for item in m:
                seen.append(item)
                if len(seen) == 2:
                    m.resize(5)
            m.close()
        results.append(seen)
    assert results[0] == results[1] == [b"a", b"b", b"c", b"\x00", b"\x00"]


def test_indexing_still_gives_ints_like_cpython(pair):
    theirs, ours = pair()
    assert ours[0] == theirs[0] == ord("h")
    assert ours[-1] == theirs[-1] == 0xFF
    assert ours[0:2] == theirs[0:2] == b"he"


# ---- weak references ----


def test_a_map_can_be_weakly_referenced():
    m = mmapfile.mmapfile(None, None, 4096)
    ref = weakref.ref(m)
    assert ref() is m
    proxy = weakref.proxy(m)
    assert len(proxy) == 4096
    m.close()
    del m
    gc.collect()
    assert ref() is None


def test_a_map_lock_can_be_weakly_referenced():
    m = mmapfile.mmapfile(None, None, 4096)
    lock = m.lock()
    ref = weakref.ref(lock)
    assert ref() is lock
    del lock
    gc.collect()
    assert ref() is None
    m.close()


def test_maps_work_as_weak_dictionary_keys():
    cache = weakref.WeakKeyDictionary()
    m = mmapfile.mmapfile(None, None, 4096)
    cache[m] = "meta"
    assert cache[m] == "meta"
    m.close()
    del m
    gc.collect()
    assert len(cache) == 0


# ---- m[i] = v: the order of the checks (tests/_decided.py) ----


class Index:
    def __init__(self, value):
        self.value = value

    def __index__(self):
        return self.value

    def __repr__(self):
        return f"Index({self.value})"


BAD_INDEX = -1 - len(DATA)
INDICES = [0, -1, len(DATA), BAD_INDEX, 2**70, -(2**70), Index(1), Index(len(DATA))]
VALUES = [65, 0, 255, 256, -1, 2**70, -(2**70), True, Index(66), Index(300), b"x", "x", None, 1.5]


@pytest.mark.parametrize("index", INDICES, ids=repr)
@pytest.mark.parametrize("value", VALUES, ids=repr)
@pytest.mark.parametrize("access", [mmap.ACCESS_WRITE, mmap.ACCESS_READ, mmap.ACCESS_COPY])
@pytest.mark.parametrize("closed", [False, True], ids=["open", "closed"])
def test_item_assignment_checks_in_the_decided_order(pair, index, value, access, closed):
    _, ours = pair(access)
    if closed:
        ours.close()

    def assign(m):
        m[index] = value
        return bytes(m[:])

    want = decided.item_assignment(DATA, access, closed, index, value)
    assert outcome(lambda: assign(ours)) == want
    if not closed:
        assert ours[:] == (want[1] if want[0] == "ok" else DATA)


def test_out_of_range_assignment_checks_the_value_first():
    # CPython 3.15's order, on every Python: the value is checked before
    # the bounds (3.13 and 3.14 reported the index first).
    m = mmapfile.mmapfile(None, None, 16)
    for value in (b"x", "x", None, 2**70):
        for index in (len(m), -len(m) - 1):
            with pytest.raises(TypeError):
                m[index] = value
    for value in (300, -1):
        with pytest.raises(ValueError):
            m[len(m)] = value
    with pytest.raises(IndexError):
        m[len(m)] = 1
    assert m[:] == bytes(16)
    m.close()


def test_assignment_to_a_closed_map_checks_the_key_and_value_first():
    m = mmapfile.mmapfile(None, None, 16)
    m.close()
    with pytest.raises(TypeError):
        m[0] = b"x"
    with pytest.raises(TypeError):
        m["a"] = 1
    with pytest.raises(IndexError):
        m[2**70] = 1
    with pytest.raises(ValueError):
        m[0] = 1
    with pytest.raises(ValueError):
        m[0:2] = b"xyz"
    with pytest.raises(TypeError):
        m[0:2] = 5


def test_assignment_to_a_read_only_map_is_refused_first_even_when_closed(tmp_path):
    path = tmp_path / "ro"
    path.write_bytes(DATA)
    m = mmapfile.mmapfile(str(path), None, access=mmapfile.ACCESS_READ)
    for key, value in ((0, 1), (2**70, None), ("a", 1), (slice(0, 2), b"xyz"), (slice(0, 0, 0), 5)):
        with pytest.raises(TypeError):
            m[key] = value
    m.close()
    with pytest.raises(TypeError):
        m[0] = 1
    with pytest.raises(TypeError):
        m[0:2] = b"xy"


@pytest.mark.parametrize(
    "key, value",
    [
        (slice(0, 2), b"xy"),
        (slice(0, 2), b"xyz"),
        (slice(0, 2), 5),
        (slice("a", 2), b"xy"),
        (slice("a", 2), 5),
        (slice(None, None, 2), b"x" * 7),
        (slice(None, None, 0), b""),
    ],
    ids=repr,
)
def test_slice_assignment_checks_in_the_decided_order(pair, key, value):
    _, ours = pair()

    def assign(m):
        m[key] = value
        return bytes(m[:])

    want = decided.slice_assignment(DATA, mmap.ACCESS_WRITE, False, key, value)
    assert outcome(lambda: assign(ours)) == want


# ---- resize ----


@pytest.mark.parametrize("access", [mmap.ACCESS_READ, mmap.ACCESS_COPY])
@pytest.mark.parametrize("new_size", [len(DATA), 2 * len(DATA), 4])
def test_resize_of_a_read_or_copy_map_raises_type_error_like_cpython(pair, access, new_size):
    theirs, ours = pair(access)
    assert outcome(lambda: ours.resize(new_size)) == outcome(lambda: theirs.resize(new_size))
    with pytest.raises(TypeError):
        ours.resize(new_size)
    assert ours.size() == len(DATA)


def test_resize_of_a_copy_map_keeps_its_private_changes(tmp_path):
    path = tmp_path / "data"
    path.write_bytes(DATA)
    m = mmapfile.mmapfile(str(path), None, access=mmapfile.ACCESS_COPY)
    m[0:5] = b"HELLO"
    m.seek(3)
    with pytest.raises(TypeError, match="ACCESS_COPY"):
        m.resize(2 * len(DATA))
    assert m[:] == b"HELLO" + DATA[5:]
    assert m.tell() == 3
    assert path.read_bytes() == DATA
    m.close()


def test_resize_of_a_read_only_named_block_raises_type_error(block_name):
    owner = mmapfile.mmapfile(None, block_name, 4096)
    reader = mmapfile.mmapfile(None, block_name, 0, access=mmapfile.ACCESS_READ)
    with pytest.raises(TypeError):
        reader.resize(8192)
    assert reader.size() == owner.size()
    reader.close()
    owner.close()


def test_resize_of_a_closed_read_only_map_raises_value_error_like_cpython(pair):
    theirs, ours = pair(mmap.ACCESS_READ)
    theirs.close()
    ours.close()
    assert (
        outcome(lambda: ours.resize(4))
        == outcome(lambda: theirs.resize(4))
        == ("raised", ValueError)
    )


def test_resize_of_a_read_only_map_with_an_export_raises_buffer_error_like_cpython(pair):
    theirs, ours = pair(mmap.ACCESS_READ)
    views = [memoryview(theirs), memoryview(ours)]
    assert (
        outcome(lambda: ours.resize(4))
        == outcome(lambda: theirs.resize(4))
        == ("raised", BufferError)
    )
    for v in views:
        v.release()
