"""Windows-like lifetime of named blocks, with real child processes.

A block lives while some mapping object holds it, in any process; after the
last holder closes, exits or is killed, the name opens a fresh zero-filled
block and nothing is left in /dev/shm. See docs/named-blocks.md.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import mmapfile
import pytest
from _other_user import start_python
from conftest import (
    HOLDERS_COUNTED,
    IS_ROOT,
    OPEN_BLOCK_FUNC,
    PORTABLE,
    linux_only,
    object_path,
    shm_path,
)

pytestmark = linux_only

HERE = Path(__file__).parent


def wait_ready(child: subprocess.Popen) -> None:
    line = child.stdout.readline()
    assert line.strip() == "ready", (line, child.stderr.read() if child.poll() is not None else "")


HOLD_AND_WAIT = """
    import sys, mmapfile
    m = mmapfile.mmapfile(None, sys.argv[1], 4096)
    m.write(b"written by the child")
    print("ready", flush=True)
    sys.stdin.readline()
"""


def is_zero_filled(m: mmapfile.mmapfile) -> bool:
    m.seek(0)
    return m.read() == bytes(m.size())


# --- lifetime ---------------------------------------------------------------


def test_last_holder_close_removes_the_block(block_name):
    first = mmapfile.mmapfile(None, block_name, 4096)
    second = mmapfile.mmapfile(None, block_name, 4096)
    first.write(b"kept while held")
    first.close()
    assert os.path.exists(shm_path(block_name)), "a holder is left: the block must live"
    second.seek(0)
    assert second.read(15) == b"kept while held"
    second.close()
    assert not os.path.exists(shm_path(block_name))
    fresh = mmapfile.mmapfile(None, block_name, 4096)
    assert fresh.created and is_zero_filled(fresh)
    fresh.close()


def test_dropping_the_last_holder_without_close_removes_the_block(block_name):
    m = mmapfile.mmapfile(None, block_name, 4096)
    assert os.path.exists(shm_path(block_name))
    del m
    assert not os.path.exists(shm_path(block_name))


def test_block_outlives_its_creator_while_a_child_holds_it(block_name):
    creator = mmapfile.mmapfile(None, block_name, 4096)
    creator.write(b"from the parent")
    child = start_python(
        """
        import sys, mmapfile
        m = mmapfile.mmapfile(None, sys.argv[1], 0, create=False)
        print("ready", flush=True)
        sys.stdin.readline()
        print(m.read(15).decode(), flush=True)
        m.close()
        """,
        block_name,
    )
    wait_ready(child)
    creator.close()
    assert os.path.exists(shm_path(block_name)), "the child still holds it"
    out, err = child.communicate("go\n", timeout=30)
    assert out.strip() == "from the parent", err
    # The child closed last: the name is gone.
    assert not os.path.exists(shm_path(block_name))


def test_holder_exiting_without_close_frees_the_name(block_name):
    child = start_python(
        """
        import sys, mmapfile
        m = mmapfile.mmapfile(None, sys.argv[1], 4096)
        m.write(b"never closed")
        """,
        block_name,
    )
    assert child.wait(30) == 0, child.stderr.read()
    m = mmapfile.mmapfile(None, block_name, 4096)
    assert m.created and is_zero_filled(m)
    m.close()
    assert not os.path.exists(shm_path(block_name))


def test_sigkilled_holder_leaves_a_dead_block_the_next_create_reclaims(block_name):
    child = start_python(HOLD_AND_WAIT, block_name)
    wait_ready(child)
    assert mmapfile._mmapfile._block_info(block_name)["holders"] == (1 if HOLDERS_COUNTED else None)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(30)
    # The kernel cannot run our code at SIGKILL: the name stays, dead.
    assert mmapfile._mmapfile._block_info(block_name)["holders"] == (0 if HOLDERS_COUNTED else None)
    assert os.path.exists(shm_path(block_name))
    m = mmapfile.mmapfile(None, block_name, 4096)
    assert m.created, "a dead block must not be reused"
    assert is_zero_filled(m)
    m.close()
    assert not os.path.exists(shm_path(block_name))


def test_sigkilled_holder_with_survivor_keeps_the_data(block_name):
    survivor = mmapfile.mmapfile(None, block_name, 4096)
    child = start_python(
        """
        import sys, mmapfile
        m = mmapfile.mmapfile(None, sys.argv[1], 4096)
        m.write(b"child data")
        print("ready", flush=True)
        sys.stdin.readline()
        """,
        block_name,
    )
    wait_ready(child)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(30)
    joiner = mmapfile.mmapfile(None, block_name, 4096)
    assert not joiner.created
    assert joiner.read(10) == b"child data"
    joiner.close()
    survivor.close()
    assert not os.path.exists(shm_path(block_name))


def test_open_only_of_a_dead_block_reports_not_found(block_name):
    child = start_python(HOLD_AND_WAIT, block_name)
    wait_ready(child)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(30)
    with pytest.raises(mmapfile.error) as info:
        mmapfile.mmapfile(None, block_name, 0, create=False)
    assert info.value.errno == errno.ENOENT
    assert not os.path.exists(shm_path(block_name)), "the dead block is reclaimed"


def test_read_only_holder_keeps_the_block_alive(block_name):
    writer = mmapfile.mmapfile(None, block_name, 4096)
    writer.write(b"read me")
    reader = mmapfile.mmapfile(None, block_name, 0, access=mmapfile.ACCESS_READ)
    writer.close()
    assert os.path.exists(shm_path(block_name))
    assert reader.read(7) == b"read me"
    reader.close()
    assert not os.path.exists(shm_path(block_name))


def test_resize_keeps_the_block_alive_and_its_data(block_name):
    # A named block cannot grow (on every OS: see test_named.py), but a
    # resize that maps a new view of it keeps the holder holding.
    m = mmapfile.mmapfile(None, block_name, 3 * 4096)
    other = mmapfile.mmapfile(None, block_name, 0)
    m.write(b"before resize")
    m.resize(0, 4096, 8192)
    m.resize(0)
    assert m.size() == 3 * 4096
    m.seek(0)
    assert m.read(13) == b"before resize"
    other.close()
    assert os.path.exists(shm_path(block_name)), "the resized holder still holds"
    late = mmapfile.mmapfile(None, block_name, 0)
    assert not late.created and late.size() == 3 * 4096
    late.close()
    m.close()
    assert not os.path.exists(shm_path(block_name))


# --- create= and created ----------------------------------------------------


def test_create_true_makes_a_new_block_and_refuses_an_existing_one(block_name):
    m = mmapfile.mmapfile(None, block_name, 4096, create=True)
    assert m.created
    with pytest.raises(mmapfile.error) as info:
        mmapfile.mmapfile(None, block_name, 4096, create=True)
    assert info.value.errno == errno.EEXIST
    m.close()


def test_create_true_replaces_a_dead_block(block_name):
    child = start_python(HOLD_AND_WAIT, block_name)
    wait_ready(child)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(30)
    m = mmapfile.mmapfile(None, block_name, 4096, create=True)
    assert m.created and is_zero_filled(m)
    m.close()


def test_create_false_opens_only_existing_blocks(block_name):
    with pytest.raises(mmapfile.error) as info:
        mmapfile.mmapfile(None, block_name, 4096, create=False)
    assert info.value.errno == errno.ENOENT
    assert not os.path.exists(shm_path(block_name))
    m = mmapfile.mmapfile(None, block_name, 4096)
    opened = mmapfile.mmapfile(None, block_name, 0, create=False)
    assert m.created and not opened.created
    opened.close()
    m.close()


def test_default_create_is_create_or_open(block_name):
    first = mmapfile.mmapfile(None, block_name, 4096)
    second = mmapfile.mmapfile(None, block_name, 4096)
    assert (first.created, second.created) == (True, False)
    second.close()
    first.close()


def test_created_is_read_only(block_name):
    m = mmapfile.mmapfile(None, block_name, 4096)
    with pytest.raises(AttributeError):
        m.created = False
    m.close()


# --- names ------------------------------------------------------------------


def test_local_and_global_prefixes_name_the_same_block(block_name):
    plain = mmapfile.mmapfile(None, block_name, 4096)
    plain.write(b"same")
    for prefixed in (f"Local\\{block_name}", f"Global\\{block_name}"):
        m = mmapfile.mmapfile(None, prefixed, 0)
        assert not m.created and m.read(4) == b"same"
        m.close()
    plain.close()


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("Local\\", "empty"),
        ("Global\\", "empty"),
        ("a/b", "'/'"),
        ("a\0b", "NUL"),
        ("x" * 300, "at most"),
    ],
)
def test_invalid_names_raise_value_error_saying_why(name, reason):
    with pytest.raises(ValueError, match=reason):
        mmapfile.mmapfile(None, name, 4096)


def test_non_ascii_names_work(block_name):
    name = f"{block_name}-kamera-ß-日本"
    m = mmapfile.mmapfile(None, name, 4096)
    assert os.path.exists(shm_path(name))
    m.close()
    assert not os.path.exists(shm_path(name))


# --- security ---------------------------------------------------------------


def test_new_blocks_are_private_to_their_owner(block_name):
    old = os.umask(0)
    try:
        m = mmapfile.mmapfile(None, block_name, 4096)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(shm_path(block_name)).st_mode) == 0o600
    m.close()


def test_mode_sets_the_exact_permission_bits(block_name):
    old = os.umask(0o077)  # must not apply: mode= is what the caller asked for
    try:
        m = mmapfile.mmapfile(None, block_name, 4096, mode=0o660)
    finally:
        os.umask(old)
    if PORTABLE:
        # The record file is written by its owner only; the record and the
        # object (which macOS creates with shm_open's mode, no umask) say
        # the mode.
        assert mmapfile._mmapfile._block_info(block_name)["mode"] == 0o660
        assert stat.S_IMODE(os.stat(shm_path(block_name)).st_mode) == 0o640
        assert stat.S_IMODE(os.stat(object_path(block_name)).st_mode) == 0o660
    else:
        assert stat.S_IMODE(os.stat(shm_path(block_name)).st_mode) == 0o660
    m.close()


def test_mode_with_non_permission_bits_is_refused(block_name):
    with pytest.raises(ValueError, match="permission bits"):
        mmapfile.mmapfile(None, block_name, 4096, mode=0o1600)


OPEN_AS_OTHER_USER = """
    import sys, mmapfile
    allow = sys.argv[2] == "allow"
    try:
        m = mmapfile.mmapfile(None, sys.argv[1], 0, allow_other_owner=allow)
    except mmapfile.error as exc:
        print("refused", exc.errno, exc.funcname)
    else:
        print("opened", m.read(5).decode())
        m.close()
"""


@pytest.mark.skipif(not IS_ROOT, reason="needs root to run a child as nobody")
def test_block_of_another_user_is_refused_unless_allowed(block_name):
    m = mmapfile.mmapfile(None, block_name, 4096, mode=0o666)
    m.write(b"owned")
    refused = start_python(OPEN_AS_OTHER_USER, block_name, "deny", as_other_user=True)
    out, err = refused.communicate(timeout=30)
    assert out.split() == ["refused", str(errno.EACCES), OPEN_BLOCK_FUNC], err
    allowed = start_python(OPEN_AS_OTHER_USER, block_name, "allow", as_other_user=True)
    out, err = allowed.communicate(timeout=30)
    assert out.split() == ["opened", "owned"], err
    assert os.path.exists(shm_path(block_name)), "the other user's close left our hold"
    m.close()
    assert not os.path.exists(shm_path(block_name))


@pytest.mark.skipif(not IS_ROOT, reason="needs root to run a child as nobody")
def test_private_block_is_refused_to_another_user_by_the_os(block_name):
    m = mmapfile.mmapfile(None, block_name, 4096)  # mode 0600
    child = start_python(OPEN_AS_OTHER_USER, block_name, "allow", as_other_user=True)
    out, err = child.communicate(timeout=30)
    assert out.split()[:2] == ["refused", str(errno.EACCES)], err
    m.close()


# --- interop ----------------------------------------------------------------


@pytest.mark.skipif(not PORTABLE, reason="Linux keeps a block in a System V segment")
def test_shared_memory_attaches_to_the_same_bytes(block_name):
    m = mmapfile.mmapfile(None, block_name, 4096)
    m.write(b"from mmapfile")
    child = start_python(
        """
        import sys
        from multiprocessing import resource_tracker, shared_memory
        shm = shared_memory.SharedMemory(name=sys.argv[1])
        # Python < 3.13 registers attached blocks for removal at exit: the
        # block is not this process's to remove.
        resource_tracker.unregister(shm._name, "shared_memory")
        print(bytes(shm.buf[:13]).decode(), flush=True)
        shm.buf[100:111] = b"from python"
        shm.close()
        """,
        mmapfile._mmapfile._block_info(block_name)["shm_name"].lstrip("/"),
    )
    out, err = child.communicate(timeout=30)
    assert out.strip() == "from mmapfile", err
    m.seek(100)
    assert m.read(11) == b"from python"
    m.close()
    assert not os.path.exists(shm_path(block_name))


@pytest.mark.skipif(PORTABLE, reason="the portable backend keeps a block in a POSIX object")
def test_shared_memory_is_refused_the_name_of_a_block_rather_than_shown_zeros(block_name):
    # On Linux the name is an empty record of the System V segment that holds
    # the bytes (so that the kernel frees them with the last holder), which
    # multiprocessing.shared_memory cannot attach: it must fail, never map
    # something else.
    m = mmapfile.mmapfile(None, block_name, 4096)
    m.write(b"from mmapfile")
    child = start_python(
        """
        import sys
        from multiprocessing import resource_tracker, shared_memory
        try:
            shm = shared_memory.SharedMemory(name=sys.argv[1])
        except (ValueError, OSError) as e:
            print("refused", type(e).__name__, flush=True)
        else:
            resource_tracker.unregister(shm._name, "shared_memory")
            print("attached", shm.size, flush=True)
        """,
        mmapfile._mmapfile._block_info(block_name)["shm_name"].lstrip("/"),
    )
    out, err = child.communicate(timeout=30)
    assert out.split()[0] == "refused", (out, err)
    m.seek(0)
    assert m.read(13) == b"from mmapfile"
    m.close()
    assert not os.path.exists(shm_path(block_name))


# --- the race -----------------------------------------------------------------


RACING_CREATOR = """
    import os, sys, time, mmapfile
    name, slot, go, exclusive = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
    while not os.path.exists(go):
        time.sleep(0.001)
    try:
        m = mmapfile.mmapfile(None, name, 4096, create=True if exclusive else None)
    except mmapfile.error as exc:
        print("refused", exc.errno, flush=True)
        sys.exit(0)
    if m.created:
        m.write(slot.encode())
    print("created" if m.created else "opened", flush=True)
    sys.stdin.readline()
    m.seek(0)
    print(m.read(8).rstrip(b"\\0").decode(), flush=True)
    m.close()
"""


def test_racing_creators_make_one_block_and_everyone_else_sees_it(block_name, tmp_path):
    # Half ask for create=True (exactly one may win, the others get EEXIST),
    # half for create-or-open (they join the winner's block).
    go = tmp_path / "go"
    racers = [
        start_python(RACING_CREATOR, block_name, str(i), str(go), str(i % 2)) for i in range(8)
    ]
    time.sleep(0.2)  # let them all start waiting
    go.touch()
    outcomes = [proc.stdout.readline().split() for proc in racers]
    created = [i for i, o in enumerate(outcomes) if o == ["created"]]
    assert len(created) == 1, outcomes
    for i, outcome in enumerate(outcomes):
        if i in created:
            continue
        if i % 2:  # create=True lost the race
            assert outcome == ["refused", str(errno.EEXIST)], outcome
        else:
            assert outcome == ["opened"], outcome
    for i, proc in enumerate(racers):
        out, err = proc.communicate("go\n", timeout=60)
        assert proc.returncode == 0, err
        if outcomes[i][0] != "refused":
            assert out.strip() == str(created[0]), "a holder sees another block than the winner's"
    assert not os.path.exists(shm_path(block_name))


def test_many_processes_opening_and_closing_never_see_a_destroyed_or_foreign_block(
    block_name,
):
    seconds = float(os.environ.get("MMAPFILE_RACE_SECONDS", "10"))
    workers = [
        subprocess.Popen(
            [sys.executable, str(HERE / "_race_worker.py"), block_name, str(slot), str(seconds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for slot in range(4)
    ]
    results = []
    for w in workers:
        out, err = w.communicate(timeout=seconds + 60)
        assert w.returncode == 0, err
        results.append(json.loads(out))
    totals = {k: sum(r[k] for r in results) for k in results[0]}
    print("race totals:", totals)
    # The loop must actually have exercised both paths many times.
    assert totals["created"] > 10 and totals["opened"] > 100, totals
    if os.path.exists(shm_path(block_name)):
        # The last holder was one of the SIGKILLed ones: its dead block waits
        # for the next open of the name, which must reclaim it.
        assert mmapfile._mmapfile._block_info(block_name)["holders"] == (
            0 if HOLDERS_COUNTED else None
        )
        m = mmapfile.mmapfile(None, block_name, 4096)
        assert m.created, "the dead block was reused instead of reclaimed"
        m.close()
    assert not os.path.exists(shm_path(block_name))


def test_last_two_holders_closing_at_once_leave_nothing(block_name):
    # Two holders whose closes overlap must not each leave it to the other.
    # Threads are enough: each object opens its own file description, so
    # their locks interact exactly as between processes.
    import threading

    rounds = 1000
    barrier = threading.Barrier(2)
    left_behind = []

    def holder(first: bool) -> None:
        for i in range(rounds):
            m = mmapfile.mmapfile(None, block_name, 4096)
            barrier.wait()
            m.close()
            barrier.wait()
            if first and os.path.exists(shm_path(block_name)):
                left_behind.append(i)
                os.unlink(shm_path(block_name))
            barrier.wait()

    threads = [threading.Thread(target=holder, args=(i == 0,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert left_behind == []
