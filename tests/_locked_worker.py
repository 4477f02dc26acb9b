"""One worker of the lock-guarded half of tests/test_stress.py.

usage: _locked_worker.py NAME INDEX REGION_SIZE SECONDS

Every worker rewrites the SAME region of the named block, always holding
the block's lock(): it reads the region, checks that it is whole (a counter,
the writer's index and a filler derived from both, then a CRC32 of all of
it), and writes it back with the counter plus one. A torn region (a write
that another worker could see half done) or a lost increment would show up
as a bad checksum or a final counter that is not the sum of all the
workers' increments. Prints a JSON summary."""

import json
import random
import struct
import sys
import time
import zlib

import mmapfile

HEAD = struct.Struct("<QI")  # counter, writer


def region_bytes(counter, writer, size):
    filler = random.Random(counter * 31 + writer).randbytes(size - HEAD.size - 4)
    data = HEAD.pack(counter, writer) + filler
    return data + struct.pack("<I", zlib.crc32(data))


def main():
    name, index, region, seconds = sys.argv[1:]
    index, region, seconds = int(index), int(region), float(seconds)
    m = mmapfile.mmapfile(None, name, 0)
    deadline = time.monotonic() + seconds
    increments = 0
    errors = []
    while time.monotonic() < deadline and len(errors) < 10:
        with m.lock():
            data = m[0:region]
            counter, writer = HEAD.unpack_from(data)
            whole = zlib.crc32(data[:-4]) == struct.unpack("<I", data[-4:])[0]
            if counter and (not whole or data != region_bytes(counter, writer, region)):
                errors.append(f"torn region seen at counter {counter}")
            m[0:region] = region_bytes(counter + 1, index, region)
            increments += 1
    m.close()
    print(json.dumps({"increments": increments, "errors": errors}))


if __name__ == "__main__":
    main()
