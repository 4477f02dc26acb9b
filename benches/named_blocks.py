"""What a named block costs to create and to open, against SharedMemory.

Runs what `make bench`'s named row runs (a 4 KiB block created and closed,
against `SharedMemory(create=True, size=4096)` closed and unlinked), 7
interleaved rounds of 1,000 calls, and prints for each side the best
round's wall time and the median round's CPU time (`time.process_time`,
which the other builds on a shared machine disturb less); then open + close
of a block that another object holds, and `SharedMemory` without its
resource tracker (like with like: a named block registers nothing). Wall
times on a loaded machine mean little: say the load it printed. (Running it
under `chrt -f 10` steadies them but is not fair: real-time scheduling slows
SharedMemory's hand-off to its tracker process.)
"""

import secrets
import statistics
import time
import uuid
from multiprocessing import resource_tracker, shared_memory

import mmapfile

ROUNDS, CALLS = 7, 1000


def ours():
    # Named as SharedMemory names its own blocks (secrets.token_hex), so that
    # both sides pay the same for a fresh name.
    m = mmapfile.mmapfile(None, "bench-" + secrets.token_hex(6), 4096)
    m.close()


def theirs():
    s = shared_memory.SharedMemory(create=True, size=4096)
    s.close()
    s.unlink()


def run(fn):
    """(wall, cpu) seconds per call of fn over CALLS calls."""
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(CALLS):
        fn()
    return (time.perf_counter() - t0) / CALLS, (time.process_time() - c0) / CALLS


def summary(rounds):
    return min(w for w, _ in rounds) * 1e6, statistics.median(c for _, c in rounds) * 1e6


def load():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def main():
    print(f"load average at the start: {load()}")
    o, t = [], []
    for _ in range(ROUNDS):
        o.append(run(ours))
        t.append(run(theirs))
    (ow, oc), (tw, tc) = summary(o), summary(t)
    print(f"named create+close: wall {ow:.2f} us vs {tw:.2f} us ({ow / tw:.2f}x)")
    print(f"                    cpu  {oc:.2f} us vs {tc:.2f} us ({oc / tc:.2f}x)")

    name = "bench-held-" + uuid.uuid4().hex[:8]
    holder = mmapfile.mmapfile(None, name, 4096)

    def reopen():
        mmapfile.mmapfile(None, name, 0).close()

    w, c = summary([run(reopen) for _ in range(ROUNDS)])
    holder.close()
    print(f"open+close of a held block: wall {w:.2f} us, cpu {c:.2f} us")

    register, unregister = resource_tracker.register, resource_tracker.unregister
    resource_tracker.register = resource_tracker.unregister = lambda *args: None
    try:
        w, c = summary([run(theirs) for _ in range(ROUNDS)])
    finally:
        resource_tracker.register, resource_tracker.unregister = register, unregister
    print(f"SharedMemory without its resource tracker: wall {w:.2f} us, cpu {c:.2f} us")
    print(f"load average at the end: {load()}")


if __name__ == "__main__":
    main()
