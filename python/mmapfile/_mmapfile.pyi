"""The compiled core of :mod:`mmapfile`: pywin32's ``mmapfile`` object, plus the
conveniences of CPython's :mod:`mmap`.

This stub is the API reference. ``mypy.stubtest`` checks it against the built
module.
"""

import os
import sys
from collections.abc import Iterator
from types import TracebackType
from typing import Literal, TypedDict, type_check_only

from typing_extensions import Buffer, Self, final

# The public names, which `mmapfile` exports as they are: the runtime module
# lists the same (the private helpers below are left out of both).
__all__ = [
    "mmapfile",
    "MapLock",
    "error",
    "PAGESIZE",
    "ALLOCATIONGRANULARITY",
    "ACCESS_DEFAULT",
    "ACCESS_READ",
    "ACCESS_WRITE",
    "ACCESS_COPY",
    "__version__",
]

# The madvise() options of each OS: the core's table (`ADVICE` in
# crates/mmapfile/src/os/*/view.rs). tests/test_conveniences.py holds these
# lists to it on the OS the tests run on.
if sys.platform != "win32":
    __all__ += ["MADV_NORMAL", "MADV_RANDOM", "MADV_SEQUENTIAL", "MADV_WILLNEED", "MADV_DONTNEED"]
if sys.platform == "linux" or sys.platform == "darwin":
    __all__ += ["MADV_FREE"]
if sys.platform == "linux":
    __all__ += [
        "MADV_REMOVE",
        "MADV_DOFORK",
        "MADV_MERGEABLE",
        "MADV_UNMERGEABLE",
        "MADV_HUGEPAGE",
        "MADV_NOHUGEPAGE",
        "MADV_DONTDUMP",
        "MADV_DODUMP",
    ]

__version__: str
"""The package version."""

_backend: str
"""How this build keeps named blocks: ``"linux"``, ``"windows"``,
``"portable"`` (macOS and the BSDs) or ``"portable-simulated"`` (the
portable backend on Linux with macOS's limits imposed, for testing)."""

PAGESIZE: int
"""The size of a memory page in bytes."""

ALLOCATIONGRANULARITY: int
"""The alignment the OS requires of a view's file offset (the page size on POSIX,
64 KiB on Windows). ``FileOffset`` need not be aligned: it is aligned down
internally."""

ACCESS_DEFAULT: int
"""``access=`` value: the default, the same as :data:`ACCESS_WRITE`. Equal to
``mmap.ACCESS_DEFAULT``."""

ACCESS_READ: int
"""``access=`` value: read only. The file or block is opened read-only, so
read-only files can be mapped; every write raises :exc:`TypeError`. Equal to
``mmap.ACCESS_READ``."""

ACCESS_WRITE: int
"""``access=`` value: read and write; writes reach the file or block and every
other process that maps it. Equal to ``mmap.ACCESS_WRITE``."""

ACCESS_COPY: int
"""``access=`` value: copy on write. Writes change this view only and never
reach the file or block. Equal to ``mmap.ACCESS_COPY``."""

if sys.platform != "win32":
    MADV_NORMAL: int
    """:meth:`mmapfile.madvise` option: no special treatment."""
    MADV_RANDOM: int
    """:meth:`mmapfile.madvise` option: pages will be accessed in random order."""
    MADV_SEQUENTIAL: int
    """:meth:`mmapfile.madvise` option: pages will be accessed in order."""
    MADV_WILLNEED: int
    """:meth:`mmapfile.madvise` option: pages will be needed soon (read ahead)."""
    MADV_DONTNEED: int
    """:meth:`mmapfile.madvise` option: pages are not needed for now. For a
    shared map they are read back from the file or block on the next access;
    for an ``ACCESS_COPY`` map, private changes to them are lost."""

if sys.platform == "linux" or sys.platform == "darwin":
    MADV_FREE: int
    """:meth:`mmapfile.madvise` option: the pages' contents may be discarded
    (private anonymous memory only; other maps get :exc:`mmapfile.error`)."""

if sys.platform == "linux":
    MADV_REMOVE: int
    """:meth:`mmapfile.madvise` option: free the pages and their backing store
    (punches a hole in the file or block)."""
    MADV_DOFORK: int
    """:meth:`mmapfile.madvise` option: forked children inherit the pages (the
    default). ``MADV_DONTFORK`` is not offered: a child touching the map
    would crash."""
    MADV_MERGEABLE: int
    """:meth:`mmapfile.madvise` option: allow kernel same-page merging."""
    MADV_UNMERGEABLE: int
    """:meth:`mmapfile.madvise` option: undo ``MADV_MERGEABLE``."""
    MADV_HUGEPAGE: int
    """:meth:`mmapfile.madvise` option: prefer transparent huge pages."""
    MADV_NOHUGEPAGE: int
    """:meth:`mmapfile.madvise` option: avoid transparent huge pages."""
    MADV_DONTDUMP: int
    """:meth:`mmapfile.madvise` option: leave the pages out of core dumps."""
    MADV_DODUMP: int
    """:meth:`mmapfile.madvise` option: undo ``MADV_DONTDUMP``."""

class error(OSError):
    """An operating-system call failed.

    A subclass of :exc:`OSError`: ``errno`` and ``strerror`` are set as usual,
    :attr:`funcname` names the OS call that failed, and :attr:`winerror` holds
    the Windows error code on every OS, so that handlers written for pywin32
    (``if e.winerror == winerror.ERROR_FILE_NOT_FOUND``) work unchanged.
    """

    funcname: str | None
    """The OS call that failed, or ``None`` when there is no single one. On
    Windows it is named as pywin32 names it (``"CreateFile"``,
    ``"CreateFileMapping"``, ``"MapViewOfFile"``, ..., without the ``W`` of
    the wide-character function); on POSIX it is the system call
    (``"shm_open"``, ``"open"``, ``"mmap"``, ...)."""

    winerror: int | None  # type: ignore[misc]
    """The Windows error code. On Windows it is the code the system returned;
    on POSIX it is the code that says what ``errno`` says: ``ENOENT`` 2,
    ``EACCES``/``EPERM``/``EISDIR`` 5, ``EEXIST`` 183, ``ENOSPC`` 112,
    ``ENOMEM`` 8, ``EINVAL`` 87, ``EBADF`` 6, ``ENAMETOOLONG`` 206,
    ``ENOTDIR`` 3, ``EROFS`` 19, ``EFBIG`` 223, ``EMFILE`` 4, ``EIO`` 1117,
    ``EBUSY`` 170, ``ESTALE`` 1006 (a named file mapping whose file was
    replaced); ``None`` where no code fits."""

@final
class MapLock:
    """The cross-process lock of a mapping, returned by :meth:`mmapfile.lock`.

    Every process that maps the same file or the same named block (or, for an
    unnamed block, a forked child) gets the same lock; threads contend for it
    as processes do, and any thread of the holding process may release it. It
    is not reentrant. When the process that holds it dies (a crash, SIGKILL,
    ``os._exit``), the next acquirer gets it and is told so: see
    :attr:`abandoned`. It does not depend on the map staying open, and a lock
    object that is garbage-collected releases the lock if it holds it.

    On Linux it is a word in shared memory: a free lock is taken and released
    without a system call (as fast as ``multiprocessing.Lock``), a waiter
    sleeps in the kernel (futex) until the release wakes it. For a file or a
    named block the word lives in a one-page companion object
    (``/dev/shm/mmapfile-lock.<dev>.<ino>``, removed by its last user, or by
    ``python -m mmapfile gc`` if they all died); an unnamed block keeps it in
    a page of its own memory that views never show. A named block's lock needs
    permission to write the block. On macOS and the BSDs it is a ``flock``: on
    the mapped file itself (so a program's own ``flock`` on that file
    contends with it), or on a lock file of the block. On Windows it is a
    word in shared memory too (a one-page companion section of a named block
    or of a file, made beside it, never in its bytes), taken and released
    without a system call; a waiter sleeps on an event and on the holder's
    process handle, so a holder's death wakes it at once.

    ``with m.lock():`` acquires it (waiting for ever, or for the timeout given
    to :meth:`mmapfile.lock`, raising :exc:`TimeoutError` when that runs out)
    and releases it on exit.
    """

    @property
    def abandoned(self) -> bool:
        """Whether the last acquisition through this lock object took the lock
        over from a holder that died holding it (Windows' ``WAIT_ABANDONED``):
        what the lock guards may be half written, and it is the program's to
        check or repair. ``False`` before any acquisition and after one that
        followed a release. Linux and Windows tell; on macOS and the BSDs
        (``flock``) it is always ``False``. On Windows the lock's section
        lives while some process has a lock object of the mapping: if none
        but the holder had one when it died, the lock is gone with it, so a
        later acquirer is not told."""

    def acquire(self, timeout: float | None = None) -> bool:
        """Wait for the lock: for ever with ``None``, else at most ``timeout``
        seconds (``0`` tries once, and takes over a dead holder's lock).
        Return whether it was acquired.

        A free lock is taken without releasing the GIL. A wait runs without
        the GIL. It runs Python's signal handlers before it starts and every
        50 ms while it waits, so Ctrl-C (:exc:`KeyboardInterrupt`) or any
        exception a handler raises ends it within about 50 ms (on Linux at
        once: the signal interrupts the kernel wait), however the signal's
        timing falls; a handler that returns lets it go on. A release ends the
        wait at once. On Linux and Windows timed waits sleep in the kernel
        too, and never return before the timeout; elsewhere they poll, with
        pauses of at most 5 ms. Raise :exc:`ValueError` for a negative timeout.
        """

    def release(self) -> None:
        """Release the lock. Raise :exc:`RuntimeError` unless this lock object
        holds it (any thread of this process may release it)."""

    def locked(self) -> bool:
        """Return whether anyone, in any process, holds the lock (on Linux and
        Windows, a holder that died does not)."""

    def __enter__(self) -> Self:
        """Acquire the lock with the timeout given to :meth:`mmapfile.lock`;
        raise :exc:`TimeoutError` if it was not acquired in time."""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> bool:
        """Release the lock."""

@final
class mmapfile:
    """A view of a file, a named block of shared memory, or an unnamed block.

    ``mmapfile(File, Name, MaximumSize=0, FileOffset=0, NumberOfBytesToMap=0)`` is
    pywin32's constructor:

    - ``File`` (a path: ``str``, ``bytes`` or ``os.PathLike``) maps that file. It
      is created if missing (with ``ACCESS_WRITE``) and grown to
      ``MaximumSize`` when that is larger; ``MaximumSize=0`` means the file's
      size.
    - ``Name`` without ``File`` opens the named mapping ``Name`` (a named block,
      or a named file mapping, below) at its own size, or creates a named block
      of shared memory of ``MaximumSize`` bytes that any process can open by the
      same name (on Linux the shared-memory object ``/mmapfile.<Name>``; on
      POSIX a ``Local\\`` or ``Global\\`` prefix is removed). A name may be up
      to 260 UTF-16 code units long on every OS, as on Windows.
    - ``File`` and ``Name``: a *named file mapping*, as Windows'
      ``CreateFileMapping`` makes it. The file is mapped (as above) and the
      mapping gets the name, so that any process of the same user can then
      open the same file's bytes with ``mmapfile(None, Name)``, at the
      mapping's size (the opener's ``MaximumSize`` is ignored), with
      ``FileOffset``/``NumberOfBytesToMap`` windows into it. If the name exists
      already, that mapping is opened instead and the file is not touched
      (:attr:`created` is ``False``). The name lives while any holder in any
      process has it open; the file is never removed, cut or padded when the
      name ends. An opener needs its own permission to open the file, and a
      file removed or replaced since the name was made is refused.
    - Neither: an unnamed block of ``MaximumSize`` bytes, shared with forked
      children only.
    - ``''`` (or ``b''``, or an empty path object) means "none" for ``File``
      and ``Name``, as in pywin32: ``mmapfile('', name, size)`` is a named
      block, ``mmapfile('', '', size)`` an unnamed one.
    - ``FileOffset`` and ``NumberOfBytesToMap`` choose the window that is
      mapped (``0`` bytes: to the end). The offset need not be aligned.

    Keyword-only options that go beyond pywin32:

    - ``access``: :data:`ACCESS_WRITE` (default), :data:`ACCESS_READ` or
      :data:`ACCESS_COPY`, as CPython's :mod:`mmap`.
    - ``create``: for a named mapping, ``True`` to create it (fail if the
      name exists), ``False`` to open it (fail if it does not), ``None`` for
      either (the default, pywin32's behaviour).
    - ``mode``: the permission bits of a named block or name this call
      creates (default ``0o600``).
    - ``allow_other_owner``: open a named mapping whose name belongs to
      another user (refused by default, so that a name planted by someone
      else is not trusted).
    - ``space``: what creating a block, or growing a file (here or in
      ``resize``), does about the storage it needs. ``"check"`` (the
      default) refuses, with ``mmapfile.error`` and ``errno`` ``ENOSPC``,
      what does not fit in the free space now (for named blocks on Linux,
      only those kept in ``/dev/shm`` where no System V segment can be
      had), and blocks larger than memory plus swap (``ENOMEM``).
      ``"reserve"`` allocates the storage at once (``fallocate``), so no
      later write can find it missing: cheap for a file on ext4 or xfs, but
      a block is then in memory from the start. ``"sparse"`` does neither,
      for sparse files larger than the free space. Windows allocates at
      creation whatever this says. A page that still cannot be allocated
      when it is written raises ``mmapfile.error`` with ``ENOSPC`` ("no
      space") instead of killing the process.

    The object also behaves like CPython's :class:`mmap.mmap`: it is a context
    manager, a mutable sequence of bytes (``len``, indexing, slicing, item and
    slice assignment) and exports its memory through the buffer protocol, so
    ``memoryview(m)`` and ``numpy.frombuffer(m)`` see the mapped memory itself.

    One object may be shared by many threads: every method locks it, and long
    copies and system calls run without the GIL.

    Errors: :exc:`mmapfile.error` (an :exc:`OSError`) when the OS refuses,
    :exc:`ValueError` for a closed map or a value out of range,
    :exc:`IndexError` for an index or slice out of range, :exc:`TypeError` for
    a write to an ``ACCESS_READ`` map or ``resize()`` of an ``ACCESS_READ``
    or ``ACCESS_COPY`` one, :exc:`BufferError` for ``close()`` or
    ``resize()`` while a buffer is exported.

    Maps (and their :class:`MapLock` objects) can be weakly referenced.
    """

    def __new__(
        cls,
        File: str | bytes | os.PathLike[str] | os.PathLike[bytes] | None,
        Name: str | None,
        MaximumSize: int = 0,
        FileOffset: int = 0,
        NumberOfBytesToMap: int = 0,
        *,
        access: int = 0,
        create: bool | None = None,
        mode: int | None = None,
        allow_other_owner: bool = False,
        space: Literal["check", "reserve", "sparse"] = "check",
    ) -> Self:
        """Open the file or block and map the view (see the class docstring).
        A failed call leaves nothing behind: no open handle, and no file or
        block that it created."""

    # pywin32's methods

    def read(self, n: int | None = None) -> bytes:
        """Read up to ``n`` bytes from the position (all that is left when
        ``n`` is ``None`` or negative) and advance the position."""

    def read_byte(self) -> bytes:
        """Read the byte at the position, as a bytes object of length 1, and
        advance. Raise :exc:`ValueError` at the end."""

    def readline(self) -> bytes:
        """Read up to and including the next ``\\n`` (or to the end) and
        advance; ``b""`` at the end."""

    def write(self, data: Buffer) -> None:
        """Write all of ``data`` at the position and advance; raise
        :exc:`ValueError` (and write nothing) if it does not fit."""

    def write_byte(self, byte: int | Buffer) -> None:
        """Write one byte (an int in ``range(256)`` or a bytes-like object of
        length 1) at the position and advance."""

    def seek(self, dist: int, how: int = 0) -> None:
        """Move the position: ``how`` 0 from the start, 1 from the current
        position, 2 from the end (``size - dist`` for ``dist >= 0``, as pywin32;
        ``size + dist`` for a negative one). The end itself is a valid
        position; anything outside raises :exc:`ValueError`."""

    def tell(self) -> int:
        """Return the position."""

    def size(self) -> int:
        """Return the size of the view in bytes (the same as ``len(m)``)."""

    def find(self, needle: Buffer, start: int | None = None, end: int | None = None) -> int:
        """Return the lowest index of ``needle`` in ``m[start:end]`` (slice
        semantics: negative values count from the end; ``start`` defaults to
        the position, ``end`` to the end; ``None`` means the default), or -1,
        as ``bytes.find`` gives it: a ``start`` past the end finds nothing,
        not even ``b""``. The position does not move."""

    def rfind(self, needle: Buffer, start: int | None = None, end: int | None = None) -> int:
        """Like :meth:`find`, but the highest index."""

    def move(self, dest: int, src: int, count: int) -> None:
        """Copy ``count`` bytes from offset ``src`` to offset ``dest`` of the
        view; the ranges may overlap."""

    def flush(self, offset: int = 0, size: int = 0) -> int:
        """Write ``size`` bytes of the view from ``offset`` (``size`` 0, as in
        pywin32, or -1, as in CPython 3.15: to the end) back to the file and
        wait until they are on the device. Return 1.
        Nothing to do for an ``ACCESS_COPY`` map."""

    def resize(self, MaximumSize: int, FileOffset: int = 0, NumberOfBytesToMap: int = 0) -> None:
        """Map a new view of a mapping of ``MaximumSize`` bytes (0: the file's or
        block's current size), growing the file or block if it is smaller; it
        never shrinks. The data is kept and the position is clamped to the new
        view. Raise :exc:`BufferError` while a buffer is exported, and
        :exc:`TypeError` for an ``ACCESS_READ`` or ``ACCESS_COPY`` map (as
        CPython's :mod:`mmap`: a copy-on-write view's private changes would
        not carry over to the new view)."""

    def close(self) -> None:
        """Unmap the view and close the file or block. Closing twice is fine.
        Raise :exc:`BufferError` while a buffer is exported (release every
        ``memoryview``/numpy array first)."""

    # CPython mmap's conveniences

    def __enter__(self) -> Self:
        """Return the map itself (:exc:`ValueError` if it is closed)."""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> bool:
        """Close the map."""

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""

    def __len__(self) -> int:
        """The size of the view in bytes."""

    def __getitem__(self, key: int | slice, /) -> int | bytes:
        """``m[i]`` is the byte at ``i`` as an int (negative counts from the
        end); ``m[i:j]`` and ``m[i:j:k]`` are bytes. An index out of range
        raises :exc:`IndexError`."""

    def __setitem__(self, key: int | slice, value: int | Buffer, /) -> None:
        """``m[i] = v`` sets one byte (an int in ``range(256)``);
        ``m[i:j:k] = data`` writes a bytes-like object that must have exactly
        the slice's length (:exc:`IndexError` otherwise). The checks come in
        CPython 3.15's order, on every Python: a read-only map
        (:exc:`TypeError`), the key, the value (:exc:`TypeError`, or
        :exc:`ValueError` outside ``range(256)``), a closed map
        (:exc:`ValueError`), then the bounds (:exc:`IndexError`)."""

    def __delitem__(self, key: int | slice, /) -> None:
        """Always raises :exc:`TypeError`: a map's size is fixed."""

    # As on CPython's mmap, iteration, reversed() and `in` work through the
    # sequence protocol (the item slot): the class has no such methods at
    # runtime (see stubtest-allowlist.txt), these only tell type checkers.
    def __iter__(self) -> Iterator[bytes]:
        """Iterate over the bytes of the view as 1-byte :class:`bytes` objects
        (while ``m[i]`` is an int), as CPython's :mod:`mmap` does. Each item is
        read when it is reached, at the view's size then; a closed map raises
        :exc:`ValueError`."""

    def __reversed__(self) -> Iterator[bytes]:
        """Iterate from the last byte to the first, as 1-byte :class:`bytes`."""

    def __contains__(self, item: object, /) -> bool:
        """``b"h" in m``: whether some item (a 1-byte :class:`bytes`) equals
        ``item``. As on CPython's :mod:`mmap` this is not a substring search
        (``b"he" in m`` is False; use :meth:`find`), and an int is never found."""

    if sys.version_info >= (3, 12):
        def __buffer__(self, flags: int, /) -> memoryview:
            """Export the mapped memory itself (no copy). The buffer is
            read-only for ``ACCESS_READ`` maps. While any buffer is alive,
            :meth:`close` and :meth:`resize` raise :exc:`BufferError`."""

        def __release_buffer__(self, buffer: memoryview, /) -> None:
            """Release a buffer taken with :meth:`__buffer__`."""

    def readinto(self, buffer: Buffer) -> int:
        """Copy bytes from the position into the writable ``buffer`` (as many
        as it holds, or as are left) and advance; return the count."""

    def seekable(self) -> bool:
        """Return ``True``: a map always supports :meth:`seek`."""

    def madvise(self, option: int, start: int = 0, length: int = 0) -> None:
        """Advise the OS how ``length`` bytes of the view from ``start`` will be
        used, with one of the ``MADV_*`` constants this module has on this OS.

        ``length`` 0 means to the end, and a range past the end is cut at the
        end; a ``start`` outside the view raises :exc:`ValueError`. The advice
        covers the whole pages that hold the range. On Windows there are no
        ``MADV_*`` constants.
        """

    def lock(self, timeout: float | None = None) -> MapLock:
        """Return the mapping's cross-process lock (see :class:`MapLock`).
        ``timeout`` is the one ``with m.lock(timeout):`` waits for
        (``None``: for ever)."""

    @property
    def name(self) -> str | None:
        """The ``Name`` given when opening (prefix included), or ``None`` (also
        for ``Name=''``)."""

    @property
    def filename(self) -> str | None:
        """The path of the mapped file, or ``None`` for a block. For a named
        file mapping opened by its name, the file the name maps (on POSIX;
        Windows does not tell it, so there it is ``None``)."""

    @property
    def offset(self) -> int:
        """The view's offset in the file or block (``FileOffset``). Raise
        :exc:`ValueError` once closed."""

    @property
    def created(self) -> bool:
        """Whether opening created the file or block (always ``True`` for an
        unnamed block)."""

# Helpers of ``python -m mmapfile`` (inspecting named blocks from outside).
# Private: the command line is their interface.
@type_check_only
class _BlockInfo(TypedDict):
    # What _list_blocks and _block_info say of a named block (a plain dict at
    # run time; mmapfile::blocks::BlockInfo in the core).
    name: str
    shm_name: str  # the POSIX object holding the bytes ("" if none)
    path: str | None  # where the name lives: /dev/shm object or record file
    size: int  # the block's, or the mapping's for a file mapping
    kind: Literal["block", "file"]
    file: str | None  # the mapped file of a named file mapping
    holders: int | None  # None where the OS cannot tell; 0: dead
    owner: int
    mode: int
    changed: float | None  # seconds since the epoch

def _list_blocks() -> list[_BlockInfo]: ...
def _block_info(name: str) -> _BlockInfo: ...
def _read_block(name: str, offset: int = 0, length: int | None = None) -> bytes: ...
def _remove_block(name: str) -> bool | None: ...
def _collect_garbage() -> list[str]: ...
def _use_error_class(cls: type[error]) -> None: ...

if sys.platform != "win32":
    def _winerror_of(errno: int) -> int | None: ...
