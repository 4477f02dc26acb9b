"""Compares the records of ``scenarios.py``: pywin32 under Wine against ours
under Wine, and ours under Wine against ours on Linux.

The records come from ``make test-windows``, which runs the scenarios in the
Windows Python and points ``MMAPFILE_COMPAT_RECORDS`` at them. Without it
(a Linux-only run), these tests are skipped.

Every difference between pywin32 and us must be listed in ``FIXES`` with both
answers, so a change on either side fails here until it is documented.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

RECORDS = os.environ.get("MMAPFILE_COMPAT_RECORDS")

pytestmark = pytest.mark.skipif(
    not RECORDS,
    reason="compared in `make test-windows` (a stage of `make test`), once Wine has "
    "recorded pywin32's answers; this run has no records",
)


def records(name):
    return json.loads((Path(RECORDS) / f"{name}.json").read_text())


def err(code, func):
    return ["raised", "error", None, code, func]


def value_error(msg):
    return ["raised", "ValueError", msg, None, None]


# (scenario, step): (pywin32's outcome, ours, why). The fix numbers are those
# of tests/test_fixes.py and docs/migrating.md.
FIXES = {
    ("position", "read(-1) length from 3"): (
        ["raised", "SystemError", "Negative size passed to PyBytes_FromStringAndSize", None, None],
        ["ok", 4093],
        "fix 4: pywin32 computes a negative length; we read the rest of the view",
    ),
    ("position", "read() without argument"): (
        ["raised", "TypeError"],
        ["ok", {"bytes": "62"}],
        "extension: read() without a size reads to the end, as CPython's mmap",
    ),
    ("find", "seek(0); find(b'x', *(5,))"): (
        ["ok", 5],
        ["ok", 10],
        "fix 2: pywin32 subtracts start from the match; we return the offset",
    ),
    ("find", "seek(0); find(b'x', *(20,))"): (
        ["ok", -10],
        ["ok", -1],
        "fix 2: start past the match finds nothing",
    ),
    ("find", "seek(4); find(b'x', *())"): (
        ["ok", 6],
        ["ok", 10],
        "fix 2: results are offsets in the view, not relative to the position",
    ),
    ("find", "seek(12); find(b'x', *(5,))"): (
        ["ok", -1],
        ["ok", 10],
        "fix 2: an explicit start is where the search starts, not the position",
    ),
    ("construction", "size 2**64"): (
        err(87, "CreateFileMapping"),
        ["raised", "OverflowError", "int too big to convert", None, None],
        "fix 4: a size that no C type holds is an OverflowError, as in CPython",
    ),
    ("construction", "missing block without size"): (
        err(87, "CreateFileMapping"),
        err(2, "OpenFileMapping"),
        "fix 7: without a size we open the block, so a missing one is 'not found'",
    ),
    ("construction", "existing block without size"): (
        err(87, "CreateFileMapping"),
        ["ok", 4096],
        "fix 7: an existing block opens without a size",
    ),
    ("construction", "error is OSError"): (
        ["ok", False],
        ["ok", True],
        "fix 9: mmapfile.error is an OSError subclass",
    ),
    ("files", "unaligned offset"): (
        err(1132, "MapViewOfFile"),
        ["ok", {"bytes": "646566"}],
        "fix 8: FileOffset need not be a multiple of the allocation granularity",
    ),
    ("files", "100-byte file, MaximumSize 0"): (
        ["ok", 4096],
        ["ok", 100],
        "fix 1: MaximumSize=0 maps exactly the file",
    ),
    ("idioms", "window past the mapping"): (
        err(87, "MapViewOfFile"),
        value_error("FileOffset 262144 is not inside the mapping (131072 bytes)"),
        "fix 4: a window outside the mapping is a ValueError that says why",
    ),
    ("idioms", "the losing File was created"): (
        ["ok", True],
        ["ok", False],
        "fix 11: when the name exists, File is not created (pywin32 leaves an empty file)",
    ),
}

# Steps whose OS error differs between Linux and Windows, by design: POSIX
# has one errno (ENOENT, so winerror 2) for a missing file and a missing
# directory, where Windows says ERROR_PATH_NOT_FOUND (3).
LINUX_DIFFERENCES = {
    ("idioms", "missing directory with a name"): err(2, "open"),
    ("idioms", "a directory as File"): err(5, "open"),
    ("idioms", "winerror is an attribute"): ["ok", [2, "open"]],
}


def comparable(outcome):
    """Argument-parsing TypeErrors are compared by type only: their wording
    comes from the argument parser (pywin32's or Python's), not from us."""
    if outcome[:2] == ["raised", "TypeError"]:
        return outcome[:2]
    return outcome


def steps(recs, scenario):
    return dict(recs["scenarios"][scenario])


@pytest.fixture(scope="module")
def pywin32():
    return records("pywin32")


@pytest.fixture(scope="module")
def ours_windows():
    return records("ours-windows")


SCENARIOS = [
    "position",
    "find",
    "readline_and_move",
    "flush_resize_close",
    "construction",
    "files",
    "idioms",
]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_ours_matches_pywin32_except_documented_fixes(pywin32, ours_windows, scenario):
    theirs, ours = steps(pywin32, scenario), steps(ours_windows, scenario)
    assert list(theirs) == list(ours), "both ran the same steps"
    for step, their_outcome in theirs.items():
        fix = FIXES.get((scenario, step))
        if fix is None:
            assert comparable(ours[step]) == comparable(their_outcome), step
        else:
            want_theirs, want_ours, _why = fix
            assert comparable(their_outcome) == want_theirs, f"pywin32 changed: {step}"
            assert comparable(ours[step]) == want_ours, f"our fix changed: {step}"


def test_every_documented_fix_was_exercised(pywin32):
    ran = {(sc, step) for sc in SCENARIOS for step in steps(pywin32, sc)}
    assert set(FIXES) <= ran


@pytest.mark.parametrize("direction", ["ours->pywin32", "pywin32->ours"])
def test_pywin32_and_ours_share_a_named_block_across_processes(ours_windows, direction):
    returncode, child_read, child_stderr, parent_read = ours_windows["share"][direction]
    parent, child = direction.split("->")
    assert returncode == 0, child_stderr
    assert child_read == f"from {parent}"
    assert parent_read == f"answer from {child}"


@pytest.mark.parametrize("direction", ["ours->pywin32", "pywin32->ours"])
def test_pywin32_and_ours_share_a_named_file_mapping_across_processes(ours_windows, direction):
    returncode, child_read, child_stderr, parent_read, on_disk = ours_windows["share_file"][
        direction
    ]
    parent, child = direction.split("->")
    assert returncode == 0, child_stderr
    assert child_read == f"from {parent}"
    assert parent_read == on_disk == f"answer from {child}"


def os_neutral(outcome, scenario):
    """The calls that fail differ per OS (``open`` and ``CreateFile``), so
    only the kind of an OS error is compared, and for the pywin32 idioms its
    Windows code too, which handlers test and which we give on POSIX."""
    outcome = comparable(outcome)
    if outcome[:2] != ["raised", "error"]:
        return outcome
    return outcome[:2] + ([outcome[3]] if scenario == "idioms" else [])


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_ours_on_linux_matches_ours_on_windows(ours_windows, scenario):
    linux = steps(records("ours-linux"), scenario)
    windows = steps(ours_windows, scenario)
    assert list(linux) == list(windows)
    for step in windows:
        if (scenario, step) in LINUX_DIFFERENCES:
            assert linux[step] == LINUX_DIFFERENCES[(scenario, step)], step
            continue
        assert os_neutral(linux[step], scenario) == os_neutral(windows[step], scenario), step


@pytest.mark.parametrize("server", ["ours", "pywin32"])
def test_a_pywin32_client_retry_loop_catches_our_error_until_the_block_exists(ours_windows, server):
    # pywin32 and ours installed in one Windows Python: the client's
    # `except pywintypes.error` catches our error, retries, and reads the
    # frame once the server (either implementation) has made the block.
    returncode, first_line, report, stderr = ours_windows["retry_client"][f"{server} server"]
    assert returncode == 0, stderr
    assert first_line == "waiting"
    assert report["attempts"] >= 1
    assert report["frame"] == "frame 1"
    first = report["first_error"]
    assert first["is_pywintypes_error"] and first["is_oserror"]
    assert first["type"] == "error"
    assert first["args"] == [2, "OpenFileMapping", first["strerror"]]  # ERROR_FILE_NOT_FOUND
    assert first["winerror"] == 2 and first["funcname"] == "OpenFileMapping"
    assert first["errno"] == 2  # ENOENT, as OSError derives it from winerror 2


def test_our_error_has_the_shape_of_pywin32s(ours_windows):
    ours, theirs = (ours_windows["pywintypes_error"][impl] for impl in ("ours", "pywin32"))
    assert theirs["is_pywintypes_error"] and not theirs["is_oserror"]
    assert ours["is_pywintypes_error"] and ours["is_oserror"]
    for shape in (ours, theirs):
        # pywin32's args: (winerror, funcname, strerror), also as attributes.
        assert shape["args"] == [shape["winerror"], shape["funcname"], shape["strerror"]]
    assert ours["winerror"] == theirs["winerror"] == 3  # ERROR_PATH_NOT_FOUND
    assert ours["funcname"] == theirs["funcname"] == "CreateFile"
    assert ours["strerror"] and theirs["strerror"]
