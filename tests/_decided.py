"""The decided behaviour of indexing, item and slice assignment and find/rfind:
CPython 3.15's `mmap`, on every Python (docs/migrating.md, "One behaviour on
every Python").

The tests compare mmapfile with these tables, not with the `mmap` of the
Python that runs them: CPython's own `mmap` changed in 3.14 and 3.15, and
mmapfile must not. On CPython 3.15 and later, test_decided.py also checks the
tables against the running `mmap`, so that a change in CPython shows up as a
failing test rather than silently.

Each table is an ordered list of checks: the first one that applies gives the
exception, as CPython 3.15's mmapmodule.c reports them.
"""

from __future__ import annotations

import operator

# Access modes, as in the mmap module (and mmapfile's constants).
ACCESS_READ, ACCESS_WRITE, ACCESS_COPY = 1, 2, 3

INDEX_MIN, INDEX_MAX = -(2**63), 2**63 - 1  # Py_ssize_t on 64-bit systems


def _as_index(obj):
    """obj.__index__(), or None when it has none."""
    try:
        return operator.index(obj)
    except TypeError:
        return None


def _is_bytes_like(obj):
    try:
        memoryview(obj)
    except TypeError:
        return False
    return True


# m[i] = value, in the order of the checks.
ITEM_ASSIGNMENT_CHECKS = [
    ("the map is read-only", TypeError),
    ("the key has no __index__", TypeError),
    ("the key does not fit an index-sized integer", IndexError),
    ("the value has no __index__", TypeError),
    ("the value does not fit an index-sized integer", TypeError),
    ("the value is not in range(0, 256)", ValueError),
    ("the map is closed", ValueError),
    ("the index is out of range", IndexError),
]


def item_assignment(data: bytes, access: int, closed: bool, key, value):
    """What `m[key] = value` gives on a map holding `data`: ("ok", the new
    contents) or ("raised", exception type). `key` is not a slice."""
    k, v = _as_index(key), _as_index(value)
    n = len(data)
    failing = {
        "the map is read-only": access == ACCESS_READ,
        "the key has no __index__": k is None,
        "the key does not fit an index-sized integer": k is not None
        and not INDEX_MIN <= k <= INDEX_MAX,
        "the value has no __index__": v is None,
        "the value does not fit an index-sized integer": v is not None
        and not INDEX_MIN <= v <= INDEX_MAX,
        "the value is not in range(0, 256)": v is not None and not 0 <= v < 256,
        "the map is closed": closed,
        "the index is out of range": k is not None and not -n <= k < n,
    }
    for check, exc in ITEM_ASSIGNMENT_CHECKS:
        if failing[check]:
            return ("raised", exc)
    out = bytearray(data)
    out[k] = v
    return ("ok", bytes(out))


# m[start:stop:step] = value, in the order of the checks.
SLICE_ASSIGNMENT_CHECKS = [
    ("the map is read-only", TypeError),
    ("a bound of the slice has no __index__", TypeError),
    ("the step is zero", ValueError),
    ("the value is not bytes-like", TypeError),
    ("the map is closed", ValueError),
    ("the value's length is not the slice's", IndexError),
]


def slice_assignment(data: bytes, access: int, closed: bool, key: slice, value):
    """What `m[key] = value` gives for a slice `key` (see item_assignment)."""
    bounds = (key.start, key.stop, key.step)
    bad_bound = any(b is not None and _as_index(b) is None for b in bounds)
    step = None if bad_bound or key.step is None else _as_index(key.step)
    indices = None
    if not bad_bound and step != 0:
        indices = range(*key.indices(len(data)))
    bytes_like = _is_bytes_like(value)
    failing = {
        "the map is read-only": access == ACCESS_READ,
        "a bound of the slice has no __index__": bad_bound,
        "the step is zero": step == 0,
        "the value is not bytes-like": not bytes_like,
        "the map is closed": closed,
        "the value's length is not the slice's": indices is not None
        and bytes_like
        and len(indices) != memoryview(value).nbytes,
    }
    for check, exc in SLICE_ASSIGNMENT_CHECKS:
        if failing[check]:
            return ("raised", exc)
    out = bytearray(data)
    for i, b in zip(indices, bytes(value)):
        out[i] = b
    return ("ok", bytes(out))


# m[key] for reading: a closed map first, then the key, as bytes does.
def item_read(data: bytes, closed: bool, key):
    """What `m[key]` gives: ("ok", value) or ("raised", exception type)."""
    if closed:
        return ("raised", ValueError)
    if isinstance(key, slice):
        bounds = (key.start, key.stop, key.step)
        if any(b is not None and _as_index(b) is None for b in bounds):
            return ("raised", TypeError)
        if key.step is not None and _as_index(key.step) == 0:
            return ("raised", ValueError)
        return ("ok", data[key])
    k = _as_index(key)
    if k is None:
        return ("raised", TypeError)
    if not INDEX_MIN <= k <= INDEX_MAX or not -len(data) <= k < len(data):
        return ("raised", IndexError)
    return ("ok", data[k])


def search(data: bytes, method: str, needle, start=None, end=None, position=0):
    """What `m.find(needle, start, end)` / `m.rfind(...)` gives with the
    position at `position`: `bytes.find`'s answer on the whole view, with
    `start` defaulting to the position. A start past the end finds nothing,
    not even b"" (CPython 3.14 and older answered len(m) there). A bound
    beyond an index-sized integer is an OverflowError (bytes would clamp).
    None for either bound means its default (see cpython_ignores_end)."""
    for bound in (start, end):
        if bound is not None and not INDEX_MIN <= operator.index(bound) <= INDEX_MAX:
            return ("raised", OverflowError)
    start = position if start is None else start
    return ("ok", getattr(data, method)(bytes(needle), start, end))


def cpython_ignores_end(start, end) -> bool:
    """The one place where the decided behaviour departs from CPython 3.15's
    `mmap`: there (and in 3.14), `find(sub, None, end)` ignores `end`
    altogether, even a bad one, and searches to the end of the map; `bytes`,
    CPython's documentation ("find(sub[, start[, end]])") and mmapfile honour
    it. Checked against CPython 3.14.7 and 3.15.2."""
    return start is None and end is not None


def flush_size_means_to_the_end(size: int) -> bool:
    """flush(offset, size): 0 (pywin32) and -1 (CPython 3.15's default) both
    mean up to the end of the view."""
    return size in (0, -1)
