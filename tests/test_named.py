"""Named blocks: shared between processes, opened at their own size."""

from __future__ import annotations

import errno
import multiprocessing
import subprocess
import sys
import textwrap

import mmapfile
import pytest
from conftest import (
    OPEN_BLOCK_FUNC,
    PORTABLE,
    WINDOWS,
    needs_dev_shm,
    object_path,
    opened_size,
    shm_path,
    windows_only,
)
from mmapfile import mmapfile as MapFile


def run_child(code: str, *args: str) -> str:
    """Runs ``code`` in a fresh interpreter and returns what it printed."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_child_process_sees_what_the_parent_wrote(block_name):
    m = MapFile(None, block_name, 64)
    m.write(b"from parent")
    out = run_child(
        """
        import sys, mmapfile
        m = mmapfile.mmapfile(None, sys.argv[1], 64)
        print(m.size(), m.read(11).decode())
        m.close()
        """,
        block_name,
    )
    assert out.split() == [str(opened_size(64)), "from", "parent"]
    m.close()


def test_parent_sees_what_a_child_wrote(block_name):
    m = MapFile(None, block_name, 64)
    run_child(
        """
        import sys, mmapfile
        m = mmapfile.mmapfile(None, sys.argv[1])
        m.seek(10)
        m.write(b"from child")
        m.close()
        """,
        block_name,
    )
    m.seek(10)
    assert m.read(10) == b"from child"
    m.close()


def test_block_created_by_a_child_is_opened_by_the_parent_at_its_size(block_name):
    # The child keeps its mapping open until the parent is done, so the test
    # holds whether or not a block disappears when its last mapping closes.
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys, mmapfile
                m = mmapfile.mmapfile(None, sys.argv[1], 12345)
                m.write(b"made by child")
                print("ready", flush=True)
                sys.stdin.readline()
                m.close()
                """
            ),
            block_name,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline() == "ready\n"
        m = MapFile(None, block_name)
        assert m.size() == opened_size(12345)
        assert m.read(13) == b"made by child"
        m.close()
    finally:
        child.communicate("done\n", timeout=60)
    assert child.returncode == 0


def _spawned_writer(name: str, data: bytes) -> None:
    m = mmapfile.mmapfile(None, name)
    m.write(data)
    m.close()


def test_block_is_shared_with_a_spawned_multiprocessing_child(block_name):
    m = MapFile(None, block_name, 16)
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=_spawned_writer, args=(block_name, b"spawned"))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert m.read(7) == b"spawned"
    m.close()


def test_existing_block_size_wins_over_maximum_size(block_name):
    first = MapFile(None, block_name, 100)
    bigger = MapFile(None, block_name, 5000)
    smaller = MapFile(None, block_name, 10)
    assert bigger.size() == opened_size(100)
    assert smaller.size() == opened_size(100)
    first.write(b"same bytes")
    assert bigger.read(10) == b"same bytes"
    assert smaller.read(10) == b"same bytes"
    for m in (first, bigger, smaller):
        m.close()


@needs_dev_shm
def test_existing_block_is_not_grown_by_a_larger_maximum_size(block_name):
    first = MapFile(None, block_name, 100)
    MapFile(None, block_name, 5000).close()
    assert mmapfile._mmapfile._block_info(block_name)["size"] == 100
    if PORTABLE:
        assert object_path(block_name).stat().st_size == 100
    first.close()


def test_name_without_size_opens_the_existing_block(block_name):
    first = MapFile(None, block_name, 300)
    again = MapFile(None, block_name)
    assert again.size() == opened_size(300)
    again.close()
    first.close()


def test_name_without_size_and_no_block_raises_shm_open_enoent(block_name):
    with pytest.raises(mmapfile.error) as info:
        MapFile(None, block_name)
    assert isinstance(info.value, OSError)
    assert info.value.errno == errno.ENOENT
    assert info.value.funcname == OPEN_BLOCK_FUNC


@needs_dev_shm
def test_named_block_has_its_name_in_dev_shm_and_its_size(block_name):
    m = MapFile(None, block_name, 4321)
    assert mmapfile._mmapfile._block_info(block_name)["size"] == 4321
    assert shm_path(block_name).exists()
    if PORTABLE:
        assert object_path(block_name).stat().st_size == 4321
    else:
        # The name is a record of the System V segment that holds the
        # bytes (docs/named-blocks.md): it holds no memory itself.
        assert object_path(block_name).stat().st_size == 0
    m.close()


@pytest.mark.parametrize(
    "prefix",
    [
        "Local\\",
        pytest.param(
            "Global\\",
            marks=pytest.mark.skipif(WINDOWS, reason="a separate namespace on Windows"),
        ),
        pytest.param(
            "local\\",
            marks=pytest.mark.skipif(WINDOWS, reason="Windows decides the case of prefixes"),
        ),
        pytest.param(
            "GLOBAL\\",
            marks=pytest.mark.skipif(WINDOWS, reason="a separate namespace on Windows"),
        ),
    ],
)
def test_namespace_prefixes_name_the_same_block(block_name, prefix):
    plain = MapFile(None, block_name, 32)
    plain.write(b"prefixed")
    prefixed = MapFile(None, prefix + block_name)
    assert prefixed.read(8) == b"prefixed"
    prefixed.close()
    plain.close()


def test_different_names_are_different_blocks(block_name):
    a = MapFile(None, block_name + "-a", 8)
    b = MapFile(None, block_name + "-b", 8)
    a.write(b"aaaa")
    assert b.read(4) == bytes(4)
    a.close()
    b.close()


def test_unnamed_blocks_are_not_shared():
    a = MapFile(None, None, 8)
    b = MapFile(None, None, 8)
    a.write(b"aaaa")
    assert b.read(4) == bytes(4)
    a.close()
    b.close()


def test_named_block_with_a_window(block_name):
    g = mmapfile.ALLOCATIONGRANULARITY
    whole = MapFile(None, block_name, 2 * g)
    whole.seek(g + 3)
    whole.write(b"window")
    part = MapFile(None, block_name, 0, g + 3, 6)
    assert part.size() == 6
    assert part.read(-1) == b"window"
    part.close()
    whole.close()


@windows_only
def test_cli_says_that_blocks_cannot_be_listed_on_windows():
    result = subprocess.run(
        [sys.executable, "-m", "mmapfile", "ls"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "not supported on Windows" in result.stderr
    assert "Traceback" not in result.stderr
    with pytest.raises(NotImplementedError):
        mmapfile._mmapfile._list_blocks()


def test_resize_cannot_grow_a_named_block(block_name):
    # A pagefile-backed section has a fixed size (pywin32 closes it and makes
    # a new, empty one instead, losing the data); macOS sizes a shared-memory
    # object once, and Linux a System V segment (the memory the kernel frees
    # with the last holder, see docs/named-blocks.md).
    m = MapFile(None, block_name, 10)
    m.write(b"kept")
    with pytest.raises(ValueError, match="cannot grow"):
        m.resize(20000)
    m.seek(0)
    assert m.read(4) == b"kept"
    m.close()


@pytest.mark.parametrize("bad", ["Local\\", "Global\\", "a/b", "a\0b", "x" * 300])
def test_unusable_names_raise_value_error(bad):
    with pytest.raises(ValueError):
        MapFile(None, bad, 10)
