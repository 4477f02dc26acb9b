"""Running out of space: a block or a grown file that cannot be backed fails
at creation with ENOSPC and leaves nothing behind; a page that still cannot
be allocated later raises "no space" (not "shrank") and the process lives.

Each case runs in a child process inside a private mount namespace
(`unshare --mount`), with a 1 MiB tmpfs over /dev/shm and another over a
directory for files, so that the machine's own /dev/shm and disk are never
filled. That needs root (CI runs as root); elsewhere the tests are skipped.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import mmapfile
import pytest
from _child import describe
from conftest import PORTABLE, not_under_emulation

LINUX = sys.platform.startswith("linux")
SMALL = "1m"  # size of each tmpfs; the snippets below are written for it


def _namespace_refusal() -> str | None:
    """Why private mount namespaces cannot be used here, or None."""
    if not LINUX:
        return "mount namespaces are Linux"
    if os.geteuid() != 0:
        return "needs root to mount a small tmpfs in a private mount namespace"
    if shutil.which("unshare") is None:
        return "needs unshare(1) (util-linux)"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return f"unshare --mount refused here: {probe.stderr.strip()}"
    return None


REFUSAL = _namespace_refusal()
needs_namespace = pytest.mark.skipif(REFUSAL is not None, reason=REFUSAL or "")

# Every snippet starts with this: FILES is the small tmpfs for files, and
# `expect` checks an error's class, errno and message.
PRELUDE = """
import errno, os, mmapfile
FILES = os.environ["FILES"]
MiB = 1 << 20
page = mmapfile.PAGESIZE

def expect(call, code, *words):
    try:
        call()
    except mmapfile.error as e:
        assert e.errno == code, (e.errno, str(e))
        for w in words:
            assert w in str(e), (w, str(e))
        return e
    raise AssertionError("no error raised")

def fill(path):
    # Takes what is left of the file system holding `path`. Unbuffered
    # writes until one fails: a buffered file may report ENOSPC only at
    # close() (CPython 3.14+ does), and a raw write may write part.
    with open(path, "wb", buffering=0) as f:
        try:
            while f.write(b"f" * MiB):
                pass
        except OSError as e:
            assert e.errno == errno.ENOSPC, e
        else:
            raise AssertionError("the file system never filled up")
"""


def run_small(files: Path, code: str, segments: bool = True) -> str:
    """Runs `code` in a child with a 1 MiB /dev/shm and a 1 MiB tmpfs at
    `files`; asserts it exits 0 and returns its stdout.

    Without `segments`, the child runs in an IPC namespace of its own where
    no System V segment can be made (`kernel.shmmni` 0), so that named blocks
    keep their memory in /dev/shm, as they do wherever segments are refused
    (docs/named-blocks.md): that is the memory these tests fill."""
    files.mkdir(exist_ok=True)
    script = PRELUDE + textwrap.dedent(code)
    shell = (
        ("" if segments else "echo 0 > /proc/sys/kernel/shmmni && ")
        + f"mount -t tmpfs -o size={SMALL} tmpfs /dev/shm && "
        f'mount -t tmpfs -o size={SMALL} tmpfs "$FILES" && '
        'exec "$PYTHON" -c "$SCRIPT"'
    )
    env = dict(os.environ, FILES=str(files), PYTHON=sys.executable, SCRIPT=script)
    ipc = [] if segments else ["--ipc"]
    proc = subprocess.run(
        ["unshare", "--mount", *ipc, "--propagation", "private", "sh", "-c", shell],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, describe(proc)
    return proc.stdout


@needs_namespace
@pytest.mark.skipif(
    PORTABLE,
    reason="macOS's shared memory is in no file system of a size: memory and swap are checked",
)
def test_block_bigger_than_dev_shm_fails_at_creation_and_leaves_nothing(tmp_path):
    run_small(
        tmp_path,
        """
        e = expect(lambda: mmapfile.mmapfile(None, "big", 8 * MiB), errno.ENOSPC,
                   "8.0 MiB", "/dev/shm", "1.0 MiB", "--shm-size")
        assert e.funcname == "fstatvfs", e.funcname
        assert os.listdir("/dev/shm") == [], os.listdir("/dev/shm")
        # Creating it only, as create=True asks, is refused the same way.
        expect(lambda: mmapfile.mmapfile(None, "big", 8 * MiB, create=True), errno.ENOSPC)
        assert os.listdir("/dev/shm") == []
        """,
        segments=False,
    )


@needs_namespace
@pytest.mark.skipif(PORTABLE, reason="the portable backend keeps blocks in POSIX objects")
def test_block_in_a_segment_is_not_bound_by_dev_shm_and_keeps_nothing_there(tmp_path):
    # A named block's memory is a System V segment on Linux: /dev/shm holds
    # only its empty record, so a container's --shm-size no longer bounds it
    # (memory and swap do, as test_block_larger_than_memory_and_swap_...
    # checks), and a full /dev/shm does not take its pages.
    run_small(
        tmp_path,
        """
        m = mmapfile.mmapfile(None, "big", 8 * MiB)
        assert os.stat("/dev/shm/mmapfile.big").st_size == 0
        fill("/dev/shm/filler")
        m.write(b"x" * (8 * MiB))
        r = mmapfile.mmapfile(None, "res", 4 * MiB, space="reserve")
        r.write(b"r" * (4 * MiB))
        os.unlink("/dev/shm/filler")
        m.close()
        r.close()
        assert os.listdir("/dev/shm") == []
        """,
    )


@needs_namespace
def test_block_that_fits_works(tmp_path):
    run_small(
        tmp_path,
        """
        m = mmapfile.mmapfile(None, "fits", 512 * 1024)
        m.write(b"z" * (512 * 1024))
        m.seek(0)
        assert m.read() == b"z" * (512 * 1024)
        m.close()
        assert os.listdir("/dev/shm") == []
        """,
    )


@needs_namespace
def test_file_grown_past_the_free_space_fails_at_creation_and_leaves_nothing(tmp_path):
    run_small(
        tmp_path,
        """
        path = os.path.join(FILES, "data.bin")
        e = expect(lambda: mmapfile.mmapfile(path, None, 8 * MiB), errno.ENOSPC,
                   "8388608 bytes", "free")
        assert e.funcname == "fstatvfs"
        assert not os.path.exists(path), "the file this call created is removed"
        # An existing file is left at its size.
        with open(path, "wb") as f:
            f.write(b"k" * page)
        expect(lambda: mmapfile.mmapfile(path, None, 8 * MiB), errno.ENOSPC)
        assert os.path.getsize(path) == page
        # resize() grows by the same rule, and the map stays usable.
        m = mmapfile.mmapfile(path, None)
        expect(lambda: m.resize(8 * MiB), errno.ENOSPC)
        assert m.size() == page and m.read(1) == b"k"
        m.close()
        assert os.path.getsize(path) == page
        """,
    )


@needs_namespace
@pytest.mark.skipif(PORTABLE, reason="macOS has no fallocate: 'reserve' checks as 'check' does")
def test_reserve_allocates_at_creation_or_fails_there(tmp_path):
    run_small(
        tmp_path,
        """
        path = os.path.join(FILES, "data.bin")
        e = expect(lambda: mmapfile.mmapfile(path, None, 8 * MiB, space="reserve"),
                   errno.ENOSPC, "8388608 bytes")
        assert e.funcname == "fallocate"
        assert not os.path.exists(path)
        st = os.statvfs(FILES)
        free_before = st.f_bavail * st.f_frsize
        m = mmapfile.mmapfile(path, None, 512 * 1024, space="reserve")
        st = os.statvfs(FILES)
        # The space is taken at once, before any page is written.
        assert free_before - st.f_bavail * st.f_frsize >= 512 * 1024
        m.write(b"r" * (512 * 1024))
        m.close()
        os.unlink(path)
        # Blocks too: the whole block is in /dev/shm from the start.
        expect(lambda: mmapfile.mmapfile(None, "res", 8 * MiB, space="reserve"), errno.ENOSPC)
        assert os.listdir("/dev/shm") == []
        b = mmapfile.mmapfile(None, "res", 512 * 1024, space="reserve")
        assert os.stat("/dev/shm/mmapfile.res").st_blocks * 512 >= 512 * 1024
        b.close()
        """,
        segments=False,
    )


@needs_namespace
def test_write_past_the_free_space_of_a_sparse_file_raises_no_space_and_the_process_lives(
    tmp_path,
):
    out = run_small(
        tmp_path,
        """
        path = os.path.join(FILES, "sparse.bin")
        m = mmapfile.mmapfile(path, None, 8 * MiB, space="sparse")
        e = expect(lambda: m.write(b"x" * (8 * MiB)), errno.ENOSPC, "no space")
        assert "shrank" not in str(e) and e.funcname is None
        # The view stays poisoned: every access says the same.
        m.seek(0)
        assert str(expect(lambda: m.read(1), errno.ENOSPC)) == str(e)
        m.close()
        print(e)
        print("alive")
        """,
    )
    assert out.rstrip().endswith("alive")
    assert f"offset {1 << 20} of the view" in out


@needs_namespace
def test_block_filled_by_others_raises_no_space_on_write(tmp_path):
    # The check at creation is racy: space taken after it is found missing
    # by the write that needs it.
    run_small(
        tmp_path,
        """
        m = mmapfile.mmapfile(None, "racy", 768 * 1024)
        fill("/dev/shm/filler")
        expect(lambda: m.write(b"x" * (768 * 1024)), errno.ENOSPC, "no space")
        os.unlink("/dev/shm/filler")
        m.close()
        assert os.listdir("/dev/shm") == []
        """,
        segments=False,
    )


@needs_namespace
def test_no_space_view_recovers_with_resize_once_space_is_freed(tmp_path):
    run_small(
        tmp_path,
        """
        path = os.path.join(FILES, "data.bin")
        m = mmapfile.mmapfile(path, None, 512 * 1024)
        filler = os.path.join(FILES, "filler")
        fill(filler)
        expect(lambda: m.write(b"x" * (512 * 1024)), errno.ENOSPC, "no space")
        expect(lambda: m.read(1), errno.ENOSPC)
        os.unlink(filler)
        m.resize(0)  # maps the whole file anew
        assert m.size() == 512 * 1024
        m.write(b"y" * (512 * 1024))
        m.seek(0)
        assert m.read() == b"y" * (512 * 1024)
        m.close()
        with open(path, "rb") as f:
            assert f.read() == b"y" * (512 * 1024)
        """,
    )


@needs_namespace
def test_truncation_on_a_full_file_system_still_says_shrank(tmp_path):
    run_small(
        tmp_path,
        """
        path = os.path.join(FILES, "data.bin")
        with open(path, "wb") as f:
            f.write(b"x" * (4 * page))
        m = mmapfile.mmapfile(path, None)
        fill(os.path.join(FILES, "filler"))
        os.truncate(path, page // 2)
        e = expect(lambda: m.read(), None, "shrank", "no longer exist")
        assert e.errno is None
        m.close()
        """,
    )


# These need neither root nor a namespace: no file system is filled.
@pytest.mark.skipif(sys.platform == "win32", reason="Windows refuses with its own commit limit")
def test_block_larger_than_memory_and_swap_fails_at_creation_with_enomem():
    with pytest.raises(mmapfile.error) as info:
        mmapfile.mmapfile(None, None, 1 << 50)
    assert info.value.errno == errno.ENOMEM
    assert info.value.funcname == "sysinfo" if LINUX else True
    assert "1.0 PiB" in str(info.value) and "memory" in str(info.value)


@pytest.mark.skipif(sys.platform == "win32", reason="Windows commits a block when it creates it")
@not_under_emulation("qemu-user cannot place a 1 TiB mapping in its guest address space (ENOMEM)")
def test_sparse_block_larger_than_memory_is_created_without_a_check():
    m = mmapfile.mmapfile(None, None, 1 << 40, space="sparse")
    m[(1 << 40) - 1] = 7
    assert m[(1 << 40) - 1] == 7
    m.close()


@pytest.mark.parametrize("space", ["", "Check", "none", "reserved"])
def test_unknown_space_policy_is_a_value_error(space):
    with pytest.raises(ValueError, match="space must be"):
        mmapfile.mmapfile(None, None, 4096, space=space)
