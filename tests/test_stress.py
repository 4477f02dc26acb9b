"""Multi-process stress, for MMAPFILE_STRESS_SECONDS (default 10) each:

- four processes write disjoint regions of one named block and check each
  other's checksums (seqlock-style reads, no lock): nothing written may be
  lost or changed by another process;
- four processes rewrite the SAME region under the block's lock(): no one
  may ever see it torn, and no increment may be lost.
"""

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import mmapfile
import pytest
from conftest import shm_path

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /dev/shm")

WORKER = Path(__file__).with_name("_stress_worker.py")
LOCKED_WORKER = Path(__file__).with_name("_locked_worker.py")
SECONDS = float(os.environ.get("MMAPFILE_STRESS_SECONDS", "10"))
WORKERS = 4
REGION = 3 * mmapfile.PAGESIZE + 100  # regions straddle page boundaries


def run_workers(commands):
    """Runs each worker script with its arguments, all at once; returns
    their JSON summaries in order, failing if any worker failed."""
    procs = [
        subprocess.Popen(
            [sys.executable, *map(str, command)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=SECONDS + 120)
        assert p.returncode == 0, f"worker exited {p.returncode}\n{err}"
        results.append(json.loads(out))
    return results


def test_four_processes_writing_disjoint_regions_lose_nothing():
    name = f"stress-{os.getpid()}"
    block = mmapfile.mmapfile(None, name, WORKERS * REGION)
    try:
        results = run_workers([WORKER, name, i, WORKERS, REGION, SECONDS] for i in range(WORKERS))
        print("stress results:", results)  # shown with pytest -s
        for i, r in enumerate(results):
            assert r["errors"] == [], f"worker {i}: {r['errors']}"
            assert r["rounds"] > 10, r
            assert r["checks"] > 0, r

        # Every region holds its writer's last round, intact.
        sys.path.insert(0, str(WORKER.parent))
        from _stress_worker import SEQ, body

        for i, r in enumerate(results):
            block.seek(i * REGION)
            seq = SEQ.unpack(block.read(SEQ.size))[0]
            data = block.read(REGION - SEQ.size)
            assert seq == 2 * r["rounds"]
            assert data == body(i, r["rounds"], REGION - SEQ.size)
            assert zlib.crc32(data[:-4]).to_bytes(4, "little") == data[-4:]
    finally:
        block.close()
    assert not shm_path(name).exists(), "the last close removes the block"


def test_four_processes_sharing_one_region_under_lock_never_see_it_torn():
    name = f"stress-locked-{os.getpid()}"
    region = 2 * mmapfile.PAGESIZE + 300  # spans three pages
    block = mmapfile.mmapfile(None, name, region)
    try:
        results = run_workers([LOCKED_WORKER, name, i, region, SECONDS] for i in range(WORKERS))
        print("locked stress results:", results)
        for i, r in enumerate(results):
            assert r["errors"] == [], f"worker {i}: {r['errors']}"
            assert r["increments"] > 10, r
        counter = int.from_bytes(block[0:8], "little")
        assert counter == sum(r["increments"] for r in results), "an increment was lost"
    finally:
        block.close()
    assert not shm_path(name).exists(), "the last close removes the block"
