"""Named file mappings: a file mapped under a name, which any process opens
by the name alone (pywin32's ``mmapfile(File, Name, ...)`` then
``mmapfile(None, Name, ...)``), and ``''`` meaning "none" for File and Name.

The POSIX protocol (docs/named-blocks.md, "Named file mappings") is checked
with real processes: holders that close, exit or are SIGKILLed, racing
creators, a file replaced under its name, another user's name, and no
leftovers after many cycles.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import tempfile

import mmapfile
import pytest
from _other_user import start_python
from conftest import (
    HOLDERS_COUNTED,
    IS_ROOT,
    LINUX,
    OPEN_BLOCK_FUNC,
    WINDOWS,
    linux_only,
    new_block_name,
    opened_size,
    shm_path,
)

PAGE = mmapfile.PAGESIZE


def run(code: str, *args: str, as_other_user: bool = False) -> str:
    proc = start_python(code, *args, as_other_user=as_other_user)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out.strip()


# --- '' means none -------------------------------------------------------------


class EmptyPath:
    """An os.PathLike whose path is empty (pathlib turns "" into ".")."""

    def __fspath__(self) -> str:
        return ""


@pytest.mark.parametrize("file", ["", b"", None, EmptyPath()], ids=["str", "bytes", "None", "path"])
@pytest.mark.parametrize("name", ["", None], ids=["empty", "None"])
def test_empty_file_and_name_make_an_unnamed_block(file, name):
    m = mmapfile.mmapfile(file, name, PAGE)
    assert m.size() == PAGE
    assert m.name is None and m.filename is None and m.created
    m.write(b"private")
    m.close()


def test_empty_file_with_a_name_is_a_named_block(block_name):
    # The SSH-agent idiom: mmapfile('', name, size, 0, 0).
    a = mmapfile.mmapfile("", block_name, 8192, 0, 0)
    a.write(b"request")
    b = mmapfile.mmapfile("", block_name, 8192)
    assert (a.created, b.created) == (True, False)
    assert b.read(7) == b"request" and b.filename is None
    a.close()
    b.close()


def test_empty_name_with_a_file_maps_just_the_file(path):
    path.write_bytes(b"line one\nline two\n")
    m = mmapfile.mmapfile(str(path), "", 0)
    assert m.readline() == b"line one\n"
    assert m.name is None and m.filename == str(path)
    m.close()


# --- opening a file mapping by its name ---------------------------------------


def test_second_process_opens_the_file_by_name(path, block_name):
    m1 = mmapfile.mmapfile(File=str(path), Name=block_name, MaximumSize=2 * PAGE)
    assert m1.created and path.stat().st_size == 2 * PAGE
    m1.write(b"in the file")
    out = run(
        """
        import sys, mmapfile
        m = mmapfile.mmapfile(Name=sys.argv[1], File=None, MaximumSize=10 * mmapfile.PAGESIZE)
        print(m.created, m.size(), m.read(11).decode(), m.filename)
        m.seek(100)
        m.write(b"from the child")
        m.close()
        """,
        block_name,
    )
    # Windows does not tell an opener by name which file a section maps.
    filename = "None" if WINDOWS else str(path)
    assert out.split() == ["False", str(opened_size(2 * PAGE)), "in", "the", "file", filename]
    m1.seek(100)
    assert m1.read(14) == b"from the child"
    m1.close()
    assert path.read_bytes()[100:114] == b"from the child"


def test_opener_maps_a_window_of_the_named_file_mapping(path, block_name):
    gran = mmapfile.ALLOCATIONGRANULARITY
    m1 = mmapfile.mmapfile(str(path), block_name, 4 * gran, 0, gran)
    assert m1.size() == gran
    with open(path, "r+b") as f:  # write through the file, past m1's view
        f.seek(2 * gran + 5)
        f.write(b"window")
    m2 = mmapfile.mmapfile(None, block_name, 1, FileOffset=2 * gran, NumberOfBytesToMap=PAGE)
    assert m2.size() == PAGE
    m2.seek(5)
    assert m2.read(6) == b"window"
    with pytest.raises(ValueError):  # the window must lie inside the mapping
        mmapfile.mmapfile(None, block_name, 1, FileOffset=3 * gran, NumberOfBytesToMap=2 * gran)
    m2.close()
    m1.close()


def test_the_mapping_size_is_the_creators_not_the_files(path, block_name):
    path.write_bytes(b"x" * (3 * PAGE))
    m1 = mmapfile.mmapfile(str(path), block_name, PAGE)  # less than the file
    m2 = mmapfile.mmapfile("", block_name, 3 * PAGE)
    assert m2.size() == PAGE
    m2.close()
    m1.close()
    assert path.stat().st_size == 3 * PAGE, "the file was cut"


def test_maximum_size_zero_maps_the_file_size(path, block_name):
    path.write_bytes(b"y" * 5000)
    m1 = mmapfile.mmapfile(str(path), block_name, 0)
    m2 = mmapfile.mmapfile(None, block_name, 0)
    assert m1.size() == 5000 and m2.size() == opened_size(5000)
    m2.close()
    m1.close()


def test_an_existing_name_wins_over_the_file(tmp_path, block_name):
    block = mmapfile.mmapfile(None, block_name, PAGE)
    block.write(b"the block")
    other = tmp_path / "other.bin"
    m = mmapfile.mmapfile(str(other), block_name, 2 * PAGE)
    assert not m.created and m.read(9) == b"the block"
    assert not other.exists(), "a file was created for a mapping that was not made"
    m.close()
    first = tmp_path / "first.bin"
    second = tmp_path / "second.bin"
    second.write_bytes(b"untouched")
    block.close()
    named = mmapfile.mmapfile(str(first), block_name, PAGE)
    named.write(b"first file")
    m = mmapfile.mmapfile(str(second), block_name, 4 * PAGE)
    assert not m.created and m.read(10) == b"first file"
    assert second.read_bytes() == b"untouched", "the losing file was changed"
    m.close()
    named.close()


def test_create_flags_apply_to_named_file_mappings(path, tmp_path, block_name):
    m = mmapfile.mmapfile(str(path), block_name, PAGE, create=True)
    with pytest.raises(mmapfile.error) as exc:
        mmapfile.mmapfile(str(tmp_path / "b"), block_name, PAGE, create=True)
    assert exc.value.errno == errno.EEXIST and exc.value.winerror == 183
    assert not (tmp_path / "b").exists()
    opened = mmapfile.mmapfile(str(tmp_path / "c"), block_name, PAGE, create=False)
    assert not opened.created and not (tmp_path / "c").exists()
    opened.close()
    m.close()
    with pytest.raises(mmapfile.error) as exc:
        mmapfile.mmapfile(str(path), block_name, PAGE, create=False)
    assert exc.value.errno == errno.ENOENT


def test_read_only_openers_of_a_named_file_mapping(path, block_name):
    m1 = mmapfile.mmapfile(str(path), block_name, PAGE)
    m1.write(b"shared")
    ro = mmapfile.mmapfile(None, block_name, 0, access=mmapfile.ACCESS_READ)
    assert ro.read(6) == b"shared"
    with pytest.raises(TypeError):
        ro.write(b"x")
    cow = mmapfile.mmapfile(None, block_name, 0, access=mmapfile.ACCESS_COPY)
    cow[0:6] = b"hidden"
    assert m1[0:6] == b"shared"
    cow.close()
    ro.close()
    m1.close()


def test_resize_of_the_creator_grows_the_file_and_keeps_the_name(path, block_name):
    m1 = mmapfile.mmapfile(str(path), block_name, 2 * PAGE)
    m1.resize(4 * PAGE)
    assert m1.size() == 4 * PAGE and path.stat().st_size == 4 * PAGE
    m1.seek(3 * PAGE)
    m1.write(b"grown")
    m1.flush()
    m2 = mmapfile.mmapfile(None, block_name, 0)
    # As pywin32's creator, the only holder made the mapping anew: openers
    # by name see the new size.
    assert not m2.created and m2.size() == 4 * PAGE
    m2.seek(3 * PAGE)
    assert m2.read(5) == b"grown"
    # With another holder, Windows keeps the named section as it is: the
    # creator's own view grows, later openers still see the old size.
    m1.resize(8 * PAGE)
    assert m1.size() == 8 * PAGE and path.stat().st_size == 8 * PAGE
    m3 = mmapfile.mmapfile(None, block_name, 0)
    assert m3.size() == 4 * PAGE
    m3.close()
    m2.close()
    m1.close()
    assert path.read_bytes()[3 * PAGE : 3 * PAGE + 5] == b"grown"


# --- lifetime -------------------------------------------------------------------


def test_the_name_ends_with_the_last_holder_and_the_file_keeps_its_bytes(path, block_name):
    m1 = mmapfile.mmapfile(str(path), block_name, 2 * PAGE)
    m2 = mmapfile.mmapfile(None, block_name, 0)
    m2.write(b"survives the name")
    m1.close()
    m3 = mmapfile.mmapfile(None, block_name, 0)  # m2 still holds the name
    assert m3.read(17) == b"survives the name"
    m3.close()
    m2.close()
    if LINUX:
        assert not shm_path(block_name).exists()
    fresh = mmapfile.mmapfile(None, block_name, PAGE)
    assert fresh.created and fresh.filename is None and fresh.read(17) == bytes(17)
    fresh.close()
    data = path.read_bytes()
    assert len(data) == 2 * PAGE and data.startswith(b"survives the name")


@linux_only
def test_a_holder_killed_by_sigkill_frees_the_name(path, block_name):
    proc = start_python(
        """
        import sys, mmapfile
        m = mmapfile.mmapfile(sys.argv[1], sys.argv[2], 2 * mmapfile.PAGESIZE)
        m.write(b"written before death")
        print("ready", flush=True)
        sys.stdin.readline()
        """,
        str(path),
        block_name,
    )
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert mmapfile._mmapfile._block_info(block_name)["holders"] == (0 if HOLDERS_COUNTED else None)
    m = mmapfile.mmapfile(None, block_name, PAGE)
    assert m.created and m.filename is None, "the dead holder's name was reused"
    m.close()
    assert path.read_bytes().startswith(b"written before death")
    assert not shm_path(block_name).exists()


@linux_only
def test_racing_creators_agree_on_one_mapping(tmp_path):
    name = new_block_name()
    racers = 6
    code = """
        import os, sys, mmapfile
        path, name, go = sys.argv[1:]
        while not os.path.exists(go):
            pass
        m = mmapfile.mmapfile(path, name, 2 * mmapfile.PAGESIZE)
        if m.created:
            m.write(path.encode())
        print("ready", m.created, flush=True)
        sys.stdin.readline()
        m.seek(0)
        print(m.read(200).rstrip(b"\\0").decode(), flush=True)
        m.close()
    """
    go = tmp_path / "go"
    procs = [start_python(code, str(tmp_path / f"f{i}"), name, str(go)) for i in range(racers)]
    go.touch()
    created = []
    for i, proc in enumerate(procs):
        line = proc.stdout.readline().split()
        assert line[0] == "ready", proc.stderr.read()
        if line[1] == "True":
            created.append(i)
    assert len(created) == 1, created
    winner = str(tmp_path / f"f{created[0]}")
    for proc in procs:
        out, err = proc.communicate("go\n", timeout=60)
        assert out.strip() == winner, err
    files = sorted(p.name for p in tmp_path.iterdir() if p.name != "go")
    assert files == [f"f{created[0]}"], "losers left the files they created"
    assert not shm_path(name).exists()


@linux_only
def test_a_replaced_or_removed_file_is_refused(tmp_path, block_name):
    path = tmp_path / "data.bin"
    m1 = mmapfile.mmapfile(str(path), block_name, PAGE)
    m1.write(b"original")
    impostor = tmp_path / "impostor.bin"
    impostor.write_bytes(b"impostor" * 1000)
    os.replace(impostor, path)
    with pytest.raises(mmapfile.error) as exc:
        mmapfile.mmapfile(None, block_name, 0)
    assert exc.value.errno == errno.ESTALE and "replaced" in str(exc.value)
    assert exc.value.winerror == 1006
    os.remove(path)
    with pytest.raises(mmapfile.error) as exc:
        mmapfile.mmapfile(None, block_name, 0)
    assert exc.value.errno == errno.ENOENT and "removed" in str(exc.value)
    m1.seek(0)
    assert m1.read(8) == b"original", "the creator keeps its own view"
    m1.close()
    assert not shm_path(block_name).exists()


OPEN_AS_NOBODY = """
    import sys, mmapfile
    access = {"write": mmapfile.ACCESS_WRITE, "read": mmapfile.ACCESS_READ}[sys.argv[3]]
    try:
        m = mmapfile.mmapfile(
            None, sys.argv[1], 0, allow_other_owner=sys.argv[2] == "allow", access=access
        )
    except mmapfile.error as e:
        print("refused", e.errno, e.funcname)
    else:
        print("opened", m.read(5).decode())
        m.close()
"""


@linux_only
@pytest.mark.skipif(not IS_ROOT, reason="needs root to run a child as nobody")
def test_another_users_name_and_file_are_checked():
    # A directory that nobody can reach (pytest's tmp_path is private to root).
    top = tempfile.mkdtemp(prefix="mmapfile-nobody-")
    try:
        os.chmod(top, 0o755)
        name = new_block_name()
        readable = os.path.join(top, "readable.bin")
        m1 = mmapfile.mmapfile(readable, name, PAGE, mode=0o666)
        os.chmod(readable, 0o644)
        m1.write(b"hello")

        def as_nobody(*args: str) -> list[str]:
            return run(OPEN_AS_NOBODY, *args, as_other_user=True).split()

        # The owner check refuses another user's name first...
        assert as_nobody(name, "deny", "read") == ["refused", str(errno.EACCES), OPEN_BLOCK_FUNC]
        # ...and with it allowed, the file is opened with nobody's own rights:
        # readable, but not writable.
        assert as_nobody(name, "allow", "write") == ["refused", str(errno.EACCES), "open"]
        assert as_nobody(name, "allow", "read") == ["opened", "hello"]
        m1.close()
        private = new_block_name()
        secret = os.path.join(top, "secret.bin")
        m2 = mmapfile.mmapfile(secret, private, PAGE, mode=0o666)
        os.chmod(secret, 0o600)
        assert as_nobody(private, "allow", "read") == ["refused", str(errno.EACCES), "open"], (
            "a name handed out a file its opener may not read"
        )
        m2.close()
    finally:
        for entry in os.listdir(top):
            os.remove(os.path.join(top, entry))
        os.rmdir(top)


@linux_only
def test_no_leftovers_after_many_cycles(tmp_path):
    name = new_block_name()
    path = tmp_path / "cycled.bin"
    for i in range(1000):
        a = mmapfile.mmapfile(str(path), name, PAGE)
        b = mmapfile.mmapfile(None, name, 0)
        assert a.created and not b.created
        b[0:4] = i.to_bytes(4, "little")
        a.close()
        b.close()
    assert not shm_path(name).exists()
    assert path.read_bytes()[:4] == (999).to_bytes(4, "little")
    assert [e for e in os.listdir("/dev/shm") if name in e] == []


# --- errors pywin32 handlers can read ---------------------------------------------


def test_errors_carry_winerror_and_funcname(tmp_path, block_name):
    with pytest.raises(mmapfile.error) as exc:
        mmapfile.mmapfile(None, block_name, 0)
    assert exc.value.winerror == 2
    assert exc.value.funcname == OPEN_BLOCK_FUNC
    with pytest.raises(mmapfile.error) as exc:
        mmapfile.mmapfile(str(tmp_path / "no" / "such" / "dir"), None, PAGE)
    assert exc.value.funcname == ("CreateFile" if WINDOWS else "open")
    assert exc.value.winerror == (3 if WINDOWS else 2)
    assert isinstance(exc.value, OSError) and exc.value.errno == errno.ENOENT


@pytest.mark.skipif(WINDOWS, reason="POSIX errno translation")
@pytest.mark.parametrize(
    ("code", "winerror"),
    [
        (errno.ENOENT, 2),
        (errno.EACCES, 5),
        (errno.EEXIST, 183),
        (errno.ENOSPC, 112),
        (errno.ENOMEM, 8),
        (errno.EINVAL, 87),
        (errno.EBADF, 6),
        (errno.ENAMETOOLONG, 206),
    ],
)
def test_posix_errno_maps_to_the_windows_code(code, winerror):
    assert mmapfile._mmapfile._winerror_of(code) == winerror


def test_a_directory_as_file_is_an_os_error(tmp_path, block_name):
    with pytest.raises(mmapfile.error) as exc:
        mmapfile.mmapfile(str(tmp_path), block_name, PAGE)
    assert exc.value.winerror == 5
    assert not (LINUX and shm_path(block_name).exists())


def test_names_of_file_mappings_are_listed(path, block_name):
    if WINDOWS:
        pytest.skip("Windows cannot list named mappings")
    m = mmapfile.mmapfile(str(path), block_name, 3 * PAGE)
    out = subprocess.run(
        [sys.executable, "-m", "mmapfile", "info", block_name, "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    info = json.loads(out)
    assert (info["kind"], info["file"], info["size"], info["holders"]) == (
        "file",
        str(path),
        3 * PAGE,
        1 if HOLDERS_COUNTED else None,
    )
    dumped = subprocess.run(
        [sys.executable, "-m", "mmapfile", "dump", block_name, "--length", "4"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "00 00 00 00" in dumped
    m.close()
