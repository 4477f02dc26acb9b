"""The attacks of the threat model (docs/security.md), one test each, made
by another local user (``nobody``, see _other_user.py) against a victim
(root, the test process or a child of it). Every test runs natively and
against the portable backend of macOS and the BSDs (``make test-portable``);
the table in docs/security.md names them.

Each test first checks that the attacker could do its part (plant a file,
forge a record, hold a lock), so that a refusal by the victim is the
defence at work, not an attack that never happened."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import mmapfile
import pytest
from _other_user import as_nobody
from conftest import (
    IS_ROOT,
    PORTABLE,
    SIMULATED,
    STATE_DIR,
    object_path,
    segment_id,
    shm_path,
)

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX users (Wine has one user)"),
    pytest.mark.skipif(not IS_ROOT, reason="needs root to run a child as nobody"),
]

# An attacker's helper, run as nobody: does `code`, prints "ready", then
# keeps what it holds until its stdin closes.
_ATTACK_START = "import fcntl, os, sys\n"
_ATTACK_HOLD = '\nprint("ready", flush=True)\nsys.stdin.read()\n'


def _attacker(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(
        as_nobody(_ATTACK_START + code + _ATTACK_HOLD, *args, preload=("fcntl", "mmapfile")),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the attacker could not do its part: {line!r} {err}")
    return proc


def _done(proc: subprocess.Popen) -> None:
    proc.communicate(input="", timeout=30)


def _as_nobody(code: str, *args: str) -> str:
    """Runs `code` as nobody to the end; returns what it printed."""
    done = subprocess.run(
        as_nobody(code, *args, preload=("os",)), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _victim(code: str, *args: str, env: dict[str, str]) -> str:
    """Runs `code` as root in a fresh process (whose state directory comes
    from `env`); returns what it printed."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(autouse=True, scope="module")
def _state_directory_is_roots():
    """The portable backend's state directory, made by root before any
    child of nobody's could make it (and be refused by root ever after)."""
    if PORTABLE:
        mmapfile.mmapfile(None, "pytest-security-setup", 4096).close()


@pytest.fixture
def shared_top():
    """A directory like /var/tmp (root's, sticky, open to all) for a state
    directory of the test's own."""
    top = Path(tempfile.mkdtemp(prefix="mmapfile-sec-"))
    os.chmod(top, 0o1777)
    yield top
    shutil.rmtree(top, ignore_errors=True)


# --- the state directory (portable backend) ---------------------------------

VICTIM_CREATES = """
import sys, mmapfile
try:
    m = mmapfile.mmapfile(None, "victim-block", 4096)
except mmapfile.error as exc:
    print("refused", exc.errno, exc.funcname, exc.strerror)
else:
    m.write(b"secret")
    print("created" if m.created else "opened", m.read(0))
    m.close()
"""

_needs_own_state_dir = pytest.mark.skipif(
    not SIMULATED,
    reason="the state directory can only be moved in the simulated build; "
    "a real macOS run would have to give /var/tmp/mmapfile away",
)


@_needs_own_state_dir
def test_a_state_directory_made_first_by_another_user_is_refused(shared_top):
    # The attack of issue 25: nobody makes the directory (sticky, open to
    # all) before anyone else; as its owner, nobody could then remove the
    # records of root's live blocks, and root's next open of the name would
    # silently make a second block.
    state = shared_top / "mmapfile"
    _as_nobody("import os, sys\nos.mkdir(sys.argv[1])\nos.chmod(sys.argv[1], 0o1777)\n", str(state))
    assert state.stat().st_uid != 0
    env = {"MMAPFILE_SIMULATED_STATE_DIR": str(state)}
    out = _victim(VICTIM_CREATES, env=env)
    assert out.startswith(f"refused {errno.EACCES} lstat"), out
    assert "belongs to user" in out and "sudo" in out, "the error says what to do"
    # Nothing of root's is in it for nobody to remove; a second try is
    # refused the same way (never a fresh block).
    assert os.listdir(state) == []
    assert _victim(VICTIM_CREATES, env=env).startswith(f"refused {errno.EACCES}")


@_needs_own_state_dir
@pytest.mark.parametrize("planted", ["world-writable, not sticky", "symbolic link"])
def test_a_state_directory_others_could_change_is_refused(shared_top, planted):
    state = shared_top / "mmapfile"
    if planted == "symbolic link":
        # nobody's link to a directory of nobody's.
        _as_nobody(
            "import os, sys\nos.mkdir(sys.argv[2], 0o777)\nos.symlink(sys.argv[2], sys.argv[1])\n",
            str(state),
            str(shared_top / "elsewhere"),
        )
        assert state.is_symlink()
    else:
        state.mkdir()
        os.chmod(state, 0o777)
    out = _victim(VICTIM_CREATES, env={"MMAPFILE_SIMULATED_STATE_DIR": str(state)})
    assert out.startswith(f"refused {errno.EACCES} lstat"), out


# --- names: removal, replacement, squatting, links ---------------------------

REMOVE_AND_REPLACE = """
import os, sys
for path in sys.argv[1:]:
    try:
        os.remove(path)
    except PermissionError:
        print("remove-refused")
    else:
        print("removed")
    mine = path + ".nobody"
    with open(mine, "w") as f:
        f.write("forged")
    try:
        os.rename(mine, path)
    except PermissionError:
        print("replace-refused")
        os.remove(mine)
    else:
        print("replaced")
"""


def test_another_user_cannot_remove_or_replace_a_held_name(block_name):
    m = mmapfile.mmapfile(None, block_name, 4096)
    m.write(b"secret")
    paths = [str(shm_path(block_name))]
    if SIMULATED:
        paths.append(str(object_path(block_name)))
    out = _as_nobody(REMOVE_AND_REPLACE, *paths).split()
    assert out == ["remove-refused", "replace-refused"] * len(paths)
    again = mmapfile.mmapfile(None, block_name, 4096)
    assert not again.created and again.read(6) == b"secret", "one name, one block"
    again.close()
    m.close()


SQUAT = """
import mmapfile, sys
m = mmapfile.mmapfile(None, sys.argv[1], 4096, mode=0o666)
m.write(b"planted")
"""


def test_a_name_planted_by_another_user_is_refused(block_name):
    squatter = _attacker(SQUAT, block_name)
    try:
        with pytest.raises(mmapfile.error) as exc:
            mmapfile.mmapfile(None, block_name, 4096)
        assert exc.value.errno == errno.EACCES
    finally:
        _done(squatter)


PLANT_SYMLINK = """
os.symlink(sys.argv[2], sys.argv[1])
"""


def test_a_symbolic_link_planted_at_a_name_is_not_followed(block_name, tmp_path):
    # A file of root's that the link leads to: never opened through it.
    target = tmp_path / "root-only.bin"
    target.write_bytes(b"root's own bytes".ljust(4096, b"\0"))
    link = shm_path(block_name)
    attacker = _attacker(PLANT_SYMLINK, str(link), str(target))
    try:
        assert link.is_symlink()
        with pytest.raises(mmapfile.error) as exc:
            mmapfile.mmapfile(None, block_name, 4096)
        assert exc.value.errno == errno.ELOOP
        assert target.read_bytes().startswith(b"root's own bytes")
    finally:
        _done(attacker)
        link.unlink()


VICTIM_MEETS_A_FIFO = """
import sys, mmapfile
name = sys.argv[1]
# (The open last: a victim as root, finding the FIFO nobody's dead block,
# removes it.)
calls = {
    "info": lambda: mmapfile._mmapfile._block_info(name),
    "ls": mmapfile._mmapfile._list_blocks,
    "gc": mmapfile._mmapfile._collect_garbage,
    "open": lambda: mmapfile.mmapfile(
        None, name, 0, access=mmapfile.ACCESS_READ, allow_other_owner=True
    ),
}
for what, call in calls.items():
    try:
        call()
    except (mmapfile.error, ValueError) as exc:
        print(what, "refused", flush=True)
    else:
        print(what, "done", flush=True)
"""


def test_a_fifo_planted_at_a_name_never_makes_the_victim_wait(block_name):
    # Opening a FIFO to read waits for a writer, for ever: every open of a
    # name, and ls and gc, which open every file of the state directory
    # (portable), would hang on nobody's FIFO.
    fifo = shm_path(block_name)
    attacker = _attacker("os.mkfifo(sys.argv[1], 0o644)\n", str(fifo))
    try:
        victim = subprocess.run(
            [sys.executable, "-c", VICTIM_MEETS_A_FIFO, block_name],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert victim.returncode == 0, victim.stderr
        results = dict(line.split() for line in victim.stdout.splitlines())
        # Each came back (a FIFO has no record to list, no block to map).
        assert set(results) == {"open", "info", "ls", "gc"}
        assert results["open"] == "refused"
    finally:
        _done(attacker)
        fifo.unlink(missing_ok=True)  # root, as a victim, may remove it


HARD_LINK = """
import os, sys
try:
    os.link(sys.argv[1], sys.argv[2])
except PermissionError:
    print("refused")
else:
    print("linked")
"""


def test_a_hard_link_to_another_name_is_refused(block_name):
    m = mmapfile.mmapfile(None, block_name, 4096)
    m.write(b"secret")
    other = block_name + "-link"
    source, link = shm_path(block_name), shm_path(other)
    # Linux's fs.protected_hardlinks refuses nobody a link to root's
    # private file; macOS and the BSDs have no such protection, and a user
    # granted write access may link on Linux too. So where the kernel
    # refuses nobody, root makes the link nobody could make there.
    if _as_nobody(HARD_LINK, str(source), str(link)).strip() == "refused":
        os.link(source, link)
    try:
        with pytest.raises(mmapfile.error) as exc:
            mmapfile.mmapfile(None, other, 4096)
        assert exc.value.errno == errno.EACCES and "hard link" in str(exc.value)
    finally:
        link.unlink()
    again = mmapfile.mmapfile(None, block_name, 4096)
    assert again.read(6) == b"secret"
    again.close()
    m.close()


REACH_UNNAMED = """
import os, sys
try:
    fds = os.listdir(f"/proc/{sys.argv[1]}/fd")
except PermissionError:
    print("refused")
else:
    print("listed", len(fds))
"""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reached through /proc")
def test_another_user_cannot_reach_an_unnamed_block():
    # An unnamed block (a memfd, or an object unlinked as soon as it is
    # made) has no name: the only way in is the holder's descriptors.
    m = mmapfile.mmapfile(None, None, 4096)
    m.write(b"secret")
    assert _as_nobody(REACH_UNNAMED, str(os.getpid())).split() == ["refused"]
    m.close()


# --- forged records ----------------------------------------------------------

# nobody's forged record of a named file mapping, held (so that it is live):
# on Linux the name's object, marked as a record by the sticky bit and held
# by a lock on byte 0; on the portable backend a record file, held by flock.
FORGE_FILE_RECORD = """
target, path, portable = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
st = os.stat(target)
record = (
    f"mmapfile file mapping 1\\nsize 4096\\ndev {st.st_dev}\\nino {st.st_ino}"
    f"\\nborn -\\npath {target}"
)
if portable:
    name = sys.argv[4].encode().hex()
    record = f"mmapfile name 1\\nname {name}\\nmode 644\\n" + record
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
os.write(fd, record.encode())
if portable:
    fcntl.flock(fd, fcntl.LOCK_SH)
else:
    os.fchmod(fd, 0o1644)
    fcntl.lockf(fd, fcntl.LOCK_SH, 1, 0)
"""


def test_a_forged_record_cannot_lead_to_the_victims_own_file(block_name, tmp_path):
    # root's own file, which nobody can see (stat) but not read or write.
    top = Path(tempfile.mkdtemp(prefix="mmapfile-sec-"))
    os.chmod(top, 0o755)
    target = top / "root-only.bin"
    target.write_bytes(b"root's own bytes".ljust(4096, b"\0"))
    os.chmod(target, 0o600)
    path = shm_path(block_name)
    forger = _attacker(
        FORGE_FILE_RECORD, str(target), str(path), "1" if PORTABLE else "0", block_name
    )
    try:
        # Without the owner check, root would map (and write) its own file
        # through nobody's name, believing it shares memory with nobody.
        with pytest.raises(mmapfile.error) as exc:
            mmapfile.mmapfile(None, block_name, 0, allow_other_owner=True)
        assert exc.value.errno == errno.EACCES and "leads to a file" in str(exc.value)
        assert target.read_bytes().startswith(b"root's own bytes")
    finally:
        _done(forger)
        path.unlink()
        shutil.rmtree(top)


FORGE_BLOCK_RECORD = """
path, name, obj, hold = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
record = f"mmapfile name 1\\nname {name.encode().hex()}\\nmode 644\\nblock {obj}\\nsize 4096\\n"
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
os.write(fd, record.encode())
if hold:
    fcntl.flock(fd, fcntl.LOCK_SH)
"""


@pytest.mark.skipif(not PORTABLE, reason="a Linux name is its object: it cannot point elsewhere")
@pytest.mark.parametrize("held", [True, False], ids=["live", "dead"])
def test_a_forged_record_cannot_lead_to_the_victims_own_block(block_name, held):
    # nobody learnt the object of root's block (its draft's name shows it)
    # and forges a record of another name that leads to it. Live, root
    # would share its secret block with nobody; dead, root would remove
    # its own block's object while cleaning up nobody's record.
    secret = mmapfile.mmapfile(None, block_name, 4096)
    secret.write(b"secret")
    obj = mmapfile._mmapfile._block_info(block_name)["shm_name"]
    lure = block_name + "-lure"
    path = shm_path(lure)
    forger = _attacker(FORGE_BLOCK_RECORD, str(path), lure, obj, "1" if held else "0")
    try:
        with pytest.raises(mmapfile.error) as exc:
            mmapfile.mmapfile(None, lure, 0, allow_other_owner=True)
        if held:
            assert exc.value.errno == errno.EACCES and "another user" in str(exc.value)
        else:
            assert exc.value.errno == errno.ENOENT
        if SIMULATED:
            assert object_path(block_name).exists(), "root's own object was removed"
        again = mmapfile.mmapfile(None, block_name, 4096)
        assert not again.created and again.read(6) == b"secret"
        again.close()
    finally:
        _done(forger)
        path.unlink()
        secret.close()


@pytest.mark.skipif(not PORTABLE, reason="a Linux name is its object: it cannot point elsewhere")
def test_a_forged_record_cannot_lead_outside_the_state_directory(block_name):
    # An object name that climbs out: its lock file would be made, and
    # removed, wherever the attacker chose.
    lure = shm_path(block_name)
    forger = _attacker(
        FORGE_BLOCK_RECORD, str(lure), block_name, "/mmapfile=/../../../../tmp/x", "1"
    )
    try:
        with pytest.raises(mmapfile.error) as exc:
            mmapfile.mmapfile(None, block_name, 0, allow_other_owner=True)
        assert "damaged" in str(exc.value)
    finally:
        _done(forger)
        lure.unlink()


# --- the mapping lock (portable backend) --------------------------------------

PLANT_LOCK_FILE = """
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
"""


@pytest.mark.skipif(not PORTABLE, reason="Linux locks a byte of the block's own object")
def test_a_lock_file_planted_by_another_user_is_refused(block_name):
    m = mmapfile.mmapfile(None, block_name, 4096)
    obj = mmapfile._mmapfile._block_info(block_name)["shm_name"]
    lock_file = STATE_DIR / (".lock-" + obj.removeprefix("/mmapfile="))
    planter = _attacker(PLANT_LOCK_FILE, str(lock_file))
    try:
        # Using it, root's lock would be nobody's to hold or withhold.
        with pytest.raises(mmapfile.error) as exc:
            m.lock(timeout=0).acquire(0)
        assert exc.value.errno == errno.EACCES and "lock file" in str(exc.value)
    finally:
        _done(planter)
        lock_file.unlink()
        m.close()


# --- the mapping lock (Linux) -------------------------------------------------

linux_lock = pytest.mark.skipif(
    PORTABLE or not sys.platform.startswith("linux"), reason="the Linux futex lock"
)

PLANT_COMPANION = """
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
os.fchmod(fd, 0o666)
os.ftruncate(fd, 4096)
"""


@linux_lock
def test_a_lock_companion_planted_by_another_user_is_refused(tmp_path):
    # A file's lock word is in a companion object named after the file's
    # device and inode; one made first by another user would make root's lock
    # nobody's to hold or withhold (or to write).
    path = tmp_path / "f.bin"
    m = mmapfile.mmapfile(str(path), None, 4096)
    st = os.stat(path)
    companion = Path(f"/dev/shm/mmapfile-lock.{st.st_dev:x}.{st.st_ino:x}")
    planter = _attacker(PLANT_COMPANION, str(companion))
    try:
        with pytest.raises(mmapfile.error) as exc:
            m.lock().acquire(0)
        assert exc.value.errno == errno.EACCES, exc.value
    finally:
        _done(planter)
        companion.unlink()
        m.close()


READER_TAKES_THE_LOCK = """
import errno, sys, mmapfile
m = mmapfile.mmapfile(None, sys.argv[1], 0, access=mmapfile.ACCESS_READ, allow_other_owner=True)
try:
    m.lock().acquire(0)
except mmapfile.error as e:
    print("refused", e.errno, flush=True)
else:
    print("taken", flush=True)
"""


@linux_lock
def test_a_reader_of_a_segment_block_cannot_take_or_write_its_lock(block_name):
    # The word is in the segment's trailer page and the slots are write
    # locks on the record: both need the write permission the block's mode
    # withholds from a reader.
    m = mmapfile.mmapfile(None, block_name, 4096, mode=0o644)
    assert segment_id(block_name) is not None, "kept in a segment"
    done = subprocess.run(
        as_nobody(READER_TAKES_THE_LOCK, block_name, preload=("mmapfile", "errno")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.split() == ["refused", str(errno.EACCES)], (done.stdout, done.stderr)
    lock = m.lock()
    assert lock.acquire(0) is True and lock.abandoned is False
    lock.release()
    m.close()


# Root's holder: takes the lock of the block argv[1], says so, waits to die.
HOLD_THE_LOCK = """
import sys, mmapfile
m = mmapfile.mmapfile(None, sys.argv[1], 0)
lock = m.lock()
assert lock.acquire(30)
print("ready", flush=True)
sys.stdin.read()
"""

# A reader (nobody) waits for read locks on the record bytes of the first 63
# slots: the kernel grants them the moment the holder's slot lock goes.
READ_LOCK_THE_SLOTS = """
import fcntl, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
print("waiting", flush=True)
F_OFD_SETLKW = 38
fcntl.fcntl(fd, F_OFD_SETLKW, struct.pack("hhqqi4x", fcntl.F_RDLCK, 0, 16, 64, 0))
print("ready", flush=True)
sys.stdin.read()
"""


@linux_lock
def test_a_reader_cannot_make_a_dead_lock_holder_pass_for_alive(block_name):
    m = mmapfile.mmapfile(None, block_name, 4096, mode=0o644)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, block_name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    reader = subprocess.Popen(
        as_nobody(READ_LOCK_THE_SLOTS, str(shm_path(block_name)), preload=("fcntl", "struct")),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        assert reader.stdout.readline().strip() == "waiting", reader.stderr.read()
        holder.kill()
        holder.wait(30)
        assert reader.stdout.readline().strip() == "ready", reader.stderr.read()
        # The holder's slot byte now carries the reader's read lock, not a
        # user's write lock: the holder is dead, and the lock is taken over.
        lock = m.lock()
        assert lock.acquire(5) is True
        assert lock.abandoned is True
        lock.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(30)
        reader.communicate(input="", timeout=30)
        m.close()
