"""Runs the stages of `make test` one after another, as make would, and says
how long the whole takes and what each stage counted.

Usage: python3 ci/stages.py STAGE... (each STAGE a make target)

Every line a stage prints is passed through as it comes. The counts are read
from those lines: cargo's "test result: ... N passed; N failed; N ignored"
and pytest's closing "N passed, N skipped ... in 12.3s", summed per stage.
The first stage that fails ends the run, as with make; the summary then says
which one, and this exits with its status.

Standard library only: it runs before the venv exists.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter

# Measured on the 2-core development machine with nothing else running; a
# machine that builds other things at the same time takes longer.
ESTIMATE = "8 to 9 minutes on an idle 2-core machine, more while other builds run"

CARGO = re.compile(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored")
# pytest -q's last line: "2088 passed, 44 skipped in 94.44s (0:01:34)".
PYTEST = re.compile(r"^=*\s*(\d+ \w+(?:, \d+ \w+)*) in [\d.]+s")
PYTEST_PART = re.compile(r"(\d+) (\w+)")


def minutes(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def describe(cargo: Counter, pytest: Counter) -> str:
    parts = []
    if cargo:
        parts.append(
            "cargo: " + ", ".join(f"{cargo[k]} {k}" for k in ("passed", "failed", "ignored"))
        )
    if pytest:
        parts.append("pytest: " + ", ".join(f"{n} {k}" for k, n in pytest.items()))
    return "; ".join(parts)


def run(stage: str, make: str) -> tuple[int, float, Counter, Counter]:
    cargo: Counter = Counter()
    pytest: Counter = Counter()
    began = time.monotonic()
    child = subprocess.Popen(
        [make, "--no-print-directory", stage],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
    )
    assert child.stdout is not None
    for line in child.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        if m := CARGO.search(line):
            cargo.update(passed=int(m[1]), failed=int(m[2]), ignored=int(m[3]))
        elif m := PYTEST.search(line):
            for n, what in PYTEST_PART.findall(m[1]):
                pytest[what] += int(n)
    status = child.wait()
    return status, time.monotonic() - began, cargo, pytest


def main() -> int:
    stages = sys.argv[1:]
    make = os.environ.get("MAKE", "make")
    print(f"==> make test: {len(stages)} stages ({' '.join(stages)}), {ESTIMATE}", flush=True)
    began = time.monotonic()
    rows = []
    failed = None
    for stage in stages:
        print(f"==> [{len(rows) + 1}/{len(stages)}] make {stage}", flush=True)
        status, took, cargo, pytest = run(stage, make)
        rows.append((stage, took, "ok" if status == 0 else f"FAILED ({status})", cargo, pytest))
        if status != 0:
            failed = status
            break
    total = time.monotonic() - began
    print(f"\n==> make test summary ({minutes(total)} in all)")
    for stage, took, result, cargo, pytest in rows:
        print(f"  {stage:14} {minutes(took):>7}  {result:12} {describe(cargo, pytest)}")
    for stage in stages[len(rows) :]:
        print(f"  {stage:14} {'':>7}  not run")
    return failed or 0


if __name__ == "__main__":
    sys.exit(main())
