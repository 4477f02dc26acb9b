"""Creating a named block on Linux: the record is made under its name and
finished by its creator, and nobody uses it before (docs/named-blocks.md,
"How a block is created").

A record that is still empty (no size, no segment reference, not a file
mapping's) is unfinished. These tests make such records by hand, as a
creator at work or a creator killed before it finished would leave them,
and check what openers, `ls` and `gc` do with them; the last one kills real
creators at random moments.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
import time

import mmapfile
import pytest
from _other_user import start_python
from conftest import PORTABLE, hold_as_linux_holder, linux_only, shm_path, sysvipc_segments

pytestmark = [
    linux_only,
    pytest.mark.skipif(PORTABLE, reason="the portable backend keeps its own records"),
]


def unfinished_record(name: str, held: bool) -> int:
    """Makes the empty record of `name`, as its creator does first, and
    holds it as the creator does (shared lock on byte 0) if `held`.
    Returns its descriptor."""
    fd = os.open(shm_path(name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    if held:
        hold_as_linux_holder(fd)
    return fd


class Opener(threading.Thread):
    """Opens the block `name` (creating it if need be) in a thread."""

    def __init__(self, name: str):
        super().__init__(daemon=True)
        self.name_ = name
        self.result: mmapfile.mmapfile | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = mmapfile.mmapfile(None, self.name_, 4096)
        except BaseException as e:  # reported by the test
            self.error = e

    def outcome(self) -> mmapfile.mmapfile:
        self.join(30)
        assert not self.is_alive(), "the opener never returned"
        assert self.error is None, self.error
        assert self.result is not None
        return self.result


def listed(name: str) -> bool:
    return any(b["name"] == name for b in mmapfile._mmapfile._list_blocks())


def test_an_opener_waits_for_a_creator_at_work_and_then_joins_its_block(block_name):
    fd = unfinished_record(block_name, held=True)
    try:
        opener = Opener(block_name)
        opener.start()
        time.sleep(0.3)
        assert opener.is_alive(), "an opener went on with a block its creator had not finished"
        assert not listed(block_name), "`ls` listed a block still being created"
        # The creator finishes it as a block kept in the record itself (what
        # a kernel without System V memory gets): its size is the last step.
        os.write(fd, b"finished by its creator")
        os.ftruncate(fd, 4096)
        m = opener.outcome()
    finally:
        os.close(fd)
    assert not m.created
    assert m.read(23) == b"finished by its creator"
    assert listed(block_name)
    m.close()
    assert not os.path.exists(shm_path(block_name))


def test_an_opener_waiting_for_a_creator_that_dies_makes_the_block_itself(block_name):
    fd = unfinished_record(block_name, held=True)
    opener = Opener(block_name)
    opener.start()
    time.sleep(0.3)
    assert opener.is_alive()
    os.close(fd)  # the creator ends before it finished: its lock goes
    m = opener.outcome()
    assert m.created, "the dead creator's record must be replaced, not used"
    m.write(b"new")
    other = mmapfile.mmapfile(None, block_name, 0, create=False)
    assert other.read(3) == b"new"
    other.close()
    m.close()
    assert not os.path.exists(shm_path(block_name))


def test_a_dead_creators_record_is_replaced_by_the_next_create(block_name):
    os.close(unfinished_record(block_name, held=False))
    m = mmapfile.mmapfile(None, block_name, 4096)
    assert m.created
    assert m.read(4096) == bytes(4096)
    m.close()
    assert not os.path.exists(shm_path(block_name))


def test_a_dead_creators_record_is_not_found_by_open_only_and_is_removed(block_name):
    os.close(unfinished_record(block_name, held=False))
    with pytest.raises(mmapfile.error) as info:
        mmapfile.mmapfile(None, block_name, 0, create=False)
    assert info.value.errno == errno.ENOENT
    assert not os.path.exists(shm_path(block_name))


def test_create_only_replaces_a_dead_creators_record_and_refuses_a_live_ones(block_name):
    os.close(unfinished_record(block_name, held=False))
    m = mmapfile.mmapfile(None, block_name, 4096, create=True)
    assert m.created
    m.close()
    fd = unfinished_record(block_name, held=True)
    try:
        with pytest.raises(mmapfile.error) as info:
            mmapfile.mmapfile(None, block_name, 4096, create=True)
        assert info.value.errno == errno.EEXIST
    finally:
        os.close(fd)
    os.unlink(shm_path(block_name))


def test_ls_removes_a_dead_creators_record_and_gc_does_too(block_name):
    os.close(unfinished_record(block_name, held=False))
    assert not listed(block_name)
    assert not os.path.exists(shm_path(block_name)), "`ls` tidies what a killed creator left"
    os.close(unfinished_record(block_name, held=False))
    assert block_name in mmapfile._mmapfile._collect_garbage()
    assert not os.path.exists(shm_path(block_name))


def test_gc_leaves_a_creator_at_work_alone(block_name):
    fd = unfinished_record(block_name, held=True)
    try:
        assert block_name not in mmapfile._mmapfile._collect_garbage()
        assert os.path.exists(shm_path(block_name))
    finally:
        os.close(fd)
    os.unlink(shm_path(block_name))


CREATE_FOREVER = """
import sys, mmapfile
held = []
print("ready", flush=True)
for i in range(1_000_000):
    held.append(mmapfile.mmapfile(None, f"{sys.argv[1]}-{i}", 4096, mode=int(sys.argv[2], 8)))
    if len(held) > 100:  # well inside kernel.shmmni
        held.pop(0).close()
"""


def segments_made_by(pid: int) -> list[dict[str, str]]:
    """The segments that process `pid` made and that still exist."""
    return [row for row in sysvipc_segments() if int(row["cpid"]) == pid]


# A private block's record is made under its name; one that others may open
# is made with its mode first, then named (docs/named-blocks.md, "Create").
@pytest.mark.parametrize("mode", ["600", "644"])
def test_creators_killed_at_random_moments_leave_nothing_once_listed(block_name, mode):
    """Each child creates blocks as fast as it can (closing the oldest) and
    is killed; some die in the middle of a creation. Listing the blocks (what
    `ls` does) must leave nothing of theirs: no record, and no segment (one
    killed between making its segment and marking it for removal leaves the
    segment, which the record it left leads to). A new block under each name
    they used works."""
    used = 0
    left_segments = 0
    for round_ in range(20):
        prefix = f"{block_name}-{round_}"
        child = start_python(CREATE_FOREVER, prefix, mode)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.02 + 0.005 * (round_ % 7))
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
        names = [n for n in os.listdir("/dev/shm") if n.startswith(f"mmapfile.{prefix}-")]
        used += len(names)
        left_segments += len(segments_made_by(child.pid))
        assert not [b for b in mmapfile._mmapfile._list_blocks() if b["name"].startswith(prefix)]
        left = [n for n in os.listdir("/dev/shm") if n.startswith(f"mmapfile.{prefix}-")]
        assert not left, f"a killed creator left {left}"
        assert segments_made_by(child.pid) == [], "a killed creator left a segment"
        # The name a creator was making when it died works as any other.
        last = max((int(n.rsplit("-", 1)[1]) for n in names), default=0)
        m = mmapfile.mmapfile(None, f"{prefix}-{last}", 4096)
        assert m.created
        m.close()
    assert used > 0, "no child got to create a block before it was killed"
    sys.stderr.write(
        f"{used} names and {left_segments} segments left by killed creators were tidied\n"
    )
