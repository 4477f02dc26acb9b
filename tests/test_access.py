"""access=: ACCESS_WRITE, ACCESS_READ and ACCESS_COPY, as CPython's mmap."""

import mmap
import os
import stat

import mmapfile
import pytest
from conftest import IS_ROOT, UNDER_WINE


def test_access_constants_equal_cpythons():
    assert mmapfile.ACCESS_DEFAULT == mmap.ACCESS_DEFAULT
    assert mmapfile.ACCESS_READ == mmap.ACCESS_READ
    assert mmapfile.ACCESS_WRITE == mmap.ACCESS_WRITE
    assert mmapfile.ACCESS_COPY == mmap.ACCESS_COPY


def test_unknown_access_is_refused():
    with pytest.raises(ValueError):
        mmapfile.mmapfile(None, None, 4096, access=17)


def test_access_is_keyword_only(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 10)
    with pytest.raises(TypeError):
        mmapfile.mmapfile(str(path), None, 0, 0, 0, mmapfile.ACCESS_READ)


def test_read_only_file_maps_with_access_read(tmp_path):
    path = tmp_path / "ro.bin"
    path.write_bytes(b"hello world")
    os.chmod(path, 0o444)
    try:
        m = mmapfile.mmapfile(str(path), None, access=mmapfile.ACCESS_READ)
        assert m.read() == b"hello world"
        assert m[0] == ord("h")
        assert m[6:11] == b"world"
        assert m.find(b"world", 0) == 6
        m.close()
    finally:
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


@pytest.mark.skipif(
    IS_ROOT or UNDER_WINE,
    reason="root (Wine here runs as root) may open any file for writing",
)
def test_read_only_file_cannot_be_mapped_for_writing(tmp_path):
    path = tmp_path / "ro.bin"
    path.write_bytes(b"hello world")
    os.chmod(path, 0o444)
    try:
        with pytest.raises(PermissionError):
            mmapfile.mmapfile(str(path), None)
    finally:
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


def test_every_write_to_a_read_only_map_raises_type_error(tmp_path):
    path = tmp_path / "ro.bin"
    path.write_bytes(b"hello world")
    os.chmod(path, 0o444)
    try:
        m = mmapfile.mmapfile(str(path), None, access=mmapfile.ACCESS_READ)
        writes = [
            lambda: m.write(b"x"),
            lambda: m.write_byte(1),
            lambda: m.move(0, 1, 2),
            lambda: m.__setitem__(0, 1),
            lambda: m.__setitem__(slice(0, 2), b"ab"),
            lambda: m.__setitem__(slice(0, 4, 2), b"ab"),
        ]
        for write in writes:
            with pytest.raises(TypeError):
                write()
        m.close()
        assert path.read_bytes() == b"hello world"
    finally:
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


def test_access_read_cannot_grow_the_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    with pytest.raises(ValueError):
        mmapfile.mmapfile(str(path), None, 4096, access=mmapfile.ACCESS_READ)
    assert path.read_bytes() == b"abc"


def test_access_copy_leaves_the_file_untouched(tmp_path):
    path = tmp_path / "cow.bin"
    path.write_bytes(b"original data")
    m = mmapfile.mmapfile(str(path), None, access=mmapfile.ACCESS_COPY)
    other = mmapfile.mmapfile(str(path), None)
    m.write(b"CHANGED")
    m[9:13] = b"DATA"
    m.flush()
    assert m[:] == b"CHANGEDl DATA"
    # Neither the file nor another (shared) view of it sees the changes.
    assert other[:] == b"original data"
    m.close()
    other.close()
    assert path.read_bytes() == b"original data"


def test_access_copy_does_not_see_later_writes_to_pages_it_changed(tmp_path):
    path = tmp_path / "cow.bin"
    path.write_bytes(b"a" * 100)
    m = mmapfile.mmapfile(str(path), None, access=mmapfile.ACCESS_COPY)
    m[0] = ord("b")
    with open(path, "r+b") as f:
        f.write(b"z" * 100)
    assert m[0:2] == b"ba"  # the page is private now
    m.close()


def test_access_write_reaches_the_file(tmp_path):
    path = tmp_path / "rw.bin"
    path.write_bytes(b"0" * 10)
    m = mmapfile.mmapfile(str(path), None, access=mmapfile.ACCESS_WRITE)
    m[2:5] = b"abc"
    m.flush()
    m.close()
    assert path.read_bytes() == b"00abc00000"
