"""The buffer protocol: memoryview and numpy see the mapped memory itself."""

import os
import subprocess
import sys
import textwrap
import uuid

import mmapfile
import pytest

np = pytest.importorskip("numpy")


@pytest.fixture
def block_name():
    name = f"pytest-buffer-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield name
    try:
        os.unlink(f"/dev/shm/mmapfile.{name}")
    except FileNotFoundError:
        pass


def test_memoryview_is_the_mapped_memory():
    m = mmapfile.mmapfile(None, None, 4096)
    mv = memoryview(m)
    assert (mv.nbytes, mv.format, mv.itemsize, mv.readonly) == (4096, "B", 1, False)
    m[10:13] = b"abc"
    assert mv[10:13].tobytes() == b"abc"
    mv[100:103] = b"xyz"
    assert m[100:103] == b"xyz"
    mv.release()
    m.close()


def test_numpy_frombuffer_is_zero_copy():
    m = mmapfile.mmapfile(None, None, 4096)
    arr = np.frombuffer(m, dtype=np.int64)
    assert arr.shape == (512,)
    assert arr.flags.writeable
    arr[3] = 0x0102030405060708
    assert m[24:32] == (0x0102030405060708).to_bytes(8, "little")
    m[0:8] = (77).to_bytes(8, "little")
    assert arr[0] == 77
    del arr
    m.close()


def test_numpy_writes_are_visible_to_another_process(block_name):
    m = mmapfile.mmapfile(None, block_name, 4096)
    arr = np.frombuffer(m, dtype=np.int64)
    arr[0] = 123456789
    child = textwrap.dedent(
        f"""
        import numpy as np
        import mmapfile
        m = mmapfile.mmapfile(None, {block_name!r}, 0)
        arr = np.frombuffer(m, dtype=np.int64)
        assert arr[0] == 123456789, arr[0]
        arr[1] = -42
        del arr
        m.close()
        """
    )
    subprocess.run([sys.executable, "-c", child], check=True, timeout=60)
    assert arr[1] == -42
    del arr
    m.close()


def test_close_with_exported_buffer_raises_and_succeeds_after_release():
    m = mmapfile.mmapfile(None, None, 4096)
    mv = memoryview(m)
    with pytest.raises(BufferError):
        m.close()
    assert not m.closed
    mv[0] = 1  # still mapped
    mv.release()
    m.close()
    assert m.closed


def test_close_with_numpy_array_alive_raises_until_the_array_is_gone():
    m = mmapfile.mmapfile(None, None, 4096)
    arr = np.frombuffer(m, dtype=np.uint8)
    view = arr[10:20]
    del arr
    with pytest.raises(BufferError):
        m.close()
    del view
    m.close()


def test_resize_with_exported_buffer_raises():
    m = mmapfile.mmapfile(None, None, 4096)
    mv = memoryview(m)
    with pytest.raises(BufferError):
        m.resize(8192)
    assert len(m) == 4096
    mv.release()
    m.resize(8192)
    assert len(m) == 8192
    m.close()


def test_every_export_is_counted():
    m = mmapfile.mmapfile(None, None, 4096)
    views = [memoryview(m) for _ in range(3)]
    for i, mv in enumerate(views):
        with pytest.raises(BufferError):
            m.close()
        mv.release()
        assert i < 2 or m.close() is None
    assert m.closed


def test_exit_with_exported_buffer_raises_buffer_error():
    with pytest.raises(BufferError):
        with mmapfile.mmapfile(None, None, 4096) as m:
            mv = memoryview(m)
    mv.release()
    m.close()


def test_read_only_map_exports_read_only_buffer(tmp_path):
    path = tmp_path / "ro.bin"
    path.write_bytes(b"0123456789")
    m = mmapfile.mmapfile(str(path), None, access=mmapfile.ACCESS_READ)
    mv = memoryview(m)
    assert mv.readonly
    assert mv.tobytes() == b"0123456789"
    with pytest.raises(TypeError):
        mv[0] = 1
    arr = np.frombuffer(m, dtype=np.uint8)
    assert not arr.flags.writeable
    del arr
    mv.release()
    m.close()


def test_copy_map_exports_writable_buffer_that_stays_private(tmp_path):
    path = tmp_path / "cow.bin"
    path.write_bytes(b"0123456789")
    m = mmapfile.mmapfile(str(path), None, access=mmapfile.ACCESS_COPY)
    mv = memoryview(m)
    mv[0:3] = b"abc"
    assert m[0:3] == b"abc"
    mv.release()
    m.close()
    assert path.read_bytes() == b"0123456789"


def test_buffer_of_closed_map_is_refused():
    m = mmapfile.mmapfile(None, None, 4096)
    m.close()
    with pytest.raises(ValueError):
        memoryview(m)


def test_writing_a_view_of_the_map_into_itself_works():
    m = mmapfile.mmapfile(None, None, 4096)
    m[0:4] = b"abcd"
    with memoryview(m) as mv:
        m.seek(2)
        m.write(mv[0:4])  # overlapping source and destination
        m[100:104] = mv[0:4]
    assert m[0:6] == b"ababcd"
    assert m[100:104] == b"abab"
    m.close()
