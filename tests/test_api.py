"""The pywin32 ``mmapfile`` API: every method, its return type, its messages and its arguments."""

from __future__ import annotations

import os
import pathlib

import mmapfile
import pytest
from mmapfile import mmapfile as MapFile


@pytest.fixture
def m():
    """An unnamed 16-byte block holding b"hello\\nworld\\n\\0\\0\\0\\0", position 0."""
    mapping = MapFile(None, None, 16)
    mapping.write(b"hello\nworld\n")
    mapping.seek(0)
    yield mapping
    mapping.close()


# --- the constructor ---------------------------------------------------------------------


def test_mmapfile_is_the_class_and_instances_are_instances_of_it(m):
    assert isinstance(mmapfile.mmapfile, type)
    assert isinstance(m, mmapfile.mmapfile)
    assert type(m) is mmapfile.mmapfile


def test_constructor_accepts_positional_arguments(path):
    path.write_bytes(b"0123456789")
    m = MapFile(str(path), None, 0, 2, 3)
    assert m.read(-1) == b"234"
    m.close()


def test_constructor_accepts_keyword_arguments(path):
    path.write_bytes(b"0123456789")
    m = MapFile(File=str(path), Name=None, MaximumSize=0, FileOffset=4, NumberOfBytesToMap=2)
    assert m.read(-1) == b"45"
    m.close()


def test_constructor_defaults_map_the_whole_file(path):
    path.write_bytes(b"abc")
    m = MapFile(File=str(path), Name=None)
    assert m.size() == 3
    m.close()


@pytest.mark.parametrize("kind", [str, os.fsencode, pathlib.Path])
def test_file_may_be_str_bytes_or_pathlike(path, kind):
    path.write_bytes(b"contents")
    m = MapFile(kind(str(path)), None)
    assert m.read(-1) == b"contents"
    m.close()


def test_file_and_name_are_required():
    with pytest.raises(TypeError):
        MapFile()
    with pytest.raises(TypeError):
        MapFile(None)
    with pytest.raises(TypeError):
        MapFile(Name=None, MaximumSize=10)


def test_file_of_a_wrong_type_raises_type_error():
    with pytest.raises(TypeError):
        MapFile(5, None, 10)


def test_name_of_a_wrong_type_raises_type_error():
    with pytest.raises(TypeError):
        MapFile(None, 5, 10)


@pytest.mark.parametrize("arg", ["MaximumSize", "FileOffset", "NumberOfBytesToMap"])
def test_size_arguments_of_a_wrong_type_raise_type_error(path, arg):
    path.write_bytes(b"x" * 10)
    with pytest.raises(TypeError):
        MapFile(str(path), None, **{arg: "1"})


def test_unknown_keyword_raises_type_error():
    with pytest.raises(TypeError):
        MapFile(None, None, 10, Size=10)


def test_unnamed_block_without_size_raises_value_error():
    with pytest.raises(ValueError):
        MapFile(None, None)


def test_unnamed_block_has_the_requested_size_and_starts_zeroed():
    m = MapFile(None, None, 100)
    assert m.size() == 100
    assert m.read(-1) == bytes(100)
    m.close()


def test_module_constants():
    assert isinstance(mmapfile.PAGESIZE, int) and mmapfile.PAGESIZE > 0
    assert mmapfile.PAGESIZE & (mmapfile.PAGESIZE - 1) == 0
    assert mmapfile.ALLOCATIONGRANULARITY % mmapfile.PAGESIZE == 0
    assert set(mmapfile.__all__) >= {"mmapfile", "error", "PAGESIZE", "ALLOCATIONGRANULARITY"}


# --- read, read_byte, readline -------------------------------------------------------------


def test_read_returns_bytes_and_advances_the_position(m):
    data = m.read(5)
    assert type(data) is bytes and data == b"hello"
    assert m.tell() == 5


def test_read_is_clipped_to_what_is_left(m):
    m.seek(10)
    assert m.read(100) == b"d\n\0\0\0\0"
    assert m.tell() == 16
    assert m.read(1) == b""


def test_read_negative_reads_the_rest(m):
    m.seek(6)
    assert m.read(-1) == b"world\n\0\0\0\0"
    m.seek(6)
    assert m.read(-100) == b"world\n\0\0\0\0"


def test_read_zero_returns_empty_and_keeps_position(m):
    m.seek(3)
    assert m.read(0) == b""
    assert m.tell() == 3


def test_read_accepts_keyword_and_index_objects(m):
    class Two:
        def __index__(self):
            return 2

    assert m.read(n=2) == b"he"
    assert m.read(Two()) == b"ll"


def test_read_of_a_wrong_type_raises_type_error(m):
    with pytest.raises(TypeError):
        m.read("1")
    with pytest.raises(TypeError):
        m.read(1.0)


def test_read_byte_returns_bytes_of_length_one(m):
    b = m.read_byte()
    assert type(b) is bytes and b == b"h"
    assert m.tell() == 1


def test_read_byte_at_the_end_raises(m):
    m.seek(16)
    with pytest.raises(ValueError, match="^read byte out of range$"):
        m.read_byte()
    assert m.tell() == 16


def test_readline_includes_the_newline(m):
    assert m.readline() == b"hello\n"
    assert m.readline() == b"world\n"
    assert m.tell() == 12


def test_readline_without_newline_returns_the_rest_of_the_view(m):
    m.seek(12)
    assert m.readline() == b"\0\0\0\0"
    assert m.tell() == 16


def test_readline_from_the_middle_of_a_line(m):
    m.seek(3)
    assert m.readline() == b"lo\n"


def test_long_lines_are_read_whole():
    # Lines of 64 KiB and more are copied with the GIL released, by another
    # path than short ones.
    long = b"x" * (256 * 1024) + b"\n"
    m = MapFile(None, None, len(long) + 3)
    m.write(long + b"ab\n")
    m.seek(0)
    assert m.readline() == long
    assert m.readline() == b"ab\n"
    assert m.readline() == b""
    m.seek(5)
    assert m.readline() == long[5:]
    m.close()


# --- write, write_byte ---------------------------------------------------------------------


def test_write_returns_none_and_advances(m):
    assert m.write(b"HE") is None
    assert m.tell() == 2
    m.seek(0)
    assert m.read(5) == b"HEllo"


def test_write_exactly_to_the_end_is_allowed(m):
    m.seek(12)
    m.write(b"1234")
    assert m.tell() == 16
    m.seek(12)
    assert m.read(-1) == b"1234"


def test_write_that_does_not_fit_writes_nothing(m):
    m.seek(12)
    with pytest.raises(ValueError, match="^data out of range$"):
        m.write(b"12345")
    assert m.tell() == 12
    assert m.read(-1) == b"\0\0\0\0"


def test_write_of_a_wrong_type_raises_type_error(m):
    with pytest.raises(TypeError):
        m.write("text")
    with pytest.raises(TypeError):
        m.write(5)
    with pytest.raises(TypeError):
        m.write(None)
    assert m.read(5) == b"hello"


def test_write_byte_returns_none_and_advances(m):
    assert m.write_byte(b"J") is None
    assert m.tell() == 1
    m.seek(0)
    assert m.read(5) == b"Jello"


def test_write_byte_at_the_end_raises(m):
    m.seek(16)
    with pytest.raises(ValueError, match="^write_byte past end of buffer$"):
        m.write_byte(b"x")


def test_write_byte_of_a_wrong_type_raises_type_error(m):
    for bad in (b"ab", b"", "a", None, 1.5):
        with pytest.raises(TypeError):
            m.write_byte(bad)
    assert m.tell() == 0
    assert m.read(5) == b"hello"


# --- seek, tell, size ----------------------------------------------------------------------


def test_seek_from_the_start(m):
    assert m.seek(4) is None
    assert m.tell() == 4
    m.seek(2, 0)
    assert m.tell() == 2


def test_seek_relative_to_the_position(m):
    m.seek(10)
    m.seek(-3, 1)
    assert m.tell() == 7
    m.seek(2, 1)
    assert m.tell() == 9


def test_seek_from_the_end_with_a_positive_distance_moves_back(m):
    m.seek(4, 2)
    assert m.tell() == 12


def test_seek_by_keyword(m):
    m.seek(dist=3, how=0)
    assert m.tell() == 3


def test_seek_unknown_type_raises(m):
    for how in (3, -1, 100):
        with pytest.raises(ValueError, match="^unknown seek type$"):
            m.seek(0, how)


@pytest.mark.parametrize(("dist", "how"), [(-1, 0), (17, 0), (17, 2), (-6, 1), (12, 1)])
def test_seek_out_of_range_raises_and_keeps_the_position(m, dist, how):
    m.seek(5)
    with pytest.raises(ValueError, match="^seek out of range$"):
        m.seek(dist, how)
    assert m.tell() == 5


def test_seek_of_a_wrong_type_raises_type_error(m):
    with pytest.raises(TypeError):
        m.seek("1")
    with pytest.raises(TypeError):
        m.seek(1, "0")


def test_tell_and_size_return_ints(m):
    assert type(m.tell()) is int and type(m.size()) is int
    assert m.size() == 16


# --- find ----------------------------------------------------------------------------------


def test_find_returns_the_index_or_minus_one_and_keeps_the_position(m):
    assert m.find(b"world") == 6
    assert m.find(b"absent") == -1
    assert m.tell() == 0


def test_find_starts_at_the_position_by_default(m):
    m.seek(7)
    assert m.find(b"o") == 7
    assert m.find(b"hello") == -1
    assert m.tell() == 7


def test_find_accepts_keywords(m):
    assert m.find(needle=b"l", start=4) == 9
    assert m.find(b"l", start=0, end=3) == 2


def test_find_of_a_wrong_type_raises_type_error(m):
    with pytest.raises(TypeError):
        m.find("hello")
    with pytest.raises(TypeError):
        m.find(b"hello", "0")


# --- move ----------------------------------------------------------------------------------


def test_move_copies_inside_the_view(m):
    assert m.move(12, 0, 4) is None
    m.seek(12)
    assert m.read(4) == b"hell"
    assert m.tell() == 16


def test_move_with_overlap_behaves_like_memmove(m):
    m.move(1, 0, 5)
    m.seek(0)
    assert m.read(6) == b"hhello"


def test_move_out_of_range_raises(m):
    for args in ((12, 0, 5), (0, 12, 5), (17, 0, 0), (0, 17, 0)):
        with pytest.raises(ValueError, match="^source or destination out of range$"):
            m.move(*args)
    assert m.read(12) == b"hello\nworld\n"


def test_move_of_a_wrong_type_raises_type_error(m):
    with pytest.raises(TypeError):
        m.move("1", 0, 1)
    with pytest.raises(TypeError):
        m.move(1, 0)


# --- flush ---------------------------------------------------------------------------------


def test_flush_returns_one(m, path):
    assert m.flush() == 1
    assert m.flush(0, 0) == 1
    assert m.flush(offset=4, size=8) == 1
    assert m.flush(16, 0) == 1


def test_flush_out_of_range_raises(m):
    for args in ((17, 0), (0, 17), (10, 7), (-1, 0), (0, -2), (17, -1)):
        with pytest.raises(ValueError, match="^flush values out of range$"):
            m.flush(*args)


# --- resize --------------------------------------------------------------------------------


def test_resize_returns_none_and_changes_the_size(path):
    path.write_bytes(b"abc")
    m = MapFile(str(path), None)
    assert m.resize(10) is None
    assert m.size() == 10
    assert m.read(-1) == b"abc" + bytes(7)
    m.close()


def test_resize_accepts_keywords(path):
    path.write_bytes(b"0123456789")
    m = MapFile(str(path), None)
    m.resize(MaximumSize=10, FileOffset=2, NumberOfBytesToMap=5)
    assert m.read(-1) == b"23456"
    m.close()


def test_resize_keeps_the_position_inside_the_view(m):
    m.seek(16)
    m.resize(32)
    assert m.tell() == 16
    m.resize(8)
    assert m.size() == 8
    assert m.tell() == 8
    assert m.read(-1) == b""


# --- close ---------------------------------------------------------------------------------


def test_close_returns_none_and_may_be_called_twice(m):
    assert m.close() is None
    assert m.close() is None


CLOSED_CALLS = [
    ("read", (1,)),
    ("read_byte", ()),
    ("readline", ()),
    ("write", (b"x",)),
    ("write_byte", (b"x",)),
    ("seek", (0,)),
    ("tell", ()),
    ("size", ()),
    ("find", (b"x",)),
    ("rfind", (b"x",)),
    ("move", (0, 1, 1)),
    ("flush", ()),
    ("resize", (32,)),
]


@pytest.mark.parametrize(("method", "args"), CLOSED_CALLS, ids=[c[0] for c in CLOSED_CALLS])
def test_every_method_after_close_raises(m, method, args):
    m.close()
    with pytest.raises(ValueError, match="^mmapfile closed or invalid$"):
        getattr(m, method)(*args)


WRONG_TYPES = [
    ("read", ("1",)),
    ("read", (1.0,)),
    ("write", ("text",)),
    ("write", ([1, 2],)),
    ("write_byte", (b"ab",)),
    ("write_byte", ("a",)),
    ("seek", (1.0,)),
    ("seek", (0, None)),
    ("find", ("h",)),
    ("find", (b"h", 1.5)),
    ("find", (b"h", 0, "9")),
    ("rfind", ("h",)),
    ("move", (0, 1, "1")),
    ("move", (None, 1, 1)),
    ("flush", ("0",)),
    ("flush", (0, 1.0)),
    ("resize", ("32",)),
    ("resize", (32, "0")),
    ("resize", (32, 0, 1.5)),
]


@pytest.mark.parametrize(("method", "args"), WRONG_TYPES, ids=repr)
def test_wrong_argument_types_raise_type_error_and_change_nothing(m, method, args):
    m.seek(2)
    with pytest.raises(TypeError):
        getattr(m, method)(*args)
    assert m.tell() == 2
    assert m.size() == 16
    m.seek(0)
    assert m.read(-1) == b"hello\nworld\n\0\0\0\0"


def test_file_with_a_name_maps_the_file(path, block_name):
    m = MapFile(str(path), block_name, 10)
    m.write(b"file")
    m.close()
    assert path.read_bytes() == b"file" + bytes(6)
    with pytest.raises(mmapfile.error):
        MapFile(None, block_name)


@pytest.mark.parametrize("name", ["tell", "read_byte", "readline"])
def test_no_argument_methods_have_signatures_and_check_self_and_arguments(m, name):
    method = getattr(MapFile, name)
    assert method.__text_signature__ == "($self)"
    assert method.__name__ == name
    assert method.__qualname__ == f"mmapfile.{name}"
    with pytest.raises(TypeError):
        method(object())
    with pytest.raises(TypeError):
        getattr(m, name)(1)
