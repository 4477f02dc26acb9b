"""Shared fixtures: unique block names, and a check that the run leaves
nothing behind in /dev/shm."""

from __future__ import annotations

import itertools
import os
import sys

import pytest

SHM_DIR = "/dev/shm"
# Every block a test makes starts with this, so the leftover check below
# (and only it) can tell this run's blocks from anything else on the machine.
RUN_PREFIX = f"pytest-{os.getpid()}-"
_counter = itertools.count()


def shm_path(name: str) -> str:
    """Where Linux keeps the bytes of the named block ``name``."""
    return f"{SHM_DIR}/mmapfile.{name}"


def leftovers() -> list[str]:
    if not os.path.isdir(SHM_DIR):
        return []
    return sorted(e for e in os.listdir(SHM_DIR) if e.startswith(f"mmapfile.{RUN_PREFIX}"))


@pytest.fixture
def block_name() -> str:
    """A block name no other test (or other run) uses."""
    return f"{RUN_PREFIX}{next(_counter)}"


@pytest.fixture(scope="session", autouse=True)
def nothing_left_in_dev_shm():
    yield
    left = leftovers()
    for entry in left:  # clean up so the next run starts clean, then fail
        os.unlink(f"{SHM_DIR}/{entry}")
    assert not left, f"the tests left blocks in {SHM_DIR}: {left}"


linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="holder tracking needs Linux"
)
