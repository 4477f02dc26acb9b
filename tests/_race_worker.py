"""One process of the open/close race test (tests/test_named_lifetime.py).

Usage: python _race_worker.py NAME SLOT SECONDS

Opens NAME, checks it, writes, closes, over and over for SECONDS. A block it
created must be fresh (no magic yet); a block it holds must be the one the
name opens (checked with a second mapping and a nonce in this process's own
slot). Now and then a forked child joins the block and is SIGKILLed, leaving
dead holders for the others to cope with. Prints one JSON line of counts;
exits 1 with a message on the first violation.
"""

import json
import os
import random
import signal
import struct
import sys
import time

import mmapfile

SIZE = 4096
MAGIC = b"MMFRACE1"
CHECK = 0x5A5A5A5A5A5A5A5A
SLOTS = 64  # slot i is the 8 bytes at 64 + 8 * i


def fail(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
    sys.exit(1)


def header_ok(m) -> bool:
    m.seek(0)
    head = m.read(24)
    magic, gen, check = head[:8], head[8:16], head[16:24]
    if magic == b"\0" * 8:
        return True  # its creator has not written the header yet
    if magic != MAGIC:
        return False
    (g,) = struct.unpack("<Q", gen)
    (c,) = struct.unpack("<Q", check)
    return g ^ CHECK == c


def one_round(name: str, slot: int, counts: dict) -> None:
    m = mmapfile.mmapfile(None, name, SIZE)
    try:
        if m.size() != SIZE:
            fail(f"size {m.size()} != {SIZE}")
        m.seek(0)
        if m.created:
            counts["created"] += 1
            if m.read(8) != b"\0" * 8:
                fail("a block this process created already had a header: stale reuse")
            gen = random.getrandbits(64)
            # The body first, then the magic, so whoever sees the magic sees all.
            m.seek(8)
            m.write(struct.pack("<QQ", gen, gen ^ CHECK))
            m.seek(0)
            m.write(MAGIC)
        else:
            counts["opened"] += 1
        if not header_ok(m):
            fail("foreign or torn header")
        nonce = os.urandom(8)
        m.seek(64 + 8 * slot)
        m.write(nonce)
        if random.random() < 0.5:
            time.sleep(random.random() / 1000)
        # While we hold the block, the name must lead to this very block.
        try:
            again = mmapfile.mmapfile(None, name, 0, create=False)
        except OSError as exc:
            fail(f"name vanished while held: {exc!r}")
        try:
            again.seek(64 + 8 * slot)
            if again.read(8) != nonce:
                fail("the name leads to a different block than the one held")
        finally:
            again.close()
    finally:
        m.close()


def killed_holder(name: str) -> None:
    """Forks a child that joins the block and dies by SIGKILL."""
    pid = os.fork()
    if pid == 0:
        try:
            m = mmapfile.mmapfile(None, name, SIZE)
            m.seek(64 + 8 * (SLOTS - 1))
            m.write(b"killed!!")
        finally:
            os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)


def main() -> None:
    name, slot, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    counts = {"rounds": 0, "created": 0, "opened": 0, "killed": 0}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        one_round(name, slot, counts)
        counts["rounds"] += 1
        # Gaps between rounds let the block empty out now and then, so that
        # last-holder closes race new openers, not just holders overlapping.
        if random.random() < 0.3:
            time.sleep(random.random() / 2000)
        if counts["rounds"] % 97 == 0:
            killed_holder(name)
            counts["killed"] += 1
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
