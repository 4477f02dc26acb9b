"""Per-call times of mmapfile against pywin32's mmapfile (and CPython's mmap
for the calls pywin32 lacks), in the Windows Python: what the fault guard of
the Windows build may cost. Run under Wine with `winpy benches/windows_calls.py`
(after `. ~/.cache/mmapfile-winenv/env.sh`).

Each call is unrolled 20 times in a timeit loop; both sides run interleaved
for several rounds and the best round of each is kept. Prints ns per call and
the ratio (ours / theirs; below 1.0 means we are faster).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import mmap
import os
import sys
import tempfile
import timeit

import mmapfile as ours_module
import win32api  # noqa: F401  (puts pywin32's DLLs on the search path)

UNROLL = 20
ROUNDS = 7
NUMBER = 2000


def pywin32_module():
    path = os.path.join(os.path.dirname(win32api.__file__), "mmapfile.pyd")
    loader = importlib.machinery.ExtensionFileLoader("mmapfile", path)
    spec = importlib.util.spec_from_file_location("mmapfile", path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def per_call(stmt, obj):
    timer = timeit.Timer("\n".join([stmt] * UNROLL), setup="m.seek(0)", globals={"m": obj})
    return lambda: timer.timeit(NUMBER) / (NUMBER * UNROLL)


def best(a, b):
    ta = tb = float("inf")
    for _ in range(ROUNDS):
        ta, tb = min(ta, a()), min(tb, b())
    return ta, tb


def main():
    theirs_module = pywin32_module()
    here = tempfile.mkdtemp()
    path = os.path.join(here, "data.bin")
    line = b"x" * 79 + b"\n"
    with open(path, "wb") as f:
        f.write(line * (1 << 16))
    ours = ours_module.mmapfile(path, None)
    theirs = theirs_module.mmapfile(path, None)
    with open(path, "r+b") as f:
        cpython = mmap.mmap(f.fileno(), 0)
    # Calls that write come last: write(16) overwrites the lines' newlines
    # from the start of the file on.
    rows = [
        ("read_byte", "m.read_byte()", theirs),
        ("read(16)", "m.read(16)", theirs),
        ("seek(0) + read(4096)", "m.seek(0); m.read(4096)", theirs),
        ("readline (80-byte lines)", "m.readline()", theirs),
        ("find, hit 79 bytes on", "m.find(b'\\n')", theirs),
        ("tell", "m.tell()", theirs),
        ("m[i]", "m[1000]", cpython),
        ("m[i:i+16]", "m[1000:1016]", cpython),
        ("write(16)", "m.write(b'0123456789abcdef')", theirs),
        ("write_byte", "m.write_byte(b'A')", theirs),
        ("m[i] = v", "m[1000] = 65", cpython),
        ("m[i:i+16] = bytes", "m[1000:1016] = b'0123456789abcdef'", cpython),
    ]
    print(f"{'call':28} {'ours ns':>9} {'theirs ns':>10} {'ratio':>6}  vs")
    for name, stmt, other in rows:
        t_ours, t_theirs = best(per_call(stmt, ours), per_call(stmt, other))
        vs = "pywin32" if other is theirs else "mmap"
        print(
            f"{name:28} {t_ours * 1e9:9.1f} {t_theirs * 1e9:10.1f} {t_ours / t_theirs:6.2f}  {vs}"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
