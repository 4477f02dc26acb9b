"""What only the portable backend (macOS, the BSDs; on Linux with the
`simulate-macos` build: `make test-portable`) does: its record files in the
state directory, what `gc` removes after a creator died, and what macOS
cannot do. Its lifetime promises are the ones every named-block test checks."""

from __future__ import annotations

import errno
import os
import secrets
import stat
import subprocess
import sys
import time

import mmapfile
import pytest
from conftest import PORTABLE, SHM_DIR, SIMULATED, STATE_DIR, object_path, shm_path

pytestmark = pytest.mark.skipif(not PORTABLE, reason="the portable backend's own files")


def test_the_state_directory_is_shared_and_sticky_like_tmp(block_name):
    m = mmapfile.mmapfile(None, block_name, 4096)
    st = os.lstat(STATE_DIR)
    assert stat.S_ISDIR(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o1777
    m.close()


def test_a_record_says_the_name_mode_object_and_exact_size(block_name):
    m = mmapfile.mmapfile(None, block_name, 4321, mode=0o640)
    record = shm_path(block_name).read_bytes().decode().splitlines()
    info = mmapfile._mmapfile._block_info(block_name)
    assert record == [
        "mmapfile name 1",
        "name " + block_name.encode().hex(),
        "mode 640",
        "block " + info["shm_name"],
        "size 4321",
    ]
    # Only the owner may write the record; the block's mode lets others in.
    assert stat.S_IMODE(shm_path(block_name).stat().st_mode) == 0o640
    assert m.size() == 4321
    m.close()


@pytest.mark.skipif(not SIMULATED, reason="looks at the objects in /dev/shm")
def test_each_block_gets_a_fresh_object_that_fits_macos(block_name):
    first = mmapfile.mmapfile(None, block_name, 4096)
    obj = object_path(block_name)
    assert len("/" + obj.name) == 31 and obj.name.startswith("mmapfile=")
    # macOS reports an object's size in whole pages; the record keeps it exact.
    assert mmapfile._mmapfile._block_info(block_name)["size"] == 4096
    first.close()
    assert not obj.exists() and not shm_path(block_name).exists()
    second = mmapfile.mmapfile(None, block_name, 4096)
    assert object_path(block_name) != obj, "a new block, a new object"
    second.close()


def _lock_file(name: str):
    return STATE_DIR / (".lock-" + mmapfile._mmapfile._block_info(name)["shm_name"][10:])


def test_a_blocks_lock_file_is_made_on_first_use_and_goes_with_the_block(block_name):
    m = mmapfile.mmapfile(None, block_name, 4096, mode=0o640)
    lock_file = _lock_file(block_name)
    assert not lock_file.exists(), "made only when a lock is asked for"
    with m.lock():
        other = mmapfile.mmapfile(None, block_name, 0)
        assert not other.lock().acquire(timeout=0)
        assert stat.S_IMODE(lock_file.stat().st_mode) == 0o640
    assert other.lock().acquire(timeout=0)
    other.close()
    assert lock_file.exists(), "the block lives on"
    m.close()
    assert not lock_file.exists() and not shm_path(block_name).exists()


def _anon_lock_files() -> set:
    return {p for p in STATE_DIR.glob(f".anon-{os.getpid()}-*")}


def test_an_unnamed_blocks_lock_file_goes_when_its_creator_closes_it():
    before = _anon_lock_files()
    m = mmapfile.mmapfile(None, None, 4096)
    with m.lock():
        (made,) = _anon_lock_files() - before
        pid = os.fork()
        if pid == 0:  # the child contends for its parent's lock
            os._exit(0 if not m.lock().acquire(timeout=0) else 1)
        assert os.waitpid(pid, 0)[1] == 0, "the forked child got a held lock"
    m.close()
    assert not made.exists()


def test_gc_removes_the_lock_file_of_an_unnamed_block_whose_process_died():
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, mmapfile\n"
            "m = mmapfile.mmapfile(None, None, 4096)\n"
            "m.lock().acquire()\n"
            "print(os.getpid(), flush=True)\n"
            "os._exit(0)\n",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = child.stdout.strip()
    (left,) = STATE_DIR.glob(f".anon-{pid}-*")
    result = _cli("gc")
    assert result.returncode == 0, result.stderr
    assert not left.exists()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mmapfile", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.skipif(not SIMULATED, reason="makes an object in /dev/shm")
def test_gc_removes_what_a_creator_that_died_left_and_nothing_younger():
    # A creator killed between making its draft record (and its object) and
    # publishing it leaves both; nobody holds the draft, and it stopped
    # changing. One that is seconds old may still be on its way.
    suffixes = [secrets.token_hex(11)[:21] for _ in range(2)]
    drafts = [STATE_DIR / f".new-{s}" for s in suffixes]
    objects = [SHM_DIR / f"mmapfile={s}" for s in suffixes]
    STATE_DIR.mkdir(mode=0o1777, exist_ok=True)
    for draft, obj in zip(drafts, objects):
        draft.write_bytes(b"mmapfile name 1\n")
        obj.write_bytes(bytes(4096))
    old = time.time() - 3600
    os.utime(drafts[0], (old, old))
    try:
        result = _cli("gc")
        assert result.returncode == 0, result.stderr
        assert not drafts[0].exists() and not objects[0].exists()
        assert drafts[1].exists() and objects[1].exists(), "a young draft is left alone"
    finally:
        for path in (*drafts, *objects):
            path.unlink(missing_ok=True)


def test_ls_after_a_crash_lists_the_block_and_gc_removes_it(block_name):
    from _other_user import start_python

    child = start_python(
        """
        import sys, mmapfile
        m = mmapfile.mmapfile(None, sys.argv[1], 4096)
        m.write(b"left by the dead")
        print("ready", flush=True)
        sys.stdin.readline()
        """,
        block_name,
    )
    assert child.stdout.readline().strip() == "ready", child.stderr.read()
    child.kill()
    child.wait(30)
    listed = _cli("ls")
    assert listed.returncode == 0, listed.stderr
    (line,) = [ln for ln in listed.stdout.splitlines() if ln.split()[0] == block_name]
    assert line.split()[1:4] == ["block", "4096", "?"]
    # A dead block can be read before it is collected.
    dumped = _cli("dump", block_name, "--length", "16")
    assert "left by the dead" in dumped.stdout
    collected = _cli("gc")
    assert f"removed {block_name}" in collected.stdout.splitlines()
    assert not shm_path(block_name).exists()
    assert block_name not in _cli("ls").stdout


def test_a_name_is_checked_against_its_record(block_name):
    # Record files of names outside [a-z0-9_.-] are named by digest; one
    # whose record names another name (a digest collision, which nobody
    # can make, or a hard link, made here) is refused, never shared.
    name = block_name + "-Upper"
    other = block_name + "-Other"
    m = mmapfile.mmapfile(None, other, 4096)
    forged = shm_path(name)
    os.link(shm_path(other), forged)
    try:
        with pytest.raises(mmapfile.error, match="hard link") as exc:
            mmapfile.mmapfile(None, name, 4096)
        assert exc.value.errno == errno.EACCES
    finally:
        forged.unlink()
        m.close()
