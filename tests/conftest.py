"""Shared fixtures: unique block names, and a check that the run leaves
nothing behind in /dev/shm (and, for the portable backend, in its state
directory)."""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import sys
from pathlib import Path

import mmapfile
import pytest
from mmapfile import _mmapfile

SHM_DIR = Path("/dev/shm")
# How this build keeps named blocks: "linux", "windows", "portable" (macOS,
# the BSDs) or "portable-simulated" (the portable backend on Linux with
# macOS's limits imposed: `make test-portable`).
BACKEND = _mmapfile._backend
PORTABLE = BACKEND.startswith("portable")
SIMULATED = BACKEND == "portable-simulated"
# The portable backend's record files, one per name.
STATE_DIR = Path("/var/tmp/mmapfile")
# Linux counts a block's holders (in /proc/locks); the portable backend can
# only tell, by removing it, that a block is dead.
HOLDERS_COUNTED = not PORTABLE
_expected = os.environ.get("MMAPFILE_EXPECT_BACKEND")
if _expected and _expected != BACKEND:
    raise pytest.UsageError(
        f"MMAPFILE_EXPECT_BACKEND={_expected} but {mmapfile.__file__} is built for {BACKEND}"
    )
# Every block a test makes starts with this, so the leftover check below
# (and only it) can tell this run's blocks from anything else on the machine.
RUN_PREFIX = f"pytest-{os.getpid()}-"
_counter = itertools.count()


def new_block_name() -> str:
    return f"{RUN_PREFIX}{next(_counter)}"


def _digest(name: str) -> str:
    return "=" + hashlib.sha256(name.encode()).hexdigest()


def shm_path(name: str) -> Path:
    """Where the name ``name`` lives as a file: the Linux block's object, or
    the portable backend's record file. (The naming rules of
    crates/mmapfile/src/os/unix/names.rs, written out again to check them.)"""
    if PORTABLE:
        plain = re.fullmatch(r"[a-z0-9_.-]{1,200}", name) and not name.startswith(".")
        return STATE_DIR / (name if plain else _digest(name))
    if len("mmapfile.") + len(name.encode()) > 255 or name.startswith("="):
        return SHM_DIR / f"mmapfile.{_digest(name)}"
    return SHM_DIR / f"mmapfile.{name}"


def object_path(name: str) -> Path:
    """Where the bytes of the block ``name`` are on Linux (simulated or not)."""
    return SHM_DIR / mmapfile._mmapfile._block_info(name)["shm_name"].lstrip("/")


def segment_id(name: str) -> int | None:
    """The id of the System V segment that the Linux record of ``name`` names
    in its modification time, or None (crates/mmapfile/src/os/unix/segment.rs,
    ``SegmentRef::mtime``, read again here to check it): seconds with 0b0101
    in their top four bits, then the id in the next 31."""
    seconds = os.stat(shm_path(name)).st_mtime_ns // 10**9
    if seconds >> 60 != 0b0101:
        return None
    return (seconds >> 29) & 0x7FFF_FFFF


def sysvipc_segments() -> list[dict[str, str]]:
    """Every System V segment of this IPC namespace as /proc/sysvipc/shm
    lists it: one dict per segment, keyed by the header's column names
    (``shmid``, ``perms``, ``size``, ``cpid``, ``nattch``...)."""
    with open("/proc/sysvipc/shm") as f:
        header = f.readline().split()
        return [dict(zip(header, line.split())) for line in f]


def hold_as_linux_holder(fd: int) -> None:
    """Takes the holder lock of the Linux protocol on ``fd`` (a shared OFD
    lock on byte 0), as a holder of the block does
    (crates/mmapfile/src/os/unix/lifetime_linux.rs)."""
    import fcntl  # POSIX only
    import struct

    flock = struct.pack("hhqqi4x", fcntl.F_RDLCK, os.SEEK_SET, 0, 1, 0)
    fcntl.fcntl(fd, fcntl.F_OFD_SETLK, flock)


def open_fds() -> set[str]:
    """The descriptors this process has open (Linux only)."""
    return set(os.listdir("/proc/self/fd"))


LINUX = sys.platform.startswith("linux")
WINDOWS = sys.platform == "win32"
# The OS calls that errors name when a file or an existing block is missing.
OPEN_FILE_FUNC = "CreateFile" if WINDOWS else "open"
# (The portable backend opens the name's record file first.)
OPEN_BLOCK_FUNC = "OpenFileMapping" if WINDOWS else "open" if PORTABLE else "shm_open"


def opened_size(size: int) -> int:
    """The size a process opening an existing block of ``size`` bytes sees:
    Windows keeps a section's size in whole pages only (pywin32 sees the same),
    so there it is rounded up to the page size."""
    if WINDOWS:
        page = mmapfile.PAGESIZE
        return -(-size // page) * page
    return size


def _under_wine() -> bool:
    if not WINDOWS:
        return False
    import ctypes

    return hasattr(ctypes.WinDLL("ntdll"), "wine_get_version")


UNDER_WINE = _under_wine()
# Set by ci/wheels/test-aarch64.sh, which runs the suite under qemu-user:
# the few tests that need what qemu does not model skip, with the reason.
EMULATOR = os.environ.get("MMAPFILE_EMULATOR")


def not_under_emulation(reason: str):
    return pytest.mark.skipif(bool(EMULATOR), reason=f"under {EMULATOR}: {reason}")


windows_only = pytest.mark.skipif(not WINDOWS, reason="Windows behaviour")
no_madvise = pytest.mark.skipif(WINDOWS, reason="Windows has no madvise")

# Windows has no user ids; there nobody is root.
IS_ROOT = getattr(os, "geteuid", lambda: -1)() == 0


def _portable_entries() -> set[Path]:
    """The portable backend's files: record files (and drafts, and records
    moved aside) in its state directory, and block objects in /dev/shm."""
    found = set()
    if STATE_DIR.is_dir():
        found |= set(STATE_DIR.iterdir())
    if SIMULATED:
        found |= {SHM_DIR / e for e in os.listdir(SHM_DIR) if e.startswith("mmapfile=")}
    return found


# What was there before this run (another program's, or an earlier run's).
_FOREIGN = _portable_entries() if PORTABLE else set()


def leftovers() -> list[str]:
    if PORTABLE:
        return sorted(str(p) for p in _portable_entries() - _FOREIGN)
    # Under Wine, /dev/shm resolves to the Linux host's: only look on Linux.
    if not LINUX or not SHM_DIR.is_dir():
        return []
    return sorted(e for e in os.listdir(SHM_DIR) if e.startswith(f"mmapfile.{RUN_PREFIX}"))


needs_proc = pytest.mark.skipif(
    not LINUX or not Path("/proc/self/fd").is_dir(),
    reason="needs /proc/self/fd to count descriptors (Linux)",
)
needs_dev_shm = pytest.mark.skipif(
    not LINUX or not SHM_DIR.is_dir(),
    reason="named blocks are visible in /dev/shm on Linux only",
)
linux_only = pytest.mark.skipif(not LINUX, reason="holder tracking needs Linux")
posix_only = pytest.mark.skipif(WINDOWS, reason="needs fork or POSIX signals (not on Windows)")


@pytest.fixture
def block_name() -> str:
    """A block name no other test (or other run) uses."""
    return new_block_name()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A path inside a fresh directory; the file does not exist yet."""
    return tmp_path / "data.bin"


def _remove(entries: list[str]) -> None:
    for entry in entries:
        try:
            os.unlink(SHM_DIR / entry)  # an absolute path stays as it is
        except FileNotFoundError:  # a holder closing now removed it first
            pass


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:  # in setup or in the test itself
        item.mmapfile_failed = True
    return report


@pytest.fixture(autouse=True)
def nothing_left_in_dev_shm(request):
    """After each test, no block of this run is left in /dev/shm. Whatever a
    test left is removed, so that a failing test (whose traceback may keep a
    map alive, or whose child never got to close) cannot leave blocks for
    the tests after it; a test that passed but left blocks fails."""
    yield
    left = leftovers()
    if not left:
        return
    _remove(left)
    if not getattr(request.node, "mmapfile_failed", False):
        pytest.fail(f"the test left blocks in {SHM_DIR}: {left}")


@pytest.fixture(scope="session", autouse=True)
def nothing_left_at_exit():
    """The same check for the whole run, after the session-wide fixtures."""
    yield
    left = leftovers()
    _remove(left)
    assert not left, f"the tests left blocks in {SHM_DIR}: {left}"
