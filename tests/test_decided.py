"""mmapfile gives the decided behaviour (tests/_decided.py: CPython 3.15's
`mmap`) on every Python; on CPython 3.15 and later, so does the running `mmap`,
which keeps the tables honest."""

import itertools
import mmap
import sys

import _decided as decided
import mmapfile
import pytest

DATA = b"hello, world\x00\xff"
N = len(DATA)


class Index:
    def __init__(self, value):
        self.value = value

    def __index__(self):
        return self.value

    def __repr__(self):
        return f"Index({self.value})"


INDICES = [0, -1, N, -N - 1, 2**63 - 1, 2**70, -(2**70), True, Index(1), Index(N), "a", 1.5, None]
VALUES = [65, 0, 255, 256, -1, 2**70, -(2**70), True, Index(66), Index(300)]
VALUES += [b"x", b"", "x", None, 1.5, bytearray(b"x")]
SLICES = [
    slice(0, 2),
    slice(None),
    slice(None, None, 2),
    slice(None, None, -3),
    slice(None, None, 0),
    slice(20, 30),
    slice(-100, 2),
    slice(2**70, None),
    slice(None, None, 2**70),
    slice(Index(1), Index(3)),
    slice("a", 2),
    slice(0, 2, 1.5),
]
SLICE_VALUES = [b"xy", b"xyz", b"x" * 7, b"", bytearray(b"xy"), memoryview(b"xy"), "xy", 5, None]
ACCESS = {"read": mmap.ACCESS_READ, "write": mmap.ACCESS_WRITE, "copy": mmap.ACCESS_COPY}
MAKERS = {"mmapfile": None}
if sys.version_info >= (3, 15):
    MAKERS["CPython mmap"] = None


def make(kind, tmp_path, access, closed):
    path = tmp_path / "data"
    path.write_bytes(DATA)
    if kind == "mmapfile":
        m = mmapfile.mmapfile(str(path), None, access=access)
    else:
        with open(path, "r+b") as f:
            m = mmap.mmap(f.fileno(), 0, access=access)
    if closed:
        m.close()
    return m


def outcome(fn):
    try:
        return ("ok", fn())
    except Exception as e:  # noqa: BLE001 - the type is what is compared
        return ("raised", type(e))


def contents(m):
    return bytes(m[:]) if not m.closed else None


@pytest.fixture(params=list(MAKERS))
def kind(request):
    return request.param


def assignment_failures(kind, tmp_path, access, closed, cases, decide):
    """Every (key, value) of cases assigned to a fresh map, against what
    decide(data, access, closed, key, value) says; returns the mismatches.
    A refused assignment must change nothing."""
    failures = []
    for key, value in cases:
        m = make(kind, tmp_path, ACCESS[access], closed)

        def assign(m=m, key=key, value=value):
            m[key] = value
            return contents(m)

        got = outcome(assign)
        want = decide(DATA, ACCESS[access], closed, key, value)
        if got != want:
            failures.append((key, value, got, want))
        if not closed:
            assert contents(m) == (want[1] if want[0] == "ok" else DATA)
            m.close()
    return failures


@pytest.mark.parametrize("access", list(ACCESS))
@pytest.mark.parametrize("closed", [False, True], ids=["open", "closed"])
def test_item_assignment_follows_the_decided_table(kind, tmp_path, access, closed):
    cases = itertools.product(INDICES, VALUES)
    failures = assignment_failures(kind, tmp_path, access, closed, cases, decided.item_assignment)
    assert failures == []


@pytest.mark.parametrize("access", list(ACCESS))
@pytest.mark.parametrize("closed", [False, True], ids=["open", "closed"])
def test_slice_assignment_follows_the_decided_table(kind, tmp_path, access, closed):
    cases = itertools.product(SLICES, SLICE_VALUES)
    failures = assignment_failures(kind, tmp_path, access, closed, cases, decided.slice_assignment)
    assert failures == []


@pytest.mark.parametrize("closed", [False, True], ids=["open", "closed"])
def test_item_and_slice_reads_follow_the_decided_table(kind, tmp_path, closed):
    failures = []
    for key in INDICES + SLICES:
        m = make(kind, tmp_path, mmap.ACCESS_READ, closed)
        got, want = outcome(lambda m=m, key=key: m[key]), decided.item_read(DATA, closed, key)
        if got != want:
            failures.append((key, got, want))
        m.close()
    assert failures == []


SEARCH_BOUNDS = [None, 0, 3, N - 1, N, N + 1, N + 5, -1, -N, -N - 5, 2**63 - 1, -(2**63), 2**70]
NEEDLES = [b"", b"o", b"l", b"world", b"zz", b"\xff", bytearray(b"o"), memoryview(b"l")]


@pytest.mark.parametrize("method", ["find", "rfind"])
@pytest.mark.parametrize("position", [0, 5, N])
def test_find_and_rfind_follow_the_decided_table(kind, tmp_path, method, position):
    m = make(kind, tmp_path, mmap.ACCESS_READ, False)
    m.seek(position)
    failures = []
    for needle, start, end in itertools.product(NEEDLES, SEARCH_BOUNDS, SEARCH_BOUNDS):
        if kind != "mmapfile" and decided.cpython_ignores_end(start, end):
            continue
        args = (needle, start, end)
        got = outcome(lambda args=args: getattr(m, method)(*args))
        want = decided.search(DATA, method, needle, start, end, position)
        if got != want:
            failures.append((needle, start, end, got, want))
        assert m.tell() == position
    m.close()
    assert failures == []


def test_find_takes_none_for_its_bounds_on_every_python():
    m = mmapfile.mmapfile(None, None, 16)
    m[:5] = b"abcab"
    m.seek(1)
    assert m.find(b"ab", None, None) == 3
    assert m.rfind(b"ab", None, 4) == -1
    assert m.find(b"ab", 0, None) == 0
    m.close()


def test_find_of_an_empty_needle_past_the_end_finds_nothing():
    m = mmapfile.mmapfile(None, None, 16)
    assert m.find(b"", 16) == 16
    assert m.find(b"", 17) == -1
    assert m.rfind(b"", 17, 20) == -1
    m.close()


@pytest.mark.parametrize("size", [0, -1])
def test_flush_size_0_or_minus_1_flushes_to_the_end(tmp_path, size):
    assert decided.flush_size_means_to_the_end(size)
    path = tmp_path / "f"
    path.write_bytes(bytes(8192))
    m = mmapfile.mmapfile(str(path), None)
    m[4096:4100] = b"tail"
    assert m.flush(4096, size) == 1
    assert path.read_bytes()[4096:4100] == b"tail"
    with pytest.raises(ValueError):
        m.flush(0, -2)
    m.close()
