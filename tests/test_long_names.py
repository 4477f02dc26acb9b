"""Names as long as Windows takes them (MAX_PATH, 260 UTF-16 code units) work
on every OS, also where the OS's own names are shorter (macOS: 31 bytes with
the slash; Linux: 255), and two different names never share a block."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys

import mmapfile
import pytest
from _other_user import start_python
from conftest import LINUX, PORTABLE, WINDOWS, hold_as_linux_holder, shm_path

MAX_NAME = 260

WRITE_AND_WAIT = """
import sys, mmapfile
m = mmapfile.mmapfile(None, sys.argv[1], 4096)
m.write(sys.argv[2].encode())
print("ready", flush=True)
sys.stdin.readline()
m.close()
"""


def padded(stem: str, length: int, fill: str = "n") -> str:
    return stem + fill * (length - len(stem))


def test_a_200_byte_name_is_shared_between_processes(block_name):
    name = padded(block_name + "-", 200)
    child = start_python(WRITE_AND_WAIT, name, "from the child")
    try:
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        m = mmapfile.mmapfile(None, name, 0)
        assert not m.created
        assert m.read(14) == b"from the child"
        m.close()
    finally:
        child.communicate("done\n", timeout=30)
    with pytest.raises(mmapfile.error) as info:
        mmapfile.mmapfile(None, name, 0)
    assert info.value.errno == errno.ENOENT or info.value.winerror == 2


def test_names_that_differ_only_after_byte_21_are_two_blocks(block_name):
    # macOS leaves 21 bytes after "/mmapfile." in its 31-byte names.
    stem = padded(block_name + "-", 21)
    a = mmapfile.mmapfile(None, stem + "-first", 4096)
    b = mmapfile.mmapfile(None, stem + "-second", 4096)
    assert a.created and b.created
    a.write(b"a")
    b.write(b"b")
    assert mmapfile.mmapfile(None, stem + "-first", 0).read(1) == b"a"
    assert mmapfile.mmapfile(None, stem + "-second", 0).read(1) == b"b"
    a.close()
    b.close()


@pytest.mark.parametrize("prefix", ["", "Local\\"])
def test_a_name_of_max_path_units_works_and_one_more_is_refused(block_name, prefix):
    longest = prefix + padded(block_name + "-", MAX_NAME - len(prefix))
    m = mmapfile.mmapfile(None, longest, 4096)
    m.write(b"longest")
    assert mmapfile.mmapfile(None, longest, 0).read(7) == b"longest"
    m.close()
    with pytest.raises(ValueError, match="at most 260"):
        mmapfile.mmapfile(None, longest + "n", 4096)


def test_characters_outside_the_bmp_count_twice_as_on_windows(block_name):
    # U+1F600 is two UTF-16 code units (and four UTF-8 bytes).
    stem = block_name + "-"
    fits = stem + "\U0001f600" * ((MAX_NAME - len(stem)) // 2)
    m = mmapfile.mmapfile(None, fits, 4096)
    assert m.created
    m.close()
    with pytest.raises(ValueError, match="at most 260"):
        mmapfile.mmapfile(None, fits + "\U0001f600", 4096)


@pytest.mark.skipif(WINDOWS, reason="Windows cannot list named blocks")
def test_a_long_name_is_listed_by_its_full_name(block_name):
    name = padded(block_name + "-", 250, "L")
    m = mmapfile.mmapfile(None, name, 4096)
    try:
        listed = subprocess.run(
            [sys.executable, "-m", "mmapfile", "ls", "--json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert name in listed
        # Not the name at the OS level, which is a digest there.
        assert "=" + hashlib.sha256(name.encode()).hexdigest() in str(shm_path(name))
        info = mmapfile._mmapfile._block_info(name)
        assert info["name"] == name and info["size"] == 4096
    finally:
        m.close()
    assert not shm_path(name).exists()


@pytest.mark.skipif(not LINUX or PORTABLE, reason="the Linux backend's digest names")
def test_a_digest_shared_by_two_names_is_refused_not_shared(block_name):
    # SHA-256 collisions cannot be made; an object under the digest of one
    # name that says (in its label) it belongs to another stands in for one.
    name = padded(block_name + "-", 250, "a")
    other = padded(block_name + "-", 250, "b")
    path = shm_path(name)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.setxattr(fd, "user.mmapfile.name", other.encode())
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EPERM):
                pytest.skip("this kernel's tmpfs keeps no user extended attributes")
            raise
        os.ftruncate(fd, 4096)
        hold_as_linux_holder(fd)
        with pytest.raises(ValueError, match="same digest"):
            mmapfile.mmapfile(None, name, 4096)
    finally:
        os.close(fd)
        os.unlink(path)
