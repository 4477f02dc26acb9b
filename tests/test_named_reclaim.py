"""The kernel frees a named block's memory the moment its last holder ends,
however it ends (issue 21): no `gc`, no later open of the name needed.

On Linux a block's bytes are a System V segment marked for removal at
creation (docs/named-blocks.md, "Where the bytes live"); these tests watch
`Shmem:` in /proc/meminfo, which counts that memory, while holders are
killed. Other processes of the machine allocate shared memory meanwhile, so
each check looks for most of a block's size, not an exact count.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import mmapfile
import pytest
from _other_user import as_nobody, start_python
from conftest import IS_ROOT, PORTABLE, linux_only, segment_id, shm_path, sysvipc_segments

if not sys.platform.startswith("linux"):
    # Below, decorators call POSIX-only functions (os.geteuid) as the module
    # is collected.
    pytest.skip("System V segments hold named blocks on Linux only", allow_module_level=True)

pytestmark = [
    linux_only,
    pytest.mark.skipif(PORTABLE, reason="the portable backend keeps blocks in POSIX objects"),
]

MiB = 1 << 20

# Creates (or opens) the block argv[1] of argv[2] MiB, fills what it
# created, says "ready" and waits to be told to leave, or killed.
HOLD = """
import ctypes, os, sys, mmapfile
size = int(sys.argv[2]) << 20
m = mmapfile.mmapfile(None, sys.argv[1], size)
if m.created:
    m.write(b"\\x5a" * size)
print("ready", flush=True)
line = sys.stdin.readline().strip()
if line == "segv":
    ctypes.string_at(0)
elif line == "exit":
    sys.exit(0)
"""


def shmem() -> int:
    """`Shmem:` of /proc/meminfo, in bytes."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Shmem:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no Shmem: line")


def hold(name: str, mib: int) -> subprocess.Popen:
    child = start_python(HOLD, name, str(mib))
    line = child.stdout.readline()
    assert line.strip() == "ready", (line, child.stderr.read() if child.poll() is not None else "")
    return child


def wait_for_drop(since: int, drop: int, limit: float = 1.0) -> float:
    """Waits up to `limit` seconds for Shmem to fall `drop` bytes below
    `since`; returns how long it took, or fails."""
    start = time.monotonic()
    while True:
        now = shmem()
        took = time.monotonic() - start
        if since - now >= drop:
            return took
        if took > limit:
            raise AssertionError(
                f"Shmem fell by {(since - now) / MiB:.1f} MiB in {took:.2f} s, "
                f"expected {drop / MiB:.0f} MiB"
            )
        time.sleep(0.005)


def end(child: subprocess.Popen, how: str) -> None:
    if how == "segv" or how == "exit":
        child.stdin.write(how + "\n")
        child.stdin.flush()
    else:
        child.send_signal(getattr(signal, how))


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "segv", "exit"])
def test_the_last_holders_end_frees_a_filled_64_mib_block_within_a_second(block_name, how):
    child = hold(block_name, 64)
    held = shmem()
    end(child, how)
    wait_for_drop(held, 60 * MiB)
    child.wait(30)
    if how == "exit":
        # A clean exit also removes the name.
        assert not shm_path(block_name).exists()
    # Nothing was asked of the name meanwhile; listing does not show it.
    assert block_name not in [b["name"] for b in mmapfile._mmapfile._list_blocks()]
    assert not shm_path(block_name).exists()
    # The name is free: a fresh, zero-filled block.
    m = mmapfile.mmapfile(None, block_name, 4096)
    assert m.created and m.read(4096) == bytes(4096)
    m.close()


def test_a_second_holder_keeps_the_bytes_and_the_name_for_a_third(block_name):
    first = hold(block_name, 64)
    second = hold(block_name, 64)
    seg_id = str(segment_id(block_name))
    first.kill()
    first.wait(30)
    time.sleep(0.3)
    # The segment is still there, attached by the second holder only.
    rows = [row for row in sysvipc_segments() if row["shmid"] == seg_id]
    assert len(rows) == 1, rows
    assert int(rows[0]["size"]) > 64 * MiB and int(rows[0]["nattch"]) >= 1, rows
    assert shm_path(block_name).exists()
    third = mmapfile.mmapfile(None, block_name, 0)
    assert not third.created and third.size() == 64 * MiB
    third.seek(64 * MiB - 3)
    assert third.read(3) == b"\x5a" * 3
    third.close()
    held = shmem()
    second.kill()
    second.wait(30)
    wait_for_drop(held, 60 * MiB)
    # Listing removes the empty record the killed last holder left.
    assert block_name not in [b["name"] for b in mmapfile._mmapfile._list_blocks()]
    assert not shm_path(block_name).exists()


def test_forty_killed_holders_of_4_mib_blocks_leave_nothing(block_name):
    names = [f"{block_name}-{i}" for i in range(40)]
    children = [hold(name, 4) for name in names]
    held = shmem()
    for child in children:
        child.kill()
    wait_for_drop(held, 150 * MiB, limit=2.0)
    for child in children:
        child.wait(30)
    # What is left of each name until someone lists, opens or collects: an
    # empty record, which holds no memory.
    for name in names:
        path = shm_path(name)
        if path.exists():
            st = path.stat()
            assert st.st_size == 0 and st.st_blocks == 0, (name, st)
    listed = {b["name"] for b in mmapfile._mmapfile._list_blocks()}
    assert listed.isdisjoint(names)
    assert not any(shm_path(name).exists() for name in names)


# --- the mapping lock of a block kept in a segment ---------------------------

# Creates (or opens) the block argv[1] of argv[2] MiB, fills what it
# created, takes the block's lock, says "ready" and waits to be killed.
HOLD_LOCKED = """
import sys, mmapfile
size = int(sys.argv[2]) << 20
m = mmapfile.mmapfile(None, sys.argv[1], size)
if m.created:
    m.write(b"\\x5a" * size)
lock = m.lock()
assert lock.acquire(timeout=30)
print("ready", flush=True)
sys.stdin.readline()
"""


def lock_companion(name: str) -> str:
    """Where the lock of the block ``name`` would keep its word if the block
    had no segment: the companion named after the record's device and inode."""
    st = shm_path(name).stat()
    return f"/dev/shm/mmapfile-lock.{st.st_dev:x}.{st.st_ino:x}"


def hold_locked(name: str, mib: int) -> subprocess.Popen:
    child = start_python(HOLD_LOCKED, name, str(mib))
    line = child.stdout.readline()
    assert line.strip() == "ready", (line, child.stderr.read() if child.poll() is not None else "")
    return child


def test_a_killed_last_holder_that_locked_its_block_leaves_nothing_in_dev_shm(block_name):
    child = hold_locked(block_name, 64)
    assert segment_id(block_name) is not None, "the block is kept in a segment"
    companion = lock_companion(block_name)
    # The word is in the segment's trailer page: no companion object.
    assert not os.path.exists(companion)
    held = shmem()
    child.kill()
    child.wait(30)
    wait_for_drop(held, 60 * MiB)
    # Listing tidies the empty record the killed holder left; then nothing
    # of the block is left in /dev/shm.
    assert block_name not in [b["name"] for b in mmapfile._mmapfile._list_blocks()]
    assert not shm_path(block_name).exists()
    assert not os.path.exists(companion)
    # The name is free, and the new block's lock is free and not abandoned.
    m = mmapfile.mmapfile(None, block_name, 4096)
    lock = m.lock()
    assert m.created and lock.acquire(timeout=0) is True and lock.abandoned is False
    lock.release()
    m.close()


def test_a_holder_killed_holding_the_lock_while_another_holds_the_block_abandons_it(
    block_name,
):
    keep = mmapfile.mmapfile(None, block_name, 4096)
    keep.write(b"kept")
    child = hold_locked(block_name, 1)
    # Held by the child, as any process sees.
    assert keep.lock().locked() is True
    assert not os.path.exists(lock_companion(block_name))
    child.kill()
    child.wait(30)
    # The block lives on (this process holds it); a third holder opens it by
    # name and takes the lock over, told that its holder died holding it.
    third = mmapfile.mmapfile(None, block_name, 0)
    assert not third.created and third.read(4) == b"kept"
    lock = third.lock()
    assert lock.acquire(timeout=5) is True
    assert lock.abandoned is True
    assert keep.lock().locked() is True
    lock.release()
    assert lock.acquire(timeout=5) is True and lock.abandoned is False
    lock.release()
    assert not os.path.exists(lock_companion(block_name))
    third.close()
    keep.close()
    assert not shm_path(block_name).exists()


# 2,000 blocks open at once in one process, each held with at most two
# descriptors (one here: the record), created in under 4 seconds.
MANY = """
import os, resource, sys, time, mmapfile
n = int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
fds_before = len(os.listdir("/proc/self/fd"))
start = time.perf_counter()
blocks = [mmapfile.mmapfile(None, f"{sys.argv[1]}-{i}", 4096) for i in range(n)]
took = time.perf_counter() - start
fds = len(os.listdir("/proc/self/fd")) - fds_before
for i, m in enumerate(blocks):
    m.write(str(i).encode())
for i, m in enumerate(blocks):
    m.seek(0)
    assert m.read(len(str(i))) == str(i).encode()
    assert m.created
for m in blocks:
    m.close()
print(took, fds, flush=True)
"""


def test_two_thousand_blocks_open_at_once_with_two_descriptors_each(block_name):
    import resource  # POSIX only; the module is skipped elsewhere

    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 4100:
        pytest.skip("the hard limit on descriptors is below 4,100")
    with open("/proc/sys/kernel/shmmni") as f:
        if int(f.read()) < 2100:
            pytest.skip("kernel.shmmni is below 2,100 segments")
    child = start_python(MANY, block_name, "2000")
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    took, fds = out.split()
    print(f"2,000 blocks created in {float(took):.2f} s with {fds} descriptors")
    assert int(fds) <= 2 * 2000, fds
    assert float(took) < 4.0, took
    assert not any(shm_path(f"{block_name}-{i}").exists() for i in range(2000))


def test_a_block_in_another_ipc_namespace_is_refused_with_an_explanation(block_name):
    if not IS_ROOT:
        pytest.skip("needs root for unshare --ipc")
    m = mmapfile.mmapfile(None, block_name, 4096)
    m.write(b"host")
    code = (
        "import sys, mmapfile\n"
        "try:\n"
        "    mmapfile.mmapfile(None, sys.argv[1], 0)\n"
        "except OSError as e:\n"
        "    print('refused', e.errno, e, flush=True)\n"
        "else:\n"
        "    print('opened', flush=True)\n"
    )
    probe = subprocess.run(
        ["unshare", "--ipc", sys.executable, "-c", code, block_name],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode != 0 and "unshare" in probe.stderr:
        pytest.skip(f"unshare --ipc refused: {probe.stderr.strip()}")
    words = probe.stdout.split()
    assert words[:2] == ["refused", str(errno.EXDEV)], (probe.stdout, probe.stderr)
    assert "IPC namespace" in probe.stdout
    m.seek(0)
    assert m.read(4) == b"host"
    m.close()


def test_a_touched_record_is_reported_not_waited_on_for_ever(block_name):
    # The record's modification time names the block's segment: `touch`
    # takes that away. Openers say so (after the few seconds a creation
    # could take), the holder keeps its bytes, and `rm` frees the name.
    m = mmapfile.mmapfile(None, block_name, 4096)
    m.write(b"held")
    os.utime(shm_path(block_name))
    assert segment_id(block_name) is None
    start = time.monotonic()
    with pytest.raises(OSError) as caught:
        mmapfile.mmapfile(None, block_name, 0)
    waited = time.monotonic() - start
    assert caught.value.errno == errno.EIDRM, caught.value
    assert "modification time" in str(caught.value)
    assert 4.5 <= waited < 30, waited
    m.seek(0)
    assert m.read(4) == b"held"
    mmapfile._mmapfile._remove_block(block_name)
    fresh = mmapfile.mmapfile(None, block_name, 4096)
    assert fresh.created and fresh.read(4) == bytes(4)
    fresh.close()
    m.close()


# --- the segment's own security ---------------------------------------------

SHMAT_AS_OTHER_USER = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
addr = libc.shmat(int(sys.argv[1]), None, 0o10000)  # SHM_RDONLY
print("refused" if addr in (None, 2**64 - 1) else "attached", ctypes.get_errno(), flush=True)
"""


def start_as_nobody(code: str, *args: str, preload: tuple[str, ...]) -> subprocess.Popen:
    return subprocess.Popen(
        as_nobody(code, *args, preload=preload),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.skipif(not IS_ROOT, reason="needs root to run a child as nobody")
def test_the_segment_has_the_blocks_mode_and_the_kernel_enforces_it(block_name):
    m = mmapfile.mmapfile(None, block_name, 4096)  # mode 0600
    seg_id = str(segment_id(block_name))
    assert mmapfile._mmapfile._block_info(block_name)["segment"] == int(seg_id)
    rows = [row for row in sysvipc_segments() if row["shmid"] == seg_id]
    assert len(rows) == 1 and int(rows[0]["perms"], 8) & 0o777 == 0o600, rows
    # Straight to the segment by its id, past the record: the kernel refuses.
    child = start_as_nobody(SHMAT_AS_OTHER_USER, seg_id, preload=("ctypes",))
    out, err = child.communicate(timeout=30)
    assert out.split() == ["refused", str(errno.EACCES)], (out, err)
    m.close()


# A record forged by another user (nobody) under a name of its own, naming
# our segment (any user may read a record's times, and /proc/sysvipc/shm
# shows every segment), and held, so that an opener does not take it for dead.
FORGE = """
import fcntl, os, struct, sys, time
path, mtime_ns = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
os.utime(fd, ns=(time.time_ns(), mtime_ns))
fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_RDLCK, 0, 0, 1, 0))
print("ready", flush=True)
sys.stdin.readline()
"""


@pytest.mark.skipif(not IS_ROOT, reason="needs root to run a child as nobody")
def test_a_forged_record_naming_another_users_segment_is_never_attached(block_name):
    victim = mmapfile.mmapfile(None, block_name, 4096, mode=0o644)
    victim.write(b"victim")
    forged = f"{block_name}-forged"
    value = str(os.stat(shm_path(block_name)).st_mtime_ns)
    child = start_as_nobody(
        FORGE, str(shm_path(forged)), value, preload=("fcntl", "struct", "time")
    )
    try:
        line = child.stdout.readline()
        assert line.strip() == "ready", (line, child.stderr.read())
        start = time.monotonic()
        with pytest.raises(OSError) as caught:
            mmapfile.mmapfile(None, forged, 0, allow_other_owner=True)
        assert caught.value.errno == errno.EIDRM, caught.value
        # It waited for holders that might be dying, then gave up.
        assert time.monotonic() - start >= 1.5
    finally:
        child.communicate("done\n", timeout=30)
        if shm_path(forged).exists():
            shm_path(forged).unlink()
    victim.seek(0)
    assert victim.read(6) == b"victim"
    victim.close()


def test_a_blocks_memory_stays_out_of_core_dumps(block_name):
    # As a block in a /dev/shm file always did: a crash must not copy the
    # block into the core file (nor keep its memory while one is written).
    import ctypes

    m = mmapfile.mmapfile(None, block_name, 3 * 4096)
    c = ctypes.c_char.from_buffer(m)
    addr = ctypes.addressof(c)
    del c
    flags = None
    with open("/proc/self/smaps") as f:
        inside = False
        for line in f:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = lo <= addr < hi
            elif inside and head == "VmFlags:":
                flags = line.split()[1:]
                break
    assert flags is not None, "the view is not in /proc/self/smaps"
    assert "dd" in flags, flags
    m.close()


def segment_ids() -> set[str]:
    return {row["shmid"] for row in sysvipc_segments()}


@pytest.mark.parametrize("order", ["creator first", "opener first"])
def test_closing_the_last_holder_in_process_detaches_and_frees_its_segment_at_once(
    block_name, order
):
    m = mmapfile.mmapfile(None, block_name, 3 * 4096 + 10)
    seg_id = str(segment_id(block_name))
    m.write(b"first")
    other = mmapfile.mmapfile(None, block_name, 0)
    assert other.read(5) == b"first"
    first, last = (m, other) if order == "creator first" else (other, m)
    first.close()
    assert seg_id in segment_ids()
    last.close()
    # No attachment of it is left in this process: the kernel freed it.
    assert seg_id not in segment_ids()
    # /proc/self/maps shows an attachment with the segment's id as inode.
    with open("/proc/self/maps") as f:
        left = [line for line in f if "/SYSV" in line and line.split()[4] == seg_id]
    assert left == []
    assert not shm_path(block_name).exists()
