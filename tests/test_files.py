"""File-backed mappings: what ends up on disk, growth, windows, and failures."""

from __future__ import annotations

import os

import mmapfile
import pytest
from conftest import needs_proc, open_fds
from mmapfile import mmapfile as MapFile

G = mmapfile.ALLOCATIONGRANULARITY


def test_missing_file_is_created_with_maximum_size_zero_filled(path):
    m = MapFile(str(path), None, 100)
    assert path.exists()
    assert path.stat().st_size == 100
    assert m.read(-1) == bytes(100)
    m.close()
    assert path.read_bytes() == bytes(100)


def test_written_bytes_are_in_the_file_after_flush_and_close(path):
    m = MapFile(str(path), None, 12)
    m.write(b"hello ")
    m.write_byte(b"w")
    m.write(bytearray(b"orld"))
    m.write_byte(ord("!"))
    assert m.flush() == 1
    m.close()
    assert path.read_bytes() == b"hello world!"


def test_written_bytes_are_visible_through_ordinary_reads_before_close(path):
    m = MapFile(str(path), None, 5)
    m.write(b"abcde")
    m.flush()
    with open(path, "rb") as f:
        assert f.read() == b"abcde"
    m.close()


def test_flush_of_a_part_writes_that_part(path):
    m = MapFile(str(path), None, 3 * G)
    m.seek(G + 5)
    m.write(b"middle")
    assert m.flush(G, G) == 1
    m.close()
    data = path.read_bytes()
    assert data[G + 5 : G + 11] == b"middle"
    assert len(data) == 3 * G


def test_maximum_size_larger_than_the_file_grows_it_with_zeros(path):
    path.write_bytes(b"abc")
    m = MapFile(str(path), None, 10)
    assert m.size() == 10
    assert m.read(-1) == b"abc" + bytes(7)
    m.close()
    assert path.read_bytes() == b"abc" + bytes(7)


def test_maximum_size_smaller_than_the_file_maps_a_prefix_and_keeps_the_file(path):
    path.write_bytes(b"0123456789")
    m = MapFile(str(path), None, 4)
    assert m.size() == 4
    assert m.read(-1) == b"0123"
    m.close()
    assert path.read_bytes() == b"0123456789"


def test_two_mappings_of_one_file_see_each_others_writes(path):
    path.write_bytes(bytes(8))
    a = MapFile(str(path), None)
    b = MapFile(str(path), None)
    a.write(b"ping")
    assert b.read(4) == b"ping"
    b.write(b"pong")
    a.seek(4)
    assert a.read(4) == b"pong"
    a.close()
    b.close()


@pytest.mark.parametrize(
    ("offset", "length"),
    [(0, 0), (0, 1), (1, 0), (1, 10), (G - 1, 2), (G, 0), (G, G), (G + 1, G - 1), (3 * G - 1, 1)],
)
def test_window_shows_offset_to_offset_plus_length(path, offset, length):
    content = os.urandom(3 * G)
    path.write_bytes(content)
    m = MapFile(str(path), None, 0, offset, length)
    expected = content[offset : offset + length] if length else content[offset:]
    assert m.size() == len(expected)
    assert m.read(-1) == expected
    assert m.find(expected[-1:], 0) == expected.index(expected[-1:])
    m.close()


def test_writes_through_an_unaligned_window_land_at_the_offset(path):
    path.write_bytes(bytes(2 * G))
    m = MapFile(str(path), None, 0, G + 3, 4)
    m.write(b"WXYZ")
    with pytest.raises(ValueError, match="^data out of range$"):
        m.write(b"!")
    m.close()
    data = path.read_bytes()
    assert data[G + 3 : G + 7] == b"WXYZ"
    assert data.count(0) == 2 * G - 4


def test_window_with_growth_maps_inside_the_new_size(path):
    m = MapFile(str(path), None, 2 * G, G + 1, 10)
    assert m.size() == 10
    m.write(b"x" * 10)
    m.close()
    data = path.read_bytes()
    assert len(data) == 2 * G
    assert data[G + 1 : G + 11] == b"x" * 10


@pytest.mark.parametrize(
    ("maximum", "offset", "length"),
    [(0, 10, 0), (0, 11, 0), (0, 0, 11), (0, 5, 6), (5, 5, 0), (5, 0, 6)],
)
def test_window_outside_the_mapping_raises_value_error(path, maximum, offset, length):
    path.write_bytes(b"0123456789")
    with pytest.raises(ValueError):
        MapFile(str(path), None, maximum, offset, length)
    assert path.read_bytes() == b"0123456789"


def test_empty_file_without_size_raises(path):
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="^Specified file is empty, and no mapping size given$"):
        MapFile(str(path), None)
    assert path.exists()
    assert path.stat().st_size == 0


def test_empty_file_with_a_size_is_grown(path):
    path.write_bytes(b"")
    m = MapFile(str(path), None, 7)
    m.close()
    assert path.stat().st_size == 7


def test_resize_grows_the_file_and_keeps_data_and_position(path):
    m = MapFile(str(path), None, 10)
    m.write(b"0123456789")
    m.seek(4)
    m.resize(3 * G)
    assert m.size() == 3 * G
    assert m.tell() == 4
    assert m.read(6) == b"456789"
    m.seek(0, 2)
    m.seek(-1, 1)
    m.write(b"E")
    m.close()
    data = path.read_bytes()
    assert len(data) == 3 * G
    assert data[:10] == b"0123456789"
    assert data[-1:] == b"E"


def test_resize_zero_remaps_the_file_at_its_current_size(path):
    path.write_bytes(b"abc")
    m = MapFile(str(path), None)
    with open(path, "ab") as f:
        f.write(b"def")
    m.resize(0)
    assert m.read(-1) == b"abcdef"
    m.close()


def test_resize_to_a_window(path):
    content = os.urandom(2 * G)
    path.write_bytes(content)
    m = MapFile(str(path), None)
    m.resize(0, G + 5, 20)
    assert m.size() == 20
    assert m.read(-1) == content[G + 5 : G + 25]
    m.close()
    assert path.read_bytes() == content


def test_resize_never_shrinks_the_file(path):
    path.write_bytes(b"x" * 100)
    m = MapFile(str(path), None)
    m.resize(10)
    assert m.size() == 10
    m.close()
    assert path.stat().st_size == 100


# --- failing calls leave nothing behind -----------------------------------------------------


FAILING_OPENS = [
    pytest.param(0, 0, 0, id="new-empty-file"),
    pytest.param(10, 10, 0, id="offset-at-end"),
    pytest.param(10, 0, 11, id="window-too-long"),
    pytest.param(10, 2**63, 0, id="huge-offset"),
]


@needs_proc
@pytest.mark.parametrize(("maximum", "offset", "length"), FAILING_OPENS)
def test_failing_open_of_a_missing_file_leaves_no_file_and_no_descriptor(
    path, maximum, offset, length
):
    before = open_fds()
    with pytest.raises((ValueError, OverflowError, mmapfile.error)):
        MapFile(str(path), None, maximum, offset, length)
    assert not path.exists()
    assert os.listdir(path.parent) == []
    assert open_fds() == before


@needs_proc
def test_failing_open_of_an_unwritable_path_leaves_no_descriptor(tmp_path):
    before = open_fds()
    with pytest.raises(mmapfile.error):
        MapFile(str(tmp_path / "missing" / "f"), None, 10)
    assert open_fds() == before


@needs_proc
def test_many_opens_and_closes_leak_no_descriptor(path):
    path.write_bytes(b"abc")
    before = open_fds()
    for _ in range(200):
        MapFile(str(path), None).close()
    assert open_fds() == before


@needs_proc
def test_dropping_a_mapping_without_close_releases_its_descriptor(path):
    path.write_bytes(b"abc")
    before = open_fds()
    m = MapFile(str(path), None)
    del m
    assert open_fds() == before
