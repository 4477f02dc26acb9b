"""Data written to a mapping survives the writer being SIGKILLed right after
the write, without flush(): it is in the shared page cache the moment the
write returns. (flush() adds durability across an OS crash or power loss,
which a test cannot simulate; see docs/guarantees.md.)"""

import os
import signal
import sys

import mmapfile
import pytest
from _child import describe, run_child
from conftest import shm_path

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses SIGKILL")

PAYLOAD = b"durable-" * 512  # 4 KiB, crosses a page boundary at offset 100

HAS_ITEMS = hasattr(mmapfile.mmapfile, "__setitem__")


def run_and_get_killed(code):
    proc = run_child(
        "import os, signal, mmapfile\n"
        + code
        + "\nos.kill(os.getpid(), signal.SIGKILL)\nprint('not killed')\n"
    )
    assert proc.returncode == -signal.SIGKILL, describe(proc)


WRITES = {
    "write": "m.seek(100); m.write(PAYLOAD)",
    "write_byte": "m.seek(100)\nfor b in PAYLOAD: m.write_byte(b)",
    "move": "m.seek(20000); m.write(PAYLOAD); m.move(100, 20000, len(PAYLOAD))",
}
if HAS_ITEMS:
    WRITES["slice_assign"] = "m[100 : 100 + len(PAYLOAD)] = PAYLOAD"


@pytest.mark.parametrize("how", sorted(WRITES))
def test_file_write_survives_sigkill_without_flush(tmp_path, how):
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(32768))
    run_and_get_killed(
        f"PAYLOAD = {PAYLOAD!r}\nm = mmapfile.mmapfile({str(path)!r}, None)\n{WRITES[how]}"
    )
    data = path.read_bytes()
    assert data[100 : 100 + len(PAYLOAD)] == PAYLOAD
    assert data[:100] == bytes(100)
    assert len(data) == 32768


def test_file_grown_by_the_mapping_keeps_its_size_and_data_after_sigkill(tmp_path):
    path = tmp_path / "new.bin"
    run_and_get_killed(
        f"m = mmapfile.mmapfile({str(path)!r}, None, 10000)\nm.seek(9990)\nm.write(b'0123456789')"
    )
    data = path.read_bytes()
    assert len(data) == 10000
    assert data[-10:] == b"0123456789"


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs /dev/shm")
def test_named_block_write_survives_the_writer_being_sigkilled():
    # A named block lives while some holder does (as on Windows), so the
    # reader holds it while the writer is killed right after writing.
    name = f"durable-{os.getpid()}"
    reader = mmapfile.mmapfile(None, name, 8192)
    try:
        run_and_get_killed(
            f"m = mmapfile.mmapfile(None, {name!r})\nm.seek(5000)\nm.write(b'still here')"
        )
        reader.seek(5000)
        assert reader.read(10) == b"still here"
    finally:
        reader.close()
    assert not shm_path(name).exists()


def test_flush_then_sigkill_keeps_data_and_flush_reports_success(tmp_path):
    path = tmp_path / "flushed.bin"
    path.write_bytes(bytes(8192))
    run_and_get_killed(
        f"""
m = mmapfile.mmapfile({str(path)!r}, None)
m.write(b"flushed")
assert m.flush() == 1
assert m.flush(4096, 10) == 1
"""
    )
    assert path.read_bytes()[:7] == b"flushed"


def test_copy_on_write_changes_never_reach_the_file(tmp_path):
    path = tmp_path / "private.bin"
    path.write_bytes(b"A" * 4096)
    run_and_get_killed(
        f"""
m = mmapfile.mmapfile({str(path)!r}, None, access=mmapfile.ACCESS_COPY)
m.write(b"B" * 100)
m.flush()
"""
    )
    assert path.read_bytes() == b"A" * 4096
