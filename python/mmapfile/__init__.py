"""pywin32's ``mmapfile`` API on Linux, macOS and Windows, written in Rust.

``mmapfile.mmapfile(File, Name, MaximumSize=0, FileOffset=0, NumberOfBytesToMap=0)``
maps a file (``File``), a named block of shared memory (``Name`` and no ``File``)
or an unnamed block (neither). See ``_mmapfile.pyi`` for the full reference.
"""

import sys

from ._mmapfile import (
    ACCESS_COPY,
    ACCESS_DEFAULT,
    ACCESS_READ,
    ACCESS_WRITE,
    ALLOCATIONGRANULARITY,
    PAGESIZE,
    MapLock,
    __version__,
    error,
    mmapfile,
)


def _pywintypes_error():
    """pywin32's ``pywintypes.error`` where pywin32 is installed, else None."""
    try:
        import pywintypes
    except ImportError:
        return None
    cls = getattr(pywintypes, "error", None)
    return cls if isinstance(cls, type) and issubclass(cls, Exception) else None


_pywin32_error = _pywintypes_error()
if _pywin32_error is not None:
    # Code written for pywin32 catches ``pywintypes.error``: make ours one too
    # (still an OSError and the extension's ``error``), with pywin32's
    # ``args`` ``(winerror, funcname, strerror)``. docs/migrating.md.
    from ._mmapfile import _use_error_class

    class error(error, _pywin32_error):  # noqa: F811 - deliberately replaces it
        """An operating-system call failed: an :exc:`OSError` (``errno``,
        ``strerror``, ``winerror``, ``funcname``) that is also a
        ``pywintypes.error``, with pywin32's ``args``
        ``(winerror, funcname, strerror)``."""

        __module__ = "mmapfile"

    _use_error_class(error)
    del _use_error_class
del _pywintypes_error, _pywin32_error

__all__ = [
    "ACCESS_COPY",
    "ACCESS_DEFAULT",
    "ACCESS_READ",
    "ACCESS_WRITE",
    "ALLOCATIONGRANULARITY",
    "PAGESIZE",
    "MapLock",
    "__version__",
    "error",
    "mmapfile",
]

# The madvise() options this OS has (see _mmapfile.pyi).
if sys.platform != "win32":
    from ._mmapfile import (
        MADV_DONTNEED,
        MADV_NORMAL,
        MADV_RANDOM,
        MADV_SEQUENTIAL,
        MADV_WILLNEED,
    )

    __all__ += ["MADV_DONTNEED", "MADV_NORMAL", "MADV_RANDOM", "MADV_SEQUENTIAL", "MADV_WILLNEED"]
if sys.platform == "linux" or sys.platform == "darwin":
    from ._mmapfile import MADV_FREE

    __all__ += ["MADV_FREE"]
if sys.platform == "linux":
    from ._mmapfile import (
        MADV_DODUMP,
        MADV_DOFORK,
        MADV_DONTDUMP,
        MADV_HUGEPAGE,
        MADV_MERGEABLE,
        MADV_NOHUGEPAGE,
        MADV_REMOVE,
        MADV_UNMERGEABLE,
    )

    __all__ += [
        "MADV_DODUMP",
        "MADV_DOFORK",
        "MADV_DONTDUMP",
        "MADV_HUGEPAGE",
        "MADV_MERGEABLE",
        "MADV_NOHUGEPAGE",
        "MADV_REMOVE",
        "MADV_UNMERGEABLE",
    ]
