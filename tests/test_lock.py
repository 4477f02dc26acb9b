"""m.lock(): the mapping's cross-process lock."""

import contextlib
import gc
import os
import platform
import signal
import subprocess
import sys
import threading
import time
import uuid

import mmapfile
import pytest
from conftest import IS_ROOT, LINUX, PORTABLE, STATE_DIR, shm_path

WINDOWS = sys.platform == "win32"


@pytest.fixture
def block_name():
    name = f"pytest-lock-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield name
    if WINDOWS:
        return  # the kernel frees the block with its last handle
    try:
        os.unlink(f"/dev/shm/mmapfile.{name}")
    except FileNotFoundError:
        pass


# Every process waits for the others before counting, and yields between the
# read and the write, so that without the lock increments are lost (checked
# by hand: about 2300 of 6000 survive without it).
COUNTER_SCRIPT = """
import sys, time
import mmapfile
file, name, n, processes = sys.argv[1] or None, sys.argv[2] or None, *map(int, sys.argv[3:5])
m = mmapfile.mmapfile(file, name, 0)
with m.lock():
    m[16] += 1
while m[16] < processes:
    time.sleep(0.001)
for _ in range(n):
    with m.lock():
        value = int.from_bytes(m[8:16], "little")
        time.sleep(0)
        m[8:16] = (value + 1).to_bytes(8, "little")
m.close()
"""


def run_counters(file, name, processes, n):
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", COUNTER_SCRIPT, file or "", name or "", str(n), str(processes)]
        )
        for _ in range(processes)
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0


def test_three_processes_counting_under_the_lock_of_a_named_block(block_name):
    m = mmapfile.mmapfile(None, block_name, 4096)
    run_counters(None, block_name, 3, 2000)
    assert int.from_bytes(m[8:16], "little") == 6000
    m.close()


def test_three_processes_counting_under_the_lock_of_a_file(tmp_path):
    path = tmp_path / "counter.bin"
    m = mmapfile.mmapfile(str(path), None, 4096)
    run_counters(str(path), None, 3, 2000)
    assert int.from_bytes(m[8:16], "little") == 6000
    m.close()


HOLDER_SCRIPT = """
import sys, time
import mmapfile
m = mmapfile.mmapfile(None, sys.argv[1], 0)
lock = m.lock()
assert lock.acquire()
m[0:5] = b"HELD!"
time.sleep(600)
"""


def test_lock_holder_killed_does_not_block_others(block_name):
    m = mmapfile.mmapfile(None, block_name, 4096)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER_SCRIPT, block_name])
    try:
        deadline = time.monotonic() + 60
        while m[0:5] != b"HELD!":
            assert time.monotonic() < deadline, "the holder never took the lock"
            assert holder.poll() is None, "the holder died early"
            time.sleep(0.01)
        lock = m.lock()
        assert lock.locked()
        assert lock.acquire(timeout=0.2) is False
        holder.kill()  # SIGKILL; TerminateProcess on Windows
        holder.wait(timeout=30)
        start = time.monotonic()
        assert lock.acquire(timeout=10) is True
        assert time.monotonic() - start < 5
        lock.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    m.close()


@pytest.mark.skipif(WINDOWS, reason="no fork on Windows")
def test_forked_child_contends_with_its_parent():
    m = mmapfile.mmapfile(None, None, 4096)
    lock = m.lock()
    assert lock.acquire()
    r, w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the lock object it inherited does not make it a holder
        try:
            first = lock.acquire(timeout=0)
            os.write(w, b"1" if first else b"0")
            os.read(go_r, 1)
            second = lock.acquire(timeout=10)
            lock.release()
            os._exit(0 if second else 3)
        except BaseException:
            os._exit(4)
    assert os.read(r, 1) == b"0", "the child took a lock its parent holds"
    lock.release()
    os.write(go_w, b"g")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    for fd in (r, w, go_r, go_w):
        os.close(fd)
    m.close()


def test_context_manager_acquires_and_releases():
    m = mmapfile.mmapfile(None, None, 4096)
    lock = m.lock()
    other = m.lock()
    with lock as entered:
        assert entered is lock
        assert other.locked()
        assert other.acquire(timeout=0) is False
    assert not other.locked()
    assert other.acquire(timeout=0) is True
    other.release()


def test_with_timeout_raises_timeout_error_when_held_elsewhere():
    m = mmapfile.mmapfile(None, None, 4096)
    holder = m.lock()
    assert holder.acquire()
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        with m.lock(timeout=0.2):
            pass
    assert 0.2 <= time.monotonic() - start < 5
    holder.release()
    with m.lock(timeout=0.2):
        pass


def test_acquire_times_out_and_returns_false():
    m = mmapfile.mmapfile(None, None, 4096)
    holder = m.lock()
    holder.acquire()
    start = time.monotonic()
    assert m.lock().acquire(timeout=0.3) is False
    assert 0.3 <= time.monotonic() - start < 5
    assert m.lock().acquire(timeout=0) is False
    holder.release()


def test_untimed_acquire_waits_until_released():
    m = mmapfile.mmapfile(None, None, 4096)
    holder = m.lock()
    holder.acquire()
    threading.Timer(0.3, holder.release).start()
    start = time.monotonic()
    waiter = m.lock()
    assert waiter.acquire() is True
    assert time.monotonic() - start >= 0.25
    waiter.release()


def test_release_of_an_unheld_lock_raises_runtime_error():
    m = mmapfile.mmapfile(None, None, 4096)
    lock = m.lock()
    with pytest.raises(RuntimeError):
        lock.release()
    lock.acquire()
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()


def test_negative_timeout_is_refused():
    m = mmapfile.mmapfile(None, None, 4096)
    with pytest.raises(ValueError):
        m.lock(timeout=-1)
    with pytest.raises(ValueError):
        m.lock().acquire(timeout=-0.5)
    with pytest.raises(ValueError):
        m.lock().acquire(timeout=float("nan"))


def test_lock_of_a_closed_map_is_refused():
    m = mmapfile.mmapfile(None, None, 4096)
    m.close()
    with pytest.raises(ValueError):
        m.lock()


def test_lock_survives_closing_the_map():
    m = mmapfile.mmapfile(None, None, 4096)
    lock = m.lock()
    other = m.lock()
    lock.acquire()
    m.close()
    assert other.acquire(timeout=0) is False
    lock.release()
    assert other.acquire(timeout=0) is True


def test_a_named_blocks_lock_survives_closing_its_map(block_name):
    m = mmapfile.mmapfile(None, block_name, 4096)
    other = mmapfile.mmapfile(None, block_name, 0)
    lock = m.lock()
    lock.acquire()
    m.close()
    # Another open of the block in this process shares the word.
    assert other.lock().locked() is True
    assert other.lock().acquire(timeout=0) is False
    lock.release()
    taker = other.lock()
    assert taker.acquire(timeout=0) is True and taker.abandoned is False
    taker.release()
    other.close()
    if LINUX and not PORTABLE:
        # The last holder is gone, and its name; the lock object lives on
        # in the segment's trailer, which it keeps attached. (The portable
        # backend removes a block's lock file with its last holder.)
        assert not shm_path(block_name).exists()
        assert lock.acquire(timeout=0) is True
        lock.release()


def test_same_file_different_objects_share_the_lock(tmp_path):
    path = tmp_path / "f.bin"
    a = mmapfile.mmapfile(str(path), None, 4096)
    b = mmapfile.mmapfile(str(path), None, 0, access=mmapfile.ACCESS_READ)
    with a.lock():
        assert b.lock().locked()
        assert b.lock().acquire(timeout=0) is False
    assert b.lock().acquire(timeout=0) is True


def test_lock_does_not_touch_the_mapped_bytes(block_name):
    m = mmapfile.mmapfile(None, block_name, 4096)
    m[:] = bytes(range(256)) * 16
    with m.lock():
        pass
    assert m[:] == bytes(range(256)) * 16


def test_threads_exclude_each_other():
    m = mmapfile.mmapfile(None, None, 4096)
    lock = m.lock()
    errors = []

    def work():
        try:
            for _ in range(300):
                with lock:
                    value = int.from_bytes(m[0:8], "little")
                    time.sleep(0)  # let another thread run mid-update
                    m[0:8] = (value + 1).to_bytes(8, "little")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert int.from_bytes(m[0:8], "little") == 1200


def test_repr_shows_whether_held():
    m = mmapfile.mmapfile(None, None, 4096)
    lock = m.lock()
    assert repr(lock) == "<mmapfile.MapLock held=False>"
    with lock:
        assert repr(lock) == "<mmapfile.MapLock held=True>"


# The child says "waiting" just before an untimed acquire() and exits with 42
# if Ctrl-C (SIGINT) interrupts it. The print is inside the try: a SIGINT that
# lands before the wait must end the program the same way.
CTRL_C_CHILD = """
import mmapfile, sys
m = mmapfile.mmapfile(None, sys.argv[1], 0)
try:
    print("waiting", flush=True)
    m.lock().acquire()
except KeyboardInterrupt:
    sys.exit(42)
sys.exit(1)
"""


def lock_file(name):
    """The portable backend's lock file of the block ``name``."""
    obj = mmapfile._mmapfile._block_info(name)["shm_name"]
    return STATE_DIR / (".lock-" + obj.removeprefix("/mmapfile="))


def flock_waiters(path):
    """How many lock requests on the file at ``path`` are blocked in the
    kernel, from /proc/locks (a waiter's line has ``->``)."""
    inode = os.stat(path).st_ino
    with open("/proc/locks") as f:
        return sum(
            1 for line in f if "->" in line and line.split()[6].rsplit(":", 1)[-1] == str(inode)
        )


# The futex system call's number, where /proc/<pid>/syscall shows it.
FUTEX = {"x86_64": 202, "aarch64": 98}.get(platform.machine())


def sleeps_in_futex(pid):
    """Whether a thread of ``pid`` sleeps in FUTEX_WAIT on a word shared
    between processes (the Linux lock's wait; CPython's own waits are
    process-private futexes)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/syscall") as f:
                fields = f.read().split()
        except OSError:
            continue
        if len(fields) > 2 and fields[0] == str(FUTEX) and int(fields[2], 16) == 0:
            return True
    return False


def blocked_on_lock(pid, name):
    """Whether process ``pid`` waits in the kernel for the lock of block ``name``."""
    if PORTABLE:
        return flock_waiters(lock_file(name)) > 0
    return sleeps_in_futex(pid)


def interrupt_child(block_name, delay):
    """Starts CTRL_C_CHILD, sends SIGINT ``delay`` seconds (None: once its wait
    is blocked in the kernel) after it says "waiting"; returns its exit code."""
    child = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_CHILD, block_name], stdout=subprocess.PIPE
    )
    try:
        assert child.stdout.readline() == b"waiting\n"
        if delay is None:
            deadline = time.monotonic() + 30
            while not blocked_on_lock(child.pid, block_name):
                assert time.monotonic() < deadline, "the child never blocked on the lock"
                time.sleep(0.01)
        else:
            # Spin rather than sleep: the moments that matter are tens of
            # microseconds apart, finer than sleep() keeps.
            end = time.perf_counter() + delay
            while time.perf_counter() < end:
                pass
        child.send_signal(signal.SIGINT)
        return child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.mark.skipif(WINDOWS, reason="POSIX signals and /proc/locks")
def test_ctrl_c_interrupts_an_untimed_wait(block_name):
    m = mmapfile.mmapfile(None, block_name, 4096)
    holder = m.lock()
    holder.acquire()
    # The SIGINT goes only once the child's wait is blocked in the kernel,
    # however long a loaded machine takes to get it there.
    assert interrupt_child(block_name, None) == 42
    holder.release()


# Here the SIGINT is raised in another thread of the child: its C handler
# runs there, and only sets CPython's flag, so nothing interrupts the main
# thread's wait but the wait's own wake-ups to check for signals. (Before
# those, this child never ended.) Works on Windows too, where raise() runs
# the handler like the console's Ctrl-C does.
CTRL_C_IN_A_THREAD_CHILD = """
import mmapfile, signal, sys, threading
m = mmapfile.mmapfile(None, sys.argv[1], 0)
lock = m.lock()
threading.Timer(0.3, signal.raise_signal, (signal.SIGINT,)).start()
try:
    lock.acquire()
except KeyboardInterrupt:
    sys.exit(42)
sys.exit(1)
"""


def test_ctrl_c_handled_in_another_thread_interrupts_an_untimed_wait(block_name):
    m = mmapfile.mmapfile(None, block_name, 4096)
    holder = m.lock()
    holder.acquire()
    child = subprocess.Popen([sys.executable, "-c", CTRL_C_IN_A_THREAD_CHILD, block_name])
    try:
        assert child.wait(timeout=30) == 42
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    holder.release()
    assert m.lock().acquire(timeout=10)


@pytest.fixture
def busy_cpus():
    """Two processes that spin for the duration of the test: load that delays
    the child between its print and its wait."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    yield
    for spinner in spinners:
        spinner.kill()
        spinner.wait()


@pytest.mark.skipif(WINDOWS, reason="POSIX signals")
def test_ctrl_c_at_any_moment_interrupts_an_untimed_wait(block_name, busy_cpus):
    # A SIGINT whose handler ran just before the wait began used to be lost
    # (1 to 2 runs in 100 sent 0 to 100 us after "waiting", on a loaded
    # machine): CPython's handler only sets a flag, and the wait had started
    # without looking at it.
    m = mmapfile.mmapfile(None, block_name, 4096)
    holder = m.lock()
    holder.acquire()
    delays = [0, 20e-6, 50e-6, 100e-6, 200e-6, 1e-3, 5e-3, 20e-3] * 3
    codes = [interrupt_child(block_name, delay) for delay in delays]
    assert codes == [42] * len(delays)
    holder.release()


@pytest.mark.skipif(WINDOWS, reason="POSIX signals")
def test_a_signal_whose_handler_returns_lets_an_untimed_wait_go_on(block_name):
    # The wait runs the handler (it wakes up to check for signals) and, as
    # the handler raises nothing, goes on until the holder releases the lock.
    m = mmapfile.mmapfile(None, block_name, 4096)
    holder = m.lock()
    holder.acquire()
    got = []
    previous = signal.signal(signal.SIGUSR1, lambda *_: got.append(time.monotonic()))
    try:
        sender = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1))
        releaser = threading.Timer(0.6, holder.release)
        sender.start()
        releaser.start()
        waiter = m.lock()
        start = time.monotonic()
        assert waiter.acquire() is True
        acquired = time.monotonic()
        sender.join()
        releaser.join()
        assert len(got) == 1
        assert start < got[0] < acquired
        assert acquired - start >= 0.55
        waiter.release()
    finally:
        signal.signal(signal.SIGUSR1, previous)


# --- a holder that dies, Ctrl-C under load, timeouts (issue 23) --------------

# Whether taking over a dead holder's lock is reported: flock (the portable
# backend of macOS and the BSDs) cannot tell.
TELLS_ABANDONED = not PORTABLE


@pytest.fixture
def burners():
    """Three processes that spin for the duration of the test (the machine
    has fewer cores than that): what the lock's waits must stand."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(3)]
    yield
    for spinner in spinners:
        spinner.kill()
        spinner.wait()


# Takes the lock and writes half of a record. Then, with "wait", says so
# and sleeps until the test kills it (SIGKILL) in the middle; with "exit",
# ends at once without releasing the lock (no finalizers: os._exit). Either
# way the record's second half is never written.
HALF_WRITER = """
import os, sys, time
import mmapfile
m = mmapfile.mmapfile(sys.argv[1] or None, sys.argv[2] or None, 0)
lock = m.lock()
assert lock.acquire()
m[0:4] = b"HALF"
if sys.argv[3] == "exit":
    os._exit(0)
print("half", flush=True)
time.sleep(600)
m[4:8] = b"DONE"
"""


@contextlib.contextmanager
def half_writer(path, name):
    """A HALF_WRITER process holding the lock, its record half written; on
    the way out it is killed if still alive, and reaped."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HALF_WRITER, path, name, "wait"], stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout.readline().strip() == b"half"
        yield holder
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait()


@pytest.mark.parametrize("kind", ["named block", "file"])
def test_sigkill_of_a_holder_mid_critical_section_tells_the_next_acquirer(
    kind, block_name, tmp_path, burners
):
    path = str(tmp_path / "f.bin") if kind == "file" else ""
    name = block_name if kind == "named block" else ""
    m = mmapfile.mmapfile(path or None, name or None, 4096)
    lock = m.lock()
    with half_writer(path, name) as holder:
        assert lock.locked()
        assert lock.acquire(timeout=0.05) is False
        holder.kill()
        holder.wait(timeout=30)
        start = time.monotonic()
        assert lock.acquire(timeout=10) is True
        assert time.monotonic() - start < 2
        assert lock.abandoned is TELLS_ABANDONED
        assert m[0:8] == b"HALF\0\0\0\0"
        lock.release()
        # The next acquisition follows a release: nothing was abandoned.
        assert lock.acquire(timeout=10) is True
        assert lock.abandoned is False
        lock.release()
    m.close()


@pytest.mark.parametrize("kind", ["named block", "file"])
def test_a_holder_that_exits_holding_the_lock_tells_the_next_acquirer(kind, block_name, tmp_path):
    path = str(tmp_path / "f.bin") if kind == "file" else ""
    name = block_name if kind == "named block" else ""
    m = mmapfile.mmapfile(path or None, name or None, 4096)
    lock = m.lock()
    holder = subprocess.run([sys.executable, "-c", HALF_WRITER, path, name, "exit"], timeout=60)
    assert holder.returncode == 0
    assert lock.locked() is False, "a holder that died does not hold the lock"
    assert lock.acquire(timeout=10) is True
    assert lock.abandoned is TELLS_ABANDONED
    assert m[0:8] == b"HALF\0\0\0\0"
    lock.release()
    m.close()


def test_a_waiter_asleep_when_its_holder_is_killed_takes_the_lock_at_once(block_name):
    m = mmapfile.mmapfile(None, block_name, 4096)
    lock = m.lock()
    taken = []
    waiter = threading.Thread(target=lambda: taken.append((lock.acquire(), time.monotonic())))
    with half_writer("", block_name) as holder:
        waiter.start()
        time.sleep(0.2)  # the waiter is asleep by now
        assert taken == []
        holder.kill()
        killed = time.monotonic()
        waiter.join(timeout=30)
        assert not waiter.is_alive(), "the waiter never woke"
        [(ok, at)] = taken
        assert ok is True
        # Windows wakes the waiter through the holder's process handle, Linux
        # within its 50 ms liveness slice, the portable backend with flock.
        assert at - killed < 1.0
        assert lock.abandoned is TELLS_ABANDONED
        lock.release()
    m.close()


def test_a_second_acquisition_in_the_same_thread_waits_for_a_release():
    m = mmapfile.mmapfile(None, None, 4096)
    lock, other = m.lock(), m.lock()
    assert lock.acquire()
    assert lock.acquire(timeout=0.05) is False, "the lock is not reentrant"
    assert other.acquire(timeout=0.05) is False
    releaser = threading.Timer(0.1, lock.release)  # from another thread
    releaser.start()
    start = time.monotonic()
    assert other.acquire(timeout=10) is True
    assert time.monotonic() - start < 5
    releaser.join()
    assert other.locked() and lock.locked(), "held through the other object"
    other.release()
    assert lock.locked() is False


def test_abandoned_is_false_before_any_acquisition_and_after_a_clean_one():
    m = mmapfile.mmapfile(None, None, 4096)
    lock = m.lock()
    assert lock.abandoned is False
    with lock:
        assert lock.abandoned is False
    with pytest.raises(AttributeError):
        lock.abandoned = True


def own_companion(path):
    """The name of the companion object that a lock on the object at path
    would make in /dev/shm (named after its device and inode)."""
    st = os.stat(path)
    return f"mmapfile-lock.{st.st_dev:x}.{st.st_ino:x}"


def hung(*_):
    raise TimeoutError("the acquire hung")


def open_fds():
    """This process's descriptors and what each is open on, once the garbage
    of earlier tests is collected (its objects would close theirs during the
    test and look like a change)."""
    gc.collect()
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            found[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:  # the listing's own descriptor, closed since
            pass
    return found


@pytest.mark.skipif(WINDOWS, reason="fork")
@pytest.mark.parametrize("kind", ["unnamed block", "named block", "file"])
def test_a_thousand_holders_killed_in_turn_leave_no_leak_and_no_hang(
    kind, tmp_path, burners, block_name
):
    path = str(tmp_path / "f.bin")
    m = mmapfile.mmapfile(
        path if kind == "file" else None, block_name if kind == "named block" else None, 4096
    )
    lock = m.lock()
    with lock:  # the first acquisition opens what the lock keeps open
        pass
    fds = open_fds()
    # The only companion this test can make is the one named after its own
    # object (other processes' come and go meanwhile, and are not counted).
    objects = {"file": [path], "named block": [shm_path(block_name)]}
    ours = {own_companion(p) for p in objects.get(kind, [])}
    companions = ours & set(os.listdir("/dev/shm"))
    for cycle in range(1000):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                lock.acquire()
                m[0] = cycle % 256
                os.write(w, b"x")
                time.sleep(60)
            finally:
                os._exit(1)
        os.close(w)
        assert os.read(r, 1) == b"x", f"cycle {cycle}: the child did not take the lock"
        os.close(r)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        # An untimed acquire (it must not hang); the alarm is a backstop
        # that raises in it.
        previous = signal.signal(signal.SIGALRM, hung)
        signal.alarm(20)
        try:
            assert lock.acquire() is True
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        assert lock.abandoned is TELLS_ABANDONED, f"cycle {cycle}"
        assert m[0] == cycle % 256
        lock.release()
    assert open_fds() == fds
    assert ours & set(os.listdir("/dev/shm")) == companions
    m.close()


# Prints the time at which Ctrl-C reached Python: the monotonic clock is the
# same in every process of the machine.
CTRL_C_TIMED_CHILD = """
import mmapfile, sys, time
m = mmapfile.mmapfile(None, sys.argv[1], 0)
lock = m.lock()
try:
    print("waiting", flush=True)
    lock.acquire()
except KeyboardInterrupt:
    print(time.monotonic(), flush=True)
    sys.exit(42)
sys.exit(1)
"""


@pytest.mark.skipif(WINDOWS, reason="POSIX signals")
def test_ctrl_c_during_a_wait_under_cpu_load_is_seen_within_100_ms(block_name, burners):
    m = mmapfile.mmapfile(None, block_name, 4096)
    holder = m.lock()
    holder.acquire()
    for _ in range(5):
        child = subprocess.Popen(
            [sys.executable, "-c", CTRL_C_TIMED_CHILD, block_name], stdout=subprocess.PIPE
        )
        try:
            assert child.stdout.readline() == b"waiting\n"
            deadline = time.monotonic() + 30
            while not blocked_on_lock(child.pid, block_name):
                assert time.monotonic() < deadline, "the child never blocked on the lock"
                time.sleep(0.01)
            sent = time.monotonic()
            child.send_signal(signal.SIGINT)
            seen = float(child.stdout.readline())
            assert child.wait(timeout=30) == 42
            assert seen - sent < 0.1, f"Ctrl-C took {seen - sent:.3f} s to reach Python"
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    holder.release()


@pytest.mark.parametrize("timeout", [0.001, 0.005, 0.02, 0.1])
def test_a_timed_acquire_never_returns_early_nor_much_late(timeout, burners):
    m = mmapfile.mmapfile(None, None, 4096)
    holder = m.lock()
    holder.acquire()
    waiter = m.lock()
    for _ in range(5):
        start = time.monotonic()
        assert waiter.acquire(timeout=timeout) is False
        elapsed = time.monotonic() - start
        assert elapsed >= timeout
        assert elapsed < timeout + 0.1
    holder.release()


@pytest.mark.skipif(not LINUX or PORTABLE, reason="the Linux companion object")
def test_a_file_lock_leaves_nothing_next_to_the_file_nor_after_its_users(tmp_path):
    path = tmp_path / "f.bin"
    m = mmapfile.mmapfile(str(path), None, 4096)
    st = os.stat(path)
    companion = f"/dev/shm/mmapfile-lock.{st.st_dev:x}.{st.st_ino:x}"
    lock = m.lock()
    with lock:
        assert os.listdir(tmp_path) == ["f.bin"]
        assert os.stat(companion).st_mode & 0o777 == 0o600
    m.close()
    del lock
    assert not os.path.exists(companion)
    assert os.listdir(tmp_path) == ["f.bin"]


@pytest.mark.skipif(not PORTABLE, reason="the portable backend's lock file of an unnamed block")
def test_an_unnamed_blocks_lock_file_goes_with_it_after_it_grew():
    # macOS grows an unnamed block by copying it into a new object, and the
    # lock's file moves with it: it must still be removed with the last user.
    mine = f".anon-{os.getpid()}-"

    def lock_files() -> list[str]:
        return [e.name for e in STATE_DIR.iterdir() if e.name.startswith(mine)]

    m = mmapfile.mmapfile(None, None, 4096)
    lock = m.lock()
    with lock:
        pass
    assert len(lock_files()) == 1
    m.resize(3 * 4096)
    with lock:
        m[0] = 1
    m.close()
    del lock, m
    assert lock_files() == []


# A named block kept in a /dev/shm file (no segment can be had): its lock
# word is in a companion object, which goes with the block's last user.
NO_SEGMENT_LOCK = """
import os, sys, mmapfile
name = sys.argv[1]
path = f"/dev/shm/mmapfile.{name}"
m = mmapfile.mmapfile(None, name, 4096)
assert os.stat(path).st_size == 4096, "the block's memory is the file"
st = os.stat(path)
companion = f"/dev/shm/mmapfile-lock.{st.st_dev:x}.{st.st_ino:x}"
lock = m.lock()
pid = os.fork()
if pid == 0:
    lock.acquire()
    os._exit(0)  # dies holding it
os.waitpid(pid, 0)
assert os.stat(companion).st_mode & 0o777 == 0o600
other = mmapfile.mmapfile(None, name, 0)
taker = other.lock()
assert taker.acquire(5) is True and taker.abandoned is True
assert lock.locked() is True and lock.acquire(0) is False
taker.release()
other.close()
m.close()
del lock, taker
assert not os.path.exists(companion) and not os.path.exists(path)
print("ok", flush=True)
"""


@pytest.mark.skipif(not LINUX or PORTABLE, reason="Linux keeps named blocks in segments")
@pytest.mark.skipif(not IS_ROOT, reason="needs root for unshare --ipc")
def test_a_named_block_kept_in_dev_shm_locks_through_a_companion_that_goes_with_it(block_name):
    shell = 'echo 0 > /proc/sys/kernel/shmmni && exec "$PYTHON" -c "$SCRIPT" "$NAME"'
    env = dict(os.environ, PYTHON=sys.executable, SCRIPT=NO_SEGMENT_LOCK, NAME=block_name)
    done = subprocess.run(
        ["unshare", "--ipc", "sh", "-c", shell],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    if done.returncode != 0 and "unshare" in done.stderr:
        pytest.skip(f"unshare --ipc refused: {done.stderr.strip()}")
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr
