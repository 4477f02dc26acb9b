"""Shared fixtures: unique block names, and a check that the run leaves
nothing behind in /dev/shm."""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest

SHM_DIR = Path("/dev/shm")
# Every block a test makes starts with this, so the leftover check below
# (and only it) can tell this run's blocks from anything else on the machine.
RUN_PREFIX = f"pytest-{os.getpid()}-"
_counter = itertools.count()


def new_block_name() -> str:
    return f"{RUN_PREFIX}{next(_counter)}"


def shm_path(name: str) -> Path:
    """Where Linux keeps the bytes of the named block ``name``."""
    return SHM_DIR / f"mmapfile.{name}"


def open_fds() -> set[str]:
    """The descriptors this process has open (Linux only)."""
    return set(os.listdir("/proc/self/fd"))


def leftovers() -> list[str]:
    if not SHM_DIR.is_dir():
        return []
    return sorted(e for e in os.listdir(SHM_DIR) if e.startswith(f"mmapfile.{RUN_PREFIX}"))


needs_proc = pytest.mark.skipif(
    not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd to count descriptors"
)
needs_dev_shm = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not SHM_DIR.is_dir(),
    reason="named blocks are visible in /dev/shm on Linux only",
)
linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="holder tracking needs Linux"
)


@pytest.fixture
def block_name() -> str:
    """A block name no other test (or other run) uses."""
    return new_block_name()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A path inside a fresh directory; the file does not exist yet."""
    return tmp_path / "data.bin"


@pytest.fixture(scope="session", autouse=True)
def nothing_left_in_dev_shm():
    yield
    left = leftovers()
    for entry in left:  # clean up so the next run starts clean, then fail
        os.unlink(SHM_DIR / entry)
    assert not left, f"the tests left blocks in {SHM_DIR}: {left}"
