"""Shared fixtures: unique block names, and removal of the blocks tests leave in /dev/shm.

The core does not yet unlink a named block when its last mapping closes, so every block a
test creates would outlive the test run. All test blocks share the prefix
``pytest-<pid>-`` and are removed at the end of the session.
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest

BLOCK_PREFIX = f"pytest-{os.getpid()}-"
SHM_DIR = Path("/dev/shm")
_counter = itertools.count()


def new_block_name() -> str:
    return f"{BLOCK_PREFIX}{next(_counter)}"


def shm_path(name: str) -> Path:
    """Where the named block ``name`` lives on Linux."""
    return SHM_DIR / f"mmapfile.{name}"


def open_fds() -> set[str]:
    """The descriptors this process has open (Linux only)."""
    return set(os.listdir("/proc/self/fd"))


needs_proc = pytest.mark.skipif(
    not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd to count descriptors"
)
needs_dev_shm = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not SHM_DIR.is_dir(),
    reason="named blocks are visible in /dev/shm on Linux only",
)


@pytest.fixture
def block_name() -> str:
    """A block name no other test (or test run) uses."""
    return new_block_name()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A path inside a fresh directory; the file does not exist yet."""
    return tmp_path / "data.bin"


@pytest.fixture(scope="session", autouse=True)
def _remove_test_blocks():
    yield
    if SHM_DIR.is_dir():
        for leftover in SHM_DIR.glob(f"mmapfile.{BLOCK_PREFIX}*"):
            leftover.unlink(missing_ok=True)
