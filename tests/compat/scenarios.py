"""Scenarios run against pywin32's ``mmapfile`` and against ours; every step's
outcome is recorded as JSON, and ``test_compat.py`` compares the records.

    python scenarios.py ours|pywin32 OUT.json

Both modules are called ``mmapfile``: ``ours`` is the installed package,
``pywin32`` is loaded from pywin32's ``win32/mmapfile.pyd`` by path, so one
Windows Python holds both. Sizes are whole pages (4096) unless a step is
about sizes, so that pywin32's page-rounded ``size()`` does not hide the
behaviour a step is about.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

PAGE = 4096


_LOADED: dict = {}


def load(impl: str):
    """The implementation's module, loaded once per process (loading
    pywin32's extension module by path also takes the name ``mmapfile`` in
    ``sys.modules``, so ours must be imported first and kept)."""
    if impl not in _LOADED:
        _LOADED[impl] = _load(impl)
    return _LOADED[impl]


def _load(impl: str):
    if impl == "ours":
        import mmapfile

        assert mmapfile.__file__.endswith("__init__.py"), mmapfile.__file__
        return mmapfile
    if impl == "pywin32":
        import importlib.machinery
        import importlib.util

        import win32api  # noqa: F401  (puts pywin32's DLLs on the search path)

        path = os.path.join(os.path.dirname(win32api.__file__), "mmapfile.pyd")
        loader = importlib.machinery.ExtensionFileLoader("mmapfile", path)
        spec = importlib.util.spec_from_file_location("mmapfile", path, loader=loader)
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        return module
    raise SystemExit(f"unknown implementation {impl!r}")


def outcome(fn):
    """``["ok", value]`` or ``["raised", kind, message, winerror, funcname]``.

    pywin32 raises ``pywintypes.error`` and we raise ``mmapfile.error``: both
    are recorded as kind ``"error"`` with the Windows error code and the
    function name, which must be the same on both sides (pywin32's names,
    without a ``W`` suffix). Messages of OS errors are the system's text, so
    they are not compared.
    """
    try:
        value = fn()
    except Exception as e:  # noqa: BLE001 - every exception is a result here
        if type(e).__name__ == "error":
            func = getattr(e, "funcname", None) or ""
            return ["raised", "error", None, getattr(e, "winerror", None), func]
        return ["raised", type(e).__name__, str(e), None, None]
    return ["ok", plain(value)]


def plain(value):
    """``value`` as JSON can hold it: bytes as hex, tuples as lists, other
    objects (e.g. a map returned by a lambda) by type name."""
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return {"type": type(value).__name__}


class Recorder:
    def __init__(self, mod, tag):
        self.mod = mod
        self.tag = tag
        self.steps: list = []
        self.count = 0

    def name(self):
        self.count += 1
        return f"Local\\compat-{os.getpid()}-{self.tag}-{self.count}"

    def step(self, label, fn):
        self.steps.append([label, outcome(fn)])


def position(r: Recorder):
    m = r.mod.mmapfile(None, r.name(), PAGE)
    r.step("size", m.size)
    r.step("tell at start", m.tell)
    r.step("write abc", lambda: m.write(b"abc"))
    r.step("tell after write", m.tell)
    r.step("seek(0)", lambda: m.seek(0))
    r.step("read(2)", lambda: m.read(2))
    r.step("read_byte", m.read_byte)
    r.step("read(-1) length from 3", lambda: len(m.read(-1)))
    r.step("to the end", lambda: (m.seek(PAGE - 1), m.read_byte(), m.tell())[1:])
    r.step("tell at end", m.tell)
    r.step("read(5) at end", lambda: m.read(5))
    r.step("read_byte at end", m.read_byte)
    r.step("write at end", lambda: m.write(b"x"))
    r.step("write_byte at end", lambda: m.write_byte(b"x"))
    r.step("seek(1, 2)", lambda: m.seek(1, 2))
    r.step("tell after seek(1, 2)", m.tell)
    r.step("seek(PAGE + 1)", lambda: m.seek(PAGE + 1))
    r.step("seek(-1)", lambda: m.seek(-1))
    r.step("seek(0, 3)", lambda: m.seek(0, 3))
    r.step("seek(PAGE - 2) write 4 bytes", lambda: (m.seek(PAGE - 2), m.write(b"abcd")))
    r.step("tell after refused write", m.tell)
    r.step("write exactly to the end", lambda: (m.seek(PAGE - 2), m.write(b"ab"), m.tell()))
    r.step("read clamped", lambda: (m.seek(PAGE - 3), m.read(10), m.tell()))
    r.step("read() without argument", lambda: (m.seek(PAGE - 1), m.read())[1])
    r.step("write(str)", lambda: m.write("text"))
    r.step("write_byte(bytes)", lambda: (m.seek(0), m.write_byte(b"Z"), m.tell()))
    m.close()


def find(r: Recorder):
    m = r.mod.mmapfile(None, r.name(), PAGE)
    m.write(b"..........x...")
    for pos, args in [(0, ()), (0, (5,)), (0, (20,)), (4, ()), (4, (0,)), (12, (5,)), (0, (0,))]:
        r.step(
            f"seek({pos}); find(b'x', *{args})",
            lambda pos=pos, args=args: (m.seek(pos), m.find(b"x", *args))[1],
        )
    r.step("tell after find", m.tell)
    r.step("find(b'')", lambda: (m.seek(0), m.find(b""))[1])
    r.step("find(str)", lambda: m.find("x"))
    m.close()


def readline_and_move(r: Recorder):
    m = r.mod.mmapfile(None, r.name(), PAGE)
    m.write(b"ab\ncd\n")
    m.seek(0)
    r.step("readline", m.readline)
    r.step("tell after readline", m.tell)
    r.step("readline again", m.readline)
    r.step(
        "last byte newline",
        lambda: (m.seek(PAGE - 1), m.write(b"\n"), m.seek(PAGE - 1), m.readline(), m.tell())[3:],
    )
    r.step("move(10, 0, 5)", lambda: m.move(10, 0, 5))
    r.step("moved bytes", lambda: (m.seek(10), m.read(5))[1])
    r.step("move past the end", lambda: m.move(PAGE - 1, 0, 2))
    m.close()


def flush_resize_close(r: Recorder):
    name = r.name()
    m = r.mod.mmapfile(None, name, PAGE)
    r.step("flush()", m.flush)
    r.step("flush(0, 10)", lambda: m.flush(0, 10))
    r.step("flush past the end", lambda: m.flush(0, PAGE + 1))
    other = r.mod.mmapfile(None, name, PAGE)
    m.write(b"kept")
    r.step("resize view to 1024", lambda: m.resize(0, 0, 1024))
    r.step("size after view resize", m.size)
    r.step("data after view resize", lambda: (m.seek(0), m.read(4))[1])
    r.step("resize(MaximumSize=PAGE)", lambda: m.resize(MaximumSize=PAGE))
    r.step("size after resize(PAGE)", m.size)
    r.step("resize()", lambda: m.resize())
    other.close()
    r.step("close", m.close)
    r.step("close again", m.close)
    for method, args in [
        ("size", ()),
        ("tell", ()),
        ("read", (1,)),
        ("write", (b"x",)),
        ("seek", (0,)),
        ("flush", ()),
        ("find", (b"x",)),
        ("read_byte", ()),
        ("readline", ()),
        ("resize", (PAGE,)),
    ]:
        r.step(f"{method} after close", lambda method=method, args=args: getattr(m, method)(*args))


def construction(r: Recorder):
    mod = r.mod
    r.step("unnamed size", lambda: mod.mmapfile(None, None, PAGE).size())
    r.step("empty name", lambda: mod.mmapfile(None, "", PAGE).size())
    r.step("name is an int", lambda: mod.mmapfile(None, 123, 64))
    r.step("no arguments", lambda: mod.mmapfile())
    r.step(
        "keywords",
        lambda: mod.mmapfile(
            File=None, Name=r.name(), MaximumSize=PAGE, FileOffset=0, NumberOfBytesToMap=32
        ).size(),
    )
    r.step("lowercase keyword", lambda: mod.mmapfile(None, r.name(), maximumsize=PAGE))
    r.step("unknown keyword", lambda: mod.mmapfile(None, r.name(), PAGE, Bogus=1))
    r.step("size 2**64", lambda: mod.mmapfile(None, r.name(), 2**64))
    r.step("missing block without size", lambda: mod.mmapfile(None, r.name()))
    r.step(
        "existing block without size",
        lambda: (lambda n: (mod.mmapfile(None, n, PAGE), mod.mmapfile(None, n).size())[1])(
            r.name()
        ),
    )
    r.step(
        "existing block keeps its size",
        lambda: (
            lambda n: (mod.mmapfile(None, n, PAGE), mod.mmapfile(None, n, 3 * PAGE).size())[1]
        )(r.name()),
    )
    r.step("error is OSError", lambda: issubclass(mod.error, OSError))


def files(r: Recorder):
    mod = r.mod
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "f.bin")
        with open(path, "wb") as f:
            f.write(bytes(range(256)) * 512)  # 128 KiB
        m = mod.mmapfile(path, None, 0)
        r.step("file size", m.size)
        r.step("file bytes", lambda: (m.seek(300), m.read(4))[1])
        m.close()
        g = 65536
        m = mod.mmapfile(path, None, 0, g, 100)
        r.step("aligned offset size", m.size)
        r.step("aligned offset bytes", lambda: m.read(4))
        m.close()
        r.step("unaligned offset", lambda: mod.mmapfile(path, None, 0, 100, 10).read(3))
        small = os.path.join(d, "small.bin")
        with open(small, "wb") as f:
            f.write(b"x" * 100)
        r.step("100-byte file, MaximumSize 0", lambda: mod.mmapfile(small, None, 0).size())
        r.step("missing directory", lambda: mod.mmapfile(os.path.join(d, "no", "f"), None, 10))


def idioms(r: Recorder):
    """pywin32 code as it is written in the wild: ``''`` for "no file" or "no
    name", named file mappings opened by name, windows into them, the name's
    end, an existing name winning over ``File``, and errors' codes."""
    mod = r.mod
    gran = 65536  # Windows' allocation granularity
    # SSH-agent bridges to Pageant: File='' with a name, offset and view 0.
    name = r.name()
    agent = mod.mmapfile("", name, 8192, 0, 0)
    agent.write(b"agent request")
    r.step("'' with a name: size", agent.size)
    r.step("'' with a name: reopened", lambda: mod.mmapfile("", name, 8192).read(13))
    agent.close()
    r.step("'' and '' make an unnamed block", lambda: mod.mmapfile("", "", PAGE).size())
    r.step("None and '' make an unnamed block", lambda: mod.mmapfile(None, "", PAGE).size())
    r.step("'' and None make an unnamed block", lambda: mod.mmapfile("", None, PAGE).size())
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "named.bin")
        name = r.name()
        m1 = mod.mmapfile(File=path, Name=name, MaximumSize=2 * gran)
        m1.write(b"file bytes")
        r.step("file grown to MaximumSize", lambda: os.path.getsize(path))
        m2 = mod.mmapfile(Name=name, File=None, MaximumSize=4 * gran)
        r.step("opened by name: size is the mapping's", m2.size)
        r.step("opened by name: same bytes", lambda: m2.read(10))
        m2.seek(gran + 7)
        m2.write(b"through the name")
        r.step("written through the name", lambda: (m1.seek(gran + 7), m1.read(16))[1])
        window = mod.mmapfile(None, name, 1, FileOffset=gran, NumberOfBytesToMap=PAGE)
        r.step("window: size", window.size)
        r.step("window: bytes", lambda: (window.seek(7), window.read(16))[1])
        window.close()
        r.step(
            "window past the mapping",
            lambda: mod.mmapfile(None, name, 1, FileOffset=4 * gran, NumberOfBytesToMap=PAGE),
        )
        r.step("flush of the named file mapping", lambda: m1.flush())
        m2.close()
        m1.close()
        r.step("name after the last holder: a new block", lambda: new_block_bytes(mod, name))
        r.step("the file keeps its bytes", lambda: read_file(path)[:10])
        r.step("the file keeps its size", lambda: os.path.getsize(path))
        os.remove(path)

        # An existing name wins over File: a block's name with a file.
        name = r.name()
        block = mod.mmapfile(None, name, PAGE)
        block.write(b"the block")
        loser = os.path.join(d, "loser.bin")
        m = mod.mmapfile(loser, name, 2 * PAGE)
        r.step("existing block wins over File", lambda: m.read(9))
        r.step("the losing File was created", lambda: os.path.exists(loser))
        m.close()
        block.close()

        # The creator resizes (pywin32's demo), then the name still opens.
        path = os.path.join(d, "resized.bin")
        name = r.name()
        m1 = mod.mmapfile(path, name, 2 * PAGE)
        r.step("creator resize", lambda: m1.resize(4 * PAGE))
        r.step("creator size after resize", m1.size)
        r.step("file size after resize", lambda: os.path.getsize(path))
        r.step(
            "write past the old size",
            lambda: (m1.seek(3 * PAGE), m1.write(b"grown"), m1.flush())[2],
        )
        r.step("opened by name after the resize", lambda: opened_size(mod, name))
        m1.close()
        r.step("bytes after the resize", lambda: read_file(path)[3 * PAGE : 3 * PAGE + 5])

        # Errors a pywin32 handler looks at.
        r.step(
            "missing directory with a name",
            lambda: mod.mmapfile(os.path.join(d, "no", "f"), r.name(), PAGE),
        )
        r.step("a directory as File", lambda: mod.mmapfile(d, r.name(), PAGE))
        r.step("winerror is an attribute", lambda: error_fields(mod))


def new_block_bytes(mod, name):
    """Opens ``name`` with a size: a new, zero-filled pagefile block if the
    name is free."""
    m = mod.mmapfile(None, name, PAGE)
    try:
        return m.read(10)
    finally:
        m.close()


def opened_size(mod, name):
    m = mod.mmapfile(None, name, 1)
    try:
        return m.size()
    finally:
        m.close()


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def error_fields(mod):
    """The attributes a pywin32 handler reads, read as attributes."""
    try:
        mod.mmapfile(os.path.join(tempfile.gettempdir(), "no-such-dir", "f"), None, PAGE)
    except mod.error as e:
        return [e.winerror, e.funcname]
    return "no error"


SCENARIOS = [position, find, readline_and_move, flush_resize_close, construction, files, idioms]


def run_all(mod) -> dict:
    records = {}
    for scenario in SCENARIOS:
        r = Recorder(mod, scenario.__name__)
        try:
            scenario(r)
        except Exception as e:  # noqa: BLE001 - a scenario that stops early is recorded
            r.steps.append(["scenario stopped", ["raised", type(e).__name__, str(e), None, None]])
        records[scenario.__name__] = r.steps
    return records


def share(parent_impl: str, child_impl: str, file: bool = False) -> list:
    """The parent creates a named block (with ``file``, a named file mapping)
    and writes; a child process of the other implementation opens it by name
    alone, checks and answers; the parent reads the answer (with ``file``,
    also from the file on disk)."""
    mod = load(parent_impl)
    kind = "file" if file else "block"
    name = f"Local\\compat-share-{kind}-{os.getpid()}-{parent_impl}"
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "shared.bin") if file else None
        m = mod.mmapfile(path, name, 2 * PAGE if file else PAGE)
        m.write(f"from {parent_impl}".encode())
        child = subprocess.run(
            [sys.executable, __file__, "--child", child_impl, name],
            capture_output=True,
            text=True,
            timeout=120,
        )
        m.seek(64)
        answer = m.read(32).rstrip(b"\0").decode()
        m.close()
        result = [child.returncode, child.stdout.strip(), child.stderr.strip()[-500:], answer]
        if file:
            result.append(read_file(path)[64:96].rstrip(b"\0").decode())
    return result


def share_child(impl: str, name: str) -> None:
    mod = load(impl)
    m = mod.mmapfile(None, name, PAGE)
    print(m.read(32).rstrip(b"\0").decode())
    m.seek(64)
    m.write(f"answer from {impl}".encode())
    m.close()


def retry_client(server_impl: str) -> list:
    """A pywin32 client's retry loop (the pattern of MRLaserTag's frame
    channel): a child opens a named block by name alone and, while the other
    side has not made it yet, catches ``pywintypes.error`` and tries again;
    once the child has failed once, this process (``server_impl``) makes the
    block and writes a frame. The client is ours: pywin32's own open by name
    alone (size 0) fails with error 87 even once the block exists (fix 7).
    Returns the child's exit code, its first line, its report and the end of
    its stderr."""
    name = f"Local\\compat-retry-{os.getpid()}-{server_impl}"
    child = subprocess.Popen(
        [sys.executable, __file__, "--retry-client", "ours", name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = child.stdout.readline().strip()  # "waiting": it failed once
    server = load(server_impl).mmapfile(None, name, PAGE)
    server.write(b"frame 1")
    try:
        out, err = child.communicate(timeout=120)
    finally:
        server.close()
    report = json.loads(out) if out.strip() else None
    return [child.returncode, first, report, err.strip()[-500:]]


def error_shape(e) -> dict:
    """What a pywin32 handler can read from an error it caught."""
    import pywintypes

    return {
        "type": type(e).__name__,
        "is_pywintypes_error": isinstance(e, pywintypes.error),
        "is_oserror": isinstance(e, OSError),
        "args": plain(e.args),
        "winerror": e.winerror,
        "funcname": e.funcname,
        "strerror": e.strerror,
        "errno": getattr(e, "errno", None),
    }


def pywintypes_error(impl: str):
    """The error of a call that fails with both implementations (a path in a
    missing folder), caught as ``pywintypes.error``."""
    import pywintypes

    mod = load(impl)
    with tempfile.TemporaryDirectory() as d:
        try:
            mod.mmapfile(os.path.join(d, "no", "f"), None, PAGE)
        except pywintypes.error as e:
            return error_shape(e)
    return None


def retry_client_child(impl: str, name: str) -> None:
    import time

    import pywintypes

    mod = load(impl)
    attempts, first_error = 0, None
    deadline = time.monotonic() + 60
    while True:
        try:
            m = mod.mmapfile(None, name, 0)
            break
        except pywintypes.error as e:  # what the client catches
            attempts += 1
            if first_error is None:
                first_error = error_shape(e)
                print("waiting", flush=True)
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    frame = m.read(16).rstrip(b"\0").decode()
    m.close()
    print(json.dumps({"attempts": attempts, "first_error": first_error, "frame": frame}))


def main(argv):
    if argv[:1] == ["--child"]:
        share_child(argv[1], argv[2])
        return
    if argv[:1] == ["--retry-client"]:
        retry_client_child(argv[1], argv[2])
        return
    impl, out = argv
    records = {"impl": impl, "platform": sys.platform, "scenarios": run_all(load(impl))}
    if impl == "ours" and sys.platform == "win32":
        records["share"] = {
            "ours->pywin32": share("ours", "pywin32"),
            "pywin32->ours": share("pywin32", "ours"),
        }
        records["retry_client"] = {
            f"{server} server": retry_client(server) for server in ("ours", "pywin32")
        }
        records["pywintypes_error"] = {impl: pywintypes_error(impl) for impl in ("ours", "pywin32")}
        records["share_file"] = {
            "ours->pywin32": share("ours", "pywin32", file=True),
            "pywin32->ours": share("pywin32", "ours", file=True),
        }
    with open(out, "w") as f:
        json.dump(records, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
