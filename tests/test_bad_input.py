"""Every method, and the constructor, answers bad arguments with ValueError,
TypeError, OverflowError, IndexError or BufferError: never a crash, and the
mapping's bytes (and position) are left as they were.

bool is an int in Python (as for CPython's mmap), so a bool argument must
behave exactly like the int it equals; that is checked separately."""

import glob
import os
import sys

import mmapfile
import pytest
from conftest import shm_path

ORIGINAL = bytes(range(256)) * 2
START_POS = 10
ALLOWED = (ValueError, TypeError, OverflowError, IndexError, BufferError)

HAS_ITEMS = hasattr(mmapfile.mmapfile, "__getitem__")

BAD_INTS = [
    -1,
    -(2**63) - 1,
    2**63,
    2**64,
    2**70,
    -(2**70),
    1.5,
    float("nan"),
    None,
    "3",
    b"3",
    [1],
    object(),
]

# Where an integer goes in each call: (label, call).
INT_SLOTS = [
    ("read(v)", lambda m, v: m.read(v)),
    ("seek(v)", lambda m, v: m.seek(v)),
    ("seek(v, 1)", lambda m, v: m.seek(v, 1)),
    ("seek(v, 2)", lambda m, v: m.seek(v, 2)),
    ("seek(0, v)", lambda m, v: m.seek(0, v)),
    ("find(n, v)", lambda m, v: m.find(b"\x05", v)),
    ("find(n, 0, v)", lambda m, v: m.find(b"\x05", 0, v)),
    ("rfind(n, v)", lambda m, v: m.rfind(b"\x05", v)),
    ("rfind(n, 0, v)", lambda m, v: m.rfind(b"\x05", 0, v)),
    ("move(v, 0, 4)", lambda m, v: m.move(v, 0, 4)),
    ("move(0, v, 4)", lambda m, v: m.move(0, v, 4)),
    ("move(0, 4, v)", lambda m, v: m.move(0, 4, v)),
    ("flush(v)", lambda m, v: m.flush(v)),
    ("flush(0, v)", lambda m, v: m.flush(0, v)),
    ("resize(v)", lambda m, v: m.resize(v)),
    ("resize(0, v)", lambda m, v: m.resize(0, v)),
    ("resize(0, 0, v)", lambda m, v: m.resize(0, 0, v)),
    ("write_byte(v)", lambda m, v: m.write_byte(v)),
]
if HAS_ITEMS:
    INT_SLOTS += [
        ("m[v]", lambda m, v: m[v]),
        ("m[v] = 1", lambda m, v: m.__setitem__(v, 1)),
        ("m[0] = v", lambda m, v: m.__setitem__(0, v)),
        ("m[v:4]", lambda m, v: m[v:4]),
        ("m[0:v]", lambda m, v: m[0:v]),
    ]

# Calls that are legitimately accepted for a value in BAD_INTS (slice-style
# negative indices and "all of it" defaults, as CPython's mmap).
LEGITIMATE = {
    (label, repr(value))
    for label, value in [
        ("read(v)", -1),
        ("read(v)", None),
        ("seek(v, 1)", -1),
        ("seek(v, 2)", -1),
        ("find(n, v)", -1),
        ("find(n, v)", None),
        ("find(n, 0, v)", -1),
        ("find(n, 0, v)", None),
        ("rfind(n, v)", -1),
        ("rfind(n, v)", None),
        ("rfind(n, 0, v)", -1),
        ("rfind(n, 0, v)", None),
        ("m[v]", -1),
        ("flush(0, v)", -1),  # to the end, as CPython 3.15 (tests/_decided.py)
        ("m[v:4]", -1),
        ("m[v:4]", None),
        ("m[v:4]", -(2**63) - 1),
        ("m[v:4]", -(2**70)),
        ("m[v:4]", 2**63),
        ("m[v:4]", 2**64),
        ("m[v:4]", 2**70),
        ("m[0:v]", -1),
        ("m[0:v]", None),
        ("m[0:v]", -(2**63) - 1),
        ("m[0:v]", -(2**70)),
        ("m[0:v]", 2**63),
        ("m[0:v]", 2**64),
        ("m[0:v]", 2**70),
    ]
}

BAD_BYTES = [None, 1, -1, 2**70, 1.5, "abc", [1, 2], object(), memoryview(b"abcdef")[::2]]
BYTES_SLOTS = [
    ("write(v)", lambda m, v: m.write(v)),
    ("write(too long)", lambda m, v: m.write(b"x" * (len(ORIGINAL) - START_POS + 1))),
    ("find(v)", lambda m, v: m.find(v)),
    ("rfind(v)", lambda m, v: m.rfind(v)),
    ("write_byte(b'ab')", lambda m, v: m.write_byte(b"ab")),
    ("write_byte(256)", lambda m, v: m.write_byte(256)),
]

NO_ARG_METHODS = ["read_byte", "readline", "tell", "size", "close"]


@pytest.fixture
def mapped(tmp_path):
    """A file-backed map of ORIGINAL with the position at START_POS. The
    file is the witness: it must still hold ORIGINAL afterwards."""
    path = tmp_path / "data.bin"
    path.write_bytes(ORIGINAL)
    made = []

    def make():
        # Windows refuses to truncate a file while a view of it is mapped.
        for old in made:
            old.close()
        path.write_bytes(ORIGINAL)
        m = mmapfile.mmapfile(str(path), None)
        m.seek(START_POS)
        made.append(m)
        return m

    yield make, path
    for m in made:
        m.close()


def outcome(call, m, v):
    try:
        result = call(m, v)
    except ALLOWED as e:
        return ("raised", type(e))
    return ("ok", result)


def assert_untouched(m, path):
    assert path.read_bytes()[: len(ORIGINAL)] == ORIGINAL


@pytest.mark.parametrize("value", BAD_INTS, ids=repr)
@pytest.mark.parametrize("label,call", INT_SLOTS, ids=[s[0] for s in INT_SLOTS])
def test_bad_integer_argument_raises_and_changes_nothing(mapped, label, call, value):
    make, path = mapped
    m = make()
    got = outcome(call, m, value)
    if (label, repr(value)) == ("write_byte(v)", "b'3'"):
        # A byte string of length 1 is write_byte's other accepted form.
        assert got == ("ok", None)
        assert path.read_bytes()[START_POS] == ord("3")
        return
    if (label, repr(value)) == ("m[v] = 1", "-1"):
        # A negative index counts from the end, as in CPython's mmap.
        assert got == ("ok", None)
        assert path.read_bytes()[len(ORIGINAL) - 1] == 1
        return
    if (label, repr(value)) in LEGITIMATE:
        assert got[0] == "ok", got
    else:
        assert got[0] == "raised", f"{label} with {value!r} returned {got[1]!r}"
        assert m.tell() == START_POS
        assert m.size() == len(ORIGINAL)
    assert_untouched(m, path)


@pytest.mark.parametrize("value", [True, False])
@pytest.mark.parametrize("label,call", INT_SLOTS, ids=[s[0] for s in INT_SLOTS])
def test_bool_argument_behaves_as_the_int_it_equals(mapped, label, call, value):
    make, path = mapped
    m = make()
    got = outcome(call, m, value)
    after = (path.read_bytes(), m.tell(), m.size())
    m2 = make()
    expected = outcome(call, m2, int(value))
    assert got == expected
    assert (path.read_bytes(), m2.tell(), m2.size()) == after


@pytest.mark.parametrize("value", BAD_BYTES, ids=repr)
@pytest.mark.parametrize("label,call", BYTES_SLOTS, ids=[s[0] for s in BYTES_SLOTS])
def test_bad_bytes_argument_raises_and_changes_nothing(mapped, label, call, value):
    make, path = mapped
    m = make()
    with pytest.raises(ALLOWED):
        call(m, value)
    assert m.tell() == START_POS
    assert_untouched(m, path)


@pytest.mark.parametrize("method", NO_ARG_METHODS)
def test_unexpected_arguments_raise_type_error(mapped, method):
    make, path = mapped
    m = make()
    with pytest.raises(TypeError):
        getattr(m, method)(1)
    with pytest.raises(TypeError):
        getattr(m, method)(bogus=1)
    assert m.tell() == START_POS
    assert_untouched(m, path)


class _Hook:
    """An integer whose conversion runs arbitrary code first."""

    def __init__(self, action, value=0):
        self.action = action
        self.value = value

    def __index__(self):
        self.action()
        return self.value


@pytest.mark.parametrize("label,call", INT_SLOTS, ids=[s[0] for s in INT_SLOTS])
def test_index_that_closes_the_map_gives_value_error(mapped, label, call):
    make, path = mapped
    m = make()
    ran = []
    hook = _Hook(lambda: (ran.append(1), m.close()))
    with pytest.raises(ALLOWED) as info:
        call(m, hook)
    if ran:
        assert info.type is ValueError
        with pytest.raises(ValueError):
            m.tell()
    else:
        # write_byte takes ints and bytes only, not any __index__ object.
        assert label == "write_byte(v)" and info.type is TypeError
    assert_untouched(m, path)


@pytest.mark.parametrize("label,call", INT_SLOTS, ids=[s[0] for s in INT_SLOTS])
def test_index_that_resizes_the_map_is_safe(mapped, label, call):
    make, path = mapped
    m = make()
    bigger = 3 * len(ORIGINAL)
    ran = []
    hook = _Hook(lambda: (ran.append(1), m.resize(bigger)))
    # The call then works on the new, larger view: whatever it does, it does
    # within bounds, and the original bytes are still there.
    try:
        result = call(m, hook)
    except ALLOWED:
        result = None
    data = path.read_bytes()
    assert len(data) == (bigger if ran else len(ORIGINAL))
    if label == "m[v] = 1":
        # The one call here that writes where the hook's value says.
        assert data[0] == 1 and data[1 : len(ORIGINAL)] == ORIGINAL[1:], result
    elif label == "write_byte(v)":
        # write_byte takes any __index__ object; the hook's value 0 lands at
        # the position.
        expected = bytearray(ORIGINAL)
        expected[START_POS] = 0
        assert data[: len(ORIGINAL)] == expected, result
    else:
        assert data[: len(ORIGINAL)] == ORIGINAL, result
    assert data[len(ORIGINAL) :] == bytes(len(data) - len(ORIGINAL))


@pytest.mark.skipif(not HAS_ITEMS, reason="no buffer protocol in this build yet")
@pytest.mark.parametrize("label,call", INT_SLOTS, ids=[s[0] for s in INT_SLOTS])
def test_index_that_exports_the_buffer_blocks_only_close_and_resize(mapped, label, call):
    make, path = mapped
    m = make()
    views = []
    try:
        call(m, _Hook(lambda: views.append(memoryview(m))))
    except ALLOWED:
        pass
    with pytest.raises(BufferError):
        m.close()
    for v in views:
        v.release()
    if label == "m[v] = 1":
        # The hook's value is 0, so this call legitimately wrote 1 there.
        assert path.read_bytes()[0] == 1 and m[0] == 1
        m[0] = ORIGINAL[0]
    elif label == "write_byte(v)":
        # The hook's value 0 was written at the position, which moved on.
        assert m[START_POS] == 0 and m.tell() == START_POS + 1
        m[START_POS] = ORIGINAL[START_POS]
        m.seek(START_POS)
    assert_untouched(m, path)


# --- constructor ---------------------------------------------------------------


NAME = f"bad-input-{os.getpid()}"


def shm_entries():
    # Only the names these cases use: other test runs on the machine make
    # and remove blocks of their own meanwhile.
    return sorted(glob.glob(f"{shm_path(NAME)}*"))


CONSTRUCTOR_CASES = [
    # (id, args builder taking the file's path, kwargs, expected exception)
    ("negative size", lambda p: (p, None, -1), {}, OverflowError),
    ("size 2**64", lambda p: (p, None, 2**64), {}, OverflowError),
    ("size 2**70", lambda p: (p, None, 2**70), {}, OverflowError),
    ("float size", lambda p: (p, None, 1.5), {}, TypeError),
    ("str size", lambda p: (p, None, "10"), {}, TypeError),
    ("None size", lambda p: (p, None, None), {}, TypeError),
    ("negative offset", lambda p: (p, None, 0, -1), {}, OverflowError),
    ("offset 2**64", lambda p: (p, None, 0, 2**64), {}, OverflowError),
    ("offset at the end", lambda p: (p, None, 0, len(ORIGINAL)), {}, ValueError),
    ("offset past the end", lambda p: (p, None, 0, 10 * len(ORIGINAL)), {}, ValueError),
    ("offset 2**63", lambda p: (p, None, 0, 2**63), {}, ValueError),
    ("length past the end", lambda p: (p, None, 0, 1, len(ORIGINAL)), {}, ValueError),
    ("length 2**63", lambda p: (p, None, 0, 0, 2**63), {}, ValueError),
    ("negative length", lambda p: (p, None, 0, 0, -1), {}, OverflowError),
    ("NUL in path", lambda p: (p + "\0x", None), {}, ValueError),
    ("path is an int", lambda p: (12345, None), {}, TypeError),
    ("path is a float", lambda p: (1.5, None), {}, TypeError),
    ("name with /", lambda p: (None, "a/b", 4096), {}, ValueError),
    ("name with NUL", lambda p: (None, "a\0b", 4096), {}, ValueError),
    ("name of 10000 chars", lambda p: (None, "n" * 10000, 4096), {}, ValueError),
    ("empty name after its prefix", lambda p: (None, "Local\\", 4096), {}, ValueError),
    ("name is bytes", lambda p: (None, b"abc", 4096), {}, TypeError),
    ("unnamed size 0", lambda p: (None, None, 0), {}, ValueError),
    ("unnamed negative size", lambda p: (None, None, -5), {}, OverflowError),
    ("unnamed offset past the end", lambda p: (None, None, 4096, 8192), {}, ValueError),
    ("missing name, size 0", lambda p: (None, NAME, 0), {}, mmapfile.error),
    ("named offset past the end", lambda p: (None, NAME, 4096, 4096), {}, ValueError),
    ("bad access", lambda p: (p, None), {"access": 99}, ValueError),
    ("access is str", lambda p: (p, None), {"access": "w"}, TypeError),
    ("access 2**70", lambda p: (p, None), {"access": 2**70}, OverflowError),
    ("bad mode", lambda p: (None, NAME, 4096), {"mode": 0o170000}, ValueError),
    ("negative mode", lambda p: (None, NAME, 4096), {"mode": -1}, OverflowError),
    ("create for a file", lambda p: (p, None), {"create": True}, ValueError),
    ("create is str", lambda p: (None, NAME, 4096), {"create": "yes"}, TypeError),
    ("grow read-only", lambda p: (p, None, 10**6), {"access": mmapfile.ACCESS_READ}, ValueError),
    ("unknown keyword", lambda p: (p, None), {"bogus": 1}, TypeError),
    ("too many arguments", lambda p: (p, None, 0, 0, 0, 0), {}, TypeError),
]


@pytest.mark.parametrize(
    "args,kwargs,exc", [c[1:] for c in CONSTRUCTOR_CASES], ids=[c[0] for c in CONSTRUCTOR_CASES]
)
def test_bad_constructor_arguments_raise_and_leave_nothing_behind(tmp_path, args, kwargs, exc):
    path = tmp_path / "data.bin"
    path.write_bytes(ORIGINAL)
    files_before = sorted(os.listdir(tmp_path))
    shm_before = shm_entries()
    with pytest.raises(exc):
        mmapfile.mmapfile(*args(str(path)), **kwargs)
    assert sorted(os.listdir(tmp_path)) == files_before
    assert path.read_bytes() == ORIGINAL
    if sys.platform.startswith("linux"):
        assert shm_entries() == shm_before


def test_constructor_index_hook_that_fails_leaves_nothing_behind(tmp_path):
    path = tmp_path / "new.bin"

    def boom():
        raise OverflowError("from __index__")

    with pytest.raises(OverflowError):
        mmapfile.mmapfile(str(path), None, _Hook(boom))
    assert not path.exists()
