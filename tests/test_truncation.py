"""A file or block that shrinks under a mapping makes every access raise
mmapfile.error instead of killing the process with SIGBUS. Each case runs in
a child process: if the guard failed, the child would die, and the test
would fail with the signal's name instead of taking pytest down."""

import signal
import sys

import mmapfile
import pytest
from _child import assert_child_ok, describe, run_child
from conftest import PORTABLE

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="SIGBUS on truncation is Linux")

# Sets up a 4-page file mapped in full, then cuts the file to half a page.
SETUP = """
import os, tempfile, mmapfile
page = mmapfile.PAGESIZE
fd, path = tempfile.mkstemp()
os.write(fd, b"x" * (4 * page))
os.close(fd)
m = mmapfile.mmapfile(path, None)
os.truncate(path, page // 2)

def expect_truncated(call):
    try:
        call()
    except mmapfile.error as e:
        assert "shrank" in str(e) and "no longer exist" in str(e), str(e)
        return str(e)
    raise AssertionError("no error raised")
"""

# Each access touches the vanished part of the view (offsets >= one page).
ACCESSES = {
    "read": "m.read()",
    "read_byte": "(m.seek(3 * page), m.read_byte())",
    "readline": "m.readline()",
    "write": "(m.seek(page), m.write(b'y' * page))",
    "write_byte": "(m.seek(2 * page), m.write_byte(b'y'))",
    "find": "m.find(b'needle')",
    "rfind": "m.rfind(b'needle')",
    "move": "m.move(0, 2 * page, page)",
    "move_into_lost_pages": "m.move(2 * page, 0, 16)",
}

HAS_ITEMS = hasattr(mmapfile.mmapfile, "__getitem__")
ITEM_ACCESSES = {
    "index": "m[3 * page]",
    "slice": "m[page : 2 * page]",
    "index_assign": "m.__setitem__(3 * page, 1)",
    "slice_assign": "m.__setitem__(slice(page, page + 3), b'abc')",
}


@pytest.mark.parametrize("access", sorted(ACCESSES))
def test_access_past_the_new_end_raises_and_the_process_lives(access):
    out = assert_child_ok(
        SETUP
        + f"""
print(expect_truncated(lambda: {ACCESSES[access]}))
print("alive")
"""
    )
    assert out.rstrip().endswith("alive")
    assert "the file or block behind the mapping shrank" in out


@pytest.mark.skipif(not HAS_ITEMS, reason="indexing is not in this build of the binding yet")
@pytest.mark.parametrize("access", sorted(ITEM_ACCESSES))
def test_indexing_past_the_new_end_raises_and_the_process_lives(access):
    assert_child_ok(SETUP + f"expect_truncated(lambda: {ITEM_ACCESSES[access]})\n")


def test_view_stays_poisoned_until_resize_and_then_works():
    out = assert_child_ok(
        SETUP
        + """
first = expect_truncated(lambda: m.read())
# The part that still exists is refused too: the view's pages were replaced.
m.seek(0)
assert expect_truncated(lambda: m.read(1)) == first
assert expect_truncated(lambda: m.write(b"z")) == first
assert expect_truncated(lambda: m.flush()) == first
assert m.tell() == 0 and m.size() == 4 * page
m.resize(0)
assert m.size() == page // 2
assert m.read() == b"x" * (page // 2)
m.close()
os.unlink(path)
print(first)
"""
    )
    # Page 0 still exists (its tail past the new end reads as zeros); the
    # first byte that vanished is the one at offset PAGESIZE.
    assert f"offset {mmapfile.PAGESIZE} of the view" in out


@pytest.mark.skipif(
    not PORTABLE, reason="Linux keeps a named block in a segment, which cannot shrink"
)
def test_named_block_shrunk_by_another_handle_raises():
    assert_child_ok(
        """
import errno, os, mmapfile
from mmapfile import _mmapfile
name = f"trunc-{os.getpid()}"
m = mmapfile.mmapfile(None, name, 3 * mmapfile.PAGESIZE)
# Where the bytes are (a random name under the portable backend, whose macOS
# would refuse this ftruncate).
obj = "/dev/shm" + _mmapfile._block_info(name)["shm_name"]
fd = os.open(obj, os.O_RDWR)
os.ftruncate(fd, 0)
os.close(fd)
try:
    m.read()
except mmapfile.error as e:
    assert "shrank" in str(e)
else:
    raise AssertionError("no error")
m.close()
assert not os.path.exists(obj), "the last close removes the block"
try:
    _mmapfile._block_info(name)
except OSError as e:
    assert e.errno == errno.ENOENT, e
else:
    raise AssertionError("the name outlived its last holder")
"""
    )


@pytest.mark.skipif(PORTABLE, reason="the portable backend keeps a block in a POSIX object")
def test_named_block_cannot_be_shrunk_through_its_name_on_linux():
    # The name is an empty record of the System V segment that holds the
    # bytes: cutting the record changes nothing, and a segment has no size
    # to cut.
    assert_child_ok(
        """
import os, mmapfile
from mmapfile import _mmapfile
name = f"trunc-{os.getpid()}"
m = mmapfile.mmapfile(None, name, 3 * mmapfile.PAGESIZE)
m.write(b"kept")
obj = "/dev/shm" + _mmapfile._block_info(name)["shm_name"]
fd = os.open(obj, os.O_RDWR)
os.ftruncate(fd, 0)
os.close(fd)
m.seek(0)
data = m.read()
assert len(data) == 3 * mmapfile.PAGESIZE and data[:4] == b"kept", data[:8]
m.close()
assert not os.path.exists(obj), "the last close removes the name"
"""
    )


def test_fault_through_an_exported_buffer_reads_zeros_and_poisons_the_view():
    # Code that reads the mapping through the buffer protocol is not inside
    # any method of ours, but the guard knows the view's addresses: the
    # vanished pages read as zeros, writes to them go nowhere, the process
    # lives, and the object reports the fault at its next access.
    assert_child_ok(
        SETUP
        + """
mv = memoryview(m)
assert mv[0] == ord("x")
assert mv[3 * page] == 0
mv[3 * page + 1] = 7
assert bytes(mv[2 * page : 2 * page + 4]) == bytes(4)
mv.release()
msg = expect_truncated(lambda: m.read_byte())
# The lowest vanished address touched is reported.
assert f"offset {2 * page} " in msg, msg
m.close()
os.unlink(path)
"""
    )


# A fault in a view of CPython's mmap, which no guard covers.
CPYTHON_MMAP_FAULT = """
f = open(path, "r+b")
f.truncate(4 * page)
cp = mmap.mmap(f.fileno(), 4 * page)
f.truncate(0)
print("before", flush=True)
cp[3 * page]
print("survived")
"""


def test_fault_that_is_not_ours_still_kills_with_sigbus():
    # CPython's own mmap is not guarded: once our handler is installed, its
    # fault must reach the default action and kill the process as before.
    proc = run_child(
        SETUP
        + """
import mmap
expect_truncated(lambda: m.read())  # our handler is installed and has worked
"""
        + CPYTHON_MMAP_FAULT
    )
    assert proc.returncode == -signal.SIGBUS, describe(proc)
    assert "before" in proc.stdout and "survived" not in proc.stdout


def test_fault_that_is_not_ours_reaches_the_previous_handler():
    # faulthandler installs its SIGBUS handler first; ours chains to it, so it
    # still reports the crash (and then the process dies of SIGBUS).
    proc = run_child(
        "import faulthandler; faulthandler.enable()\n"
        + SETUP
        + """
import mmap
expect_truncated(lambda: m.read())  # ours is installed on top and recovers
f = open(path, "r+b")
f.truncate(4 * page)
cp = mmap.mmap(f.fileno(), 4 * page)
f.truncate(0)
cp[3 * page]
"""
    )
    assert proc.returncode == -signal.SIGBUS, describe(proc)
    assert "Fatal Python error: Bus error" in proc.stderr, describe(proc)


@pytest.mark.parametrize("faulthandler", [False, True])
def test_fault_in_a_thread_with_the_gil_released_is_caught(faulthandler):
    # Large reads run with the GIL released, in the calling thread. pytest
    # itself enables faulthandler: a child that does the same before mapping
    # (ours then sits on top of it) must recover in any thread as well.
    prelude = "import faulthandler; faulthandler.enable()\n" if faulthandler else ""
    assert_child_ok(
        prelude
        + """
import os, tempfile, threading, mmapfile
size = 64 * mmapfile.PAGESIZE
fd, path = tempfile.mkstemp()
os.ftruncate(fd, size)
os.close(fd)
errors = []
def worker():
    m = mmapfile.mmapfile(path, None)
    os.truncate(path, 0)
    try:
        m.read()
    except mmapfile.error as e:
        errors.append(str(e))
t = threading.Thread(target=worker)
t.start(); t.join()
assert len(errors) == 1 and "offset 0 " in errors[0], errors
os.unlink(path)
"""
    )


def test_guard_holds_when_faulthandler_is_enabled_after_the_first_mapping():
    # faulthandler installs its handler on top of ours; on a fault it dumps,
    # puts ours back and re-raises with raise(). Ours must take that for the
    # fault it is, and the access must raise instead of the process dying.
    proc = run_child(
        SETUP
        + """
import faulthandler
faulthandler.enable()
first = expect_truncated(lambda: (m.seek(3 * page), m.read(10)))
assert expect_truncated(lambda: m.read(10)) == first
m.resize(0)
m.seek(0)
assert m.read() == b"x" * (page // 2)
m.close()
os.unlink(path)
print("alive")
"""
    )
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.rstrip().endswith("alive")


def test_fault_that_is_not_ours_still_kills_when_faulthandler_came_after_ours():
    # The re-raise is passed over once; the fault then comes back to our
    # handler, which is not its owner and lets it kill the process.
    proc = run_child(
        SETUP
        + """
import faulthandler, mmap
faulthandler.enable()
"""
        + CPYTHON_MMAP_FAULT
    )
    assert proc.returncode == -signal.SIGBUS, describe(proc)
    assert "before" in proc.stdout and "survived" not in proc.stdout
    assert "Fatal Python error: Bus error" in proc.stderr, describe(proc)


def test_sigbus_sent_to_itself_still_kills():
    # A signal the process sends itself from ordinary code is not a re-raise
    # of a fault: it goes to the default action as before.
    proc = run_child(
        SETUP
        + """
import signal
expect_truncated(lambda: m.read())  # our handler is installed
print("before", flush=True)
signal.raise_signal(signal.SIGBUS)
print("survived")
"""
    )
    assert proc.returncode == -signal.SIGBUS, describe(proc)
    assert "before" in proc.stdout and "survived" not in proc.stdout
