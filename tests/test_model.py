"""Model-based test: random sequences of every operation run against a
mapping and against a bytearray model; results, exception types, the
position and the whole contents must agree after every step.

CI runs a small budget. For a longer run set MMAPFILE_HYPOTHESIS_EXAMPLES,
e.g. MMAPFILE_HYPOTHESIS_EXAMPLES=5000 (steps per example scale with it)."""

import os
import tempfile

import mmapfile
from conftest import opened_size
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

EXAMPLES = int(os.environ.get("MMAPFILE_HYPOTHESIS_EXAMPLES", "60"))
STEPS = 40 if EXAMPLES <= 60 else 100

HAS_ITEMS = hasattr(mmapfile.mmapfile, "__getitem__")

sizes = st.integers(min_value=1, max_value=300)
ints = st.one_of(
    st.integers(min_value=-350, max_value=350),
    st.sampled_from([-(2**63), 2**63 - 1]),
)
data = st.binary(max_size=64)
needles = st.one_of(st.binary(max_size=3), st.sampled_from([b"\n", b"\x00", b"ab"]))
optional_ints = st.one_of(st.none(), ints)


def clamp(index, default, length):
    """CPython mmap's slice-bound rule, which find/rfind follow."""
    if index is None:
        return default
    if index < 0:
        return max(0, length + index)
    return min(index, length)


class Model:
    """What a mapping should do, written against a bytearray."""

    def __init__(self, backing, access, offset, length, growable=True):
        self.backing = backing  # the file's or block's bytes
        self.access = access
        self.growable = growable  # False for a named block
        self.closed = False
        self.pos = 0
        self.map_window(offset, length)

    def map_window(self, offset, length):
        self.offset, self.length = offset, length
        # Copy-on-write views are private copies; others alias the backing.
        self.private = (
            bytearray(self.backing[offset : offset + length])
            if self.access == mmapfile.ACCESS_COPY
            else None
        )

    def view(self):
        if self.private is not None:
            return self.private
        return self.backing[self.offset : self.offset + self.length]

    def store(self, at, data):
        if self.private is not None:
            self.private[at : at + len(data)] = data
        else:
            start = self.offset + at
            self.backing[start : start + len(data)] = data

    def check_open(self):
        if self.closed:
            raise ValueError("closed")

    def check_writable(self):
        self.check_open()
        if self.access == mmapfile.ACCESS_READ:
            raise TypeError("read-only")

    def read(self, n):
        self.check_open()
        left = self.length - self.pos
        n = left if n is None or n < 0 else min(n, left)
        out = bytes(self.view()[self.pos : self.pos + n])
        self.pos += n
        return out

    def read_byte(self):
        self.check_open()
        if self.pos >= self.length:
            raise ValueError("read byte out of range")
        self.pos += 1
        return bytes([self.view()[self.pos - 1]])

    def readline(self):
        self.check_open()
        v = self.view()
        i = v.find(b"\n", self.pos)
        end = self.length if i < 0 else i + 1
        out = bytes(v[self.pos : end])
        self.pos = end
        return out

    def write(self, data):
        self.check_writable()
        if self.pos + len(data) > self.length:
            raise ValueError("data out of range")
        self.store(self.pos, data)
        self.pos += len(data)

    def write_byte(self, b):
        self.check_writable()
        if self.pos >= self.length:
            raise ValueError("write_byte past end")
        self.store(self.pos, bytes([b]))
        self.pos += 1

    def seek(self, dist, how):
        self.check_open()
        target = {
            0: dist,
            1: self.pos + dist,
            2: self.length + dist if dist < 0 else self.length - dist,
        }.get(how)
        if target is None or not 0 <= target <= self.length:
            raise ValueError("seek")
        self.pos = target

    def tell(self):
        self.check_open()
        return self.pos

    def size(self):
        self.check_open()
        return self.length

    def find(self, needle, start, end, reverse):
        self.check_open()
        if start is not None and start > self.length:
            return -1  # as bytes.find (tests/_decided.py)
        start = clamp(start, self.pos, self.length)
        end = clamp(end, self.length, self.length)
        if end < start or end - start < len(needle):
            return -1
        hay = bytes(self.view()[start:end])
        i = hay.rfind(needle) if reverse else hay.find(needle)
        return -1 if i < 0 else i + start

    def move(self, dest, src, count):
        self.check_writable()
        if min(dest, src, count) < 0 or max(dest, src) + count > self.length:
            raise ValueError("move out of range")
        self.store(dest, bytes(self.view()[src : src + count]))

    def flush(self, offset, size):
        self.check_open()
        if not 0 <= offset <= self.length or size < -1:
            raise ValueError("flush")
        size = self.length - offset if size in (0, -1) else size
        if offset + size > self.length:
            raise ValueError("flush")
        return 1

    def resize(self, maximum, offset, length):
        self.check_open()
        if self.access != mmapfile.ACCESS_WRITE:
            # As CPython's mmap: a copy-on-write view would lose its changes.
            raise TypeError("cannot resize")
        size = maximum or len(self.backing)
        # The window is checked before anything grows: a refused resize
        # leaves the file as it was (fix 10).
        if offset >= size:
            raise ValueError("offset")
        length = length or size - offset
        if offset + length > size:
            raise ValueError("length")
        if maximum > len(self.backing):
            if not self.growable:
                raise ValueError("cannot grow")
            self.backing.extend(bytes(maximum - len(self.backing)))
        self.map_window(offset, length)
        self.pos = min(self.pos, length)

    def getitem(self, index):
        self.check_open()
        if isinstance(index, slice):
            return bytes(self.view()[index])
        if not -self.length <= index < self.length:
            raise IndexError("index")
        return self.view()[index]

    def setitem(self, index, value):
        # The decided order (tests/_decided.py): read-only before closed.
        if self.access == mmapfile.ACCESS_READ:
            raise TypeError("read-only")
        self.check_open()
        if isinstance(index, slice):
            start, stop, step = index.indices(self.length)
            positions = list(range(start, stop, step))
            if len(positions) != len(value):
                raise IndexError("length mismatch")
            for p, b in zip(positions, value):
                self.store(p, bytes([b]))
            return
        if not -self.length <= index < self.length:
            raise IndexError("index")
        self.store(index % self.length, bytes([value]))

    def close(self):
        self.closed = True


def outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except (ValueError, TypeError, IndexError, OverflowError) as e:
        return ("raised", type(e).__name__)


class MappingMatchesModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.m = None
        self.cleanup = []

    @initialize(
        kind=st.sampled_from(["file", "named", "unnamed"]),
        access=st.sampled_from([mmapfile.ACCESS_WRITE, mmapfile.ACCESS_READ, mmapfile.ACCESS_COPY]),
        initial=st.binary(min_size=1, max_size=300),
        window=st.tuples(st.integers(0, 299), st.integers(0, 300)),
    )
    def open(self, kind, access, initial, window):
        if kind == "unnamed" and access == mmapfile.ACCESS_READ:
            access = mmapfile.ACCESS_WRITE  # a fresh block cannot be read-only
        offset, length = window
        growable = True
        offset = min(offset, len(initial) - 1)
        length = min(length, len(initial) - offset)
        if kind == "file":
            fd, path = tempfile.mkstemp(prefix="mmapfile-model-")
            os.write(fd, initial)
            os.close(fd)
            self.cleanup.append(lambda: os.unlink(path))
            self.m = mmapfile.mmapfile(path, None, 0, offset, length, access=access)
        elif kind == "named":
            name = f"model-{os.getpid()}-{id(self)}"
            # The writer stays open as a second holder: a named block lives only
            # while someone holds it.
            writer = mmapfile.mmapfile(None, name, len(initial))
            writer.write(initial)
            self.cleanup.append(writer.close)
            self.m = mmapfile.mmapfile(None, name, 0, offset, length, access=access)
            # Windows: the opener sees the block in whole pages, zeros after
            # `initial`. A named block cannot grow: a section is sized once,
            # as are a System V segment on Linux and a shared-memory object on
            # macOS.
            initial += bytes(opened_size(len(initial)) - len(initial))
            growable = False
        else:
            self.m = mmapfile.mmapfile(None, None, len(initial), offset, length, access=access)
            # An unnamed block starts zeroed, whatever `initial` held.
            initial = bytes(len(initial))
        self.model = Model(
            bytearray(initial), access, offset, length or len(initial) - offset, growable
        )

    def teardown(self):
        if self.m is not None:
            self.m.close()
        for f in self.cleanup:
            try:
                f()
            except FileNotFoundError:
                pass

    def same(self, name, *args):
        got = outcome(getattr(self.m, name), *args)
        expected = outcome(getattr(self.model, name), *args)
        assert got == expected, f"{name}{args}: mapping {got}, model {expected}"

    @rule(n=optional_ints)
    def read(self, n):
        self.same("read", n)

    @rule()
    def read_byte(self):
        self.same("read_byte")

    @rule()
    def readline(self):
        self.same("readline")

    @rule(data=data)
    def write(self, data):
        self.same("write", data)

    @rule(b=st.integers(0, 255))
    def write_byte(self, b):
        self.same("write_byte", b)

    @rule(dist=ints, how=st.integers(-1, 3))
    def seek(self, dist, how):
        self.same("seek", dist, how)

    @rule()
    def tell_and_size(self):
        self.same("tell")
        self.same("size")

    @rule(needle=needles, start=optional_ints, end=optional_ints, reverse=st.booleans())
    def find(self, needle, start, end, reverse):
        got = outcome(self.m.rfind if reverse else self.m.find, needle, start, end)
        expected = outcome(self.model.find, needle, start, end, reverse)
        assert got == expected, (needle, start, end, reverse)

    @rule(dest=ints, src=ints, count=ints)
    def move(self, dest, src, count):
        self.same("move", dest, src, count)

    @rule(offset=ints, size=ints)
    def flush(self, offset, size):
        self.same("flush", offset, size)

    @rule(
        maximum=st.integers(0, 400),
        offset=st.integers(0, 400),
        length=st.integers(0, 400),
    )
    def resize(self, maximum, offset, length):
        self.same("resize", maximum, offset, length)

    @precondition(lambda self: HAS_ITEMS)
    @rule(index=ints)
    def getitem(self, index):
        got = outcome(self.m.__getitem__, index)
        expected = outcome(self.model.getitem, index)
        assert got == expected, f"m[{index}]: mapping {got}, model {expected}"

    @precondition(lambda self: HAS_ITEMS)
    @rule(start=optional_ints, stop=optional_ints, step=st.sampled_from([None, 1, 2, -1, -3]))
    def getslice(self, start, stop, step):
        got = outcome(self.m.__getitem__, slice(start, stop, step))
        assert got == outcome(self.model.getitem, slice(start, stop, step))

    @precondition(lambda self: HAS_ITEMS)
    @rule(index=ints, value=st.integers(0, 255))
    def setitem(self, index, value):
        got = outcome(self.m.__setitem__, index, value)
        assert got == outcome(self.model.setitem, index, value)

    @precondition(lambda self: HAS_ITEMS)
    @rule(
        start=optional_ints, stop=optional_ints, step=st.sampled_from([None, 1, 2, -1]), data=data
    )
    def setslice(self, start, stop, step, data):
        index = slice(start, stop, step)
        got = outcome(self.m.__setitem__, index, data)
        assert got == outcome(self.model.setitem, index, data)

    @rule()
    def close(self):
        self.same("close")

    @invariant()
    def contents_and_position_match(self):
        if self.m is None:
            return
        if self.model.closed:
            assert outcome(self.m.tell) == ("raised", "ValueError")
            return
        pos = self.m.tell()
        assert pos == self.model.pos
        self.m.seek(0)
        assert self.m.read() == bytes(self.model.view())
        self.m.seek(pos)


MappingMatchesModel.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_mapping_matches_bytearray_model = MappingMatchesModel.TestCase
