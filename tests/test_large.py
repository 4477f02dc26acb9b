"""A 6 GiB sparse file mapped at an offset beyond 4 GiB reads and writes
correctly: offsets and sizes are 64-bit all the way to mmap."""

import os
import sys

import mmapfile
import pytest

GiB = 1 << 30
SIZE = 6 * GiB

pytestmark = pytest.mark.skipif(sys.maxsize < 2**32, reason="needs a 64-bit address space")


def _is_sparse(path) -> bool:
    st = os.stat(path)
    if hasattr(st, "st_blocks"):
        return st.st_blocks * 512 <= GiB
    # Windows: NTFS would write zeros up to any byte written far into the
    # file unless it is marked sparse; Wine keeps files on the host's file
    # system, which is sparse.
    import ctypes

    return hasattr(ctypes.WinDLL("ntdll"), "wine_get_version")


@pytest.fixture
def sparse_file(tmp_path):
    path = tmp_path / "large.bin"
    with open(path, "wb") as f:
        f.truncate(SIZE)
    if not _is_sparse(path):
        pytest.skip("this filesystem does not make sparse files")
    yield path
    path.unlink()


def pread(path, offset, n):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(n)


def pwrite(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def test_window_beyond_4_gib_reads_and_writes_the_right_bytes(sparse_file):
    # Unaligned, past 2**32, and past 5 GiB so a 32-bit truncation would land
    # on a different page of the file.
    offset = 5 * GiB + 12345
    length = 3 * mmapfile.ALLOCATIONGRANULARITY
    pwrite(sparse_file, offset + 100, b"written-by-pwrite")

    m = mmapfile.mmapfile(str(sparse_file), None, 0, offset, length)
    assert m.size() == length
    m.seek(100)
    assert m.read(17) == b"written-by-pwrite"
    m.seek(length - 5)
    m.write(b"tail!")
    m.seek(0)
    m.write(b"head")
    assert m.find(b"tail!") == length - 5
    m.flush()
    m.close()

    assert pread(sparse_file, offset, 4) == b"head"
    assert pread(sparse_file, offset + length - 5, 5) == b"tail!"
    # Nothing landed at the offsets a 32-bit wrap would produce.
    assert pread(sparse_file, offset % 2**32, 4) == bytes(4)
    assert os.path.getsize(sparse_file) == SIZE


def test_whole_6_gib_view_reaches_its_last_byte(sparse_file):
    m = mmapfile.mmapfile(str(sparse_file), None)
    assert m.size() == SIZE
    m.seek(-1, 2)
    assert m.tell() == SIZE - 1
    m.write_byte(0x5A)
    m.seek(4 * GiB + 1)
    m.write(b"past-4g")
    m.seek(4 * GiB + 1)
    assert m.read(7) == b"past-4g"
    m.close()
    assert pread(sparse_file, SIZE - 1, 1) == b"\x5a"
    assert pread(sparse_file, 4 * GiB + 1, 7) == b"past-4g"


def test_resize_moves_the_window_past_4_gib(sparse_file):
    m = mmapfile.mmapfile(str(sparse_file), None, 0, 0, 4096)
    m.resize(0, 4 * GiB + 3, 4096)
    m.write(b"moved")
    m.close()
    assert pread(sparse_file, 4 * GiB + 3, 5) == b"moved"
