"""One writer/checker of tests/test_stress.py, run as its own process.

usage: _stress_worker.py NAME INDEX WORKERS REGION_SIZE SECONDS

Region INDEX of the named block belongs to this process. Each round it
writes the region seqlock-style: an odd sequence number in the first 8
bytes, then the body (owner, round, filler, CRC32), then the next even
number. Between rounds it checks that its own region still holds exactly
what it wrote (no other writer touched it) and reads another worker's
region, retrying while that one is mid-write, then checks its CRC, owner
and that its round never goes backwards. Prints a JSON summary."""

import json
import os
import random
import struct
import sys
import time
import zlib

import mmapfile

SEQ = struct.Struct("<Q")
HEAD = struct.Struct("<II")  # owner, round


def body(owner, rnd, size):
    rng = random.Random(owner * 1_000_003 + rnd)
    filler = rng.randbytes(size - HEAD.size - 4)
    data = HEAD.pack(owner, rnd) + filler
    return data + struct.pack("<I", zlib.crc32(data))


def main():
    name, index, workers, region, seconds = sys.argv[1:]
    index, workers, region, seconds = int(index), int(workers), int(region), float(seconds)
    m = mmapfile.mmapfile(None, name, 0)
    base = index * region
    body_size = region - SEQ.size
    deadline = time.monotonic() + seconds
    rnd = 0
    checks = retries = 0
    last_seen = [0] * workers
    errors = []
    rng = random.Random(index)

    def read_at(offset, n):
        m.seek(offset)
        return m.read(n)

    while time.monotonic() < deadline and len(errors) < 10:
        rnd += 1
        payload = body(index, rnd, body_size)
        m.seek(base)
        m.write(SEQ.pack(2 * rnd - 1))
        m.write(payload)
        m.seek(base)
        m.write(SEQ.pack(2 * rnd))

        if read_at(base, region) != SEQ.pack(2 * rnd) + payload:
            errors.append(f"own region {index} changed after round {rnd}")

        other = rng.choice([w for w in range(workers) if w != index] or [index])
        # The writer may be descheduled mid-write (4 processes share the
        # cores), so wait by time, yielding the CPU, not by attempt count.
        give_up = time.monotonic() + 5
        while True:
            s1 = SEQ.unpack(read_at(other * region, SEQ.size))[0]
            data = read_at(other * region + SEQ.size, body_size)
            s2 = SEQ.unpack(read_at(other * region, SEQ.size))[0]
            if s1 == s2 and s1 % 2 == 0:
                settled = True
                break
            retries += 1
            if time.monotonic() > give_up:
                settled = False
                break
            os.sched_yield()
        if not settled:
            errors.append(f"region {other} never settled")
            continue
        if s1 == 0:
            continue  # that worker has not written yet
        owner, their_round = HEAD.unpack_from(data)
        if zlib.crc32(data[:-4]) != struct.unpack("<I", data[-4:])[0]:
            errors.append(f"region {other}: bad checksum at seq {s1}")
        elif owner != other or their_round != s1 // 2:
            errors.append(f"region {other}: owner {owner} round {their_round} at seq {s1}")
        elif their_round < last_seen[other]:
            errors.append(f"region {other}: round went back {last_seen[other]} -> {their_round}")
        else:
            last_seen[other] = their_round
            checks += 1
    m.close()
    print(json.dumps({"rounds": rnd, "checks": checks, "retries": retries, "errors": errors}))


if __name__ == "__main__":
    main()
