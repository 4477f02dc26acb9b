"""The ten places where mmapfile deliberately improves on pywin32 312, one section each."""

from __future__ import annotations

import array
import errno
import mmap
import os
import sys

import _decided as decided
import mmapfile
import pytest
from conftest import (
    OPEN_BLOCK_FUNC,
    OPEN_FILE_FUNC,
    WINDOWS,
    needs_dev_shm,
    needs_proc,
    open_fds,
    opened_size,
    shm_path,
)
from mmapfile import mmapfile as MapFile

# --- 1. MaximumSize=0 maps exactly the file ------------------------------------------------


@pytest.mark.parametrize("length", [1, 7, 4095, 4097, 10_000])
def test_maximum_size_zero_maps_exactly_the_file(path, length):
    path.write_bytes(b"x" * length)
    m = MapFile(str(path), None)
    assert m.size() == length
    m.seek(0, 2)
    assert m.tell() == length
    assert m.read(-1) == b""
    m.close()


def test_maximum_size_zero_never_grows_or_pads_the_file(path):
    path.write_bytes(b"abc")
    m = MapFile(str(path), None, 0)
    m.write(b"XYZ")
    m.flush()
    m.close()
    assert path.read_bytes() == b"XYZ"


def test_maximum_size_zero_with_an_offset_ends_at_the_end_of_the_file(path):
    path.write_bytes(b"0123456789")
    m = MapFile(str(path), None, 0, 3)
    assert m.size() == 7
    assert m.read(-1) == b"3456789"
    m.close()
    assert path.stat().st_size == 10


# --- 2. find/rfind honour start and end, as decided (tests/_decided.py) -------------------

HAYSTACK = b"abc\0abc\0\0xyzabc"
NEEDLES = [b"abc", b"\0", b"\0\0", b"c\0a", b"", b"zzz", HAYSTACK, HAYSTACK + b"!"]
BOUNDS = [
    (None, None),
    (0, None),
    (1, None),
    (4, None),
    (-3, None),
    (-100, None),
    (100, None),
    (0, 3),
    (0, 2),
    (1, 7),
    (4, -1),
    (-8, -2),
    (5, 2),
    (0, 100),
    (len(HAYSTACK), None),
    (len(HAYSTACK), len(HAYSTACK)),
]


@pytest.fixture
def both():
    """HAYSTACK in one of our mappings, with the position at 0 (the name is
    from when CPython's mmap ran beside it: tests/_decided.py now says what
    every Python must give)."""
    ours = MapFile(None, None, len(HAYSTACK))
    ours.write(HAYSTACK)
    ours.seek(0)
    yield ours, None
    ours.close()


@pytest.mark.parametrize("method", ["find", "rfind"])
@pytest.mark.parametrize("needle", NEEDLES)
@pytest.mark.parametrize(("start", "end"), BOUNDS)
@pytest.mark.parametrize("position", [0, 5])
def test_find_and_rfind_give_the_decided_answer(both, method, needle, start, end, position):
    ours, _ = both
    ours.seek(position)
    expected = decided.search(HAYSTACK, method, needle, start, end, position)
    assert ("ok", getattr(ours, method)(needle, start, end)) == expected
    assert ours.tell() == position


def test_find_returns_an_absolute_index_from_start(both):
    ours, _ = both
    assert ours.find(b"abc", 1) == 4
    assert ours.find(b"abc", 5, 100) == 12
    assert ours.rfind(b"abc", 0, 10) == 4


def test_find_start_defaults_to_the_position(both):
    ours, _ = both
    ours.seek(1)
    assert ours.find(b"abc") == 4
    assert ours.find(b"abc", None, None) == 4


def test_find_end_excludes_a_match_that_crosses_it(both):
    ours, _ = both
    assert ours.find(b"abc", 0, 2) == -1
    assert ours.find(b"abc", 0, 3) == 0


def test_find_negative_indices_count_from_the_end(both):
    ours, _ = both
    assert ours.find(b"abc", -3) == 12
    assert ours.find(b"abc", -4, -1) == -1


def test_find_needles_may_contain_nul_bytes(both):
    ours, _ = both
    assert ours.find(b"\0\0") == 7
    assert ours.find(b"c\0\0x") == 6
    assert ours.find(bytearray(b"\0a")) == 3


# --- 3. readline at the end returns b"" -----------------------------------------------------


def test_readline_at_the_end_returns_empty_bytes():
    m = MapFile(None, None, 6)
    m.write(b"ab\ncd\n")
    m.seek(0)
    assert [m.readline(), m.readline(), m.readline(), m.readline()] == [b"ab\n", b"cd\n", b"", b""]
    assert m.tell() == 6
    m.close()


# --- 4. negative or huge numbers never crash -----------------------------------------------

HUGE = [2**31, 2**32, 2**63 - 1, 2**63, 2**64, 2**100, -(2**63), -(2**64), -(2**100)]
BAD_CALLS = [
    ("move", (1, 1, -1)),
    ("move", (-1, 0, 1)),
    ("move", (0, -1, 1)),
    ("read", (2**64,)),
    ("seek", (2**64,)),
    ("seek", (-(2**64),)),
    ("flush", (-1, 10)),
    ("flush", (0, -2)),  # -1 means to the end (CPython 3.15), tests/test_decided.py
    ("resize", (-1,)),
    ("resize", (10, -1)),
    ("resize", (10, 0, -1)),
    ("resize", (2**64,)),
]
BAD_CALLS += [("move", (n, 0, 1)) for n in HUGE]
BAD_CALLS += [("move", (0, 0, n)) for n in HUGE]
BAD_CALLS += [("seek", (n, how)) for n in HUGE for how in (0, 1, 2)]
BAD_CALLS += [("flush", (n, 0)) for n in HUGE] + [("flush", (0, n)) for n in HUGE]
BAD_CALLS += [("find", (b"a", n, n)) for n in (2**64, -(2**64))]
BAD_CALLS += [("resize", (n,)) for n in (2**64, 2**100)]


@pytest.mark.parametrize(("method", "args"), BAD_CALLS, ids=repr)
def test_negative_or_huge_numbers_raise_and_leave_the_mapping_usable(method, args):
    m = MapFile(None, None, 16)
    m.write(b"0123456789abcdef")
    m.seek(3)
    with pytest.raises((ValueError, OverflowError)):
        getattr(m, method)(*args)
    assert m.size() == 16
    assert m.tell() == 3
    m.seek(0)
    assert m.read(-1) == b"0123456789abcdef"
    m.close()


@pytest.mark.parametrize("size", [2**62, 2**63 - 1, 2**63])
def test_resize_beyond_what_the_os_allows_raises_and_keeps_the_view(size):
    m = MapFile(None, None, 16)
    m.write(b"kept")
    with pytest.raises((ValueError, OverflowError, mmapfile.error)):
        m.resize(size)
    assert m.size() == 16
    m.seek(0)
    assert m.read(4) == b"kept"
    m.close()


@pytest.mark.parametrize("n", HUGE)
def test_read_with_a_huge_count_is_clipped_or_refused(n):
    m = MapFile(None, None, 4)
    try:
        data = m.read(n)
    except OverflowError:
        assert m.tell() == 0
    else:
        assert data == bytes(4)
    m.close()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"MaximumSize": -1},
        {"MaximumSize": 2**64},
        {"MaximumSize": 2**63},
        {"MaximumSize": 10, "FileOffset": -1},
        {"MaximumSize": 10, "FileOffset": 2**64},
        {"MaximumSize": 10, "FileOffset": 2**63},
        {"MaximumSize": 10, "NumberOfBytesToMap": -1},
        {"MaximumSize": 10, "NumberOfBytesToMap": 2**64 - 1},
        {"MaximumSize": 10, "FileOffset": 5, "NumberOfBytesToMap": 2**64 - 5},
    ],
)
def test_negative_or_huge_constructor_arguments_raise(kwargs):
    with pytest.raises((ValueError, OverflowError, mmapfile.error)):
        MapFile(None, None, **kwargs)


# --- 5. write takes any bytes-like object; write_byte takes an int -------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"abcd",
        bytearray(b"abcd"),
        memoryview(b"abcd"),
        memoryview(b"xxabcdxx")[2:6],
        array.array("B", b"abcd"),
    ],
    ids=["bytes", "bytearray", "memoryview", "memoryview-slice", "array"],
)
def test_write_takes_any_bytes_like_object(data):
    m = MapFile(None, None, 8)
    m.write(data)
    assert m.tell() == 4
    m.seek(0)
    assert m.read(4) == b"abcd"
    m.close()


def test_write_of_a_multibyte_array_writes_its_raw_bytes():
    m = MapFile(None, None, 8)
    data = array.array("H", [0x0102, 0x0304])
    m.write(data)
    m.seek(0)
    assert m.read(4) == data.tobytes()
    m.close()


@pytest.mark.parametrize("value", [0, 1, 65, 255])
def test_write_byte_takes_an_int(value):
    m = MapFile(None, None, 2)
    m.write_byte(value)
    m.write_byte(bytearray([value]))
    m.seek(0)
    assert m.read(2) == bytes([value, value])
    m.close()


@pytest.mark.parametrize("value", [-1, 256, 2**64])
def test_write_byte_int_outside_a_byte_raises(value):
    m = MapFile(None, None, 2)
    with pytest.raises((ValueError, OverflowError)):
        m.write_byte(value)
    assert m.tell() == 0
    m.close()


# --- 6. seek(n, 2) with n < 0 means size + n ------------------------------------------------


def test_seek_from_the_end_with_a_negative_distance():
    m = MapFile(None, None, 10)
    m.seek(-3, 2)
    assert m.tell() == 7
    m.seek(-10, 2)
    assert m.tell() == 0
    with pytest.raises(ValueError, match="^seek out of range$"):
        m.seek(-11, 2)
    m.close()


def test_seek_to_exactly_the_end_is_allowed():
    m = MapFile(None, None, 10)
    m.seek(0, 2)
    assert m.tell() == 10
    m.seek(10)
    assert m.tell() == 10
    m.seek(0)
    m.seek(10, 1)
    assert m.tell() == 10
    m.close()


# --- 7. a named block opened without a size -------------------------------------------------


def test_name_without_size_opens_an_existing_block_at_its_size(block_name):
    first = MapFile(None, block_name, 5000)
    first.write(b"shared")
    second = MapFile(None, block_name)
    assert second.size() == opened_size(5000)
    assert second.read(6) == b"shared"
    second.close()
    first.close()


def test_name_without_size_raises_error_when_there_is_no_block(block_name):
    with pytest.raises(mmapfile.error) as info:
        MapFile(None, block_name)
    assert info.value.errno == errno.ENOENT
    assert info.value.funcname == OPEN_BLOCK_FUNC


@needs_dev_shm
def test_name_without_size_does_not_create_a_block(block_name):
    with pytest.raises(mmapfile.error):
        MapFile(None, block_name)
    assert not shm_path(block_name).exists()


# --- 8. FileOffset need not be aligned -------------------------------------------------------


def _offsets():
    g = mmapfile.ALLOCATIONGRANULARITY
    return [1, 3, g - 1, g + 1, 2 * g - 7]


@pytest.mark.parametrize("offset", _offsets())
def test_unaligned_file_offset_views_the_right_bytes(path, offset):
    content = bytes(i % 251 for i in range(3 * mmapfile.ALLOCATIONGRANULARITY))
    path.write_bytes(content)
    m = MapFile(str(path), None, 0, offset, 100)
    assert m.size() == 100
    assert m.read(-1) == content[offset : offset + 100]
    m.seek(0)
    m.write(b"\xff\xfe")
    m.close()
    assert path.read_bytes()[offset : offset + 2] == b"\xff\xfe"


def test_unaligned_offset_on_a_block():
    m = MapFile(None, None, 20, 7)
    assert m.size() == 13
    m.close()


def test_pagesize_and_allocationgranularity_are_exported():
    assert mmapfile.PAGESIZE == mmap.PAGESIZE
    assert mmapfile.ALLOCATIONGRANULARITY == mmap.ALLOCATIONGRANULARITY


# --- 9. mmapfile.error ----------------------------------------------------------------------


def test_error_is_an_oserror_subclass_named_error():
    assert issubclass(mmapfile.error, OSError)
    assert mmapfile.error.__name__ == "error"
    assert mmapfile.error.__module__ == "mmapfile"


def test_error_carries_errno_strerror_and_funcname(tmp_path):
    missing_dir = tmp_path / "no-such-dir" / "file"
    with pytest.raises(OSError) as info:
        MapFile(str(missing_dir), None, 10)
    err = info.value
    assert type(err) is mmapfile.error
    assert err.errno == errno.ENOENT
    assert err.funcname == OPEN_FILE_FUNC
    if WINDOWS:
        # ERROR_PATH_NOT_FOUND; OSError derives errno ENOENT from it.
        assert err.winerror == 3
        assert err.strerror  # the system's text, which depends on its language
        assert str(err).startswith("[WinError 3] ")
    else:
        assert err.strerror == os.strerror(errno.ENOENT)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX errno")
def test_error_for_a_directory_names_the_failing_call(tmp_path):
    with pytest.raises(mmapfile.error) as info:
        MapFile(str(tmp_path), None, 10)
    assert info.value.errno == errno.EISDIR
    assert info.value.funcname == "open"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores modes")
def test_error_from_a_permission_failure(path):
    path.write_bytes(b"abc")
    path.chmod(0o400)
    with pytest.raises(mmapfile.error) as info:
        MapFile(str(path), None)
    assert info.value.errno == errno.EACCES
    assert info.value.funcname == "open"


# --- 10. a failed call leaves nothing behind ----------------------------------------------


@needs_proc
def test_failed_open_of_a_new_empty_file_removes_it_and_closes_it(path):
    before = open_fds()
    with pytest.raises(ValueError, match="^Specified file is empty, and no mapping size given$"):
        MapFile(str(path), None)
    assert not path.exists()
    assert open_fds() == before


@needs_proc
def test_failed_open_with_a_bad_window_removes_the_new_file(path):
    before = open_fds()
    with pytest.raises(ValueError):
        MapFile(str(path), None, 10, 20)
    assert not path.exists()
    assert open_fds() == before


@needs_proc
def test_failed_open_of_an_existing_file_keeps_it_unchanged(path):
    path.write_bytes(b"abc")
    before = open_fds()
    with pytest.raises(ValueError):
        MapFile(str(path), None, 100, 200)
    assert path.read_bytes() == b"abc"
    assert open_fds() == before


@needs_proc
@needs_dev_shm
def test_failed_open_of_a_new_named_block_removes_it(block_name):
    before = open_fds()
    with pytest.raises(ValueError):
        MapFile(None, block_name, 10, 20)
    assert not shm_path(block_name).exists()
    assert open_fds() == before


@needs_proc
def test_failed_open_of_an_existing_named_block_keeps_it(block_name):
    keeper = MapFile(None, block_name, 10)
    keeper.write(b"kept")
    before = open_fds()
    with pytest.raises(ValueError):
        MapFile(None, block_name, 10, 20)
    assert open_fds() == before
    again = MapFile(None, block_name)
    assert again.read(4) == b"kept"
    again.close()
    keeper.close()


@needs_proc
def test_failed_resize_keeps_the_file_and_the_view(path):
    path.write_bytes(b"abc")
    m = MapFile(str(path), None)
    before = open_fds()
    with pytest.raises(ValueError):
        m.resize(100, 200)
    assert open_fds() == before
    assert path.read_bytes() == b"abc"
    assert m.size() == 3
    assert m.read(-1) == b"abc"
    m.close()


@needs_proc
def test_close_releases_the_descriptor(path):
    path.write_bytes(b"abc")
    before = open_fds()
    m = MapFile(str(path), None)
    assert len(open_fds()) == len(before) + 1
    m.close()
    assert open_fds() == before
