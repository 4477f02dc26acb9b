"""Large reads into huge-page-backed bytes (docs/performance.md, "Large
reads"): the results are byte for byte those of CPython's mmap, with the
advice given, refused or turned off."""

from __future__ import annotations

import mmap
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import mmapfile
import pytest
from conftest import LINUX, not_under_emulation

MiB = 1 << 20
HUGE = 2 * MiB
# The core's HUGE_PAGE_COPY_MIN: reads this long or longer are advised.
THRESHOLD = 2 * MiB
FILE_SIZE = 20 * MiB
THP = Path("/sys/kernel/mm/transparent_hugepage")
# Set for the run of this file in a process with THP disabled (see the last test).
THP_DISABLED_RUN = "MMAPFILE_TEST_THP_DISABLED"

# Lengths around the threshold and around whole multiples of 2 MiB, and
# starts that put the result's first byte at different distances from a
# huge page boundary of the source.
LENGTHS = sorted(
    {THRESHOLD - 1, THRESHOLD, THRESHOLD + 1, HUGE + 4096, HUGE + MiB}
    | {k * HUGE + d for k in (2, 3, 4) for d in (-1, 0, 1)}
    | {5 * HUGE - 4097, 8 * HUGE + 4096}
)
STARTS = [0, 1, 4095, HUGE - 1, HUGE + 48]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The same random file mapped by us and by CPython's mmap."""
    path = tmp_path_factory.mktemp("huge") / "data.bin"
    rng = random.Random(16)
    # No newline, so readline() reads to the end.
    path.write_bytes(rng.randbytes(FILE_SIZE).replace(b"\n", b"N"))
    with open(path, "rb") as f:
        theirs = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    ours = mmapfile.mmapfile(str(path), None, access=mmapfile.ACCESS_READ)
    yield ours, theirs
    ours.close()
    theirs.close()


@pytest.mark.parametrize("length", LENGTHS)
def test_large_reads_equal_cpython_mmap_around_the_threshold_and_2mib_edges(pair, length):
    ours, theirs = pair
    for start in STARTS:
        ours.seek(start)
        theirs.seek(start)
        got = ours.read(length)
        assert got == theirs.read(length), (start, length)
        assert ours.tell() == theirs.tell()
        assert ours[start : start + length] == theirs[start : start + length], (start, length)


def test_large_strided_and_whole_reads_equal_cpython_mmap(pair):
    ours, theirs = pair
    assert ours[1 : FILE_SIZE - 1 : 3] == theirs[1 : FILE_SIZE - 1 : 3]
    assert ours[FILE_SIZE - 1 : 0 : -2] == theirs[FILE_SIZE - 1 : 0 : -2]
    for start in (0, 4095, HUGE + 1):
        ours.seek(start)
        theirs.seek(start)
        assert ours.read() == theirs.read()
        ours.seek(start)
        theirs.seek(start)
        assert ours.readline() == theirs.readline()


def test_many_large_reads_stay_equal_when_their_memory_is_reused(pair):
    """The allocator hands the memory of a freed result to the next one; an
    advised range keeps its advice, and its contents must still be right."""
    ours, theirs = pair
    rng = random.Random(2)
    for _ in range(40):
        length = rng.randrange(THRESHOLD - MiB, 12 * MiB)
        start = rng.randrange(0, FILE_SIZE - length)
        assert ours[start : start + length] == theirs[start : start + length], (start, length)


def thp_mode() -> str | None:
    """The THP mode of 2 MiB anonymous pages: 'always', 'madvise', 'never'."""

    def selected(path: Path) -> str | None:
        try:
            m = re.search(r"\[(\w+)\]", path.read_text())
        except OSError:
            return None
        return m.group(1) if m else None

    own = selected(THP / "hugepages-2048kB" / "enabled")
    return selected(THP / "enabled") if own in (None, "inherit") else own


def mapping_of(address: int) -> dict[str, str]:
    """The /proc/self/smaps entry (field: value) of the mapping holding address."""
    entry: dict[str, str] | None = None
    for line in Path("/proc/self/smaps").read_text().splitlines():
        m = re.match(r"([0-9a-f]+)-([0-9a-f]+) ", line)
        if m:
            if entry is not None:
                break
            if int(m.group(1), 16) <= address < int(m.group(2), 16):
                entry = {}
        elif entry is not None and ":" in line:
            key, value = line.split(":", 1)
            entry[key] = value.strip()
    assert entry is not None, f"no mapping holds {address:#x}"
    return entry


def data_address(b: bytes) -> int:
    """Where a CPython bytes object's contents start."""
    return id(b) + bytes.__basicsize__ - 1


needs_thp_madvise = pytest.mark.skipif(
    not LINUX or thp_mode() != "madvise", reason="needs Linux with THP in madvise mode"
)


@needs_thp_madvise
def test_a_large_read_asks_for_huge_pages_in_the_middle_of_its_result(pair):
    ours, _ = pair
    ours.seek(0)
    result = ours.read(8 * MiB)
    middle = mapping_of(data_address(result) + 4 * MiB)
    assert "hg" in middle["VmFlags"].split()
    if os.environ.get(THP_DISABLED_RUN):
        # The advice is taken, but a process with THP disabled gets none.
        assert middle["AnonHugePages"] == "0 kB"


@pytest.mark.skipif(not LINUX, reason="the advice exists on Linux only")
def test_mmapfile_hugepages_0_turns_the_advice_off(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"x" * (8 * MiB))
    code = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import mmapfile
from test_huge_pages import data_address, mapping_of
m = mmapfile.mmapfile({str(path)!r}, None)
result = m.read()
assert result == b"x" * {8 * MiB}
print("hg" in mapping_of(data_address(result) + {4 * MiB})["VmFlags"].split())
"""
    env = dict(os.environ, MMAPFILE_HUGEPAGES="0")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


@pytest.mark.skipif(not LINUX, reason="PR_SET_THP_DISABLE is Linux's")
@pytest.mark.skipif(bool(os.environ.get(THP_DISABLED_RUN)), reason="already the disabled run")
@not_under_emulation("qemu-user answers prctl(PR_SET_THP_DISABLE) with EINVAL")
def test_this_file_passes_with_thp_disabled_for_the_process():
    code = f"""
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_THP_DISABLE, PR_GET_THP_DISABLE = 41, 42
assert libc.prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0, ctypes.get_errno()
assert libc.prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1
import pytest
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", {__file__!r}]))
"""
    env = dict(os.environ, **{THP_DISABLED_RUN: "1"})
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert " passed" in out.stdout and " failed" not in out.stdout
