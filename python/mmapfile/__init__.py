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
