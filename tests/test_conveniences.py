"""CPython mmap's conveniences: context manager, closed, repr, read, readinto,
find/rfind, seekable, madvise and the mapping's attributes."""

import ast
import mmap
import os
import sys
import types
import uuid
from pathlib import Path

import _decided as decided
import mmapfile
import pytest


@pytest.fixture
def block_name():
    name = f"pytest-conv-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield name
    try:
        os.unlink(f"/dev/shm/mmapfile.{name}")
    except FileNotFoundError:
        pass


def test_with_closes_on_exit():
    with mmapfile.mmapfile(None, None, 4096) as m:
        assert not m.closed
        m.write(b"abc")
    assert m.closed
    with pytest.raises(ValueError):
        m.read()


def test_with_closes_when_the_body_raises():
    with pytest.raises(KeyError):
        with mmapfile.mmapfile(None, None, 4096) as m:
            raise KeyError
    assert m.closed


def test_entering_a_closed_map_raises_value_error():
    m = mmapfile.mmapfile(None, None, 4096)
    m.close()
    with pytest.raises(ValueError):
        with m:
            pass


def test_closed_is_read_only():
    m = mmapfile.mmapfile(None, None, 4096)
    with pytest.raises(AttributeError):
        m.closed = True


def test_repr_of_a_file_map(tmp_path):
    path = tmp_path / "r.bin"
    path.write_bytes(bytes(100))
    m = mmapfile.mmapfile(str(path), None, 0, 10)
    m.seek(5)
    text = repr(m)
    assert text.startswith("<mmapfile.mmapfile closed=False, kind=file, ")
    assert f"file={str(path)!r}" in text
    for part in ("access=ACCESS_WRITE", "size=90", "pos=5", "offset=10"):
        assert part in text
    m.close()
    assert repr(m) == f"<mmapfile.mmapfile closed=True, kind=file, file={str(path)!r}>"


def test_repr_of_named_and_unnamed_maps(block_name):
    m = mmapfile.mmapfile(None, block_name, 4096, access=mmapfile.ACCESS_COPY)
    assert f"kind=named, name={block_name!r}" in repr(m)
    assert "access=ACCESS_COPY" in repr(m)
    m.close()
    u = mmapfile.mmapfile(None, None, 4096)
    assert "kind=unnamed" in repr(u) and "size=4096" in repr(u)
    u.close()


def test_read_without_argument_reads_the_rest():
    m = mmapfile.mmapfile(None, None, 10)
    m[:] = b"0123456789"
    m.seek(4)
    assert m.read() == b"456789"
    assert m.read() == b""
    m.seek(0)
    assert m.read(None) == b"0123456789"
    m.seek(7)
    assert m.read(-1) == b"789"


def test_readinto_copies_and_advances():
    m = mmapfile.mmapfile(None, None, 10)
    m[:] = b"0123456789"
    buf = bytearray(4)
    assert m.readinto(buf) == 4
    assert buf == b"0123"
    assert m.tell() == 4
    big = bytearray(100)
    assert m.readinto(big) == 6
    assert big[:6] == b"456789" and big[6:] == bytes(94)
    assert m.readinto(big) == 0


def test_readinto_accepts_writable_buffers_only():
    m = mmapfile.mmapfile(None, None, 10)
    m[:] = b"0123456789"
    arr = memoryview(bytearray(8)).cast("H")
    assert m.readinto(arr) == 8
    assert arr.tobytes() == b"01234567"
    for readonly in (b"abcd", memoryview(b"abcd")):
        with pytest.raises(TypeError):
            m.readinto(readonly)
    with pytest.raises(TypeError):
        m.readinto("text")


def test_readinto_a_view_of_the_map_itself():
    m = mmapfile.mmapfile(None, None, 10)
    m[:] = b"0123456789"
    m.seek(0)
    with memoryview(m) as mv:
        assert m.readinto(mv[2:8]) == 6
    assert m[:] == b"0101234589"


def test_readinto_a_closed_map_raises_value_error():
    m = mmapfile.mmapfile(None, None, 10)
    m.close()
    with pytest.raises(ValueError):
        m.readinto(bytearray(4))


def test_find_and_rfind_take_the_decided_bounds():
    ours = mmapfile.mmapfile(None, None, 20)
    data = b"abcabcabcabcabcabcab"
    ours[:] = data
    bounds = [None, 0, 1, 3, 5, 19, 20, 21, 25, -1, -5, -25]
    for start in bounds:
        for end in bounds:
            for needle in (b"abc", b"c", b"", b"zz", b"cab"):
                for method in ("find", "rfind"):
                    want = decided.search(data, method, needle, start, end, position=0)
                    assert ("ok", getattr(ours, method)(needle, start, end)) == want


def test_seekable_is_true():
    m = mmapfile.mmapfile(None, None, 10)
    assert m.seekable() is True


def test_attributes_of_a_file_map(tmp_path):
    path = tmp_path / "a.bin"
    m = mmapfile.mmapfile(str(path), "tagged", 8192, 4100)
    assert (m.name, m.filename, m.offset, m.created) == ("tagged", str(path), 4100, True)
    m.close()
    again = mmapfile.mmapfile(path, None)
    assert (again.name, again.filename, again.offset, again.created) == (None, str(path), 0, False)
    again.close()


def test_attributes_of_named_and_unnamed_maps(block_name):
    first = mmapfile.mmapfile(None, block_name, 4096)
    second = mmapfile.mmapfile(None, block_name, 4096)
    assert (first.name, first.filename, first.created) == (block_name, None, True)
    assert second.created is False
    first.close()
    second.close()
    u = mmapfile.mmapfile(None, None, 4096)
    assert (u.name, u.filename, u.offset, u.created) == (None, None, 0, True)


MADV = sorted(n for n in dir(mmapfile) if n.startswith("MADV_"))


@pytest.mark.skipif(sys.platform != "linux", reason="Linux advice values")
def test_madvise_constants_match_cpythons():
    expected = {
        "MADV_NORMAL", "MADV_RANDOM", "MADV_SEQUENTIAL", "MADV_WILLNEED", "MADV_DONTNEED",
        "MADV_FREE", "MADV_REMOVE", "MADV_DOFORK", "MADV_MERGEABLE", "MADV_UNMERGEABLE",
        "MADV_HUGEPAGE", "MADV_NOHUGEPAGE", "MADV_DONTDUMP", "MADV_DODUMP",
    }  # fmt: skip
    assert set(MADV) == expected
    assert set(mmapfile.__all__) >= expected
    for name in MADV:
        if hasattr(mmap, name):
            assert getattr(mmapfile, name) == getattr(mmap, name), name
    # Left out because they can crash the process.
    assert not hasattr(mmapfile, "MADV_DONTFORK")
    assert not hasattr(mmapfile, "MADV_HWPOISON")


@pytest.mark.parametrize(
    "name", [n for n in MADV if n not in ("MADV_FREE", "MADV_REMOVE", "MADV_DONTNEED")]
)
def test_madvise_accepts_the_harmless_options_on_a_whole_map(name):
    m = mmapfile.mmapfile(None, None, 3 * mmapfile.PAGESIZE)
    m.madvise(getattr(mmapfile, name))
    m.madvise(getattr(mmapfile, name), 10, 100)


def stub_exports(platform):
    """The names _mmapfile.pyi exports (its `__all__`) and the constants it
    declares, as a type checker reads them on `platform` (`sys.platform`)."""
    stub = Path(mmapfile.__file__).with_name("_mmapfile.pyi")
    on = {"__builtins__": {}, "sys": types.SimpleNamespace(platform=platform)}
    exported, declared = [], set()

    def read(body):
        for node in body:
            if isinstance(node, ast.If):
                test = compile(ast.Expression(node.test), str(stub), "eval")
                read(node.body if eval(test, on) else node.orelse)
            elif isinstance(node, (ast.Assign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                    exported.extend(ast.literal_eval(node.value))
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                declared.add(node.target.id)

    read(ast.parse(stub.read_text(encoding="utf-8")).body)
    return exported, declared


def test_the_stub_lists_the_madvise_options_the_core_offers():
    # The core's table, as the extension adds it; the package exports it as
    # it is, and the stub (static, for type checkers) must say the same.
    core = {name for name in dir(mmapfile._mmapfile) if name.startswith("MADV_")}
    assert core or sys.platform == "win32"
    exported, declared = stub_exports(sys.platform)
    assert {name for name in exported if name.startswith("MADV_")} == core
    assert {name for name in declared if name.startswith("MADV_")} == core
    assert {name for name in mmapfile.__all__ if name.startswith("MADV_")} == core
    assert all(hasattr(mmapfile, name) for name in core)


def test_the_package_exports_the_stubs_public_names_and_no_helper():
    exported, _ = stub_exports(sys.platform)
    assert sorted(mmapfile.__all__) == sorted(exported)
    assert [name for name in mmapfile.__all__ if name.startswith("_")] == ["__version__"]
    for helper in ("_list_blocks", "_block_info", "_backend"):
        assert not hasattr(mmapfile, helper), helper
        assert hasattr(mmapfile._mmapfile, helper), helper


@pytest.mark.skipif(sys.platform != "win32", reason="Windows behaviour")
def test_madvise_raises_not_implemented_on_windows():
    m = mmapfile.mmapfile(None, None, mmapfile.PAGESIZE)
    assert not [name for name in dir(mmapfile) if name.startswith("MADV_")]
    with pytest.raises(NotImplementedError, match="madvise is not available"):
        m.madvise(0)
    m.close()


@pytest.mark.skipif(sys.platform == "win32", reason="Windows has no madvise")
def test_madvise_checks_its_range():
    m = mmapfile.mmapfile(None, None, 3 * mmapfile.PAGESIZE)
    with pytest.raises(ValueError):
        m.madvise(mmapfile.MADV_NORMAL, len(m))
    with pytest.raises(ValueError):
        m.madvise(mmapfile.MADV_NORMAL, -1)
    with pytest.raises(ValueError):
        m.madvise(mmapfile.MADV_NORMAL, 0, -1)
    m.madvise(mmapfile.MADV_NORMAL, 5, 2**62)  # cut at the end
    with pytest.raises(ValueError):
        m.madvise(-999)
    m.close()
    with pytest.raises(ValueError):
        m.madvise(mmapfile.MADV_NORMAL)


@pytest.mark.skipif(sys.platform != "linux", reason="Linux MADV_DONTNEED semantics")
def test_madvise_dontneed_drops_private_changes_of_a_copy_map(tmp_path):
    path = tmp_path / "d.bin"
    path.write_bytes(b"f" * (2 * mmapfile.PAGESIZE))
    m = mmapfile.mmapfile(str(path), None, access=mmapfile.ACCESS_COPY)
    m[0:4] = b"priv"
    m.madvise(mmapfile.MADV_DONTNEED)
    assert m[0:4] == b"ffff"
    m.close()
    assert path.read_bytes() == b"f" * (2 * mmapfile.PAGESIZE)
