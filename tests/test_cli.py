"""The command line: python -m mmapfile ls / info / dump / rm / gc."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import mmapfile
import pytest
from _other_user import CLI_AS_NOBODY, as_nobody, python_command
from conftest import HOLDERS_COUNTED, IS_ROOT, linux_only, shm_path

pytestmark = linux_only

# gc removes every dead block of the calling user. Tests run as root on
# machines where other root processes may own dead blocks on purpose, so the
# gc test works as `nobody` when it can.
AS_NOBODY = IS_ROOT


def cli(*args: str, as_other_user: bool = False) -> subprocess.CompletedProcess:
    command = (
        as_nobody(CLI_AS_NOBODY[0], *args, preload=CLI_AS_NOBODY[1])
        if as_other_user
        else [sys.executable, "-m", "mmapfile", *args]
    )
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def held(block_name):
    m = mmapfile.mmapfile(None, block_name, 4096)
    m.write(b"hello, cli")
    yield block_name
    m.close()


def test_ls_lists_the_block_with_size_holders_and_owner(held):
    result = cli("ls")
    assert result.returncode == 0, result.stderr
    (line,) = [ln for ln in result.stdout.splitlines() if ln.split()[0] == held]
    name, kind, size, holders, owner, age, file = line.split()
    assert (kind, size, holders, file) == ("block", "4096", "1" if HOLDERS_COUNTED else "?", "-")
    assert owner == ("root" if os.geteuid() == 0 else owner)
    assert age.endswith(("s", "m"))


def test_ls_json_counts_every_holder(held):
    other = mmapfile.mmapfile(None, held, 0, access=mmapfile.ACCESS_READ)
    result = cli("ls", "--json")
    other.close()
    assert result.returncode == 0, result.stderr
    (entry,) = [b for b in json.loads(result.stdout) if b["name"] == held]
    if HOLDERS_COUNTED:
        assert entry["holders"] == 2
        assert entry["shm_name"] == f"/mmapfile.{held}"
    else:
        # A fresh random object per block, within macOS's 31 bytes.
        assert entry["holders"] is None
        assert entry["shm_name"].startswith("/mmapfile=") and len(entry["shm_name"]) == 31
    assert entry["path"] == str(shm_path(held))
    assert entry["owner"] == os.geteuid()


def test_info_describes_one_block(held):
    result = cli("info", f"Local\\{held}")
    assert result.returncode == 0, result.stderr
    fields = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert fields["name"].strip() == held
    assert fields["path"].strip() == str(shm_path(held))
    assert fields["size"].strip() == "4096 bytes"
    assert fields["holders"].strip() == ("1" if HOLDERS_COUNTED else "?")
    assert fields["mode"].strip() == "0o600"


def test_info_of_a_missing_block_fails_with_exit_code_1(block_name):
    result = cli("info", block_name)
    assert result.returncode == 1
    assert "No such file" in result.stderr and block_name in result.stderr


def test_invalid_name_fails_with_exit_code_2_and_the_reason():
    result = cli("info", "a/b")
    assert result.returncode == 2
    assert "'/'" in result.stderr


def test_dump_prints_a_hex_dump(held):
    result = cli("dump", held, "--length", "32")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("00000000  68 65 6c 6c 6f 2c 20 63  6c 69 00")
    assert lines[0].endswith("|hello, cli......|")
    assert lines[-1] == "00000020"


def test_dump_honours_offset_and_length(held):
    result = cli("dump", held, "--offset", "7", "--length", "3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "00000007  63 6c 69" + " " * 42 + "|cli|",
        "0000000a",
    ]


def test_dump_past_the_end_fails_with_exit_code_2_and_the_size(held):
    result = cli("dump", held, "--offset", "4097")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "past the end" in result.stderr and "4096 bytes" in result.stderr


def test_dump_at_the_end_prints_only_the_end_offset(held):
    result = cli("dump", held, "--offset", "4096")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["00001000"]


def test_dump_collapses_repeated_lines(held):
    result = cli("dump", held)
    assert result.returncode == 0, result.stderr
    assert "*" in result.stdout.splitlines()
    assert result.stdout.splitlines()[-1] == "00001000"


def test_dump_rejects_a_negative_offset(held):
    result = cli("dump", held, "--offset", "-1")
    assert result.returncode == 2
    assert "negative" in result.stderr


def test_rm_removes_a_held_block_with_a_warning(block_name):
    m = mmapfile.mmapfile(None, block_name, 4096)
    result = cli("rm", block_name)
    assert result.returncode == 0, result.stderr
    # Where holders are not counted, removing finds out that one remained.
    held_by = "1 mapping" if HOLDERS_COUNTED else "live mappings"
    assert "warning" in result.stderr and held_by in result.stderr
    assert not os.path.exists(shm_path(block_name))
    fresh = mmapfile.mmapfile(None, block_name, 4096)
    assert fresh.created, "after rm the name opens a new block"
    fresh.close()
    m.close()  # the removed block's last holder: nothing left to remove


def test_rm_of_a_missing_block_fails_with_exit_code_1(block_name):
    result = cli("rm", block_name)
    assert result.returncode == 1
    assert "No such file" in result.stderr


def _start_holder(name: str, as_other_user: bool) -> subprocess.Popen:
    code = """
        import sys, mmapfile
        m = mmapfile.mmapfile(None, sys.argv[1], 4096)
        print("ready", flush=True)
        sys.stdin.readline()
        m.close()
    """
    child = subprocess.Popen(
        python_command(code, name, as_other_user=as_other_user),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "ready", child.stderr.read()
    return child


def test_gc_removes_dead_blocks_only(block_name):
    dead, live = f"{block_name}-dead", f"{block_name}-live"
    killed = _start_holder(dead, AS_NOBODY)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(30)
    holder = _start_holder(live, AS_NOBODY)
    try:
        result = cli("gc", as_other_user=AS_NOBODY)
        assert result.returncode == 0, result.stderr
        assert f"removed {dead}" in result.stdout.splitlines()
        assert live not in result.stdout
        assert not os.path.exists(shm_path(dead))
        assert os.path.exists(shm_path(live))
    finally:
        holder.communicate("done\n", timeout=30)
    assert not os.path.exists(shm_path(live))


@pytest.mark.parametrize("command", [[], ["ls"], ["info"], ["dump"], ["rm"], ["gc"]])
def test_every_command_has_help(command):
    result = cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: mmapfile")


def test_missing_command_is_a_usage_error():
    result = cli()
    assert result.returncode == 2
    assert "required" in result.stderr


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "mmapfile"
    if not script.exists():
        pytest.skip("not installed as a console script in this environment")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "gc" in result.stdout
